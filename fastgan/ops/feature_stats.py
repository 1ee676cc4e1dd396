"""Streaming feature moments: merge a batch into running (mean, M2) with Chan's formula, in float32.

    M2 += (X - m_b)^T (X - m_b) + n b / (n + b) (m_b - m)(m_b - m)^T,   m += (m_b - m) b / (n + b)

Centring each batch before its products is what keeps float32 accurate for features with a large mean and a
small spread (Inception features: mean ~0.3-3, std ~0.05-0.5), where float32 raw sums of x and x x^T lose
digits. Only the upper triangle of M2 is meaningful (the triton backend fills only that).

The op's files: ``feature_stats_reference.py`` (eager torch), this file (host code and registration),
``fastgan/kernels/feature_stats.py`` (Triton kernel and launcher). No CUDA version, no gradient.
"""
from __future__ import annotations

import torch

from .. import _backend
from . import _op
from . import feature_stats_reference as ref

OP = "feature_stats"
_backend.register_op(OP, ("torch", "triton"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.feature_stats")


def _kernel_update(mean, m2, x, count, backend):
    b = x.shape[0]
    if x.stride(1) != 1:
        x = x.contiguous()
    batch_mean = x.float().mean(0)
    delta = batch_mean - mean
    _LAUNCH[backend].centered_gram_update(x, batch_mean, delta, m2, count * b / (count + b))
    mean.add_(delta, alpha=b / (count + b))


def _update_impl(mean, m2, x, count, backend):
    if backend == "torch":
        ref.update(mean, m2, x, count)
    else:
        _kernel_update(mean, m2, x, count, backend)


@torch.library.custom_op("fastgan::feature_moments_update", mutates_args=("mean", "m2"))
def _update_op(mean: torch.Tensor, m2: torch.Tensor, x: torch.Tensor, count: int, backend: str) -> None:
    _update_impl(mean, m2, x, count, backend)


@_update_op.register_fake
def _(mean, m2, x, count, backend):
    return None


def feature_moments_update_(mean: torch.Tensor, m2: torch.Tensor, x: torch.Tensor, count: int,
                            backend: str | None = None) -> None:
    """Merge the batch ``x`` (b, d) into the running moments of ``count`` earlier rows, in place.

    ``mean`` (d,) and ``m2`` (d, d) are float32 tensors on x's device; x is float32, float16 or bfloat16.
    After the call, mean is the mean of all count + b rows and the upper triangle of m2 their centred scatter
    sum (x - mean)^T (x - mean).
    """
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"features must be a (batch, dim) floating-point tensor, got {tuple(x.shape)} {x.dtype}")
    d = x.shape[1]
    if mean.shape != (d,) or m2.shape != (d, d) or mean.dtype != torch.float32 or m2.dtype != torch.float32:
        raise ValueError(f"running moments must be float32 of shapes ({d},) and ({d}, {d}), got "
                         f"{tuple(mean.shape)} {mean.dtype} and {tuple(m2.shape)} {m2.dtype}")
    if not m2.is_contiguous():
        raise ValueError("m2 must be contiguous")
    if x.shape[0] == 0:
        return
    name = _backend.resolve(OP, x.device, x.dtype, backend)
    if _op.traced(x):
        torch.ops.fastgan.feature_moments_update(mean, m2, x, count, name)
    else:
        _update_impl(mean, m2, x, count, name)
