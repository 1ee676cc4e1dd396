"""The CUDA kernels of the gradient-penalty ops (csrc/gradient_penalty.cu), run on the CPU under the emulation of
tests/cuda_emulation/.

Each case calls the four entry points (interpolate, interpolate backward, squared norms, scale rows) and compares
every output with a float64 reference computed from that call's own inputs, including the squared-norm partials per
tile; together the cases launch every kernel instantiation (each dtype, the vector and the scalar paths) and reach
every decomposition (D of one element, odd, below a warp's share, below a block's tile, one full tile, several tiles
with a partial last one; one sample and many). Then fastgan's `cuda` backend itself runs through the emulated entry
points on CPU tensors standing in for device memory: the launchers of fastgan/ops/gradient_penalty_cuda.py against the
torch backend, on fixed cases and on the fuzz harness's drawn ones (tests/test_fuzz.py).
"""
import contextlib
import re
import zlib
from typing import NamedTuple

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402

import fastgan  # noqa: E402
from fastgan import _backend  # noqa: E402
from fastgan.ops import _op, gradient_penalty_cuda  # noqa: E402
from fastgan.ops import gradient_penalty_reference as gp_ref  # noqa: E402
from fastgan.ops._op import DTYPE_CODE  # noqa: E402

from cuda_emulation import emulate  # noqa: E402
from cuda_emulation.emulate import CTYPES, Emulation, compile_emulation  # noqa: E402
from test_cuda_emulation_cond_batch_norm import Buffer, check, nan_buffer  # noqa: E402
from test_fuzz import ROUNDING, _close, _outcome, _same, penalty_cases  # noqa: E402

pytestmark = [pytest.mark.emulation, pytest.mark.no_triton]

EXPECTED_LAUNCHES = sorted(["interpolate_kernel", "interpolate_backward_kernel", "squared_norm_partials_kernel",
                            "row_sums_kernel", "scale_rows_kernel"])
ENTRY_POINTS = sorted(["gradient_penalty_interpolate", "gradient_penalty_interpolate_backward",
                       "gradient_penalty_squared_norms", "gradient_penalty_scale_rows"])
STORAGE = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
THREADS = 256  # gp::THREADS in csrc/gradient_penalty.h


def emulation_source():
    return emulate.emulation_source("gradient_penalty", "gradient_penalty_")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    src, names, decls = emulation_source()
    assert sorted(names) == EXPECTED_LAUNCHES, "launches found in csrc/gradient_penalty.cu"
    assert sorted(decls) == ENTRY_POINTS, "entry points found in csrc/ops.h"
    return Emulation(compile_emulation(src, tmp_path_factory.mktemp("cuda_emulation_gp"), "gradient_penalty"), decls)


def test_launch_rewrite_finds_every_launch():
    """Runs without a compiler: every launch of the .cu is rewritten, none is left over."""
    src, names, decls = emulation_source()
    assert sorted(names) == EXPECTED_LAUNCHES, (
        f"csrc/gradient_penalty.cu launches {sorted(names)}; the emulation expects {EXPECTED_LAUNCHES}: update "
        "EXPECTED_LAUNCHES and make sure the cases below reach the new launches")
    assert "<<<" not in src and ">>>" not in src
    assert sorted(decls) == ENTRY_POINTS
    assert all(t in CTYPES for params in decls.values() for t, _ in params)


# ---------------------------------------------------------------------------------------------------- the cases

U32 = 2.0 ** -24  # unit roundoff of float32
# Relative rounding of a 16-bit output (unit roundoff), and half the smallest subnormal step.
OUT_ROUNDING = {torch.float32: (0.0, 0.0), torch.float16: (2.0 ** -11, 2.0 ** -25), torch.bfloat16: (2.0 ** -8, 0.0)}
REDUCE_RTOL = 1e-5  # of a sum of squares


