"""What ``fastgan.convert`` installs in the layers of other codebases: the forward of their batch-norm layers
computed by the fused conditional batch norm, and ConvTranspose2d -> BatchNorm2d pairs of an ``nn.Sequential``
computed together, each on the layer's own parameters, buffers and submodules (so its state-dict keys and every
reference to it stay as they were).

Each function is the ``forward`` of a subclass that convert makes of the source class (the layer keeps its
identity; ``fastgan.revert`` restores the class). A fused activation is read from the layer's ``_fastgan_act``,
(name, slope), set by convert where the layer's output only feeds that activation.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..ops.cond_batch_norm import conditional_batch_norm
from .cond_batch_norm import BatchNorm2d, _bn_forward
from .conv_transpose2d import ConvTranspose2d


def _act(layer) -> tuple[str | None, float]:
    return layer.__dict__.get("_fastgan_act", (None, 0.01))


def _per_sample(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.reshape(n, -1)


def biggan_ccbn_forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BigGAN-PyTorch ``ccbn`` (``norm_style='bn'``): ``F.batch_norm(x, stored_mean, stored_var, None, None,
    training, 0.1, eps) * (1 + gain(y)) + bias(y)`` (its momentum is 0.1 whatever ``self.momentum`` says)."""
    n = y.size(0)
    act, slope = _act(self)
    return conditional_batch_norm(x, _per_sample(1 + self.gain(y), n), _per_sample(self.bias(y), n),
                                  self.stored_mean, self.stored_var, self.training, 0.1, self.eps, act, slope)


def biggan_bn_forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
    """BigGAN-PyTorch ``bn``: ``F.batch_norm(x, stored_mean, stored_var, gain, bias, training, momentum, eps)``."""
    act, slope = _act(self)
    return conditional_batch_norm(x, self.gain, self.bias, self.stored_mean, self.stored_var, self.training,
                                  self.momentum, self.eps, act, slope)


class _Options:
    """What ``_bn_forward`` reads besides the batch-norm module: activation and sync."""

    def __init__(self, bn: nn.Module, act: tuple[str | None, float]):
        self.activation, self.negative_slope = act
        self.sync = isinstance(bn, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized()
        self.process_group = getattr(bn, "process_group", None)


def studiogan_cbn_forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """StudioGAN ``ConditionalBatchNorm2d``: ``bn(x) * (1 + gain(y)) + bias(y)`` with ``bn`` a
    ``BatchNorm2d(affine=False)`` (its momentum, ``num_batches_tracked`` and eval behaviour)."""
    n = y.size(0)
    return _bn_forward(self.bn, x, _per_sample(1 + self.gain(y), n), _per_sample(self.bias(y), n),
                       opts=_Options(self.bn, _act(self)))


class ConvTransposeThenBatchNorm2d(ConvTranspose2d):
    """A ``ConvTranspose2d`` whose next slot in its ``nn.Sequential`` is a batch norm (and maybe an activation):
    it computes all of them as :class:`fastgan.nn.ConvTransposeBNAct` does (batch statistics from the
    convolution's epilogue in training, batch norm folded into the convolution in eval), from the same modules,
    held in ``_fastgan_block``; the batch norm's slot (:class:`AppliedBatchNorm2d`) passes its input on."""

    def forward(self, x: torch.Tensor, output_size=None, bn_stats: bool = False):
        out = self.__dict__["_fastgan_block"](x, output_size)
        # bn_stats (fastgan's own callers, e.g. the zoo's DCGAN, hand them to the next batch norm): that batch norm
        # is applied already and takes none
        return (out, None) if bn_stats else out


class AppliedBatchNorm2d(BatchNorm2d):
    """A batch norm that the ``ConvTranspose2d`` before it in its ``nn.Sequential`` applies: it passes its input
    on (its parameters, buffers and keys are the batch norm's, updated by that convolution's call)."""

    def forward(self, x: torch.Tensor, stats=None) -> torch.Tensor:
        return x


class SyncBatchNorm2d(BatchNorm2d):
    """What a converted ``nn.SyncBatchNorm`` becomes: like it, it syncs its statistics over its process group only
    where ``torch.distributed`` is initialised, and is a plain batch norm elsewhere."""

    @property
    def sync(self) -> bool:
        return dist.is_available() and dist.is_initialized()
