"""The correctness check that runs before a case is timed: every implementation against the eager reference, on the
case's own inputs; one that is off is reported as failed, with its error, and not timed. On the CPU, small shapes."""
import ast
import dataclasses
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from fastgan.bench import runner
from fastgan.bench.suites import SUITES, cond_batch_norm, spectral_norm

ROOT = Path(__file__).resolve().parents[1]
TINY = {"tiny D": [(8, 3, 3, 3), (16, 8, 4, 4), (1, 32), (10, 16)]}


def _sn_cases(**kw):
    return spectral_norm.cases(device="cpu", backends=("torch",), weight_sets=TINY, **kw)


def _with_impl(case, name, make):
    """The case with one more implementation, ``make(impls)`` (given the case's own, set up)."""
    def setup(with_compile):
        impls = case.setup(with_compile)
        impls[name] = make(impls)
        return impls
    return dataclasses.replace(case, setup=setup)


def test_the_spectral_norm_check_passes_fastgans_reference_backend():
    cases = _sn_cases()
    assert [(c.params["op"], c.dtype, c.mode) for c in cases] == [
        (op, dt, mode) for dt in ("float32", "bfloat16")
        for op, mode in (("power_iteration", "fwd"), ("spectral_normalize", "fwd"), ("spectral_normalize", "fwd+bwd"))]
    for case in cases:
        impls = case.setup(False)
        assert list(impls) == ["fastgan[torch]", "eager"]
        check = case.check(impls)
        assert "failed" not in check and "flag" not in check, (case.name, case.dtype, case.mode, check)
        errs = check["errors"]["fastgan[torch]"]
        outputs = {"power_iteration": ["sigma"], "fwd": ["W/sigma"], "fwd+bwd": ["W/sigma", "dW"]}
        assert list(errs) == outputs["power_iteration" if case.params["op"] == "power_iteration" else case.mode] \
            + ["u", "v"]
        assert max(errs.values()) <= (1e-6 if case.dtype == "float32" else 1e-2), errs


@pytest.mark.parametrize("op", ["power_iteration", "spectral_normalize"])
def test_a_wrong_spectral_norm_implementation_is_reported_failed_and_not_timed(tmp_path, op):
    case = next(c for c in _sn_cases(dtypes=("float32",)) if c.params["op"] == op and c.mode == "fwd")
    calls = []

    def make(impls):
        right = impls["fastgan[torch]"]

        def wrong():  # the right u and v, a result 3% too large
            calls.append(1)
            out = right()
            return out * 1.03 if op == "power_iteration" else [w * 1.03 for w in out]
        return wrong

    report = runner.run([_with_impl(case, "fastgan[wrong]", make)], tmp_path, quick=True, with_compile=False,
                        log=lambda msg: None)
    rec = report["cases"][0]
    assert len(calls) == 1  # by the check only
    output = "sigma" if op == "power_iteration" else "W/sigma"
    assert rec["impls"]["fastgan[wrong]"] == {"failed": rec["check"]["failed"]["fastgan[wrong]"]}
    assert rec["check"]["errors"]["fastgan[wrong]"][output] == pytest.approx(0.03, rel=1e-3)
    assert f"fastgan[wrong] off: {output} error 0.03 > 0.0001" in rec["flag"]
    assert rec["impls"]["fastgan[torch]"]["median_ms"] > 0 and rec["impls"]["eager"]["median_ms"] > 0
    assert rec["best_fastgan"] == "fastgan[torch]"
    md = (tmp_path / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| spectral_norm | {case.name} |"))
    assert "| failed |" in row and "fastgan[wrong] off" in row


def test_a_spectral_norm_implementation_that_leaves_wrong_vectors_fails():
    case = next(c for c in _sn_cases(dtypes=("bfloat16",)) if c.params["op"] == "spectral_normalize"
                and c.mode == "fwd+bwd")
    impls = case.setup(False)
    right = impls["fastgan[torch]"]
    b = spectral_norm._bundle("tiny D", tuple(map(tuple, TINY["tiny D"])), "bfloat16", "cpu", "normalize")

    def flipped_v():  # right results, but v left with its sign flipped
        out = right()
        for v in b.vs:
            v.neg_()
        return out

    impls["fastgan[flipped_v]"] = flipped_v
    check = case.check(impls)
    assert set(check["failed"]) == {"fastgan[flipped_v]"}
    assert "fastgan[flipped_v] off: v error 2 > 0.02" in check["flag"] and "u error" not in check["flag"]
    assert check["errors"]["fastgan[flipped_v]"]["W/sigma"] <= 1e-2


def test_a_wrong_cond_batch_norm_implementation_is_reported_failed_and_not_timed(tmp_path):
    case = next(c for c in cond_batch_norm.cases(device="cpu", scale=32, backends=())
                if c.params["affine"] == "per-sample" and c.dtype == "float32" and c.mode == "fwd+bwd")
    calls = []

    def make(impls):
        eager = impls["eager"]

        def wrong():  # right y, dx off by 2%
            calls.append(1)
            y, dx, dw, db = eager()
            return y, dx * 1.02, dw, db
        return wrong

    report = runner.run([_with_impl(case, "fastgan[wrong]", make)], tmp_path, quick=True, with_compile=False,
                        log=lambda msg: None)
    rec = report["cases"][0]
    assert len(calls) == 1
    assert set(rec["impls"]["fastgan[wrong]"]) == {"failed"} and "eager" in rec["impls"]
    assert "median_ms" in rec["impls"]["eager"]
    assert "fastgan[wrong] off: dx error 0.02 > 0.0001" in rec["flag"]


def test_an_implementation_that_raises_in_the_check_is_not_timed(tmp_path):
    def raises():
        raise RuntimeError("no kernel\nsecond line")

    case = _with_impl(_sn_cases(dtypes=("float32",))[0], "fastgan[raises]", lambda impls: raises)
    rec = runner.run([case], tmp_path, quick=True, with_compile=False, log=lambda msg: None)["cases"][0]
    assert rec["impls"]["fastgan[raises]"] == {"failed": "RuntimeError: no kernel"}
    assert "failed: fastgan[raises] (RuntimeError: no kernel)" in rec["flag"]


def _imports(path: Path, package: str) -> set[str]:
    """The fastgan modules a file imports (relative imports resolved; inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("fastgan")}


def test_the_bench_modules_import_each_other_without_a_cycle():
    files = {p: ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "fastgan").rglob("*.py")
             if "bench" in p.parts or p.name == "cli.py"}
    names = {m.removesuffix(".__init__"): p for p, m in files.items()}
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in _imports(path, package) if m in names and m != name}
    graph["fastgan.bench.suites"] |= {f"fastgan.bench.suites.{s}" for s in SUITES}  # load(name): importlib
    assert "fastgan.bench.suites.common" in graph and graph["fastgan.bench"] == set()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(stack + [node, dep])
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_failed_implementations_without_a_flag_still_name_the_error(tmp_path):
    """A check that names failures but no flag still gives the case a note naming them."""
    case = runner.Case("demo", "made up", "float32", "fwd", 8, "eight bytes", device="cpu",
                       impls=OrderedDict([("eager", lambda: torch.ones(2)), ("fastgan[x]", lambda: torch.ones(2))]),
                       check=lambda impls: {"failed": {"fastgan[x]": "y error 1 > 0.1"}})
    rec = runner.run([case], tmp_path, quick=True, with_compile=False, log=lambda msg: None)["cases"][0]
    assert rec["impls"]["fastgan[x]"] == {"failed": "y error 1 > 0.1"}
    assert rec["flag"] == "fastgan[x] failed the check: y error 1 > 0.1"
