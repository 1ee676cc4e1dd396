"""The CUDA kernels of spectral norm (csrc/spectral_norm.cu), run on the CPU under the emulation of
tests/cuda_emulation/ and driven by fastgan itself: the `cuda` backend of fastgan.spectral_normalize, with the
extension's entry points replaced by the emulated ones and CPU tensors standing in for device memory (the plan's
tables hold their addresses). Every result is held to the torch reference as the fuzz harness holds the Triton
kernels (tests/test_fuzz.py): fixed cases that reach every kernel instantiation, then cases drawn by hypothesis.
"""
import contextlib
import re

import pytest
import torch
import torch.nn.functional as F

from cuda_emulation import emulate
from cuda_emulation.emulate import Emulation, compile_emulation

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastgan import _backend  # noqa: E402
from fastgan.ops import _op  # noqa: E402
from fastgan.ops import spectral_norm_plan as plan  # noqa: E402

from test_fuzz import sn_agree, sn_groups  # noqa: E402

pytestmark = [pytest.mark.emulation, pytest.mark.no_triton]

EXPECTED_LAUNCHES = ["cols_kernel", "dot_kernel", "finalize_kernel", "finalize_kernel", "grad_kernel", "rows_kernel",
                     "scale_kernel"]
ENTRY_POINTS = ["spectral_norm_normalize", "spectral_norm_normalize_backward", "spectral_norm_power_iteration"]
STORAGE = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    src, names, decls = emulate.emulation_source("spectral_norm", "spectral_norm_")
    assert sorted(names) == EXPECTED_LAUNCHES, "launches found in csrc/spectral_norm.cu"
    assert sorted(decls) == ENTRY_POINTS, "entry points found in csrc/ops.h"
    return Emulation(compile_emulation(src, tmp_path_factory.mktemp("cuda_emulation_sn"), "spectral_norm"), decls)


class _EmulatedExtension:
    """Stands in for fastgan._C: its spectral-norm entry points, emulated."""

    def __init__(self, emu):
        for name in ENTRY_POINTS:
            setattr(self, name, emu.positional(name))


@contextlib.contextmanager
def emulated_cuda_backend(emu, sms=132):
    """fastgan's `cuda` backend on CPU tensors, through the emulated entry points."""
    real = _backend.unavailable_reason
    emu.sms = sms
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_backend, "extension", lambda: _EmulatedExtension(emu))
        mp.setattr(_backend, "unavailable_reason",
                   lambda backend, device, dtype, op=None: None if backend == "cuda" and dtype != torch.float64
                   else real(backend, device, dtype, op))
        mp.setattr(_op, "_raw_stream", lambda device_index: 0)
        plan.clear_cache()
        try:
            yield
        finally:
            plan.clear_cache()


def _group(shapes, dtype, scale=1.0, seed=0, special=None):
    """(dtype, group, ...) as tests/test_fuzz.py's sn_groups draws them."""
    g = torch.Generator().manual_seed(seed)
    group = []
    for shape, dim in shapes:
        w = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
        if special is not None and w.numel():
            w.view(-1)[1 % w.numel()] = special
        _, h, _, wc = plan.matrix_geometry(shape, dim)
        u, v = F.normalize(torch.randn(h, generator=g), dim=0), F.normalize(torch.randn(wc, generator=g), dim=0)
        group.append((w, u, v, dim, "fixed"))
    return group


SHAPES = [((7, 33), 0), ((5, 3, 3, 3), 0), ((4, 6, 2, 2), 1), ((1, 40), 0), ((40, 1), 0)]
NO_OUTER = [SHAPES[i] for i in (0, 1, 3, 4)]  # every matrix along dim 0: unit column stride, no outer index
FIXED = [  # (dtype, shapes, scale, special value, options, SM count)
    (dtype, shapes, 1.0, None, dict(n_power_iterations=n, u_first=u_first, check_finite=False), sms)
    for dtype in STORAGE for shapes, n, u_first, sms in ((SHAPES, 1, True, 132), (SHAPES, 2, False, 1),
                                                          (SHAPES, 0, True, 132), (NO_OUTER, 1, True, 1))
] + [
    (torch.float32, SHAPES[:3], scale, special, dict(n_power_iterations=1, u_first=True, check_finite=check), 132)
    for scale, special, check in ((1e-20, None, False), (1e20, None, False), (1.0, float("nan"), False),
                                  (1.0, float("inf"), False), (0.0, None, False), (0.0, None, True),
                                  (1.0, float("nan"), True))
] + [(torch.bfloat16, [((0, 5), 0), ((3, 0, 2), 1), ((6, 6), 0)], 1.0, None,
      dict(n_power_iterations=1, u_first=False, check_finite=False), 1)]


def _id(case):
    dtype, shapes, scale, special, options, sms = case
    return (f"{STORAGE[dtype]}-{len(shapes)}w-x{scale:g}{'' if special is None else f'-{special}'}-"
            f"n{options['n_power_iterations']}{'-legacy' if not options['u_first'] else ''}"
            f"{'-checked' if options['check_finite'] else ''}-{sms}sm")


@pytest.mark.parametrize("case", FIXED, ids=[_id(c) for c in FIXED])
def test_fixed_cases_against_the_torch_reference(emu, case):
    dtype, shapes, scale, special, options, sms = case
    with emulated_cuda_backend(emu, sms):
        sn_agree(["cuda-emulated"], dtype, _group(shapes, dtype, scale, special=special), options, grad_seed=3)
    emu.cases_done.add(_id(case))


@settings(max_examples=12)
@given(sn_groups(), st.integers(0, 2**16))
def test_drawn_cases_against_the_torch_reference(emu, case, grad_seed):
    dtype, group, options = case
    with emulated_cuda_backend(emu):
        sn_agree(["cuda-emulated"], dtype, group, options, grad_seed)


def test_fixed_cases_reach_every_kernel_instantiation(emu):
    if len(emu.cases_done) < len(FIXED):
        pytest.skip("needs every fixed case to have run (and passed) first")
    seen = set()
    for kernel, *_ in emu.launched:
        m = re.fullmatch(r"(?:\w+::)*(\w+)(?:<(.*)>)?", kernel.strip())
        targs = tuple(re.sub(r"^(?:\w+::)*", "", a.strip()) for a in m[2].split(",")) if m[2] else ()
        seen.add((m[1], targs))
    expected = {("finalize_kernel", ("true",)), ("finalize_kernel", ("false",))}
    for t in STORAGE.values():
        for outer, unit in (("true", "true"), ("false", "true"), ("false", "false")):
            expected |= {("rows_kernel", (t, outer, unit)), ("cols_kernel", (t, outer, unit))}
        expected |= {("scale_kernel", (t,)), ("dot_kernel", (t,)), ("grad_kernel", (t,))}
    missing = expected - seen
    assert not missing, f"kernel instantiations no case launches: {sorted(missing)}"
