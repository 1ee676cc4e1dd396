"""Spectral-norm modules: a drop-in for ``torch.nn.utils.parametrizations.spectral_norm`` built on the fused
op, the SN layers, and :class:`SpectralNormGroup`, which updates every SN layer of a model in one batched call.
"""
from __future__ import annotations

import functools
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoints import spectral_norm_keys_in_place
from ..ops import spectral_norm as sn_op
from ..ops.spectral_norm_plan import matrix_geometry

_TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class SpectralNorm(nn.Module):
    """The spectral-norm parametrization: ``weight -> weight / sigma(weight)``.

    Same state as PyTorch's ``_SpectralNorm`` (buffers ``_u`` of shape (h,) and ``_v`` of shape (w,), where
    (h, w) is the weight seen as a matrix along ``dim``), same initialisation (random u, v, then 15 power
    iterations), same update (one or more iterations per training forward, u first, none in eval). u and v
    stay in float32 when the module is cast to float16/bfloat16.
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12,
                 _uv: tuple[torch.Tensor, torch.Tensor] | None = None):
        # _uv: start from these vectors instead of random ones (used by fastgan.convert)
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"spectral_norm: dim={dim} is out of range for a weight with {ndim} dimensions "
                             f"(expected {-ndim}..{ndim - 1})")
        if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, int) or n_power_iterations < 1:
            raise ValueError(f"Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations!r}")
        if not (isinstance(eps, (int, float)) and 0 < eps < float("inf")):
            raise ValueError(f"spectral_norm: eps must be a positive finite number, got {eps!r}")
        if not weight.is_floating_point():
            raise TypeError(f"spectral_norm: the weight has dtype {weight.dtype}; spectral norm needs a "
                            "floating-point weight")
        self.dim = dim % ndim
        self.eps = float(eps)
        self._group_ref = None
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            _, h, _, w = matrix_geometry(tuple(weight.shape), self.dim)
            vec_dtype = torch.float32 if weight.dtype in _LOW_PRECISION else weight.dtype
            if _uv is not None:
                u, v = _uv
                if u.shape != (h,) or v.shape != (w,):
                    raise ValueError(f"spectral_norm: u, v of shapes {tuple(u.shape)}, {tuple(v.shape)} do not fit a "
                                     f"{h}x{w} weight matrix")
                self.register_buffer("_u", u.detach().to(weight.device, vec_dtype).clone())
                self.register_buffer("_v", v.detach().to(weight.device, vec_dtype).clone())
                return
            # same draws as PyTorch (dtype and device of the weight), so a seed gives the same u and v
            u = weight.new_empty(h).normal_(0, 1)
            v = weight.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u.to(vec_dtype), dim=0, eps=self.eps))
            self.register_buffer("_v", F.normalize(v.to(vec_dtype), dim=0, eps=self.eps))
            with torch.no_grad():
                sn_op.spectral_norm_power_iteration_([weight.detach()], [self._u], [self._v], dims=[self.dim],
                                                     n_power_iterations=15, eps=self.eps)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        group = self._group_ref() if self._group_ref is not None else None
        if group is not None:
            out = group._lookup(self, weight)
            if out is not None:
                return out
        outs, _ = sn_op.spectral_normalize([weight], [self._u], [self._v], dims=[self.dim],
                                           n_power_iterations=self.n_power_iterations if self.training else 0,
                                           eps=self.eps)
        return outs[0]

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # as PyTorch: assigning to the parametrized weight sets the original weight
        return value

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for name in ("_u", "_v"):
            buf = self._buffers.get(name)
            if buf is not None and buf.dtype in _LOW_PRECISION:
                self._buffers[name] = buf.float()
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        bad = []
        for name in ("_u", "_v"):
            key, buf = prefix + name, self._buffers.get(name)
            if buf is not None and key in state_dict and tuple(state_dict[key].shape) != tuple(buf.shape):
                bad.append(key)
                error_msgs.append(
                    f"spectral norm: {key} has shape {tuple(state_dict[key].shape)} in the checkpoint, but this layer "
                    f"needs {tuple(buf.shape)} (its weight is a {self._u.numel()}x{self._v.numel()} matrix along "
                    f"dim {self.dim}). A BigGAN-PyTorch checkpoint (u0 of shape (1, out)) or a legacy one "
                    "(weight_orig, weight_u, weight_v) is converted by fastgan.convert; otherwise the checkpoint is "
                    "from a layer of another size or dim.")
        if bad:
            state_dict = {k: v for k, v in state_dict.items() if k not in bad}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for key in bad:
            if key in missing_keys:
                missing_keys.remove(key)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_group_ref"] = None
        return state

    def extra_repr(self) -> str:
        n = getattr(self, "n_power_iterations", None)
        return f"dim={self.dim}, eps={self.eps}" + (f", n_power_iterations={n}" if n is not None else "")


def _convert_checkpoint_keys(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                             error_msgs, name):
    """Load-state-dict pre-hook: legacy and BigGAN-PyTorch spectral-norm keys load into this layer."""
    sn = module.parametrizations[name][0]
    spectral_norm_keys_in_place(state_dict, prefix, name, sn.eps, sn._u.dtype)


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, _uv: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Module:
    """Apply spectral normalisation to ``module.<name>``, as ``torch.nn.utils.parametrizations.spectral_norm``.

    Same arguments, state-dict keys (``parametrizations.<name>.original``, ``parametrizations.<name>.0._u``,
    ``._v``), initialisation and iteration order, computed by fastgan's fused op. ``dim`` defaults to 1 for
    transposed convolutions and 0 otherwise. Checkpoints in the legacy layout (``<name>_orig``, ``<name>_u``,
    ``<name>_v``) and BigGAN-PyTorch's (``weight``, ``u0``, ``sv0``) load into the module as they are.

    Raises ValueError for a missing or non-finite weight, TypeError for a non-float one, IndexError for a bad dim.
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"spectral_norm: module {type(module).__name__} has no parameter or buffer named {name!r}")
    if not weight.is_floating_point():
        raise TypeError(f"spectral_norm: {type(module).__name__}.{name} has dtype {weight.dtype}; spectral norm needs "
                        "a floating-point weight")
    if weight.numel() and not bool(torch.isfinite(weight).all()):
        raise ValueError(f"spectral_norm: {type(module).__name__}.{name} holds NaN or Inf values "
                         f"({int((~torch.isfinite(weight)).sum())} of {weight.numel()}); initialise it first")
    if dim is None:
        dim = 1 if isinstance(module, _TRANSPOSED_CONVS) else 0
    # with _uv (a conversion) no consistency forward: it would run a power iteration and change u, v
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations, dim, eps, _uv),
                                         unsafe=_uv is not None)
    module._register_load_state_dict_pre_hook(functools.partial(_convert_checkpoint_keys, name=name),
                                              with_module=True)
    return module


