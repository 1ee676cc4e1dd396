"""Eager reference of the codebook search (the nearest code of each row, VQ-VAE's quantisation step).

    d(n, k) = ||z_n||^2 - 2 z_n . e_k + ||e_k||^2,   index_n = argmin_k d(n, k),   distance_n = d(n, index_n)

Ties go to the lowest index, as ``torch.argmin`` does. Computed in the accumulation dtype (float32, float64 for
float64 inputs); this is what every kernel is tested against. Also the EMA codebook statistics (``ema_update_``).
"""
from __future__ import annotations

import torch

from ._op import acc_dtype


def search(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (N,) int64, squared distances (N,) in the accumulation dtype) of the nearest rows of ``codebook``
    (K, D) to the rows of ``z`` (N, D)."""
    acc = acc_dtype(z.dtype)
    zf, ef = z.to(acc), codebook.to(acc)
    d = zf.square().sum(1, keepdim=True) - 2 * zf @ ef.T + ef.square().sum(1)[None, :]
    if d.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=z.device), torch.zeros(0, dtype=acc, device=z.device)
    index = d.argmin(1)
    return index, d.gather(1, index[:, None])[:, 0]


def ema_update_(ema_count: torch.Tensor, ema_sum: torch.Tensor, z: torch.Tensor, index: torch.Tensor,
                counts: torch.Tensor, decay: float) -> None:
    """ema_count (K,) <- decay ema_count + (1 - decay) counts; ema_sum (K, D) <- decay ema_sum + (1 - decay) x the
    sum of the rows of z (N, D) assigned to each code (index (N,), counts = bincount(index, minlength=K)): a
    segmented sum of the rows sorted by code (stable: fixed order, deterministic)."""
    order = torch.argsort(index, stable=True)
    sums = torch.segment_reduce(z[order].to(ema_sum.dtype), "sum", lengths=counts, axis=0)
    ema_count.mul_(decay).add_(counts.to(ema_count.dtype), alpha=1 - decay)
    ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
