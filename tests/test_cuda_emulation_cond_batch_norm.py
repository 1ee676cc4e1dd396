"""The CUDA kernels of conditional batch norm (csrc/cond_batch_norm_*.cu), run on the CPU under an emulation
(tests/cuda_emulation/: the shim and the machinery that compiles an op's .cu files against it).

Each case runs the entry points in the order fastgan/ops/cond_batch_norm.py calls them (partial stats -> finalize,
apply, backward reduce -> finalize -> dx) and compares every output with a float64 reference computed from that
call's own inputs.
"""
import ctypes
import re
import zlib
from typing import NamedTuple

import pytest
import torch

from fastgan import activations
from fastgan.ops._op import DTYPE_CODE

from cuda_emulation import emulate
from cuda_emulation.emulate import CTYPES, Emulation, compile_emulation

pytestmark = [pytest.mark.emulation, pytest.mark.no_triton]

# The kernels the .cu files of conditional batch norm launch, one launch each: a launch that the rewrite misses would
# not run.
EXPECTED_LAUNCHES = sorted([
    "stats_nchw_kernel", "stats_nhwc_kernel", "finalize_stats_kernel", "eltwise_nchw_kernel",
    "eltwise_nhwc_kernel", "grad_sums_nchw_kernel", "grad_sums_nhwc_kernel", "finalize_grad_kernel",
])
ENTRY_POINTS = ["cond_batch_norm_partial_stats", "cond_batch_norm_finalize_stats", "cond_batch_norm_apply",
                "cond_batch_norm_backward_reduce", "cond_batch_norm_backward_finalize", "cond_batch_norm_backward_dx"]


def emulation_source():
    return emulate.emulation_source("cond_batch_norm", "cond_batch_norm_")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    src, names, decls = emulation_source()
    assert sorted(names) == EXPECTED_LAUNCHES, f"launches found in {emulate.OP_SOURCES['cond_batch_norm']}"
    assert sorted(decls) == sorted(ENTRY_POINTS), "entry points found in csrc/ops.h"
    return Emulation(compile_emulation(src, tmp_path_factory.mktemp("cuda_emulation"), "cond_batch_norm"), decls)


def test_launch_rewrite_finds_every_launch():
    """Runs without a compiler: every launch of the .cu is rewritten, none is left over."""
    src, names, decls = emulation_source()
    assert sorted(names) == EXPECTED_LAUNCHES, (
        f"{emulate.OP_SOURCES['cond_batch_norm']} launch {sorted(names)}; the emulation expects "
        f"{EXPECTED_LAUNCHES}: update EXPECTED_LAUNCHES and make sure the cases below reach the new launches")
    assert "<<<" not in src and ">>>" not in src
    assert sorted(decls) == sorted(ENTRY_POINTS)
    assert all(t in CTYPES for params in decls.values() for t, _ in params)


def test_every_cu_file_is_emulated_with_its_op():
    """Each .cu of csrc/ is in the sources of exactly one op (emulate.OP_SOURCES), so none escapes the emulation."""
    listed = [f for files in emulate.OP_SOURCES.values() for f in files]
    assert sorted(listed) == sorted(p.name for p in emulate.CSRC.glob("*.cu")), "emulate.OP_SOURCES"


# ---------------------------------------------------------------------------------------------------- the shim

