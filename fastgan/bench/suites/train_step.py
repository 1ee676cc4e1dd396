"""Train-step suite: one whole training step of the zoo's GANs (``fastgan.train.Trainer.step``: the critic steps,
the penalty where the model has one, the generator step, both optimizer steps), and sampling alone.

Models at their standard sizes (batch and width divided by ``--ts-scale``): DCGAN-64 batch 128; the WGAN-GP
DCGAN-64 critic batch 64; SNGAN's ResNet and the conditional ResNet GAN at 128 pixels, batch 64 (float32).

Implementations: ``fastgan[auto]``: the fused build (fastgan layers), each op on the backend ``auto`` picks for
it (as ``fastgan train`` runs; the transposed convolution has no CUDA C++ backend); ``eager``: the same model
in PyTorch layers (``fused=False``), the same weights; ``compile``: the eager build with ``torch.compile`` on G and
D (it fails where the penalty differentiates D twice: recorded, as measured). Each times ``Trainer.step()``, which
reads the losses back (4 host syncs a step, as ``fastgan train`` does).

Before timing, every implementation's first-step losses and parameter gradients (D's loss and G's, on one batch,
without an optimizer step) are compared with eager's. Targets (issue 12): DCGAN-64 and SNGAN-128 steps >= 1.3x
eager and >= 1.1x compile.
"""
from __future__ import annotations

import functools
import tempfile
from collections import OrderedDict

import torch

from ..runner import Case
from .common import Target, compare_with_reference, current, record_targets, record_value

SUITE = "train_step"
DTYPES = ("float32",)
SEED = 0
MODELS = OrderedDict([  # label -> (zoo name, resolution, batch)
    ("DCGAN-64", ("dcgan", 64, 128)),
    ("WGAN-GP DCGAN-64 critic", ("wgan-gp", 64, 64)),
    ("SNGAN-ResNet-128", ("sngan-resnet", 128, 64)),
    ("cond-ResNet-128", ("cond-resnet", 128, 64)),
])
TARGETED = ("DCGAN-64", "SNGAN-ResNet-128")
TOLERANCE = {"loss": 1e-4, "grad": 2e-3}  # TF32 convolutions on a GPU
SCALE = 1


def add_arguments(parser) -> None:
    parser.add_argument("--ts-scale", type=int, default=None, metavar="K",
                        help="train_step suite: divide batch and width by K (a quick check)")


def configure(args) -> None:
    global SCALE
    scale = getattr(args, "ts_scale", None)
    if scale is not None:
        if scale < 1:
            raise SystemExit(f"fastgan bench: --ts-scale must be at least 1, got {scale}")
        SCALE = scale


