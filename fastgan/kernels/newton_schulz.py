"""Triton kernel of the Newton–Schulz square-root iteration: C = alpha * (A @ B) + beta * I, square float32.

One coupled Newton–Schulz step for sqrt(M) (Y0 = M/c, Z0 = I) is T = 1.5 I - 0.5 Z Y, Y <- Y T, Z <- T Z: three
GEMMs, the first with the update fused into its epilogue (no separate elementwise pass over T). Products use
three TF32 passes on the tensor cores (``tf32x3``), i.e. float32 accuracy.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interpreter_compat

_interpreter_compat.install()

BLOCK = 64
BLOCK_K = 32
NUM_WARPS = 8
PRECISION = "tf32x3"


@triton.jit
def _matmul_identity_kernel(a_ptr, b_ptr, c_ptr, D, alpha, beta, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
                            PRECISION: tl.constexpr):
    ri = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    rj = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + ri[:, None].to(tl.int64) * D + rk[None, :], mask=(ri[:, None] < D) & (rk[None, :] < D),
                    other=0.0)
        b = tl.load(b_ptr + rk[:, None].to(tl.int64) * D + rj[None, :], mask=(rk[:, None] < D) & (rj[None, :] < D),
                    other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    out = alpha * acc + tl.where(ri[:, None] == rj[None, :], beta, 0.0)
    tl.store(c_ptr + ri[:, None].to(tl.int64) * D + rj[None, :], out, mask=(ri[:, None] < D) & (rj[None, :] < D))


def matmul_identity(a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """alpha * (a @ b) + beta * I for contiguous float32 (d, d) matrices."""
    d = a.shape[0]
    c = torch.empty_like(a)
    grid = (triton.cdiv(d, BLOCK), triton.cdiv(d, BLOCK))
    _matmul_identity_kernel[grid](a, b, c, d, alpha, beta, BLOCK=BLOCK, BLOCK_K=BLOCK_K, PRECISION=PRECISION,
                                  num_warps=NUM_WARPS)
    return c


def launch_configs():
    """Every (kernel, signature, constexprs, num_warps) launched above, for AOT compilation."""
    return [(_matmul_identity_kernel,
             {"a_ptr": "*fp32", "b_ptr": "*fp32", "c_ptr": "*fp32", "D": "i32", "alpha": "fp32", "beta": "fp32"},
             {"BLOCK": BLOCK, "BLOCK_K": BLOCK_K, "PRECISION": PRECISION}, NUM_WARPS)]