# Small kernels that keep or break the rules the shim checks; probe(i, out) launches the i-th and returns
# cudaGetLastError() != cudaSuccess.
SHIM_PROBES = r"""
#include "shim.h"

__device__ float warp_sum(float v, unsigned mask, int lanes) {
  for (int off = lanes / 2; off > 0; off >>= 1) v += __shfl_xor_sync(mask, v, off);
  return v;
}

__global__ void block_sum(float* out, unsigned mask, int lanes) {
  __shared__ float s[32];
  const float v = warp_sum(static_cast<float>(threadIdx.x), mask, lanes);
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (unsigned w = 0; w < (blockDim.x + 31) / 32; ++w) t += s[w];
    out[blockIdx.x] = t;
  }
}

__global__ void divergent_shuffle(float* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 16);
  else
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 2.f, 16);
}

__global__ void divergent_syncthreads(float*) {
  if (threadIdx.x < 64)
    __syncthreads();
  else
    __syncthreads();
}

__global__ void exit_before_syncthreads(float*) {
  if (threadIdx.x == 40) return;
  __syncthreads();
}

__global__ void exit_before_shuffle(float* out) {
  if (threadIdx.x == 1) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

extern "C" int probe(int which, float* out) {
  switch (which) {
    case 0: emu::launch<&block_sum>(dim3(3), dim3(128), 0, 0, out, 0xffffffffu, 32); break;
    case 1: emu::launch<&block_sum>(dim3(2), dim3(8), 0, 0, out, 0xffu, 8); break;
    case 2: emu::launch<&block_sum>(dim3(1), dim3(64), 0, 0, out, 0xffffu, 16); break;
    case 3: emu::launch<&block_sum>(dim3(1), dim3(8), 0, 0, out, 0xffffffffu, 8); break;
    case 4: emu::launch<&block_sum>(dim3(1), dim3(8), 0, 0, out, 0xffu, 16); break;
    case 5: emu::launch<&divergent_shuffle>(dim3(1), dim3(32), 0, 0, out); break;
    case 6: emu::launch<&divergent_syncthreads>(dim3(1), dim3(128), 0, 0, out); break;
    case 7: emu::launch<&exit_before_syncthreads>(dim3(1), dim3(128), 0, 0, out); break;
    case 8: emu::launch<&exit_before_shuffle>(dim3(1), dim3(32), 0, 0, out); break;
    case 9: emu::launch<&divergent_syncthreads>(dim3(1), dim3(2048), 0, 0, out); break;
    case 10: emu::launch<&divergent_syncthreads>(dim3(1), dim3(32), 16, 0, out); break;
  }
  return cudaGetLastError() != cudaSuccess;
}
"""
SHIM_CASES = [  # probe, what it does, the error it must report (None: none, and `out` starts with `sums`)
    (0, "block sums over full warps", None, [8128.0] * 3),
    (1, "block sums over one partial warp", None, [28.0] * 2),
    (2, "mask of half a warp", "mask 0xffff, but the warp's lanes are 0xffffffff", None),
    (3, "full mask in a partial warp", "mask 0xffffffff, but the warp's lanes are 0xff", None),
    (4, "partner outside a partial warp", "^ 8 is outside the warp of 8 lanes", None),
    (5, "lanes in different shuffles", "__shfl_xor_sync: threads 0 and 16 wait at different calls", None),
    (6, "threads at different barriers", "__syncthreads: threads 0 and 64 wait at different calls", None),
    (7, "a thread exits before a barrier", "__syncthreads: thread 40 exited while others wait", None),
    (8, "a lane exits before a shuffle", "__shfl_xor_sync: lane 0 reads lane 1, which has exited", None),
    (9, "a block of 2048 threads", "launch configuration", None),
    (10, "dynamic shared memory", "dynamic shared memory (16 bytes) is not emulated", None),
]


@pytest.fixture(scope="module")
def shim_probes(tmp_path_factory):
    lib = compile_emulation(SHIM_PROBES, tmp_path_factory.mktemp("shim_probes"), "probes")
    lib.probe.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return lib


@pytest.mark.parametrize("probe, what, error, sums", SHIM_CASES, ids=[c[1] for c in SHIM_CASES])
def test_shim_checks(shim_probes, probe, what, error, sums):
    out = torch.zeros(256)
    failed = shim_probes.probe(probe, out.data_ptr())
    message = shim_probes.emu_last_message().decode() if failed else ""
    if error is None:
        assert not failed, message
        assert out[:len(sums)].tolist() == sums
    else:
        assert failed and error in message, f"{what}: expected an error with {error!r}, got {message!r}"


# ---------------------------------------------------------------------------------------------------- buffers

GUARD = 64  # bytes on each side of a buffer
POISON = 0xA5


