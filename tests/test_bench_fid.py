"""The fid benchmark suite at a small feature dimension, on the CPU (the real d=2048 timing is not run here)."""
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan.bench import runner
from fastgan.bench.suites import fid

ROOT = Path(__file__).resolve().parents[1]
DIM = 64
HAS_CUDA = torch.cuda.is_available()
IMPLS = ["fastgan[exact]", "fastgan[cached]", "scipy sqrtm (pytorch-fid)", "torch eigvals (torchmetrics)"]


def _reference_fid(mu1, s1, mu2, s2):
    """FID written out with numpy/scipy only: tr sqrt(S1 S2) = sum sqrt(eig(A S2 A)), A = sqrtm(S1)."""
    a = np.real(scipy.linalg.sqrtm(s1))
    a = (a + a.T) / 2
    lam = np.linalg.eigvalsh(a @ s2 @ a)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def _cpu_case(dim=DIM):
    cases = fid.cases(device="cuda", dim=dim)
    (case,) = [c for c in cases if c.device == "cpu"]
    return case


def test_inputs_are_power_law_covariances():
    mu1, s1, mu2, s2 = fid.inputs(DIM)
    n = fid.samples(DIM)
    assert n >= 2 * DIM
    k = np.arange(1, DIM + 1)
    for mu, s in ((mu1, s1), (mu2, s2)):
        assert mu.shape == (DIM,) and s.shape == (DIM, DIM) and s.dtype == np.float64
        np.testing.assert_array_equal(s, s.T)
        assert np.linalg.eigvalsh(s).min() > 0
        # sample variances of n normals: relative spread sqrt(2 / n), about 1.4%
        np.testing.assert_allclose(np.diag(s), k ** (-2 * fid.EXPONENT), rtol=0.1)
    assert not np.allclose(s1, s2)
    again = fid.inputs.__wrapped__(DIM)  # deterministic: made again from the seed, bypassing the cache
    for x, y in zip(again, (mu1, s1, mu2, s2)):
        np.testing.assert_array_equal(x, y)


def test_the_four_implementations_agree_with_an_independent_computation():
    case = _cpu_case()
    impls = case.setup(False)
    assert list(impls) == IMPLS
    expected = _reference_fid(*fid.inputs(DIM))
    assert expected > 0
    for name, fn in impls.items():
        assert float(fn()) == pytest.approx(expected, rel=1e-9), name
    check = case.check(impls)
    assert "flag" not in check
    assert set(check["values"]) == set(IMPLS)
    assert check["max_rel_diff"] < 1e-9


def test_disagreeing_implementations_are_flagged(tmp_path):
    impls = OrderedDict([("fastgan[exact]", lambda: 1.0), ("scipy sqrtm (pytorch-fid)", lambda: 1.001),
                         ("torch eigvals (torchmetrics)", lambda: 1.0)])
    check = fid._check_distance(DIM, impls)
    assert check["max_rel_diff"] == pytest.approx(1e-3, rel=1e-2)
    assert "disagree" in check["flag"]

    case = runner.Case("fid", "made up", "float64", "fwd", 8, "eight bytes", impls=impls, device="cpu",
                      baselines=("scipy sqrtm (pytorch-fid)",), reps={n: (0, 1) for n in impls},
                      check=lambda i: fid._check_distance(DIM, i))
    report = runner.run([case], tmp_path, quick=True, with_compile=False, log=lambda msg: None)
    rec = report["cases"][0]
    assert "disagree" in rec["flag"]
    assert all("median_ms" in v for v in rec["impls"].values())  # flagged, and still timed
    assert "disagree" in (tmp_path / "results.md").read_text()


