"""Transposed convolution with a fused epilogue: the functional op, dispatch to the Triton kernel, torch.library
registration and autograd (double backward included); and nearest x2 upsampling + conv2d as one such op.

    y = act(F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation))

exactly ``F.conv_transpose2d``'s semantics (weight (C_in, C_out / groups, kH, kW)), then an activation of
``fastgan.activations``; with ``bn_stats=True`` also each output channel's (count, mean, M2), which
:func:`fastgan.conditional_batch_norm` takes (``stats=``) instead of reading y again for its statistics.

The Triton kernel computes the sub-pixel (phase) decomposition (``conv_transpose2d_plan.py``): each of the
stride^2 output phases a dense implicit GEMM over x, all in one launch. The backward is PyTorch's (cuDNN's on a
GPU): dy through the activation's derivative (taken from y), then ``aten.convolution_backward`` (dx a strided
convolution, dweight a weight gradient), which is differentiable, so double backward works.

The op's files: ``conv_transpose2d_plan.py`` (phases, argument checks, launch table), ``conv_transpose2d_reference.py``
(eager reference, composite backward, the upsample weight merge), this file (host code),
``fastgan/kernels/conv_transpose2d.py`` (Triton kernel and launcher), ``fastgan/nn/conv_transpose2d.py`` (modules).
No CUDA C++ kernel: the backends are torch and triton.

Registered op: ``fastgan::conv_transpose2d`` -> (y, stats) (stats (3, C_out), or empty when not asked for).
"""
from __future__ import annotations

import functools

import torch
from torch._prims_common import suggest_memory_format

from .. import _backend, activations
from . import _op
from . import conv_transpose2d_plan as plan
from . import conv_transpose2d_reference as ref

