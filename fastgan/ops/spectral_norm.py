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


def _geoms(weights, dims) -> tuple:
    return tuple(plan_mod.matrix_geometry(tuple(w.shape), d) for w, d in zip(weights, dims))


def _matrix(w: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    m = w if dim == 0 else w.movedim(dim, 0)
    return m.reshape(m.shape[0], -1).to(dtype)


def _outer_like(u: torch.Tensor, v: torch.Tensor, shape, dim: int) -> torch.Tensor:
    """u v^T laid out like a weight of ``shape`` whose matrix is taken along ``dim``."""
    rest = [s for i, s in enumerate(shape) if i != dim]
    return torch.outer(u, v).reshape(shape[dim], *rest).movedim(0, dim)


def _state_views(state, geoms):
    su, sv, _ = plan_mod.state_layout(geoms)
    return [(state[a:a + h], state[b:b + w]) for a, b, (_, h, _, w) in zip(su, sv, geoms)]


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


def _ref_normalize(weights, state, geoms):
    offs, size = plan_mod.flat_layout([w.numel() for w in weights])
    flat = weights[0].new_zeros(size)
    for g, (w, off) in enumerate(zip(weights, offs)):
        flat[off:off + w.numel()] = (w.reshape(-1).to(state.dtype) / state[g]).to(w.dtype)
    return flat


def _composite_backward(grads, weights, state, dims, geoms):
    """dW per weight from differentiable torch ops (used while recording a double backward)."""
    out = []
    for g, (gr, w, d, (u, v)) in enumerate(zip(grads, weights, dims, _state_views(state, geoms))):
        sdt = state.dtype
        wf, gf = w.to(sdt), gr.to(sdt)
        sigma = torch.dot(u, torch.mv(_matrix(wf, d, sdt), v))  # sigma as a function of W, u and v constant
        dw = gf / sigma - (gf * wf).sum() / (sigma * sigma) * _outer_like(u, v, w.shape, d)
        out.append(dw.to(w.dtype))
    return out


def _ref_normalize_backward(grad, weights, state, dims, geoms):
    grads = plan_mod.split_flat(grad, [w.shape for w in weights], [w.numel() for w in weights])
    offs, size = plan_mod.flat_layout([w.numel() for w in weights])
    flat = grad.new_zeros(size)
    for off, dw in zip(offs, _composite_backward(grads, weights, state, dims, geoms)):
        flat[off:off + dw.numel()] = dw.reshape(-1)
    return flat


# ---------------------------------------------------------------- kernel dispatch


def _kernel_weights(weights, dims, geoms, u_first):
    """Weights as the kernels need them (contiguous; plain 2-D matrices for the transposed iteration).

    Returns (tensors, their geometries, cacheable): copies are made only for unusual layouts, and their tables
    are not cached since the copies' addresses change every call.
    """
    out, out_geoms, cacheable = [], [], True
    for w, d, geom in zip(weights, dims, geoms):
        p, h, q, wc = geom
        if not u_first and p > 1:
            w = _matrix(w, d, w.dtype).contiguous()
            geom = (1, h, wc, wc)
            cacheable = False
        elif not w.is_contiguous():
            w = w.contiguous()
            cacheable = False
        out.append(w)
        out_geoms.append(geom)
    return out, tuple(out_geoms), cacheable


def _contiguous_weights(weights):
    if all(w.is_contiguous() for w in weights):
        return weights, True
    return [w.contiguous() for w in weights], False


def _cuda_stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _kernel_power_iteration(weights, us, vs, dims, n_iter, eps, u_first, backend):
    geoms = _geoms(weights, dims)
    kw, kgeoms, cacheable = _kernel_weights(weights, dims, geoms, u_first)
    plan = plan_mod.iter_plan(kw, us, vs, kgeoms, u_first, cacheable)
    state = torch.empty(plan_mod.state_layout(geoms)[2], dtype=torch.float32, device=weights[0].device)
    if backend == "triton":
        from ..kernels import spectral_norm as tk

        tk.power_iteration(plan, n_iter, eps, state, weights[0].dtype)
    else:
        dev = state.device
        scratch = torch.empty(plan.scratch_size, dtype=torch.float32, device=dev)
        _backend.extension().sn_power_iteration(
            plan.meta.data_ptr(), plan.rows_tiles.data_ptr(), plan.n_rows_tiles, plan.cols_tiles.data_ptr(),
            plan.n_cols_tiles, plan.G, scratch.data_ptr(), state.data_ptr(), n_iter, float(eps),
            _DTYPE_CODE[weights[0].dtype], plan.has_outer, plan.unit_sc, dev.index, _cuda_stream(dev))
    return state


def _kernel_normalize(weights, state, dims, backend):
    kw, cacheable = _contiguous_weights(weights)
    eplan = plan_mod.elem_plan(kw, _geoms(weights, dims), cacheable)
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


def _kernel_normalize_backward(grad, weights, state, dims, backend):
    kw, cacheable = _contiguous_weights(weights)
    eplan = plan_mod.elem_plan(kw, _geoms(weights, dims), cacheable)
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


# ---------------------------------------------------------------- torch.library registration


@torch.library.custom_op("fastgan::sn_power_iteration", mutates_args=("us", "vs"))
def _power_iteration_op(weights: list[torch.Tensor], us: list[torch.Tensor], vs: list[torch.Tensor], dims: list[int],
                        n_power_iterations: int, eps: float, u_first: bool, backend: str) -> torch.Tensor:
    if backend == "torch":
        return _ref_power_iteration(weights, us, vs, dims, n_power_iterations, eps, u_first)
    return _kernel_power_iteration(weights, us, vs, dims, n_power_iterations, eps, u_first, backend)


@_power_iteration_op.register_fake
def _(weights, us, vs, dims, n_power_iterations, eps, u_first, backend):
    size = plan_mod.state_layout(_geoms(weights, dims))[2]
    return weights[0].new_empty(size, dtype=_state_dtype(weights[0].dtype))


@torch.library.custom_op("fastgan::sn_normalize", mutates_args=())
def _normalize_op(weights: list[torch.Tensor], state: torch.Tensor, dims: list[int], backend: str) -> torch.Tensor:
    if backend == "torch":
        return _ref_normalize(weights, state, _geoms(weights, dims))
    return _kernel_normalize(weights, state, dims, backend)


@_normalize_op.register_fake
def _(weights, state, dims, backend):
    return weights[0].new_empty(plan_mod.flat_layout([w.numel() for w in weights])[1])


@torch.library.custom_op("fastgan::sn_normalize_backward", mutates_args=())
def _normalize_backward_op(grad: torch.Tensor, weights: list[torch.Tensor], state: torch.Tensor, dims: list[int],
                           backend: str) -> torch.Tensor:
    if backend == "torch":
        return _ref_normalize_backward(grad, weights, state, dims, _geoms(weights, dims))
    return _kernel_normalize_backward(grad, weights, state, dims, backend)


@_normalize_backward_op.register_fake
def _(grad, weights, state, dims, backend):
    return torch.empty_like(grad)


def _normalize_setup_context(ctx, inputs, output):
    weights, state, dims, backend = inputs
    ctx.save_for_backward(state, *weights)
    ctx.dims, ctx.backend = list(dims), backend


def _normalize_backward(ctx, grad):
    state, *weights = ctx.saved_tensors
    shapes, numels = [w.shape for w in weights], [w.numel() for w in weights]
    if torch.is_grad_enabled():
        # create_graph=True: a backward built of differentiable ops, so that double backward works
        grads = plan_mod.split_flat(grad, shapes, numels)
        dws = _composite_backward(grads, weights, state, ctx.dims, _geoms(weights, ctx.dims))
    else:
        flat = torch.ops.fastgan.sn_normalize_backward(grad, weights, state, ctx.dims, ctx.backend)
        dws = plan_mod.split_flat(flat, shapes, numels)
    return dws, None, None, None


_normalize_op.register_autograd(_normalize_backward, setup_context=_normalize_setup_context)


# ---------------------------------------------------------------- public functional API


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


def _check_finite(tensors, names, what):
    bad = [n for t, n in zip(tensors, names) if not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"spectral norm: non-finite values (NaN or Inf) in {what} of {', '.join(bad)}")


def _resolve(weights, us, backend):
    name = _backend.resolve(OP, weights[0].device, weights[0].dtype, backend)
    if name != "torch" and us[0].dtype != torch.float32:
        raise _backend.BackendUnavailable(f"spectral norm: the {name} backend keeps u and v in float32; "
                                          f"these are {us[0].dtype} (use backend='torch')")
    return name


def power_iteration_state(weights, us, vs, dims, n_power_iterations, eps, u_first=True, backend=None, names=None):
    """Validate a group, run the iterations and return the snapshot [sigma | u_i, v_i] (no gradient)."""
    weights, us, vs, dims = check_group(weights, us, vs, dims, n_power_iterations, eps, names)
    name = _resolve(weights, us, backend)
    with torch.no_grad():
        return torch.ops.fastgan.sn_power_iteration(weights, us, vs, dims, n_power_iterations, float(eps), u_first,
                                                    name)


def normalize_from_state(weights, state, dims, backend=None) -> list[torch.Tensor]:
    """W_i / sigma_i for a snapshot made by :func:`power_iteration_state` on the same weights."""
    name = _backend.resolve(OP, weights[0].device, weights[0].dtype, backend)
    flat = torch.ops.fastgan.sn_normalize(weights, state, dims, name)
    return plan_mod.split_flat(flat, [w.shape for w in weights], [w.numel() for w in weights])


def _check_sigma(sigma, labels):
    bad = [n for n, ok in zip(labels, ((sigma > 0) & torch.isfinite(sigma)).tolist()) if not ok]
    if bad:
        raise ValueError(f"spectral norm: sigma is zero or not finite for {', '.join(bad)} (an all-zero or "
                         "non-finite weight, or zero u/v vectors): W / sigma would not be finite")


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
        check_finite: raise if any weight holds NaN or Inf (costs a pass and a host sync).

    Returns:
        sigma, shape (G,), float32 (float64 for float64 weights): u_i . W_i v_i after the update. No gradient.
    """
    weights, us, vs, dims = check_group(weights, us, vs, dims, n_power_iterations, eps)
    if check_finite:
        _check_finite(weights, [f"weights[{i}]" for i in range(len(weights))], "the weight")
    state = power_iteration_state(weights, us, vs, dims, n_power_iterations, eps, u_first, backend)
    return state[:len(weights)]


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
    labels = list(names) if names else None
    weights, us, vs, dims = check_group(weights, us, vs, dims, n_power_iterations, eps, labels)
    labels = labels or [f"weights[{i}]" for i in range(len(weights))]
    if check_finite:
        _check_finite(weights, labels, "the weight")
    state = power_iteration_state(weights, us, vs, dims, n_power_iterations, eps, u_first, backend, labels)
    if check_finite:
        _check_sigma(state[:len(weights)], labels)
    return normalize_from_state(weights, state, dims, backend), state[:len(weights)]
