"""Spectral norm over a group of weights: the functional ops, dispatch to the Triton and CUDA kernels,
torch.library registration and autograd.

Semantics follow ``torch.nn.utils.parametrizations.spectral_norm``: with W the weight seen as a matrix along
``dim``, one power iteration is u <- normalize(W v), v <- normalize(W^T u) (``u_first=False`` gives the order of
the legacy ``torch.nn.utils.spectral_norm``: v first), with normalize(x) = x / max(|x|, eps); u and v are updated
in place; sigma = u . W v with the updated vectors; the normalised weight is W / sigma and its gradient treats u
and v as constants: dW = (G - <G, W/sigma> u v^T) / sigma.

The op's files: ``spectral_norm_reference.py`` (eager torch reference, composite backward),
``spectral_norm_plan.py`` (the launch plan both kernel backends read), this file (host code),
``fastgan/kernels/spectral_norm.py`` (Triton kernels and launchers), ``spectral_norm_cuda.py`` with
``csrc/spectral_norm.cu`` (CUDA kernels behind the same launchers).

Three custom ops, all taking the whole group:
``fastgan::spectral_norm_power_iteration`` (mutates us, vs; returns the snapshot [sigma | u, v per weight]),
``fastgan::spectral_norm`` (flat buffer of every W/sigma, differentiable), and
``fastgan::spectral_norm_backward`` (the fused backward, used when no double backward is being recorded).
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch

from .. import _backend
from . import _op
from . import spectral_norm_plan as plan_mod
from . import spectral_norm_reference as ref

OP = "spectral_norm"
_backend.register_op(OP, ("torch", "triton", "cuda"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.spectral_norm", cuda="fastgan.ops.spectral_norm_cuda")


def _layout(weights, dims, us=None, vs=None) -> plan_mod.GroupLayout:
    if _op.traced(weights[0]):  # fake or functional tensors have no address to key a cache on
        return plan_mod.GroupLayout(weights, dims)
    return plan_mod.group_layout(weights, us, vs, dims)


# ---------------------------------------------------------------- implementations (any backend)


def _power_iteration_impl(weights, us, vs, dims, n_iter, eps, u_first, backend, layout=None):
    if backend == "torch":
        return ref.power_iteration(weights, us, vs, dims, n_iter, eps, u_first)
    layout = layout or _layout(weights, dims, us, vs)
    # copies are made only for unusual layouts; the tables point into them, so they live until the launches
    plan, _copies = layout.iteration(weights, us, vs, u_first)
    state = torch.empty(layout.state_size, dtype=torch.float32, device=weights[0].device)
    _LAUNCH[backend].power_iteration(plan, n_iter, eps, state, weights[0].dtype)
    return state


def _normalize_impl(weights, state, dims, backend, layout=None):
    layout = layout or _layout(weights, dims)
    if backend == "torch":
        return ref.normalize(weights, state, layout)
    eplan, _copies = layout.elementwise(weights)  # as above
    flat = torch.empty(eplan.flat_size, dtype=weights[0].dtype, device=weights[0].device)
    _LAUNCH[backend].normalize(eplan, state, flat)
    return flat


def _normalize_backward_impl(grad, weights, state, dims, backend, layout=None):
    layout = layout or _layout(weights, dims)
    if backend == "torch":
        return ref.normalize_backward(grad, weights, state, layout)
    eplan, _copies = layout.elementwise(weights)
    grad = grad.contiguous()
    dw = torch.empty_like(grad)
    _LAUNCH[backend].normalize_backward(eplan, grad, state, dw)
    return dw


# ---------------------------------------------------------------- registration
# torch.compile, torch.export and tensor subclasses go through the registered ops. Eager calls take the direct
# path (same implementations): the ops' Python-level dispatch costs tens of microseconds per call with a list of
# 20 weights, as much as the GPU work of a whole SNGAN discriminator.


@torch.library.custom_op("fastgan::spectral_norm_power_iteration", mutates_args=("us", "vs"))
def _power_iteration_op(weights: list[torch.Tensor], us: list[torch.Tensor], vs: list[torch.Tensor], dims: list[int],
                        n_power_iterations: int, eps: float, u_first: bool, backend: str) -> torch.Tensor:
    return _power_iteration_impl(weights, us, vs, dims, n_power_iterations, eps, u_first, backend)


@_power_iteration_op.register_fake
def _(weights, us, vs, dims, n_power_iterations, eps, u_first, backend):
    geoms = [plan_mod.matrix_geometry(tuple(w.shape), d) for w, d in zip(weights, dims)]
    return weights[0].new_empty(plan_mod.state_layout(geoms)[2], dtype=_op.acc_dtype(weights[0].dtype))


@torch.library.custom_op("fastgan::spectral_norm_backward", mutates_args=())
def _normalize_backward_op(grad: torch.Tensor, weights: list[torch.Tensor], state: torch.Tensor, dims: list[int],
                           backend: str) -> torch.Tensor:
    return _normalize_backward_impl(grad, weights, state, dims, backend)


@_normalize_backward_op.register_fake
def _(grad, weights, state, dims, backend):
    return torch.empty_like(grad)


def _normalize_op_impl(weights: list[torch.Tensor], state: torch.Tensor, dims: list[int],
                       backend: str) -> torch.Tensor:
    return _normalize_impl(weights, state, dims, backend)


def _normalize_fake(weights, state, dims, backend):
    return weights[0].new_empty(plan_mod.flat_layout([w.numel() for w in weights])[1])


def _setup_context(ctx, inputs, output):
    weights, state, dims, backend = inputs
    ctx.save_for_backward(state, *weights)
    ctx.dims, ctx.backend, ctx.layout = list(dims), backend, None


def _eager_forward(ctx, state, layout, backend, *weights):
    """The eager twin takes the weights as separate arguments (autograd.Function sees tensors, not lists) and the
    group's cached layout."""
    ctx.save_for_backward(state, *weights)
    ctx.dims, ctx.backend, ctx.layout = layout.dims, backend, layout
    return _normalize_impl(weights, state, layout.dims, backend, layout)


