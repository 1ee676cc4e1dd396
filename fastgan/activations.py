"""The activations an op can fuse after its output: one table for every place that names them.

The torch reference computes ``forward`` and ``backward`` (or ``backward_from_output``) from it, the Triton kernels
branch on ``code`` (a compile-time constant), the CUDA kernels on ``enum Activation`` in ``csrc/cond_batch_norm.h``
(the same codes for the activations they compute, checked by ``tests/test_activations.py``), the ops and modules
validate their ``activation=`` argument with :func:`lookup` (each op names the activations it fuses), and
``fastgan.convert`` fuses the torch modules listed in ``modules``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

NONE, RELU, LEAKY_RELU, TANH, SIGMOID = 0, 1, 2, 3, 4  # the kernels' codes
BATCH_NORM = (None, "relu", "leaky_relu")  # what the batch-norm kernels fuse


def _relu_grad(g, z, slope):
    # as torch's autograd: the gradient passes unless z <= 0 (at z = NaN too)
    return torch.where(z <= 0, torch.zeros((), dtype=g.dtype, device=g.device), g)


@dataclass(frozen=True)
class Activation:
    """One fusable activation: ``forward(z, slope)``, ``backward(g, z, slope) = g * act'(z)`` and the same from the
    output y = act(z), ``backward_from_output(g, y, slope)`` (what an op that keeps y and not z computes), as torch.
    All three are differentiable torch ops (double backward)."""

    name: str | None
    code: int
    forward: Callable[[torch.Tensor, float], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    backward_from_output: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    modules: tuple[type, ...]  # torch modules that compute it (what convert fuses)
    has_slope: bool = False


def _leaky_grad(g, z, slope):
    return torch.where(z > 0, g, g * slope)  # y > 0 exactly where z > 0 (slope > 0): the same from the output


def _tanh_grad_from_output(g, y, slope):
    return g * (1 - y * y)


def _sigmoid_grad_from_output(g, y, slope):
    return g * (1 - y) * y


ACTIVATIONS: dict[str | None, Activation] = {a.name: a for a in (
    Activation(None, NONE, lambda z, slope: z, lambda g, z, slope: g, lambda g, y, slope: g, ()),
    Activation("relu", RELU, lambda z, slope: torch.relu(z), _relu_grad, _relu_grad, (nn.ReLU,)),
    Activation("leaky_relu", LEAKY_RELU, lambda z, slope: F.leaky_relu(z, slope), _leaky_grad, _leaky_grad,
               (nn.LeakyReLU,), has_slope=True),
    Activation("tanh", TANH, lambda z, slope: torch.tanh(z),
               lambda g, z, slope: _tanh_grad_from_output(g, torch.tanh(z), slope), _tanh_grad_from_output,
               (nn.Tanh,)),
    Activation("sigmoid", SIGMOID, lambda z, slope: torch.sigmoid(z),
               lambda g, z, slope: _sigmoid_grad_from_output(g, torch.sigmoid(z), slope), _sigmoid_grad_from_output,
               (nn.Sigmoid,)),
)}
BY_CODE: dict[int, Activation] = {a.code: a for a in ACTIVATIONS.values()}


def lookup(activation, negative_slope: float, where: str, allowed=None) -> tuple[Activation, float]:
    """(the activation, its slope) for an ``activation=`` argument: None, a name, or ``('leaky_relu', slope)``;
    ``allowed``: the names the op fuses (default: all of the table).

    Raises ValueError, prefixed with ``where``, for an unknown or not allowed name or a slope that is not finite
    (or not positive for leaky_relu).
    """
    allowed = tuple(ACTIVATIONS) if allowed is None else allowed
    if isinstance(activation, tuple) and len(activation) == 2 and activation[0] == "leaky_relu":
        activation, negative_slope = activation
    act = ACTIVATIONS.get(activation) if isinstance(activation, (str, type(None))) else None
    if act is None or act.name not in allowed:
        names = ", ".join(repr(n) for n in allowed)
        raise ValueError(f"{where}: activation must be one of {names} (or ('leaky_relu', slope)), got {activation!r}")
    if torch.compiler.is_compiling():  # (with dynamic=True the slope is symbolic: checked in eager calls only)
        return act, negative_slope
    if not (isinstance(negative_slope, (int, float)) and math.isfinite(negative_slope)):
        raise ValueError(f"{where}: negative_slope must be a finite number, got {negative_slope!r}")
    if act.has_slope and negative_slope <= 0:
        raise ValueError(f"{where}: leaky_relu needs negative_slope > 0, got {negative_slope} (use 'relu' for 0)")
    return act, float(negative_slope)


def of_module(module: nn.Module, allowed=None) -> tuple[str, float] | None:
    """(name, slope) of the fusable activation that ``module`` computes (its exact type), else None; ``allowed``:
    the names the op fuses (default: all of the table)."""
    for act in ACTIVATIONS.values():
        if type(module) in act.modules and (allowed is None or act.name in allowed):
            slope = float(getattr(module, "negative_slope", 0.01))
            if act.has_slope and slope <= 0:
                return None  # LeakyReLU(0) or a negative slope: not what the kernels compute
            return act.name, slope
    return None
