"""The pixelcnn_sampling bench suite on a small model: the check passes the two samplers and fails a cached sampler
that draws other images; the whole-image naive time and the ratio are derived from the timed rows."""
import pytest

from fastgan.bench.suites import pixelcnn_sampling as suite

pytestmark = pytest.mark.no_triton


@pytest.fixture
def small(monkeypatch):
    for name, v in (("SIZE", 4), ("BATCH", 2), ("HIDDEN", 6), ("LAYERS", 2), ("NAIVE_ROWS", 2)):
        monkeypatch.setattr(suite, name, v)


def test_the_check_and_the_derived_ratio(small):
    (case,) = suite.cases("cpu")
    impls = case.setup(False)
    assert suite._check("cpu", impls) == {"equal_images_on_the_rows_both_drew": True}
    right = impls["cached"]
    impls["cached"] = lambda: (right() + 1) % 256
    assert "cached" in suite._check("cpu", impls)["failed"]
    rec = {"impls": {"cached": {"median_ms": 10.0}, "naive": {"median_ms": 150.0}}}
    case.finish(rec)
    assert rec["naive_full_ms"] == 300.0 and rec["speedup_cached_vs_naive"] == 30.0
    assert rec["targets"] == [{"target": "cached x naive >= 20", "value": 30.0, "threshold": 20.0, "met": True}]


def test_a_gpu_run_adds_the_gpu_case(small):
    assert [c.device for c in suite.cases("cuda")] == ["cpu", "cuda"]