def _backward(ctx, grad):
    state, *weights = ctx.saved_tensors
    traced = getattr(ctx, "traced", False)
    layout = ctx.layout or _layout(weights, ctx.dims)
    if torch.is_grad_enabled():  # recording a double backward: differentiable torch ops
        dws = ref.composite_backward(layout.split(grad), weights, state, layout)
    elif traced:
        dws = layout.split(torch.ops.fastgan.spectral_norm_backward(grad, weights, state, ctx.dims, ctx.backend))
    else:
        dws = layout.split(_normalize_backward_impl(grad, weights, state, ctx.dims, ctx.backend, layout))
    return (dws, None, None, None) if traced else (None, None, None, *dws)


_SN_NORMALIZE = _op.DifferentiableOp("spectral_norm", _normalize_op_impl, fake=_normalize_fake,
                                     setup_context=_setup_context, backward=_backward, eager_forward=_eager_forward)


# ---------------------------------------------------------------- eager path


class PreparedGroup:
    """A validated group of weights (with u, v) and its cached layout; what the eager calls run on."""

    __slots__ = ("weights", "us", "vs", "dims", "layout", "names", "other_vector_dtype")

    def __init__(self, weights, us, vs, dims, layout, names=None, other_vector_dtype=None):
        self.weights, self.us, self.vs, self.dims, self.layout, self.names = weights, us, vs, dims, layout, names
        self.other_vector_dtype = other_vector_dtype  # a u or v dtype other than float32 (validated), else None

    def labels(self) -> list[str]:
        return self.names or [f"weights[{i}]" for i in range(len(self.weights))]

    def power_iteration(self, n_iter: int, eps: float, u_first: bool, backend: str,
                        check_finite: bool = False) -> torch.Tensor:
        """Update u, v in place; return the snapshot [sigma | u_i, v_i] (no gradient).

        With ``check_finite``: raise if a weight is not finite (before anything is written) or a sigma is zero or
        not finite (u and v are then restored: a failed check writes nothing).
        """
        w, us, vs = self.weights, self.us, self.vs
        saved = None
        if check_finite:
            _op.check_finite("spectral norm", zip(self.labels(), w), "the weight of ")
            if n_iter:
                saved = torch._foreach_mul(us + vs, 1.0)  # copies, to restore if sigma turns out bad
        with torch.no_grad():
            if self.layout is None:
                state = torch.ops.fastgan.spectral_norm_power_iteration(w, us, vs, self.dims, n_iter, eps, u_first,
                                                                        backend)
            else:
                state = _power_iteration_impl(w, us, vs, self.dims, n_iter, eps, u_first, backend, self.layout)
            if check_finite:
                bad = _bad_sigma(state[:len(w)], self.labels())
                if bad:
                    if saved is not None:
                        torch._foreach_copy_(us + vs, saved)
                    raise ValueError(bad)
        if n_iter and backend != "torch" and self.layout is not None:
            torch.autograd.graph.increment_version(us + vs)  # written through raw pointers: tell autograd
        return state

    def normalize(self, state: torch.Tensor, backend: str) -> list[torch.Tensor]:
        """W_i / sigma_i, differentiable with respect to the weights."""
        if self.layout is None:
            flat = torch.ops.fastgan.spectral_norm(self.weights, state, self.dims, backend)
            return _layout(self.weights, self.dims).split(flat)
        if torch.is_grad_enabled() and any(w.requires_grad for w in self.weights):
            flat = _SN_NORMALIZE.Function.apply(state, self.layout, backend, *self.weights)
        else:  # no graph to record (eval, no_grad): skip the autograd.Function
            flat = _normalize_impl(self.weights, state, self.dims, backend, self.layout)
        return self.layout.split(flat)


