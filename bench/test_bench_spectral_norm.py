"""pytest-benchmark view of the spectral-norm suite: the same cases and implementations as ``fastgan bench``.

On a GPU machine: ``pytest bench/ --benchmark-only``. Not part of the test run (``pytest tests``); without a CUDA
device every benchmark is skipped. Times here are wall clock around a call and a device synchronisation; the
numbers to report come from ``fastgan bench`` (CUDA events, L2 flushed).
"""
import pytest
import torch

from fastgan.bench.report import IMPL_ORDER
from fastgan.bench.suites import spectral_norm as suite

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = suite.cases(device="cuda")
PARAMS = [pytest.param(case, impl, id=f"{case.name}-{case.dtype}-{case.mode}-{impl}".replace(" ", "_"))
          for case in CASES for impl in IMPL_ORDER]

_built: dict = {}  # the implementations of the case being benchmarked (one case at a time)


def _impls(case):
    if id(case) not in _built:
        _built.clear()
        _built[id(case)] = case.setup(True)
    return _built[id(case)]


@pytest.mark.parametrize("case, impl", PARAMS)
def test_spectral_norm(benchmark, case, impl):
    fn = _impls(case).get(impl)
    if fn is None or isinstance(fn, Exception):
        pytest.skip(f"{impl}: {fn or 'not set up'}")

    def call():
        fn()
        torch.cuda.synchronize()

    call()
    benchmark.group = f"{case.name} {case.dtype} {case.mode}"
    benchmark.extra_info.update(floor_bytes=case.floor_bytes, floor=case.floor_desc, **case.params)
    benchmark(call)
    benchmark.extra_info["floor_gbs_at_median"] = case.floor_bytes / benchmark.stats.stats.median / 1e9