def _trainer(model: str, device: str, fused: bool, backend: str | None = None):
    from ...train import TrainConfig, Trainer

    name, res, batch = MODELS[model]
    from ... import models

    width = max(8, models.GANS[name].width // SCALE)
    cfg = TrainConfig(model=name, resolution=res, batch_size=max(2, batch // SCALE), width=width, fused=fused,
                      backend=backend, seed=SEED, device=device, out=tempfile.gettempdir(), progress=False,
                      evaluate=False, data_size=4096)
    return Trainer(cfg)


class _Bundle:
    def __init__(self, model: str, device: str):
        self.eager = _trainer(model, device, False)
        self.fused = OrderedDict()
        t = _trainer(model, device, True)
        t.G.load_state_dict(self.eager.G.state_dict())
        t.D.load_state_dict(self.eager.D.state_dict())
        self.fused["auto"] = t
        self.compiled = None
        real, y = self.eager._real()
        z, yz = self.eager._z()
        self.batch = (real, y, z, yz)


def _first_step(trainer, batch):
    """D's and G's losses on one batch and every parameter's gradient: what the first step computes (no
    optimizer step), for the check."""
    from ... import models
    from ...penalties import gradient_penalty

    real, y, z, yz = batch
    spec = trainer.spec
    c, cz = trainer._cond(y), trainer._cond(yz)
    with torch.no_grad():
        fake = trainer.G(z, *cz)
    loss_d = models.d_loss(spec.loss, trainer.D(real, *c), trainer.D(fake, *cz))
    if spec.penalty == "wgan-gp":
        eps = torch.linspace(0, 1, real.shape[0], device=real.device)
        loss_d = loss_d + gradient_penalty(trainer.D, real, fake, eps=eps, check_finite=False)
    grads_d = torch.autograd.grad(loss_d, list(trainer.D.parameters()), allow_unused=True, materialize_grads=True)
    loss_g = models.g_loss(spec.loss, trainer.D(trainer.G(z, *cz), *cz))
    grads_g = torch.autograd.grad(loss_g, list(trainer.G.parameters()))
    return torch.stack([loss_d.detach(), loss_g.detach()]), list(grads_d) + list(grads_g)


def _with_backend(trainer, fn):
    """``fn`` under the trainer's backend (the step sets it itself; the check and sampling need it too)."""
    from ...train import _backend_scope

    def run():
        with _backend_scope(trainer.config.backend):
            return fn()
    return run


def _setup(model, device, sample, with_compile):
    b = current((SUITE, model, device, sample), lambda: _Bundle(model, device))  # (sampling: fresh, equal weights)
    impls = OrderedDict()
    for name, t in b.fused.items():
        impls[f"fastgan[{name}]"] = _with_backend(t, t.samples if sample else t.step)
    impls["eager"] = b.eager.samples if sample else b.eager.step
    if with_compile:
        try:
            if b.compiled is None:
                b.compiled = _trainer(model, device, False)
                b.compiled.G.load_state_dict(b.eager.G.state_dict())
                b.compiled.D.load_state_dict(b.eager.D.state_dict())
                b.compiled.G, b.compiled.D = torch.compile(b.compiled.G), torch.compile(b.compiled.D)
            impls["compile"] = b.compiled.samples if sample else b.compiled.step
        except Exception as e:  # noqa: BLE001 - recorded as this implementation's error
            impls["compile"] = e
    return impls


def _check(model, device, sample, impls):
    b = current((SUITE, model, device, sample), lambda: None)
    trainers = OrderedDict([("eager", b.eager)] + [(f"fastgan[{n}]", t) for n, t in b.fused.items()])
    if b.compiled is not None:
        trainers["compile"] = b.compiled
    checks = OrderedDict()
    for name, t in trainers.items():
        if name in impls and not isinstance(impls[name], Exception):
            fn = (lambda t=t: t.samples()) if sample else (lambda t=t: _first_step(t, b.batch))
            checks[name] = _with_backend(t, fn)
    if sample:
        return compare_with_reference(checks, "samples", {"y": TOLERANCE["grad"]}, {"samples": "y"})
    return compare_with_reference(checks, ("loss", "grads"), TOLERANCE, {"loss": "loss", "grads": "grad"},
                                  same_dtype=False)


def describe() -> dict:
    return {"models": {k: {"zoo": v[0], "resolution": v[1], "batch": max(2, v[2] // SCALE)}
                       for k, v in MODELS.items()}, "scale": SCALE, "lines": [
        "train step: Trainer.step() (critic steps, penalty, G step, both Adam steps); eager = the same model in "
        "PyTorch layers; compile = torch.compile of the eager G and D",
        "targets: DCGAN-64 and SNGAN-ResNet-128 steps x eager >= 1.3 and x compile >= 1.1"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("auto",)) -> list[Case]:
    targets = [Target("x eager >= 1.3", record_value("speedup_vs_eager"), 1.3),
               Target("x compile >= 1.1", record_value("speedup_vs_compile"), 1.1)]
    out = []
    for model, (name, res, batch) in MODELS.items():
        n = max(2, batch // SCALE)
        for sample in (False, True):
            what = "sampling (G in eval, 64 latents)" if sample else f"train step, batch {n}"
            out.append(Case(SUITE, f"{model} {what}", "float32", "fwd" if sample else "fwd+bwd", 0,
                            "a whole step: no byte floor", device=device,
                            params={"model": name, "resolution": res, "batch": n,
                                    "targets": [t.label for t in targets] if model in TARGETED and not sample
                                    else []},
                            setup=functools.partial(_setup, model, device, sample),
                            check=functools.partial(_check, model, device, sample),
                            finish=functools.partial(record_targets, targets if model in TARGETED and not sample
                                                     else [])))
    return out
