"""Transposed-convolution modules on the fused op: a drop-in ``ConvTranspose2d`` with an optional fused activation,
the generator block ``ConvTransposeBNAct`` (ConvTranspose2d -> BatchNorm2d -> activation, the statistics computed
by the convolution's epilogue), and ``UpsampleConv2d`` (nearest x2 upsampling then a ``Conv2d``, as phase
convolutions)."""
from __future__ import annotations

import torch
from torch import nn

from .. import activations
from ..ops.conv_transpose2d import conv_transpose2d, upsample_conv2d
from .cond_batch_norm import BatchNorm2d


def _act_repr(activation, negative_slope) -> str:
    if activation is None:
        return ""
    return f", activation={activation!r}" + (f", negative_slope={negative_slope}" if activation == "leaky_relu"
                                               else "")


class ConvTranspose2d(nn.ConvTranspose2d):
    """Drop-in for ``torch.nn.ConvTranspose2d`` (same arguments, parameters and state-dict keys; an instance of
    it) on :func:`fastgan.conv_transpose2d`, with an optional fused activation (``activation='relu'``,
    ``'leaky_relu'``, ``'tanh'``, ``'sigmoid'``).

    ``forward(x, output_size=None, bn_stats=False)``: x (N, C_in, H, W) or (C_in, H, W); ``bn_stats=True`` returns
    ``(y, stats)`` for a following ``fastgan.nn.BatchNorm2d`` (``bn(y, stats=stats)``).
    """

    def __init__(self, *args, activation: str | None = None, negative_slope: float = 0.01, **kwargs):
        super().__init__(*args, **kwargs)
        activations.lookup(activation, negative_slope, type(self).__name__)  # validates
        self.activation, self.negative_slope = activation, float(negative_slope)

    def forward(self, x: torch.Tensor, output_size=None, bn_stats: bool = False):
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        out = conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups,
                               self.dilation, self.activation, self.negative_slope, bn_stats)
        if unbatched:
            return (out[0].squeeze(0), out[1]) if bn_stats else out.squeeze(0)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + _act_repr(self.activation, self.negative_slope)