class Case(NamedTuple):
    N: int
    D: int
    dtype: torch.dtype
    misalign: int = 0  # elements that the (N, D) tensors lie past a 16-byte boundary (not 0: the scalar paths)
    only: str = ""  # the one tensor misaligned ("" : all of them)

    def id(self):
        dt = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}[self.dtype]
        mis = f"-mis{self.misalign}{'-' + self.only if self.only else ''}" if self.misalign else ""
        return f"{self.N}x{self.D}-{dt}{mis}"

    def offset(self, name):
        return self.misalign if not self.only or self.only == name else 0

    def tile(self):  # elements of a sample per block
        return gradient_penalty_cuda.TILE_BYTES // self.dtype.itemsize


f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
CASES = [
    # one element; D odd or no multiple of a vector (the scalar paths), below a warp's share of a tile
    Case(1, 1, f32),
    Case(3, 7, f16),
    Case(2, 13, bf16, 1),
    Case(3, 300, bf16),  # a multiple of half a vector
    Case(2, 2 * 2048 + 6, f32),
    # D a multiple of a vector (the vector paths) below a warp's share, below a block's tile
    Case(1, 64, f32),
    Case(2, 64, bf16),
    Case(2, 1000, f32),
    Case(2, 1000, f16, 3),  # misaligned: scalars
    # one full tile; several tiles with a partial last one (of one vector, of odd length)
    Case(1, 2048, f32),
    Case(3, 2 * 4096 + 8, f16),
    Case(2, 4099, f32),
    Case(2, 3 * 1024 + 5, f16),
    # 3 x 64 x 64: three full tiles of 16-bit types, vectors, then scalars as one tensor is misaligned
    Case(2, 12288, bf16),
    Case(2, 12288, bf16, 1, "d_fake"),
    Case(2, 12288, f32, 1, "real"),
    Case(2, 4096, f16, 2),  # one full tile of scalars
    # many samples (the row sums over several blocks); more tiles than a warp has lanes (lanes sum several)
    Case(40, 3, f32),
    Case(1, 33 * 2048 + 100, f32),
]


def _case_values(case):
    gen = torch.Generator().manual_seed(zlib.crc32(case.id().encode()))

    def stored(*shape, scale=1.0):  # float64 values as stored in the case's dtype
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(case.dtype)

    real, fake, g = stored(case.N, case.D, scale=2.0), stored(case.N, case.D), stored(case.N, case.D)
    eps = torch.rand(case.N, generator=gen)
    coef = torch.randn(case.N, generator=gen) * 3
    eps[0], coef[-1] = 0.0, 0.0  # out = fake exactly; a zero seed
    if case.N > 2:
        eps[1], g[1] = 1.0, 0.0  # a zero gradient
    return real, fake, g, eps, coef


