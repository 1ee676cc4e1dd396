"""The sub-pixel (phase) decomposition of a transposed convolution: the plan the transposed-convolution kernels
will compute, backend-neutral (groundwork of the conv_transpose2d op; nothing launches it yet).

``F.conv_transpose2d`` writes y[oh, ow] += x[ih, iw] W[kh, kw] wherever oh = ih s - p + kh d (rows; columns alike,
stride s, padding p, dilation d). Split the output rows by phase r = (oh + p) mod s: a row of phase r only receives
the taps kh with kh d = r (mod s), from input row ih = q - t, where q = (oh + p - r) / s counts the phase's rows and
t = (kh d - r) / s is the tap's offset. So each of the s_h s_w phases is a dense, stride-1 correlation of x with its
own taps, over the phase's own output grid, with no zero insertion and no col2im buffer; as an implicit GEMM,
M = N x rows x cols of the phase, N = C_out / groups, K = C_in / groups x its taps (k4 s2 p1, the DCGAN layer: four
phases of 2x2 taps). A phase without taps (kernel smaller than the stride) only receives the bias.
"""
from __future__ import annotations

from dataclasses import dataclass


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return tuple(value)
    raise TypeError(f"conv_transpose2d: {name} must be an int or a pair of ints, got {value!r}")


def output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int) -> int:
    """F.conv_transpose2d's output extent along one dimension."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


@dataclass(frozen=True)
class Axis:
    """One phase along one dimension: output indices first + stride * i for i < count, fed by input index
    q0 + i - offset through tap ``tap`` for each (tap, offset) in ``taps``."""

    first: int
    count: int
    q0: int
    taps: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Phase:
    rows: Axis
    cols: Axis


@dataclass(frozen=True)
class Geometry:
    """A checked transposed convolution: sizes (H_in, W_in) -> (H_out, W_out), kernel, stride, padding,
    output_padding, dilation as pairs, and groups."""

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def geometry(x_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1) -> Geometry:
    """Check the arguments of a transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out / groups, kH,
    kW) as ``F.conv_transpose2d`` takes them; raise TypeError/ValueError naming the argument."""
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    output_padding, dilation = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv_transpose2d: groups must be a positive int, got {groups!r}")
    if len(x_shape) != 4:
        raise ValueError(f"conv_transpose2d: x must have shape (N, C_in, H, W), got {tuple(x_shape)}")
    if len(weight_shape) != 4:
        raise ValueError(f"conv_transpose2d: weight must have shape (C_in, C_out / groups, kH, kW), got "
                         f"{tuple(weight_shape)}")
    c_in = x_shape[1]
    if weight_shape[0] != c_in:
        raise ValueError(f"conv_transpose2d: weight has {weight_shape[0]} input channels (dim 0) but x has {c_in}; "
                         "a transposed convolution's weight is (C_in, C_out / groups, kH, kW)")
    if c_in % groups:
        raise ValueError(f"conv_transpose2d: C_in = {c_in} is not divisible by groups = {groups}")
    for name, pair, low in (("stride", stride, 1), ("dilation", dilation, 1), ("padding", padding, 0),
                            ("output_padding", output_padding, 0)):
        if min(pair) < low:
            raise ValueError(f"conv_transpose2d: {name} must be >= {low}, got {pair}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller than the stride "
                             f"{stride} or the dilation {dilation} (as F.conv_transpose2d requires)")
    kernel = (weight_shape[2], weight_shape[3])
    out = tuple(output_size(n, k, s, p, op, d) for n, k, s, p, op, d in
                zip(x_shape[2:], kernel, stride, padding, output_padding, dilation))
    if min(out) < 1 or min(kernel) < 1:
        raise ValueError(f"conv_transpose2d: x of spatial size {tuple(x_shape[2:])} with kernel {kernel}, stride "
                         f"{stride}, padding {padding}, output_padding {output_padding} and dilation {dilation} gives "
                         f"an empty output {out}: lower the padding")
    return Geometry(tuple(x_shape[2:]), out, kernel, stride, padding, output_padding, dilation, groups)


def _axis(r: int, out: int, kernel: int, stride: int, padding: int, dilation: int) -> Axis:
    first_q = -(-(padding - r) // stride)  # the smallest q whose row q s + r - p is >= 0
    first = first_q * stride + r - padding
    count = max(0, -(-(out - first) // stride))
    taps = tuple((k, (k * dilation - r) // stride) for k in range(kernel) if (k * dilation - r) % stride == 0)
    return Axis(first, count, first_q, taps)


def phases(geom: Geometry) -> list[Phase]:
    """The s_h x s_w phases of ``geom``, with an output grid (count > 0) along both dimensions; every output
    element is in exactly one of them."""
    out = []
    for r in range(geom.stride[0]):
        rows = _axis(r, geom.out_size[0], geom.kernel[0], geom.stride[0], geom.padding[0], geom.dilation[0])
        if not rows.count:
            continue
        for c in range(geom.stride[1]):
            cols = _axis(c, geom.out_size[1], geom.kernel[1], geom.stride[1], geom.padding[1], geom.dilation[1])
            if cols.count:
                out.append(Phase(rows, cols))
    return out


def macs(geom: Geometry, n: int, c_in: int, c_out: int) -> int:
    """Multiply-adds of the phase decomposition (the taps that land inside the input counted as if all did:
    what an implicit GEMM over the phase grid computes)."""
    per_group = (c_in // geom.groups) * (c_out // geom.groups) * geom.groups
    return n * per_group * sum(p.rows.count * p.cols.count * len(p.rows.taps) * len(p.cols.taps)
                               for p in phases(geom))