# ---------------------------------------------------------------- validation


def _as_list(x, name):
    if isinstance(x, torch.Tensor):
        return [x]
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"spectral norm: {name} must be a tensor or a list of tensors, got {type(x).__name__}")
    return list(x)


def check_group(weights, us, vs, dims, n_power_iterations, eps, names=None):
    """Validate a group and return (weights, us, vs, dims) as lists with non-negative dims.

    Raises TypeError/ValueError/IndexError naming the offending weight (``names[i]`` if given).
    """
    weights, us, vs = _as_list(weights, "weights"), _as_list(us, "us"), _as_list(vs, "vs")
    if not weights:
        raise ValueError("spectral norm: the group of weights is empty")
    if not (len(weights) == len(us) == len(vs)):
        raise ValueError(f"spectral norm: got {len(weights)} weights, {len(us)} u vectors and {len(vs)} v vectors")
    dims = [dims] * len(weights) if isinstance(dims, int) else list(dims)
    if len(dims) != len(weights):
        raise ValueError(f"spectral norm: got {len(dims)} dims for {len(weights)} weights")
    if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, int) or n_power_iterations < 0:
        raise ValueError(f"spectral norm: n_power_iterations must be an int >= 0 (0 = no iteration, as in eval), "
                         f"got {n_power_iterations!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < float("inf")):
        raise ValueError(f"spectral norm: eps must be a positive finite number, got {eps!r}")
    w0 = weights[0]
    out_dims = []
    for i, (w, u, v, d) in enumerate(zip(weights, us, vs, dims)):
        name = names[i] if names else f"weights[{i}]"
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"spectral norm: {name} is a {type(w).__name__}, not a tensor")
        if not w.is_floating_point():
            raise TypeError(f"spectral norm: {name} has dtype {w.dtype}; spectral norm needs a floating-point weight "
                            "(float32, float16, bfloat16 or float64)")
        if w.dtype != w0.dtype or w.device != w0.device:
            raise ValueError(f"spectral norm: all weights of a group share dtype and device, but {name} is {w.dtype} "
                             f"on {w.device} and the first is {w0.dtype} on {w0.device}; group them separately")
        if w.dim() < 2:
            raise ValueError(f"spectral norm: {name} has shape {tuple(w.shape)}; a 1-D weight is normalised with "
                             "F.normalize(w, dim=0), not by power iteration")
        if not -w.dim() <= d < w.dim():
            raise IndexError(f"spectral norm: dim={d} is out of range for {name} with {w.dim()} dimensions "
                             f"(expected {-w.dim()}..{w.dim() - 1})")
        d = d % w.dim()
        out_dims.append(d)
        _, h, _, wc = plan_mod.matrix_geometry(tuple(w.shape), d)
        for vec, n, vname in ((u, h, "u"), (v, wc, "v")):
            if not isinstance(vec, torch.Tensor) or vec.shape != (n,):
                shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
                raise ValueError(f"spectral norm: the {vname} vector of {name} has shape {shape}, expected ({n},) "
                                 f"for a weight of shape {tuple(w.shape)} normalised along dim {d}")
            if vec.dtype not in (torch.float32, torch.float64) or vec.device != w.device or not vec.is_contiguous():
                raise ValueError(f"spectral norm: the {vname} vector of {name} must be a contiguous float32 (or "
                                 f"float64) tensor on {w.device}, got {vec.dtype} on {vec.device}")
    return weights, us, vs, out_dims


