"""Triton kernels of the grouped spectral norm: power iteration, normalisation W/sigma, and its backward.

One launch of each kernel covers every weight of a group (see ``spectral_norm_plan`` for the tables). One power
iteration, u <- normalize(W v), v <- normalize(W^T u), is three launches:

1. ``_sn_rows_kernel``: y = W v, each program a band of rows over all columns (no partial sums);
2. ``_sn_cols_kernel``: z = W^T y, each program COLS_TILE columns over a block of rows, one partial z per block.
   It uses y scaled by the block's largest |y| (not yet normalised: the scale of u is applied in step 3, with
   F.normalize's eps rule), so that no partial overflows where W^T u does not;
3. ``_sn_finalize_kernel``: one program per weight sums the partial z in a fixed order (deterministic, no
   atomics), writes u = y/max(|y|, eps), v = z'/max(|z'|, eps) with z' = z/max(|y|, eps), in place and into the
   snapshot, and sigma = u.W v = |z'|^2/max(|z'|, eps), which needs no third read of W.

Floor: two reads of every W per iteration. Accumulation is float32 whatever the weight dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import spectral_norm_plan as _plan
from ..ops.spectral_norm_plan import COLS_TILE, ELEM_TILE, FLAT_ALIGN, NE, NF
from . import _interpreter_compat

_interpreter_compat.install()

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}

# Launch configurations: the only ones the launchers use (the AOT compile test compiles each of them).
ROWS_BLOCK_M = 8
ROWS_BLOCK_K = {torch.float32: 256, torch.float16: 256, torch.bfloat16: 256}
COLS_BLOCK_R = {torch.float32: 16, torch.float16: 16, torch.bfloat16: 16}
FIN_BLOCK = 512  # 1024 spills on sm_90 with Triton 3.9 (72 registers, 12 bytes); 512: 39-40, on 3.6 and 3.9
ELEM_BLOCK = 1024
ELEM_ITERS = ELEM_TILE // ELEM_BLOCK
PART_BLOCK = 256
NUM_WARPS = 4
_NF = tl.constexpr(NF)
_NE = tl.constexpr(NE)
# fields of the plan's tables (spectral_norm_plan), as compile-time constants the kernels can read
(M_W_PTR, M_U_PTR, M_V_PTR, M_R, M_C, M_SR, M_SC, M_Q, M_SO, M_Y_OFF, M_ZP_OFF, M_N_RB, M_ROWS_PER_TILE,
 M_ROWS_PER_CTILE, M_SU_OFF, M_SV_OFF) = (tl.constexpr(getattr(_plan, f)) for f in (
    "W_PTR", "U_PTR", "V_PTR", "R", "C", "SR", "SC", "Q", "SO", "Y_OFF", "ZP_OFF", "N_RB", "ROWS_PER_TILE",
    "ROWS_PER_CTILE", "SU_OFF", "SV_OFF"))
(E_W_PTR, E_NUMEL, E_FLAT_OFF, E_H, E_Q, E_SU_OFF, E_SV_OFF, E_TILE0, E_NTILES, E_ALIGNED) = (
    tl.constexpr(getattr(_plan, f)) for f in ("E_W_PTR", "E_NUMEL", "E_FLAT_OFF", "E_H", "E_Q", "E_SU_OFF",
                                              "E_SV_OFF", "E_TILE0", "E_NTILES", "E_ALIGNED"))
_SQRT_FLT_MAX = tl.constexpr(1.8446742974197924e19)  # sqrt of float32's largest value
_FLAT_ALIGN = tl.constexpr(FLAT_ALIGN)
_VEC = {torch.float32: 4, torch.float16: 8, torch.bfloat16: 8}  # elements in 16 bytes


@triton.jit
def _rows_band(w_ptr, x_ptr, y_ptr, r0, r_end, C, SR, SC, Q, SO,
               HAS_OUTER: tl.constexpr, UNIT_SC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    for rb in range(r0, r_end, BLOCK_M):
        rows = rb + tl.arange(0, BLOCK_M)
        rmask = rows < r_end
        acc = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
        for k0 in range(0, C, BLOCK_K):
            cols = tl.multiple_of(k0, BLOCK_K) + tl.arange(0, BLOCK_K)
            cmask = cols < C
            if HAS_OUTER:
                q32 = Q.to(tl.int32)
                c32 = cols.to(tl.int32)
                a = c32 // q32
                coff = a.to(tl.int64) * SO + (c32 - a * q32).to(tl.int64) * SC
            elif UNIT_SC:
                coff = cols
            else:
                coff = cols.to(tl.int64) * SC
            w = tl.load(w_ptr + rows[:, None] * SR + coff[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)
            x = tl.load(x_ptr + cols, mask=cmask, other=0.0)
            acc += w.to(tl.float32) * x[None, :]
        tl.store(y_ptr + rows, tl.sum(acc, axis=1), mask=rmask)


@triton.jit
def _matrix_fields(m, scratch):
    """The weight pointer, geometry and strides of one meta row, and where its y lives in scratch."""
    return (tl.load(m + M_W_PTR), tl.load(m + M_R), tl.load(m + M_C), tl.load(m + M_SR), tl.load(m + M_SC),
            tl.load(m + M_Q), tl.load(m + M_SO), scratch + tl.load(m + M_Y_OFF))


@triton.jit
def _sn_rows_kernel(meta, tiles, scratch, W_DTYPE: tl.constexpr, HAS_OUTER: tl.constexpr, UNIT_SC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, VEC: tl.constexpr):
    """y = W v over one band of rows of one weight; y goes to scratch[Y_OFF:]."""
    t = tl.program_id(0)
    g = tl.load(tiles + 2 * t)
    r0 = tl.load(tiles + 2 * t + 1)
    m = meta + g * _NF
    wp, R, C, SR, SC, Q, SO, y_ptr = _matrix_fields(m, scratch)
    x_ptr = tl.load(m + M_V_PTR).to(tl.pointer_type(tl.float32))
    r_end = tl.minimum(r0 + tl.load(m + M_ROWS_PER_TILE), R)
    # Weights whose rows start 16-byte aligned and whose row length is a multiple of 16 bytes get 16-byte loads
    # (Triton vectorises a masked load only when it can prove the bound is a multiple of the vector width).
    # There (x // VEC) * VEC equals x and shows the compiler it is a multiple of VEC. Not tl.multiple_of(C):
    # that marks the op defining C, i.e. the load, and the hint would leak into the unaligned branch.
    if UNIT_SC and not HAS_OUTER:
        if (wp % 16 == 0) & (SR % VEC == 0) & (C % VEC == 0):
            _rows_band(tl.multiple_of(wp.to(tl.pointer_type(W_DTYPE)), 16), x_ptr, y_ptr, r0, r_end,
                       (C // VEC) * VEC, (SR // VEC) * VEC, SC, Q, SO, HAS_OUTER, UNIT_SC, BLOCK_M, BLOCK_K)
        else:
            _rows_band(wp.to(tl.pointer_type(W_DTYPE)), x_ptr, y_ptr, r0, r_end, C, SR, SC, Q, SO,
                       HAS_OUTER, UNIT_SC, BLOCK_M, BLOCK_K)
    else:
        _rows_band(wp.to(tl.pointer_type(W_DTYPE)), x_ptr, y_ptr, r0, r_end, C, SR, SC, Q, SO,
                   HAS_OUTER, UNIT_SC, BLOCK_M, BLOCK_K)


@triton.jit
def _cols_block(w_ptr, y_ptr, zp_ptr, zs_ptr, c0, r_start, r_end, C, SR, SC, Q, SO,
                HAS_OUTER: tl.constexpr, UNIT_SC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    cols = c0 + tl.arange(0, BLOCK_C)
    cmask = cols < C
    if HAS_OUTER:
        q32 = Q.to(tl.int32)
        c32 = cols.to(tl.int32)
        a = c32 // q32
        coff = a.to(tl.int64) * SO + (c32 - a * q32).to(tl.int64) * SC
    elif UNIT_SC:
        coff = cols
    else:
        coff = cols.to(tl.int64) * SC
    # y / max|y| of this row block (y is small and in L2): the partial z cannot overflow where W^T u does not
    ymax = tl.zeros([BLOCK_R], dtype=tl.float32)
    for r in range(r_start, r_end, BLOCK_R):
        rows = r + tl.arange(0, BLOCK_R)
        ymax = tl.maximum(ymax, tl.abs(tl.load(y_ptr + rows, mask=rows < r_end, other=0.0)))
    scale = tl.max(ymax, axis=0)
    inv = tl.where(scale > 0, 1.0 / scale, 0.0)
    acc = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
    for r in range(r_start, r_end, BLOCK_R):
        rows = r + tl.arange(0, BLOCK_R)
        rmask = rows < r_end
        y = tl.load(y_ptr + rows, mask=rmask, other=0.0) * inv
        w = tl.load(w_ptr + rows[:, None] * SR + coff[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)
        acc += w.to(tl.float32) * y[:, None]
    tl.store(zp_ptr + cols, tl.sum(acc, axis=0), mask=cmask)
    if c0 == 0:
        tl.store(zs_ptr, scale)


@triton.jit
def _sn_cols_kernel(meta, tiles, scratch, W_DTYPE: tl.constexpr, HAS_OUTER: tl.constexpr, UNIT_SC: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, VEC: tl.constexpr):
    """Partial z = W^T y over one block of rows and BLOCK_C columns of one weight."""
    t = tl.program_id(0)
    g = tl.load(tiles + 3 * t)
    c0 = tl.multiple_of(tl.load(tiles + 3 * t + 1), BLOCK_C)  # tiles start at multiples of BLOCK_C
    rb = tl.load(tiles + 3 * t + 2)
    m = meta + g * _NF
    wp, R, C, SR, SC, Q, SO, y_ptr = _matrix_fields(m, scratch)
    rpc = tl.load(m + M_ROWS_PER_CTILE)
    zp_ptr = scratch + tl.load(m + M_ZP_OFF) + rb * C
    zs_ptr = scratch + tl.load(m + M_ZP_OFF) + tl.load(m + M_N_RB) * C + rb  # this row block's scale of y
    r_start = rb * rpc
    r_end = tl.minimum(r_start + rpc, R)
    if UNIT_SC and not HAS_OUTER:  # as in the rows kernel
        if (wp % 16 == 0) & (SR % VEC == 0) & (C % VEC == 0):
            _cols_block(tl.multiple_of(wp.to(tl.pointer_type(W_DTYPE)), 16), y_ptr, zp_ptr, zs_ptr, c0, r_start,
                        r_end, (C // VEC) * VEC, (SR // VEC) * VEC, SC, Q, SO, HAS_OUTER, UNIT_SC, BLOCK_R, BLOCK_C)
        else:
            _cols_block(wp.to(tl.pointer_type(W_DTYPE)), y_ptr, zp_ptr, zs_ptr, c0, r_start, r_end, C, SR, SC, Q,
                        SO, HAS_OUTER, UNIT_SC, BLOCK_R, BLOCK_C)
    else:
        _cols_block(wp.to(tl.pointer_type(W_DTYPE)), y_ptr, zp_ptr, zs_ptr, c0, r_start, r_end, C, SR, SC, Q, SO,
                    HAS_OUTER, UNIT_SC, BLOCK_R, BLOCK_C)


@triton.jit
def _max_abs(ptr, n, BLOCK: tl.constexpr):
    """(max |x|, whether x holds a NaN) over x[0, n): the max ignores NaN."""
    offs = tl.arange(0, BLOCK)
    vmax = tl.zeros([BLOCK], dtype=tl.float32)
    nan = tl.zeros([BLOCK], dtype=tl.int32)
    for i0 in range(0, n, BLOCK):
        x = tl.load(ptr + i0 + offs, mask=i0 + offs < n, other=0.0)
        vmax = tl.maximum(vmax, tl.abs(x))
        nan = tl.maximum(nan, (x != x).to(tl.int32))
    return tl.max(vmax, axis=0), tl.max(nan, axis=0) > 0


@triton.jit
def _torch_norm(ptr, n, BLOCK: tl.constexpr):
    """(the 2-norm of x[0, n) as torch's float32 norm gives it, max |x|): the sum of squares is taken of x / max|x|,
    so nothing underflows on the way, and the result is what the plain sum gives: NaN if x holds a NaN, inf if
    it holds an infinity or the plain sum of squares overflows float32 (except for one value, whose norm torch
    takes as its absolute value)."""
    vmax, nan = _max_abs(ptr, n, BLOCK)
    inv = tl.where(vmax > 0, 1.0 / vmax, 0.0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i0 in range(0, n, BLOCK):
        x = tl.load(ptr + i0 + offs, mask=i0 + offs < n, other=0.0) * inv
        acc += x * x
    norm = vmax * tl.sqrt(tl.sum(acc, axis=0))
    norm = tl.where(((norm > _SQRT_FLT_MAX) & (n > 1)) | (vmax == float("inf")), float("inf"), norm)
    return tl.where(nan, float("nan"), norm), vmax


@triton.jit
def _floor_eps(n, eps):
    """max(n, eps) as torch's clamp_min: NaN stays NaN (a NaN weight gives NaN u, v and sigma, as in torch)."""
    return tl.where(n != n, n, tl.maximum(n, eps))


@triton.jit
def _sn_finalize_kernel(meta, scratch, state, eps, EVAL: tl.constexpr, BLOCK: tl.constexpr):
    """One program per weight: normalise y and z into u and v (in place and snapshot), and sigma.

    EVAL (no iteration): sigma = u . (W v) with y = W v from the rows pass; u and v are only snapshotted.
    Otherwise, with |.| as torch's float32 norm (``_torch_norm``): u = y / max(|y|, eps); z' = z / max(|y|, eps) is
    W^T u; v = z' / max(|z'|, eps); sigma = u . W v = |z'|^2 / max(|z'|, eps), evaluated as |z'| (|z'| / max(|z'|,
    eps)) so that it underflows only where sigma itself does. Overflow, NaN and infinities come out as torch's.
    """
    g = tl.program_id(0)
    m = meta + g * _NF
    u_ptr = tl.load(m + M_U_PTR).to(tl.pointer_type(tl.float32))
    v_ptr = tl.load(m + M_V_PTR).to(tl.pointer_type(tl.float32))
    R = tl.load(m + M_R)
    C = tl.load(m + M_C)
    y_ptr = scratch + tl.load(m + M_Y_OFF)
    zp_ptr = scratch + tl.load(m + M_ZP_OFF)
    n_rb = tl.load(m + M_N_RB)
    su_ptr = state + tl.load(m + M_SU_OFF)
    sv_ptr = state + tl.load(m + M_SV_OFF)
    offs = tl.arange(0, BLOCK)
    if EVAL:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for r0 in range(0, R, BLOCK):
            rows = r0 + offs
            mask = rows < R
            u = tl.load(u_ptr + rows, mask=mask, other=0.0)
            acc += u * tl.load(y_ptr + rows, mask=mask, other=0.0)
            tl.store(su_ptr + rows, u, mask=mask)
        for c0 in range(0, C, BLOCK):
            cols = c0 + offs
            mask = cols < C
            tl.store(sv_ptr + cols, tl.load(v_ptr + cols, mask=mask), mask=mask)
        tl.store(state + g, tl.sum(acc, axis=0))
    else:
        s_y = _floor_eps(_torch_norm(y_ptr, R, BLOCK)[0], eps)
        for r0 in range(0, R, BLOCK):
            rows = r0 + offs
            mask = rows < R
            u = tl.load(y_ptr + rows, mask=mask, other=0.0) / s_y
            tl.store(u_ptr + rows, u, mask=mask)
            tl.store(su_ptr + rows, u, mask=mask)
        # z' = W^T u = sum over row blocks of partial_b * (scale_b / s_y): 0 where |y| overflowed from finite values
        # (scale_b / inf), as torch's u is 0 there; NaN where y holds an infinity (inf / inf), as torch's u does
        zs_ptr = zp_ptr + n_rb * C
        for c0 in range(0, C, BLOCK):
            cols = c0 + offs
            mask = cols < C
            z = tl.zeros([BLOCK], dtype=tl.float32)
            for rb in range(0, n_rb):
                z += tl.load(zp_ptr + rb * C + cols, mask=mask, other=0.0) * (tl.load(zs_ptr + rb) / s_y)
            tl.store(zp_ptr + cols, z, mask=mask)  # the first partial row now holds z'
        tl.debug_barrier()
        n_z, z_max = _torch_norm(zp_ptr, C, BLOCK)
        s_z = _floor_eps(n_z, eps)
        for c0 in range(0, C, BLOCK):
            cols = c0 + offs
            mask = cols < C
            v = tl.load(zp_ptr + cols, mask=mask, other=0.0) / s_z
            tl.store(v_ptr + cols, v, mask=mask)
            tl.store(sv_ptr + cols, v, mask=mask)
        # where |z'| overflowed from finite values, v is 0 (as torch's) and so is u . W v; an infinite z' gives NaN
        sigma = tl.where(n_z == float("inf"), tl.where(z_max == float("inf"), float("nan"), 0.0),
                         n_z * (n_z / s_z))
        tl.store(state + g, sigma)


@triton.jit
def _scale_tile(w_ptr, o_ptr, start, numel, sigma, W_DTYPE: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    padded = (numel + _FLAT_ALIGN - 1) // _FLAT_ALIGN * _FLAT_ALIGN
    for i in tl.static_range(ITERS):
        offs = start + i * BLOCK + tl.arange(0, BLOCK)
        w = tl.load(w_ptr + offs, mask=offs < numel, other=0.0)
        # the padding up to the next weight is written as zeros, so the flat output is fully defined
        tl.store(o_ptr + offs, (w.to(tl.float32) / sigma).to(W_DTYPE), mask=offs < padded)


@triton.jit
def _sn_scale_kernel(emeta, tiles, state, out, W_DTYPE: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    """out[flat_off + i] = W[i] / sigma for one tile of one weight."""
    t = tl.program_id(0)
    g = tl.load(tiles + 2 * t)
    start = tl.multiple_of(tl.load(tiles + 2 * t + 1), BLOCK)  # tiles start at multiples of ELEM_TILE
    m = emeta + g * _NE
    wp = tl.load(m + E_W_PTR)
    numel = tl.load(m + E_NUMEL)
    o_ptr = out + tl.multiple_of(tl.load(m + E_FLAT_OFF), _FLAT_ALIGN)
    sigma = tl.load(state + g)
    if (tl.load(m + E_ALIGNED) != 0) & (numel % _FLAT_ALIGN == 0):  # 16-byte accesses (see the rows kernel)
        _scale_tile(tl.multiple_of(wp.to(tl.pointer_type(W_DTYPE)), 16), o_ptr, start,
                    (numel // _FLAT_ALIGN) * _FLAT_ALIGN, sigma, W_DTYPE, BLOCK, ITERS)
    else:
        _scale_tile(wp.to(tl.pointer_type(W_DTYPE)), o_ptr, start, numel, sigma, W_DTYPE, BLOCK, ITERS)


@triton.jit
def _dot_tile(w_ptr, g_ptr, start, numel, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in tl.static_range(ITERS):
        offs = start + i * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        w = tl.load(w_ptr + offs, mask=mask, other=0.0)
        gr = tl.load(g_ptr + offs, mask=mask, other=0.0)
        acc += w.to(tl.float32) * gr.to(tl.float32)
    return tl.sum(acc, axis=0)


@triton.jit
def _sn_dot_kernel(emeta, tiles, grad, partials, W_DTYPE: tl.constexpr, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    """partials[t] = sum over one tile of grad * W (first stage of <G, W> per weight)."""
    t = tl.program_id(0)
    g = tl.load(tiles + 2 * t)
    start = tl.multiple_of(tl.load(tiles + 2 * t + 1), BLOCK)
    m = emeta + g * _NE
    wp = tl.load(m + E_W_PTR)
    numel = tl.load(m + E_NUMEL)
    g_ptr = grad + tl.multiple_of(tl.load(m + E_FLAT_OFF), _FLAT_ALIGN)
    if (tl.load(m + E_ALIGNED) != 0) & (numel % _FLAT_ALIGN == 0):
        part = _dot_tile(tl.multiple_of(wp.to(tl.pointer_type(W_DTYPE)), 16), g_ptr, start,
                         (numel // _FLAT_ALIGN) * _FLAT_ALIGN, BLOCK, ITERS)
    else:
        part = _dot_tile(wp.to(tl.pointer_type(W_DTYPE)), g_ptr, start, numel, BLOCK, ITERS)
    tl.store(partials + t, part)


@triton.jit
def _grad_tile(g_ptr, d_ptr, su_ptr, sv_ptr, start, numel, H, Q, inv, coef, W_DTYPE: tl.constexpr,
               BLOCK: tl.constexpr, ITERS: tl.constexpr, OUTER: tl.constexpr):
    padded = (numel + _FLAT_ALIGN - 1) // _FLAT_ALIGN * _FLAT_ALIGN
    for i in tl.static_range(ITERS):
        offs = start + i * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        gr = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        o32 = offs.to(tl.int32)
        a = o32 // Q
        if OUTER:
            r = a % H
            c = (a // H) * Q + (o32 - a * Q)
        else:  # dim 0: one division gives row and column
            r = a
            c = o32 - a * Q
        uu = tl.load(su_ptr + r, mask=mask, other=0.0)
        vv = tl.load(sv_ptr + c, mask=mask, other=0.0)
        d = tl.where(mask, gr * inv - coef * uu * vv, 0.0)
        tl.store(d_ptr + offs, d.to(W_DTYPE), mask=offs < padded)  # the padding is written as zeros


@triton.jit
def _sn_grad_kernel(emeta, tiles, grad, partials, state, dw, W_DTYPE: tl.constexpr, BLOCK: tl.constexpr,
                    ITERS: tl.constexpr, PBLOCK: tl.constexpr):
    """dW = G/sigma - (<G, W>/sigma^2) u v^T over one tile (u, v, sigma from the snapshot)."""
    t = tl.num_programs(0) - 1 - tl.program_id(0)  # reverse of the dot pass: reuse what L2 still holds
    g = tl.load(tiles + 2 * t)
    start = tl.multiple_of(tl.load(tiles + 2 * t + 1), BLOCK)
    m = emeta + g * _NE
    numel = tl.load(m + E_NUMEL)
    foff = tl.multiple_of(tl.load(m + E_FLAT_OFF), _FLAT_ALIGN)  # flat offsets are multiples of FLAT_ALIGN
    H = tl.load(m + E_H).to(tl.int32)
    Q = tl.load(m + E_Q).to(tl.int32)
    su_ptr = state + tl.load(m + E_SU_OFF)
    sv_ptr = state + tl.load(m + E_SV_OFF)
    tile0 = tl.load(m + E_TILE0)
    n_tiles = tl.load(m + E_NTILES)
    # second stage of <G, W>: every program of this weight sums the same partials in the same order
    pacc = tl.zeros([PBLOCK], dtype=tl.float32)
    for p0 in range(0, n_tiles, PBLOCK):
        idx = p0 + tl.arange(0, PBLOCK)
        pacc += tl.load(partials + tile0 + idx, mask=idx < n_tiles, other=0.0)
    inv = 1.0 / tl.load(state + g)
    coef = tl.sum(pacc, axis=0) * inv * inv
    g_ptr = grad + foff
    d_ptr = dw + foff
    if H.to(tl.int64) * Q != numel:  # the weight's matrix was taken along a dim > 0
        _grad_tile(g_ptr, d_ptr, su_ptr, sv_ptr, start, numel, H, Q, inv, coef, W_DTYPE, BLOCK, ITERS, True)
    elif numel % _FLAT_ALIGN == 0:
        _grad_tile(g_ptr, d_ptr, su_ptr, sv_ptr, start, (numel // _FLAT_ALIGN) * _FLAT_ALIGN, H, Q, inv, coef,
                   W_DTYPE, BLOCK, ITERS, False)
    else:
        _grad_tile(g_ptr, d_ptr, su_ptr, sv_ptr, start, numel, H, Q, inv, coef, W_DTYPE, BLOCK, ITERS, False)


def power_iteration(plan, n_iter: int, eps: float, state: torch.Tensor, dtype: torch.dtype) -> None:
    """Run ``n_iter`` iterations (0: only sigma = u.W v) over the group described by ``plan``."""
    wdt = _TL_DTYPES[dtype]
    scratch = torch.empty(plan.scratch_size, dtype=torch.float32, device=state.device)
    for _ in range(max(n_iter, 1)):
        if plan.n_rows_tiles:  # none when every weight has no rows (empty weights)
            _sn_rows_kernel[(plan.n_rows_tiles,)](
                plan.meta, plan.rows_tiles, scratch, W_DTYPE=wdt, HAS_OUTER=plan.has_outer, UNIT_SC=plan.unit_sc,
                BLOCK_M=ROWS_BLOCK_M, BLOCK_K=ROWS_BLOCK_K[dtype], VEC=_VEC[dtype], num_warps=NUM_WARPS)
        if n_iter > 0 and plan.n_cols_tiles:
            _sn_cols_kernel[(plan.n_cols_tiles,)](
                plan.meta, plan.cols_tiles, scratch, W_DTYPE=wdt, HAS_OUTER=plan.has_outer, UNIT_SC=plan.unit_sc,
                BLOCK_R=COLS_BLOCK_R[dtype], BLOCK_C=COLS_TILE, VEC=_VEC[dtype], num_warps=NUM_WARPS)
        _sn_finalize_kernel[(plan.G,)](plan.meta, scratch, state, eps, EVAL=n_iter == 0, BLOCK=FIN_BLOCK,
                                       num_warps=NUM_WARPS)


def normalize(eplan, state: torch.Tensor, out: torch.Tensor) -> None:
    """out (flat) <- every W / sigma."""
    if not eplan.n_tiles:
        return
    _sn_scale_kernel[(eplan.n_tiles,)](eplan.emeta, eplan.elem_tiles, state, out, W_DTYPE=_TL_DTYPES[out.dtype],
                                       BLOCK=ELEM_BLOCK, ITERS=ELEM_ITERS, num_warps=NUM_WARPS)


def normalize_backward(eplan, grad: torch.Tensor, state: torch.Tensor, dw: torch.Tensor) -> None:
    """dw (flat) <- (G - <G, W/sigma> u v^T) / sigma for every weight; grad is flat like the output."""
    if not eplan.n_tiles:
        return
    wdt = _TL_DTYPES[dw.dtype]
    partials = torch.empty(eplan.n_tiles, dtype=torch.float32, device=grad.device)
    _sn_dot_kernel[(eplan.n_tiles,)](eplan.emeta, eplan.elem_tiles, grad, partials, W_DTYPE=wdt,
                                     BLOCK=ELEM_BLOCK, ITERS=ELEM_ITERS, num_warps=NUM_WARPS)
    _sn_grad_kernel[(eplan.n_tiles,)](eplan.emeta, eplan.elem_tiles, grad, partials, state, dw, W_DTYPE=wdt,
                                      BLOCK=ELEM_BLOCK, ITERS=ELEM_ITERS, PBLOCK=PART_BLOCK, num_warps=NUM_WARPS)


def launch_configs():
    """Every (kernel, signature, constexprs, num_warps) the launchers above can use, for AOT compilation."""
    configs = []
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    for dtype, wdt in _TL_DTYPES.items():
        for has_outer, unit_sc in ((False, True), (True, True), (False, False)):
            configs.append((_sn_rows_kernel, {"meta": "*i64", "tiles": "*i64", "scratch": "*fp32"},
                            {"W_DTYPE": wdt, "HAS_OUTER": has_outer, "UNIT_SC": unit_sc, "BLOCK_M": ROWS_BLOCK_M,
                             "BLOCK_K": ROWS_BLOCK_K[dtype], "VEC": _VEC[dtype]}))
            configs.append((_sn_cols_kernel, {"meta": "*i64", "tiles": "*i64", "scratch": "*fp32"},
                            {"W_DTYPE": wdt, "HAS_OUTER": has_outer, "UNIT_SC": unit_sc,
                             "BLOCK_R": COLS_BLOCK_R[dtype], "BLOCK_C": COLS_TILE, "VEC": _VEC[dtype]}))
        configs.append((_sn_scale_kernel, {"emeta": "*i64", "tiles": "*i64", "state": "*fp32", "out": ptr[dtype]},
                        {"W_DTYPE": wdt, "BLOCK": ELEM_BLOCK, "ITERS": ELEM_ITERS}))
        configs.append((_sn_dot_kernel, {"emeta": "*i64", "tiles": "*i64", "grad": ptr[dtype], "partials": "*fp32"},
                        {"W_DTYPE": wdt, "BLOCK": ELEM_BLOCK, "ITERS": ELEM_ITERS}))
        configs.append((_sn_grad_kernel, {"emeta": "*i64", "tiles": "*i64", "grad": ptr[dtype], "partials": "*fp32",
                                          "state": "*fp32", "dw": ptr[dtype]},
                        {"W_DTYPE": wdt, "BLOCK": ELEM_BLOCK, "ITERS": ELEM_ITERS, "PBLOCK": PART_BLOCK}))
    for ev in (False, True):
        configs.append((_sn_finalize_kernel, {"meta": "*i64", "scratch": "*fp32", "state": "*fp32", "eps": "fp32"},
                        {"EVAL": ev, "BLOCK": FIN_BLOCK}))
    return [(k, sig, cx, NUM_WARPS) for k, sig, cx in configs]


__all__ = ["power_iteration", "normalize", "normalize_backward", "launch_configs"]
