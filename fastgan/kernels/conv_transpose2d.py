"""Triton kernel of the transposed convolution: one implicit GEMM per phase of the sub-pixel decomposition
(``fastgan/ops/conv_transpose2d_plan.py``), groundwork of the conv_transpose2d op (no op launches it yet).

For a phase with output grid rows x cols and taps (kh, th) x (kw, tw): M = N x rows x cols output pixels,
N = C_out / groups output channels, K = C_in / groups x taps. A program computes a [BLOCK_M, BLOCK_N] tile of one
group: for each tap, for each block of input channels, it gathers the x values the tap reads
(x[n, ci, q0_r + i - th, q0_c + j - tw], zero outside the input) and the weight slice W[ci, co, kh, kw], and
accumulates their product with ``tl.dot`` in float32 (TF32 inputs for float32 where cuDNN would use them); then
adds the bias and stores the tile at output rows first_r + s_h i, columns first_c + s_w j. No zero insertion, no
col2im buffer. NCHW, contiguous x and weight.

Floor (per phase, ignoring reuse in caches): the output written once, x read once per (tap, BLOCK_N tile of
channels), the weight once per BLOCK_M tile; FLOPs 2 x M x N x K summed over the phases (``plan.macs``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import conv_transpose2d_plan as plan
from . import _interpreter_compat

_interpreter_compat.install()

# (BLOCK_M, BLOCK_N, BLOCK_K) by the dot's input precision: half-precision and TF32 inputs run on tensor cores;
# exact float32 ("ieee", when torch.backends.cudnn.allow_tf32 is off) is FMA work, and spills at 64 x 32 on sm_80/90
BLOCKS = {"ieee": (32, 16, 16), "tf32": (64, 32, 16)}
NUM_WARPS = 4
_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _phase_kernel(x_ptr, w_ptr, b_ptr, y_ptr, taps_ptr, N, C_in_g, C_out_g, H, W, H_out, W_out, rows, cols,
                  q0_r, q0_c, first_r, first_c, s_h, s_w, n_taps_h, n_taps_w, KH, KW,
                  HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixel of the phase: (n, i, j)
    co = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channel within the group
    m_ok = m < N * rows * cols
    co_ok = co < C_out_g
    n = m // (rows * cols)
    ij = m % (rows * cols)
    i = ij // cols
    j = ij % cols
    C_in = C_in_g * tl.num_programs(2)
    C_out = C_out_g * tl.num_programs(2)
    x_base = n.to(tl.int64) * C_in * H * W + (g * C_in_g).to(tl.int64) * H * W
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for th_i in range(n_taps_h):
        kh = tl.load(taps_ptr + 2 * th_i)
        th = tl.load(taps_ptr + 2 * th_i + 1)
        ih = q0_r + i - th
        h_ok = (ih >= 0) & (ih < H)
        for tw_i in range(n_taps_w):
            kw = tl.load(taps_ptr + 2 * (n_taps_h + tw_i))
            tw = tl.load(taps_ptr + 2 * (n_taps_h + tw_i) + 1)
            iw = q0_c + j - tw
            pix_ok = m_ok & h_ok & (iw >= 0) & (iw < W)
            x_pix = x_base + ih * W + iw
            for c0 in range(0, C_in_g, BLOCK_K):
                ci = c0 + tl.arange(0, BLOCK_K)
                ci_ok = ci < C_in_g
                a = tl.load(x_ptr + x_pix[:, None] + ci[None, :].to(tl.int64) * H * W,
                            mask=pix_ok[:, None] & ci_ok[None, :], other=0.0)
                # weight (C_in, C_out_g, KH, KW): element (g C_in_g + ci, co, kh, kw)
                w_off = ((g * C_in_g + ci).to(tl.int64)[:, None] * C_out_g + co[None, :]) * (KH * KW) + kh * KW + kw
                b = tl.load(w_ptr + w_off, mask=ci_ok[:, None] & co_ok[None, :], other=0.0)
                acc += tl.dot(a, b, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * C_out_g + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
    oh = first_r + s_h * i
    ow = first_c + s_w * j
    y_off = ((n.to(tl.int64) * C_out + g * C_out_g)[:, None] + co[None, :]) * H_out * W_out + (oh * W_out + ow)[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & co_ok[None, :])


def precision(dtype: torch.dtype) -> str:
    """The dot's input precision: TF32 for float32 where cuDNN would use it (``torch.backends.cudnn.allow_tf32``,
    so that comparisons with cuDNN are like for like), else exact; half-precision inputs are exact products."""
    return "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geom: plan.Geometry,
                     out: torch.Tensor, input_precision: str | None = None) -> None:
    """out (N, C_out, H_out, W_out), contiguous, <- F.conv_transpose2d(x, weight, bias, ...) for ``geom``; x and
    weight contiguous NCHW. Phases without taps get the bias alone. (The taps go to the device per phase and call:
    to be cached once an op launches this.)"""
    N, c_in = x.shape[0], x.shape[1]
    g = geom.groups
    c_in_g, c_out_g = c_in // g, weight.shape[1]
    H, W = geom.in_size
    H_out, W_out = geom.out_size
    prec = input_precision or precision(x.dtype)
    block_m, block_n, block_k = BLOCKS["tf32" if x.dtype != torch.float32 else prec]
    for ph in plan.phases(geom):
        taps = torch.tensor([v for pair in ph.rows.taps + ph.cols.taps for v in pair] or [0], dtype=torch.int32,
                            device=x.device)
        grid = (triton.cdiv(N * ph.rows.count * ph.cols.count, block_m), triton.cdiv(c_out_g, block_n), g)
        _phase_kernel[grid](x, weight, bias if bias is not None else weight, out, taps, N, c_in_g, c_out_g, H, W,
                            H_out, W_out, ph.rows.count, ph.cols.count, ph.rows.q0, ph.cols.q0, ph.rows.first,
                            ph.cols.first, geom.stride[0], geom.stride[1], len(ph.rows.taps), len(ph.cols.taps),
                            geom.kernel[0], geom.kernel[1], HAS_BIAS=bias is not None, PRECISION=prec,
                            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=NUM_WARPS)


def launch_configs():
    """The kernel as the launcher runs it, per dtype and with/without bias, for AOT compilation."""
    ints = {k: "i32" for k in ("N", "C_in_g", "C_out_g", "H", "W", "H_out", "W_out", "rows", "cols", "q0_r", "q0_c",
                               "first_r", "first_c", "s_h", "s_w", "n_taps_h", "n_taps_w", "KH", "KW")}
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    configs = []
    for dtype, p in ptr.items():
        for prec in ("ieee", "tf32") if dtype == torch.float32 else ("ieee",):
            block_m, block_n, block_k = BLOCKS["tf32" if dtype != torch.float32 else prec]
            for has_bias in (False, True):
                sig = {"x_ptr": p, "w_ptr": p, "b_ptr": p, "y_ptr": p, "taps_ptr": "*i32", **ints}
                configs.append((_phase_kernel, sig, {"HAS_BIAS": has_bias, "PRECISION": prec, "BLOCK_M": block_m,
                                                     "BLOCK_N": block_n, "BLOCK_K": block_k}, NUM_WARPS))
    return configs


__all__ = ["conv_transpose2d", "launch_configs"]