@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_entry_points_against_float64(emu, case):
    N, D, dtype = case.N, case.D, case.dtype
    real, fake, g, eps, coef = _case_values(case)
    u_out, sub_out = OUT_ROUNDING[dtype]
    shape = dict(N=N, D=D, dtype=DTYPE_CODE[dtype])

    def out_tol(fp32_tol, ref):  # rounding to the output dtype on top of float32 arithmetic
        return u_out * ref.abs() + (1 + u_out) * fp32_tol + sub_out

    # interpolate: fake + eps (real - fake), one fma; eps = 0 gives fake exactly
    rb, fb, eb = Buffer(real, case.offset("real")), Buffer(fake, case.offset("fake")), Buffer(eps)
    out = nan_buffer(N * D, dtype, case.offset("out"))
    emu.gradient_penalty_interpolate(real=rb.ptr, fake=fb.ptr, eps=eb.ptr, out=out.ptr, **shape)
    r, f, e = real.double(), fake.double(), eps.double()[:, None]
    x_ref = f + e * (r - f)
    got = out.get("out", N, D)
    check("interpolate", got, x_ref, out_tol(2 * U32 * ((e * (r - f)).abs() + x_ref.abs()), x_ref), case)
    assert torch.equal(got[0], f[0]), "eps = 0: out = fake"

    # interpolate backward: eps g and (1 - eps) g from one read of g
    gb = Buffer(g, case.offset("g"))
    d_real, d_fake = nan_buffer(N * D, dtype, case.offset("d_real")), nan_buffer(N * D, dtype, case.offset("d_fake"))
    emu.gradient_penalty_interpolate_backward(g=gb.ptr, eps=eb.ptr, d_real=d_real.ptr, d_fake=d_fake.ptr, **shape)
    g64 = g.double()
    for name, buf, ref in (("d_real", d_real, e * g64), ("d_fake", d_fake, (1 - e) * g64)):
        check(name, buf.get(name, N, D), ref, out_tol(2 * U32 * ref.abs(), ref), case)

    # squared norms: the partials per tile, their sums per sample, bit for bit the same when run again
    tiles = gradient_penalty_cuda.n_tiles(D, dtype)
    assert tiles == -(-D // case.tile())
    part, norms = nan_buffer(N * tiles), nan_buffer(N)
    emu.gradient_penalty_squared_norms(g=gb.ptr, part=part.ptr, n_tiles=tiles, norms=norms.ptr, **shape)
    sq = g64.square()
    padded = torch.zeros(N, tiles * case.tile(), dtype=torch.float64)
    padded[:, :D] = sq
    part_ref = padded.reshape(N, tiles, case.tile()).sum(2)
    check("partials", part.get("part", N, tiles), part_ref, REDUCE_RTOL * part_ref, case)
    norms_ref = sq.sum(1)
    first = norms.get("norms", N).clone()
    check("squared norms", first, norms_ref, REDUCE_RTOL * norms_ref, case)
    emu.gradient_penalty_squared_norms(g=gb.ptr, part=part.ptr, n_tiles=tiles, norms=norms.ptr, **shape)
    assert torch.equal(norms.get("norms", N), first), "squared norms differ from one run to the next"

    # scale rows: coef g
    cb, scaled = Buffer(coef), nan_buffer(N * D, dtype, case.offset("out"))
    emu.gradient_penalty_scale_rows(g=gb.ptr, coef=cb.ptr, out=scaled.ptr, **shape)
    s_ref = coef.double()[:, None] * g64
    check("scale rows", scaled.get("out", N, D), s_ref, out_tol(U32 * s_ref.abs(), s_ref), case)
    emu.cases_done.add(case.id())


def test_non_finite_and_extreme_values_as_the_float32_reference(emu):
    """NaN and Inf stay in their sample; squares that overflow float32 are inf, those that underflow 0, as the
    torch backend's float32 norms."""
    N, D = 5, 300
    g = torch.randn(N, D, generator=torch.Generator().manual_seed(5))
    g[0, 7] = float("nan")
    g[1, 299] = -float("inf")
    g[2] *= 1e20  # squares overflow
    g[3] *= 1e-30  # squares underflow
    gb, tiles = Buffer(g), gradient_penalty_cuda.n_tiles(D, torch.float32)
    part, norms = nan_buffer(N * tiles), nan_buffer(N)
    emu.gradient_penalty_squared_norms(g=gb.ptr, part=part.ptr, n_tiles=tiles, norms=norms.ptr, N=N, D=D, dtype=0)
    got, want = norms.get("norms", N), gp_ref.squared_norms(g).double()
    assert got[0].isnan() and got[1] == float("inf") and got[2] == float("inf") and got[3] == 0
    torch.testing.assert_close(got[4], want[4], rtol=REDUCE_RTOL, atol=0)
    scaled = nan_buffer(N * D)
    emu.gradient_penalty_scale_rows(g=gb.ptr, coef=Buffer(torch.full((N,), 0.5)).ptr, out=scaled.ptr, N=N, D=D,
                                    dtype=0)
    torch.testing.assert_close(scaled.get("out", N, D), (0.5 * g).double(), rtol=0, atol=0, equal_nan=True)


def test_entry_point_errors_reach_python(emu):
    """What a host entry point throws comes back as the wrapper's message; empty calls write nothing."""
    g, part, norms = Buffer(torch.ones(2, 8)), nan_buffer(2), nan_buffer(2)
    with pytest.raises(RuntimeError, match=r"the partials have 3 columns, D = 8 needs 1"):
        emu.gradient_penalty_squared_norms(g=g.ptr, part=part.ptr, n_tiles=3, norms=norms.ptr, N=2, D=8, dtype=0)
    with pytest.raises(RuntimeError, match="unsupported dtype code 7"):
        emu.gradient_penalty_scale_rows(g=g.ptr, coef=part.ptr, out=norms.ptr, N=2, D=8, dtype=7)
    with pytest.raises(RuntimeError, match="negative size"):
        emu.gradient_penalty_interpolate(real=g.ptr, fake=g.ptr, eps=part.ptr, out=norms.ptr, N=-1, D=8, dtype=0)
    assert part.data.isnan().all() and norms.data.isnan().all()
    out = nan_buffer(16)
    emu.gradient_penalty_interpolate(real=g.ptr, fake=g.ptr, eps=part.ptr, out=out.ptr, N=2, D=0, dtype=0)
    emu.gradient_penalty_interpolate_backward(g=g.ptr, eps=part.ptr, d_real=out.ptr, d_fake=out.ptr, N=0, D=8,
                                              dtype=1)
    assert out.data.isnan().all()
    emu.gradient_penalty_squared_norms(g=g.ptr, part=0, n_tiles=0, norms=norms.ptr, N=2, D=0, dtype=2)
    assert norms.get("norms", 2).tolist() == [0.0, 0.0]  # samples of no elements


# ---------------------------------------------------------------------------------------------------- coverage

KERNEL_INT_PARAMS = {k: ("D", "n_tiles") for k in EXPECTED_LAUNCHES if k != "row_sums_kernel"}
KERNEL_INT_PARAMS["row_sums_kernel"] = ("N", "n_tiles")


class Launch(NamedTuple):
    kernel: str
    targs: tuple
    grid: int
    block: int
    args: dict


def parse_launch(name, grid, block, ints):
    m = re.fullmatch(r"(?:\w+::)*(\w+)(?:<(.*)>)?", name.strip())
    assert m and m[1] in KERNEL_INT_PARAMS, f"unexpected kernel {name}"
    targs = tuple(re.sub(r"^(?:\w+::)*", "", a.strip()) for a in m[2].split(",")) if m[2] else ()
    values = [v for v in ints if v is not None]
    names = KERNEL_INT_PARAMS[m[1]]
    assert len(values) == len(names), f"{m[1]} has {len(values)} integral parameters, KERNEL_INT_PARAMS {names}"
    return Launch(m[1], targs, grid, block, dict(zip(names, values)))


def test_cases_reach_every_kernel_and_decomposition(emu):
    """The cases above launch every instantiation of every kernel and reach the decompositions the launchers choose
    between: reads the launches they logged."""
    if len(emu.cases_done) < len(CASES):
        pytest.skip("needs every case of test_entry_points_against_float64 to have run (and passed) first")
    launches = [parse_launch(*entry) for entry in emu.launched]
    expected = {("row_sums_kernel", ())} | {(k, (t, vec)) for k in KERNEL_INT_PARAMS if k != "row_sums_kernel"
                                            for t in STORAGE.values() for vec in ("true", "false")}
    missing = expected - {(la.kernel, la.targs) for la in launches}
    assert not missing, f"kernel instantiations no case launches: {sorted(missing)}"

    def seen(kernel, what, pred):
        assert any(pred(la) for la in launches if la.kernel == kernel), f"no case launches {kernel} with {what}"

    def tile(la):
        return THREADS * 2 * 16 // {"float": 4, "__half": 2, "__nv_bfloat16": 2}[la.targs[0]]

    for k in KERNEL_INT_PARAMS:
        if k == "row_sums_kernel":
            continue
        for vec in ("true", "false"):
            v = [la for la in launches if la.kernel == k and la.targs[1] == vec]
            assert any(la.block < 32 * 2 for la in v), f"{k} ({vec}): no block of one warp"
            assert any(32 < la.block < THREADS for la in v), f"{k} ({vec}): no block of a few warps"
            assert any(la.args["n_tiles"] > 1 and la.args["D"] % tile(la) for la in v), \
                f"{k} ({vec}): no sample of several tiles with a partial last one"
            assert any(la.args["D"] == tile(la) * la.args["n_tiles"] for la in v), f"{k} ({vec}): no full tiles only"
        seen(k, "one sample", lambda la: la.grid == la.args["n_tiles"])
    seen("row_sums_kernel", "several blocks", lambda la: la.grid > 1)
    seen("row_sums_kernel", "rows longer than a warp", lambda la: la.args["n_tiles"] > 32)


# ------------------------------------------------------------------------------------------ fastgan's cuda backend


class _EmulatedExtension:
    """Stands in for fastgan._C: its gradient-penalty entry points, emulated."""

    def __init__(self, emu):
        for name in ENTRY_POINTS:
            setattr(self, name, emu.positional(name))


@contextlib.contextmanager
def emulated_cuda_backend(emu):
    """fastgan's `cuda` backend on CPU tensors, through the emulated entry points."""
    real = _backend.unavailable_reason
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_backend, "extension", lambda: _EmulatedExtension(emu))
        mp.setattr(_backend, "unavailable_reason",
                   lambda backend, device, dtype, op=None: None if backend == "cuda" and dtype != torch.float64
                   else real(backend, device, dtype, op))
        mp.setattr(_op, "_raw_stream", lambda device_index: 0)
        yield


