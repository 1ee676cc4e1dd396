"""Triton kernel of the transposed convolution: every phase of the sub-pixel decomposition
(``fastgan/ops/conv_transpose2d_plan.py``) as an implicit GEMM, all phases in one launch, with the epilogue fused.

For a phase with output grid rows x cols and taps (kh, th) x (kw, tw): M = N x rows x cols output pixels,
N = C_out / groups output channels, K = C_in / groups x taps. A program computes a [BLOCK_M, BLOCK_N] tile of one
phase and group (grid: tiles of the largest phase x channel tiles x phases x groups; a program past the end of its
phase returns): for each tap, for each block of input channels, it gathers the x values the tap reads
(x[n, ci, q0_r + i - th, q0_c + j - tw], zero outside the input) and the weight slice W[ci, co, kh, kw], and
accumulates their product with ``tl.dot`` in float32 (TF32 inputs for float32 where cuDNN would use them). The
epilogue adds the bias, applies the activation (codes of ``fastgan.activations``), stores the tile at output rows
first_r + s_h i, columns first_c + s_w j (any strides: NCHW and channels_last), and, for batch-norm statistics,
writes each channel's mean and M2 over the tile's pixels of the stored (rounded) values: partials that the host
merges with Chan's rule. No zero insertion, no col2im buffer.

Floor (per call, ignoring reuse in caches): FLOPs 2 x M x N x K summed over the phases (``plan.macs``); bytes: x
read once, the weight once, y written once (in a cache-friendly order x is re-read per channel tile and tap from
L2, not HBM).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .. import activations
from ..ops import conv_transpose2d_plan as plan
from . import _interpreter_compat

_interpreter_compat.install()

_ACT_NONE = tl.constexpr(activations.NONE)
_ACT_RELU = tl.constexpr(activations.RELU)
_ACT_LEAKY_RELU = tl.constexpr(activations.LEAKY_RELU)
_ACT_TANH = tl.constexpr(activations.TANH)
_ACT_SIGMOID = tl.constexpr(activations.SIGMOID)
_T_ROWS, _T_COLS = tl.constexpr(plan.T_ROWS), tl.constexpr(plan.T_COLS)
_T_Q0_R, _T_Q0_C = tl.constexpr(plan.T_Q0_R), tl.constexpr(plan.T_Q0_C)
_T_FIRST_R, _T_FIRST_C = tl.constexpr(plan.T_FIRST_R), tl.constexpr(plan.T_FIRST_C)
_T_TAPS_H, _T_TAPS_W = tl.constexpr(plan.T_TAPS_H), tl.constexpr(plan.T_TAPS_W)
_T_TAPS_AT, _T_TILE0 = tl.constexpr(plan.T_TAPS_AT), tl.constexpr(plan.T_TILE0)
_T_FIELDS = tl.constexpr(plan.T_FIELDS)


class Config(NamedTuple):
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


# The autotune space by operand type: float16/bfloat16 ("half") and TF32 run on tensor cores, exact float32
# ("ieee", when torch.backends.cudnn.allow_tf32 is off) is FMA work. float32 operand tiles take twice the registers
# of half ones, and a channels_last x whose channel count is not a multiple of BLOCK_K (masked, unvectorised
# gathers: many pixels per thread) more again: larger tiles spill on sm_80/sm_90 (AOT-checked), so the spaces are
# small and such calls take the first configuration, the default (and the only one without a GPU).
CONFIGS = {
    "half": (Config(64, 32, 32, 4, 2), Config(128, 64, 32, 8, 2), Config(64, 64, 32, 8, 2)),
    "tf32": (Config(64, 32, 16, 4, 1), Config(128, 32, 16, 4, 2), Config(128, 64, 16, 8, 1)),
    "ieee": (Config(32, 16, 16, 4, 1),),
}
# ptxas's own limit for 128-thread blocks (168 registers, for three blocks per SM) spills a few bytes of the
# statistics epilogue on sm_80; the full register file per thread spills nothing (AOT-checked)
MAXNREG = 255
_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@triton.jit
def _tanh(z):
    # tanh without libdevice (which the interpreter lacks): a Taylor polynomial where 1 - exp(-2|z|) would cancel
    a = tl.abs(z)
    t = tl.exp(-2.0 * a)
    big = (1.0 - t) / (1.0 + t)
    z2 = z * z
    small = z * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))))
    return tl.where(a < 0.3, small, tl.where(z < 0, -big, big))


@triton.jit
def _phase_kernel(x_ptr, w_ptr, b_ptr, y_ptr, part_ptr, table_ptr, N, C_in_g, C_out_g, KW, s_h, s_w,
                  sx_n, sx_c, sx_h, sx_w, sy_n, sy_c, sy_h, sy_w, H, W, n_phases, slope,
                  HAS_BIAS: tl.constexpr, ACT: tl.constexpr, STATS: tl.constexpr, PRECISION: tl.constexpr,
                  CHANNELS_LAST: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    p = tl.program_id(2) % n_phases
    g = tl.program_id(2) // n_phases
    row = table_ptr + p * _T_FIELDS
    rows = tl.load(row + _T_ROWS)
    cols = tl.load(row + _T_COLS)
    if pid_m * BLOCK_M >= N * rows * cols:
        return
    q0_r = tl.load(row + _T_Q0_R)
    q0_c = tl.load(row + _T_Q0_C)
    n_taps_h = tl.load(row + _T_TAPS_H)
    n_taps_w = tl.load(row + _T_TAPS_W)
    taps = table_ptr + tl.load(row + _T_TAPS_AT)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixel of the phase: (n, i, j)
    co = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channel within the group
    m_ok = m < N * rows * cols
    co_ok = co < C_out_g
    n = m // (rows * cols)
    ij = m % (rows * cols)
    i = ij // cols
    j = ij % cols
    x_base = n.to(tl.int64) * sx_n + (g * C_in_g).to(tl.int64) * sx_c
    C_in = C_in_g * (tl.num_programs(2) // n_phases)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for th_i in range(n_taps_h):
        kh = tl.load(taps + 2 * th_i)
        ih = q0_r + i - tl.load(taps + 2 * th_i + 1)
        h_ok = (ih >= 0) & (ih < H)
        for tw_i in range(n_taps_w):
            kw = tl.load(taps + 2 * (n_taps_h + tw_i))
            iw = q0_c + j - tl.load(taps + 2 * (n_taps_h + tw_i) + 1)
            pix_ok = m_ok & h_ok & (iw >= 0) & (iw < W)
            x_pix = x_base + ih.to(tl.int64) * sx_h + iw.to(tl.int64) * sx_w
            for c0 in range(0, C_in_g, BLOCK_K):
                ci = c0 + tl.arange(0, BLOCK_K)
                ci_ok = ci < C_in_g
                x_ci = ci.to(tl.int64) * sx_c
                # the x tile with its contiguous axis last, so that each thread holds few pixels (the loads are
                # gathers: the compiler cannot prove contiguity, and puts a warp's threads along the last axis)
                if CHANNELS_LAST:  # [pixels, channels]; channels contiguous, unmasked when C_in_g % BLOCK_K == 0
                    a_mask = pix_ok[:, None] if EVEN_K else pix_ok[:, None] & ci_ok[None, :]
                    a = tl.load(x_ptr + x_pix[:, None] + x_ci[None, :], mask=a_mask, other=0.0)
                else:  # [channels, pixels], transposed for the dot
                    a_mask = pix_ok[None, :] if EVEN_K else pix_ok[None, :] & ci_ok[:, None]
                    a = tl.trans(tl.load(x_ptr + x_pix[None, :] + x_ci[:, None], mask=a_mask, other=0.0))
                # weight (KH, KW, C_in, C_out_g), contiguous: element (kh, kw, g C_in_g + ci, co)
                w_off = ((kh * KW + kw) * C_in + g * C_in_g + ci).to(tl.int64)[:, None] * C_out_g + co[None, :]
                w_mask = co_ok[None, :] if EVEN_K else ci_ok[:, None] & co_ok[None, :]
                b = tl.load(w_ptr + w_off, mask=w_mask, other=0.0)
                acc += tl.dot(a, b, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * C_out_g + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
    if ACT == _ACT_RELU:
        acc = tl.where(acc <= 0, 0.0, acc)  # NaN passes, as torch.relu
    elif ACT == _ACT_LEAKY_RELU:
        acc = tl.where(acc > 0, acc, acc * slope)
    elif ACT == _ACT_TANH:
        acc = _tanh(acc)
    elif ACT == _ACT_SIGMOID:
        acc = tl.sigmoid(acc)
    out = acc.to(y_ptr.dtype.element_ty)
    oh = tl.load(row + _T_FIRST_R) + s_h * i
    ow = tl.load(row + _T_FIRST_C) + s_w * j
    y_pix = n.to(tl.int64) * sy_n + oh.to(tl.int64) * sy_h + ow.to(tl.int64) * sy_w
    ok = m_ok[:, None] & co_ok[None, :]
    tl.store(y_ptr + y_pix[:, None] + (g * C_out_g + co).to(tl.int64)[None, :] * sy_c, out, mask=ok)
    if STATS:
        # the statistics of what was stored, per channel over the tile's pixels: (mean, M2), never E[y^2] - E[y]^2
        v = tl.where(ok, out.to(tl.float32), 0.0)
        count = tl.minimum(N * rows * cols - pid_m * BLOCK_M, BLOCK_M).to(tl.float32)
        mean = tl.sum(v, axis=0) / count
        d = tl.where(ok, v - mean[None, :], 0.0)
        m2 = tl.sum(d * d, axis=0)
        C_out = C_out_g * (tl.num_programs(2) // n_phases)
        at = part_ptr + (tl.load(row + _T_TILE0) + pid_m).to(tl.int64) * 2 * C_out + g * C_out_g + co
        tl.store(at, mean, mask=co_ok)
        tl.store(at + C_out, m2, mask=co_ok)

def precision(dtype: torch.dtype) -> str:
    """The dot's input precision: for float32, TF32 where cuDNN would use it (``torch.backends.cudnn.allow_tf32``,
    so that comparisons with cuDNN are like for like), else exact ("ieee"); half-precision operands always run on
    tensor cores with exact products ("tf32" is the default, which leaves them so: newer Tritons take "ieee" for
    half operands as a request for FMA arithmetic)."""
    if dtype == torch.float32:
        return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    return "tf32"


def _space(dtype: torch.dtype, prec: str, c_in_g: int | None = None) -> tuple[Config, ...]:
    """The configurations a call with ``c_in_g`` input channels per group may take (None: all of them)."""
    space = CONFIGS["half" if dtype != torch.float32 else prec]
    return space[:1] if c_in_g is not None and _ragged(c_in_g, space) else space


def _ragged(c_in_g: int, space: tuple[Config, ...]) -> bool:
    """A channel count that is not a multiple of every configuration's BLOCK_K (or at most 16): such calls take
    only the default configuration (masked K loads; see CONFIGS)."""
    return c_in_g <= 16 or any(c_in_g % c.block_k for c in space)


def _block_k(config: Config, c_in_g: int, channels_last: bool) -> int:
    """BLOCK_K for ``c_in_g`` input channels: the configuration's, or 16 (tl.dot's least K) for few channels
    (C_in = 1, 3: zero-padded to 16 by the masked load) and for a ragged channels_last K (see CONFIGS)."""
    return 16 if c_in_g <= 16 or (channels_last and c_in_g % config.block_k) else config.block_k


_TABLES: dict = {}
_TUNED: dict = {}
# FASTGAN_AUTOTUNE=0: every call takes the default configuration (no timing on first use of a shape bucket)
AUTOTUNE = os.environ.get("FASTGAN_AUTOTUNE", "1") != "0"


def _table(geom: plan.Geometry, n: int, block_m: int, device: torch.device):
    """(launch table on the device, its LaunchTable, per-tile pixel counts as a float32 column on the device)."""
    key = (geom, n, block_m, device)
    hit = _TABLES.get(key)
    if hit is None:
        if len(_TABLES) > 256:
            _TABLES.clear()
        t = plan.launch_table(geom, n, block_m)
        hit = _TABLES[key] = (torch.tensor(t.values, dtype=torch.int32, device=device), t,
                              torch.tensor(t.tile_counts, dtype=torch.float32, device=device)[:, None])
    return hit


def _bucket(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def _launch(x, weight, bias, geom, out, act, slope, part, prec, config):
    N = x.shape[0]
    g = geom.groups
    c_in_g, c_out_g = x.shape[1] // g, weight.shape[3]
    table, t, _ = _table(geom, N, config.block_m, x.device)
    cl = x.stride(1) < x.stride(3)
    block_k = _block_k(config, c_in_g, cl)
    grid = (t.max_tiles, triton.cdiv(c_out_g, config.block_n), t.n_phases * g)
    _phase_kernel[grid](x, weight, bias if bias is not None else weight, out, part if part is not None else out,
                        table, N, c_in_g, c_out_g, geom.kernel[1], geom.stride[0], geom.stride[1],
                        *x.stride(), *out.stride(), geom.in_size[0], geom.in_size[1], t.n_phases, slope,
                        HAS_BIAS=bias is not None, ACT=act, STATS=part is not None,
                        PRECISION=prec, CHANNELS_LAST=cl, EVEN_K=c_in_g % block_k == 0,
                        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=block_k, num_warps=config.num_warps,
                        num_stages=config.num_stages, maxnreg=MAXNREG)


def _partials(x, geom, config, c_out):
    """The per-tile (mean, M2) buffer of a statistics launch with ``config``'s tiles."""
    _, t, _ = _table(geom, x.shape[0], config.block_m, x.device)
    return torch.empty((len(t.tile_counts), 2, c_out), dtype=torch.float32, device=x.device)


