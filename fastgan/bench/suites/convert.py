"""Convert suite: one training step of a model written with plain PyTorch layers, before and after
``fastgan.convert``.

Models: the zoo's DCGAN-64 (batch 128) and SNGAN-ResNet-128 (batch 64) built with ``fused=False`` (torch's
ConvTranspose2d, BatchNorm2d + ReLU, ``parametrizations.spectral_norm``), batch and width divided by
``--ts-scale`` as in the train_step suite. Implementations: ``eager`` (as built), ``fastgan[convert]``: the same
trainer, same weights, with ``fastgan.convert`` applied to G and D after its optimizers were built (what a user
does to a model from another codebase); ``compile``: torch.compile of the eager G and D. Each times
``Trainer.step()``. Before timing, the converted step's first losses and gradients are compared with eager's.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

from ..runner import Case
from .common import compare_with_reference, current
from .train_step import TOLERANCE as _TOLERANCE
from .train_step import _compile, _copy_weights, _trainer, flat_first_step, model_config
from .train_step import configure as _configure_scale

SUITE = "convert"
DTYPES = ("float32",)
MODELS = ("DCGAN-64", "SNGAN-ResNet-128")


class _Bundle:
    def __init__(self, model: str, device: str):
        from ... import convert

        self.eager = _trainer(model, device, False)
        self.converted = _trainer(model, device, False)
        _copy_weights(self.converted, self.eager)
        convert(self.converted.G)
        convert(self.converted.D)
        self.compiled = None
        real, y = self.eager._real()
        self.batch = (real, y, *self.eager._z())


def _setup(model, device, with_compile):
    b = current((SUITE, model, device), lambda: _Bundle(model, device))
    impls = OrderedDict([("fastgan[convert]", b.converted.step), ("eager", b.eager.step)])
    if with_compile:
        try:
            if b.compiled is None:
                b.compiled = _trainer(model, device, False)
                _copy_weights(b.compiled, b.eager)
                _compile(b.compiled)
            impls["compile"] = b.compiled.step
        except Exception as e:  # noqa: BLE001 - recorded as this implementation's error
            impls["compile"] = e
    return impls


def _check(model, device, impls):
    b = current((SUITE, model, device), lambda: None)
    checks = OrderedDict([("eager", lambda: flat_first_step(b.eager, b.batch)),
                          ("fastgan[convert]", lambda: flat_first_step(b.converted, b.batch))])
    return compare_with_reference(checks, ("loss", "grads"), _TOLERANCE, {"loss": "loss", "grads": "grad"},
                                  same_dtype=False)


def describe() -> dict:
    return {"models": {m: model_config(m) for m in MODELS}, "lines": [
        "convert: Trainer.step() of the zoo's fused=False (plain PyTorch) build, before and after fastgan.convert "
        "of G and D (optimizers built before convert); compile = torch.compile of the eager G and D"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("auto",)) -> list[Case]:
    out = []
    for model in MODELS:
        name, res, n = model_config(model)
        out.append(Case(SUITE, f"{model} train step, batch {n}, converted", "float32", "fwd+bwd", 0,
                        "a whole step: no byte floor", device=device,
                        params={"model": name, "resolution": res, "batch": n},
                        setup=functools.partial(_setup, model, device),
                        check=functools.partial(_check, model, device)))
    return out


def configure(args) -> None:
    _configure_scale(args)  # (--ts-scale, shared with the train_step suite)
