"""The activations an op can fuse after its output: one table for every place that names them.

The torch reference computes ``forward`` and ``backward`` from it, the Triton kernels branch on ``code`` (a
compile-time constant), the CUDA kernels on ``enum Activation`` in ``csrc/common.cuh`` (same codes, checked by
``tests/test_activations.py``), the modules validate their ``activation=`` argument with :func:`lookup`, and
``fastgan.convert`` fuses the torch modules listed in ``modules``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

NONE, RELU, LEAKY_RELU = 0, 1, 2  # the kernels' codes


def _relu_grad(g, z, slope):
    # as torch's autograd: the gradient passes unless z <= 0 (at z = NaN too)
    return torch.where(z <= 0, torch.zeros((), dtype=g.dtype, device=g.device), g)


@dataclass(frozen=True)
class Activation:
    """One fusable activation: ``forward(z, slope)`` and ``backward(g, z, slope) = g * act'(z)``, as torch."""

    name: str | None
    code: int
    forward: Callable[[torch.Tensor, float], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    modules: tuple[type, ...]  # torch modules that compute it (what convert fuses)
    has_slope: bool = False


ACTIVATIONS: dict[str | None, Activation] = {a.name: a for a in (
    Activation(None, NONE, lambda z, slope: z, lambda g, z, slope: g, ()),
    Activation("relu", RELU, lambda z, slope: torch.relu(z), _relu_grad, (nn.ReLU,)),
    Activation("leaky_relu", LEAKY_RELU, lambda z, slope: F.leaky_relu(z, slope),
               lambda g, z, slope: torch.where(z > 0, g, g * slope), (nn.LeakyReLU,), has_slope=True),
)}
BY_CODE: dict[int, Activation] = {a.code: a for a in ACTIVATIONS.values()}


def lookup(activation, negative_slope: float, where: str) -> tuple[Activation, float]:
    """(the activation, its slope) for an ``activation=`` argument: None, a name, or ``('leaky_relu', slope)``.

    Raises ValueError, prefixed with ``where``, for an unknown name or a slope that is not finite (or not positive
    for leaky_relu).
    """
    if isinstance(activation, tuple) and len(activation) == 2 and activation[0] == "leaky_relu":
        activation, negative_slope = activation
    act = ACTIVATIONS.get(activation) if isinstance(activation, (str, type(None))) else None
    if act is None:
        names = ", ".join(repr(n) for n in ACTIVATIONS)
        raise ValueError(f"{where}: activation must be one of {names} (or ('leaky_relu', slope)), got {activation!r}")
    if not (isinstance(negative_slope, (int, float)) and math.isfinite(negative_slope)):
        raise ValueError(f"{where}: negative_slope must be a finite number, got {negative_slope!r}")
    if act.has_slope and negative_slope <= 0:
        raise ValueError(f"{where}: leaky_relu needs negative_slope > 0, got {negative_slope} (use 'relu' for 0)")
    return act, float(negative_slope)


def of_module(module: nn.Module) -> tuple[str, float] | None:
    """(name, slope) of the fusable activation that ``module`` computes (its exact type), else None."""
    for act in ACTIVATIONS.values():
        if type(module) in act.modules:
            slope = float(getattr(module, "negative_slope", 0.01))
            if act.has_slope and slope <= 0:
                return None  # LeakyReLU(0) or a negative slope: not what the kernels compute
            return act.name, slope
    return None
