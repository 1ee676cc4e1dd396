"""fastgan.convert on the real model files of BigGAN-PyTorch and PyTorch-StudioGAN, at small sizes, in float64:
each model and its converted copy train side by side (their codebases' habits: BigGAN's G_D wrapper with G under
no_grad for the D step, split_D; StudioGAN's toggle_grad and its EMA by parameter order; hinge loss + R1, an EMA
copy of G) and must agree to round-off in every state-dict value after each step, and in eval.

    python bench/convert_real_codebases.py --biggan ~/src/BigGAN-PyTorch --studiogan ~/src/PyTorch-StudioGAN

Not part of the tests: it needs checkouts of those repositories (nothing of them is in fastgan). SGD, not Adam:
Adam divides by sqrt(v) and turns round-off in the ~1e-17 gradients of a bias before a batch norm into steps of
lr, so the comparison would measure that. Exit status 1 if any difference exceeds the tolerance.
"""
from __future__ import annotations

import argparse
import copy
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

import fastgan

TOL = 1e-9


def _worst(a: dict, b: dict) -> tuple[float, str]:
    diffs = [((a[k].double() - b[k].double()).abs().max().item(), k) for k in a if a[k].numel()]
    return max(diffs)


def _ema(source: nn.Module, target: nn.Module, decay: float = 0.9) -> None:
    """StudioGAN's Ema.update: parameters and buffers zipped by order, num_batches_tracked copied."""
    with torch.no_grad():
        for p_ema, p in zip(target.parameters(), source.parameters()):
            p_ema.copy_(p.lerp(p_ema, decay))
        for (name, b_ema), b in zip(target.named_buffers(), source.buffers()):
            b_ema.copy_(b if "num_batches_tracked" in name else b.lerp(b_ema, decay))


def _r1(d_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    return 5.0 * g.pow(2).sum([1, 2, 3]).mean()


def _side_by_side(name: str, make, convert: tuple, step, inputs, steps: int = 3) -> list[tuple[str, float, str]]:
    """make() -> dict of modules ('G', 'D', 'G_ema', maybe a wrapper of G and D); a deep copy of it has the modules
    named in ``convert`` converted; step(models, opts, *inputs(s)) trains both sides alike. Returns the rows."""
    torch.manual_seed(0)
    original = make()
    converted = copy.deepcopy(original)  # (one copy: a wrapper keeps holding the copied G and D)
    opts = [{k: torch.optim.SGD(m[k].parameters(), lr=0.01) for k in ("G", "D")} for m in (original, converted)]
    for key in convert:
        fastgan.convert(converted[key])
    rows = []
    for s in range(steps):
        for models, opt in zip((original, converted), opts):
            step(models, opt, *inputs(s))
        for key in ("G", "D", "G_ema"):
            diff, where = _worst(original[key].state_dict(), converted[key].state_dict())
            rows.append((f"{name} {key} after step {s}", diff, where))
    z, y, _ = inputs(steps)
    with torch.no_grad():
        for key in ("G", "G_ema"):
            a, b = (_generate(models[key].eval(), z, y) for models in (original, converted))
            rows.append((f"{name} {key} eval output", (a - b).abs().max().item(), ""))
    return rows


def _generate(G, z, y):
    return G(z, G.shared(y)) if hasattr(G, "dim_z") else G(z, y, eval=True)


def biggan(root: str) -> list:
    sys.path.insert(0, root)
    import BigGAN  # noqa: PLC0415 - from the checkout given

    def make():
        G = BigGAN.Generator(G_ch=8, dim_z=20, resolution=32, n_classes=10, shared_dim=8, hier=True, SN_eps=1e-6,
                             G_attn="16", no_optim=True).double()
        D = BigGAN.Discriminator(D_ch=8, resolution=32, n_classes=10, SN_eps=1e-6, D_attn="16").double()
        return {"G": G, "D": D, "G_ema": copy.deepcopy(G), "GD": BigGAN.G_D(G, D)}

    def step(models, opts, z, y, x, split_D):
        GD = models["GD"]
        opts["D"].zero_grad()
        fake, real = GD(z, y, x, y, train_G=False, split_D=split_D)
        xr = x.clone().requires_grad_(True)
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean() + _r1(models["D"](xr, y), xr)
        loss.backward()
        opts["D"].step()
        opts["G"].zero_grad()
        (-GD(z, y, train_G=True, split_D=split_D).mean()).backward()
        opts["G"].step()
        _ema(models["G"], models["G_ema"])

    def inputs(s):
        g = torch.Generator().manual_seed(s)
        return (torch.randn(4, 20, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g),
                torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64))

    rows = []
    for split_D in (False, True):  # G_D converted whole (one SN group over G and D), and G, D each on its own
        for convert in (("GD", "G_ema"), ("G", "D", "G_ema")):
            rows += _side_by_side(f"BigGAN split_D={split_D} convert {'+'.join(convert)}", make, convert,
                                  lambda m, o, *a, split_D=split_D: step(m, o, *a, split_D), inputs)
    return rows


