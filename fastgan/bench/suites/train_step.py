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
    ("VAE-32", ("vae", 32, 128)),
    ("VQ-VAE-32", ("vqvae", 32, 128)),
    ("PixelCNN-32", ("pixelcnn", 32, 32)),
])
LIKELIHOOD_WIDTH = {"vae": 32, "vqvae": 64, "pixelcnn": 60}  # the trainer's defaults
TARGETED = {"DCGAN-64": (1.3, 1.1), "SNGAN-ResNet-128": (1.3, 1.1), "VAE-32": (1.2, None), "VQ-VAE-32": (1.2, None)}
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


def _likelihood(model: str) -> bool:
    return MODELS[model][0] in LIKELIHOOD_WIDTH


def _trainer(model: str, device: str, fused: bool, backend: str | None = None):
    from ...train import TrainConfig, Trainer
    from ...train_likelihood import LikelihoodTrainer

    name, res, batch = MODELS[model]
    from ... import models

    if _likelihood(model):  # (the eager build's quantiser on the torch backend: eager PyTorch throughout)
        width, backend = max(6, LIKELIHOOD_WIDTH[name] // SCALE), backend if fused else "torch"
    else:
        width = max(8, models.GANS[name].width // SCALE)
    cfg = TrainConfig(model=name, resolution=res, batch_size=max(2, batch // SCALE), width=width, fused=fused,
                      backend=backend, seed=SEED, device=device, out=tempfile.gettempdir(), progress=False,
                      evaluate=False, data_size=4096)
    return (LikelihoodTrainer if _likelihood(model) else Trainer)(cfg)


def _copy_weights(dst, src) -> None:
    """src's weights and random state into dst (a VAE's loss draws its noise from the trainer's generator)."""
    for name in ("net",) if hasattr(src, "net") else ("G", "D"):
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    dst.rng.set_state(src.rng.get_state())


def _compile(trainer) -> None:
    """torch.compile on the eager build's networks: G and D, or the likelihood model's encoder and decoder (its
    forward for the PixelCNN), which the step calls through its loss methods."""
    if not hasattr(trainer, "net"):
        trainer.G, trainer.D = torch.compile(trainer.G), torch.compile(trainer.D)
        return
    net = trainer.net
    parts = [p for p in ("encoder", "decoder") if hasattr(net, p)]
    for p in parts:
        setattr(net, p, torch.compile(getattr(net, p)))
    if not parts:
        net.forward = torch.compile(net.forward)


class _Bundle:
    def __init__(self, model: str, device: str):
        self.eager = _trainer(model, device, False)
        self.fused = OrderedDict()
        real, y = self.eager._real()
        t = _trainer(model, device, True)
        _copy_weights(t, self.eager)
        self.fused["auto"] = t
        self.compiled = None
        self.batch = (real, y, *self.eager._z()) if not _likelihood(model) else (real,)


def _first_step(trainer, batch):
    """D's and G's losses on one batch and every parameter's gradient: what the first step computes (no
    optimizer step), for the check."""
    from ... import models
    from ...penalties import gradient_penalty

    if hasattr(trainer, "net"):  # a likelihood model: its loss
        params = [p for p in trainer.net.parameters() if p.requires_grad]  # (an EMA codebook has none)
        x = batch[0]
        # (a VQ-VAE's first forward starts its codebook from vectors torch's generator picks: the same for all)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(SEED)
            loss = trainer._losses(x)["loss"]
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
        return loss.detach()[None], list(grads)
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


def model_config(model: str) -> tuple[str, int, int]:
    """(zoo name, resolution, batch after --ts-scale) of a model label."""
    name, res, batch = MODELS[model]
    return name, res, max(2, batch // SCALE)


def flat_first_step(trainer, batch):
    """:func:`_first_step` with every gradient in one vector: its error is relative to the norm of all of them
    (a conv bias before a batch norm has a gradient of ~0, whose own relative error is noise)."""
    loss, grads = _first_step(trainer, batch)
    return loss, torch.cat([g.detach().flatten().float() for g in grads])


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
                _copy_weights(b.compiled, b.eager)
                _compile(b.compiled)
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
            fn = (lambda t=t: t.samples()) if sample else (lambda t=t: flat_first_step(t, b.batch))
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
        "likelihood models: LikelihoodTrainer.step() (the loss, its backward, Adam); eager = PyTorch layers and the "
        "torch quantiser; compile = torch.compile of the eager encoder and decoder (the PixelCNN's forward)",
        "targets: DCGAN-64 and SNGAN-ResNet-128 steps x eager >= 1.3 and x compile >= 1.1; VAE-32 and VQ-VAE-32 "
        "x eager >= 1.2"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("auto",)) -> list[Case]:
    out = []
    for model, (name, res, batch) in MODELS.items():
        n = max(2, batch // SCALE)
        for sample in (False,) if _likelihood(model) else (False, True):
            eager_x, compile_x = TARGETED.get(model, (None, None)) if not sample else (None, None)
            targets = ([Target(f"x eager >= {eager_x:g}", record_value("speedup_vs_eager"), eager_x)] if eager_x
                       else []) + ([Target(f"x compile >= {compile_x:g}", record_value("speedup_vs_compile"),
                                           compile_x)] if compile_x else [])
            what = "sampling (G in eval, 64 latents)" if sample else f"train step, batch {n}"
            out.append(Case(SUITE, f"{model} {what}", "float32", "fwd" if sample else "fwd+bwd", 0,
                            "a whole step: no byte floor", device=device,
                            params={"model": name, "resolution": res, "batch": n,
                                    "targets": [t.label for t in targets]},
                            setup=functools.partial(_setup, model, device, sample),
                            check=functools.partial(_check, model, device, sample),
                            finish=functools.partial(record_targets, targets)))
    return out
