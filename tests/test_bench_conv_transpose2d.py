"""The conv_transpose2d benchmark suite on the CPU, at shapes scaled down (the GPU timings are not run here)."""
import argparse
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fastgan.bench import command, runner
from fastgan.bench.suites import SUITES, load
from fastgan.bench.suites import conv_transpose2d as suite

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
SCALE = 32  # batch and channels divided by this (the 3 image channels kept)
ITEMSIZE = {"float32": 4, "bfloat16": 2}

# (model, layer): (N, C_in, C_out, H_in, k, stride, padding, H_out), written out from the models
LAYERS = {
    ("DCGAN-64 G", "main.0"): (128, 100, 512, 1, 4, 1, 0, 4),
    ("DCGAN-64 G", "main.3"): (128, 512, 256, 4, 4, 2, 1, 8),
    ("DCGAN-64 G", "main.6"): (128, 256, 128, 8, 4, 2, 1, 16),
    ("DCGAN-64 G", "main.9"): (128, 128, 64, 16, 4, 2, 1, 32),
    ("DCGAN-64 G", "main.12"): (128, 64, 3, 32, 4, 2, 1, 64),
    ("VAE-64 decoder", "dec.0"): (128, 256, 128, 4, 4, 2, 1, 8),
    ("VAE-64 decoder", "dec.3"): (128, 128, 64, 8, 4, 2, 1, 16),
    ("VAE-64 decoder", "dec.6"): (128, 64, 32, 16, 4, 2, 1, 32),
    ("VAE-64 decoder", "dec.9"): (128, 32, 3, 32, 4, 2, 1, 64),
    ("BigGAN-style G block", "conv1"): (64, 256, 256, 16, 3, 1, 1, 32),  # nearest x2, then a 3x3 conv
}
DEFAULT = ["main.9", "main.6", "main.12", "dec.6", "conv1", "main.3", "dec.9", "main.0"]
PARTS = {"bn": [("kernel", "fwd"), ("conv+bias+act", "fwd"), ("block", "fwd"), ("block", "fwd+bwd")],
         "last": [("kernel", "fwd"), ("conv+bias+act", "fwd"), ("conv+bias+act", "fwd+bwd")],
         "upsample": [("upsample+conv", "fwd"), ("upsample+conv", "fwd+bwd")]}
TARGETS = {"kernel": {"x eager >= 0.9"}, "conv+bias+act": {"x eager >= 1.3"},
           "block": {"x eager >= 1.5", "x compile >= 1.1"}, "upsample+conv": set()}


def _op_importable() -> bool:
    try:
        from fastgan.ops.conv_transpose2d import conv_transpose2d  # noqa: F401
    except ImportError:
        return False
    return True


needs_op = pytest.mark.skipif(not _op_importable(), reason="fastgan.ops.conv_transpose2d is not importable")


def _small_cases(**kw):
    kw.setdefault("backends", ())
    return suite.cases(device="cpu", scale=kw.pop("scale", SCALE), **kw)


def _kind(layer: str) -> str:
    return "upsample" if layer == "conv1" else "last" if layer in ("main.12", "dec.9") else "bn"


def _expected_floors(case):
    """(FLOP floor, byte floor) of a case, from its shapes as written in LAYERS (scaled as the suite scales)."""
    p = case.params
    n, c_in, c_out, h = p["x"][0], p["x"][1], p["y"][1], p["x"][2]
    full = LAYERS[(p["model"], p["layer"])]
    assert (p["x"][2], p["y"][2], p["kernel"], p["stride"], p["padding"]) == (full[3], full[7], *full[4:7])
    taps = 16 if p["layer"] == "conv1" else full[4] ** 2  # the upsampling: its merged 4x4 transposed convolution
    flops = 2 * n * c_in * c_out * h * h * taps * (3 if case.mode == "fwd+bwd" else 1)
    e = ITEMSIZE[case.dtype]
    x, y, b = n * c_in * h * h * e, n * c_out * full[7] ** 2 * e, c_out * e
    w = c_in * c_out * full[4] ** 2 * e
    by = {("kernel", "fwd"): x + w + y, ("conv+bias+act", "fwd"): x + w + b + y,
          ("conv+bias+act", "fwd+bwd"): 3 * x + 3 * w + 2 * b + 3 * y, ("block", "fwd"): x + w + 3 * y,
          ("block", "fwd+bwd"): 3 * x + 3 * w + 10 * y, ("upsample+conv", "fwd"): x + w + b + y,
          ("upsample+conv", "fwd+bwd"): 3 * x + 3 * w + 2 * b + 2 * y}
    return flops, by[(p["part"], case.mode)]


