"""The cond_batch_norm benchmark suite on the CPU, at shapes scaled down (the GPU timings are not run here)."""
import argparse
import json
import math
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from fastgan.bench import command, runner
from fastgan.bench.suites import SUITES, load
from fastgan.bench.suites import cond_batch_norm as suite

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
SCALE = 32  # batch and channels divided by this: (4, 16, 4, 4) ... (8, 3, 128, 128)
EPS, MOMENTUM = 1e-5, 0.1
ITEMSIZE = {"float32": 4, "bfloat16": 2}

DCGAN = {(128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32)}
BIGGAN = [(256, 1536, 4, 4), (256, 1536, 8, 8), (256, 768, 16, 16), (256, 384, 32, 32), (256, 192, 64, 64),
          (256, 96, 128, 128)]


def _op_importable() -> bool:
    try:
        from fastgan.ops.cond_batch_norm import conditional_batch_norm  # noqa: F401
    except ImportError:
        return False
    return True


needs_op = pytest.mark.skipif(not _op_importable(), reason="fastgan.ops.cond_batch_norm is not importable")


def _small_cases(**kw):
    kw.setdefault("backends", ())
    return suite.cases(device="cpu", scale=SCALE, **kw)


def _bundle(case):
    p = case.params
    return suite._bundle(tuple(p["shape"]), p["affine"] == "per-sample", case.dtype, case.device)


def _reference(case):
    """BN (training) + affine + ReLU in float64, written out: y, the gradients w.r.t. x, weight and bias for the
    suite's dy, and the running statistics after one update from (0, 1) (unbiased variance)."""
    p = case.params
    t = suite.inputs(tuple(p["shape"]), p["affine"] == "per-sample", case.dtype, "cpu")
    x, w, b = (t[k].double().requires_grad_() for k in ("x", "weight", "bias"))
    n, _, h, wd = x.shape
    count = n * h * wd
    mean = x.sum((0, 2, 3)) / count
    centred = x - mean[None, :, None, None]
    var = (centred * centred).sum((0, 2, 3)) / count
    xhat = centred / torch.sqrt(var + EPS)[None, :, None, None]
    if p["affine"] == "per-sample":
        z = xhat * w[:, :, None, None] + b[:, :, None, None]
    else:
        z = xhat * w[None, :, None, None] + b[None, :, None, None]
    y = torch.where(z > 0, z, torch.zeros_like(z))
    grads = torch.autograd.grad(y, (x, w, b), t["dy"].double())
    running_mean = MOMENTUM * mean.detach()
    running_var = (1 - MOMENTUM) + MOMENTUM * var.detach() * count / (count - 1)
    return y.detach(), grads, (running_mean, running_var)


def test_the_suite_is_registered():
    assert "cond_batch_norm" in SUITES
    assert load("cond_batch_norm") is suite
    assert suite.SUITE == "cond_batch_norm"
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--suite", "cond_batch_norm", "--cbn-scale", "8", "--cbn-all-shapes"])
    assert args.suite == ["cond_batch_norm"] and args.cbn_scale == 8 and args.cbn_all_shapes
    assert "cond_batch_norm" in parser.format_help()


def test_cases_are_the_generator_shapes_and_their_floors():
    cases = suite.cases(device="cuda")
    shapes = [tuple(c.params["shape"]) for c in cases]
    assert set(shapes) >= DCGAN
    assert {s for s in shapes if s[0] == 256} == {BIGGAN[0], BIGGAN[2], BIGGAN[5]}  # smallest, middle, largest
    assert shapes[0] == BIGGAN[5]  # the largest first
    assert len(cases) == 7 * 2 * 2
    assert {s for c in suite.cases(device="cuda", all_shapes=True) for s in [tuple(c.params["shape"])]} \
        == DCGAN | set(BIGGAN)
    for c in cases:
        shape = tuple(c.params["shape"])
        assert c.suite == "cond_batch_norm" and c.device == "cuda"
        assert c.params["affine"] == ("per-sample" if shape in BIGGAN else "per-channel")
        assert c.params["model"] == ("BigGAN-128 G" if shape in BIGGAN else "DCGAN-64 G")
        x_bytes = shape[0] * shape[1] * shape[2] * shape[3] * ITEMSIZE[c.dtype]
        assert c.floor_bytes == {"fwd": 3, "fwd+bwd": 8}[c.mode] * x_bytes, c.name
        assert c.params["activation_bytes"] == x_bytes
        assert ("3 |x|" if c.mode == "fwd" else "8 |x|") in c.floor_desc
        assert set(c.params["targets"]) == {"x eager >= 2.5", "x compile >= 1.2", "% copy BW >= 80"}
    # (256, 96, 128, 128): 402,653,184 elements
    assert cases[0].dtype == "float32" and cases[0].mode == "fwd" and cases[0].floor_bytes == 4_831_838_208
    # the fwd and fwd+bwd cases of a shape and dtype are consecutive (they share one compiled function)
    keys = [(tuple(c.params["shape"]), c.dtype) for c in cases]
    assert keys[::2] == keys[1::2] and len(set(keys)) == len(keys) // 2
    assert [c.mode for c in cases[:2]] == ["fwd", "fwd+bwd"]
    assert {c.dtype for c in suite.cases(device="cuda", dtypes=("bfloat16",))} == {"bfloat16"}