class ConvTransposeBNAct(nn.Sequential):
    """The DCGAN / VAE-decoder block ``nn.Sequential(nn.ConvTranspose2d(...), nn.BatchNorm2d(C_out), nn.ReLU())``
    with the same state-dict keys (``0.weight``, ``1.weight``, ``1.bias``, ``1.running_mean``, ...), parameters,
    initialisation and running-statistics updates; in training the convolution's epilogue computes the batch
    statistics, so batch norm reads its input once instead of twice, and the activation is fused into batch norm;
    in eval batch norm is folded into the convolution's weight and bias: one kernel for the block.

    Args: those of ``nn.ConvTranspose2d`` (``bias=False`` by default, as before a batch norm), ``activation``
    ('relu' by default, 'leaky_relu' or None), ``negative_slope``, and batch norm's ``eps``, ``momentum``,
    ``affine``, ``track_running_stats``. Children: ``[0]`` a :class:`ConvTranspose2d`, ``[1]`` a
    :class:`fastgan.nn.BatchNorm2d` holding the activation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = False, dilation=1, activation: str | None = "relu",
                 negative_slope: float = 0.01, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__(
            ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                            dilation, device=device, dtype=dtype),
            BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats, device, dtype,
                        activation=activation, negative_slope=negative_slope))

    @classmethod
    def from_modules(cls, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d, activation: nn.Module | None = None):
        """The block computing ``activation(bn(conv(x)))``, sharing their parameters and buffers (ReLU,
        LeakyReLU or None)."""
        fused = activations.of_module(activation, activations.BATCH_NORM) if activation is not None else (None, 0.01)
        if fused is None:
            raise ValueError(f"ConvTransposeBNAct: cannot fuse {type(activation).__name__}; the block fuses "
                             "nn.ReLU, nn.LeakyReLU (slope > 0) or no activation")
        if type(conv) not in (nn.ConvTranspose2d, ConvTranspose2d) or type(bn) not in (nn.BatchNorm2d, BatchNorm2d):
            raise TypeError("ConvTransposeBNAct.from_modules: needs an nn.ConvTranspose2d and an nn.BatchNorm2d, got "
                            f"{type(conv).__name__} and {type(bn).__name__}")
        block = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.output_padding, conv.groups, conv.bias is not None, conv.dilation, fused[0], fused[1],
                    bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
        for new, old in ((block[0], conv), (block[1], bn)):
            new._parameters, new._buffers = dict(old._parameters), dict(old._buffers)
            new.train(old.training)
        return block

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        conv, bn = self[0], self[1]
        if bn.training or bn.running_mean is None:  # batch statistics: from the convolution's epilogue
            y, stats = conv(x, output_size, bn_stats=True)
            return bn(y, stats=stats)
        # eval: batch norm is a per-channel affine map, folded into the convolution's weight and bias, so that the
        # whole block is one kernel (sampling from a trained generator)
        weight, bias = self._folded()
        unbatched = x.dim() == 3
        xb = x.unsqueeze(0) if unbatched else x
        output_padding = conv._output_padding(xb, output_size, conv.stride, conv.padding, conv.kernel_size, 2,
                                              conv.dilation)
        y = conv_transpose2d(xb, weight, bias, conv.stride, conv.padding, output_padding, conv.groups,
                             conv.dilation, bn.activation, bn.negative_slope)
        return y.squeeze(0) if unbatched else y

    def _folded(self):
        """The convolution's weight and bias with eval batch norm folded in (float32 or float64; differentiable)."""
        conv, bn = self[0], self[1]
        w = conv.weight
        acc = torch.float64 if w.dtype == torch.float64 else torch.float32
        scale = torch.rsqrt(bn.running_var.to(acc) + bn.eps)
        shift = -bn.running_mean.to(acc) * scale
        if bn.weight is not None:
            scale = scale * bn.weight.to(acc)
            shift = shift * bn.weight.to(acc) + bn.bias.to(acc)
        if conv.bias is not None:
            shift = shift + conv.bias.to(acc) * scale
        g, c_in = conv.groups, w.shape[0]
        c_out_g = w.shape[1]
        folded = w.to(acc).reshape(g, c_in // g, c_out_g, *w.shape[2:]) * scale.reshape(g, 1, c_out_g, 1, 1)
        return folded.reshape(w.shape).to(w.dtype), shift.to(w.dtype)


class UpsampleConv2d(nn.Conv2d):
    """``nn.Upsample(scale_factor=2, mode='nearest')`` then this ``nn.Conv2d`` (BigGAN's and SNGAN's generator
    upsampling), as :func:`fastgan.upsample_conv2d`: the parameters and state dict of the ``nn.Conv2d`` it
    replaces (an instance of it). Odd square kernel, padding kernel_size // 2 (the default), stride 1, dilation 1,
    zero padding; an optional fused activation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 activation: str | None = None, negative_slope: float = 0.01):
        k = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
        k = (k, k) if isinstance(k, int) else k
        same = (k[0] // 2, k[1] // 2)
        padding = same if padding is None else padding
        padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        for ok, what in ((k[0] == k[1] and k[0] % 2 == 1, f"an odd square kernel, got {k}"),
                         (padding == same, f"padding kernel_size // 2 = {same[0]}, got {padding}"),
                         (stride in (1, (1, 1)), f"stride 1, got {stride}"),
                         (dilation in (1, (1, 1)), f"dilation 1, got {dilation}"),
                         (padding_mode == "zeros", f"padding_mode 'zeros', got {padding_mode!r}")):
            if not ok:
                raise ValueError(f"UpsampleConv2d: needs {what}")
        super().__init__(in_channels, out_channels, k, 1, padding, 1, groups, bias, padding_mode, device, dtype)
        activations.lookup(activation, negative_slope, type(self).__name__)  # validates
        self.activation, self.negative_slope = activation, float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_conv2d(x, self.weight, self.bias, self.groups, self.activation, self.negative_slope)

    def extra_repr(self) -> str:
        return "upsample x2 (nearest), " + super().extra_repr() + _act_repr(self.activation, self.negative_slope)
