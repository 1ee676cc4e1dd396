"""The gradient_penalty benchmark suite on the CPU at shapes scaled down: its cases, and the check that runs before
timing (fastgan's step against the textbook eager step) passing for fastgan and failing for a wrong step."""
import dataclasses

import pytest

from fastgan.bench.suites import gradient_penalty as suite


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(suite, "SCALE", 32)


def test_cases_cover_both_models_and_batches_with_floors(tiny):
    cases = suite.cases(device="cpu", backends=("torch",))
    assert len(cases) == 2 * len(suite.BATCHES) * len(suite.MODELS)
    ops = [c for c in cases if c.name.startswith("penalty ops")]
    for c in ops:
        n = 1
        for d in c.params["shape"]:
            n *= d
        assert c.floor_bytes == 6 * n * 4  # interpolation 3 |x|, norms |g|, seed 2 |g|
    assert {c.params["penalty"] for c in cases if "critic step" in c.name} == {"wgan-gp", "r1"}


def test_check_passes_fastgan_and_fails_a_wrong_step(tiny):
    for case in suite.cases(device="cpu", backends=("torch",))[:4]:
        impls = case.setup(False)
        report = case.check(impls)
        assert "failed" not in report, report
        if "critic step" in case.name:
            good = impls["fastgan[torch]"]

            def wrong(good=good):  # the penalty's weight off by 10%
                losses, grads = good()
                return losses * 1.1, [g * 1.1 for g in grads]
            impls["wrong"] = wrong
            assert "wrong" in case.check(impls)["failed"]


def test_suite_is_listed_and_described():
    from fastgan.bench.suites import SUITES

    assert "gradient_penalty" in SUITES
    assert suite.describe()["models"] == list(suite.MODELS)
    assert dataclasses.is_dataclass(suite.cases(device="cpu", backends=())[0])
