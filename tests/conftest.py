"""Test setup: without a GPU, Triton kernels run under Triton's interpreter on CPU tensors.

TRITON_INTERPRET is read when a function is decorated with triton.jit, and Triton's own library functions
(tl.sum, ...) are decorated when Triton is imported: so it is set, and Triton imported, before any test runs
(a test that later changes the variable then no longer changes how kernels run).
"""
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
try:
    import triton  # noqa: F401  (see above)
except ImportError:
    pass


try:  # the fuzz profiles (tests/test_fuzz.py): FASTGAN_FUZZ=ci (default, fixed examples) or long (by hand)
    from hypothesis import HealthCheck, settings

    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, suppress_health_check=_quiet,
                              print_blob=True)
    settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_quiet,
                              print_blob=True)
    settings.load_profile(os.environ.get("FASTGAN_FUZZ", "ci"))
except ImportError:
    pass


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (run bench/device_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


def _with_small_tiles():
    """Tiles of 256 elements, so that small test matrices span several work items of every spectral-norm kernel."""
    from fastgan.ops import spectral_norm_plan as plan

    plan.TILE_ELEMS_OVERRIDE = 256
    plan.clear_cache()
    yield
    plan.TILE_ELEMS_OVERRIDE = None
    plan.clear_cache()


small_tiles = pytest.fixture(_with_small_tiles, name="small_tiles")
small_tiles_for_module = pytest.fixture(_with_small_tiles, scope="module", name="small_tiles_for_module")


@pytest.fixture
def interpreter():
    if not INTERPRETING:
        pytest.skip("Triton interpreter tests run without a GPU (TRITON_INTERPRET=1); the GPU tests cover it there")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))
