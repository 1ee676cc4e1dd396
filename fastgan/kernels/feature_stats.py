"""Triton kernel of the streaming feature statistics: one Chan merge of a batch into running (mean, M2).

With n features seen so far (mean m, centred scatter M2) and a batch X of b rows (mean m_b):

    M2 += (X - m_b)^T (X - m_b) + n b / (n + b) * (m_b - m)(m_b - m)^T

``_centered_gram_kernel`` computes the first term as a GEMM whose operands are centred while they are loaded,
and adds it and the rank-one correction into M2 in its epilogue: one pass over X per output tile, no centred
copy of X, no separate update of M2. Only the tiles on and above the diagonal are computed (M2 is symmetric;
readers use its upper triangle). Products are full float32 (not TF32's 10-bit mantissa). Floor: b d^2
multiply-adds (half of X^T X).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interpreter_compat

_interpreter_compat.install()

# (BLOCK, BLOCK_K, num_warps, num_stages) by GPU generation (compute capability major, 8 for sm_80-sm_89).
# sm_90: measured on an H200 (bench/tune_feature_stats.py, b=1024, d=2048): full float32 FMA ("ieee") with these
# blocks gave 36.6 useful TFLOP/s, 72% of cuBLAS float32; three TF32 passes ("tf32x3") gave at most 27.3.
# sm_80: not measured; BLOCK_K 16, because with 32 Triton 3.9 spills on sm_80 (255 registers, 104 bytes spilled)
# where 3.6 did not (233 registers): 16 compiles to 159-185 registers on both.
CONFIGS = {9: (64, 32, 4, 3), 8: (64, 16, 4, 3)}
PRECISION = "ieee"
_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _centered_gram_kernel(x_ptr, mb_ptr, delta_ptr, m2_ptr, B, D, stride_x, coef, X_DTYPE: tl.constexpr,
                          BLOCK: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    ti = tl.program_id(0)
    tj = tl.program_id(1)
    if ti > tj:  # lower tiles: M2 is symmetric, only its upper triangle is kept
        return
    ri = ti * BLOCK + tl.arange(0, BLOCK)
    rj = tj * BLOCK + tl.arange(0, BLOCK)
    mi_mask = ri < D
    mj_mask = rj < D
    mean_i = tl.load(mb_ptr + ri, mask=mi_mask, other=0.0)
    mean_j = tl.load(mb_ptr + rj, mask=mj_mask, other=0.0)
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    for k0 in range(0, B, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_mask = rk < B
        a = tl.load(x_ptr + rk[:, None].to(tl.int64) * stride_x + ri[None, :],
                    mask=k_mask[:, None] & mi_mask[None, :], other=0.0).to(tl.float32)
        b = tl.load(x_ptr + rk[:, None].to(tl.int64) * stride_x + rj[None, :],
                    mask=k_mask[:, None] & mj_mask[None, :], other=0.0).to(tl.float32)
        # centred as loaded; rows past the batch must contribute zero, not -mean
        a = tl.where(k_mask[:, None], a - mean_i[None, :], 0.0)
        b = tl.where(k_mask[:, None], b - mean_j[None, :], 0.0)
        acc = tl.dot(tl.trans(a), b, acc, input_precision=PRECISION)
    d_i = tl.load(delta_ptr + ri, mask=mi_mask, other=0.0)
    d_j = tl.load(delta_ptr + rj, mask=mj_mask, other=0.0)
    out = m2_ptr + ri[:, None].to(tl.int64) * D + rj[None, :]
    mask = mi_mask[:, None] & mj_mask[None, :]
    m2 = tl.load(out, mask=mask, other=0.0)
    tl.store(out, m2 + acc + coef * d_i[:, None] * d_j[None, :], mask=mask)


def _generation(device: torch.device) -> int:
    if device.type != "cuda":
        return 9  # the interpreter: any configuration computes the same
    return 9 if torch.cuda.get_device_capability(device)[0] >= 9 else 8


def centered_gram_update(x: torch.Tensor, batch_mean: torch.Tensor, delta: torch.Tensor, m2: torch.Tensor,
                         coef: float) -> None:
    """m2 (upper triangle) += (x - batch_mean)^T (x - batch_mean) + coef * delta delta^T; x is (b, d)."""
    b, d = x.shape
    block, block_k, num_warps, num_stages = CONFIGS[_generation(x.device)]
    grid = (triton.cdiv(d, block), triton.cdiv(d, block))
    _centered_gram_kernel[grid](x, batch_mean, delta, m2, b, d, x.stride(0), coef, X_DTYPE=_TL[x.dtype],
                                BLOCK=block, BLOCK_K=block_k, PRECISION=PRECISION, num_warps=num_warps,
                                num_stages=num_stages)


def launch_configs():
    """Every (kernel, signature, constexprs, options) launched above, for AOT compilation; each configuration is
    compiled for the architecture it is launched on."""
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    sig = {"mb_ptr": "*fp32", "delta_ptr": "*fp32", "m2_ptr": "*fp32", "B": "i32", "D": "i32", "stride_x": "i32",
           "coef": "fp32"}
    return [(_centered_gram_kernel, {"x_ptr": ptr[dt], **sig},
             {"X_DTYPE": tdt, "BLOCK": block, "BLOCK_K": block_k, "PRECISION": PRECISION},
             {"num_warps": nw, "num_stages": ns, "archs": (10 * gen,)})
            for gen, (block, block_k, nw, ns) in CONFIGS.items() for dt, tdt in _TL.items()]