class Buffer:
    """`values` in host memory placed like a device allocation: at a 16-byte boundary, or `misalign` elements past
    one; the bytes around it are poisoned and must stay so."""

    def __init__(self, values, misalign=0):
        values = values.contiguous().reshape(-1)
        size, nbytes = values.element_size(), values.numel() * values.element_size()
        self.raw = torch.full((nbytes + 2 * GUARD + 16,), POISON, dtype=torch.uint8)
        self.start = GUARD + (-(self.raw.data_ptr() + GUARD)) % 16 + misalign * size
        self.end = self.start + nbytes
        self.data = self.raw[self.start:self.end].view(values.dtype)
        self.data.copy_(values)
        self.ptr = self.data.data_ptr()
        assert self.ptr % 16 == (misalign * size) % 16

    def get(self, name, *shape):
        """The contents as float64, after checking the guard bytes."""
        assert (self.raw[:self.start] == POISON).all() and (self.raw[self.end:] == POISON).all(), \
            f"{name}: written out of bounds"
        return self.data.double().reshape(shape)


def nan_buffer(n, dtype=torch.float32, misalign=0):
    return Buffer(torch.full((n,), float("nan"), dtype=dtype), misalign)


def check(name, got, ref, tol, case, alt=None):
    """|got - ref| <= tol everywhere (NaN fails); where `alt` is given (not NaN), |got - alt| <= tol also passes."""
    err = (got - ref).abs()
    if alt is not None:
        err = torch.where(alt.isnan(), err, torch.minimum(err, (got - alt).abs()))
    bad = ~(err <= tol)
    if bad.any():
        i = int(torch.nonzero(bad.reshape(-1))[0])
        got_i, ref_i, tol_i = (t.reshape(-1)[i].item() for t in (got, ref, tol))
        raise AssertionError(f"{case.id()}: {name}: {int(bad.sum())} of {bad.numel()} outside the tolerance; first "
                             f"at flat index {i}: got {got_i!r}, expected {ref_i!r} +- {tol_i:.3g}")


# ---------------------------------------------------------------------------------------------------- the cases

EPS, MOMENTUM, SLOPE = 1e-5, 0.1, 0.2
U32 = 2.0 ** -24  # unit roundoff of float32
# Relative rounding of a 16-bit output (unit roundoff), and half the smallest subnormal step.
OUT_ROUNDING = {torch.float32: (0.0, 0.0), torch.float16: (2.0 ** -11, 2.0 ** -25), torch.bfloat16: (2.0 ** -8, 0.0)}
ELTWISE_RTOL = 16 * U32  # of the magnitude of the terms of z = x * scale + shift (or of dx)
REDUCE_RTOL = 1e-5  # of the sum of the absolute values of the summands


class Case(NamedTuple):
    N: int
    C: int
    HW: int
    nhwc: bool
    dtype: torch.dtype
    misalign: int  # elements that x, y, dy and dx lie past a 16-byte boundary (not 0: the scalar paths)
    params: str  # "sample": (N, C) weight and bias; "channel": (C,) both; "weight": (C,) weight only;
    #              "bias": (N, C) bias only; "none"
    act: int  # a code of fastgan.activations (0 identity, 1 ReLU, 2 leaky ReLU: compact in CASES)
    eval: bool
    sms: int
    shift: float = 0.0  # added to x: a large mean makes M2 and z cancel

    def id(self):
        dt = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}[self.dtype]
        return (f"{self.sms}sm-{self.N}x{self.C}x{self.HW}-{'nhwc' if self.nhwc else 'nchw'}-{dt}"
                f"{'-mis' if self.misalign else ''}-{self.params}-{['id', 'relu', 'leaky'][self.act]}"
                f"-{'eval' if self.eval else 'train'}{f'-shift{self.shift:g}' if self.shift else ''}")


