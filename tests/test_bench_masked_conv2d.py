"""The masked_conv2d bench suite's correctness check, on small shapes on the CPU (the kernel under the interpreter):
right implementations pass, a wrong one is named and not timed; the floors count the kept taps."""

import pytest
from conftest import INTERPRETING

from fastgan.bench.suites import masked_conv2d as suite

SMALL = suite.Layer("horizontal 1x3 mask B", 2, 5, 6, 4, (1, 3), (0, 2), "B", "vertical")


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_the_check_passes_right_implementations_and_names_a_wrong_one(mode):
    backends = ("triton",) if INTERPRETING else ()
    impls = suite._setup(SMALL, "float32", "cpu", mode, backends, with_compile=False)
    right = impls["eager"]
    impls["wrong"] = (lambda: right() * 1.01) if mode == "fwd" else (lambda: [t * 1.01 for t in right()])
    report = suite._check(SMALL, "float32", "cpu", mode, impls)
    assert set(report["failed"]) == {"wrong"}, report
    assert set(report["errors"]) == set(impls) - {"eager"}


def test_the_floors_count_the_kept_taps():
    by_name = {layer.name: layer for layer in suite.LAYERS}
    assert suite.taps(by_name["3x3 mask B"]) == 5 and suite.taps(by_name["vertical 3x5"]) == 15
    layer = by_name["3x3 mask B"]
    assert suite.floor_flops(layer, "fwd") == 2 * 32 * 32 * 32 * 256 * 128 * 5
    assert suite.floor_flops(layer, "fwd+bwd") == 3 * suite.floor_flops(layer, "fwd")
    cases = suite.cases("cuda")
    assert len(cases) == len(suite.LAYERS) * 2 * 2 and all(c.floor_bytes > 0 for c in cases)
