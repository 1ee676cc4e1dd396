"""PixelCNN's masked convolution as a module, on fastgan's masked_conv2d (only the unmasked taps computed)."""
from __future__ import annotations

import torch
from torch import nn

from ..ops.masked_conv2d import masked_conv2d


class MaskedConv2d(nn.Conv2d):
    """The masked convolution of PixelCNN code (``nn.Conv2d`` with padding k // 2 and its weight multiplied by a
    mask, e.g. ``mask[:, :, k//2, k//2 + (type == 'B'):] = 0; mask[:, :, k//2 + 1:] = 0``), with the same weight
    and bias (state-dict keys ``weight``, ``bias``), computing only the taps the mask keeps.

    ``mask``: 'A', 'B' or None; ``sub_pixels``: the sub-pixel groups of the channels at the centre tap (3 for RGB
    R -> G -> B, 1 for grey, as most code masks); ``anchor``: the tap over the output pixel (default the centre);
    ``gate``: the output is tanh(a) * sigmoid(b) of the two halves of the ``out_channels`` pre-activations.
    Forward ``(x, add=None)``: ``add`` broadcast to the pre-activation and added before the gate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, mask: str | None = "B",
                 sub_pixels: int = 1, anchor: tuple[int, int] | None = None, gate: bool = False, bias: bool = True,
                 device=None, dtype=None, backend: str | None = None):
        kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        super().__init__(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=bias,
                         device=device, dtype=dtype)
        self.mask_type, self.sub_pixels, self.gate, self.backend = mask, sub_pixels, gate, backend
        self.anchor = tuple(anchor) if anchor is not None else (kernel[0] // 2, kernel[1] // 2)

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        return masked_conv2d(x, self.weight, self.bias, mask=self.mask_type, sub_pixels=self.sub_pixels,
                             anchor=self.anchor, gate=self.gate, add=add, backend=self.backend)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", mask={self.mask_type!r}, sub_pixels={self.sub_pixels}, "
                f"anchor={self.anchor}, gate={self.gate}")
