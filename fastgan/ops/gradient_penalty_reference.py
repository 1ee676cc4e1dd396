"""The eager torch reference of the gradient-penalty ops: the per-sample interpolation x_hat = eps real + (1 - eps)
fake, and the penalty of a gradient g = dD/dx (per-sample norm in float32, guarded at 0) with its seed gradient."""
from __future__ import annotations

import torch

NORM, SQUARED = 0, 1  # penalty kinds: weight E[(||g|| - center)^2] (WGAN-GP, DRAGAN), weight / 2 E[||g||^2] (R1, R2)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_sample(eps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """eps (N,) shaped to broadcast over a sample of ``like`` (N, ...)."""
    return eps.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """eps real + (1 - eps) fake per sample, computed in float32 (float64 for float64) as fake + eps (real - fake)
    and rounded once to the dtype of real."""
    acc = acc_dtype(real.dtype)
    e = per_sample(eps.to(acc), real)
    r, f = real.to(acc), fake.to(acc)
    return (f + e * (r - f)).to(real.dtype)


def squared_norms(g: torch.Tensor) -> torch.Tensor:
    """(N,) ||g_n||^2 in float32 (float64 for float64 g)."""
    return g.reshape(g.shape[0], -1).to(acc_dtype(g.dtype)).square().sum(dim=1)


def penalty_of_norms(sq: torch.Tensor, kind: int, weight: float, center: float, one_sided: bool) -> torch.Tensor:
    """The penalty (a 0-dim tensor) from the per-sample squared norms ``sq`` (N,)."""
    if kind == SQUARED:
        return weight / 2 * sq.mean()
    d = sq.sqrt() - center
    if one_sided:
        d = d.clamp_min(0)
    return weight * d.square().mean()


def seed_coefficients(sq: torch.Tensor, kind: int, weight: float, center: float, one_sided: bool) -> torch.Tensor:
    """(N,) c_n with d penalty / d g_n = c_n g_n: weight / N (squared), 2 weight (||g|| - center) / (N ||g||)
    (norm; 0 where ||g|| = 0, as torch's norm backward, and where a one-sided penalty is inactive)."""
    n = sq.shape[0]
    if kind == SQUARED:
        return torch.full_like(sq, weight / n)
    norm = sq.sqrt()
    d = norm - center
    if one_sided:
        d = d.clamp_min(0)
    return torch.where(norm > 0, 2 * weight * d / (n * norm), torch.zeros_like(norm))


def penalty(g: torch.Tensor, kind: int, weight: float, center: float, one_sided: bool) -> torch.Tensor:
    """The penalty of g from differentiable torch ops (what a double backward differentiates)."""
    return penalty_of_norms(squared_norms(g), kind, weight, center, one_sided)


def textbook_norm(g: torch.Tensor) -> torch.Tensor:
    """||g_n|| as the WGAN-GP paper's code computes it: ``g.view(N, -1).norm(2, dim=1)``."""
    return g.reshape(g.shape[0], -1).norm(2, dim=1)
