"""Spectral norm in eager torch: the reference the kernels are tested against (float64 capable) and the composite
backward that double backward differentiates. Semantics: see ``spectral_norm.py``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import spectral_norm_plan as plan_mod
from ._op import acc_dtype


def matrix(w: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    m = w if dim == 0 else w.movedim(dim, 0)
    return m.reshape(m.shape[0], math.prod(m.shape[1:])).to(dtype)  # (not -1: it cannot size an empty weight)


def outer_like(u: torch.Tensor, v: torch.Tensor, shape, dim: int) -> torch.Tensor:
    """u v^T laid out like a weight of ``shape`` whose matrix is taken along ``dim``."""
    rest = [s for i, s in enumerate(shape) if i != dim]
    return torch.outer(u, v).reshape(shape[dim], *rest).movedim(0, dim)


def power_iteration(weights, us, vs, dims, n_iter, eps, u_first):
    """Update u, v in place; return the snapshot [sigma | u_i, v_i] (float32, float64 for float64 weights)."""
    sdt = acc_dtype(weights[0].dtype)
    sigmas, vecs = [], []
    for w, u_buf, v_buf, d in zip(weights, us, vs, dims):
        W = matrix(w, d, sdt)
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


def normalize(weights, state, layout):
    """The flat buffer of every W_i / sigma_i (laid out by ``layout``)."""
    flat = weights[0].new_zeros(layout.flat_size)
    for g, (w, off) in enumerate(zip(weights, layout.flat_offsets)):
        flat[off:off + w.numel()] = (w.reshape(-1).to(state.dtype) / state[g]).to(w.dtype)
    return flat


def composite_backward(grads, weights, state, layout):
    """dW per weight from differentiable torch ops (used while recording a double backward)."""
    su, sv, _ = plan_mod.state_layout(layout.geoms)
    out = []
    for gr, w, d, a, b, (_, h, _, wc) in zip(grads, weights, layout.dims, su, sv, layout.geoms):
        u, v = state[a:a + h], state[b:b + wc]
        wf, gf = w.to(state.dtype), gr.to(state.dtype)
        sigma = torch.dot(u, torch.mv(matrix(wf, d, state.dtype), v))  # as a function of W, u and v constant
        # / sigma / sigma, not / sigma^2, which underflows (overflows) for sigma below 1e-19 (above 1e19)
        dw = gf / sigma - (gf * wf).sum() / sigma / sigma * outer_like(u, v, w.shape, d)
        out.append(dw.to(w.dtype))
    return out


def normalize_backward(grad, weights, state, layout):
    """The flat gradient of every weight from the flat gradient of the normalised output."""
    flat = grad.new_zeros(layout.flat_size)
    for off, dw in zip(layout.flat_offsets, composite_backward(layout.split(grad), weights, state, layout)):
        flat[off:off + dw.numel()] = dw.reshape(-1)
    return flat