def _tuned(x, weight, bias, geom, out, act, slope, stats, prec) -> Config:
    """The fastest configuration for this shape bucket, timed on this call's tensors on first use (a GPU only;
    without one, the default)."""
    c_in_g = x.shape[1] // geom.groups
    space = _space(x.dtype, prec, c_in_g)
    if x.device.type != "cuda" or len(space) == 1 or not AUTOTUNE:
        return space[0]
    key = (x.dtype, prec, act, stats is not None, bias is not None, x.stride(1) < x.stride(3), geom.stride,
           geom.kernel, _bucket(x.shape[0] * geom.out_size[0] * geom.out_size[1]), _bucket(weight.shape[3]),
           _bucket(c_in_g))
    best = _TUNED.get(key)
    if best is None:
        times = []
        for c in space:
            part = None if stats is None else _partials(x, geom, c, out.shape[1])
            times.append(triton.testing.do_bench(
                lambda c=c, part=part: _launch(x, weight, bias, geom, out, act, slope, part, prec, c),
                warmup=3, rep=10))
        best = _TUNED[key] = space[min(range(len(space)), key=times.__getitem__)]
    return best


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geom: plan.Geometry,
                     out: torch.Tensor, act: int = activations.NONE, slope: float = 0.0,
                     stats: torch.Tensor | None = None, input_precision: str | None = None,
                     config: Config | None = None) -> None:
    """out (N, C_out, H_out, W_out), any strides <- act(F.conv_transpose2d(x, weight, bias, ...)) for ``geom``;
    x (N, C_in, H, W) any strides, weight (kH, kW, C_in, C_out / groups) contiguous (F.conv_transpose2d's weight
    permuted (2, 3, 0, 1): output channels contiguous for the tile loads), bias (C_out,) or None; all of one dtype.
    ``stats``, when given, a (3, C_out) float32 tensor <- (count, mean, M2) of each channel of ``out``.
    ``config``: a configuration of ``CONFIGS`` (default: autotuned on a GPU, the first one otherwise)."""
    prec = input_precision or precision(x.dtype)
    config = config or _tuned(x, weight, bias, geom, out, act, slope, stats, prec)
    part = None if stats is None else _partials(x, geom, config, out.shape[1])
    _launch(x, weight, bias, geom, out, act, slope, part, prec, config)
    if stats is not None:
        _, _, counts = _table(geom, x.shape[0], config.block_m, x.device)
        merge_tile_stats(counts, part[:, 0], part[:, 1], stats)