OP = "conv_transpose2d"
_backend.register_op(OP, ("torch", "triton"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.conv_transpose2d")
_INT32_MAX = 2 ** 31 - 1


def _layout(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The output's memory format, as F.conv_transpose2d picks it: channels_last where the strides of x or of the
    weight are channels_last's (a 1x1 or single-channel x by its exact strides)."""
    if torch.channels_last in (suggest_memory_format(x), suggest_memory_format(weight)):
        return torch.channels_last
    return torch.contiguous_format


@functools.lru_cache(maxsize=1024)
def _checked_geometry(x_shape, weight_shape, args, types) -> plan.Geometry:
    return plan.geometry(x_shape, weight_shape, *args)


def _geometry(x_shape, weight_shape, stride, padding, output_padding, groups, dilation) -> plan.Geometry:
    """plan.geometry, cached: the arguments of a layer are checked once, not on every call. (The key holds the
    arguments' types, so that True is not taken for a cached 1; symbolic shapes are checked without the cache.)"""
    args = tuple(tuple(a) if isinstance(a, list) else a for a in (stride, padding, output_padding, groups, dilation))
    if torch.compiler.is_compiling():  # traced once per graph anyway (and dynamo warns about tracing a cache)
        return plan.geometry(x_shape, weight_shape, *args)
    types = tuple(tuple(map(type, a)) if isinstance(a, tuple) else type(a) for a in args)
    try:
        return _checked_geometry(tuple(x_shape), tuple(weight_shape), args, types)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
        return plan.geometry(x_shape, weight_shape, *args)


# ---------------------------------------------------------------- implementation


def _impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: list[int], padding: list[int],
          output_padding: list[int], groups: int, dilation: list[int], act: int, slope: float, bn_stats: bool,
          backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if backend == "torch":
        y = ref.forward(x, weight, bias, geom, act, slope).contiguous(memory_format=_layout(x, weight))
        return y, (ref.moments(y) if bn_stats else _no_stats(x))
    c_out = weight.shape[1] * groups
    y = torch.empty((x.shape[0], c_out, *geom.out_size), dtype=x.dtype, device=x.device,
                    memory_format=_layout(x, weight))
    stats = torch.empty((3, c_out), dtype=torch.float32, device=x.device) if bn_stats else None
    # the kernel reads the weight as (kH, kW, C_in, C_out / groups): output channels contiguous
    _LAUNCH[backend].conv_transpose2d(x, weight.permute(2, 3, 0, 1).contiguous(), bias, plan.for_kernels(geom), y,
                                      act, slope, stats)
    return y, (stats if bn_stats else _no_stats(x))


def _no_stats(x):
    return x.new_empty((0,), dtype=torch.float32)


def _fake(x, weight, bias, stride, padding, output_padding, groups, dilation, act, slope, bn_stats, backend):
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    c_out = weight.shape[1] * groups
    y = torch.empty((x.shape[0], c_out, *geom.out_size), dtype=x.dtype, device=x.device,
                    memory_format=_layout(x, weight))
    acc = _op.acc_dtype(x.dtype)
    return y, (x.new_empty((3, c_out), dtype=acc) if bn_stats else _no_stats(x))


def _setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, groups, dilation, act, slope, bn_stats, backend = inputs
    y, stats = output
    ctx.mark_non_differentiable(stats)
    ctx.save_for_backward(x, weight, y if act != activations.NONE else None)
    ctx.geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    ctx.has_bias, ctx.act, ctx.slope = bias is not None, act, slope


def _backward(ctx, gy, gstats):
    x, weight, y = ctx.saved_tensors
    need = ctx.needs_input_grad
    dx, dw, db = ref.composite_backward(gy, x, weight, y, ctx.has_bias, ctx.geom, ctx.act, ctx.slope, need[:3])
    return (dx, dw, db) + (None,) * (len(need) - 3)


_CONV_TRANSPOSE2D = _op.DifferentiableOp(OP, _impl, fake=_fake, setup_context=_setup_context, backward=_backward)


# ---------------------------------------------------------------- validation


def _check(x, weight, bias, where):
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{where}: x and weight must be tensors, got {type(x).__name__} and {type(weight).__name__}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"{where}: x has dtype {x.dtype}; use float32, float16, bfloat16 or float64")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a tensor or None, got {type(t).__name__}")
        if t.dtype != x.dtype:
            raise TypeError(f"{where}: {name} has dtype {t.dtype} but x has {x.dtype}; cast one of them (e.g. "
                            "model.to(dtype)) or run under torch.autocast")
        if t.device != x.device:
            raise ValueError(f"{where}: {name} is on {t.device} but x is on {x.device}")


def _too_large_for_kernels(x, weight, geom):
    N = x.shape[0]
    c_out = weight.shape[1] * geom.groups
    per_sample = max(x[0].numel(), c_out * geom.out_size[0] * geom.out_size[1])
    if per_sample > _INT32_MAX or N * geom.out_size[0] * geom.out_size[1] > _INT32_MAX:
        return f"indexes a sample and the output pixels with 32-bit integers; x of shape {tuple(x.shape)} is too large"
    return None


def _autocast(x, weight, bias):
    """The tensors cast as autocast casts F.conv_transpose2d's where it is on for x's device: floating-point tensors
    other than float64 to its dtype (float64 is left alone)."""
    dev = x.device.type if isinstance(x, torch.Tensor) else None
    if dev in ("cuda", "cpu") and torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)

        def cast(t):
            ok = isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
            return t.to(dt) if ok else t
        return cast(x), cast(weight), cast(bias)
    return x, weight, bias


# ---------------------------------------------------------------- public functional API


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1, activation: str | tuple | None = None,
                     negative_slope: float = 0.01, bn_stats: bool = False, *, backend: str | None = None,
                     check_finite: bool = False):
    """``F.conv_transpose2d`` with a fused activation and, optionally, the output's batch-norm statistics.

    Args:
        x: (N, C_in, H, W) (or unbatched (C_in, H, W)) float32, float16 or bfloat16 (float64 on the torch
            backend); any strides (NCHW and channels_last run without a copy).
        weight: (C_in, C_out / groups, kH, kW), the dtype and device of x; bias: (C_out,) or None.
        stride, padding, output_padding, dilation: ints or pairs; groups: an int; as ``F.conv_transpose2d``.
        activation: None, 'relu', 'leaky_relu' (slope ``negative_slope``; ``('leaky_relu', 0.2)`` also works),
            'tanh' or 'sigmoid', applied after the bias.
        bn_stats: also return ``stats`` (3, C_out) float32 (float64 for float64 x): per output channel the count,
            mean and M2 (sum of squared deviations) of y as stored, for ``conditional_batch_norm(..., stats=)``;
            not differentiable (batch norm's backward differentiates its statistics through y itself).
        backend: 'torch', 'triton' or 'auto' (default: see ``fastgan.use_backend``); float32 follows
            ``torch.backends.cudnn.allow_tf32`` on the triton backend, as cuDNN does.
        check_finite: raise if x, weight or bias holds NaN or Inf (a pass and a host sync).

    Returns:
        y (N, C_out, H_out, W_out) in the dtype of x, channels_last where x or the weight is (as torch picks it);
        ``(y, stats)`` with ``bn_stats``.
        Differentiable in x, weight and bias, double backward included. Under ``torch.autocast`` the inputs are
        cast to its dtype first, as for ``F.conv_transpose2d``.
    """
    where = "conv_transpose2d"
    x, weight, bias = _autocast(x, weight, bias)
    _check(x, weight, bias, where)
    if x.dim() == 3:  # unbatched (C_in, H, W), as F.conv_transpose2d takes it
        out = conv_transpose2d(x.unsqueeze(0), weight, bias, stride, padding, output_padding, groups, dilation,
                               activation, negative_slope, bn_stats, backend=backend, check_finite=check_finite)
        return (out[0].squeeze(0), out[1]) if bn_stats else out.squeeze(0)
    geom = _geometry(x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if bias is not None and tuple(bias.shape) != (weight.shape[1] * groups,):
        raise ValueError(f"{where}: bias has shape {tuple(bias.shape)}, expected ({weight.shape[1] * groups},): "
                         "one value per output channel")
    act, slope = activations.lookup(activation, negative_slope, where)
    if check_finite:
        _op.check_finite(where, (("x", x), ("weight", weight), ("bias", bias)))
    if x.numel() == 0 or weight.numel() == 0:
        _backend.resolve(OP, x.device, x.dtype, backend)  # (still refuses an unavailable backend)
        name = "torch"
    else:
        name = _op.resolve(OP, x.device, x.dtype, backend, where, _too_large_for_kernels, x, weight, geom)
    args = (x, weight, bias, list(geom.stride), list(geom.padding), list(geom.output_padding), geom.groups,
            list(geom.dilation), act.code, slope, bool(bn_stats), name)
    if _op.traced(x):
        y, stats = torch.ops.fastgan.conv_transpose2d(*args)
    elif torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        y, stats = _CONV_TRANSPOSE2D.Function.apply(*args)
    else:
        y, stats = _impl(*args)
    return (y, stats) if bn_stats else y


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1,
                    activation: str | tuple | None = None, negative_slope: float = 0.01, bn_stats: bool = False, *,
                    backend: str | None = None, check_finite: bool = False):
    """Nearest x2 upsampling then ``F.conv2d(., weight, bias, padding=k // 2, groups=groups)`` (BigGAN's and SNGAN's
    generator upsampling), computed as one transposed convolution with merged weights: for k = 3, four 2x2 phase
    convolutions (2.25x fewer multiply-adds, no upsampled tensor in memory).

    Args:
        x: (N, C_in, H, W); weight: the conv2d weight (C_out, C_in / groups, k, k), k odd; bias (C_out,) or None.
        The rest as :func:`conv_transpose2d`.

    Returns:
        y (N, C_out, 2H, 2W) (and stats with ``bn_stats``); differentiable in x, weight and bias (through the merge).
    """
    where = "upsample_conv2d"
    x, weight, bias = _autocast(x, weight, bias)
    _check(x, weight, bias, where)
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"{where}: weight must be a conv2d weight (C_out, C_in / groups, k, k) with k odd (padding "
                         f"k // 2 keeps the size), got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{where}: groups must be a positive int dividing C_out = {weight.shape[0]}, got {groups!r}")
    if x.dim() not in (3, 4) or x.shape[-3] != weight.shape[1] * groups:
        raise ValueError(f"{where}: x must be (N, C_in, H, W) or (C_in, H, W) with C_in = {weight.shape[1] * groups} "
                         f"(weight {tuple(weight.shape)}, groups {groups}), got shape {tuple(x.shape)}")
    merged, padding = ref.upsample_weight(weight, groups)
    return conv_transpose2d(x, merged, bias, 2, padding, 0, groups, 1, activation, negative_slope, bn_stats,
                            backend=backend, check_finite=check_finite)
