"""The convert benchmark suite on the CPU at sizes scaled down: its cases, and the check before timing (the
converted model's first step against the unconverted one's) passing, then failing once the two have diverged."""
import pytest
import torch

import fastgan
from fastgan.bench.suites import convert as suite
from fastgan.bench.suites import train_step

pytestmark = pytest.mark.no_triton


def test_cases_and_registration():
    names = [c.params["model"] for c in suite.cases(device="cpu")]
    assert names == ["dcgan", "sngan-resnet"]
    assert "convert" in __import__("fastgan.bench.suites", fromlist=["SUITES"]).SUITES


@pytest.mark.parametrize("model", ["DCGAN-64", "SNGAN-ResNet-128"])
def test_check_passes_the_converted_step_and_fails_once_it_differs(monkeypatch, model):
    monkeypatch.setattr(train_step, "SCALE", 32)
    monkeypatch.setattr(train_step, "MODELS", type(train_step.MODELS)([(model, (*train_step.MODELS[model][:1], 32,
                                                                                 train_step.MODELS[model][2]))]))
    monkeypatch.setattr(suite, "MODELS", (model,))
    with fastgan.use_backend("torch"):
        (case,) = suite.cases(device="cpu")
        impls = case.setup(False)
        report = case.check(impls)
        assert "failed" not in report, report.get("failed")
        b = suite.current((suite.SUITE, model, "cpu"), lambda: None)
        assert any(type(m).__module__.startswith("fastgan") for m in b.converted.G.modules())
        before = [p.clone() for p in b.converted.G.parameters()]
        impls["fastgan[convert]"]()  # a whole step, with the optimizers built before convert
        assert any(not torch.equal(a, p) for a, p in zip(before, b.converted.G.parameters()))
        assert "fastgan[convert]" in case.check(impls)["failed"]
