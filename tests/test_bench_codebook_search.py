"""The codebook_search bench suite's correctness check, on small shapes on the CPU (the kernel under the
interpreter): right implementations pass, a wrong one is named and not timed."""

import pytest
import torch
from conftest import INTERPRETING

from fastgan.bench.suites import codebook_search as suite


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(suite, "N", 50)
    monkeypatch.setattr(suite, "SHAPES", ((70, 9),))


def test_the_check_passes_right_implementations_and_names_a_wrong_one(small):
    backends = ("triton",) if INTERPRETING else ()
    impls = suite._setup(70, 9, "cpu", backends, with_compile=False)
    z, e = suite._tensors(70, 9, "cpu")
    impls["wrong"] = lambda: torch.cdist(z, e).argmax(1)
    report = suite._check(70, 9, "cpu", impls)
    assert set(report["failed"]) == {"wrong"}, report
    assert set(report["errors"]) == {*impls}
    assert all(v["chosen_minus_min"] < 1e-5 for k, v in report["errors"].items() if k != "wrong")


def test_the_ema_check_passes_right_updates_and_names_a_wrong_one(small):
    backends = ("triton",) if INTERPRETING else ()
    impls = suite._ema_setup(70, 9, "cpu", backends, with_compile=False)
    right = impls["eager"]
    impls["wrong"] = lambda: tuple(t * 1.001 for t in right())
    report = suite._ema_check(70, 9, "cpu", impls)
    assert set(report["failed"]) == {"wrong"}, report
    assert set(report["errors"]) == {*impls}


def test_the_cases_are_listed_with_their_flop_floor(small):
    case, _ = suite.cases("cuda")
    assert case.floor_flops == 2 * 50 * 70 * 9 and case.params["codes"] == 70
