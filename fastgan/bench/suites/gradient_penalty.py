"""Gradient-penalty suite: the discriminator step of WGAN-GP and of an R1-regularised GAN, fastgan vs the textbook
eager step, and the fused penalty ops alone.

Discriminators (NCHW, float32 parameters; batch 64 and 256; inputs float32 or bfloat16 under autocast is not
timed here):

* DCGAN-64 critic (WGAN-GP: pytorch/examples' DCGAN discriminator without batch norm, as the paper's critic has
  none): conv 3->64->128->256->512 k4 s2 p1 with LeakyReLU(0.2), then 512->1 k4 s1 p0; 64x64 images.
* SNGAN-32 D (Miyato et al.'s standard CNN, R1 with gamma 10): conv 3->64 k3, 64->64 k4 s2, 64->128 k3,
  128->128 k4 s2, 128->256 k3, 256->256 k4 s2, 256->512 k3 (LeakyReLU 0.1), linear 512x4x4 -> 1; spectral norm on
  every layer; 32x32 images.

Cases, per model and batch:

* critic step (fwd+bwd): the discriminator's loss and its backward, no optimizer step. ``eager``: the textbook
  step (WGAN-GP: D(real), D(fake), D(x_hat) with x_hat = eps real + (1 - eps) fake, autograd.grad(create_graph=True),
  10 E[(||g|| - 1)^2], loss.backward(); R1: D(real) and D(fake) for the non-saturating loss, D(real) again with
  x requiring grad for gamma / 2 E||g||^2); torch layers, ``torch.nn.utils.parametrizations.spectral_norm``.
  ``fastgan``: the same step with ``fastgan.gradient_penalty`` / ``fastgan.r1_penalty(return_outputs=True)`` (R1:
  D(real) is run once, with x requiring grad, and serves the loss too) and fastgan's SN layers (one grouped call).
  ``compile``: ``torch.compile`` of the eager step, as it turns out (autograd.grad inside breaks the graph).
  Target: >= 1.15x eager.
* penalty ops (fwd+bwd): ``fastgan.interpolate_samples`` then ``fastgan.penalty_of_gradient`` and its backward on a
  gradient of the images' shape, vs the same in eager torch ops. Floor 6 |x| (interpolation reads 2 |x| and writes
  |x|; the norms read |g|, the seed gradient reads |g| and writes |g|); target >= 80% of the copy bandwidth.

Before a case is timed, every implementation's penalty value and parameter gradients are compared with eager's
(same weights, same eps; norm-relative error).
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..runner import Case, Unavailable
from .common import Target, compare_with_reference, current, fastgan_backends, record_targets, record_value

SUITE = "gradient_penalty"
DTYPES = ("float32",)
BATCHES = (64, 256)
SEED = 0
TOLERANCE = {"float32": {"loss": 1e-4, "grad": 1e-3}}  # TF32 convolutions on a GPU round each side alike
SPEEDUP_TARGET = 1.15
COPY_BW_TARGET_PCT = 80.0
SCALE = 1  # batch and channels divided by this (tests, a quick check)


def add_arguments(parser) -> None:
    parser.add_argument("--gp-scale", type=int, default=None, metavar="K",
                        help="gradient_penalty suite: divide batch and channels by K (a quick check)")


def configure(args) -> None:
    global SCALE
    scale = getattr(args, "gp_scale", None)
    if scale is not None:
        if scale < 1:
            raise SystemExit(f"fastgan bench: --gp-scale must be at least 1, got {scale}")
        SCALE = scale


# ---------------------------------------------------------------- models


def dcgan_critic(ch: int, fused: bool) -> nn.Module:
    """The DCGAN-64 critic (no batch norm); ``fused`` changes nothing (no fastgan layer applies)."""
    layers, c_in = [], 3
    for c in (ch, 2 * ch, 4 * ch, 8 * ch):
        layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
        c_in = c
    return nn.Sequential(*layers, nn.Conv2d(c_in, 1, 4, 1, 0), nn.Flatten())


def sngan_d(ch: int, fused: bool) -> nn.Module:
    """SNGAN's standard CNN discriminator at 32x32; spectral norm by torch's parametrization, or fastgan's layers
    (``fused``: one grouped power iteration for all of them)."""
    import fastgan

    plan = [(3, ch, 3, 1), (ch, ch, 4, 2), (ch, 2 * ch, 3, 1), (2 * ch, 2 * ch, 4, 2), (2 * ch, 4 * ch, 3, 1),
            (4 * ch, 4 * ch, 4, 2), (4 * ch, 8 * ch, 3, 1)]
    sn = nn.utils.parametrizations.spectral_norm
    layers = []
    for c_in, c_out, k, s in plan:
        conv = fastgan.nn.SNConv2d(c_in, c_out, k, s, 1) if fused else sn(nn.Conv2d(c_in, c_out, k, s, 1))
        layers += [conv, nn.LeakyReLU(0.1)]
    lin = fastgan.nn.SNLinear(8 * ch * 16, 1) if fused else sn(nn.Linear(8 * ch * 16, 1))
    model = nn.Sequential(*layers, nn.Flatten(), lin)
    if fused:
        model.sn_group = fastgan.nn.SpectralNormGroup(model)  # kept with the model
    return model


MODELS = {"DCGAN-64 critic (WGAN-GP)": (dcgan_critic, 64, 64, "wgan-gp"),
          "SNGAN-32 D (R1)": (sngan_d, 64, 32, "r1")}


# ---------------------------------------------------------------- the steps


def eager_step(D, real, fake, eps, kind):
    """The textbook discriminator step; returns (loss, penalty) after loss.backward()."""
    if kind == "wgan-gp":
        e = eps.view(-1, 1, 1, 1)
        x = (e * real + (1 - e) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        pen = 10.0 * ((g.reshape(g.shape[0], -1).norm(2, dim=1) - 1) ** 2).mean()
        loss = D(fake).mean() - D(real).mean() + pen
    else:
        x = real.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        pen = 5.0 * g.reshape(g.shape[0], -1).pow(2).sum(1).mean()
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean() + pen
    loss.backward()
    return loss.detach(), pen.detach()


def fastgan_step(D, real, fake, eps, kind, backend):
    """The same step with fastgan's penalties (R1: D(real) once, serving the loss and the penalty)."""
    import fastgan

    if kind == "wgan-gp":
        pen = fastgan.gradient_penalty(D, real, fake, eps=eps, check_finite=False, backend=backend)
        loss = D(fake).mean() - D(real).mean() + pen
    else:
        pen, d_real = fastgan.r1_penalty(D, real, 10.0, return_outputs=True, check_finite=False, backend=backend)
        loss = F.softplus(D(fake)).mean() + F.softplus(-d_real).mean() + pen
    loss.backward()
    return loss.detach(), pen.detach()