def test_the_suite_is_registered():
    assert "conv_transpose2d" in SUITES
    assert load("conv_transpose2d") is suite and suite.SUITE == "conv_transpose2d"
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--suite", "conv_transpose2d", "--ct-scale", "8", "--ct-all-layers"])
    assert args.suite == ["conv_transpose2d"] and args.ct_scale == 8 and args.ct_all_layers
    assert "--ct-scale" in parser.format_help()


def test_cases_are_the_generator_layers_and_their_floors():
    cases = suite.cases(device="cuda")
    order = list(OrderedDict.fromkeys(c.params["layer"] for c in cases))
    assert order == DEFAULT
    assert len(cases) == 2 * (5 * 4 + 2 * 3 + 2)
    all_cases = suite.cases(device="cuda", all_layers=True)
    assert [c.params["layer"] for c in all_cases[len(cases):]][::8] == ["dec.0", "dec.3"]
    groups = OrderedDict()
    for c in all_cases:
        groups.setdefault((c.params["layer"], c.dtype), []).append((c.params["part"], c.mode))
    assert all(got == PARTS[_kind(layer)] for (layer, _), got in groups.items())
    for c in all_cases:
        p = c.params
        assert c.suite == "conv_transpose2d" and c.device == "cuda"
        assert p["model_x"] == p["x"] and p["x"][0] == LAYERS[(p["model"], p["layer"])][0]
        flops, floor = _expected_floors(c)
        assert c.floor_flops == flops == p["floor_flops"], c.name
        assert c.floor_bytes == floor, (c.name, c.mode)
        assert set(p["targets"]) == TARGETS[p["part"]]
        assert c.baselines == (("eager", "compile") if p["part"] == "block" else ("eager",))
        assert c.rate_reference == "eager" and c.floor_desc.startswith(p["part"] + " " + c.mode)
        # the phase kernel's own work: the dense work for k4 s2 p1 (and the merged upsampling), 16x it on 1x1
        fwd_flops = flops // (3 if c.mode == "fwd+bwd" else 1)
        assert p["phase_kernel_flops"] == fwd_flops * (16 if p["layer"] == "main.0" else 1)
    # DCGAN main.9, float32: 2 * 128 * 128 * 64 * 16 * 16 * 16 flops; x 16 MiB + w 0.5 MiB + y 32 MiB
    first = cases[0]
    assert (first.params["layer"], first.dtype, first.params["part"]) == ("main.9", "float32", "kernel")
    assert first.floor_flops == 8_589_934_592 and first.floor_bytes == 50_855_936
    # a layer's cases are consecutive per dtype (they share one set of tensors and one compiled block)
    keys = [(c.params["layer"], c.dtype) for c in cases]
    assert len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]) == len(set(keys)) == 2 * len(DEFAULT)
    assert {c.dtype for c in suite.cases(device="cuda", dtypes=("bfloat16",))} == {"bfloat16"}


