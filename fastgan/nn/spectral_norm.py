"""Spectral-norm modules: a drop-in for ``torch.nn.utils.parametrizations.spectral_norm`` built on the fused
op, the SN layers, the fused twins of the legacy ``torch.nn.utils.spectral_norm`` hook and of BigGAN-PyTorch's SN
layers (what ``fastgan.convert`` puts in their place, each keeping its source's keys and iteration order), and
:class:`SpectralNormGroup`, which updates every such layer of a model in one batched call.
"""
from __future__ import annotations

import functools
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm as _TorchLegacyHook

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

    u_first = True  # iteration order (the group reads it)

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

    def group_inputs(self, mod: nn.Module, tname: str):
        """(weight, u, v, dim, iterations, eps) of this layer for the current mode (read by SpectralNormGroup)."""
        return (mod.parametrizations[tname].original, self._u, self._v, self.dim,
                self.n_power_iterations if self.training else 0, self.eps)

    def group_done(self, mod: nn.Module, sigma: torch.Tensor) -> None:
        pass

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


class LegacySpectralNorm(_TorchLegacyHook):
    """The legacy ``torch.nn.utils.spectral_norm`` hook computed by the fused op: same keys (``<name>_orig``,
    ``<name>_u``, ``<name>_v``), same order (v = normalize(W^T u), then u = normalize(W v)), same eval (the stored
    u and v, no iteration). ``fastgan.convert`` turns a torch hook into one in place and ``fastgan.revert`` back.
    Vectors other than float32/float64 and 1-D weights go through torch's own computation."""

    u_first = False
    _group_ref = None

    def _vectors(self, mod):
        return getattr(mod, self.name + "_u"), getattr(mod, self.name + "_v")

    def fusable(self, mod) -> bool:
        w = getattr(mod, self.name + "_orig")
        u, v = self._vectors(mod)
        return w.dim() >= 2 and u.dtype == v.dtype and u.dtype in (torch.float32, torch.float64)

    def group_inputs(self, mod: nn.Module, tname: str):
        u, v = self._vectors(mod)
        return (getattr(mod, self.name + "_orig"), u, v, self.dim, self.n_power_iterations if mod.training else 0,
                self.eps)

    def group_done(self, mod: nn.Module, sigma: torch.Tensor) -> None:
        pass

    def compute_weight(self, module: nn.Module, do_power_iteration: bool) -> torch.Tensor:
        if not self.fusable(module):
            return super().compute_weight(module, do_power_iteration)
        weight = getattr(module, self.name + "_orig")
        group = self._group_ref() if self._group_ref is not None else None
        if group is not None and do_power_iteration == module.training:
            out = group._lookup(self, weight)
            if out is not None:
                return out
        u, v = self._vectors(module)
        outs, _ = sn_op.spectral_normalize([weight], [u], [v], dims=[self.dim], eps=self.eps, u_first=False,
                                           n_power_iterations=self.n_power_iterations if do_power_iteration else 0)
        return outs[0]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_group_ref", None)
        return state


class BigGANSpectralNorm:
    """A BigGAN-PyTorch SN layer (``weight``, ``u0`` of shape (1, out), ``sv0`` (1,), ``num_itrs``, ``eps``,
    ``num_svs == 1``) computed by the fused op, in BigGAN's order: in training ``num_itrs`` times v =
    normalize(W^T u0), u0 = normalize(W v), then sv0 = u0 . W v; in eval once from u0 without storing. Held by a
    converted layer as ``_fastgan_sn``; the layer's ``W_()`` calls :meth:`weight`. No state of its own beyond
    scratch vectors (BigGAN keeps no v)."""

    u_first = False
    dim = 0

    def __init__(self):
        self._group_ref = None
        self._scratch = None  # (u0 it was made for, u0 as a vector, v, u for eval)

    @staticmethod
    def fusable(mod) -> bool:
        return (mod.weight.dim() >= 2 and mod.u0.dtype in (torch.float32, torch.float64)
                and mod.u0.numel() == mod.weight.shape[0])

    def _vectors(self, mod):
        u0, w = mod.u0, mod.weight
        s = self._scratch
        if torch.compiler.is_compiling() or s is None or s[0] is not u0 or s[2].device != w.device:
            n = w[0].numel()
            s = (u0, u0.view(-1), u0.new_zeros(n), u0.new_empty(u0.numel()))
            if not torch.compiler.is_compiling():
                self._scratch = s
        return s[1:]

    def group_inputs(self, mod: nn.Module, tname: str):
        u, v, u_eval = self._vectors(mod)
        if mod.training:
            return mod.weight, u, v, 0, int(mod.num_itrs), float(mod.eps)
        with torch.no_grad():
            u_eval.copy_(u)  # eval: one iteration from u0, not stored
        return mod.weight, u_eval, v, 0, 1, float(mod.eps)

    def group_done(self, mod: nn.Module, sigma: torch.Tensor) -> None:
        if mod.training:
            with torch.no_grad():
                mod.sv0.copy_(sigma.reshape(1))

    def weight(self, mod: nn.Module) -> torch.Tensor:
        """The normalised weight W / sigma, as BigGAN's ``W_()``."""
        group = self._group_ref() if self._group_ref is not None else None
        if group is not None:
            out = group._lookup(self, mod.weight)
            if out is not None:
                return out
        weight, u, v, dim, n, eps = self.group_inputs(mod, "weight")
        outs, sigma = sn_op.spectral_normalize([weight], [u], [v], dims=[dim], n_power_iterations=n, eps=eps,
                                               u_first=False)
        self.group_done(mod, sigma[0])
        return outs[0]

    @property
    def n_power_iterations(self):  # (for listings; the layer's num_itrs is what runs)
        return None

    def __getstate__(self):
        return {"_group_ref": None, "_scratch": None}