def studiogan(root: str) -> list:
    sys.path.insert(0, f"{root}/src")
    utils = types.ModuleType("utils")  # its package, without running what it imports (torchvision, seaborn, ...)
    utils.__path__ = [f"{root}/src/utils"]
    misc = types.ModuleType("utils.misc")  # of which the models use one context manager
    misc.dummy_context_mgr = type("dummy_context_mgr", (), {"__enter__": lambda s: None,
                                                             "__exit__": lambda s, *a: False})
    utils.misc = misc
    sys.modules.update({"utils": utils, "utils.misc": misc})
    import utils.ops as ops  # noqa: PLC0415 - from the checkout given
    from models import big_resnet  # noqa: PLC0415

    modules = types.SimpleNamespace(
        g_conv2d=ops.snconv2d, g_deconv2d=ops.sndeconv2d, g_linear=ops.snlinear, g_embedding=ops.sn_embedding,
        d_conv2d=ops.snconv2d, d_linear=ops.snlinear, d_embedding=ops.sn_embedding, g_bn=ops.ConditionalBatchNorm2d,
        d_bn=ops.batchnorm_2d, g_act_fn=nn.ReLU(inplace=True), d_act_fn=nn.ReLU(inplace=True))
    model_cfg = types.SimpleNamespace(info_type="N/A", g_info_injection="N/A")

    def make():
        G = big_resnet.Generator(z_dim=40, g_shared_dim=16, img_size=32, g_conv_dim=8, apply_attn=True,
                                 attn_g_loc=[2], g_cond_mtd="cBN", num_classes=10, g_init="ortho", g_depth=None,
                                 mixed_precision=False, MODULES=modules, MODEL=model_cfg).double()
        D = big_resnet.Discriminator(img_size=32, d_conv_dim=8, apply_d_sn=True, apply_attn=True, attn_d_loc=[1],
                                     d_cond_mtd="PD", aux_cls_type="W/O", d_embed_dim=None, normalize_d_embed=False,
                                     num_classes=10, d_init="ortho", d_depth=None, mixed_precision=False,
                                     MODULES=modules, MODEL=model_cfg).double()
        return {"G": G, "D": D, "G_ema": copy.deepcopy(G)}

    def toggle(model, grad):
        for p in model.parameters():
            p.requires_grad = grad

    def step(models, opts, z, y, x):
        G, D = models["G"], models["D"]
        toggle(G, False), toggle(D, True)
        opts["D"].zero_grad()
        fake = G(z, y)
        x = x.clone().requires_grad_(True)
        real = D(x, y)["adv_output"]
        loss = F.relu(1 - real).mean() + F.relu(1 + D(fake, y)["adv_output"]).mean() + _r1(real, x)
        loss.backward()
        opts["D"].step()
        toggle(D, False), toggle(G, True)
        opts["G"].zero_grad()
        (-D(G(z, y), y)["adv_output"].mean()).backward()
        opts["G"].step()
        _ema(G, models["G_ema"])

    def inputs(s):
        g = torch.Generator().manual_seed(s)
        return (torch.randn(4, 40, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g),
                torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64))

    return _side_by_side("StudioGAN big_resnet", make, ("G", "D", "G_ema"), step, inputs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--biggan", help="a checkout of github.com/ajbrock/BigGAN-PyTorch")
    parser.add_argument("--studiogan", help="a checkout of github.com/POSTECH-CVLab/PyTorch-StudioGAN")
    args = parser.parse_args(argv)
    if not (args.biggan or args.studiogan):
        parser.error("give --biggan and/or --studiogan")
    rows = (biggan(args.biggan) if args.biggan else []) + (studiogan(args.studiogan) if args.studiogan else [])
    width = max(len(r[0]) for r in rows)
    print(f"{'check':<{width}}  max |converted - original|  where")
    for what, diff, where in rows:
        print(f"{what:<{width}}  {diff:<25.3g}  {where}{'  FAIL' if diff > TOL else ''}")
    bad = [r for r in rows if r[1] > TOL]
    print(f"{len(rows) - len(bad)} of {len(rows)} within {TOL:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
