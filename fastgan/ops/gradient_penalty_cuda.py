"""The CUDA kernels of the gradient-penalty ops (``csrc/gradient_penalty.cu``, in ``fastgan._C``) behind the
launchers of the Triton ones (``fastgan/kernels/gradient_penalty.py``): the same four functions with the same
arguments, tensors (N, ...) contiguous, a sample = D elements, float32 arithmetic."""
from __future__ import annotations

import torch

from .. import _backend
from ._op import DTYPE_CODE, cuda_where

TILE_BYTES = 8192  # of a sample per block of the squared-norm partials: gp::TILE_BYTES in csrc/gradient_penalty.h


def _dims(t: torch.Tensor) -> tuple[int, int]:
    N = t.shape[0]
    return N, t.numel() // N


def n_tiles(D: int, dtype: torch.dtype) -> int:
    """Tiles (blocks) of a sample of D elements: the row length of the squared-norm partials."""
    return -(-D * dtype.itemsize // TILE_BYTES)


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, out: torch.Tensor) -> None:
    """out <- fake + eps (real - fake) per sample; real, fake, out (N, ...) contiguous, eps (N,) float32."""
    N, D = _dims(real)
    _backend.extension().gradient_penalty_interpolate(real.data_ptr(), fake.data_ptr(), eps.data_ptr(),
                                                      out.data_ptr(), N, D, DTYPE_CODE[real.dtype],
                                                      *cuda_where(real.device))


def interpolate_backward(g: torch.Tensor, eps: torch.Tensor, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
    """d_real <- eps g, d_fake <- (1 - eps) g per sample; all (N, ...) contiguous, eps (N,) float32."""
    N, D = _dims(g)
    _backend.extension().gradient_penalty_interpolate_backward(g.data_ptr(), eps.data_ptr(), d_real.data_ptr(),
                                                               d_fake.data_ptr(), N, D, DTYPE_CODE[g.dtype],
                                                               *cuda_where(g.device))


def squared_norms(g: torch.Tensor) -> torch.Tensor:
    """(N,) float32 per-sample sum of squares of g (N, ...) contiguous."""
    N, D = _dims(g)
    tiles = n_tiles(D, g.dtype)
    part = torch.empty((N, tiles), dtype=torch.float32, device=g.device)
    norms = torch.empty(N, dtype=torch.float32, device=g.device)
    _backend.extension().gradient_penalty_squared_norms(g.data_ptr(), part.data_ptr(), tiles, norms.data_ptr(), N,
                                                        D, DTYPE_CODE[g.dtype], *cuda_where(g.device))
    return norms


def scale_rows(g: torch.Tensor, coef: torch.Tensor, out: torch.Tensor) -> None:
    """out <- coef_n g_n; g, out (N, ...) contiguous, coef (N,) float32."""
    N, D = _dims(g)
    _backend.extension().gradient_penalty_scale_rows(g.data_ptr(), coef.data_ptr(), out.data_ptr(), N, D,
                                                     DTYPE_CODE[g.dtype], *cuda_where(g.device))