f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
CASES = [
    # N, C, HW, nhwc, dtype, misalign, params, act, eval, sms[, shift]
    # odd shapes: one element, one channel, one position (NHWC then takes the NCHW kernels), rows or channels that
    # are no multiple of a vector
    Case(1, 1, 1, False, f32, 0, "channel", 0, True, 132),
    Case(2, 1, 49, True, f16, 0, "sample", 1, False, 1),
    Case(3, 5, 1, True, bf16, 1, "weight", 2, False, 132),
    Case(1, 3, 49, False, f32, 1, "none", 2, False, 1),
    Case(4, 7, 49, True, f32, 0, "bias", 1, False, 132, 30.0),
    Case(2, 257, 9, True, bf16, 0, "channel", 2, False, 132),
    Case(2, 257, 9, False, f16, 1, "sample", 0, False, 1),
    Case(5, 33, 9, True, f32, 0, "sample", 2, True, 1),
    # vector paths (aligned, rows or channels a multiple of 16 bytes) and their scalar twins (misaligned)
    Case(2, 16, 64, False, f32, 0, "sample", 1, False, 132),
    Case(2, 16, 64, False, f32, 1, "sample", 1, False, 132),
    Case(3, 24, 32, True, f16, 0, "channel", 2, False, 132),
    Case(3, 24, 32, True, f16, 3, "channel", 2, False, 132),
    Case(2, 32, 16, False, bf16, 0, "bias", 0, False, 1, 30.0),
    Case(2, 32, 16, True, bf16, 0, "weight", 1, True, 1),
    Case(2, 16, 64, True, bf16, 4, "channel", 1, False, 1),
    Case(2, 8, 40, True, f32, 0, "none", 1, True, 1),
    Case(2, 8, 40, False, f16, 2, "channel", 2, True, 132),
    Case(3, 17, 36, False, bf16, 0, "bias", 1, True, 132),
    # aligned, with only the other extent a multiple of a vector (C in NCHW, HW in NHWC): the scalar paths
    Case(2, 8, 13, False, f32, 0, "sample", 1, False, 132),
    Case(2, 6, 16, True, f16, 0, "channel", 2, False, 1),
    # NHWC blocks smaller than a warp (shuffles over part of a warp)
    Case(2, 8, 5, True, f16, 0, "sample", 2, False, 132),
    Case(3, 12, 3, True, f32, 0, "channel", 1, False, 1),
    # many samples: the finalize kernels narrow their channel blocks and loop over n
    Case(40, 12, 3, False, bf16, 0, "sample", 2, False, 132),
    # long rows: several blocks per row or hw range, groups of threads from a warp up to a block
    Case(2, 3, 200, False, f32, 0, "channel", 2, False, 132),
    Case(2, 3, 3000, False, f32, 0, "sample", 2, False, 132),
    Case(1, 2, 4096, False, bf16, 0, "channel", 1, False, 1),
    Case(2, 3, 1500, True, f16, 0, "sample", 1, False, 132),
    Case(1, 64, 512, True, f32, 0, "channel", 2, False, 1, 30.0),
    Case(2, 64, 256, False, f16, 0, "weight", 2, True, 1),
    Case(8, 64, 1024, True, f16, 0, "sample", 1, False, 1),
]


