"""Masked convolution with the gated epilogue (PixelCNN's layers): the functional op, dispatch to the Triton
kernel, torch.library registration and autograd (double backward included).

    pre = conv2d(pad(x), weight * mask, bias) + add,   y = tanh(pre_a) * sigmoid(pre_b)  (gate)  or  y = pre

mask and padding as ``masked_conv2d_reference.py`` defines them: the weight's tap ``anchor`` over the output pixel
(default the centre), taps after it in raster order zero under mask A or B, and at the anchor the sub-pixel order
(R -> G -> B) of the channels; mask None keeps every tap (the vertical stack's (k // 2 + 1) x k half-kernel with
its anchor on the last row). The Triton kernel computes only the taps the mask keeps (a 3x3 mask B: 5 of 9) and the
gate in its epilogue. The backward is PyTorch's: the gate's derivative from the kept pre-activation, then
``aten.convolution_backward`` (cuDNN on a GPU), differentiable, so double backward works. One difference from
eager ``conv2d(x, weight * mask)`` (the torch backend): a NaN or Inf that only masked taps read does not reach the
output (the kernel does not compute 0 * NaN).

The op's files: ``masked_conv2d_reference.py`` (eager reference, masks, composite backward), this file (host code),
``fastgan/kernels/masked_conv2d.py`` (Triton kernel and launcher), ``fastgan/nn/masked_conv2d.py`` (module). No
CUDA C++ kernel: the backends are torch and triton.

Registered op: ``fastgan::masked_conv2d`` -> (y, pre) (pre (N, C_out, H, W) when kept, else empty).
"""
from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format

from .. import _backend
from . import _op
from . import masked_conv2d_reference as ref

