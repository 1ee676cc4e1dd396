"""Triton kernel of the codebook search: each program takes BLOCK_N rows of z, walks the codebook in tiles of
BLOCK_K codes, and keeps per row the running minimum of ||e_k||^2 - 2 z . e_k and its index; the N x K distance
matrix is never written. Products are full float32 ("ieee", not TF32: a 10-bit mantissa would pick other codes
among near ties). Ties go to the lowest index, as torch.argmin (tl.argmin breaks ties to the left inside a tile,
and a later tile replaces the best only when strictly smaller). Floor: reading z and the codebook once per
row block (2 N K D flops of products; compute-bound for K >= 256).

The EMA statistics kernel (``ema_update_``): per code, the sum of its rows of z in the order of a stable sort by
code, and both moving averages updated in place: z read once (gathered), the statistics read and written once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interpreter_compat

_interpreter_compat.install()

MAX_DIM = 256  # one tile of D per row: larger code dimensions run on the torch backend
# BLOCK_D (the code dimension rounded up to a power of two, >= 16) -> (BLOCK_N, BLOCK_K, num_warps, num_stages).
# Not timed yet: the largest tiles that compile without register spills on sm_80 and sm_90 (Triton 3.6 and 3.9;
# 64 x 64 tiles spill from D = 64 up, the full-precision dot keeps both operands in registers).
CONFIGS = {16: (32, 64, 4, 2), 32: (64, 32, 4, 2), 64: (64, 32, 8, 2), 128: (64, 32, 8, 2), 256: (32, 32, 8, 2)}
PRECISION = "ieee"
_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _search_kernel(z_ptr, e_ptr, index_ptr, dist_ptr, N, K, D, stride_z, stride_e, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rd = tl.arange(0, BLOCK_D)
    n_mask = rn < N
    d_mask = rd < D
    z = tl.load(z_ptr + rn[:, None].to(tl.int64) * stride_z + rd[None, :], mask=n_mask[:, None] & d_mask[None, :],
                other=0.0).to(tl.float32)
    best = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_index = tl.zeros([BLOCK_N], tl.int64)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_mask = rk < K
        e = tl.load(e_ptr + rk[:, None].to(tl.int64) * stride_e + rd[None, :],
                    mask=k_mask[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
        e_sq = tl.sum(e * e, axis=1)
        score = e_sq[None, :] - 2.0 * tl.dot(z, tl.trans(e), input_precision=PRECISION)
        score = tl.where(k_mask[None, :], score, float("inf"))
        tile_best = tl.min(score, axis=1)
        tile_index = tl.argmin(score, axis=1, tie_break_left=True).to(tl.int64) + k0
        better = tile_best < best
        best = tl.where(better, tile_best, best)
        best_index = tl.where(better, tile_index, best_index)
    z_sq = tl.sum(z * z, axis=1)
    tl.store(index_ptr + rn, best_index, mask=n_mask)
    tl.store(dist_ptr + rn, z_sq + best, mask=n_mask)


@triton.jit
def _ema_kernel(z_ptr, order_ptr, start_ptr, counts_ptr, ema_count_ptr, ema_sum_ptr, D, stride_z, decay,
                BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    # program (k, d-block): the rows of code k (a segment of the rows sorted by code), BLOCK_R at a time in their
    # sorted order, then one tree sum: a fixed order, deterministic
    k = tl.program_id(0)
    rd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = rd < D
    start = tl.load(start_ptr + k)
    count = tl.load(counts_ptr + k)
    acc = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    for r0 in range(0, count, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        r_mask = rr < count
        rows = tl.load(order_ptr + start + rr, mask=r_mask, other=0)
        acc += tl.load(z_ptr + rows[:, None] * stride_z + rd[None, :], mask=r_mask[:, None] & d_mask[None, :],
                       other=0.0).to(tl.float32)
    total = tl.sum(acc, axis=0)
    at = ema_sum_ptr + k.to(tl.int64) * D + rd
    tl.store(at, tl.load(at, mask=d_mask) * decay + total * (1.0 - decay), mask=d_mask)
    if tl.program_id(1) == 0:
        c = tl.load(ema_count_ptr + k)
        tl.store(ema_count_ptr + k, c * decay + count.to(tl.float32) * (1.0 - decay))


EMA_BLOCK_R, EMA_BLOCK_D, EMA_WARPS = 32, 64, 4


def ema_update_(ema_count: torch.Tensor, ema_sum: torch.Tensor, z: torch.Tensor, index: torch.Tensor,
                counts: torch.Tensor, decay: float) -> None:
    """ema_count (K,) and ema_sum (K, D), float32 contiguous, <- their EMA with the per-code counts and row sums of
    z (N, D) (row-contiguous) for index (N,) int64, counts = bincount(index, minlength=K)."""
    k, d = ema_sum.shape
    order = torch.argsort(index, stable=True)
    start = torch.cumsum(counts, 0) - counts
    _ema_kernel[(k, triton.cdiv(d, EMA_BLOCK_D))](z, order, start, counts, ema_count, ema_sum, d, z.stride(0),
                                                   decay, BLOCK_R=EMA_BLOCK_R, BLOCK_D=EMA_BLOCK_D,
                                                   num_warps=EMA_WARPS)


def block_dim(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def search(z: torch.Tensor, codebook: torch.Tensor, index: torch.Tensor, dist: torch.Tensor) -> None:
    """index (N,) int64 and dist (N,) float32 <- the nearest code of each row of z (N, D); both row-contiguous."""
    n, d = z.shape
    bd = block_dim(d)
    block_n, block_k, num_warps, num_stages = CONFIGS[bd]
    _search_kernel[(triton.cdiv(n, block_n),)](z, codebook, index, dist, n, codebook.shape[0], d, z.stride(0),
                                               codebook.stride(0), BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=bd,
                                               PRECISION=PRECISION, num_warps=num_warps, num_stages=num_stages)


def launch_configs():
    """Every (kernel, signature, constexprs, options) launched above, for AOT compilation."""
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    sig = {"index_ptr": "*i64", "dist_ptr": "*fp32", "N": "i32", "K": "i32", "D": "i32", "stride_z": "i32",
           "stride_e": "i32"}
    return [(_search_kernel, {"z_ptr": ptr[dt], "e_ptr": ptr[dt], **sig},
             {"BLOCK_N": bn, "BLOCK_K": bk, "BLOCK_D": bd, "PRECISION": PRECISION},
             {"num_warps": nw, "num_stages": ns})
            for bd, (bn, bk, nw, ns) in CONFIGS.items() for dt in _TL] + [
        (_ema_kernel, {"z_ptr": ptr[dt], "order_ptr": "*i64", "start_ptr": "*i64", "counts_ptr": "*i64",
                       "ema_count_ptr": "*fp32", "ema_sum_ptr": "*fp32", "D": "i32", "stride_z": "i32",
                       "decay": "fp32"},
         {"BLOCK_R": EMA_BLOCK_R, "BLOCK_D": EMA_BLOCK_D}, {"num_warps": EMA_WARPS}) for dt in _TL]