@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_entry_points_against_float64(emu, case):
    N, C, HW, dtype, mis = case.N, case.C, case.HW, case.dtype, case.misalign
    emu.sms = case.sms
    gen = torch.Generator().manual_seed(zlib.crc32(case.id().encode()))
    u_out, sub_out = OUT_ROUNDING[dtype]

    def stored(t):  # (N, C, HW) float64 -> (values as stored in dtype, as float64; memory order)
        s = t.to(dtype)
        return s.double(), (s.transpose(1, 2) if case.nhwc else s).contiguous()

    def tensor_of(buf, name):  # a buffer in memory order -> (N, C, HW) float64
        t = buf.get(name, *((N, HW, C) if case.nhwc else (N, C, HW)))
        return t.transpose(1, 2) if case.nhwc else t

    x, x_mem = stored(torch.randn(N, C, HW, generator=gen, dtype=torch.float64) * 2 + case.shift
                      + torch.randn(1, C, 1, generator=gen, dtype=torch.float64))
    xb = Buffer(x_mem, mis)
    common = dict(N=N, C=C, HW=HW)
    layout = dict(channels_last=case.nhwc, dtype=DTYPE_CODE[dtype])

    # forward statistics: partial stats -> finalize (with the running statistics, and raw)
    part = nan_buffer(N * C * 2)
    emu.cond_batch_norm_partial_stats(x=xb.ptr, part=part.ptr, **common, **layout)
    p = part.get("part", N, C, 2)
    mean_nc = x.mean(2)
    m2_nc = ((x - mean_nc[..., None]) ** 2).sum(2)
    scale_nc = x.abs().mean(2)
    check("part mean", p[..., 0], mean_nc, REDUCE_RTOL * scale_nc, case)
    check("part M2", p[..., 1], m2_nc, REDUCE_RTOL * (m2_nc + HW * U32 * scale_nc ** 2), case)

    count = N * HW
    mean_c = x.mean((0, 2))
    m2_c = ((x - mean_c[None, :, None]) ** 2).sum((0, 2))
    scale_c = x.abs().mean((0, 2))
    m2_tol = REDUCE_RTOL * (m2_c + count * U32 * scale_c ** 2)
    rm0 = torch.randn(C, generator=gen) * 0.5 + case.shift
    rv0 = torch.rand(C, generator=gen) * 3 + 0.1
    rm, rv = Buffer(rm0), Buffer(rv0)
    stats = nan_buffer(2 * C)
    emu.cond_batch_norm_finalize_stats(part=part.ptr, stats=stats.ptr, running_mean=rm.ptr, running_var=rv.ptr,
                                       **common, momentum=MOMENTUM, eps=EPS, update=True, raw=False)
    st = stats.get("stats", 2, C)
    check("mean", st[0], mean_c, REDUCE_RTOL * scale_c, case)
    invstd = 1 / (m2_c / count + EPS).sqrt()
    # d invstd / invstd = -d M2 / (2 (M2 + eps count))
    check("invstd", st[1], invstd, invstd * (m2_tol / (2 * (m2_c + EPS * count)) + 4 * U32), case)
    rm64, rv64 = rm0.double(), rv0.double()
    check("running mean", rm.get("running_mean", C), (1 - MOMENTUM) * rm64 + MOMENTUM * mean_c,
          4 * U32 * (rm64.abs() + scale_c) + MOMENTUM * REDUCE_RTOL * scale_c, case)
    if count > 1:
        check("running var", rv.get("running_var", C), (1 - MOMENTUM) * rv64 + MOMENTUM * m2_c / (count - 1),
              4 * U32 * (rv64 + MOMENTUM * m2_c / (count - 1)) + MOMENTUM * m2_tol / (count - 1), case)
    raw = nan_buffer(2 * C)
    emu.cond_batch_norm_finalize_stats(part=part.ptr, stats=raw.ptr, running_mean=0, running_var=0, **common,
                                       momentum=MOMENTUM, eps=EPS, update=False, raw=True)
    r = raw.get("raw stats", 2, C)
    check("raw mean", r[0], mean_c, REDUCE_RTOL * scale_c, case)
    check("raw M2", r[1], m2_c, m2_tol, case)

    # the affine parameters as the kernels take them: one stride for both
    per_sample = case.params in ("sample", "bias")
    shape = (N, C) if per_sample else (C,)
    w = (torch.randn(shape, generator=gen) * 0.5 + 1) if case.params in ("sample", "channel", "weight") else None
    b = (torch.randn(shape, generator=gen) * 0.5) if case.params in ("sample", "channel", "bias") else None
    wb, bb = (Buffer(t) if t is not None else None for t in (w, b))
    gamma = (w.double() if w is not None else torch.ones(shape, dtype=torch.float64)).expand(N, C)[..., None]
    beta = (b.double() if b is not None else torch.zeros(shape, dtype=torch.float64)).expand(N, C)[..., None]
    affine = dict(weight=wb.ptr if wb else 0, bias=bb.ptr if bb else 0, w_stride_n=C if per_sample else 0,
                  act=case.act, slope=SLOPE, eval=case.eval, eps=EPS)

    # apply: mean and invstd of the batch in training, the running statistics in eval (as the Python side does)
    if case.eval:
        mean_in, stat_in = rm0, rv0
        mu, istd = rm64, 1 / (rv64 + EPS).sqrt()
    else:
        mean_in, stat_in = st[0].float(), st[1].float()
        mu, istd = st[0], st[1]
    mb, sb = Buffer(mean_in), Buffer(stat_in)
    mu, istd = mu[None, :, None], istd[None, :, None]
    scale = gamma * istd
    z = (x - mu) * scale + beta
    # rounding of scale, shift = beta - mean * scale, z = fma(x, scale, shift), and of invstd in eval
    z_tol = ELTWISE_RTOL * ((x * scale).abs() + (mu * scale).abs() + beta.abs() + z.abs())
    if case.act == activations.NONE:
        y_ref, gate, gate_alt = z, torch.ones_like(z), None
    else:
        neg = 0.0 if case.act == activations.RELU else SLOPE
        y_ref, gate = torch.where(z > 0, z, neg * z), torch.where(z > 0, 1.0, neg)
        # where z is within its tolerance of 0 the kernel may take the other side
        gate_alt = torch.where(z.abs() <= z_tol, torch.where(z > 0, neg, 1.0), float("nan"))
    yb = nan_buffer(x.numel(), dtype, mis)
    emu.cond_batch_norm_apply(x=xb.ptr, y=yb.ptr, mean=mb.ptr, istd_or_var=sb.ptr, **affine, **common, **layout)
    check("y", tensor_of(yb, "y"), y_ref, u_out * y_ref.abs() + (1 + u_out) * z_tol + sub_out, case)

    # backward: reduce -> finalize -> dx
    dy, dy_mem = stored(torch.randn(N, C, HW, generator=gen, dtype=torch.float64))
    dyb = Buffer(dy_mem, mis)
    sums = nan_buffer(N * C * 2)
    emu.cond_batch_norm_backward_reduce(dy=dyb.ptr, x=xb.ptr, mean=mb.ptr, istd_or_var=sb.ptr, sums=sums.ptr,
                                        **affine, **common, **layout)
    s = sums.get("sums", N, C, 2)
    xhat = (x - mu) * istd
    g = dy * gate
    amb = torch.zeros_like(z) if gate_alt is None else torch.nan_to_num(dy.abs() * (gate - gate_alt).abs())
    check("sums A", s[..., 0], g.sum(2), REDUCE_RTOL * g.abs().sum(2) + amb.sum(2), case)
    check("sums B", s[..., 1], (g * xhat).sum(2),
          REDUCE_RTOL * (g * xhat).abs().sum(2) + (amb * xhat.abs()).sum(2), case)

    k = nan_buffer(4 * C)
    emu.cond_batch_norm_backward_finalize(sums=sums.ptr, weight=affine["weight"], k=k.ptr, N=N, C=C,
                                          w_stride_n=affine["w_stride_n"])
    kk = k.get("k", 4, C)
    ga, gb = gamma[..., 0] * s[..., 0], gamma[..., 0] * s[..., 1]
    for j, (name, terms) in enumerate([("S1", ga), ("S2", gb), ("sum B", s[..., 1]), ("sum A", s[..., 0])]):
        check(name, kk[j], terms.sum(0), REDUCE_RTOL * terms.abs().sum(0), case)

    inv_m = 1.0 / count
    dxb = nan_buffer(x.numel(), dtype, mis)
    emu.cond_batch_norm_backward_dx(dy=dyb.ptr, x=xb.ptr, mean=mb.ptr, istd_or_var=sb.ptr, k=k.ptr, dx=dxb.ptr,
                                    inv_m=inv_m, **affine, **common, **layout)
    # dx = scale * g - corr, corr = invstd * (S1 + xhat * S2) / m in training (0 in eval), S1 and S2 from k
    s1, s2 = kk[0][None, :, None], kk[1][None, :, None]
    corr = torch.zeros_like(z) if case.eval else istd * (s1 + xhat * s2) * inv_m
    corr_abs = torch.zeros_like(z) if case.eval else istd * (s1.abs() + (xhat * s2).abs()) * inv_m
    dx_ref = scale * g - corr
    dx_alt = None if gate_alt is None else scale * dy * gate_alt - corr
    g_abs = g.abs() if gate_alt is None else dy.abs() * torch.maximum(gate, torch.nan_to_num(gate_alt))
    mag = scale.abs() * g_abs + corr_abs
    dx_abs = dx_ref.abs() if dx_alt is None else torch.maximum(dx_ref.abs(), torch.nan_to_num(dx_alt).abs())
    check("dx", tensor_of(dxb, "dx"), dx_ref, u_out * dx_abs + (1 + u_out) * ELTWISE_RTOL * mag + sub_out, case,
          alt=dx_alt)
    emu.cases_done.add(case.id())


