"""The benchmark runner behind ``fastgan bench``: cases, their correctness check, their timing, the time budget.

Each suite (:mod:`fastgan.bench.suites`) yields :class:`Case` objects; every case is timed for each of its
implementations (fastgan backends, eager PyTorch, ``torch.compile`` of the same eager code) on one device in one
run. On CUDA, timing is ``triton.testing.do_bench`` (CUDA events, L2 flushed between runs, median); on the CPU,
the median of ``time.perf_counter`` around repeated calls. A case states the fewest bytes the fused version must
move (its floor), so the report gives achieved GB/s against a measured device-to-device copy and against the
datasheet bandwidth; a compute-bound case also states its fewest flops (``floor_flops``), so the report gives
TFLOP/s against the device's dense peak, measured with a matrix product of the case's dtype. Without a CUDA device,
GPU cases are not timed; the report then gives the floor times at datasheet bandwidths (and at datasheet dense
peaks, for a FLOP floor), to judge a later GPU run against.

Before a case is timed, its ``check`` calls every implementation once on the case's inputs and compares the results
with a reference (:func:`fastgan.bench.suites.common.compare_with_reference`). An implementation the check names
in ``"failed"`` (wrong result, wrong dtype or shape, or an error) is recorded as failed, with the reason, and not
timed; the check's ``"flag"`` becomes the case's note.

Writes ``results.md``, ``results.json`` and ``results.png`` into the output folder (rewritten after every case,
so an interrupted run leaves what it measured) and prints the Markdown table last.
"""
from __future__ import annotations

import datetime
import os
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .environment import (
    DATASHEET_GBS,
    datasheet_bandwidth,
    datasheet_peak,
    environment,
    floor_us_at_datasheet,
    floor_us_at_peak,
    measure_copy_bandwidth,
    measure_dense_peak,
    peak_kind,
)
from .report import render_table, write, write_chart

NOT_RUN = "not run: no CUDA device"
SKIPPED = "skipped (time budget)"
DTYPES = ("float32", "bfloat16")


class Unavailable(Exception):
    """Stands in a case's implementations for a backend that cannot run here; its message says why."""


@dataclass
class Case:
    """One benchmark: a workload, its memory floor and its implementations.

    ``impls`` maps implementation name to a zero-argument callable, already set up; ``setup(with_compile)``, when
    given, returns that mapping instead (called by the runner just before the case is timed, so that tensors are
    made and functions compiled only for the cases that run; its time is not measured). A value that is an
    exception (:class:`Unavailable`, or the error that compiling raised) is recorded instead of timed.
    """

    suite: str
    name: str
    dtype: str
    mode: str  # "fwd" or "fwd+bwd"
    floor_bytes: int  # the fewest bytes the fused version must move
    floor_desc: str  # how floor_bytes is counted, one line
    impls: "OrderedDict[str, Callable | Exception]" = field(default_factory=OrderedDict)
    setup: Callable[[bool], "OrderedDict[str, Callable | Exception]"] | None = None
    device: str = "cuda"
    params: dict = field(default_factory=dict)  # suite-specific facts, copied into the JSON
    # Optional, for cases that are not "fastgan vs eager and compile" (defaults: as for the spectral-norm suite):
    baselines: tuple = ("eager", "compile")  # implementations the fastgan speedups are computed against
    primary: str | None = None  # the fastgan implementation the speedups refer to (default: the fastest)
    reps: dict = field(default_factory=dict)  # name -> (warm-up calls, timed calls) for CPU timing
    flops: dict = field(default_factory=dict)  # name -> useful flops per call: TFLOP/s in the report
    floor_flops: int | None = None  # the fewest flops (dense work); every implementation's flops unless in flops
    rate_reference: str | None = None  # implementation whose TFLOP/s the primary's is compared with
    # check(impls) -> dict, once before timing: "failed" maps the implementations not to time to why; "flag", the
    # case's note
    check: Callable | None = None
    finish: Callable | None = None  # finish(rec), after the derived numbers: e.g. records met targets
    skip: str | None = None  # a status to record instead of running the case (why it is not run)


def first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (only the message for :class:`Unavailable`)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {line}" if not isinstance(e, Unavailable) else line


# ---------------------------------------------------------------- timing