class _Bundle:
    def __init__(self, model: str, batch: int, device: str):
        make, ch, size, self.kind = MODELS[model]
        ch = max(1, ch // SCALE)
        torch.manual_seed(SEED)
        self.eager_D = make(ch, False).to(device)
        torch.manual_seed(SEED)
        self.fused_D = make(ch, True).to(device)
        self.fused_D.load_state_dict(self.eager_D.state_dict())  # the same function (fastgan's SN loads torch's)
        gen = torch.Generator(device=device).manual_seed(SEED)
        self.real = torch.randn(batch, 3, size, size, device=device, generator=gen)
        self.fake = torch.randn(batch, 3, size, size, device=device, generator=gen)
        self.eps = torch.rand(batch, device=device, generator=gen)
        self.compiled = None

    def impl(self, D, step):
        params = [p for p in D.parameters() if p.requires_grad]

        def run():
            for p in params:
                p.grad = None
            loss, pen = step(D, self.real, self.fake, self.eps, self.kind)
            return torch.stack([loss, pen]), [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        return run


def _bundle(model, batch, device):
    return current((SUITE, model, batch, device), lambda: _Bundle(model, batch, device))


def _setup(model, batch, device, backends, with_compile):
    b = _bundle(model, batch, device)
    impls = OrderedDict()
    for name, why in fastgan_backends("gradient_penalty", device, "float32", backends):
        impls[f"fastgan[{name}]"] = Unavailable(why) if why else b.impl(
            b.fused_D, functools.partial(fastgan_step, backend=name))
    impls["eager"] = b.impl(b.eager_D, eager_step)
    if with_compile:
        try:
            b.compiled = b.compiled or torch.compile(eager_step)
            impls["compile"] = b.impl(b.eager_D, b.compiled)
        except Exception as e:  # noqa: BLE001 - recorded as this implementation's error
            impls["compile"] = e
    return impls


def _check(model, batch, device, impls):
    """Every step against eager's, in eval (spectral norm's u and v left alone: each step sees the same sigma)."""
    b = _bundle(model, batch, device)
    for D in (b.eager_D, b.fused_D):
        D.eval()
    try:
        return compare_with_reference(impls, ("loss", "grads"), TOLERANCE["float32"],
                                      {"loss": "loss", "grads": "grad"}, same_dtype=False)
    finally:
        for D in (b.eager_D, b.fused_D):
            D.train()


# ---------------------------------------------------------------- the penalty ops alone


def _ops_setup(shape, device, backends, with_compile):
    gen = torch.Generator(device=device).manual_seed(SEED)
    real, fake = (torch.randn(shape, device=device, generator=gen) for _ in range(2))
    eps = torch.rand(shape[0], device=device, generator=gen)
    g = torch.randn(shape, device=device, generator=gen).requires_grad_(True)

    def eager():
        e = eps.view(-1, 1, 1, 1)
        x = e * real + (1 - e) * fake
        pen = 10.0 * ((g.reshape(g.shape[0], -1).norm(2, dim=1) - 1) ** 2).mean()
        return x, pen, torch.autograd.grad(pen, g)[0]

    def fused(backend):
        import fastgan

        def run():
            x = fastgan.interpolate_samples(real, fake, eps, backend=backend)
            pen = fastgan.penalty_of_gradient(g, "norm", 10.0, 1.0, backend=backend)
            return x, pen, torch.autograd.grad(pen, g)[0]
        return run

    impls = OrderedDict()
    for name, why in fastgan_backends("gradient_penalty", device, "float32", backends):
        impls[f"fastgan[{name}]"] = Unavailable(why) if why else fused(name)
    impls["eager"] = eager
    if with_compile:
        impls["compile"] = torch.compile(eager)
    return impls


def _ops_check(impls):
    return compare_with_reference(impls, ("x_hat", "penalty", "dgrad"), {"y": 1e-5},
                                  {"x_hat": "y", "penalty": "y", "dgrad": "y"})


# ---------------------------------------------------------------- cases


def describe() -> dict:
    return {"models": list(MODELS), "batches": list(BATCHES), "scale": SCALE, "lines": [
        "critic step: D loss + penalty + backward (no optimizer step); eager = the textbook step with torch layers "
        "and parametrized SN; fastgan = fastgan penalties and SN layers; compile = torch.compile of the eager step",
        f"targets: critic step x eager >= {SPEEDUP_TARGET}; penalty ops % copy BW >= {COPY_BW_TARGET_PCT:g}"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("cuda", "triton")) -> list[Case]:
    step_targets = [Target(f"x eager >= {SPEEDUP_TARGET}", record_value("speedup_vs_eager"), SPEEDUP_TARGET)]
    op_targets = [Target(f"% copy BW >= {COPY_BW_TARGET_PCT:g}", record_value("pct_copy_bw"), COPY_BW_TARGET_PCT)]
    out = []
    for batch in BATCHES:
        n = max(2, batch // SCALE)
        for model, (_, _, size, kind) in MODELS.items():
            out.append(Case(SUITE, f"{model} critic step, batch {n}", "float32", "fwd+bwd", 0,
                            "a whole step: no byte floor (see the penalty-ops cases)", device=device,
                            params={"model": model, "batch": n, "penalty": kind, "targets": [step_targets[0].label]},
                            setup=functools.partial(_setup, model, n, device, tuple(backends)),
                            check=functools.partial(_check, model, n, device),
                            finish=functools.partial(record_targets, step_targets)))
            shape = (n, 3, size, size)
            numel = math.prod(shape)
            out.append(Case(SUITE, f"penalty ops {'x'.join(map(str, shape))}", "float32", "fwd+bwd", 6 * numel * 4,
                            "6 |x|: interpolation reads 2 |x| and writes |x|; norms read |g|; the seed reads |g| "
                            "and writes |g|", device=device, params={"shape": list(shape)},
                            setup=functools.partial(_ops_setup, shape, device, tuple(backends)), check=_ops_check,
                            finish=functools.partial(record_targets, op_targets)))
    return out