def test_entry_point_errors_reach_python(emu):
    """What a host entry point throws comes back as the wrapper's message."""
    emu.sms = 132
    x, y, mean, var = Buffer(torch.zeros(8)), nan_buffer(8), Buffer(torch.zeros(1)), Buffer(torch.ones(1))
    args = dict(x=x.ptr, y=y.ptr, mean=mean.ptr, istd_or_var=var.ptr, weight=0, bias=0, N=1, C=1, HW=8, w_stride_n=0,
                channels_last=False, slope=SLOPE, eval=True, eps=EPS)
    with pytest.raises(RuntimeError, match="activation code must be 0, 1 or 2"):
        emu.cond_batch_norm_apply(**args, act=3, dtype=DTYPE_CODE[torch.float32])
    with pytest.raises(RuntimeError, match="unsupported dtype code 7"):
        emu.cond_batch_norm_apply(**args, act=activations.NONE, dtype=7)
    assert y.data.isnan().all()
    emu.cond_batch_norm_apply(**args, act=activations.NONE, dtype=DTYPE_CODE[torch.float32])
    assert y.get("y", 8).tolist() == [0.0] * 8


# ---------------------------------------------------------------------------------------------------- coverage

# The integral parameters of each kernel, in order: the launch log records those (and None for the others).
KERNEL_INT_PARAMS = {
    "stats_nchw_kernel": ("rows", "hw", "lg"),
    "stats_nhwc_kernel": ("C", "hw", "nbands", "lcx"),
    "finalize_stats_kernel": ("N", "C", "raw", "lcb"),
    "eltwise_nchw_kernel": ("rows", "C", "hw", "lg", "chunk", "nchunks"),
    "eltwise_nhwc_kernel": ("C", "hw", "nbands", "nrch", "rch", "lcx"),
    "grad_sums_nchw_kernel": ("rows", "C", "hw", "lg"),
    "grad_sums_nhwc_kernel": ("C", "hw", "nbands", "lcx"),
    "finalize_grad_kernel": ("N", "C", "w_stride_n", "lcb"),
}
STORAGE_TYPES = {"float": 4, "__half": 2, "__nv_bfloat16": 2}  # the kernels' T, and its size