def merge_tile_stats(counts: torch.Tensor, means: torch.Tensor, m2s: torch.Tensor, out: torch.Tensor) -> None:
    """out (3, C) <- (count, mean, M2) over T tiles: counts (T, 1), means and m2s (T, C), by Chan's rule
    (M2 = sum M2_t + sum n_t (mean_t - mean)^2; fixed order, deterministic)."""
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    out[0] = total
    out[1] = mean
    out[2] = m2s.sum(0) + (counts * (means - mean).square()).sum(0)


def launch_configs():
    """Every configuration the launcher can run, for AOT compilation: per dtype, precision and configuration, both
    layouts with an even K, and for the default configuration also a ragged K and 16 channels or fewer (BLOCK_K
    16), as _space and _block_k let calls take them. Every other variant has bias, an activation (alternating: their
    code is a few lines of the epilogue) and statistics. The unit stride of each layout is specialised to 1, and an
    even K's sizes and strides marked multiples of 16, as Triton's launcher does at run time."""
    ints = {k: "i32" for k in ("N", "C_in_g", "C_out_g", "KW", "s_h", "s_w", "sx_n", "sx_c", "sx_h", "sx_w", "sy_n",
                               "sy_c", "sy_h", "sy_w", "H", "W", "n_phases")}
    ptr = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    acts = sorted(activations.BY_CODE)
    configs = []
    for dtype, p in ptr.items():
        sig = {"x_ptr": p, "w_ptr": p, "b_ptr": p, "y_ptr": p, "part_ptr": "*fp32", "table_ptr": "*i32", **ints,
               "slope": "fp32"}
        for prec in ("ieee", "tf32") if dtype == torch.float32 else ("tf32",):
            for ci, config in enumerate(_space(dtype, prec)):
                variants = [(config.block_k, False, True), (config.block_k, True, True)]
                if ci == 0:
                    variants += [(config.block_k, False, False), (16, True, False), (16, False, False),
                                 (16, True, True), (16, False, True)]
                for v, (block_k, cl, even) in enumerate(dict.fromkeys(variants)):
                    unit = {"sx_c": 1, "sy_c": 1} if cl else {"sx_w": 1, "sy_w": 1}
                    div = ("C_in_g", "C_out_g") + (("sx_n", "sx_h", "sx_w", "sy_n", "sy_h", "sy_w") if cl else ())
                    epilogue = v % 2 == 1
                    act = acts[(ci + v // 2) % len(acts)] if epilogue else activations.NONE
                    configs.append((_phase_kernel, sig, {
                        "HAS_BIAS": epilogue, "ACT": act, "STATS": epilogue, "PRECISION": prec, "CHANNELS_LAST": cl,
                        "EVEN_K": even, "BLOCK_M": config.block_m, "BLOCK_N": config.block_n, "BLOCK_K": block_k,
                        **unit}, {"num_warps": config.num_warps, "num_stages": config.num_stages, "maxnreg": MAXNREG,
                                  "divisible_by_16": div if even else ()}))
    return configs


__all__ = ["CONFIGS", "Config", "conv_transpose2d", "launch_configs", "merge_tile_stats", "precision"]