def test_scaled_cases_keep_the_spatial_sizes():
    small = _small_cases()
    full = suite.cases(device="cuda")
    for s, f in zip(small, full):
        (n, c, h, w), (fn, fc, fh, fw) = s.params["shape"], f.params["shape"]
        assert (h, w) == (fh, fw) and n == max(2, fn // SCALE) and c == max(1, fc // SCALE)
        assert s.floor_bytes == {"fwd": 3, "fwd+bwd": 8}[s.mode] * math.prod(s.params["shape"]) * ITEMSIZE[s.dtype]


def test_the_eager_baselines_match_a_float64_reference():
    for case in _small_cases():
        impls = case.setup(False)
        assert list(impls) == ["eager"]
        b = _bundle(case)
        b.reset_stats()
        out = impls["eager"]()
        y, grads = (out, ()) if case.mode == "fwd" else (out[0], out[1:])
        ref_y, ref_grads, ref_stats = _reference(case)
        assert y.dtype == getattr(torch, case.dtype) and y.shape == ref_y.shape
        # bfloat16: eager rounds every intermediate (measured: y 0.2-0.4%, BigGAN gradients up to 1.8%)
        tol_y, tol_grad = (1e-5, 1e-5) if case.dtype == "float32" else (1e-2, 3e-2)
        assert suite.rel_err(y, ref_y) < tol_y, case.name
        for name, g, r in zip(("dx", "dweight", "dbias"), grads, ref_grads):
            assert g.shape == r.shape and suite.rel_err(g, r) < tol_grad, (case.name, case.dtype, name)
        rm, rv = b.stats["eager"]
        for got, want in zip(suite.batch_stats(rm, rv), suite.batch_stats(*ref_stats)):
            assert suite.rel_err(got, want) < 1e-5, (case.name, case.dtype)


@needs_op
def test_check_of_the_fastgan_reference_backend():
    for case in _small_cases(backends=("torch",)):
        impls = case.setup(False)
        assert list(impls) == ["fastgan[torch]", "eager"]
        check = case.check(impls)
        assert "flag" not in check, (case.name, case.dtype, case.mode, check)
        errs = check["errors"]["fastgan[torch]"]
        assert list(errs) == [*suite.OUTPUTS[case.mode], "running_mean", "running_var"]
        assert check["dtypes"]["fastgan[torch]"] == case.dtype


def test_check_flags_wrong_outputs_and_statistics():
    case = next(c for c in _small_cases() if c.params["affine"] == "per-channel" and c.dtype == "float32"
                and c.mode == "fwd")
    impls = case.setup(False)
    b = _bundle(case)
    eager = impls["eager"]
    rm, rv = b.running("fastgan[biased]")

    def biased():  # right y, but the running variance takes in the biased batch variance
        x = b.x.detach()
        var = x.var((0, 2, 3), unbiased=False)
        rm.mul_(1 - MOMENTUM).add_(MOMENTUM * x.mean((0, 2, 3)))
        rv.mul_(1 - MOMENTUM).add_(MOMENTUM * var)
        return suite.bn_relu(b.x, b.weight, b.bias, torch.zeros_like(rm), torch.ones_like(rv))

    def raises():
        raise RuntimeError("no kernel\nsecond line")

    bad = OrderedDict([("eager", eager), ("fastgan[scaled]", lambda: eager() * 1.01),
                       ("fastgan[half]", lambda: eager().half()), ("fastgan[biased]", biased),
                       ("fastgan[raises]", raises)])
    check = case.check(bad)
    flag = check["flag"]
    assert "fastgan[scaled] off: y" in flag
    assert "fastgan[half] returned" in flag and "torch.float16" in flag
    assert "fastgan[biased] off: running_var" in flag and "running_mean" not in flag
    assert "fastgan[raises] (RuntimeError: no kernel)" in flag
    assert check["errors"]["fastgan[scaled]"]["y"] == pytest.approx(0.01, rel=1e-3)
    assert check["errors"]["fastgan[biased]"]["y"] < 1e-6


def test_report_of_the_scaled_suite_on_the_cpu(tmp_path):
    backends = ("torch",) if _op_importable() else ()
    cases = [c for c in _small_cases(backends=backends) if c.params["shape"][1] in (16, 3)]  # DCGAN 4x4, BigGAN 128
    assert len(cases) == 8
    report = runner.run(cases, tmp_path, quick=True, with_compile=False, command="test", log=lambda msg: None,
                       suites={"cond_batch_norm": suite.describe()})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert [r["status"] for r in on_disk["cases"]] == ["ok"] * len(cases)
    for rec, case in zip(on_disk["cases"], cases):
        assert "flag" not in rec, rec.get("check")
        assert rec["floor_bytes"] == case.floor_bytes
        assert rec["floor_us_at_datasheet"]["H100 SXM"] == pytest.approx(case.floor_bytes / 3350e9 * 1e6)
        assert rec["impls"]["eager"]["median_ms"] > 0
        assert rec["params"]["shape"] == case.params["shape"]
        if backends:
            assert rec["best_fastgan"] == "fastgan[torch]"
            assert rec["speedup_vs_eager"] == pytest.approx(
                rec["impls"]["eager"]["median_ms"] / rec["impls"]["fastgan[torch]"]["median_ms"])
            assert rec["achieved_gbs"] == pytest.approx(
                case.floor_bytes / (rec["impls"]["fastgan[torch]"]["median_ms"] * 1e-3) / 1e9)
            assert [t["target"] for t in rec["targets"]] == ["x eager >= 2.5"]  # no compile, no GPU bandwidth
            assert rec["targets"][0]["met"] == (rec["speedup_vs_eager"] >= 2.5)
            assert "pct_copy_bw" not in rec
    md = (tmp_path / "results.md").read_text()
    assert f"| cond_batch_norm | {cases[0].name} | float32 | fwd |" in md
    assert suite.FWD_DESC in md and suite.FWD_BWD_DESC in md
    assert report["cases"][0]["check"]["tolerance"] == suite.TOLERANCE["float32"]


def test_compile_baseline_is_compiled_once_per_shape_and_dtype():
    fwd, fwd_bwd = [c for c in _small_cases() if tuple(c.params["shape"]) == (4, 16, 4, 4)
                    and c.dtype == "float32"]
    impls = fwd.setup(True)
    b = _bundle(fwd)
    compiled = b.compiled
    assert list(impls) == ["eager", "compile"] and not isinstance(compiled, Exception), compiled
    assert set(b.compile_s) == {"fwd"}
    check = fwd.check(impls)
    assert "flag" not in check, check
    assert set(check["errors"]["compile"]) == {"y", "running_mean", "running_var"}
    impls = fwd_bwd.setup(True)
    assert _bundle(fwd_bwd) is b and b.compiled is compiled  # the fwd case's compiled function, with its backward
    assert set(b.compile_s) == {"fwd", "bwd"}
    check = fwd_bwd.check(impls)
    assert "flag" not in check, check
    assert check["compile_s"].keys() == {"fwd", "bwd"}


@needs_op
def test_triton_kernels_through_the_suite(interpreter):
    from fastgan import _backend
    from fastgan.ops import cond_batch_norm as op

    if "triton" not in _backend._OPS.get(getattr(op, "OP", "cond_batch_norm"), ()):
        pytest.skip("the op has no triton backend")
    cases = [c for c in suite.cases(device="cpu", scale=64, backends=("triton",))
             if tuple(c.params["shape"]) in ((2, 8, 4, 4), (4, 24, 4, 4))]
    assert len(cases) == 8
    for case in cases:
        impls = case.setup(False)
        assert not isinstance(impls["fastgan[triton]"], Exception), impls["fastgan[triton]"]
        check = case.check(impls)
        assert "flag" not in check, (case.name, case.dtype, case.mode, check)


@pytest.mark.skipif(HAS_CUDA, reason="with a CUDA device the command would time the full-size cases")
def test_bench_command_without_a_gpu_reports_the_floors(tmp_path):
    args = ["bench", "--suite", "cond_batch_norm", "--cbn-all-shapes", "--dtype", "bfloat16", "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "fastgan", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["cases"]) == 10 * 2
    assert report["suites"]["cond_batch_norm"]["all_shapes"] is True
    for rec in report["cases"]:
        assert rec["status"] == runner.NOT_RUN and rec["dtype"] == "bfloat16"
        n, c, h, w = rec["params"]["shape"]
        assert rec["floor_bytes"] == {"fwd": 3, "fwd+bwd": 8}[rec["mode"]] * n * c * h * w * 2
    table = proc.stdout
    assert "floor us @H100 SXM" in table and "floor us @H200" in table
    largest = report["cases"][0]
    assert largest["params"]["shape"] == [256, 96, 128, 128]
    assert f"| {largest['name']} | bfloat16 | fwd | {largest['floor_bytes'] / 1e6:.2f} |" in table