class Launch(NamedTuple):
    kernel: str
    targs: tuple  # template arguments, without namespaces
    grid: int
    block: int
    args: dict  # integral arguments by name


def parse_launch(name, grid, block, ints):
    m = re.fullmatch(r"(?:\w+::)*(\w+)(?:<(.*)>)?", name.strip())
    assert m and m[1] in KERNEL_INT_PARAMS, f"unexpected kernel {name}"
    targs = tuple(re.sub(r"^(?:\w+::)*", "", a.strip()) for a in m[2].split(",")) if m[2] else ()
    values = [v for v in ints if v is not None]
    names = KERNEL_INT_PARAMS[m[1]]
    assert len(values) == len(names), f"{m[1]} has {len(values)} integral parameters, KERNEL_INT_PARAMS {names}"
    return Launch(m[1], targs, grid, block, dict(zip(names, values)))


def expected_instantiations():
    out = {("finalize_stats_kernel", ()), ("finalize_grad_kernel", ())}
    for t in STORAGE_TYPES:
        for vec in ("true", "false"):
            for k in ("stats_nchw_kernel", "stats_nhwc_kernel", "grad_sums_nchw_kernel", "grad_sums_nhwc_kernel"):
                out.add((k, (t, vec)))
            for k in ("eltwise_nchw_kernel", "eltwise_nhwc_kernel"):
                out |= {(k, (t, vec, "ApplyOp")), (k, (t, vec, "DxOp"))}
    return out