def test_scaled_cases_and_describe():
    small, full = _small_cases(), suite.cases(device="cuda")
    for s, f in zip(small, full):
        (n, ci, h, _), (fn, fci, fh, _) = s.params["x"], f.params["x"]
        assert h == fh and n == max(2, fn // SCALE) and ci == (fci if fci <= 3 else max(1, fci // SCALE))
        assert s.params["y"][1] == (3 if f.params["y"][1] == 3 else f.params["y"][1] // SCALE)
        assert (s.floor_flops, s.floor_bytes) == _expected_floors(s)
    d = suite.describe()
    assert d["scale"] == 1 and not d["all_layers"] and [r["layer"] for r in d["layers"]] == DEFAULT
    assert d["targets"]["block"] == ["x eager >= 1.5", "x compile >= 1.1"]
    assert json.loads(json.dumps(d)) == d and "VAE-64 decoder dec.6" in d["lines"][0]


def _reference(case):
    """(y, the tensors differentiated, dy) of a case in float64 from the suite's inputs, written out with torch ops
    (the upsampling as repeat_interleave, batch norm from its definition)."""
    p = case.params
    t = suite.inputs(suite.scaled(next(s for s in suite.layers(True) if s.name == p["layer"]), SCALE), case.dtype,
                     "cpu")
    x, w, b, bw, bb = (t[k].double().requires_grad_() for k in ("x", "weight", "bias", "bn_weight", "bn_bias"))
    dy = t["dy"].double()
    if p["part"] == "upsample+conv":
        return F.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w, b, padding=1), (x, w, b), dy
    if p["part"] == "kernel":
        return F.conv_transpose2d(x, w, None, p["stride"], p["padding"]), (x, w), dy
    if p["part"] == "conv+bias+act":
        act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[p["activation"]]
        return act(F.conv_transpose2d(x, w, b, p["stride"], p["padding"])), (x, w, b), dy
    y = F.conv_transpose2d(x, w, None, p["stride"], p["padding"])
    mean, var = y.mean((0, 2, 3), keepdim=True), y.var((0, 2, 3), unbiased=False, keepdim=True)
    z = (y - mean) / torch.sqrt(var + suite.EPS) * bw[None, :, None, None] + bb[None, :, None, None]
    return torch.relu(z), (x, w, bw, bb), dy


def test_the_eager_baselines_match_a_float64_reference():
    cases = [c for c in _small_cases() if c.params["layer"] in ("main.12", "conv1", "main.0")]
    for case in cases:
        impls = case.setup(False)
        assert list(impls) == ["eager"]
        out = impls["eager"]()
        y, grads = (out, ()) if case.mode == "fwd" else (out[0], out[1:])
        ref, wrt, dy = _reference(case)
        assert y.dtype == getattr(torch, case.dtype) and y.shape == ref.shape
        tol_y, tol_grad = (1e-5, 1e-5) if case.dtype == "float32" else (1e-2, 5e-2)
        assert suite.rel_err(y, ref) < tol_y, (case.name, case.dtype)
        assert len(grads) == (len(wrt) if case.mode == "fwd+bwd" else 0)
        for g, r in zip(grads, torch.autograd.grad(ref, wrt, dy) if grads else ()):
            assert g.shape == r.shape and suite.rel_err(g, r) < tol_grad, (case.name, case.dtype)


@needs_op
def test_check_of_the_fastgan_reference_backend():
    cases = [c for c in _small_cases(backends=("torch",)) if c.params["layer"] in ("main.9", "main.12", "conv1")]
    assert len(cases) == 2 * (4 + 3 + 2)
    for case in cases:
        impls = case.setup(False)
        assert list(impls) == ["fastgan[torch]", "eager"]
        check = case.check(impls)
        assert "flag" not in check, (case.name, case.dtype, case.mode, check)
        stats = ["running_mean", "running_var"] if case.params["part"] == "block" else []
        assert list(check["errors"]["fastgan[torch]"]) == [*suite.outputs(case.params["part"], case.mode), *stats]
        assert check["dtypes"]["fastgan[torch]"] == case.dtype


def test_check_flags_wrong_outputs_gradients_and_statistics():
    fwd, fwd_bwd = [c for c in _small_cases() if c.params["layer"] == "main.6" and c.dtype == "float32"
                    and c.params["part"] == "block"]
    eager = fwd.setup(False)["eager"]
    b = suite._bundle(suite.scaled(suite.DCGAN64_G[2], SCALE), "float32", "cpu")
    rm, rv = b.running("fastgan[late]")

    def late():  # right y, but the running statistics take in those of the activated output, not of the conv's
        out = eager()
        rm.mul_(0.9).add_(0.1 * out.detach().mean((0, 2, 3)))
        rv.mul_(0.9).add_(0.1 * out.detach().var((0, 2, 3)))
        return out

    def raises():
        raise RuntimeError("no kernel\nsecond line")

    check = fwd.check(OrderedDict([("eager", eager), ("fastgan[scaled]", lambda: eager() * 1.01),
                                   ("fastgan[half]", lambda: eager().half()), ("fastgan[late]", late),
                                   ("fastgan[raises]", raises)]))
    flag = check["flag"]
    assert "fastgan[scaled] off: y" in flag and check["errors"]["fastgan[scaled]"]["y"] == pytest.approx(0.01, 1e-3)
    assert "fastgan[half] returned" in flag and "torch.float16" in flag
    assert "fastgan[late] off: running_mean" in flag and "running_var" in flag
    assert check["errors"]["fastgan[late]"]["y"] == 0
    assert "fastgan[raises] (RuntimeError: no kernel)" in flag
    right = fwd_bwd.setup(False)["eager"]

    def wrong_dweight():
        y, dx, dw, dbw, dbb = right()
        return y, dx, dw * 1.05, dbw, dbb

    check = fwd_bwd.check(OrderedDict([("eager", right), ("fastgan[dw]", wrong_dweight)]))
    assert check["failed"]["fastgan[dw]"].startswith("fastgan[dw] off: dweight error 0.05")
    assert "dx" not in check["failed"]["fastgan[dw]"]


def test_report_of_the_scaled_suite_on_the_cpu(tmp_path):
    backends = ("torch",) if _op_importable() else ()
    cases = [c for c in _small_cases(backends=backends, dtypes=("bfloat16",)) if c.params["layer"] in ("main.0",
                                                                                                        "dec.9")]
    assert len(cases) == 7
    report = runner.run(cases, tmp_path, quick=True, with_compile=False, command="test", log=lambda msg: None,
                        suites={"conv_transpose2d": suite.describe()})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for rec, case in zip(on_disk["cases"], cases):
        assert rec["status"] == "ok" and "flag" not in rec, rec.get("check")
        assert (rec["floor_bytes"], rec["floor_flops"], rec["peak_kind"]) == (case.floor_bytes, case.floor_flops,
                                                                             "bfloat16")
        assert rec["floor_us_at_peak"]["H100 SXM"] == pytest.approx(case.floor_flops / 989.4e12 * 1e6)
        eager = rec["impls"]["eager"]
        assert eager["tflops"] == pytest.approx(case.floor_flops / (eager["median_ms"] * 1e-3) / 1e12)
        if backends:
            assert rec["best_fastgan"] == "fastgan[torch]" and "pct_peak" not in rec
            assert rec["achieved_tflops"] == rec["impls"]["fastgan[torch]"]["tflops"]
            assert rec["pct_reference_rate"] == pytest.approx(100 * rec["achieved_tflops"] / eager["tflops"])
            assert [t["target"] for t in rec["targets"]] == sorted(TARGETS[rec["params"]["part"]] - {
                "x compile >= 1.1"})
    md = (tmp_path / "results.md").read_text()
    assert f"| conv_transpose2d | {cases[0].name} | bfloat16 | fwd |" in md and "TFLOP/s" in md
    assert report["cases"][0]["check"]["tolerance"] == suite.TOLERANCE["bfloat16"]


def test_compile_baseline_is_compiled_once_per_layer_and_dtype():
    fwd, fwd_bwd = [c for c in _small_cases(scale=64) if c.params["layer"] == "main.3" and c.dtype == "float32"
                    and c.params["part"] == "block"]
    impls = fwd.setup(True)
    b = suite._bundle(suite.scaled(suite.DCGAN64_G[1], 64), "float32", "cpu")
    compiled = b.compiled
    assert list(impls) == ["eager", "compile"] and not isinstance(compiled, Exception), compiled
    assert set(b.compile_s) == {"fwd"}
    check = fwd.check(impls)
    assert "flag" not in check and set(check["errors"]["compile"]) == {"y", "running_mean", "running_var"}, check
    impls = fwd_bwd.setup(True)
    assert b.compiled is compiled and set(b.compile_s) == {"fwd", "bwd"}
    check = fwd_bwd.check(impls)
    assert "flag" not in check and check["compile_s"].keys() == {"fwd", "bwd"}, check


@needs_op
def test_triton_kernels_through_the_suite(interpreter):
    cases = [c for c in suite.cases(device="cpu", scale=64, backends=("triton",))
             if c.params["layer"] == "main.3" or (c.params["layer"] == "conv1" and c.mode == "fwd")]
    assert len(cases) == 2 * 4 + 2
    for case in cases:
        impls = case.setup(False)
        assert not isinstance(impls["fastgan[triton]"], Exception), impls["fastgan[triton]"]
        check = case.check(impls)
        if case.dtype == "bfloat16" and case.params["part"] == "block" and case.mode == "fwd+bwd":
            # at 1/64 of the channels a channel's gradient sums 128 values of dy, and one ReLU that y's bfloat16
            # rounding flips moves it by ~15%: the suite's gradient tolerance is for the real shapes
            check["errors"]["fastgan[triton]"] = {k: v for k, v in check["errors"]["fastgan[triton]"].items()
                                                  if k in ("y", "running_mean", "running_var")}
            assert all(v < 0.02 for v in check["errors"]["fastgan[triton]"].values()), check
            continue
        assert "flag" not in check, (case.name, case.dtype, case.mode, check)


@pytest.mark.skipif(HAS_CUDA, reason="with a CUDA device the command would time the full-size cases")
def test_bench_command_without_a_gpu_reports_the_floors(tmp_path):
    args = ["bench", "--suite", "conv_transpose2d", "--ct-all-layers", "--dtype", "bfloat16", "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "fastgan", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["cases"]) == 5 * 4 + 2 * 3 + 2 + 2 * 4 and report["suites"]["conv_transpose2d"]["all_layers"]
    for rec in report["cases"]:
        assert rec["status"] == runner.NOT_RUN and rec["dtype"] == "bfloat16"
        assert rec["floor_us_at_peak"]["H200"] == pytest.approx(rec["floor_flops"] / 989.4e12 * 1e6)
    table = proc.stdout
    assert "floor GFLOP" in table and "FLOP floor us @H200" in table and "floor us @H100 SXM" in table
    first = report["cases"][0]
    assert f"| {first['name']} | bfloat16 | fwd | {first['floor_bytes'] / 1e6:.2f} | " \
           f"{first['floor_flops'] / 1e9:.2f} |" in table
    assert "datasheet dense peak" in (tmp_path / "results.md").read_text()


def test_a_gpu_record_gets_tflops_against_the_measured_peak():
    """What a GPU run derives and prints from the FLOP floor (the timings made up: none can run here)."""
    from fastgan.bench import environment, report

    case = next(c for c in suite.cases(device="cuda", dtypes=("bfloat16",)) if c.params["part"] == "block")
    rec = runner._record(case)
    rec["impls"] = OrderedDict([("fastgan[triton]", {"median_ms": 0.02}), ("eager", {"median_ms": 0.04}),
                                ("compile", {"median_ms": 0.03})])
    runner._derive(rec, 4000.0, ("H200", 4800.0), case, {"bfloat16": 800.0, "tf32": 400.0})
    tflops = case.floor_flops / 0.02e-3 / 1e12
    assert rec["achieved_tflops"] == pytest.approx(tflops) and rec["pct_peak"] == pytest.approx(100 * tflops / 800)
    assert rec["pct_reference_rate"] == pytest.approx(200) and rec["speedup_vs_compile"] == pytest.approx(1.5)
    rec["status"] = "ok"
    rep = {"cases": [rec], "env": {"gpu": {"name": "NVIDIA H200"}}, "dense_peak_tflops": {"bfloat16": 800.0},
           "datasheet_peak": dict(zip(("label", "tflops"), environment.datasheet_peak("NVIDIA H200")))}
    table = report.render_table(rep)
    assert "| % peak |" in table.splitlines()[0] and f"| {rec['pct_peak']:.0f} |" in table
    assert f"| {case.floor_flops / 1e9:.2f} |" in table  # floor GFLOP
    lines = report._peak_lines(rep)
    assert lines[0] == "- dense peak (measured: 8192^3 matrix product): bfloat16 800 TFLOP/s"
    assert lines[1].startswith("- datasheet dense peak (TFLOP/s): H200 bfloat16 989.4")
    assert environment.datasheet_peak("NVIDIA H100 80GB HBM3")[0] == "H100 SXM"
    assert environment.peak_kind("float32") == ("tf32" if torch.backends.cudnn.allow_tf32 else "float32")
