"""Bring models and checkpoints from other codebases to fastgan's fused layers.

* :func:`convert` swaps PyTorch's spectral norm (``torch.nn.utils.parametrizations.spectral_norm`` and the legacy
  ``torch.nn.utils.spectral_norm``) for fastgan's in a live model, keeping its weights, u and v.
* State-dict converters rewrite checkpoints to fastgan's (= PyTorch's parametrization) layout:

  ================================  ==========================================  ==================================
  source                            keys per SN layer                           converter
  ================================  ==========================================  ==================================
  ``parametrizations.spectral_norm``  ``parametrizations.weight.original``,     none needed
                                    ``parametrizations.weight.0._u``, ``._v``
  legacy ``utils.spectral_norm``    ``weight_orig``, ``weight_u``, ``weight_v``   :func:`from_legacy_spectral_norm`
  BigGAN-PyTorch ``SN*`` layers     ``weight``, ``u0`` (1, out), ``sv0`` (1,)     :func:`from_biggan_spectral_norm`
  ================================  ==========================================  ==================================

  fastgan's SN layers also accept the last two layouts directly in ``load_state_dict``.

* :func:`convert` also swaps ``torch.nn.BatchNorm2d`` (and ``SyncBatchNorm``) for :class:`fastgan.nn.BatchNorm2d`
  (same keys, same Parameter and buffer objects) and, inside an ``nn.Sequential``, fuses a ReLU or LeakyReLU
  that directly follows it into the kernel. Conditional batch norm checkpoints:

  ================================  ==========================================  ==================================
  source                            keys per layer                              converter
  ================================  ==========================================  ==================================
  ``torch.nn.BatchNorm2d``          ``weight``, ``bias``, ``running_mean``,     none (same keys both ways)
                                    ``running_var``, ``num_batches_tracked``
  BigGAN-PyTorch ``ccbn``           ``gain.weight``, ``bias.weight``,           :func:`from_biggan_ccbn`
                                    ``stored_mean``, ``stored_var``
  BigGAN-PyTorch ``bn``             ``gain``, ``bias``, ``stored_mean``,        :func:`from_biggan_ccbn`
                                    ``stored_var``
  StudioGAN ``ConditionalBatchNorm2d``  ``bn.running_mean/_var/num_batches_tracked``,  :func:`from_studiogan_cbn`
                                    ``gain.weight`` (``_orig``, ``_u``, ``_v``)
  ================================  ==========================================  ==================================

  :class:`fastgan.nn.LinearConditionalBatchNorm2d` loads the ccbn and StudioGAN layouts directly too; the
  converters return fastgan's layout (running_* keys, ``num_batches_tracked`` = 0 where the source has none,
  SN layers in the parametrization layout). :func:`to_biggan_ccbn` and :func:`to_studiogan_cbn` go the other way.

Exactness: a converted legacy layer keeps u and v, so its eval output is unchanged (sigma = u . W v). A
BigGAN layer keeps only u; the converter sets v = normalize(W^T u0) and u = normalize(W v), which gives exactly
BigGAN's eval sigma (BigGAN iterates once from u0 even in eval, without storing the result). Training then
continues in PyTorch's parametrization order (u first), half an iteration away from the legacy/BigGAN order.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

_BIGGAN_EXTRA = re.compile(r"(u|sv)\d+$")


def _parametrized_keys(prefix: str, name: str) -> tuple[str, str, str]:
    base = f"{prefix}parametrizations.{name}."
    return base + "original", base + "0._u", base + "0._v"


def _biggan_vectors(weight: torch.Tensor, u0: torch.Tensor, eps: float, dtype: torch.dtype):
    W = weight.detach().reshape(weight.shape[0], -1).to(dtype)
    u = u0.detach().reshape(-1).to(dtype)
    if u.numel() != W.shape[0]:
        raise ValueError(f"BigGAN spectral norm: u0 has {u.numel()} values but the weight has {W.shape[0]} rows")
    v = F.normalize(W.t() @ u, dim=0, eps=eps)
    u = F.normalize(W @ v, dim=0, eps=eps)
    return u, v


def _copy(state_dict):
    out = OrderedDict(state_dict)
    if hasattr(state_dict, "_metadata"):
        out._metadata = state_dict._metadata
    return out


def spectral_norm_keys_in_place(state_dict: dict, prefix: str, name: str, sn=None) -> bool:
    """Rewrite one layer's legacy or BigGAN spectral-norm keys under ``prefix`` to the parametrization layout.

    Used by fastgan's SN layers when loading a checkpoint. Returns True if something was rewritten.
    """
    orig_key, u_key, v_key = _parametrized_keys(prefix, name)
    if orig_key in state_dict:
        return False
    eps = sn.eps if sn is not None else 1e-12
    vec_dtype = sn._u.dtype if sn is not None else torch.float32
    legacy = prefix + name + "_orig"
    if legacy in state_dict:
        state_dict[orig_key] = state_dict.pop(legacy)
        for src, dst in ((prefix + name + "_u", u_key), (prefix + name + "_v", v_key)):
            if src in state_dict:
                state_dict[dst] = state_dict.pop(src)
        state_dict.pop(prefix + name, None)  # very old checkpoints also stored the normalised weight
        return True
    if name == "weight" and prefix + "u0" in state_dict and prefix + "weight" in state_dict:
        weight = state_dict.pop(prefix + "weight")
        u, v = _biggan_vectors(weight, state_dict[prefix + "u0"], eps, vec_dtype)
        for key in [k for k in state_dict if k.startswith(prefix) and _BIGGAN_EXTRA.fullmatch(k[len(prefix):])]:
            del state_dict[key]
        state_dict[orig_key], state_dict[u_key], state_dict[v_key] = weight, u, v
        return True
    return False


def from_legacy_spectral_norm(state_dict: dict) -> dict:
    """A copy of ``state_dict`` with every ``<p>.<name>_orig/_u/_v`` triple renamed to the parametrization layout
    (``<p>.parametrizations.<name>.original`` and ``.0._u``, ``.0._v``)."""
    out = _copy(state_dict)
    for key in [k for k in state_dict if k.endswith("_orig")]:
        head = key[:-len("_orig")]
        prefix, _, name = head.rpartition(".")
        prefix = prefix + "." if prefix else ""
        if prefix + name + "_u" in state_dict and prefix + name + "_v" in state_dict:
            spectral_norm_keys_in_place(out, prefix, name)
    return out


def from_biggan_spectral_norm(state_dict: dict, eps: float = 1e-12) -> dict:
    """A copy of ``state_dict`` with every BigGAN-PyTorch SN layer (``weight``, ``u0``, ``sv0``, and ``u1``...
    when ``num_svs > 1``) in the parametrization layout, u and v float32; see the module docstring for exactness.

    ``eps`` is the layers' ``SN_eps`` (BigGAN's default 1e-12; its training scripts often pass 1e-6).
    """
    out = _copy(state_dict)
    for key in [k for k in state_dict if k == "u0" or k.endswith(".u0")]:
        prefix = key[:-2]
        if prefix + "weight" in out:
            orig_key, u_key, v_key = _parametrized_keys(prefix, "weight")
            weight = out.pop(prefix + "weight")
            u, v = _biggan_vectors(weight, out[key], eps, torch.float32)
            for k in [k for k in out if k.startswith(prefix) and _BIGGAN_EXTRA.fullmatch(k[len(prefix):])]:
                del out[k]
            out[orig_key], out[u_key], out[v_key] = weight, u, v
    return out


def from_biggan_ccbn(state_dict: dict, sn_eps: float = 1e-12) -> dict:
    """A copy of a BigGAN-PyTorch state dict with every ``ccbn`` and ``bn`` layer in fastgan's layout
    (``stored_mean``/``stored_var`` -> ``running_mean``/``running_var`` plus ``num_batches_tracked`` = 0; a
    ``bn`` layer's ``gain`` -> ``weight``) and its SN layers converted by :func:`from_biggan_spectral_norm`."""
    from .nn.batch_norm import rename_cbn_keys_in_place

    out = _copy(state_dict)
    for key in [k for k in state_dict if k == "stored_mean" or k.endswith(".stored_mean")]:
        prefix = key[:-len("stored_mean")]
        rename_cbn_keys_in_place(out, prefix)
        gain = out.get(prefix + "gain")
        if isinstance(gain, torch.Tensor) and gain.dim() == 1:  # layers.bn: a plain affine batch norm
            out[prefix + "weight"] = out.pop(prefix + "gain")
    return from_biggan_spectral_norm(out, eps=sn_eps)


def from_studiogan_cbn(state_dict: dict) -> dict:
    """A copy of a StudioGAN state dict with every ``ConditionalBatchNorm2d`` in fastgan's layout
    (``bn.running_*``, ``bn.num_batches_tracked`` lifted one level) and legacy SN keys renamed by
    :func:`from_legacy_spectral_norm`."""
    from .nn.batch_norm import rename_cbn_keys_in_place

    out = _copy(state_dict)
    for key in [k for k in state_dict if k == "bn.running_mean" or k.endswith(".bn.running_mean")]:
        prefix = key[:-len("bn.running_mean")]
        if any(k.startswith(prefix + "gain.") for k in state_dict):
            rename_cbn_keys_in_place(out, prefix)
    return from_legacy_spectral_norm(out)


def _cbn_prefixes(state_dict: dict) -> list[str]:
    """Prefixes of the LinearConditionalBatchNorm2d layers of a fastgan state dict (running statistics next to
    gain and bias layers)."""
    out = []
    for key in state_dict:
        if key == "running_mean" or key.endswith(".running_mean"):
            prefix = key[:-len("running_mean")]
            if any(k.startswith(prefix + "gain.") for k in state_dict):
                out.append(prefix)
    return out


def _to_source_sn(out: dict, prefix: str, legacy: bool) -> None:
    """One parametrized SN weight under ``prefix`` to the legacy (weight_orig/_u/_v) or BigGAN (weight, u0, sv0)
    layout; nothing if it is a plain weight."""
    orig_key, u_key, v_key = _parametrized_keys(prefix, "weight")
    if orig_key not in out:
        return
    weight, u, v = out.pop(orig_key), out.pop(u_key), out.pop(v_key)
    if legacy:
        out[prefix + "weight_orig"], out[prefix + "weight_u"], out[prefix + "weight_v"] = weight, u, v
    else:
        W = weight.detach().reshape(weight.shape[0], -1).to(u.dtype)
        out[prefix + "weight"] = weight
        out[prefix + "u0"] = u.reshape(1, -1).clone()
        out[prefix + "sv0"] = torch.dot(u, W @ v).reshape(1)


def to_biggan_ccbn(state_dict: dict) -> dict:
    """A copy of a fastgan state dict with every :class:`fastgan.nn.LinearConditionalBatchNorm2d` in BigGAN-PyTorch's
    ``ccbn`` layout: ``stored_mean``, ``stored_var`` (``num_batches_tracked`` dropped), spectral-normed ``gain`` and
    ``bias`` as ``weight``, ``u0`` (1, out), ``sv0`` (1,) with sv0 = u.W v."""
    out = _copy(state_dict)
    for prefix in _cbn_prefixes(state_dict):
        out[prefix + "stored_mean"] = out.pop(prefix + "running_mean")
        out[prefix + "stored_var"] = out.pop(prefix + "running_var")
        out.pop(prefix + "num_batches_tracked", None)
        for layer in ("gain.", "bias."):
            _to_source_sn(out, prefix + layer, legacy=False)
    return out


def to_studiogan_cbn(state_dict: dict) -> dict:
    """A copy of a fastgan state dict with every :class:`fastgan.nn.LinearConditionalBatchNorm2d` in StudioGAN's
    ``ConditionalBatchNorm2d`` layout: ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``, and
    spectral-normed ``gain``/``bias`` as ``weight_orig``, ``weight_u``, ``weight_v`` (torch's legacy SN)."""
    out = _copy(state_dict)
    for prefix in _cbn_prefixes(state_dict):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if prefix + name in out:
                out[prefix + "bn." + name] = out.pop(prefix + name)
        for layer in ("gain.", "bias."):
            _to_source_sn(out, prefix + layer, legacy=True)
    return out


_FUSABLE = (nn.ReLU, nn.LeakyReLU)


def _batch_norm_swaps(model: nn.Module, fuse_activation: bool) -> list:
    """The swaps of every torch BatchNorm2d/SyncBatchNorm of ``model`` (closures; nothing is changed yet)."""
    from .nn.batch_norm import from_torch_batchnorm

    swaps = []
    for parent in list(model.modules()):
        names = list(parent._modules.keys())
        for i, name in enumerate(names):
            child = parent._modules[name]
            if type(child) not in (nn.BatchNorm2d, nn.SyncBatchNorm):
                continue
            act, slope = None, 0.01
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            fuse = fuse_activation and isinstance(parent, nn.Sequential) and type(nxt) in _FUSABLE
            if fuse:
                act = "relu" if type(nxt) is nn.ReLU else "leaky_relu"
                slope = getattr(nxt, "negative_slope", 0.01)
                if act == "leaky_relu" and slope <= 0:
                    fuse, act, slope = False, None, 0.01
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
    from torch.nn.utils.parametrizations import _SpectralNorm as TorchSN
    from torch.nn.utils.spectral_norm import SpectralNorm as LegacySN

    from .nn.spectral_norm import spectral_norm as fused_spectral_norm

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
