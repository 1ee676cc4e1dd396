"""tr sqrt(S1 S2) from a float32 Newton–Schulz iteration (BigGAN-PyTorch's fast path), on fused Triton kernels:
the trace behind ``frechet_distance(..., method="newton_schulz")``, which validates the statistics and computes
the distance around it. Inexact by design; returns None (after a warning) whenever the exact route must be used.
"""
from __future__ import annotations

import math
import warnings

import torch

from .. import _backend

OP = "newton_schulz"
_backend.register_op(OP, ("triton",))

MAX_ITERS = 60
CHECK_EVERY = 5
TOLERANCE = 1e-5  # relative residual |Y Y - M/c|_F / |M/c|_F at which the iteration stops


def _fallback(why: str) -> None:
    warnings.warn(f"Newton–Schulz FID: {why}; using the exact route instead", stacklevel=4)


def trace_sqrt_newton_schulz(s1: torch.Tensor, s2: torch.Tensor) -> float | None:
    """tr sqrt(s1 s2) from float64 (d, d) covariances, or None if the iteration fails to converge."""
    from ..kernels.newton_schulz import matmul_identity

    why = _backend.unavailable_reason("triton", s1.device, torch.float32, OP)
    if why:
        _fallback(f"the Triton kernels cannot run here ({why})")
        return None
    m = s1 @ s2
    c = float(torch.linalg.matrix_norm(m))  # >= the largest eigenvalue, so M/c has its spectrum in [0, 1]
    if not math.isfinite(c) or c == 0.0:
        _fallback(f"|S1 S2|_F = {c}")
        return None
    target = (m / c).float().contiguous()
    y, z = target.clone(), torch.eye(m.shape[0], dtype=torch.float32, device=m.device)
    target_norm = float(torch.linalg.matrix_norm(target))
    for it in range(1, MAX_ITERS + 1):
        t = matmul_identity(z, y, -0.5, 1.5)  # T = 1.5 I - 0.5 Z Y, fused
        y, z = matmul_identity(y, t), matmul_identity(t, z)
        if it % CHECK_EVERY == 0:
            residual = float(torch.linalg.matrix_norm(matmul_identity(y, y) - target)) / target_norm
            if not math.isfinite(residual):
                _fallback(f"NaN/Inf after {it} iterations (singular or ill-conditioned covariances)")
                return None
            if residual < TOLERANCE:
                return float(torch.diagonal(y).double().sum()) * math.sqrt(c)
    _fallback(f"no convergence in {MAX_ITERS} iterations (residual {residual:.2e}; singular or ill-conditioned "
              "covariances, e.g. fewer samples than dimensions)")
    return None