BACKEND_CASES = [((1, 1), f32), ((3, 5, 7, 11), f16), ((2, 3, 32, 32), bf16), ((4, 2, 700), f32)]


@pytest.mark.parametrize("shape, dtype", BACKEND_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple)
                         else STORAGE.get(v))
def test_cuda_backend_matches_torch(emu, shape, dtype):
    gen = torch.Generator().manual_seed(len(shape))
    real, fake, g = (torch.randn(shape, generator=gen).to(dtype) for _ in range(3))
    fake = fake.transpose(-1, -2).contiguous().transpose(-1, -2)  # not contiguous: the host code copies it
    eps = torch.rand(shape[0], generator=gen, dtype=torch.float64)
    results = {}
    for backend in ("torch", "cuda"):
        with emulated_cuda_backend(emu) if backend == "cuda" else contextlib.nullcontext():
            r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
            x = fastgan.interpolate_samples(r, f, eps, backend=backend)
            dr, df = torch.autograd.grad(x, (r, f), g)
            out = [x, dr, df]
            for kind, center, one_sided in (("norm", 1.0, False), ("norm", 50.0, True), ("squared", 0.0, False)):
                gg = g.clone().requires_grad_()
                p = fastgan.penalty_of_gradient(gg, kind, 10.0, center, one_sided, backend=backend)
                out += [p, *torch.autograd.grad(p, gg)]
            results[backend] = out
    u = {f32: 2.0 ** -24, f16: 2.0 ** -11, bf16: 2.0 ** -8}[dtype]
    names = ["interpolate", "d_real", "d_fake"] + [f"{what} {i}" for i in range(3) for what in ("penalty", "seed")]
    for name, got, want in zip(names, results["cuda"], results["torch"]):
        assert got.dtype == want.dtype, name
        _close(name, got, want, 4 * u + 1e-5, 1e-30)  # of the largest magnitude (x = f + e (r - f) cancels)


def _penalty_call(backend, g, real, eps, options):
    """tests/test_fuzz.py's call of the two ops, on the CPU tensors the emulation reads."""
    gg = g.clone().requires_grad_()
    pen = fastgan.penalty_of_gradient(gg, backend=backend, **options)
    (dg,) = torch.autograd.grad(pen, gg)
    return pen, dg, fastgan.interpolate_samples(real, g.detach(), eps, backend=backend)


@settings(max_examples=12)
@given(penalty_cases())
def test_drawn_cases_against_the_torch_backend(emu, case):
    """The fuzz harness's gradient-penalty cases (degenerate and non-finite values, odd shapes, strided layouts)."""
    g, real, eps, options = case
    reference = _outcome(lambda: _penalty_call("torch", g, real, eps, options))
    u = ROUNDING[g.dtype]

    def compare(got, ref):
        _close("penalty", got[0], ref[0], 1e-5, 1e-30)
        _close("seed gradient", got[1], ref[1], 4 * u + 1e-5, 1e-30)
        _close("interpolate", got[2], ref[2], 4 * u, 1e-30)

    with emulated_cuda_backend(emu):
        kernel = _outcome(lambda: _penalty_call("cuda", g, real, eps, options))
    _same(kernel, reference, compare)
