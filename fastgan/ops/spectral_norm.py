"""Spectral norm over a group of weights: the functional ops, their eager reference, dispatch to the Triton and
CUDA kernels, torch.library registration and autograd.

Semantics follow ``torch.nn.utils.parametrizations.spectral_norm`` (see REFERENCES.md): with W the weight seen
as a matrix along ``dim``, one power iteration is u <- normalize(W v), v <- normalize(W^T u) (``u_first=False``
gives the order of the legacy ``torch.nn.utils.spectral_norm``: v first), with normalize(x) = x / max(|x|, eps);
u and v are updated in place; sigma = u . W v with the updated vectors; the normalised weight is W / sigma and
its gradient treats u and v as constants: dW = (G - <G, W/sigma> u v^T) / sigma.

Three custom ops, all taking the whole group:
``fastgan::sn_power_iteration`` (mutates us, vs; returns the snapshot [sigma | u, v per weight]),
``fastgan::sn_normalize`` (flat buffer of every W/sigma, differentiable), and
``fastgan::sn_normalize_backward`` (the fused backward, used when no double backward is being recorded).
"""
from __future__ import annotations

import math
import operator
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import _backend
from ..kernels import spectral_norm_plan as plan_mod

OP = "spectral_norm"
_backend.register_op(OP, ("torch", "triton", "cuda"))

