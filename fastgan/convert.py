"""Bring live models from other codebases to fastgan's fused layers.

:func:`convert` swaps PyTorch's spectral norm (``torch.nn.utils.parametrizations.spectral_norm`` and the legacy
``torch.nn.utils.spectral_norm``) for fastgan's in a live model, keeping its weights, u and v; and
``torch.nn.BatchNorm2d`` (and ``SyncBatchNorm``) for :class:`fastgan.nn.BatchNorm2d` (same keys, same Parameter
and buffer objects), fusing a ReLU or LeakyReLU that directly follows it inside an ``nn.Sequential`` into the
kernel. Checkpoints (state dicts) of other codebases are rewritten by :mod:`fastgan.checkpoints`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm as TorchSN
from torch.nn.utils.spectral_norm import SpectralNorm as LegacySN

from . import activations
from .nn.cond_batch_norm import from_torch_batchnorm
from .nn.spectral_norm import spectral_norm as fused_spectral_norm


def _batch_norm_swaps(model: nn.Module, fuse_activation: bool) -> list:
    """The swaps of every torch BatchNorm2d/SyncBatchNorm of ``model`` (closures; nothing is changed yet)."""
    swaps = []
    for parent in list(model.modules()):
        names = list(parent._modules.keys())
        for i, name in enumerate(names):
            child = parent._modules[name]
            if type(child) not in (nn.BatchNorm2d, nn.SyncBatchNorm):
                continue
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            fusable = None
            if fuse_activation and isinstance(parent, nn.Sequential):
                fusable = activations.of_module(nxt, activations.BATCH_NORM)
            fuse = fusable is not None
            act, slope = fusable if fuse else (None, 0.01)
            sync = type(child) is nn.SyncBatchNorm
            new = from_torch_batchnorm(child, act, slope, sync=sync,
                                       process_group=child.process_group if sync else None)

            def swap(parent=parent, name=name, new=new, fused=names[i + 1] if fuse else None):
                parent._modules[name] = new
                if fused is not None:
                    parent._modules[fused] = nn.Identity()

            swaps.append(swap)
    return swaps


def own_parametrized_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before its parametrizations change.

    torch.nn.utils.parametrize keeps the parametrized tensors as properties of a class made for the module, and
    ``copy.deepcopy`` shares that class between the copies (``G_ema = copy.deepcopy(G)``): removing a
    parametrization from one would delete the property from the other as well.
    """
    cls = type(module)
    if parametrize.is_parametrized(module):
        attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        module.__class__ = type(cls.__name__, cls.__bases__, attrs)


def _check_finite_weight(mod: nn.Module, tensor: torch.Tensor, path: str, name: str) -> None:
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"fastgan.convert: {path or type(mod).__name__}.{name} holds NaN or Inf values "
                         f"({int((~torch.isfinite(tensor)).sum())} of {tensor.numel()}); nothing was converted")


def _spectral_norm_swaps(model: nn.Module) -> list:
    """The swaps of every PyTorch spectral norm of ``model`` (closures), after checking each of them: a weight
    that cannot be converted raises before anything changes."""
    swaps = []
    for path, mod in model.named_modules():
        if parametrize.is_parametrized(mod):
            for tname in list(mod.parametrizations.keys()):
                plist = mod.parametrizations[tname]
                if len(plist) != 1 or not isinstance(plist[0], TorchSN) or not hasattr(plist[0], "_u"):
                    continue
                _check_finite_weight(mod, plist.original, path, tname)

                def swap(mod=mod, tname=tname, old=plist[0], original=plist.original):
                    own_parametrized_class(mod)
                    parametrize.remove_parametrizations(mod, tname, leave_parametrized=False)
                    mod._parameters[tname] = original
                    fused_spectral_norm(mod, tname, old.n_power_iterations, old.eps, old.dim,
                                        _uv=(old._u.detach(), old._v.detach()))

                swaps.append(swap)
        for hook in list(mod._forward_pre_hooks.values()):
            if not isinstance(hook, LegacySN):
                continue
            _check_finite_weight(mod, getattr(mod, hook.name + "_orig"), path, hook.name)

            def swap(mod=mod, hook=hook):
                original = getattr(mod, hook.name + "_orig")
                u = getattr(mod, hook.name + "_u").detach().clone()
                v = getattr(mod, hook.name + "_v").detach().clone()
                torch.nn.utils.remove_spectral_norm(mod, hook.name)
                mod._parameters[hook.name] = original
                own_parametrized_class(mod)
                fused_spectral_norm(mod, hook.name, hook.n_power_iterations, hook.eps, hook.dim, _uv=(u, v))

            swaps.append(swap)
    return swaps


def convert(model: nn.Module, spectral_norm: bool = True, batch_norm: bool = True,
            fuse_activation: bool = True) -> nn.Module:
    """Swap, in place, PyTorch's spectral norm and batch norm in ``model`` for fastgan's fused ones; return it.

    Spectral norm: both PyTorch APIs are recognised. Weights keep their Parameter objects (optimizers built
    before still see them), u and v keep their values, n_power_iterations/eps/dim are carried over. The state-dict
    keys become the parametrization layout; legacy checkpoints still load (see :func:`from_legacy_spectral_norm`).

    Batch norm: every ``nn.BatchNorm2d`` (and ``nn.SyncBatchNorm``, which keeps syncing over its process group)
    becomes :class:`fastgan.nn.BatchNorm2d` sharing its parameters and buffers; state-dict keys are unchanged.
    With ``fuse_activation``, a ``nn.ReLU``/``nn.LeakyReLU`` that follows it inside an ``nn.Sequential`` is fused
    into the kernel and replaced by ``nn.Identity`` (hooks on that activation module would no longer run).

    All or nothing: every layer is checked before the first is swapped (a NaN weight raises ValueError naming it,
    and the model is left as it was). Copies made with ``copy.deepcopy`` (an EMA generator) convert independently.
    """
    swaps = _batch_norm_swaps(model, fuse_activation) if batch_norm else []
    if spectral_norm:
        swaps += _spectral_norm_swaps(model)
    for swap in swaps:
        swap()
    return model