_checked: dict = {}  # signature of a group already validated -> (its normalised dims, its layout)


_data_ptr = torch.Tensor.data_ptr
_stride = torch.Tensor.stride
_shape = operator.attrgetter("shape")
_dtype = operator.attrgetter("dtype")


def _signature(weights, us, vs, dims):
    """Identities, addresses, shapes, strides, the weights' dtypes and the device: everything validation and the
    layout depend on (None if it cannot be formed). An in-place change of any of them (``t_()``, ``.data = ...``)
    misses. (A u or v changes dtype only with its storage, i.e. its address: a reinterpreting view of the same
    bytes, ``u.data = u.data.view(torch.int32)``, is the one change not seen.)"""
    n = len(weights)
    if not n or len(us) != n or len(vs) != n or len(dims) != n:
        return None
    tensors = weights + us + vs
    try:
        if _op.traced(weights[0]):
            return None
        ptrs = tuple(map(_data_ptr, tensors))
    except (TypeError, AttributeError):  # not tensors: check_group says what is wrong
        return None
    return (tuple(map(id, tensors)), dims, ptrs, tuple(map(_shape, weights)), tuple(map(_stride, weights)),
            tuple(map(_dtype, weights)), weights[0].device)


def prepare(weights, us, vs, dims=0, n_power_iterations=1, eps=1e-12, names=None) -> PreparedGroup:
    """Validate a group (once per set of tensors, shapes and addresses) and return it ready to run."""
    weights, us, vs = _as_list(weights, "weights"), _as_list(us, "us"), _as_list(vs, "vs")
    dims_t = (dims,) * len(weights) if isinstance(dims, int) else tuple(dims)
    sig = _signature(weights, us, vs, dims_t)
    hit = _checked.get(sig) if sig is not None else None
    scalars_ok = (isinstance(n_power_iterations, int) and not isinstance(n_power_iterations, bool)
                  and n_power_iterations >= 0 and isinstance(eps, (int, float)) and 0 < eps < float("inf"))
    if hit is None or not scalars_ok:
        weights, us, vs, checked_dims = check_group(weights, us, vs, list(dims_t), n_power_iterations, eps, names)
        layout = None if _op.traced(weights[0]) else _layout(weights, checked_dims, us, vs)
        other = next((t.dtype for t in us + vs if t.dtype != torch.float32), None)
        hit = (checked_dims, layout, other)
        if sig is not None:
            if len(_checked) > 256:
                _checked.clear()
            _checked[sig] = hit
    return PreparedGroup(weights, us, vs, hit[0], hit[1], names, hit[2])


def _bad_sigma(sigma, labels) -> str | None:
    """The error message if a sigma is zero or not finite, else None."""
    bad = [n for n, ok in zip(labels, ((sigma > 0) & torch.isfinite(sigma)).tolist()) if not ok]
    if bad:
        return (f"spectral norm: sigma is zero or not finite for {', '.join(bad)} (an all-zero or non-finite "
                "weight, or zero u/v vectors): W / sigma would not be finite; u and v are left as they were")
    return None


