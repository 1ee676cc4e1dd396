"""The sub-pixel (phase) decomposition of a transposed convolution: the plan the transposed-convolution kernels
compute, backend-neutral.

``F.conv_transpose2d`` writes y[oh, ow] += x[ih, iw] W[kh, kw] wherever oh = ih s - p + kh d (rows; columns alike,
stride s, padding p, dilation d). Split the output rows by phase r = (oh + p) mod s: a row of phase r only receives
the taps kh with kh d = r (mod s), from input row ih = q - t, where q = (oh + p - r) / s counts the phase's rows and
t = (kh d - r) / s is the tap's offset. So each of the s_h s_w phases is a dense, stride-1 correlation of x with its
own taps, over the phase's own output grid, with no zero insertion and no col2im buffer; as an implicit GEMM,
M = N x rows x cols of the phase, N = C_out / groups, K = C_in / groups x its taps (k4 s2 p1, the DCGAN layer: four
phases of 2x2 taps). A phase without taps (kernel smaller than the stride) only receives the bias.

The kernels run every phase in one launch from a table (:func:`launch_table`): per phase a row of ``T_FIELDS``
ints (fields ``T_*``), then every phase's taps as (kernel index, offset) pairs.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

# the fields of a phase's row in the launch table (the Triton kernel reads them by these names)
T_ROWS, T_COLS, T_Q0_R, T_Q0_C, T_FIRST_R, T_FIRST_C, T_TAPS_H, T_TAPS_W, T_TAPS_AT, T_TILE0 = range(10)
T_FIELDS = 10


def _int(v) -> bool:
    """An int as torch's conv arguments take them: Python and numpy integers, symbolic ints (torch.compile with
    dynamic shapes); not bools."""
    return not isinstance(v, bool) and isinstance(v, (numbers.Integral, torch.SymInt))


def _pair(value, name: str) -> tuple[int, int]:
    if _int(value):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) in (1, 2) and all(_int(v) for v in value):
        return (value[0], value[-1])
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
    if not _int(groups) or groups < 1:
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


def for_kernels(geom: Geometry) -> Geometry:
    """The same convolution with every phase as dense as it can be: along a dimension of input size 1 the stride
    does not change the output (it only spaces input rows), so it is raised until every tap has its own phase
    (DCGAN's first layer, 1x1 -> 4x4: 16 phases of one tap, each a plain GEMM of the batch, instead of one phase
    whose 16 taps all but one read outside the input)."""
    stride = tuple(max(s, d * (k - 1) + 1) if n == 1 else s
                   for n, s, d, k in zip(geom.in_size, geom.stride, geom.dilation, geom.kernel))
    return geom if stride == geom.stride else Geometry(geom.in_size, geom.out_size, geom.kernel, stride, geom.padding,
                                                       geom.output_padding, geom.dilation, geom.groups)


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


@dataclass(frozen=True)
class LaunchTable:
    """The phases of a call as the kernels read them: ``values`` (one row of T_FIELDS ints per phase, then the
    taps), the number of phases, the most BLOCK_M tiles of output pixels a phase has, and the number of pixels in
    each tile of every phase in turn (tile T_TILE0 + t of a phase is its t-th; the counts the statistics merge)."""

    values: tuple[int, ...]
    n_phases: int
    max_tiles: int
    tile_counts: tuple[int, ...]


def launch_table(geom: Geometry, n: int, block_m: int) -> LaunchTable:
    """The launch table of ``geom`` for a batch of ``n``, with tiles of ``block_m`` output pixels (n, i, j) of a
    phase."""
    phs = phases(geom)
    rows, taps, counts = [], [], []
    taps_at = len(phs) * T_FIELDS
    for ph in phs:
        m = n * ph.rows.count * ph.cols.count
        tiles = -(-m // block_m)
        rows.append((ph.rows.count, ph.cols.count, ph.rows.q0, ph.cols.q0, ph.rows.first, ph.cols.first,
                     len(ph.rows.taps), len(ph.cols.taps), taps_at + len(taps), len(counts)))
        taps += [v for pair in ph.rows.taps + ph.cols.taps for v in pair]
        counts += [block_m] * (tiles - 1) + [m - block_m * (tiles - 1)]
    values = tuple(v for row in rows for v in row) + tuple(taps)
    return LaunchTable(values, len(phs), max((r[T_ROWS] * r[T_COLS] * n + block_m - 1) // block_m for r in rows),
                       tuple(counts))


def upsample_conv(k: int) -> tuple[list[list[int]], int]:
    """Nearest x2 upsampling then a k x k correlation with padding k // 2 (odd k) as one transposed convolution:
    (A, P) such that it equals conv_transpose2d with stride 2, padding P and the kernel A w A^T per channel pair (w
    the conv2d kernel; A a (K, k) 0/1 matrix). Output row 2m + a reads upsampled rows 2m + a + t - k // 2, which
    are input rows m + d, d = floor((a + t - k // 2) / 2); a stride-2 transposed convolution with padding P reads
    input row m + d at kernel index a + P - 2 d. (k = 3: K = 4, P = 1, i.e. four 2x2 phase convolutions.)"""
    p = k // 2
    d_lo = [(a - p) // 2 for a in range(2)]
    d_hi = [(a + k - 1 - p) // 2 for a in range(2)]
    big_p = max(2 * d_hi[a] - a for a in range(2))
    size = max(a + big_p - 2 * d_lo[a] for a in range(2)) + 1
    a_mat = [[0] * k for _ in range(size)]
    for a in range(2):
        for t in range(k):
            a_mat[a + big_p - 2 * ((a + t - p) // 2)][t] += 1
    return a_mat, big_p