def spectral_norm_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, object]]:
    """(module path, module, tensor name, state) of every fastgan spectral norm in ``model``: the
    parametrization (state: :class:`SpectralNorm`), converted legacy hooks (:class:`LegacySpectralNorm`) and
    converted BigGAN-PyTorch layers (:class:`BigGANSpectralNorm`)."""
    for path, mod in model.named_modules():
        if parametrize.is_parametrized(mod):
            for tname, plist in mod.parametrizations.items():
                if len(plist) == 1 and isinstance(plist[0], SpectralNorm) and hasattr(plist[0], "_u"):
                    yield path, mod, tname, plist[0]
        for hook in mod._forward_pre_hooks.values():
            if isinstance(hook, LegacySpectralNorm):
                yield path, mod, hook.name, hook
        sn = mod.__dict__.get("_fastgan_sn")
        if isinstance(sn, BigGANSpectralNorm):
            yield path, mod, "weight", sn


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
    if this forward does not use it, and a member used twice in one forward iterates once. ``exact=True`` (what
    ``fastgan.convert`` attaches) removes both: the vectors of members this forward did not use are put back at its
    end (one copy of all u, v per training forward), and a second use computes that layer again on its own.
    Members iterate in their own order and mode (parametrization, legacy hook, BigGAN). A pass that ran under
    ``no_grad`` (a wrapper running G so before D) leaves the layers used later with gradient their gradient.

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

    def __init__(self, model: nn.Module, update: str = "forward", check_finite: bool = False, optimizer=None,
                 exact: bool = False):
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
        self.exact = bool(exact)
        self._used: set = set()
        self._saved: list = []
        self._bind(model)
        if not self.members:
            raise ValueError("SpectralNormGroup: the model has no fastgan spectral-norm layer (use "
                             "fastgan.nn.spectral_norm, the SN* layers, or fastgan.convert on a model with PyTorch's)")
        self._depth = 0
        self._cache: dict[int, torch.Tensor] | None = None
        self._steps = 0  # optimizer steps seen
        self._iterated: dict = {}  # partition -> self._steps at its last power iteration (update='step')
        self._handles = [model.register_forward_pre_hook(self._begin),
                         model.register_forward_hook(self._end, always_call=True)]
        for opt in optimizers:
            self._handles.append(opt.register_step_post_hook(functools.partial(_stepped, weakref.ref(self))))

    def _bind(self, model: nn.Module) -> None:
        self._model_ref = weakref.ref(model)
        self.members = [(f"{path}.{tname}" if path else tname, mod, tname, sn)
                        for path, mod, tname, sn in spectral_norm_layers(model)]
        ref = weakref.ref(self)
        for *_, sn in self.members:
            sn._group_ref = ref

    def __getstate__(self):
        """Copied or pickled with its model (``G_ema = copy.deepcopy(G)``, ``torch.save(model)``): the copy binds to
        the copy's layers at its first forward and iterates at every training forward (``update='step'`` becomes
        'forward': no optimizer comes with it)."""
        keep = ("update", "check_finite", "exact")
        state = {k: self.__dict__[k] for k in keep}
        state["update"] = "forward"
        state["_model"] = self._model_ref() if self._model_ref is not None else None
        return state

    def __setstate__(self, state):
        model = state.pop("_model")
        self.__dict__.update(state)
        self._depth, self._cache, self._steps, self._iterated, self._used, self._saved = 0, None, 0, {}, set(), []
        self.members, self._handles = [], []
        self._model_ref = weakref.ref(model) if model is not None else None
        self._unbound = model is not None

    def step(self) -> None:
        """Record an optimizer step: with ``update='step'``, the next training forward runs the power iteration."""
        self._steps += 1

    def __len__(self) -> int:
        return len(self.members)

    def _begin(self, module, args):
        if getattr(self, "_unbound", False):
            self._unbound = False
            self._bind(module)
        self._depth += 1
        if self._depth == 1:
            self._cache = None
            self._used.clear()
            self._saved = []

    def _end(self, module, args, output):
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._cache = None
            unused = [(now, before) for key, now, before in self._saved if key not in self._used]
            if unused:  # exact: members this forward did not use did not iterate
                with torch.no_grad():
                    torch._foreach_copy_([t for now, _ in unused for t in now],
                                         [t for _, before in unused for t in before])
            self._saved = []

    def _lookup(self, sn: SpectralNorm, weight: torch.Tensor) -> torch.Tensor | None:
        if self._depth == 0:
            return None
        if self._cache is None:
            self._cache = self._compute()
        hit = self._cache.get(id(sn))
        if hit is None or hit[0] is not weight:  # (a DataParallel replica's weight, a weight swapped since)
            return None
        if self.exact:
            if id(sn) in self._used:
                return None  # used again in this forward: it iterates again, on its own, as it would alone
            self._used.add(id(sn))
        out, sigma = hit[1], hit[4]
        if torch.is_grad_enabled() and not self._cache_grad:
            # The pass ran under no_grad (BigGAN's G_D runs G so before D): normalise again, with gradient, from
            # the vectors the pass left (no second iteration), which is what a pass with gradient would give.
            u, v, dim, eps, u_first = hit[5]
            outs, sigmas = sn_op.spectral_normalize([weight], [u], [v], dims=[dim], n_power_iterations=0, eps=eps,
                                                    u_first=u_first, check_finite=self.check_finite,
                                                    names=[hit[6]])
            out, sigma = outs[0], sigmas[0]
        hit[3].group_done(hit[2], sigma)
        return out

    def _compute(self) -> dict[int, torch.Tensor]:
        self._cache_grad = torch.is_grad_enabled()
        parts: dict = {}
        for name, mod, tname, sn in self.members:
            if not getattr(sn, "fusable", lambda m: True)(mod):
                continue
            weight, u, v, dim, n, eps = sn.group_inputs(mod, tname)
            key = (weight.device, weight.dtype, n, eps, sn.u_first)
            parts.setdefault(key, []).append((name, weight, u, v, dim, mod, sn))
        out = {}
        for key, items in parts.items():
            n, eps, u_first = key[2], key[3], key[4]
            names = [i[0] for i in items]
            sns = [i[6] for i in items]
            group = sn_op.prepare([i[1] for i in items], [i[2] for i in items], [i[3] for i in items],
                                  [i[4] for i in items], n, eps, names)
            backend = sn_op.resolve_backend(group)
            if n and self.update == "step":
                ids = (key, tuple(map(id, sns)))
                if self._iterated.get(ids) == self._steps:
                    n = 0  # this step already iterated: only sigma, from the current weights
                else:
                    self._iterated[ids] = self._steps
            if n and self.exact:
                vectors = [[i[2], i[3]] for i in items]
                copies = torch._foreach_mul([t for pair in vectors for t in pair], 1.0)
                self._saved += [(id(i[6]), pair, copies[2 * k:2 * k + 2]) for k, (i, pair) in
                                enumerate(zip(items, vectors))]
            state = group.power_iteration(n, eps, u_first, backend, self.check_finite)
            for item, w, sigma in zip(items, group.normalize(state, backend), state[:len(items)]):
                out[id(item[6])] = (item[1], w, item[5], item[6], sigma, (item[2], item[3], item[4], eps, u_first),
                                    item[0])
        return out

    def remove(self) -> None:
        """Detach the group: hooks removed, layers compute their own weights again."""
        for h in self._handles:
            h.remove()
        for *_, sn in self.members:
            sn._group_ref = None
        self._handles, self._cache, self._iterated = [], None, {}
