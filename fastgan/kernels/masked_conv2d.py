"""Triton kernel of the masked convolution with the gated epilogue: an implicit GEMM over the computed taps only.

M = N x H x W output pixels, N = the output channels, K = C_in x taps, where the taps are those up to the anchor
in raster order (mask A/B: 5 of 9 for a 3x3, 1 + k // 2 of a 1 x k row) or all of them (mask None: the vertical
stack's (k // 2 + 1) x k half-kernel). The host packs the masked weight as (taps, C_in, C_out), output channels
contiguous, taps after the anchor left out. A program computes a [BLOCK_M pixels, BLOCK_N channels] tile: for each
tap and block of input channels it gathers x[n, ci, i + ky - pad_t, j + kx - pad_l] (zero outside the image) and
accumulates ``tl.dot`` in float32. With the gate it keeps two accumulators, the channels co and C/2 + co of the
pre-activation, so that the epilogue (bias, the added tensor, tanh(a) * sigmoid(b)) has both halves of its output
channels in registers; it stores the gated output and, when the backward needs it, the pre-activation.

Floor (per call): FLOPs 2 x M x C_out x C_in x taps; bytes: x read once, the add tensor once, y written once (the
pre-activation, twice y's channels, when it is kept), the packed weight once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interpreter_compat
from .conv_transpose2d import Config, _tanh, precision  # (the same tile description and epilogue helpers)

_interpreter_compat.install()


# One configuration per operand type (half / TF32 on tensor cores, exact float32 on FMA); with the gate a tile has
# two accumulators, so BLOCK_N is the smaller one. Spill-free on sm_80/sm_90 (AOT-checked, both Triton releases).
CONFIGS = {"half": Config(64, 32, 32, 4, 2), "tf32": Config(64, 32, 16, 4, 1), "ieee": Config(32, 16, 16, 4, 1)}
MAXNREG = 255


@triton.jit
def _masked_conv_kernel(x_ptr, w_ptr, b_ptr, add_ptr, y_ptr, pre_ptr, N, C_in, C_y, H, W, KW, n_taps, pad_t, pad_l,
                        sx_n, sx_c, sx_h, sx_w, sa_n, sa_c, sa_h, sa_w, sy_n, sy_c, sy_h, sy_w,
                        sp_n, sp_c, sp_h, sp_w,
                        HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, GATE: tl.constexpr, STORE_PRE: tl.constexpr,
                        PRECISION: tl.constexpr, CHANNELS_LAST: tl.constexpr, EVEN_K: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixel (n, i, j)
    co = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channel of y (with the gate: of each half of pre)
    m_ok = m < N * H * W
    co_ok = co < C_y
    n = m // (H * W)
    ij = m % (H * W)
    i = ij // W
    j = ij % W
    C_pre = 2 * C_y if GATE else C_y
    x_base = n.to(tl.int64) * sx_n
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)  # the gate's second half (unused without it)
    for t in range(n_taps):
        ih = i + t // KW - pad_t
        iw = j + t % KW - pad_l
        pix_ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_pix = x_base + ih.to(tl.int64) * sx_h + iw.to(tl.int64) * sx_w
        for c0 in range(0, C_in, BLOCK_K):
            ci = c0 + tl.arange(0, BLOCK_K)
            ci_ok = ci < C_in
            x_ci = ci.to(tl.int64) * sx_c
            # the x tile with its contiguous axis last (see fastgan/kernels/conv_transpose2d.py)
            if CHANNELS_LAST:
                a_mask = pix_ok[:, None] if EVEN_K else pix_ok[:, None] & ci_ok[None, :]
                a = tl.load(x_ptr + x_pix[:, None] + x_ci[None, :], mask=a_mask, other=0.0)
            else:
                a_mask = pix_ok[None, :] if EVEN_K else pix_ok[None, :] & ci_ok[:, None]
                a = tl.trans(tl.load(x_ptr + x_pix[None, :] + x_ci[:, None], mask=a_mask, other=0.0))
            # packed weight (taps, C_in, C_pre), contiguous
            w_off = (t * C_in + ci).to(tl.int64)[:, None] * C_pre + co[None, :]
            w_mask = co_ok[None, :] if EVEN_K else ci_ok[:, None] & co_ok[None, :]
            acc += tl.dot(a, tl.load(w_ptr + w_off, mask=w_mask, other=0.0), input_precision=PRECISION)
            if GATE:
                acc_b += tl.dot(a, tl.load(w_ptr + w_off + C_y, mask=w_mask, other=0.0), input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
        if GATE:
            acc_b += tl.load(b_ptr + C_y + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
    ok = m_ok[:, None] & co_ok[None, :]
    if HAS_ADD:
        a_pix = n.to(tl.int64) * sa_n + i.to(tl.int64) * sa_h + j.to(tl.int64) * sa_w
        a_at = add_ptr + a_pix[:, None] + co.to(tl.int64)[None, :] * sa_c
        acc += tl.load(a_at, mask=ok, other=0.0).to(tl.float32)
        if GATE:
            acc_b += tl.load(a_at + C_y * sa_c, mask=ok, other=0.0).to(tl.float32)
    if STORE_PRE:
        p_at = pre_ptr + (n.to(tl.int64) * sp_n + i.to(tl.int64) * sp_h + j.to(tl.int64) * sp_w)[:, None] \
            + co.to(tl.int64)[None, :] * sp_c
        tl.store(p_at, acc.to(pre_ptr.dtype.element_ty), mask=ok)
        if GATE:
            tl.store(p_at + C_y * sp_c, acc_b.to(pre_ptr.dtype.element_ty), mask=ok)
    if GATE:
        # the gate of the pre-activation as stored (rounded to the dtype), as the eager gate sees it
        pa = acc.to(y_ptr.dtype.element_ty).to(tl.float32)
        pb = acc_b.to(y_ptr.dtype.element_ty).to(tl.float32)
        out = _tanh(pa) * tl.sigmoid(pb)
    else:
        out = acc
    y_pix = n.to(tl.int64) * sy_n + i.to(tl.int64) * sy_h + j.to(tl.int64) * sy_w
    tl.store(y_ptr + y_pix[:, None] + co.to(tl.int64)[None, :] * sy_c, out.to(y_ptr.dtype.element_ty), mask=ok)


def _config(dtype: torch.dtype, prec: str) -> Config:
    return CONFIGS["half" if dtype != torch.float32 else prec]


def _block_k(config: Config, c_in: int) -> int:
    """16 (tl.dot's least K) for 16 input channels or fewer (the image's 1 or 3: zero-padded by the masked load)."""
    return 16 if c_in <= 16 else config.block_k


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, add: torch.Tensor | None,
                  kernel_w: int, taps: int, pad_top: int, pad_left: int, y: torch.Tensor, pre: torch.Tensor | None,
                  gate: bool, input_precision: str | None = None, config: Config | None = None) -> None:
    """y (N, C_y, H, W) <- the masked convolution of x (N, C_in, H, W) (any strides), weight packed (taps, C_in,
    C_pre) contiguous (C_pre = 2 C_y with ``gate``, else C_y), bias (C_pre,) or None, ``add`` broadcast to (N, C_pre,
    H, W) (expanded: any strides) or None; tap t reads x at (i + t // kernel_w - pad_top, j + t % kernel_w -
    pad_left). ``pre`` (N, C_pre, H, W) or None <- the pre-activation. One dtype throughout."""
    prec = input_precision or precision(x.dtype)
    config = config or _config(x.dtype, prec)
    N, c_in, H, W = x.shape
    c_y = y.shape[1]
    cl = x.stride(1) < x.stride(3)
    block_k = _block_k(config, c_in)
    a_strides = add.stride() if add is not None else (0, 0, 0, 0)
    p_strides = pre.stride() if pre is not None else (0, 0, 0, 0)
    grid = (triton.cdiv(N * H * W, config.block_m), triton.cdiv(c_y, config.block_n))
    _masked_conv_kernel[grid](
        x, weight, bias if bias is not None else weight, add if add is not None else x, y,
        pre if pre is not None else y, N, c_in, c_y, H, W, kernel_w, taps, pad_top, pad_left, *x.stride(),
        *a_strides, *y.stride(), *p_strides, HAS_BIAS=bias is not None, HAS_ADD=add is not None, GATE=gate,
        STORE_PRE=pre is not None, PRECISION=prec, CHANNELS_LAST=cl, EVEN_K=c_in % block_k == 0,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=block_k, num_warps=config.num_warps,
        num_stages=config.num_stages, maxnreg=MAXNREG)


def launch_configs():
    """The configurations the launcher runs, for AOT compilation (each takes seconds to compile: CI compiles the
    ones that bound the registers): per dtype and precision the gated kernel (two accumulators, bias, add and the
    kept pre-activation) in NCHW with an even K and in channels_last with a small or ragged one (BLOCK_K 16, masked
    loads); the plain kernel (the gated one's code without the second accumulator) for float32 TF32."""
    ints = {k: "i32" for k in ("N", "C_in", "C_y", "H", "W", "KW", "n_taps", "pad_t", "pad_l", "sx_n", "sx_c", "sx_h",
                               "sx_w", "sa_n", "sa_c", "sa_h", "sa_w", "sy_n", "sy_c", "sy_h", "sy_w", "sp_n", "sp_c",
                               "sp_h", "sp_w")}
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    configs = []
    for dtype, p in ptr.items():
        sig = {"x_ptr": p, "w_ptr": p, "b_ptr": p, "add_ptr": p, "y_ptr": p, "pre_ptr": p, **ints}
        for prec in ("ieee", "tf32") if dtype == torch.float32 else ("tf32",):
            config = _config(dtype, prec)
            variants = [(False, True, config.block_k, True), (True, True, 16, False)]
            if dtype == torch.float32 and prec == "tf32":
                variants.append((True, False, config.block_k, True))
            for cl, gate, block_k, even in variants:
                unit = {"sx_c": 1, "sy_c": 1} if cl else {"sx_w": 1, "sy_w": 1}
                configs.append((_masked_conv_kernel, sig, {
                    "HAS_BIAS": True, "HAS_ADD": gate, "GATE": gate, "STORE_PRE": gate, "PRECISION": prec,
                    "CHANNELS_LAST": cl, "EVEN_K": even, "BLOCK_M": config.block_m, "BLOCK_N": config.block_n,
                    "BLOCK_K": block_k, **unit},
                    {"num_warps": config.num_warps, "num_stages": config.num_stages, "maxnreg": MAXNREG,
                     "divisible_by_16": ("C_in", "C_y") if even else ()}))
    return configs


__all__ = ["CONFIGS", "Config", "launch_configs", "masked_conv2d"]
