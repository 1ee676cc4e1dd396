"""The eager torch reference of the transposed convolution with its epilogue (bias, activation, batch-norm
statistics), its composite backward (differentiable torch ops: what double backward differentiates), and the
weight merge that turns nearest x2 upsampling + a conv2d into one transposed convolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations
from . import conv_transpose2d_plan as plan


def forward(x, weight, bias, geom: plan.Geometry, act: int, slope: float) -> torch.Tensor:
    """act(F.conv_transpose2d(x, weight, bias, ...)) in the dtype of x."""
    y = F.conv_transpose2d(x, weight, bias, geom.stride, geom.padding, geom.output_padding, geom.groups,
                           geom.dilation)
    return activations.BY_CODE[act].forward(y, slope)


def moments(y: torch.Tensor) -> torch.Tensor:
    """(3, C): count, mean and M2 (sum of squared deviations from the mean) of each channel of y (N, C, H, W),
    in float32 (float64 for float64 y), two passes."""
    acc = torch.float64 if y.dtype == torch.float64 else torch.float32
    v = y.to(acc)
    mean = v.mean(dim=(0, 2, 3))
    m2 = (v - mean[None, :, None, None]).square().sum(dim=(0, 2, 3))
    count = torch.full_like(mean, y.numel() // max(1, y.shape[1]))
    return torch.stack([count, mean, m2])


def composite_backward(gy, x, weight, y, has_bias: bool, geom: plan.Geometry, act: int, slope: float,
                       need=(True, True, True)):
    """(dx, dweight, dbias) from differentiable torch ops; y is the op's output (the activation's derivative is
    taken from it). Entries not in ``need`` (or dbias without a bias) are None."""
    g = activations.BY_CODE[act].backward_from_output(gy, y, slope) if act != activations.NONE else gy
    g = g.to(x.dtype)
    mask = [bool(need[0]), bool(need[1]), bool(need[2] and has_bias)]
    dx, dw, db = torch.ops.aten.convolution_backward(
        g, x, weight, [weight.shape[1] * geom.groups] if has_bias else None, list(geom.stride), list(geom.padding),
        list(geom.dilation), True, list(geom.output_padding), geom.groups, mask)
    return (dx if mask[0] else None), (dw if mask[1] else None), (db if mask[2] else None)


def upsample_weight(weight: torch.Tensor, groups: int) -> tuple[torch.Tensor, int]:
    """(the transposed-convolution weight (C_in, C_out / groups, K, K), its padding) computing nearest x2
    upsampling then ``F.conv2d(., weight, padding=k // 2, groups=groups)`` for a conv2d weight (C_out,
    C_in / groups, k, k), k odd; a differentiable torch op of ``weight`` (the merge of ``plan.upsample_conv``).
    The merged taps are rounded once to the weight's dtype: in bfloat16 the result is off by about twice eager's
    rounding, and float16 taps whose sums exceed its range (|w| > 16k) overflow."""
    c_out, c_in_g, k, _ = weight.shape
    a_rows, padding = plan.upsample_conv(k)
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32  # sums of taps: round once
    # merged[r] = the sum of the taps t with A[r, t] = 1, along each spatial axis: sums only (a product with A's
    # zeros would turn an infinite tap into NaN where torch's convolution keeps it infinite)
    rows, taps = zip(*[(r, t) for r, row in enumerate(a_rows) for t, v in enumerate(row) if v])
    rows_i = torch.tensor(rows, device=weight.device)
    taps_i = torch.tensor(taps, device=weight.device)
    w = weight.to(acc).reshape(groups, c_out // groups, c_in_g, k, k).transpose(1, 2)
    w = w.reshape(groups * c_in_g, c_out // groups, k, k)
    size = len(a_rows)
    w = w.new_zeros(*w.shape[:2], size, k).index_add(2, rows_i, w.index_select(2, taps_i))
    w = w.new_zeros(*w.shape[:3], size).index_add(3, rows_i, w.index_select(3, taps_i))
    return w.to(weight.dtype).contiguous(), padding
