"""What ``fastgan.convert`` installs in the layers of other codebases: the forward of their batch-norm layers
computed by the fused conditional batch norm, and the runs of layers it computes in one call (batch norm ->
activation, ConvTranspose2d -> batch norm -> activation), each on the layers' own parameters, buffers and
submodules (so state-dict keys and every reference to a layer stay as they were).

A converted layer called on its own computes what its source did. Runs are fused only where their parent calls
them in a row: an ``nn.Sequential`` whose slots still hold the run (:func:`sequential_forward`; a slot assigned
since, or a slice that cuts the run, computes layer by layer), or a traced forward calling
:func:`norm_then_act`. Where a layer of a run has hooks (registered before or after convert), the run is computed
layer by layer, so they run.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .. import activations
from ..ops.cond_batch_norm import conditional_batch_norm
from .cond_batch_norm import BatchNorm2d, _bn_forward

_NO_ACT = (None, 0.01)


def _per_sample(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.reshape(n, -1)


def biggan_ccbn_forward(self, x: torch.Tensor, y: torch.Tensor, act=_NO_ACT) -> torch.Tensor:
    """BigGAN-PyTorch ``ccbn`` (``norm_style='bn'``): ``F.batch_norm(x, stored_mean, stored_var, None, None,
    training, 0.1, eps) * (1 + gain(y)) + bias(y)`` (its momentum is 0.1 whatever ``self.momentum`` says), then
    the activation ``act`` (name, slope) where it is fused."""
    n = y.size(0)
    act, slope = act
    return conditional_batch_norm(x, _per_sample(1 + self.gain(y), n), _per_sample(self.bias(y), n),
                                  self.stored_mean, self.stored_var, self.training, 0.1, self.eps, act, slope)


def biggan_bn_forward(self, x: torch.Tensor, y=None, act=_NO_ACT) -> torch.Tensor:
    """BigGAN-PyTorch ``bn``: ``F.batch_norm(x, stored_mean, stored_var, gain, bias, training, momentum, eps)``."""
    act, slope = act
    return conditional_batch_norm(x, self.gain, self.bias, self.stored_mean, self.stored_var, self.training,
                                  self.momentum, self.eps, act, slope)


class _Options:
    """What ``_bn_forward`` reads besides the batch-norm module: activation and sync."""

    def __init__(self, bn: nn.Module, act: tuple[str | None, float]):
        self.activation, self.negative_slope = act
        self.sync = bn.sync if isinstance(bn, BatchNorm2d) else (
            isinstance(bn, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized())
        self.process_group = getattr(bn, "process_group", None)


def studiogan_cbn_forward(self, x: torch.Tensor, y: torch.Tensor, act=_NO_ACT) -> torch.Tensor:
    """StudioGAN ``ConditionalBatchNorm2d``: ``bn(x) * (1 + gain(y)) + bias(y)`` with ``bn`` a
    ``BatchNorm2d(affine=False)`` (its momentum, ``num_batches_tracked`` and eval behaviour)."""
    n = y.size(0)
    return _bn_forward(self.bn, x, _per_sample(1 + self.gain(y), n), _per_sample(self.bias(y), n),
                       opts=_Options(self.bn, act))


CBN_FORWARD = {"ccbn": biggan_ccbn_forward, "bn": biggan_bn_forward, "studiogan": studiogan_cbn_forward}


class SyncBatchNorm2d(BatchNorm2d):
    """What a converted ``nn.SyncBatchNorm`` becomes: like it, it syncs its statistics over its process group only
    where ``torch.distributed`` is initialised, and is a plain batch norm elsewhere."""

    @property
    def sync(self) -> bool:
        return dist.is_available() and dist.is_initialized()


# ---------------------------------------------------------------- runs of layers computed in one call


def _hooked(*mods: nn.Module) -> bool:
    g = nn.modules.module
    return bool(g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks or
                g._global_backward_pre_hooks) or any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in mods)


def _act_spec(act: nn.Module | None) -> tuple[str, float] | None:
    """(name, slope) of a ReLU / LeakyReLU module as it is now (its slope may have been changed), else None."""
    spec = activations.of_module(act, activations.BATCH_NORM) if act is not None else None
    return spec if spec is not None and spec[0] is not None else None


def _fusable_norm(norm: nn.Module) -> bool:
    return isinstance(norm, BatchNorm2d) or getattr(type(norm), "_fastgan_kind", None) in CBN_FORWARD


def norm_then_act(norm: nn.Module, act: nn.Module, *args, **kwargs) -> torch.Tensor:
    """``act(norm(*args, **kwargs))`` as one fused call where ``norm`` is a converted batch norm (fastgan's
    BatchNorm2d, a converted BigGAN / StudioGAN layer) and ``act`` a ReLU / LeakyReLU (with its slope now), neither
    with hooks; otherwise (a module swapped in since convert, hooks) the two calls."""
    spec = _act_spec(act)
    if spec is None or _hooked(norm, act) or not _fusable_norm(norm):
        return act(norm(*args, **kwargs))
    kind = getattr(type(norm), "_fastgan_kind", None)
    if kind in CBN_FORWARD:
        return CBN_FORWARD[kind](norm, *args, act=spec, **kwargs)
    return _bn_then(norm, spec, *args, **kwargs)


def _bn_then(bn: nn.Module, spec: tuple[str, float], input: torch.Tensor, stats=None) -> torch.Tensor:
    return _bn_forward(bn, input, bn.weight, bn.bias, stats, opts=_Options(bn, spec))


def run_norm_act(norm: nn.Module, partners: tuple, _, x: torch.Tensor) -> torch.Tensor:
    """A batch norm and the activation in the slot after it."""
    return norm_then_act(norm, partners[0], x)


def run_conv_bn(conv: nn.Module, partners: tuple, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d, the batch norm after it (and the activation after that) as ``block``, a
    :class:`fastgan.nn.ConvTransposeBNAct` on the same modules (statistics from the convolution's epilogue, the
    batch norm folded into it in eval)."""
    spec = _act_spec(partners[1]) if len(partners) > 1 else (None, block.negative_slope)
    if spec != (block.activation, block.negative_slope) or _hooked(conv, *partners) or \
            not isinstance(x, torch.Tensor) or x.dim() != 4:
        for m in (conv, *partners):  # (unbatched input: the batch norm refuses it, as it would have)
            x = m(x)
        return x
    return block(x)


def sequential_forward(self, input):
    """``nn.Sequential.forward`` where each run of layers convert fused that is still in place, in a row, is one
    call (the head layer holds ``_fastgan_run``: the layers after it, the runner and its argument)."""
    mods = list(self._modules.values())
    i = 0
    while i < len(mods):
        head = mods[i]
        run = head.__dict__.get("_fastgan_run")
        if run is not None:
            partners, runner, arg = run
            k = len(partners)
            if i + k < len(mods) and all(mods[i + 1 + j] is p for j, p in enumerate(partners)):
                input = runner(head, partners, arg, input)
                i += 1 + k
                continue
        input = head(input)
        i += 1
    return input
