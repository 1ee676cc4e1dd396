"""The host-overhead suite: every op's eager host path timed with no-op kernels, and nothing left patched."""
import triton.runtime.interpreter
import triton.runtime.jit

from fastgan import _backend
from fastgan.bench import runner
from fastgan.bench.suites import host_overhead


def test_suite_times_every_call_on_both_backends_and_restores_what_it_patched(tmp_path, monkeypatch):
    monkeypatch.setattr(host_overhead, "REPS", (2, 5))
    before = (_backend.extension, _backend.unavailable_reason, triton.runtime.jit.JITFunction.run,
              triton.runtime.interpreter.InterpretedFunction.run)
    cases = host_overhead.cases()
    for case in cases:
        case.reps = {name: (2, 5) for name in case.reps}
    report = runner.run(cases, tmp_path, with_compile=False, log=lambda msg: None)
    assert len(report["cases"]) == len(host_overhead.CALLS) >= 9
    for rec in report["cases"]:
        assert rec["status"] == "ok", rec
        for backend in host_overhead.BACKENDS:
            assert rec["impls"][f"fastgan[{backend}]"]["us_per_call"] > 0, rec
    after = (_backend.extension, _backend.unavailable_reason, triton.runtime.jit.JITFunction.run,
             triton.runtime.interpreter.InterpretedFunction.run)
    assert after == before