OP = "masked_conv2d"
_backend.register_op(OP, ("torch", "triton"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.masked_conv2d")
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _geom(kernel, anchor, mask, sub_pixels, gate) -> ref.Geometry:
    return ref.Geometry(tuple(kernel), tuple(anchor), mask, sub_pixels, gate)


# ---------------------------------------------------------------- implementation


def _impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, add: torch.Tensor | None,
          anchor: list[int], mask: int, sub_pixels: int, gate: bool, keep_pre: bool,
          backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    geom = _geom(weight.shape[2:], anchor, mask, sub_pixels, gate)
    fmt = suggest_memory_format(x)
    if backend == "torch":
        y, pre = ref.forward(x, weight, bias, add, geom)
        y = y.contiguous(memory_format=fmt)
        return y, (pre.contiguous(memory_format=fmt) if keep_pre and gate else _empty(x))
    N, _, H, W = x.shape
    c_pre = weight.shape[0]
    y = torch.empty((N, c_pre // 2 if gate else c_pre, H, W), dtype=x.dtype, device=x.device, memory_format=fmt)
    pre = torch.empty((N, c_pre, H, W), dtype=x.dtype, device=x.device, memory_format=fmt) if keep_pre and gate \
        else None
    # the kernel reads the masked weight as (taps, C_in, C_out): output channels contiguous, the skipped taps left out
    packed = (weight * ref.mask(weight, geom)).permute(2, 3, 1, 0).reshape(-1, weight.shape[1], c_pre)
    packed = packed[:geom.taps].contiguous()
    add = None if add is None else add.expand(N, c_pre, H, W)
    left, _, top, _ = geom.padding
    _LAUNCH[backend].masked_conv2d(x, packed, bias, add, geom.kernel[1], geom.taps, top, left, y, pre, gate)
    return y, (pre if pre is not None else _empty(x))


def _empty(x):
    return x.new_empty((0,))


def _fake(x, weight, bias, add, anchor, mask, sub_pixels, gate, keep_pre, backend):
    N, _, H, W = x.shape
    c_pre = weight.shape[0]
    fmt = suggest_memory_format(x)
    y = torch.empty((N, c_pre // 2 if gate else c_pre, H, W), dtype=x.dtype, device=x.device, memory_format=fmt)
    pre = torch.empty((N, c_pre, H, W), dtype=x.dtype, device=x.device, memory_format=fmt) if keep_pre and gate \
        else _empty(x)
    return y, pre


def _setup_context(ctx, inputs, output):
    x, weight, bias, add, anchor, mask, sub_pixels, gate, keep_pre, backend = inputs
    y, pre = output
    ctx.geom = _geom(weight.shape[2:], anchor, mask, sub_pixels, gate)
    ctx.has_bias, ctx.add_shape = bias is not None, (None if add is None else tuple(add.shape))
    ctx.save_for_backward(x, weight, bias, add, pre if gate else None)


def _backward(ctx, gy, gpre):
    x, weight, bias, add, pre = ctx.saved_tensors
    need = ctx.needs_input_grad
    if pre is not None and torch.is_grad_enabled():  # double backward: the pre-activation as a function of x, w
        pre = ref.pre_activation(x, weight, bias, add, ctx.geom)
    gpre = gpre if gpre is not None and gpre.numel() else None
    dx, dw, db, dadd = ref.composite_backward(gy, gpre, x, weight, pre, ctx.has_bias, ctx.add_shape, ctx.geom,
                                              need[:4])
    return (dx, dw, db, dadd) + (None,) * (len(need) - 4)


_MASKED_CONV2D = _op.DifferentiableOp(OP, _impl, fake=_fake, setup_context=_setup_context, backward=_backward)


# ---------------------------------------------------------------- validation


def _kernel_limit(x: torch.Tensor) -> str | None:
    N, _, H, W = x.shape
    if N * H * W >= 2 ** 31:
        return f"indexes the output pixels with 32-bit integers; x of shape {tuple(x.shape)} is too large"
    return None


def _check(x, weight, bias, add, mask, sub_pixels, anchor, gate, where) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{where}: x and weight must be tensors, got {type(x).__name__} and {type(weight).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{where}: x has dtype {x.dtype}; use float32, float16, bfloat16 or float64")
    if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"{where}: x must be (N, C_in, H, W) and weight (C_out, C_in, kH, kW) with the same C_in, got "
                         f"x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    c_out = weight.shape[0]
    for name, t, shape in (("weight", weight, None), ("bias", bias, (c_out,)), ("add", add, None)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a tensor or None, got {type(t).__name__}")
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"{where}: {name} is {t.dtype} on {t.device} but x is {x.dtype} on {x.device}; cast one "
                            "of them (e.g. model.to(dtype))")
        if shape is not None and tuple(t.shape) != shape:
            raise ValueError(f"{where}: {name} has shape {tuple(t.shape)}, expected {shape}")
    out_shape = (x.shape[0], c_out, x.shape[2], x.shape[3])
    if add is not None and (add.dim() != 4 or any(a not in (1, o) for a, o in zip(add.shape, out_shape))):
        raise ValueError(f"{where}: add has shape {tuple(add.shape)}; it must broadcast to the pre-activation's "
                         f"{out_shape}, e.g. (N, C_out, 1, 1) for a per-sample bias")
    if mask not in ref.MASKS:
        raise ValueError(f"{where}: mask must be 'A', 'B' or None, got {mask!r}")
    if isinstance(sub_pixels, bool) or not isinstance(sub_pixels, int) or sub_pixels < 1:
        raise ValueError(f"{where}: sub_pixels must be a positive int (3 for RGB), got {sub_pixels!r}")
    if gate and c_out % 2:
        raise ValueError(f"{where}: gate=True splits the {c_out} output channels into two halves: use an even number")
    kh, kw = weight.shape[2:]
    if not (0 <= anchor[0] < kh and 0 <= anchor[1] < kw):
        raise ValueError(f"{where}: anchor {tuple(anchor)} is not a tap of the {kh} x {kw} kernel")


# ---------------------------------------------------------------- public functional API


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, mask: str | None = "B",
                  sub_pixels: int = 1, anchor: tuple[int, int] | None = None, gate: bool = False,
                  add: torch.Tensor | None = None, return_pre: bool = False, backend: str | None = None,
                  check_finite: bool = False):
    """PixelCNN's masked convolution, computing only the taps the mask keeps, optionally with the gated unit.

    Args:
        x: (N, C_in, H, W) float32, float16 or bfloat16 (float64 on the torch backend); any strides.
        weight: (C_out, C_in, kH, kW), the dtype and device of x (any kernel size); bias: (C_out,) or None.
        mask: 'A' (the first layer: a sub-pixel does not see itself), 'B' (after it), or None (every tap).
        sub_pixels: the number of sub-pixel groups the channels split into in order (3 for RGB, 1 for grey).
        anchor: the tap (row, column) over the output pixel, default (kH // 2, kW // 2); the output has x's size.
        gate: y = tanh(pre[:, :C_out/2]) * sigmoid(pre[:, C_out/2:]) (van den Oord et al. 2016's gated unit).
        add: a tensor broadcast to the pre-activation (N, C_out, H, W) and added before the gate (the vertical
            stack's contribution, a class embedding (N, C_out, 1, 1)), or None.
        return_pre: also return the pre-activation (N, C_out, H, W) (the gated PixelCNN feeds the vertical one on).
        backend: 'torch', 'triton' or 'auto'; check_finite: raise on NaN / Inf in the inputs (a sync).

    Returns:
        y (N, C_out / 2 if gate else C_out, H, W) in x's dtype (channels_last when x is); ``(y, pre)`` with
        ``return_pre``. Differentiable in x, weight, bias and add, double backward included.
    """
    where = "masked_conv2d"
    if anchor is None and isinstance(weight, torch.Tensor) and weight.dim() == 4:
        anchor = (weight.shape[2] // 2, weight.shape[3] // 2)
    anchor = tuple(anchor) if anchor is not None else (0, 0)
    _check(x, weight, bias, add, mask, sub_pixels, anchor, gate, where)
    if check_finite:
        _op.check_finite(where, (("x", x), ("weight", weight), ("bias", bias), ("add", add)))
    if x.numel() == 0 or weight.numel() == 0:
        _backend.resolve(OP, x.device, x.dtype, backend)  # (still refuses an unavailable backend)
        name = "torch"
    else:
        name = _op.resolve(OP, x.device, x.dtype, backend, where, _kernel_limit, x)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, add))
    keep_pre = gate and (grad or return_pre)
    args = (x, weight, bias, add, list(anchor), ref.MASKS[mask], sub_pixels, bool(gate), keep_pre, name)
    if _op.traced(x):
        y, pre = torch.ops.fastgan.masked_conv2d(*args)
    elif grad:
        y, pre = _MASKED_CONV2D.Function.apply(*args)
    else:
        y, pre = _impl(*args)
    if return_pre:
        return y, (pre if gate else y)
    return y