_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _matrix(w: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    m = w if dim == 0 else w.movedim(dim, 0)
    return m.reshape(m.shape[0], math.prod(m.shape[1:])).to(dtype)  # (not -1: it cannot size an empty weight)


def _outer_like(u: torch.Tensor, v: torch.Tensor, shape, dim: int) -> torch.Tensor:
    """u v^T laid out like a weight of ``shape`` whose matrix is taken along ``dim``."""
    rest = [s for i, s in enumerate(shape) if i != dim]
    return torch.outer(u, v).reshape(shape[dim], *rest).movedim(0, dim)


def _traced(t: torch.Tensor) -> bool:
    """True when the registered ops must be used: under torch.compile/export, or for tensor subclasses."""
    return torch.compiler.is_compiling() or type(t) not in (torch.Tensor, torch.nn.Parameter)


def _layout(weights, dims, us=None, vs=None) -> plan_mod.GroupLayout:
    if _traced(weights[0]):  # fake or functional tensors have no address to key a cache on
        return plan_mod.GroupLayout(weights, dims)
    return plan_mod.group_layout(weights, us, vs, dims)


# ---------------------------------------------------------------- reference (eager torch) implementations


def _ref_power_iteration(weights, us, vs, dims, n_iter, eps, u_first):
    sdt = _state_dtype(weights[0].dtype)
    sigmas, vecs = [], []
    for w, u_buf, v_buf, d in zip(weights, us, vs, dims):
        W = _matrix(w, d, sdt)
        u, v = u_buf.to(sdt), v_buf.to(sdt)
        for _ in range(n_iter):
            if u_first:
                u = F.normalize(torch.mv(W, v), dim=0, eps=eps)
                v = F.normalize(torch.mv(W.t(), u), dim=0, eps=eps)
            else:
                v = F.normalize(torch.mv(W.t(), u), dim=0, eps=eps)
                u = F.normalize(torch.mv(W, v), dim=0, eps=eps)
        if n_iter:
            u_buf.copy_(u)
            v_buf.copy_(v)
        sigmas.append(torch.dot(u, torch.mv(W, v)))
        vecs += [u, v]
    return torch.cat([torch.stack(sigmas), *vecs])


def _ref_normalize(weights, state, layout):
    flat = weights[0].new_zeros(layout.flat_size)
    for g, (w, off) in enumerate(zip(weights, layout.flat_offsets)):
        flat[off:off + w.numel()] = (w.reshape(-1).to(state.dtype) / state[g]).to(w.dtype)
    return flat


def _composite_backward(grads, weights, state, layout):
    """dW per weight from differentiable torch ops (used while recording a double backward)."""
    su, sv, _ = plan_mod.state_layout(layout.geoms)
    out = []
    for gr, w, d, a, b, (_, h, _, wc) in zip(grads, weights, layout.dims, su, sv, layout.geoms):
        u, v = state[a:a + h], state[b:b + wc]
        wf, gf = w.to(state.dtype), gr.to(state.dtype)
        sigma = torch.dot(u, torch.mv(_matrix(wf, d, state.dtype), v))  # as a function of W, u and v constant
        # / sigma / sigma, not / sigma^2, which underflows (overflows) for sigma below 1e-19 (above 1e19)
        dw = gf / sigma - (gf * wf).sum() / sigma / sigma * _outer_like(u, v, w.shape, d)
        out.append(dw.to(w.dtype))
    return out


def _ref_normalize_backward(grad, weights, state, layout):
    flat = grad.new_zeros(layout.flat_size)
    for off, dw in zip(layout.flat_offsets, _composite_backward(layout.split(grad), weights, state, layout)):
        flat[off:off + dw.numel()] = dw.reshape(-1)
    return flat


# ---------------------------------------------------------------- kernel dispatch


def _cuda_stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _kernel_power_iteration(weights, us, vs, n_iter, eps, u_first, backend, layout):
    # copies are made only for unusual layouts; the tables point into them, so they live until the launches
    plan, _copies = layout.iteration(weights, us, vs, u_first)
    dev = weights[0].device
    state = torch.empty(layout.state_size, dtype=torch.float32, device=dev)
    if backend == "triton":
        from ..kernels import spectral_norm as tk

        tk.power_iteration(plan, n_iter, eps, state, weights[0].dtype)
    else:
        scratch = torch.empty(plan.scratch_size, dtype=torch.float32, device=dev)
        _backend.extension().sn_power_iteration(
            plan.meta.data_ptr(), plan.rows_tiles.data_ptr(), plan.n_rows_tiles, plan.cols_tiles.data_ptr(),
            plan.n_cols_tiles, plan.G, scratch.data_ptr(), state.data_ptr(), n_iter, float(eps),
            _DTYPE_CODE[weights[0].dtype], plan.has_outer, plan.unit_sc, dev.index, _cuda_stream(dev))
    return state


def _kernel_normalize(weights, state, backend, layout):
    eplan, _copies = layout.elementwise(weights)  # as above
    flat = torch.empty(eplan.flat_size, dtype=weights[0].dtype, device=weights[0].device)
    if backend == "triton":
        from ..kernels import spectral_norm as tk

        tk.normalize(eplan, state, flat)
    else:
        dev = flat.device
        _backend.extension().sn_normalize(
            eplan.emeta.data_ptr(), eplan.elem_tiles.data_ptr(), eplan.n_tiles, state.data_ptr(), flat.data_ptr(),
            _DTYPE_CODE[flat.dtype], dev.index, _cuda_stream(dev))
    return flat


def _kernel_normalize_backward(grad, weights, state, backend, layout):
    eplan, _copies = layout.elementwise(weights)
    grad = grad.contiguous()
    dw = torch.empty_like(grad)
    if backend == "triton":
        from ..kernels import spectral_norm as tk

        tk.normalize_backward(eplan, grad, state, dw)
    else:
        dev = dw.device
        partials = torch.empty(eplan.n_tiles, dtype=torch.float32, device=dev)
        _backend.extension().sn_normalize_backward(
            eplan.emeta.data_ptr(), eplan.elem_tiles.data_ptr(), eplan.n_tiles, grad.data_ptr(), partials.data_ptr(),
            state.data_ptr(), dw.data_ptr(), _DTYPE_CODE[dw.dtype], dev.index, _cuda_stream(dev))
    return dw


def _power_iteration_impl(weights, us, vs, dims, n_iter, eps, u_first, backend, layout=None):
    if backend == "torch":
        return _ref_power_iteration(weights, us, vs, dims, n_iter, eps, u_first)
    layout = layout or _layout(weights, dims, us, vs)
    return _kernel_power_iteration(weights, us, vs, n_iter, eps, u_first, backend, layout)


def _normalize_impl(weights, state, dims, backend, layout=None):
    layout = layout or _layout(weights, dims)
    if backend == "torch":
        return _ref_normalize(weights, state, layout)
    return _kernel_normalize(weights, state, backend, layout)


def _normalize_backward_impl(grad, weights, state, dims, backend, layout=None):
    layout = layout or _layout(weights, dims)
    if backend == "torch":
        return _ref_normalize_backward(grad, weights, state, layout)
    return _kernel_normalize_backward(grad, weights, state, backend, layout)


def _weight_grads(grad, weights, state, dims, backend, layout=None):
    """Gradients of every weight from the gradient of the flat normalised output."""
    layout = layout or _layout(weights, dims)
    if torch.is_grad_enabled():
        # create_graph=True: a backward built of differentiable ops, so that double backward works
        return _composite_backward(layout.split(grad), weights, state, layout)
    return layout.split(_normalize_backward_impl(grad, weights, state, dims, backend, layout))


# ---------------------------------------------------------------- torch.library registration (traced calls)
# torch.compile, torch.export and tensor subclasses go through these registered ops. Eager calls take the direct
# path below (same implementations): the ops' Python-level dispatch costs tens of microseconds per call with a
# list of 20 weights, as much as the GPU work of a whole SNGAN discriminator.


@torch.library.custom_op("fastgan::sn_power_iteration", mutates_args=("us", "vs"))
def _power_iteration_op(weights: list[torch.Tensor], us: list[torch.Tensor], vs: list[torch.Tensor], dims: list[int],
                        n_power_iterations: int, eps: float, u_first: bool, backend: str) -> torch.Tensor:
    return _power_iteration_impl(weights, us, vs, dims, n_power_iterations, eps, u_first, backend)


@_power_iteration_op.register_fake
def _(weights, us, vs, dims, n_power_iterations, eps, u_first, backend):
    geoms = [plan_mod.matrix_geometry(tuple(w.shape), d) for w, d in zip(weights, dims)]
    return weights[0].new_empty(plan_mod.state_layout(geoms)[2], dtype=_state_dtype(weights[0].dtype))


@torch.library.custom_op("fastgan::sn_normalize", mutates_args=())
def _normalize_op(weights: list[torch.Tensor], state: torch.Tensor, dims: list[int], backend: str) -> torch.Tensor:
    return _normalize_impl(weights, state, dims, backend)


@_normalize_op.register_fake
def _(weights, state, dims, backend):
    return weights[0].new_empty(plan_mod.flat_layout([w.numel() for w in weights])[1])


@torch.library.custom_op("fastgan::sn_normalize_backward", mutates_args=())
def _normalize_backward_op(grad: torch.Tensor, weights: list[torch.Tensor], state: torch.Tensor, dims: list[int],
                           backend: str) -> torch.Tensor:
    return _normalize_backward_impl(grad, weights, state, dims, backend)


@_normalize_backward_op.register_fake
def _(grad, weights, state, dims, backend):
    return torch.empty_like(grad)


def _normalize_setup_context(ctx, inputs, output):
    weights, state, dims, backend = inputs
    ctx.save_for_backward(state, *weights)
    ctx.dims, ctx.backend = list(dims), backend


def _normalize_backward(ctx, grad):
    state, *weights = ctx.saved_tensors
    if torch.is_grad_enabled():
        dws = _weight_grads(grad, weights, state, ctx.dims, ctx.backend)
    else:
        flat = torch.ops.fastgan.sn_normalize_backward(grad, weights, state, ctx.dims, ctx.backend)
        dws = _layout(weights, ctx.dims).split(flat)
    return dws, None, None, None


_normalize_op.register_autograd(_normalize_backward, setup_context=_normalize_setup_context)


# ---------------------------------------------------------------- eager path


class _Normalize(torch.autograd.Function):
    """Eager twin of ``fastgan::sn_normalize`` with its autograd (same implementation functions)."""

    @staticmethod
    def forward(ctx, state, layout, backend, *weights):
        ctx.save_for_backward(state, *weights)
        ctx.layout, ctx.backend = layout, backend
        return _normalize_impl(weights, state, layout.dims, backend, layout)

    @staticmethod
    def backward(ctx, grad):
        state, *weights = ctx.saved_tensors
        return (None, None, None,
                *_weight_grads(grad, weights, state, ctx.layout.dims, ctx.backend, ctx.layout))


class Group:
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
            _check_finite(w, self.labels(), "the weight")
            if n_iter:
                saved = torch._foreach_mul(us + vs, 1.0)  # copies, to restore if sigma turns out bad
        with torch.no_grad():
            if self.layout is None:
                state = torch.ops.fastgan.sn_power_iteration(w, us, vs, self.dims, n_iter, eps, u_first, backend)
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
            flat = torch.ops.fastgan.sn_normalize(self.weights, state, self.dims, backend)
            return _layout(self.weights, self.dims).split(flat)
        if torch.is_grad_enabled() and any(w.requires_grad for w in self.weights):
            flat = _Normalize.apply(state, self.layout, backend, *self.weights)
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
        if _traced(weights[0]):
            return None
        ptrs = tuple(map(_data_ptr, tensors))
    except (TypeError, AttributeError):  # not tensors: check_group says what is wrong
        return None
    return (tuple(map(id, tensors)), dims, ptrs, tuple(map(_shape, weights)), tuple(map(_stride, weights)),
            tuple(map(_dtype, weights)), weights[0].device)


def prepare(weights, us, vs, dims=0, n_power_iterations=1, eps=1e-12, names=None) -> Group:
    """Validate a group (once per set of tensors, shapes and addresses) and return it ready to run."""
    weights, us, vs = _as_list(weights, "weights"), _as_list(us, "us"), _as_list(vs, "vs")
    dims_t = (dims,) * len(weights) if isinstance(dims, int) else tuple(dims)
    sig = _signature(weights, us, vs, dims_t)
    hit = _checked.get(sig) if sig is not None else None
    scalars_ok = (isinstance(n_power_iterations, int) and not isinstance(n_power_iterations, bool)
                  and n_power_iterations >= 0 and isinstance(eps, (int, float)) and 0 < eps < float("inf"))
    if hit is None or not scalars_ok:
        weights, us, vs, checked_dims = check_group(weights, us, vs, list(dims_t), n_power_iterations, eps, names)
        layout = None if _traced(weights[0]) else _layout(weights, checked_dims, us, vs)
        other = next((t.dtype for t in us + vs if t.dtype != torch.float32), None)
        hit = (checked_dims, layout, other)
        if sig is not None:
            if len(_checked) > 256:
                _checked.clear()
            _checked[sig] = hit
    return Group(weights, us, vs, hit[0], hit[1], names, hit[2])


def _check_finite(tensors, names, what):
    bad = [n for t, n in zip(tensors, names) if not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"spectral norm: non-finite values (NaN or Inf) in {what} of {', '.join(bad)}")


def _bad_sigma(sigma, labels) -> str | None:
    """The error message if a sigma is zero or not finite, else None."""
    bad = [n for n, ok in zip(labels, ((sigma > 0) & torch.isfinite(sigma)).tolist()) if not ok]
    if bad:
        return (f"spectral norm: sigma is zero or not finite for {', '.join(bad)} (an all-zero or non-finite "
                "weight, or zero u/v vectors): W / sigma would not be finite; u and v are left as they were")
    return None


def resolve_backend(group: Group, backend: str | None = None) -> str:
    """The backend for this group: as fastgan._backend.resolve, and u, v other than float32 (all of them, or some
    of the group) only on the torch backend."""
    name = _backend.resolve(OP, group.weights[0].device, group.weights[0].dtype, backend)
    if name != "torch" and group.other_vector_dtype is not None:
        if _backend.requested(backend) != "auto":
            raise _backend.BackendUnavailable(f"spectral norm: the {name} backend keeps u and v in float32; this "
                                              f"group has {group.other_vector_dtype} vectors (use backend='torch')")
        return "torch"
    return name


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
