"""Triton kernels of the gradient-penalty ops, each one pass over (N, D) contiguous tensors (D = the elements of a
sample), with float32 arithmetic:

* ``interpolate``: x_hat = fake + eps_n (real - fake) (reads 2|x|, writes |x|); its backward writes eps_n g and
  (1 - eps_n) g from one read of g (reads |g|, writes 2|g|);
* ``squared_norms``: per-sample sum of g^2 in two deterministic stages (a (N, blocks) partial per program, then a
  fixed-order sum of the row; reads |g|);
* ``scale_rows``: the penalty's seed gradient c_n g_n (reads |g|, writes |g|).

Floors: the bytes above at the device's bandwidth (the per-sample (N,) vectors are negligible).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _interpreter_compat

_interpreter_compat.install()

BLOCK = 1024  # elements per program along a sample
NUM_WARPS = 4


@triton.jit
def _sample_block(D, BLOCK: tl.constexpr):
    """(sample n, offsets of this program's block of it, their mask): program (n, b) takes elements
    b BLOCK ... (b + 1) BLOCK - 1 of sample n."""
    n = tl.program_id(0)
    d = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return n, n.to(tl.int64) * D + d, d < D


@triton.jit
def _interpolate_kernel(real_ptr, fake_ptr, eps_ptr, out_ptr, D, BLOCK: tl.constexpr):
    n, at, ok = _sample_block(D, BLOCK)
    e = tl.load(eps_ptr + n).to(tl.float32)
    r = tl.load(real_ptr + at, mask=ok, other=0.0).to(tl.float32)
    f = tl.load(fake_ptr + at, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + at, (f + e * (r - f)).to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _interpolate_backward_kernel(g_ptr, eps_ptr, d_real_ptr, d_fake_ptr, D, BLOCK: tl.constexpr):
    n, at, ok = _sample_block(D, BLOCK)
    e = tl.load(eps_ptr + n).to(tl.float32)
    g = tl.load(g_ptr + at, mask=ok, other=0.0).to(tl.float32)
    tl.store(d_real_ptr + at, (e * g).to(d_real_ptr.dtype.element_ty), mask=ok)
    tl.store(d_fake_ptr + at, ((1.0 - e) * g).to(d_fake_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _squared_norm_partials_kernel(g_ptr, part_ptr, D, n_blocks, BLOCK: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    d = b * BLOCK + tl.arange(0, BLOCK)
    g = tl.load(g_ptr + n.to(tl.int64) * D + d, mask=d < D, other=0.0).to(tl.float32)
    tl.store(part_ptr + n * n_blocks + b, tl.sum(g * g, axis=0))


@triton.jit
def _scale_rows_kernel(g_ptr, coef_ptr, out_ptr, D, BLOCK: tl.constexpr):
    n, at, ok = _sample_block(D, BLOCK)
    c = tl.load(coef_ptr + n)
    g = tl.load(g_ptr + at, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + at, (c * g).to(out_ptr.dtype.element_ty), mask=ok)


def _grid(N: int, D: int):
    return (N, triton.cdiv(D, BLOCK))


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, out: torch.Tensor) -> None:
    """out <- fake + eps (real - fake) per sample; real, fake, out (N, ...) contiguous, eps (N,) float32."""
    N = real.shape[0]
    D = real.numel() // N
    _interpolate_kernel[_grid(N, D)](real, fake, eps, out, D, BLOCK=BLOCK, num_warps=NUM_WARPS)


def interpolate_backward(g: torch.Tensor, eps: torch.Tensor, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
    """d_real <- eps g, d_fake <- (1 - eps) g per sample; all (N, ...) contiguous, eps (N,) float32."""
    N = g.shape[0]
    D = g.numel() // N
    _interpolate_backward_kernel[_grid(N, D)](g, eps, d_real, d_fake, D, BLOCK=BLOCK, num_warps=NUM_WARPS)


def squared_norms(g: torch.Tensor) -> torch.Tensor:
    """(N,) float32 per-sample sum of squares of g (N, ...) contiguous."""
    N = g.shape[0]
    D = g.numel() // N
    n_blocks = triton.cdiv(D, BLOCK)
    part = torch.empty((N, n_blocks), dtype=torch.float32, device=g.device)
    _squared_norm_partials_kernel[(N, n_blocks)](g, part, D, n_blocks, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return part.sum(dim=1)


def scale_rows(g: torch.Tensor, coef: torch.Tensor, out: torch.Tensor) -> None:
    """out <- coef_n g_n; g, out (N, ...) contiguous, coef (N,) float32."""
    N = g.shape[0]
    D = g.numel() // N
    _scale_rows_kernel[_grid(N, D)](g, coef, out, D, BLOCK=BLOCK, num_warps=NUM_WARPS)


def launch_configs():
    """The kernels as the launchers run them, per dtype, for AOT compilation, with D (a sample's elements) a
    multiple of 16 as Triton's launcher specialises it for image shapes (3 x 64 x 64, ...): 16-byte loads."""
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    opts = {"num_warps": NUM_WARPS, "divisible_by_16": ("D",)}
    out = []
    for p in ptr.values():
        out += [(_interpolate_kernel, {"real_ptr": p, "fake_ptr": p, "eps_ptr": "*fp32", "out_ptr": p, "D": "i32"},
                 {"BLOCK": BLOCK}, opts),
                (_interpolate_backward_kernel, {"g_ptr": p, "eps_ptr": "*fp32", "d_real_ptr": p, "d_fake_ptr": p,
                                                "D": "i32"}, {"BLOCK": BLOCK}, opts),
                (_squared_norm_partials_kernel, {"g_ptr": p, "part_ptr": "*fp32", "D": "i32", "n_blocks": "i32"},
                 {"BLOCK": BLOCK}, opts),
                (_scale_rows_kernel, {"g_ptr": p, "coef_ptr": "*fp32", "out_ptr": p, "D": "i32"}, {"BLOCK": BLOCK},
                 opts)]
    return out


__all__ = ["interpolate", "interpolate_backward", "launch_configs", "scale_rows", "squared_norms"]