def _sn_layer(base: type) -> type:
    """``base`` with fastgan spectral norm on its weight (along dim 1 for transposed convolutions), with the extra
    keyword arguments ``n_power_iterations`` and ``eps``."""

    def __init__(self, *args, n_power_iterations: int = 1, eps: float = 1e-12, **kwargs):
        base.__init__(self, *args, **kwargs)
        spectral_norm(self, n_power_iterations=n_power_iterations, eps=eps)

    name = f"SN{base.__name__}"
    doc = (f"``nn.{base.__name__}`` with fastgan spectral norm on its weight"
           + (" (along dim 1)" if base in _TRANSPOSED_CONVS else "")
           + "; extra keyword arguments ``n_power_iterations``, ``eps``.")
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": __name__, "__qualname__": name})


SNConv2d = _sn_layer(nn.Conv2d)
SNConvTranspose2d = _sn_layer(nn.ConvTranspose2d)
SNLinear = _sn_layer(nn.Linear)
SNEmbedding = _sn_layer(nn.Embedding)


def spectral_norm_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, SpectralNorm]]:
    """(module path, module, tensor name, parametrization) of every fastgan spectral norm in ``model``."""
    for path, mod in model.named_modules():
        if not parametrize.is_parametrized(mod):
            continue
        for tname, plist in mod.parametrizations.items():
            if len(plist) == 1 and isinstance(plist[0], SpectralNorm) and hasattr(plist[0], "_u"):
                yield path, mod, tname, plist[0]


def _stepped(group_ref, optimizer, args, kwargs) -> None:
    """Optimizer step post-hook of a SpectralNormGroup (held weakly: the optimizer does not keep it alive)."""
    group = group_ref()
    if group is not None:
        group.step()


