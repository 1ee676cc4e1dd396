"""Triton kernels of conditional batch norm: x of shape (N, C, HW), NCHW or channels-last, with per-sample
(N, C) or per-channel (C,) scale and shift, and an optional fused ReLU / leaky ReLU.

Training forward, three launches (two passes over x):

1. ``_cbn_stats_kernel``: per (n, c), the mean and centred sum of squares M2 of x[n, c, :] (tile-wise two-pass
   results merged with Chan's rule; never E[x^2] - E[x]^2);
2. ``_cbn_stats_finalize_kernel``: per channel, the fixed-order merge of those N partials of equal count:
   mean = sum_n mean_n / N, M2 = sum_n M2_n + HW sum_n (mean_n - mean)^2; then invstd, and the running
   statistics (unbiased variance), or the raw (mean, M2) when they are merged across processes first;
3. ``_cbn_apply_kernel``: y = act((x - mean) invstd gamma[n, c] + beta[n, c]). Eval is this launch alone, with
   the running statistics.

Backward, three launches (two passes over x and dy), with g = dy act'(z) and xhat = (x - mean) invstd:

4. ``_cbn_backward_reduce_kernel``: per (n, c), A = sum_hw g and B = sum_hw g xhat (dbias and dweight per sample);
5. ``_cbn_backward_finalize_kernel``: per channel, S1 = sum_n gamma A, S2 = sum_n gamma B, sum_n B, sum_n A;
6. ``_cbn_backward_dx_kernel``: dx = invstd (gamma g - (S1 + xhat S2) / M), M the count per channel.

Every kernel works on a tile [BLOCK_P, BLOCK_R]: P indexes (n, c) pairs sharing one scale and shift, R the H*W
positions reduced over. NCHW: a program takes one channel and BLOCK_P samples, R is contiguous. Channels-last:
a program takes one sample and BLOCK_P channels, P is contiguous. VEC > 1 tells the compiler that the contiguous
extent (HW, or C) is a multiple of VEC, so loads are 16 bytes wide. Buffers between launches are float32:
part and sums (N, C, 2), stats (2, C), k (4, C). No atomics: every cross-program sum is in a fixed order.

Floor: the forward moves 3 |x| bytes (x read twice, y written), the backward 5 |x| (dy and x read twice, dx
written); the (N, C) buffers are |x| * 2 / HW.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import activations
from . import _interpreter_compat

_interpreter_compat.install()

_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}
_PTR = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
TILE = 2048        # elements per tile iteration
MAX_BLOCK_R = 1024  # NCHW: positions per tile
MAX_BLOCK_C = 128   # channels-last: channels per tile
FIN_BLOCK_N = 32
FIN_BLOCK_C = 32
NUM_WARPS = 4
# the activation codes of fastgan.activations, as compile-time constants the kernels compare ACT with
_ACT_NONE = tl.constexpr(activations.NONE)
_ACT_RELU = tl.constexpr(activations.RELU)
_ACT_LEAKY_RELU = tl.constexpr(activations.LEAKY_RELU)


@triton.jit
def _coords(pid, N, C, HW, n_pblocks, CL: tl.constexpr, VEC: tl.constexpr, BLOCK_P: tl.constexpr):
    """(n, c, mask, offset) of the BLOCK_P rows of program ``pid``, the stride of R, and HW (hinted)."""
    pb = pid % n_pblocks
    q = pid // n_pblocks
    rp = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    if CL:
        Cv = (C // VEC) * VEC  # C is a multiple of VEC (the launcher checks): 16-byte loads
        n = q + tl.zeros([BLOCK_P], dtype=tl.int32)
        c = rp
        pmask = c < Cv
        p_off = n.to(tl.int64) * HW * Cv + c
        r_stride = Cv
        hw = HW
    else:
        hw = (HW // VEC) * VEC
        n = rp
        c = q + tl.zeros([BLOCK_P], dtype=tl.int32)
        pmask = n < N
        p_off = (n.to(tl.int64) * C + c) * hw
        r_stride = 1
    return n, c, pmask, p_off, r_stride, hw


@triton.jit
def _scale_shift(n, c, pmask, mean_ptr, stat_ptr, w_ptr, b_ptr, w_stride_n, eps, HAS_W: tl.constexpr,
                 HAS_B: tl.constexpr, EVAL: tl.constexpr):
    """Per row: mean [P, 1], invstd [P], gamma * invstd [P, 1], beta [P, 1] (stat_ptr holds invstd, or the
    variance in eval)."""
    mean = tl.load(mean_ptr + c, mask=pmask, other=0.0)
    s = tl.load(stat_ptr + c, mask=pmask, other=1.0)
    if EVAL:
        s = 1.0 / tl.sqrt(s + eps)
    pidx = n * w_stride_n + c
    if HAS_W:
        gamma = tl.load(w_ptr + pidx, mask=pmask, other=0.0)
    else:
        gamma = tl.full(mean.shape, 1.0, tl.float32)
    if HAS_B:
        beta = tl.load(b_ptr + pidx, mask=pmask, other=0.0)
    else:
        beta = tl.zeros(mean.shape, tl.float32)
    return mean[:, None], s, (gamma * s)[:, None], beta[:, None]


@triton.jit
def _activation_grad(gy, z, slope, ACT: tl.constexpr):
    if ACT == _ACT_RELU:  # as torch: the gradient passes unless z <= 0 (at z = NaN too)
        gy = tl.where(z <= 0, 0.0, gy)
    elif ACT == _ACT_LEAKY_RELU:
        gy = tl.where(z > 0, gy, gy * slope)
    return gy


@triton.jit
def _cbn_stats_kernel(x_ptr, part_ptr, N, C, HW, n_pblocks, CL: tl.constexpr, VEC: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr):
    n, c, pmask, p_off, r_stride, hw = _coords(tl.program_id(0), N, C, HW, n_pblocks, CL, VEC, BLOCK_P)
    mean = tl.zeros([BLOCK_P], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_P], dtype=tl.float32)
    count = 0.0
    for r0 in range(0, hw, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        m = pmask[:, None] & (rr < hw)[None, :]
        v = tl.load(x_ptr + p_off[:, None] + (rr * r_stride)[None, :], mask=m, other=0.0).to(tl.float32)
        nt = tl.minimum(hw - r0, BLOCK_R).to(tl.float32)
        t_mean = tl.sum(v, axis=1) / nt
        d = tl.where(m, v - t_mean[:, None], 0.0)
        t_m2 = tl.sum(d * d, axis=1)
        total = count + nt
        delta = t_mean - mean
        mean += delta * (nt / total)
        m2 += t_m2 + delta * (delta * (count * nt / total))  # not (delta * delta) * 0 = NaN at |x| ~ 1e30
        count = total
    out = part_ptr + (n.to(tl.int64) * C + c) * 2
    tl.store(out, mean, mask=pmask)
    tl.store(out + 1, m2, mask=pmask)


@triton.jit
def _cbn_stats_finalize_kernel(part_ptr, stats_ptr, rmean_ptr, rvar_ptr, N, C, HW, count, momentum, eps,
                               UPDATE: tl.constexpr, RAW: tl.constexpr, BLOCK_N: tl.constexpr,
                               BLOCK_C: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    acc = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        m = (n < N)[:, None] & cmask[None, :]
        acc += tl.load(part_ptr + (n[:, None].to(tl.int64) * C + c[None, :]) * 2, mask=m, other=0.0)
    mean = tl.sum(acc, axis=0) / N
    acc_m2 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    acc_dev = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        m = (n < N)[:, None] & cmask[None, :]
        off = (n[:, None].to(tl.int64) * C + c[None, :]) * 2
        d = tl.where(m, tl.load(part_ptr + off, mask=m, other=0.0) - mean[None, :], 0.0)
        acc_dev += d * d
        acc_m2 += tl.load(part_ptr + off + 1, mask=m, other=0.0)
    m2 = tl.sum(acc_m2, axis=0) + HW * tl.sum(acc_dev, axis=0)
    tl.store(stats_ptr + c, mean, mask=cmask)
    if RAW:
        tl.store(stats_ptr + C + c, m2, mask=cmask)
    else:
        tl.store(stats_ptr + C + c, 1.0 / tl.sqrt(m2 / count + eps), mask=cmask)
        if UPDATE:
            rm = tl.load(rmean_ptr + c, mask=cmask, other=0.0)
            rv = tl.load(rvar_ptr + c, mask=cmask, other=0.0)
            tl.store(rmean_ptr + c, (1.0 - momentum) * rm + momentum * mean, mask=cmask)
            tl.store(rvar_ptr + c, (1.0 - momentum) * rv + momentum * (m2 / (count - 1.0)), mask=cmask)


@triton.jit
def _cbn_apply_kernel(x_ptr, y_ptr, mean_ptr, stat_ptr, w_ptr, b_ptr, N, C, HW, n_pblocks, w_stride_n, eps, slope,
                      CL: tl.constexpr, VEC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr,
                      HAS_W: tl.constexpr, HAS_B: tl.constexpr, ACT: tl.constexpr, EVAL: tl.constexpr):
    n, c, pmask, p_off, r_stride, hw = _coords(tl.program_id(0), N, C, HW, n_pblocks, CL, VEC, BLOCK_P)
    mean, s, scale, beta = _scale_shift(n, c, pmask, mean_ptr, stat_ptr, w_ptr, b_ptr, w_stride_n, eps,
                                        HAS_W, HAS_B, EVAL)
    for r0 in range(0, hw, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        m = pmask[:, None] & (rr < hw)[None, :]
        off = p_off[:, None] + (rr * r_stride)[None, :]
        v = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32)
        z = (v - mean) * scale + beta
        if ACT == _ACT_RELU:
            z = tl.where(z <= 0, 0.0, z)  # not tl.maximum: a NaN stays NaN, as with torch.relu
        elif ACT == _ACT_LEAKY_RELU:
            z = tl.where(z > 0, z, z * slope)
        tl.store(y_ptr + off, z.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _cbn_backward_reduce_kernel(dy_ptr, x_ptr, mean_ptr, stat_ptr, w_ptr, b_ptr, sums_ptr, N, C, HW, n_pblocks,
                                w_stride_n, eps, slope, CL: tl.constexpr, VEC: tl.constexpr, BLOCK_P: tl.constexpr,
                                BLOCK_R: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                                ACT: tl.constexpr, EVAL: tl.constexpr):
    n, c, pmask, p_off, r_stride, hw = _coords(tl.program_id(0), N, C, HW, n_pblocks, CL, VEC, BLOCK_P)
    mean, s, scale, beta = _scale_shift(n, c, pmask, mean_ptr, stat_ptr, w_ptr, b_ptr, w_stride_n, eps,
                                        HAS_W, HAS_B, EVAL)
    acc_a = tl.zeros([BLOCK_P, BLOCK_R], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK_P, BLOCK_R], dtype=tl.float32)
    for r0 in range(0, hw, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        m = pmask[:, None] & (rr < hw)[None, :]
        off = p_off[:, None] + (rr * r_stride)[None, :]
        xc = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32) - mean
        g = tl.load(dy_ptr + off, mask=m, other=0.0).to(tl.float32)  # zero where masked: masked terms vanish
        if ACT != _ACT_NONE:
            g = _activation_grad(g, xc * scale + beta, slope, ACT)
        acc_a += g
        acc_b += g * xc
    out = sums_ptr + (n.to(tl.int64) * C + c) * 2
    tl.store(out, tl.sum(acc_a, axis=1), mask=pmask)
    tl.store(out + 1, tl.sum(acc_b, axis=1) * s, mask=pmask)


@triton.jit
def _cbn_backward_finalize_kernel(sums_ptr, w_ptr, k_ptr, N, C, w_stride_n, HAS_W: tl.constexpr,
                                  BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    s1 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    sa = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    sb = tl.zeros([BLOCK_N, BLOCK_C], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        m = (n < N)[:, None] & cmask[None, :]
        off = (n[:, None].to(tl.int64) * C + c[None, :]) * 2
        a = tl.load(sums_ptr + off, mask=m, other=0.0)
        b = tl.load(sums_ptr + off + 1, mask=m, other=0.0)
        if HAS_W:
            gamma = tl.load(w_ptr + n[:, None] * w_stride_n + c[None, :], mask=m, other=0.0)
            s1 += gamma * a
            s2 += gamma * b
        else:
            s1 += a
            s2 += b
        sa += a
        sb += b
    tl.store(k_ptr + c, tl.sum(s1, axis=0), mask=cmask)
    tl.store(k_ptr + C + c, tl.sum(s2, axis=0), mask=cmask)
    tl.store(k_ptr + 2 * C + c, tl.sum(sb, axis=0), mask=cmask)
    tl.store(k_ptr + 3 * C + c, tl.sum(sa, axis=0), mask=cmask)


@triton.jit
def _cbn_backward_dx_kernel(dy_ptr, x_ptr, mean_ptr, stat_ptr, w_ptr, b_ptr, k_ptr, dx_ptr, N, C, HW, n_pblocks,
                            w_stride_n, eps, slope, inv_m, CL: tl.constexpr, VEC: tl.constexpr,
                            BLOCK_P: tl.constexpr, BLOCK_R: tl.constexpr, HAS_W: tl.constexpr,
                            HAS_B: tl.constexpr, ACT: tl.constexpr, EVAL: tl.constexpr):
    n, c, pmask, p_off, r_stride, hw = _coords(tl.program_id(0), N, C, HW, n_pblocks, CL, VEC, BLOCK_P)
    mean, s, scale, beta = _scale_shift(n, c, pmask, mean_ptr, stat_ptr, w_ptr, b_ptr, w_stride_n, eps,
                                        HAS_W, HAS_B, EVAL)
    if not EVAL:
        k1 = (tl.load(k_ptr + c, mask=pmask, other=0.0) * (s * inv_m))[:, None]
        k2 = (tl.load(k_ptr + C + c, mask=pmask, other=0.0) * (s * s * inv_m))[:, None]
    for r0 in range(0, hw, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        m = pmask[:, None] & (rr < hw)[None, :]
        off = p_off[:, None] + (rr * r_stride)[None, :]
        xc = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32) - mean
        g = tl.load(dy_ptr + off, mask=m, other=0.0).to(tl.float32)
        if ACT != _ACT_NONE:
            g = _activation_grad(g, xc * scale + beta, slope, ACT)
        dx = g * scale
        if not EVAL:
            dx = dx - k1 - xc * k2
        tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=m)


# ---------------------------------------------------------------- launchers


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def tiles(N: int, C: int, HW: int, channels_last: bool, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(VEC, BLOCK_P, BLOCK_R, programs) of the streaming kernels for this shape and layout."""
    vec_w = 16 // torch.empty((), dtype=dtype).element_size()
    if channels_last:
        vec = vec_w if C % vec_w == 0 else 1
        block_p = min(_pow2(C), MAX_BLOCK_C)
        block_r = max(1, min(_pow2(HW), TILE // block_p))
        return vec, block_p, block_r, N * triton.cdiv(C, block_p)
    vec = vec_w if HW % vec_w == 0 else 1
    block_r = min(_pow2(HW), MAX_BLOCK_R)
    block_p = max(1, min(_pow2(N), TILE // block_r))
    return vec, block_p, block_r, C * triton.cdiv(N, block_p)


def _stream_args(x, channels_last):
    N, C, HW = x.shape[0], x.shape[1], x.numel() // max(1, x.shape[0] * x.shape[1])
    vec, bp, br, programs = tiles(N, C, HW, channels_last, x.dtype)
    n_pblocks = triton.cdiv(C, bp) if channels_last else triton.cdiv(N, bp)
    return (N, C, HW, n_pblocks), dict(CL=channels_last, VEC=vec, BLOCK_P=bp, BLOCK_R=br), programs


def _opt(t, fallback):
    return fallback if t is None else t


def moments(x, part, stats, running_mean, running_var, channels_last, momentum, eps, raw) -> None:
    """stats (2, C) <- (mean, invstd) of x per channel, updating the running statistics (not None), or (mean, M2)
    when ``raw``; part (N, C, 2) is the scratch of partial (mean, M2) per (n, c)."""
    dims, meta, programs = _stream_args(x, channels_last)
    N, C, HW = dims[:3]
    _cbn_stats_kernel[(programs,)](x, part, *dims, **meta, num_warps=NUM_WARPS)
    update = running_mean is not None and not raw
    _cbn_stats_finalize_kernel[(triton.cdiv(C, FIN_BLOCK_C),)](
        part, stats, _opt(running_mean, stats), _opt(running_var, stats), N, C, HW, float(N * HW), float(momentum),
        float(eps), UPDATE=update, RAW=raw, BLOCK_N=FIN_BLOCK_N, BLOCK_C=FIN_BLOCK_C, num_warps=NUM_WARPS)


def apply(x, y, mean, stat, weight, bias, w_stride_n, channels_last, act, slope, eval_mode, eps) -> None:
    """y <- act((x - mean) * stat * gamma + beta) (stat: invstd; in eval the running variance)."""
    dims, meta, programs = _stream_args(x, channels_last)
    _cbn_apply_kernel[(programs,)](x, y, mean, stat, _opt(weight, mean), _opt(bias, mean), *dims, w_stride_n,
                                   float(eps), float(slope), **meta, HAS_W=weight is not None,
                                   HAS_B=bias is not None, ACT=act, EVAL=eval_mode, num_warps=NUM_WARPS)


def backward(dy, x, mean, stat, weight, bias, sums, k, dx, w_stride_n, channels_last, act, slope, eval_mode, eps,
             inv_m, reduce_sums=None) -> None:
    """dx, and in sums (N, C, 2) / k (4, C) the per-(n, c) and per-channel sums dweight and dbias are read from;
    ``reduce_sums`` (synced statistics) all-reduces k[:2] between the finalize and dx."""
    dims, meta, programs = _stream_args(x, channels_last)
    N, C = dims[0], dims[1]
    has = dict(HAS_W=weight is not None, HAS_B=bias is not None)
    w, b = _opt(weight, mean), _opt(bias, mean)
    _cbn_backward_reduce_kernel[(programs,)](dy, x, mean, stat, w, b, sums, *dims, w_stride_n, float(eps),
                                             float(slope), **meta, **has, ACT=act, EVAL=eval_mode,
                                             num_warps=NUM_WARPS)
    _cbn_backward_finalize_kernel[(triton.cdiv(C, FIN_BLOCK_C),)](
        sums, _opt(weight, sums), k, N, C, w_stride_n, HAS_W=weight is not None, BLOCK_N=FIN_BLOCK_N,
        BLOCK_C=FIN_BLOCK_C, num_warps=NUM_WARPS)
    if reduce_sums is not None:
        k[:2] = reduce_sums(k[:2])
    _cbn_backward_dx_kernel[(programs,)](dy, x, mean, stat, w, b, k, dx, *dims, w_stride_n, float(eps), float(slope),
                                         float(inv_m), **meta, **has, ACT=act, EVAL=eval_mode, num_warps=NUM_WARPS)


def launch_configs():
    """Every kernel at the extreme tile shapes the launchers produce (NCHW with HW = 16 and HW >= 1024,
    channels-last with C >= 128 and C = 3), each dtype, vectorised and not, for AOT compilation."""
    shapes = [(128, 512, 16, False), (8, 64, 4096, False), (4, 3, 49, False),
              (128, 512, 16, True), (8, 3, 4096, True)]
    stream_int = {"N": "i32", "C": "i32", "HW": "i32", "n_pblocks": "i32", "w_stride_n": "i32", "eps": "fp32",
                  "slope": "fp32", "inv_m": "fp32"}
    configs = []
    for dtype in _TL:
        p = _PTR[dtype]
        for i, (N, C, HW, cl) in enumerate(shapes):
            vec, bp, br, _ = tiles(N, C, HW, cl, dtype)
            meta = {"CL": cl, "VEC": vec, "BLOCK_P": bp, "BLOCK_R": br}
            configs.append((_cbn_stats_kernel, {"x_ptr": p, "part_ptr": "*fp32", **stream_int}, meta))
            # flags vary across shapes so that each value is compiled at least once per dtype
            act = sorted(activations.BY_CODE)[i % 3]
            flags = {"HAS_W": i % 2 == 0, "HAS_B": i % 3 != 1, "ACT": act, "EVAL": i == 2}
            f32 = {"mean_ptr": "*fp32", "stat_ptr": "*fp32", "w_ptr": "*fp32", "b_ptr": "*fp32"}
            configs.append((_cbn_apply_kernel, {"x_ptr": p, "y_ptr": p, **f32, **stream_int}, {**meta, **flags}))
            configs.append((_cbn_backward_reduce_kernel, {"dy_ptr": p, "x_ptr": p, "sums_ptr": "*fp32", **f32,
                                                          **stream_int}, {**meta, **flags}))
            configs.append((_cbn_backward_dx_kernel, {"dy_ptr": p, "x_ptr": p, "k_ptr": "*fp32", "dx_ptr": p, **f32,
                                                      **stream_int}, {**meta, **flags, "EVAL": i == 3}))
    fin = {"part_ptr": "*fp32", "stats_ptr": "*fp32", "rmean_ptr": "*fp32", "rvar_ptr": "*fp32", "N": "i32",
           "C": "i32", "HW": "i32", "count": "fp32", "momentum": "fp32", "eps": "fp32"}
    for update, raw in ((True, False), (False, False), (False, True)):
        configs.append((_cbn_stats_finalize_kernel, fin,
                        {"UPDATE": update, "RAW": raw, "BLOCK_N": FIN_BLOCK_N, "BLOCK_C": FIN_BLOCK_C}))
    for has_w in (True, False):
        configs.append((_cbn_backward_finalize_kernel, {"sums_ptr": "*fp32", "w_ptr": "*fp32", "k_ptr": "*fp32",
                                                         "N": "i32", "C": "i32", "w_stride_n": "i32"},
                        {"HAS_W": has_w, "BLOCK_N": FIN_BLOCK_N, "BLOCK_C": FIN_BLOCK_C}))
    return [(k, sig, cx, NUM_WARPS) for k, sig, cx in configs]


__all__ = ["moments", "apply", "backward", "tiles", "launch_configs"]