def time_ms(fn: Callable, device: str, quick: bool = False, reps: tuple[int, int] | None = None) -> float:
    """Median milliseconds per call of ``fn`` on ``device`` ('cuda': CUDA events via do_bench; else wall clock).

    ``reps`` = (warm-up calls, timed calls) replaces the CPU default of (1, 20), or (1, 5) when quick.
    """
    if device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=5 if quick else 25, rep=20 if quick else 100,
                                             return_mode="median"))
    warmup, timed = reps if reps is not None else (1, 5 if quick else 20)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(timed):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def warm_compile_workers() -> None:
    """Start torch.compile's compile workers and wait until they are up.

    Otherwise the first compile runs in this process while the workers start in the background, and their start
    (each imports torch) competes for the CPU with the timings that follow it.
    """
    try:
        import torch._inductor.config as inductor_config
        from torch._inductor.async_compile import AsyncCompile

        inductor_config.quiesce_async_compile_pool = False  # keep them up between the cases' compiles
        AsyncCompile.warm_pool()
        AsyncCompile.wait_pool_ready()
    except Exception:  # noqa: BLE001 - private API that moves between torch versions; only a precaution
        pass


def _record(case: Case) -> dict:
    rec = {"suite": case.suite, "name": case.name, "dtype": case.dtype, "mode": case.mode, "device": case.device,
           "floor_bytes": case.floor_bytes, "floor_desc": case.floor_desc,
           "floor_us_at_datasheet": floor_us_at_datasheet(case.floor_bytes),
           "params": dict(case.params), "status": None, "impls": OrderedDict()}
    if case.floor_flops:
        rec.update(floor_flops=case.floor_flops, peak_kind=peak_kind(case.dtype),
                   floor_us_at_peak=floor_us_at_peak(case.floor_flops, case.dtype))
    return rec


def _run_case(case: Case, rec: dict, quick: bool, with_compile: bool) -> None:
    try:
        impls = case.setup(with_compile) if case.setup is not None else case.impls
    except Exception as e:  # noqa: BLE001 - a case that cannot be set up is reported, the run goes on
        rec["status"] = f"error: {first_line(e)}"
        return
    failed = {}
    if case.check is not None:
        try:
            rec["check"] = case.check(impls)
        except Exception as e:  # noqa: BLE001 - a check that cannot run flags the case; the timings still run
            rec["check"] = {"error": first_line(e), "flag": f"check failed: {first_line(e)}"}
        if rec["check"].get("flag"):
            rec["flag"] = rec["check"]["flag"]
        failed = rec["check"].get("failed") or {}
        if failed and not rec.get("flag"):
            rec["flag"] = "; ".join(f"{n} failed the check: {why}" for n, why in failed.items())
    for name, fn in impls.items():
        if name == "compile" and not with_compile:
            continue
        if name in failed:  # a wrong result is not timed: its time would compare nothing
            rec["impls"][name] = {"failed": failed[name]}
        elif isinstance(fn, Unavailable):
            rec["impls"][name] = {"unavailable": first_line(fn)}
        elif isinstance(fn, BaseException):
            rec["impls"][name] = {"error": first_line(fn)}
        else:
            try:
                reps = case.reps.get(name) if case.device != "cuda" else None
                rec["impls"][name] = {"median_ms": time_ms(fn, case.device, quick, reps)}
                if reps is not None:
                    rec["impls"][name]["reps"] = {"warmup": reps[0], "timed": reps[1]}
            except Exception as e:  # noqa: BLE001 - recorded, never aborts the run
                rec["impls"][name] = {"error": first_line(e)}
                if case.device == "cuda":
                    try:
                        torch.cuda.empty_cache()  # after an out-of-memory error, give the next ones a chance
                    except Exception:  # noqa: BLE001 - the context may be broken; the next timings will say so
                        pass
    rec["status"] = "ok"


