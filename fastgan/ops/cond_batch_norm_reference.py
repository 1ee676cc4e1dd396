"""Conditional batch norm in eager torch: the reference the kernels are tested against (float64 capable), the
composite backward that double backward differentiates, and the shape helpers every backend uses.

    y = act((x - mean_c) * invstd_c * weight[n, c] + bias[n, c]),  invstd_c = 1 / sqrt(var_c + eps)

Names used throughout the op: ``batch_stats`` is the (2, C) pair (mean, invstd) of the batch (training);
``running_stats`` the (2, C) pair (running_mean, running_var) (eval); x is seen as (N, C, HW).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..activations import BY_CODE


class Config(NamedTuple):
    """Everything about a call but its tensors. (A NamedTuple: built on every call, and a frozen dataclass's
    __init__ costs a Python-level setattr per field.)"""

    training: bool
    momentum: float
    eps: float
    act: int  # a code of fastgan.activations
    slope: float
    backend: str
    process_group: object = None  # the torch.distributed group when statistics are synced, else None
    sync: bool = False


def kernel_layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(x in a layout the kernels read, channels_last). Other layouts are copied to NCHW."""
    if x.is_contiguous():
        return x, False
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def like_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def dims(x: torch.Tensor) -> tuple[int, int, int]:
    """(N, C, HW) of x (N, C, ...)."""
    shape = x.shape
    if len(shape) == 4:
        return shape[0], shape[1], shape[2] * shape[3]
    return shape[0], shape[1], math.prod(shape[2:])


def as_matrix(t, C, dtype):
    """weight or bias as an (N, C) or (1, C) matrix of dtype (None stays None)."""
    if t is None:
        return None
    return t.to(dtype).reshape(-1 if t.dim() == 2 else 1, C)


def batch_moments(x):
    """(mean, M2) per channel over (N, HW), in x's dtype; x is (N, C, HW)."""
    mean = x.mean(dim=(0, 2))
    m2 = (x - mean[None, :, None]).square().sum(dim=(0, 2))
    return mean, m2


def invstd_of(running_stats, eps, dtype):
    """(mean, invstd) in ``dtype`` from (running_mean, running_var) (computed in ``dtype``: running statistics
    of a half-precision module are float16)."""
    return torch.stack([running_stats[0].to(dtype), torch.rsqrt(running_stats[1].to(dtype) + eps)])


def forward(x, weight, bias, mean_invstd, cfg):
    """y from x (N, C, ...) in the accumulation dtype and ``mean_invstd`` (2, C): a new tensor (not a view of
    one, which in-place activations on the output could not modify), laid out like x."""
    C = x.shape[1]
    tail = (1,) * (x.dim() - 2)
    scale = mean_invstd[1].view(1, C, *tail)
    if weight is not None:
        scale = as_matrix(weight, C, x.dtype).view(-1, C, *tail) * scale
    z = (x - mean_invstd[0].view(1, C, *tail)) * scale
    if bias is not None:
        z = z + as_matrix(bias, C, x.dtype).view(-1, C, *tail)
    return BY_CODE[cfg.act].forward(z, cfg.slope)


def composite_backward(gy, x, weight, bias, mean_invstd, cfg, inv_m=None, reduce_sums=None):
    """(dx, dweight, dbias) from differentiable torch ops; x, gy are (N, C, HW) in the accumulation dtype.

    With ``mean_invstd`` None (training) mean and invstd are recomputed from x, so that the result is
    differentiable in x as well (double backward). ``reduce_sums`` all-reduces (S1, S2) across processes when
    synced.
    """
    N, C, HW = x.shape
    if mean_invstd is None:
        mean, m2 = batch_moments(x)
        invstd = torch.rsqrt(m2 / (N * HW) + cfg.eps)
    else:
        mean, invstd = mean_invstd[0], mean_invstd[1]
    gamma = as_matrix(weight, C, x.dtype) if weight is not None else torch.ones((1, C), dtype=x.dtype,
                                                                                 device=x.device)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    z = xhat * gamma[:, :, None]
    if bias is not None:
        z = z + as_matrix(bias, C, x.dtype)[:, :, None]
    g = BY_CODE[cfg.act].backward(gy, z, cfg.slope)
    a = g.sum(dim=2)
    b = (g * xhat).sum(dim=2)
    if not cfg.training:
        dx = g * (gamma * invstd[None, :])[:, :, None]
    else:
        s12 = torch.stack([(gamma * a).sum(0), (gamma * b).sum(0)])
        if reduce_sums is not None:
            s12 = reduce_sums(s12)
        inv_m = 1.0 / (N * HW) if inv_m is None else inv_m
        dx = invstd[None, :, None] * (gamma[:, :, None] * g - (s12[0][None, :, None]
                                                               + xhat * s12[1][None, :, None]) * inv_m)
    dw = db = None
    if weight is not None:
        dw = (b if weight.dim() == 2 else b.sum(0)).to(weight.dtype)
    if bias is not None:
        db = (a if bias.dim() == 2 else a.sum(0)).to(bias.dtype)
    return dx, dw, db