def resolve_backend(group: PreparedGroup, backend: str | None = None) -> str:
    """The backend for this group: as fastgan._backend.resolve, and u, v other than float32 (all of them, or some
    of the group) only on the torch backend."""
    other = group.other_vector_dtype
    return _op.resolve(OP, group.weights[0].device, group.weights[0].dtype, backend, "spectral norm",
                       None if other is None else _float32_vectors_only, other)


def _float32_vectors_only(other):
    return f"keeps u and v in float32; this group has {other} vectors"


# ---------------------------------------------------------------- public functional API


def spectral_norm_power_iteration_(weights: Sequence[torch.Tensor] | torch.Tensor,
                                   us: Sequence[torch.Tensor] | torch.Tensor,
                                   vs: Sequence[torch.Tensor] | torch.Tensor, *, dims: int | Sequence[int] = 0,
                                   n_power_iterations: int = 1, eps: float = 1e-12, u_first: bool = True,
                                   backend: str | None = None, check_finite: bool = False) -> torch.Tensor:
    """Run ``n_power_iterations`` power iterations on every weight of a group at once; update u, v in place.

    Args:
        weights: G floating-point tensors (float32/float16/bfloat16; float64 on the torch backend), each of 2 or
            more dimensions, all on one device with one dtype. Weight i is the matrix
            ``w.movedim(dims[i], 0).flatten(1)`` of shape (h_i, w_i).
        us, vs: G float32 vectors of shapes (h_i,) and (w_i,), updated in place (float64 allowed on torch).
        dims: the dimension of each weight that indexes the matrix rows (0; 1 for transposed convolutions).
        n_power_iterations: iterations to run, >= 0; 0 only computes sigma (eval mode).
        eps: the normalisation floor of F.normalize.
        u_first: iteration order; True as ``parametrizations.spectral_norm``, False as the legacy
            ``torch.nn.utils.spectral_norm``.
        backend: 'torch', 'triton', 'cuda' or 'auto' (default: see ``fastgan.use_backend``).
        check_finite: raise ValueError if a weight holds NaN or Inf, or a sigma comes out zero or not finite
            (costs a pass and a host sync); a failed check leaves u and v as they were.

    Returns:
        sigma, shape (G,), float32 (float64 for float64 weights): u_i . W_i v_i after the update. No gradient.
    """
    group = prepare(weights, us, vs, dims, n_power_iterations, eps)
    state = group.power_iteration(n_power_iterations, float(eps), u_first, resolve_backend(group, backend),
                                  check_finite)
    return state[:len(group.weights)]


def spectral_normalize(weights: Sequence[torch.Tensor] | torch.Tensor, us: Sequence[torch.Tensor] | torch.Tensor,
                       vs: Sequence[torch.Tensor] | torch.Tensor, *, dims: int | Sequence[int] = 0,
                       n_power_iterations: int = 1, eps: float = 1e-12, u_first: bool = True,
                       backend: str | None = None, check_finite: bool = False,
                       names: Sequence[str] | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Spectral normalisation of a group of weights: power iteration (in place on u, v), then W_i / sigma_i.

    Arguments as :func:`spectral_norm_power_iteration_` (``n_power_iterations=0`` is eval mode); ``names`` labels
    the weights in error messages.

    Returns:
        (normalised, sigma): the G tensors W_i / sigma_i, shaped and typed like the weights and differentiable
        with respect to them (u and v held constant, double backward supported); and sigma (G,), float32, without
        gradient. The normalised weights are views of one buffer: do not resize them in place.
    """
    group = prepare(weights, us, vs, dims, n_power_iterations, eps, list(names) if names else None)
    name = resolve_backend(group, backend)
    state = group.power_iteration(n_power_iterations, float(eps), u_first, name, check_finite)
    return group.normalize(state, name), state[:len(group.weights)]