def _derive(rec: dict, copy_gbs: float | None, datasheet: tuple[str, float] | None, case: Case | None = None,
            peaks: dict | None = None) -> None:
    ms = {n: v["median_ms"] for n, v in rec["impls"].items() if "median_ms" in v}
    if case is not None:
        for n, t in ms.items():
            flops = case.flops.get(n) or case.floor_flops
            if flops:
                rec["impls"][n]["tflops"] = flops / (t * 1e-3) / 1e12
    fast = {n: t for n, t in ms.items() if n.startswith("fastgan")}
    if not fast:
        return
    best = case.primary if case is not None and case.primary in fast else min(fast, key=fast.get)
    rec["best_fastgan"] = best
    for base in (case.baselines if case is not None else ("eager", "compile")):
        if base in ms:
            rec[f"speedup_vs_{base}"] = ms[base] / fast[best]
    gbs = rec["floor_bytes"] / (fast[best] * 1e-3) / 1e9
    rec["achieved_gbs"] = gbs
    gpu = case is None or case.device == "cuda"  # the bandwidths above are the GPU's
    if copy_gbs and gpu:
        rec["pct_copy_bw"] = 100 * gbs / copy_gbs
    if datasheet and gpu:
        rec["pct_datasheet_bw"] = 100 * gbs / datasheet[1]
    if case is not None:
        tflops = rec["impls"][best].get("tflops")
        ref = rec["impls"].get(case.rate_reference or "", {}).get("tflops")
        if tflops:
            rec["achieved_tflops"] = tflops
            peak = (peaks or {}).get(rec.get("peak_kind"))
            if peak and gpu:
                rec["pct_peak"] = 100 * tflops / peak
        if tflops and ref:
            rec["reference_tflops"] = ref
            rec["pct_reference_rate"] = 100 * tflops / ref


def run(cases: list[Case], out_dir: str | os.PathLike, *, budget_s: float = 420.0, quick: bool = False,
        with_compile: bool = True, command: str = "", suites: dict | None = None, log=None) -> dict:
    """Time ``cases``, write results.{md,json,png} into ``out_dir`` and return the report (a dict)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    cuda = env["gpu"] is not None
    datasheet = datasheet_bandwidth(env["gpu"]["name"]) if cuda else None
    report = {
        "schema": 1, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command, "env": env, "copy_bandwidth_gbs": None,
        "datasheet": {"label": datasheet[0], "gbs": datasheet[1]} if datasheet else None,
        "datasheet_table": [{"label": label, "pattern": pat, "gbs": gbs} for label, pat, gbs in DATASHEET_GBS],
        "options": {"budget_s": budget_s, "quick": quick, "compile": with_compile},
        "suites": suites or {}, "cases": [], "chart": None,
    }
    if cuda and any(c.device == "cuda" for c in cases):
        try:
            report["copy_bandwidth_gbs"] = measure_copy_bandwidth(quick)
            log(f"device-to-device copy: {report['copy_bandwidth_gbs']:.0f} GB/s")
        except Exception as e:  # noqa: BLE001
            report["copy_bandwidth_error"] = first_line(e)
    kinds = sorted({peak_kind(c.dtype) for c in cases if c.floor_flops and c.device == "cuda"})
    if cuda and kinds:
        report["datasheet_peak"] = dict(zip(("label", "tflops"), datasheet_peak(env["gpu"]["name"]) or ()))
        report["dense_peak_tflops"] = {}
        for kind in kinds:
            try:
                report["dense_peak_tflops"][kind] = measure_dense_peak(kind, quick)
                log(f"dense {kind} peak (8192^3 matrix product): {report['dense_peak_tflops'][kind]:.0f} TFLOP/s")
            except Exception as e:  # noqa: BLE001
                report.setdefault("dense_peak_error", {})[kind] = first_line(e)
    if with_compile and any("compile" in c.baselines and (c.device != "cuda" or cuda) for c in cases):
        warm_compile_workers()
    for i, case in enumerate(cases, 1):
        rec = _record(case)
        report["cases"].append(rec)
        if case.skip:
            rec["status"] = case.skip
        elif case.device == "cuda" and not cuda:
            rec["status"] = NOT_RUN
        elif time.monotonic() - start > budget_s:
            rec["status"] = SKIPPED
        else:
            t = time.monotonic()
            _run_case(case, rec, quick, with_compile)
            _derive(rec, report["copy_bandwidth_gbs"], datasheet, case, report.get("dense_peak_tflops"))
            if case.finish is not None and rec["status"] == "ok":
                try:
                    case.finish(rec)
                except Exception as e:  # noqa: BLE001 - recorded, never aborts the run
                    rec["flag"] = f"finish failed: {first_line(e)}"
            times = ", ".join(f"{n} {v['median_ms']:.4g} ms" if "median_ms" in v else
                              f"{n} failed the check" if "failed" in v else f"{n} -"
                              for n, v in rec["impls"].items())
            log(f"[{i}/{len(cases)}] {case.suite} {case.name} {case.dtype} {case.mode}: {times or rec['status']} "
                f"({time.monotonic() - t:.0f} s)")
        write(report, out)
    report["chart"] = write_chart(report, out / "results.png")
    report["elapsed_s"] = round(time.monotonic() - start, 1)
    write(report, out)
    print(render_table(report))
    return report
