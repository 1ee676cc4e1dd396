"""Checkpoint layouts: every state-dict rewrite between fastgan's layout and the layouts of other codebases.

This module changes dicts of tensors only (it imports nothing from ``fastgan.nn``); the modules' load hooks call
it, and ``fastgan.convert`` (live models) builds on it.

Spectral norm, fastgan's layout = PyTorch's parametrization:

  ================================  ==========================================  ==================================
  source                            keys per SN layer                           converter
  ================================  ==========================================  ==================================
  ``parametrizations.spectral_norm``  ``parametrizations.weight.original``,     none needed
                                    ``parametrizations.weight.0._u``, ``._v``
  legacy ``utils.spectral_norm``    ``weight_orig``, ``weight_u``, ``weight_v``   :func:`from_legacy_spectral_norm`
  BigGAN-PyTorch ``SN*`` layers     ``weight``, ``u0`` (1, out), ``sv0`` (1,)     :func:`from_biggan_spectral_norm`
  ================================  ==========================================  ==================================

fastgan's SN layers also accept the last two layouts directly in ``load_state_dict``.

Batch norm:

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
converters return fastgan's layout (running_* keys, ``num_batches_tracked`` = 0 where the source has none, SN
layers in the parametrization layout). :func:`to_biggan_ccbn` and :func:`to_studiogan_cbn` go the other way.

Exactness: a converted legacy layer keeps u and v, so its eval output is unchanged (sigma = u . W v). A BigGAN
layer keeps only u; the converter sets v = normalize(W^T u0) and u = normalize(W v), which gives exactly BigGAN's
eval sigma (BigGAN iterates once from u0 even in eval, without storing the result). Training then continues in
PyTorch's parametrization order (u first), half an iteration away from the legacy/BigGAN order.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn.functional as F

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


def spectral_norm_keys_in_place(state_dict: dict, prefix: str, name: str, eps: float = 1e-12,
                                vec_dtype: torch.dtype = torch.float32) -> bool:
    """Rewrite one layer's legacy or BigGAN spectral-norm keys under ``prefix`` to the parametrization layout
    (BigGAN's v and u computed with the layer's ``eps``, stored as ``vec_dtype``).

    Used by fastgan's SN layers when loading a checkpoint. Returns True if something was rewritten.
    """
    orig_key, u_key, v_key = _parametrized_keys(prefix, name)
    if orig_key in state_dict:
        return False
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


# source key (relative to the layer) -> fastgan key, for BigGAN-PyTorch ccbn and StudioGAN ConditionalBatchNorm2d
CBN_KEY_RENAMES = {"stored_mean": "running_mean", "stored_var": "running_var", "bn.running_mean": "running_mean",
                   "bn.running_var": "running_var", "bn.num_batches_tracked": "num_batches_tracked"}


def rename_cbn_keys_in_place(state_dict: dict, prefix: str, with_counter: bool = True) -> bool:
    """Rename one layer's BigGAN/StudioGAN statistics keys under ``prefix``; True if something was renamed."""
    changed = False
    for src, dst in CBN_KEY_RENAMES.items():
        if prefix + src in state_dict and prefix + dst not in state_dict:
            state_dict[prefix + dst] = state_dict.pop(prefix + src)
            changed = True
    if changed and with_counter and prefix + "num_batches_tracked" not in state_dict:
        state_dict[prefix + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return changed


def from_biggan_ccbn(state_dict: dict, sn_eps: float = 1e-12) -> dict:
    """A copy of a BigGAN-PyTorch state dict with every ``ccbn`` and ``bn`` layer in fastgan's layout
    (``stored_mean``/``stored_var`` -> ``running_mean``/``running_var`` plus ``num_batches_tracked`` = 0; a
    ``bn`` layer's ``gain`` -> ``weight``) and its SN layers converted by :func:`from_biggan_spectral_norm`."""
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


def _sn_prefixes(state_dict: dict) -> list[str]:
    """Prefixes of the parametrized spectral-norm weights of a state dict."""
    tail = "parametrizations.weight.original"
    return [k[:-len(tail)] for k in state_dict if k == tail or k.endswith("." + tail)]


def to_biggan_ccbn(state_dict: dict) -> dict:
    """A copy of a fastgan state dict in BigGAN-PyTorch's layout, the inverse of :func:`from_biggan_ccbn`: every
    :class:`fastgan.nn.LinearConditionalBatchNorm2d` as a ``ccbn`` (``stored_mean``, ``stored_var``;
    ``num_batches_tracked`` dropped), every other batch norm as BigGAN's ``bn`` (``gain``, ``bias``,
    ``stored_mean``, ``stored_var``), and every spectral-normed weight (conv, linear, embedding, the ccbn's gain
    and bias) as ``weight``, ``u0`` (1, out), ``sv0`` (1,) with sv0 = u.W v."""
    out = _copy(state_dict)
    cbn = _cbn_prefixes(state_dict)
    for key in state_dict:
        if key == "running_mean" or key.endswith(".running_mean"):
            prefix = key[:-len("running_mean")]
            if prefix not in cbn and prefix + "weight" in out:  # a plain batch norm: BigGAN's bn
                out[prefix + "gain"] = out.pop(prefix + "weight")
            out[prefix + "stored_mean"] = out.pop(prefix + "running_mean")
            out[prefix + "stored_var"] = out.pop(prefix + "running_var")
            out.pop(prefix + "num_batches_tracked", None)
    for prefix in _sn_prefixes(state_dict):
        _to_source_sn(out, prefix, legacy=False)
    return out


def to_studiogan_cbn(state_dict: dict) -> dict:
    """A copy of a fastgan state dict in StudioGAN's layout, the inverse of :func:`from_studiogan_cbn`: every
    :class:`fastgan.nn.LinearConditionalBatchNorm2d` as a ``ConditionalBatchNorm2d`` (``bn.running_mean``,
    ``bn.running_var``, ``bn.num_batches_tracked``) and every spectral-normed weight (the CBN's gain and bias,
    convs, linears, embeddings) as torch's legacy ``weight_orig``, ``weight_u``, ``weight_v``."""
    out = _copy(state_dict)
    for prefix in _cbn_prefixes(state_dict):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if prefix + name in out:
                out[prefix + "bn." + name] = out.pop(prefix + name)
    for prefix in _sn_prefixes(state_dict):
        _to_source_sn(out, prefix, legacy=True)
    return out
