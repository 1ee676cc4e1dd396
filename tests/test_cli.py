"""The ``fastgan`` command (info, bench) and the benchmark runner, on the CPU."""
import json
import math
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from fastgan import _backend
from fastgan.bench import environment, runner

ROOT = Path(__file__).resolve().parents[1]


def _fastgan(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastgan", *args], cwd=ROOT, env=dict(os.environ),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


# Spectral-normed weights as matrices (rows x columns), written out by hand from the papers and code
# (a k x k convolution in -> out is out x in*k*k), independently of fastgan.bench.suites.
SNGAN32_D = [(64, 27), (64, 1024), (128, 576), (128, 2048), (256, 1152), (256, 4096), (512, 2304), (1, 8192)]
SNGAN128_D = [
    (64, 27), (64, 576), (64, 3),  # optimized block 3 -> 64: c1, c2, shortcut
    (64, 576), (128, 576), (128, 64),  # 64 -> 128: c1 in->in, c2 in->out, shortcut
    (128, 1152), (256, 1152), (256, 128),
    (256, 2304), (512, 2304), (512, 256),
    (512, 4608), (1024, 4608), (1024, 512),
    (1024, 9216), (1024, 9216),  # 1024 -> 1024, no downsampling: no shortcut conv
    (1, 1024), (1000, 1024),  # linear, class embedding
]
BIGGAN128_D = [
    (96, 27), (96, 864), (96, 3),  # 3 -> 96: conv1 in->out, conv2 out->out, shortcut
    (12, 96), (12, 96), (48, 96), (96, 48),  # attention at 64x64: theta, phi, g, o
    (192, 864), (192, 1728), (192, 96),
    (384, 1728), (384, 3456), (384, 192),
    (768, 3456), (768, 6912), (768, 384),
    (1536, 6912), (1536, 13824), (1536, 768),
    (1536, 13824), (1536, 13824),  # 1536 -> 1536, no downsampling: no shortcut conv
    (1, 1536), (1000, 1536),
]
WEIGHT_SETS = {"SNGAN-32 D": SNGAN32_D, "SNGAN-128 D": SNGAN128_D, "BigGAN-128 D": BIGGAN128_D}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def test_info_reports_versions_and_the_backend_auto_picks():
    proc = _fastgan("info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert torch.__version__ in out
    expected = _backend.resolve("spectral_norm", torch.device("cpu"), torch.float32, "auto")
    m = re.search(r"^spectral_norm\s+CPU float32\s+(\S+)\s*$", out, re.M)
    assert m, out
    assert m.group(1) == expected
    if not torch.cuda.is_available():
        assert "no CUDA device" in out


def test_bench_without_gpu_writes_floors_for_every_case(tmp_path):
    args = ["bench", "--suite", "spectral_norm", "--out", str(tmp_path)]
    if torch.cuda.is_available():
        args += ["--budget-s", "0.001"]  # this test checks the report, not timings
    proc = _fastgan(*args)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "results.md").is_file()
    report = json.loads((tmp_path / "results.json").read_text())

    sets = report["suites"]["spectral_norm"]["weight_sets"]
    assert set(sets) == set(WEIGHT_SETS)
    for name, mats in WEIGHT_SETS.items():
        assert sets[name]["params"] == sum(h * w for h, w in mats), name
        assert sets[name]["tensors"] == len(mats), name
    assert sets["SNGAN-32 D"]["params"] == 64 * 27 + 64 * 1024 + 128 * 576 + 128 * 2048 + 256 * 1152 + 256 * 4096 \
        + 512 * 2304 + 8192

    expected = {}
    for name, mats in WEIGHT_SETS.items():
        for dtype, size in DTYPE_BYTES.items():
            wbytes = sum(h * w for h, w in mats) * size
            expected[(name, dtype, "power_iteration", "fwd")] = 2 * wbytes
            expected[(name, dtype, "spectral_normalize", "fwd")] = 4 * wbytes
            expected[(name, dtype, "spectral_normalize", "fwd+bwd")] = 7 * wbytes
    got = {}
    for rec in report["cases"]:
        key = (rec["params"]["weight_set"], rec["dtype"], rec["params"]["op"], rec["mode"])
        assert key not in got, key
        got[key] = rec["floor_bytes"]
        assert rec["floor_bytes"] > 0
        assert rec["params"]["power_iteration_floor_bytes"] == expected[(key[0], key[1], "power_iteration", "fwd")]
        assert rec["status"] in (runner.NOT_RUN, runner.SKIPPED)
        assert rec["floor_us_at_datasheet"]["H100 SXM"] == pytest.approx(rec["floor_bytes"] / 3.35e12 * 1e6)
        assert rec["floor_us_at_datasheet"]["H200"] == pytest.approx(rec["floor_bytes"] / 4.8e12 * 1e6)
    assert got == expected
    md = (tmp_path / "results.md").read_text()
    assert "| BigGAN-128 D power iteration | float32 |" in md.replace("| spectral_norm ", "")
    assert f"{sets['SNGAN-32 D']['params']:,} parameters" in md
    assert proc.stdout.strip().endswith(md.strip().splitlines()[-1])  # the table is printed last


def test_bench_by_default_covers_every_suite_and_says_what_it_wrote(tmp_path):
    from fastgan.bench.suites import SUITES

    args = ["bench", "--out", str(tmp_path)]
    if torch.cuda.is_available():
        args += ["--budget-s", "0.001"]
    proc = _fastgan(*args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    assert list(report["suites"]) == list(SUITES) and {r["suite"] for r in report["cases"]} == set(SUITES)
    assert f"to {tmp_path}" in proc.stderr and "results.md" in proc.stderr
    if not torch.cuda.is_available():
        cpu = [r for r in report["cases"] if r["name"].endswith("(CPU)")]
        assert cpu and all(f"--suite {r['suite']}" in r["status"] for r in cpu), "CPU timings wait for --suite"
        assert "No CUDA device here" in proc.stderr and "fastgan bench --suite fid" in proc.stderr
    chart = report["chart"]
    assert ("results.png not written" in proc.stderr) == chart.startswith("not written")
    if "matplotlib" in chart:
        assert "pip install 'fastgan[bench]'" in proc.stderr


def test_bench_refuses_a_budget_that_runs_nothing(tmp_path):
    proc = _fastgan("bench", "--out", str(tmp_path), "--budget-s", "-1")
    assert proc.returncode == 2 and "--budget-s must be a positive number" in proc.stderr
    assert not (tmp_path / "results.json").exists()


def _case(name, impls):
    return runner.Case("demo", name, "float32", "fwd", 8000, "one read of 2000 floats", impls=OrderedDict(impls),
                      device="cpu")


def test_runner_times_cpu_cases_and_records_errors(tmp_path):
    x = torch.ones(2000)

    def broken():
        raise RuntimeError("kernel failed\nwith a long traceback")

    cases = [_case("sum", {"fastgan[triton]": lambda: x.sum(), "eager": broken,
                           "fastgan[cuda]": runner.Unavailable("no GPU here")})]
    report = runner.run(cases, tmp_path, quick=True, with_compile=False, command="test", log=lambda msg: None)
    rec = report["cases"][0]
    assert rec["status"] == "ok"
    assert rec["impls"]["fastgan[triton]"]["median_ms"] > 0
    assert rec["impls"]["eager"] == {"error": "RuntimeError: kernel failed"}
    assert rec["impls"]["fastgan[cuda]"] == {"unavailable": "no GPU here"}
    assert rec["best_fastgan"] == "fastgan[triton]"
    assert math.isclose(rec["achieved_gbs"], 8000 / (rec["impls"]["fastgan[triton]"]["median_ms"] * 1e-3) / 1e9)
    assert "kernel failed" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["cases"][0]["impls"] == rec["impls"]


def test_runner_skips_cases_past_the_budget(tmp_path):
    calls = []
    cases = [_case(f"c{i}", {"eager": lambda: calls.append(1)}) for i in range(2)]
    report = runner.run(cases, tmp_path, budget_s=0, quick=True, with_compile=False, log=lambda msg: None)
    assert [r["status"] for r in report["cases"]] == [runner.SKIPPED] * 2
    assert not calls


@pytest.mark.parametrize("name, label", [("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                         ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
                                         ("NVIDIA A100-SXM4-40GB", "A100 40GB"), ("NVIDIA L4", None)])
def test_datasheet_bandwidth_matches_device_names(name, label):
    got = environment.datasheet_bandwidth(name)
    assert (got[0] if got else None) == label