def test_report_of_the_suite_at_a_small_dimension(tmp_path):
    cases = fid.cases(device="cuda", dim=DIM)
    names = [c.name for c in cases]
    assert names[0] == f"frechet distance d={DIM} (CPU)"
    assert f"frechet distance d={DIM} (GPU)" in names
    assert [b for c in cases if c.params["op"] == "feature_statistics_update" for b in [c.params["batch"]]] \
        == [256, 1024]
    for c in cases[1:]:
        assert c.device == "cuda"
    stats = [c for c in cases if c.params["op"] == "feature_statistics_update"]
    for c in stats:
        b = c.params["batch"]
        assert c.flops == {"fastgan[triton]": b * DIM * (DIM + 1), fid.MATMUL: 2 * b * DIM * DIM}
        assert f"{2 * b * DIM * DIM:.4g}" in c.floor_desc

    report = runner.run(cases, tmp_path, quick=True, with_compile=False, command="test", log=lambda msg: None,
                       suites={"fid": fid.describe()})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    rec = on_disk["cases"][0]
    assert rec["status"] == "ok" and "flag" not in rec
    assert rec["device"] == "cpu"
    for name in IMPLS:
        assert rec["impls"][name]["median_ms"] > 0, name
    assert rec["impls"]["scipy sqrtm (pytorch-fid)"]["reps"] == {"warmup": 0, "timed": 1}
    assert rec["impls"]["fastgan[exact]"]["reps"] == {"warmup": 0, "timed": 3}
    assert 0 <= rec["check"]["max_rel_diff"] < fid.AGREEMENT_RTOL
    assert rec["best_fastgan"] == "fastgan[exact]"
    assert rec["speedup_vs_scipy sqrtm (pytorch-fid)"] == pytest.approx(
        rec["impls"]["scipy sqrtm (pytorch-fid)"]["median_ms"] / rec["impls"]["fastgan[exact]"]["median_ms"])
    assert [t["target"] for t in rec["targets"]] == rec["params"]["targets"]
    threads = rec["params"]["threads"]
    assert threads["torch_threads"] == torch.get_num_threads() and threads["cpu_model"]
    assert "pct_copy_bw" not in rec  # the copy bandwidth is the GPU's
    if not HAS_CUDA:
        assert [r["status"] for r in on_disk["cases"][1:]] == [runner.NOT_RUN] * (len(cases) - 1)
    md = (tmp_path / "results.md").read_text()
    assert f"| fid | frechet distance d={DIM} (CPU) | float64 |" in md
    header = next(line for line in md.splitlines() if line.startswith("| suite |"))
    assert "| x scipy sqrtm (pytorch-fid) |" in header and "x eager" not in header
    assert report["cases"][0]["check"] == rec["check"]


@pytest.mark.parametrize("dim", [32])
def test_gpu_cases_setup_and_checks(dim):
    """The GPU cases' code, on CUDA, or on the CPU with the Triton kernels interpreted."""
    device = "cuda" if HAS_CUDA else "cpu"
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    impls = fid._setup_gpu_distance(dim, device, False)
    assert list(impls) == ["fastgan[exact]", "fastgan[cached]", "fastgan[newton_schulz]",
                           "torch eigvals (torchmetrics)"]
    check = fid._check_distance(dim, impls)
    assert "flag" not in check, check
    assert check["values"]["fastgan[exact]"] == pytest.approx(_reference_fid(*fid.inputs(dim)), rel=1e-9)
    assert check["newton_schulz"]["route"] == "newton_schulz"
    impls = fid._setup_stats(64, 256, device, False)
    impls["fastgan[triton]"]()
    assert impls[fid.MATMUL]().shape == (64, 64)
    check = fid._check_stats(64, 256, device, impls)
    assert "flag" not in check, check
    assert check["covariance_rel_err"] < 1e-5 and check["matmul_rel_err"] < 1e-5


def test_bench_command_runs_the_suite(tmp_path):
    args = ["bench", "--suite", "fid", "--fid-dim", "24", "--fid-threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "fastgan", *args], cwd=ROOT, env=dict(os.environ),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["suites"]["fid"]["dim"] == 24
    assert report["cases"][0]["name"] == "frechet distance d=24 (CPU)"
    assert report["cases"][0]["status"] == "ok"
    threads = report["cases"][0]["params"]["threads"]
    assert threads["torch_threads"] == 1
    assert threads["scipy_route_threads"] in (1, None)
    assert "frechet distance d=24 (CPU)" in proc.stdout
