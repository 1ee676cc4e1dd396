"""The train_step benchmark suite on the CPU at sizes scaled down: its cases, and the check that runs before timing
(the fused build's first step against the eager build's) passing for fastgan and failing for a wrong step."""
import pytest
import torch

import fastgan
from fastgan.bench.suites import train_step as suite

pytestmark = pytest.mark.no_triton


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(suite, "SCALE", 32)
    monkeypatch.setattr(suite, "MODELS", type(suite.MODELS)([("DCGAN-64", ("dcgan", 32, 128))]))


def test_cases_cover_every_model_with_targets_where_the_issue_sets_them():
    cases = suite.cases(device="cpu")
    assert len(cases) == 2 * len(suite.MODELS)
    targeted = {c.params["model"] for c in cases if c.params["targets"]}
    assert targeted == {"dcgan", "sngan-resnet"}
    assert "train_step" in __import__("fastgan.bench.suites", fromlist=["SUITES"]).SUITES


def test_check_passes_the_fused_step_and_fails_once_the_weights_differ(tiny):
    with fastgan.use_backend("torch"):  # (auto would interpret the Triton kernels on the CPU under the tests)
        _check_cases()


def _check_cases():
    for case in suite.cases(device="cpu"):
        impls = case.setup(False)
        report = case.check(impls)
        assert "failed" not in report, report
        impls["fastgan[auto]"]()  # a whole step runs
        if "train step" in case.name:
            b = suite.current((suite.SUITE, case.name.split(" train")[0], "cpu", False), lambda: None)
            fused = b.fused["auto"]
            before = [p.clone() for p in fused.G.parameters()]
            fused.step()
            assert any(not torch.equal(a, p) for a, p in zip(before, fused.G.parameters()))  # it trains
            assert "fastgan[auto]" in case.check(impls)["failed"]  # now its weights are not eager's