def test_cases_reach_every_kernel_and_plan(emu):
    """The cases above launch every instantiation of every kernel (each dtype, vector and scalar paths) and reach
    the decompositions the launch planner chooses between: reads the launches they logged."""
    if len(emu.cases_done) < len(CASES):
        pytest.skip("needs every case of test_entry_points_against_float64 to have run (and passed) first")
    launches = [parse_launch(*entry) for entry in emu.launched]
    missing = expected_instantiations() - {(la.kernel, la.targs) for la in launches}
    assert not missing, f"kernel instantiations no case launches: {sorted(missing)}"

    def seen(kernel, what, pred):
        assert any(pred(la) for la in launches if la.kernel == kernel), f"no case launches {kernel} with {what}"

    def tile(la):  # elements of a row one thread of an NCHW group holds at once
        return 2 * 16 // STORAGE_TYPES[la.targs[0]]

    for k in ("stats_nchw_kernel", "grad_sums_nchw_kernel"):
        seen(k, "several rows per warp", lambda la: la.args["lg"] < 5)
        seen(k, "one row per warp", lambda la: la.args["lg"] == 5)
        seen(k, "a row over several warps", lambda la: la.args["lg"] > 5)
        seen(k, "several blocks", lambda la: la.grid > 1)
        seen(k, "rows longer than a step of their group", lambda la: la.args["hw"] > tile(la) << la.args["lg"])
    seen("eltwise_nchw_kernel", "several blocks per row, the last one partial",
         lambda la: la.args["nchunks"] > 1 and la.args["hw"] % la.args["chunk"])
    seen("eltwise_nchw_kernel", "several rows per warp", lambda la: la.args["lg"] < 5)
    seen("eltwise_nchw_kernel", "chunks of several steps", lambda la: la.args["chunk"] > tile(la) << la.args["lg"])
    for k in ("stats_nhwc_kernel", "grad_sums_nhwc_kernel", "eltwise_nhwc_kernel"):
        seen(k, "a block smaller than a warp", lambda la: la.block < 32)
        seen(k, "several warps", lambda la: la.block > 32)
        seen(k, "several bands of channels", lambda la: la.args["nbands"] > 1)
        seen(k, "several thread rows", lambda la: la.block >> la.args["lcx"] > 1)
        seen(k, "a band of one vector (or CX = 1)", lambda la: la.args["lcx"] == 0)
    seen("eltwise_nhwc_kernel", "several blocks along hw, the last one partial",
         lambda la: la.args["nrch"] > 1 and la.args["hw"] % la.args["rch"])
    for k in ("finalize_stats_kernel", "finalize_grad_kernel"):
        seen(k, "several blocks", lambda la: la.grid > 1)
        seen(k, "several samples per thread", lambda la: la.args["N"] > 256 >> la.args["lcb"])
        seen(k, "narrower channel blocks", lambda la: la.args["lcb"] == 3 and la.args["C"] > 8)


@pytest.mark.parametrize("nhwc", [False, True])
def test_huge_values_give_inf_moments_not_nan(emu, nhwc):
    """Squared deviations of |x| ~ 1e30 overflow: M2 and the variance are inf, invstd 0 (as the torch reference),
    not NaN from inf * 0 in a merge with an empty side."""
    emu.sms = 132
    N, C, HW = 2, 8, 300
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(N, C, HW, generator=gen) * 1e30
    xb = Buffer((x.transpose(1, 2) if nhwc else x).contiguous())
    part = nan_buffer(N * C * 2)
    emu.cond_batch_norm_partial_stats(x=xb.ptr, part=part.ptr, N=N, C=C, HW=HW, channels_last=nhwc, dtype=0)
    p = part.get("part", N, C, 2)
    assert torch.isfinite(p[..., 0]).all() and torch.isinf(p[..., 1]).all()
    stats, rm, rv = nan_buffer(2 * C), Buffer(torch.zeros(C)), Buffer(torch.ones(C))
    emu.cond_batch_norm_finalize_stats(part=part.ptr, stats=stats.ptr, running_mean=rm.ptr, running_var=rv.ptr, N=N,
                                       C=C, HW=HW, momentum=0.1, eps=1e-5, update=True, raw=False)
    assert (stats.get("stats", 2, C)[1] == 0).all()
    assert torch.isinf(rv.get("running_var", C)).all()
