"""The CUDA kernels of conditional batch norm (``csrc/cond_batch_norm*.cu``, in ``fastgan._C``) behind the launchers
of the Triton ones (``fastgan/kernels/cond_batch_norm.py``): the same functions with the same arguments, so the
op's host code calls a stage without asking which backend runs it."""
from __future__ import annotations

from .. import _backend
from ._op import DTYPE_CODE, cuda_where
from .cond_batch_norm_reference import dims


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def partial_stats(x, part, channels_last) -> None:
    N, C, HW = dims(x)
    _backend.extension().cond_batch_norm_partial_stats(x.data_ptr(), part.data_ptr(), N, C, HW, channels_last,
                                                       DTYPE_CODE[x.dtype], *cuda_where(x.device))


def finalize_stats(part, stats, running_mean, running_var, N, C, HW, momentum, eps, raw) -> None:
    _backend.extension().cond_batch_norm_finalize_stats(
        part.data_ptr(), stats.data_ptr(), _ptr(running_mean), _ptr(running_var), N, C, HW, float(momentum),
        float(eps), running_mean is not None and not raw, raw, *cuda_where(part.device))


def apply(x, y, mean, stat, weight, bias, w_stride_n, channels_last, act, slope, eval_mode, eps) -> None:
    N, C, HW = dims(x)
    _backend.extension().cond_batch_norm_apply(
        x.data_ptr(), y.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias), N, C, HW, w_stride_n,
        channels_last, act, float(slope), eval_mode, float(eps), DTYPE_CODE[x.dtype], *cuda_where(x.device))


def backward_reduce(dy, x, mean, stat, weight, bias, sums, w_stride_n, channels_last, act, slope, eval_mode,
                    eps) -> None:
    N, C, HW = dims(x)
    _backend.extension().cond_batch_norm_backward_reduce(
        dy.data_ptr(), x.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias), sums.data_ptr(), N,
        C, HW, w_stride_n, channels_last, act, float(slope), eval_mode, float(eps), DTYPE_CODE[x.dtype],
        *cuda_where(x.device))


def backward_finalize(sums, weight, k, N, C, w_stride_n) -> None:
    _backend.extension().cond_batch_norm_backward_finalize(sums.data_ptr(), _ptr(weight), k.data_ptr(), N, C,
                                                           w_stride_n, *cuda_where(sums.device))


def backward_dx(dy, x, mean, stat, weight, bias, k, dx, w_stride_n, channels_last, act, slope, eval_mode, eps,
                inv_m) -> None:
    N, C, HW = dims(x)
    _backend.extension().cond_batch_norm_backward_dx(
        dy.data_ptr(), x.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias), k.data_ptr(),
        dx.data_ptr(), N, C, HW, w_stride_n, channels_last, act, float(slope), eval_mode, float(eps), float(inv_m),
        DTYPE_CODE[x.dtype], *cuda_where(x.device))
