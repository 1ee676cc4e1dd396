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
    likelihood = sum(suite._likelihood(m) for m in suite.MODELS)
    assert likelihood == 3 and len(cases) == 2 * len(suite.MODELS) - likelihood  # (no sampling case for those)
    targeted = {c.params["model"]: c.params["targets"] for c in cases if c.params["targets"]}
    assert targeted == {"dcgan": ["x eager >= 1.3", "x compile >= 1.1"],
                        "sngan-resnet": ["x eager >= 1.3", "x compile >= 1.1"], "vae": ["x eager >= 1.2"],
                        "vqvae": ["x eager >= 1.2"]}
    assert "train_step" in __import__("fastgan.bench.suites", fromlist=["SUITES"]).SUITES


def test_check_passes_the_fused_step_and_fails_once_the_weights_differ(tiny):
    with fastgan.use_backend("torch"):  # (auto would interpret the Triton kernels on the CPU under the tests)
        _check_cases()


@pytest.mark.parametrize("model", ["VAE-32", "VQ-VAE-32", "PixelCNN-32"])
def test_check_passes_the_likelihood_models_fused_step_and_fails_once_they_differ(monkeypatch, model):
    monkeypatch.setattr(suite, "SCALE", 16)
    monkeypatch.setattr(suite, "MODELS", type(suite.MODELS)([(model, suite.MODELS[model])]))
    with fastgan.use_backend("torch"):
        (case,) = suite.cases(device="cpu")
        impls = case.setup(False)
        assert "failed" not in case.check(impls), case.check(impls)
        b = suite.current((suite.SUITE, model, "cpu", False), lambda: None)
        b.fused["auto"].step()
        assert "fastgan[auto]" in case.check(impls)["failed"]


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
