"""Transposed-convolution modules on the fused op: a drop-in ``ConvTranspose2d`` with an optional fused activation,
the generator block ``ConvTransposeBNAct`` (ConvTranspose2d -> BatchNorm2d -> activation, the statistics computed
by the convolution's epilogue), and ``UpsampleConv2d`` (nearest x2 upsampling then a ``Conv2d``, as phase
convolutions)."""
from __future__ import annotations

import torch
from torch import nn

from .. import activations
from ..ops.conv_transpose2d import conv_transpose2d, upsample_conv2d
from .cond_batch_norm import BatchNorm2d, _bn_forward


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


class ConvTransposeBNAct(nn.Module):
    """The DCGAN / VAE-decoder block ``nn.Sequential(nn.ConvTranspose2d(...), nn.BatchNorm2d(C_out), nn.ReLU())``
    as one module with the same state-dict keys (``0.weight``, ``1.weight``, ``1.bias``, ``1.running_mean``, ...),
    parameters, initialisation and running-statistics updates. In training the convolution's epilogue computes the
    batch statistics, so batch norm reads its input once instead of twice, and the activation is fused into batch
    norm; in eval batch norm is folded into the convolution's weight and bias: one kernel for the block.

    Args: those of ``nn.ConvTranspose2d`` (``bias=False`` by default, as before a batch norm), ``activation``
    ('relu' by default, 'leaky_relu' or None), ``negative_slope``, and batch norm's ``eps``, ``momentum``,
    ``affine``, ``track_running_stats``. ``block[0]`` (also ``block.conv``) is the ``ConvTranspose2d``, ``block[1]``
    (``block.bn``) the ``BatchNorm2d``; the block computes from their parameters and buffers and does not call
    their forward (hooks on them do not run). Not an ``nn.Sequential``: it has no activation module and cannot be
    sliced or extended.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = False, dilation=1, activation: str | None = "relu",
                 negative_slope: float = 0.01, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        activations.lookup(activation, negative_slope, type(self).__name__, activations.BATCH_NORM)  # validates
        self.activation, self.negative_slope = activation, float(negative_slope)
        self.add_module("0", ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                                             groups, bias, dilation, device=device, dtype=dtype))
        self.add_module("1", BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats, device, dtype))

    @property
    def conv(self) -> nn.ConvTranspose2d:
        return self._modules["0"]

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self._modules["1"]

    def __getitem__(self, index: int) -> nn.Module:
        if index not in (0, 1, -1, -2):
            raise IndexError(f"ConvTransposeBNAct: index 0 (the ConvTranspose2d) or 1 (the BatchNorm2d), got "
                             f"{index!r}")
        return self._modules[str(index % 2)]

    def __len__(self) -> int:
        return 2

    @property
    def sync(self) -> bool:  # (read by the batch-norm call: the options of fastgan.nn.BatchNorm2d)
        if isinstance(self.bn, nn.SyncBatchNorm):  # which syncs where torch.distributed is initialised
            import torch.distributed as dist

            return dist.is_available() and dist.is_initialized()
        return bool(getattr(self.bn, "sync", False))

    @property
    def process_group(self):
        return getattr(self.bn, "process_group", None)

    @classmethod
    def from_modules(cls, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d, activation: nn.Module | None = None):
        """The block computing ``activation(bn(conv(x)))`` with their parameters and buffers (shared, not copied):
        ``conv`` an ``nn.ConvTranspose2d`` (also with a ``torch.nn.utils.parametrize`` parametrization such as
        spectral norm), ``bn`` an ``nn.BatchNorm2d`` or ``nn.SyncBatchNorm`` with ``conv.out_channels`` features,
        ``activation`` an ``nn.ReLU``, ``nn.LeakyReLU`` (slope > 0) or None."""
        from torch.nn.utils import parametrize

        name = cls.__name__
        fused = activations.of_module(activation, activations.BATCH_NORM) if activation is not None else (None, 0.01)
        if fused is None:
            raise ValueError(f"{name}.from_modules: cannot fuse {type(activation).__name__}; the block fuses "
                             "nn.ReLU, nn.LeakyReLU (slope > 0) or no activation")
        base = type(conv).__bases__[0] if parametrize.is_parametrized(conv) else type(conv)
        if base not in (nn.ConvTranspose2d, ConvTranspose2d) or getattr(conv, "activation", None) is not None:
            raise TypeError(f"{name}.from_modules: conv must be an nn.ConvTranspose2d (or fastgan's, without an "
                            f"activation: batch norm follows it), got {type(conv).__name__}")
        if conv._forward_pre_hooks or conv._forward_hooks:
            raise ValueError(f"{name}.from_modules: conv has forward hooks (e.g. the legacy "
                             "torch.nn.utils.spectral_norm), which the fused block would not run; use "
                             "torch.nn.utils.parametrizations.spectral_norm or fastgan.nn.spectral_norm")
        if type(bn) not in (nn.BatchNorm2d, nn.SyncBatchNorm, BatchNorm2d) or getattr(bn, "activation", None):
            raise TypeError(f"{name}.from_modules: bn must be an nn.BatchNorm2d or nn.SyncBatchNorm (or fastgan's "
                            f"without an activation), got {type(bn).__name__}")
        if bn.num_features != conv.out_channels:
            raise ValueError(f"{name}.from_modules: bn has {bn.num_features} features but conv has "
                             f"{conv.out_channels} output channels")
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        block.activation, block.negative_slope = fused
        block.add_module("0", conv)
        block.add_module("1", bn)
        return block

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 3
        xb = x.unsqueeze(0) if unbatched else x
        output_padding = conv._output_padding(xb, output_size, conv.stride, conv.padding, conv.kernel_size, 2,
                                              conv.dilation)
        args = (conv.stride, conv.padding, output_padding, conv.groups, conv.dilation)
        if bn.training or bn.running_mean is None:  # batch statistics: from the convolution's epilogue
            y, stats = conv_transpose2d(xb, conv.weight, conv.bias, *args, bn_stats=True)
            out = _bn_forward(bn, y, bn.weight, bn.bias, stats, opts=self)
        else:
            # eval: batch norm is a per-channel affine map, folded into the convolution's weight and bias, so that
            # the whole block is one kernel (sampling from a trained generator)
            out = conv_transpose2d(xb, *self._folded(), *args, self.activation, self.negative_slope)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}" + (f", negative_slope={self.negative_slope}"
                                                     if self.activation == "leaky_relu" else "")

    def _folded(self):
        """The convolution's weight and bias with eval batch norm folded in (float32 or float64; differentiable)."""
        conv, bn = self.conv, self.bn
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
    replaces (an instance of it). Odd square kernel, padding kernel_size // 2 (the default, or 'same'), stride 1,
    dilation 1, zero padding; an optional fused activation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 activation: str | None = None, negative_slope: float = 0.01):
        k = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
        k = (k, k) if isinstance(k, int) else k
        same = (k[0] // 2, k[1] // 2)
        padding = same if padding in (None, "same") else padding
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
