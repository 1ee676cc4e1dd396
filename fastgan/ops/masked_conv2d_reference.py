"""The eager torch reference of the masked convolution with its gated epilogue, the masks, and the composite
backward (differentiable torch ops: what double backward differentiates).

Geometry: a weight (C_out, C_in, kH, kW) whose tap ``anchor`` = (a_h, a_w) lies over the output pixel (padding
a_h on top, kH - 1 - a_h below, a_w left, kW - 1 - a_w right: the output has the input's size). With mask "A" or
"B" the taps after the anchor in raster order are zero, and at the anchor output channel o sees input channel i
iff group(i) < group(o) (A) or <= (B), channels split into ``sub_pixels`` equal groups in order (R -> G -> B; with
``gate`` each half of the output channels is split on its own). Mask None: every tap.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

MASKS = {None: 0, "A": 1, "B": 2}


class Geometry(NamedTuple):
    kernel: tuple[int, int]
    anchor: tuple[int, int]
    mask: int  # a value of MASKS
    sub_pixels: int
    gate: bool

    @property
    def taps(self) -> int:
        """The taps computed: those up to the anchor in raster order with a mask, all of them without."""
        kh, kw = self.kernel
        return self.anchor[0] * kw + self.anchor[1] + 1 if self.mask else kh * kw

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom), as F.pad takes it."""
        (kh, kw), (ah, aw) = self.kernel, self.anchor
        return aw, kw - 1 - aw, ah, kh - 1 - ah


def groups_of(n: int, g: int) -> torch.Tensor:
    """The sub-pixel group of each of n channels split into g groups in order."""
    return torch.arange(n) * g // n


def _build_mask(shape: tuple[int, ...], geom: Geometry, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    c_out, c_in, kh, kw = shape
    m = torch.ones(shape, dtype=dtype)
    if geom.mask:
        ah, aw = geom.anchor
        flat = m.view(c_out, c_in, kh * kw)
        flat[:, :, ah * kw + aw + 1:] = 0
        g_out = groups_of(c_out // 2, geom.sub_pixels).repeat(2) if geom.gate else groups_of(c_out, geom.sub_pixels)
        g_in = groups_of(c_in, geom.sub_pixels)
        allowed = g_in[None, :] < g_out[:, None] if geom.mask == MASKS["A"] else g_in[None, :] <= g_out[:, None]
        m[:, :, ah, aw] = allowed.to(dtype)
    return m.to(device)


_cached_mask = functools.lru_cache(maxsize=256)(_build_mask)


def mask(weight: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """The 0/1 mask of ``weight``'s shape, dtype and device (cached; built afresh while traced: a backward that
    torch.compile traces may not hold a real tensor)."""
    args = (tuple(weight.shape), geom, weight.dtype, weight.device)
    if torch.compiler.is_compiling() or type(weight) not in (torch.Tensor, torch.nn.Parameter):
        return _build_mask(*args)
    return _cached_mask(*args)


def gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) of the halves (a, b) of pre's channels (dim 1)."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def gate_backward(g: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """d gate(pre) / d pre applied to g (differentiable torch ops)."""
    a, b = pre.chunk(2, dim=1)
    ta, sb = torch.tanh(a), torch.sigmoid(b)
    return torch.cat([g * sb * (1 - ta * ta), g * ta * sb * (1 - sb)], dim=1)


def pre_activation(x, weight, bias, add, geom: Geometry) -> torch.Tensor:
    """conv2d(pad(x), weight * mask, bias) (+ add), in the dtype of x."""
    pre = F.conv2d(F.pad(x, geom.padding), weight * mask(weight, geom), bias)
    return pre if add is None else pre + add


def forward(x, weight, bias, add, geom: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, pre): y = gate(pre) with ``geom.gate``, else pre itself."""
    pre = pre_activation(x, weight, bias, add, geom)
    return (gate(pre) if geom.gate else pre), pre


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    """g summed over the dims where ``shape`` (an add broadcast to g's shape) has size 1."""
    dims = [d for d, (n, s) in enumerate(zip(shape, g.shape)) if n == 1 and s != 1]
    return g.sum(dim=dims, keepdim=True) if dims else g


def composite_backward(gy, gpre, x, weight, pre, has_bias: bool, add_shape, geom: Geometry, need):
    """(dx, dweight, dbias, dadd) from differentiable torch ops: gy through the gate's derivative (taken from pre),
    plus gpre (the gradient of a returned pre-activation, or None), then ``aten.convolution_backward``. Entries not
    in ``need`` (or without their input) are None."""
    if gy is None:  # (only the returned pre-activation is used)
        g = gpre
    else:
        g = gate_backward(gy, pre) if geom.gate else gy
        if gpre is not None:
            g = g + gpre
    g = g.to(x.dtype)
    m = mask(weight, geom)
    which = [bool(need[0]), bool(need[1]), bool(need[2] and has_bias)]
    dx = dw = db = None
    if any(which):
        dxp, dw, db = torch.ops.aten.convolution_backward(
            g, F.pad(x, geom.padding), weight * m, [weight.shape[0]] if has_bias else None, [1, 1], [0, 0], [1, 1],
            False, [0, 0], 1, which)
        if which[0]:
            left, _, top, _ = geom.padding
            dx = dxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
        dw = dw * m if which[1] else None
        db = db if which[2] else None
    dadd = _sum_to(g, add_shape) if need[3] and add_shape is not None else None
    return dx, dw, db, dadd
