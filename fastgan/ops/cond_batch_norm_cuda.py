"""The CUDA kernels of conditional batch norm (``csrc/cond_batch_norm*.cu``, in ``fastgan._C``) behind the launchers
of the Triton ones (``fastgan/kernels/cond_batch_norm.py``): the same three stage functions with the same arguments,
so the op's host code calls a stage without asking which backend runs it. One stage is one to three launches with
the shape, the extension and the stream looked up once."""
from __future__ import annotations

from .. import _backend
from ._op import DTYPE_CODE, cuda_where
from .cond_batch_norm_reference import dims


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def moments(x, part, stats, running_mean, running_var, channels_last, momentum, eps, raw) -> None:
    N, C, HW = dims(x)
    ext, (device, stream) = _backend.extension(), cuda_where(x.device)
    ext.cond_batch_norm_partial_stats(x.data_ptr(), part.data_ptr(), N, C, HW, channels_last, DTYPE_CODE[x.dtype],
                                      device, stream)
    ext.cond_batch_norm_finalize_stats(part.data_ptr(), stats.data_ptr(), _ptr(running_mean), _ptr(running_var), N,
                                       C, HW, float(momentum), float(eps), running_mean is not None and not raw, raw,
                                       device, stream)


def apply(x, y, mean, stat, weight, bias, w_stride_n, channels_last, act, slope, eval_mode, eps) -> None:
    N, C, HW = dims(x)
    _backend.extension().cond_batch_norm_apply(
        x.data_ptr(), y.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias), N, C, HW, w_stride_n,
        channels_last, act, float(slope), eval_mode, float(eps), DTYPE_CODE[x.dtype], *cuda_where(x.device))


def backward(dy, x, mean, stat, weight, bias, sums, k, dx, w_stride_n, channels_last, act, slope, eval_mode, eps,
             inv_m, reduce_sums=None) -> None:
    N, C, HW = dims(x)
    ext, (device, stream), code = _backend.extension(), cuda_where(x.device), DTYPE_CODE[x.dtype]
    affine = (dy.data_ptr(), x.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias))
    shape = (N, C, HW, w_stride_n, channels_last, act, float(slope), eval_mode, float(eps))
    ext.cond_batch_norm_backward_reduce(*affine, sums.data_ptr(), *shape, code, device, stream)
    ext.cond_batch_norm_backward_finalize(sums.data_ptr(), _ptr(weight), k.data_ptr(), N, C, w_stride_n, device,
                                          stream)
    if reduce_sums is not None:
        k[:2] = reduce_sums(k[:2])
    ext.cond_batch_norm_backward_dx(*affine, k.data_ptr(), dx.data_ptr(), *shape, float(inv_m), code, device, stream)