class SpectralNormGroup:
    """All fastgan spectral-norm layers of ``model``, updated together.

    During each forward of ``model``, the first SN layer that runs computes every member's normalised weight in
    one batched call (one power-iteration pass and one normalisation launch per device and dtype, instead of
    about 13 launches per layer); the others pick theirs up. Outside ``model``'s forward, layers compute their
    own weight as usual. Semantics per layer are unchanged, with two exceptions: a member runs its iteration even
    if this forward does not use it, and a member used twice in one forward iterates once.

    ``update="forward"`` (default): one power iteration per training forward, as PyTorch.
    ``update="step"``: one power iteration per optimizer step: the first training forward after each
    ``optimizer.step()`` (and the first forward of all) iterates; the other forwards of that step (D(real), D(fake),
    the penalty) reuse its u and v. It needs ``optimizer=``, whose step hooks tell the group that a step happened
    (call :meth:`step` yourself where weights are updated some other way). sigma = u.W v is still computed from
    the current weights at every forward, so weights written without an optimizer step (an EMA copy written
    through ``.data``, ``load_state_dict``) are normalised correctly.

    In eval, sigma is computed from the current weights at every forward, as PyTorch does.

    ``check_finite=True`` raises, naming the layers, when a weight or sigma is not finite (one host sync per
    forward); u and v are then left as they were. Call :meth:`remove` to detach the group.
    """

    def __init__(self, model: nn.Module, update: str = "forward", check_finite: bool = False, optimizer=None):
        if update not in ("forward", "step"):
            raise ValueError(f"SpectralNormGroup: update must be 'forward' or 'step', got {update!r}")
        optimizers = [] if optimizer is None else (
            list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer])
        if any(not isinstance(o, torch.optim.Optimizer) for o in optimizers):
            raise TypeError("SpectralNormGroup: optimizer must be a torch.optim.Optimizer or a list of them")
        if update == "step" and not optimizers:
            raise ValueError("SpectralNormGroup: update='step' runs the power iteration once per optimizer step and "
                             "needs the optimizer whose step() starts the next one: "
                             "SpectralNormGroup(D, update='step', optimizer=opt_D)")
        self.update = update
        self.check_finite = check_finite
        self.members = [(f"{path}.{tname}" if path else tname, mod, tname, sn)
                        for path, mod, tname, sn in spectral_norm_layers(model)]
        if not self.members:
            raise ValueError("SpectralNormGroup: the model has no fastgan spectral-norm layer (use "
                             "fastgan.nn.spectral_norm, the SN* layers, or fastgan.convert on a model with PyTorch's)")
        ref = weakref.ref(self)
        for *_, sn in self.members:
            sn._group_ref = ref
        self._depth = 0
        self._cache: dict[int, torch.Tensor] | None = None
        self._steps = 0  # optimizer steps seen
        self._iterated: dict = {}  # partition -> self._steps at its last power iteration (update='step')
        self._handles = [model.register_forward_pre_hook(self._begin),
                         model.register_forward_hook(self._end, always_call=True)]
        for opt in optimizers:
            self._handles.append(opt.register_step_post_hook(functools.partial(_stepped, ref)))

    def step(self) -> None:
        """Record an optimizer step: with ``update='step'``, the next training forward runs the power iteration."""
        self._steps += 1

    def __len__(self) -> int:
        return len(self.members)

    def _begin(self, module, args):
        self._depth += 1
        if self._depth == 1:
            self._cache = None

    def _end(self, module, args, output):
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._cache = None

    def _lookup(self, sn: SpectralNorm, weight: torch.Tensor) -> torch.Tensor | None:
        if self._depth == 0:
            return None
        if self._cache is None:
            self._cache = self._compute()
        out = self._cache.get(id(sn))
        if out is None or out.shape != weight.shape:
            return None
        return out

    def _compute(self) -> dict[int, torch.Tensor]:
        parts: dict = {}
        for name, mod, tname, sn in self.members:
            weight = mod.parametrizations[tname].original
            n = sn.n_power_iterations if sn.training else 0
            key = (weight.device, weight.dtype, n, sn.eps)
            parts.setdefault(key, []).append((name, weight, sn))
        out = {}
        for key, items in parts.items():
            n, eps = key[2], key[3]
            names = [i[0] for i in items]
            sns = [i[2] for i in items]
            group = sn_op.prepare([i[1] for i in items], [s._u for s in sns], [s._v for s in sns],
                                  [s.dim for s in sns], n, eps, names)
            backend = sn_op.resolve_backend(group)
            if n and self.update == "step":
                ids = (key, tuple(map(id, sns)))
                if self._iterated.get(ids) == self._steps:
                    n = 0  # this step already iterated: only sigma, from the current weights
                else:
                    self._iterated[ids] = self._steps
            state = group.power_iteration(n, eps, True, backend, self.check_finite)
            for sn, w in zip(sns, group.normalize(state, backend)):
                out[id(sn)] = w
        return out

    def remove(self) -> None:
        """Detach the group: hooks removed, layers compute their own weights again."""
        for h in self._handles:
            h.remove()
        for *_, sn in self.members:
            sn._group_ref = None
        self._handles, self._cache, self._iterated = [], None, {}
