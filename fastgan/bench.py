"""The benchmark runner behind ``fastgan bench``.

Each suite (``fastgan.bench_suites``) yields :class:`Case` objects; every case is timed for each of its
implementations (fastgan backends, eager PyTorch, ``torch.compile`` of the same eager code) on one device in one
run. On CUDA, timing is ``triton.testing.do_bench`` (CUDA events, L2 flushed between runs, median); on the CPU,
the median of ``time.perf_counter`` around repeated calls. A case states the fewest bytes the fused version must
move (its floor), so the report gives achieved GB/s against a measured device-to-device copy and against the
datasheet bandwidth. Without a CUDA device, GPU cases are not timed; the report then gives the floor times at
datasheet bandwidths, to judge a later GPU run against.

Writes ``results.md``, ``results.json`` and ``results.png`` into the output folder (rewritten after every case,
so an interrupted run leaves what it measured) and prints the Markdown table last.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

IMPL_ORDER = ("fastgan[cuda]", "fastgan[triton]", "eager", "compile")
NOT_RUN = "not run: no CUDA device"
SKIPPED = "skipped (time budget)"
DTYPES = ("float32", "bfloat16")

# Datasheet HBM bandwidth in GB/s, for reference only (the roofline used is the measured copy). A row applies when
# its pattern matches the lower-cased device name; the first match wins. The H100 SXM calls itself
# "NVIDIA H100 80GB HBM3".
DATASHEET_GBS = [
    ("H200", r"h200", 4800.0),
    ("H100 PCIe", r"h100.*pcie", 2000.0),
    ("H100 SXM", r"h100.*(sxm|hbm3)", 3350.0),
    ("A100 80GB", r"a100.*80gb", 2000.0),
    ("A100 40GB", r"a100.*40gb", 1550.0),
]
FLOOR_REFERENCES = ("H100 SXM", "H200")  # floor times given for these in every report


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
    rate_reference: str | None = None  # implementation whose TFLOP/s the primary's is compared with
    check: Callable | None = None  # check(impls) -> dict, once before timing; a "flag" entry marks the case
    finish: Callable | None = None  # finish(rec), after the derived numbers: e.g. records met targets
    skip: str | None = None  # a status to record instead of running the case (why it is not run)


def datasheet_bandwidth(device_name: str | None) -> tuple[str, float] | None:
    """(label, GB/s) of the datasheet row matching ``device_name``, or None."""
    if not device_name:
        return None
    low = device_name.lower()
    for label, pattern, gbs in DATASHEET_GBS:
        if re.search(pattern, low):
            return label, gbs
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {line}" if not isinstance(e, Unavailable) else line


# ---------------------------------------------------------------- environment


def build_summary() -> dict:
    """The CUDA extension as built and as imported: built, importable, reason, archs, CUDA version, kernels."""
    from . import _backend

    info = _backend.build_info()
    kernels = info.get("kernels") or []
    _, import_error = _backend._import_extension()
    return {
        "built": bool(info.get("built")),
        "importable": import_error is None,
        "reason": info.get("reason") or (None if info else "no build report (fastgan/_build_info.json is missing)"),
        "import_error": import_error,
        "archs": list(info.get("archs") or []),
        "cuda_version": info.get("cuda_version"),
        "kernels": len(kernels),
        "kernels_spilling": sum(1 for k in kernels if k.get("spill_stores") or k.get("spill_loads")),
    }


def environment() -> dict:
    """Versions, the GPU (or None) and the extension's build summary."""
    import fastgan
    from . import _backend

    try:
        import triton
        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    env = {
        "fastgan": fastgan.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "triton": triton_version,
        "triton_interpret": _backend.triton_interpreting(), "build": build_summary(), "gpu": None,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                      "memory_gib": round(p.total_memory / 2**30, 1)}
    return env


def measure_copy_bandwidth(quick: bool = False) -> float:
    """GB/s of a 1 GiB device-to-device copy (bytes read + written), median of do_bench."""
    import triton.testing

    n = 2**30 // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda").fill_(1.0)
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=5 if quick else 25, rep=20 if quick else 100,
                                 return_mode="median")
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 2**30 / (ms * 1e-3) / 1e9


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
    floors = {label: case.floor_bytes / (gbs * 1e9) * 1e6
              for label, _, gbs in DATASHEET_GBS if label in FLOOR_REFERENCES}
    return {"suite": case.suite, "name": case.name, "dtype": case.dtype, "mode": case.mode, "device": case.device,
            "floor_bytes": case.floor_bytes, "floor_desc": case.floor_desc, "floor_us_at_datasheet": floors,
            "params": dict(case.params), "status": None, "impls": OrderedDict()}


def _run_case(case: Case, rec: dict, quick: bool, with_compile: bool) -> None:
    try:
        impls = case.setup(with_compile) if case.setup is not None else case.impls
    except Exception as e:  # noqa: BLE001 - a case that cannot be set up is reported, the run goes on
        rec["status"] = f"error: {_first_line(e)}"
        return
    if case.check is not None:
        try:
            rec["check"] = case.check(impls)
        except Exception as e:  # noqa: BLE001 - a failed check flags the case; the timings still run
            rec["check"] = {"error": _first_line(e), "flag": f"check failed: {_first_line(e)}"}
        if rec["check"].get("flag"):
            rec["flag"] = rec["check"]["flag"]
    for name, fn in impls.items():
        if name == "compile" and not with_compile:
            continue
        if isinstance(fn, Unavailable):
            rec["impls"][name] = {"unavailable": _first_line(fn)}
        elif isinstance(fn, BaseException):
            rec["impls"][name] = {"error": _first_line(fn)}
        else:
            try:
                reps = case.reps.get(name) if case.device != "cuda" else None
                rec["impls"][name] = {"median_ms": time_ms(fn, case.device, quick, reps)}
                if reps is not None:
                    rec["impls"][name]["reps"] = {"warmup": reps[0], "timed": reps[1]}
            except Exception as e:  # noqa: BLE001 - recorded, never aborts the run
                rec["impls"][name] = {"error": _first_line(e)}
                if case.device == "cuda":
                    try:
                        torch.cuda.empty_cache()  # after an out-of-memory error, give the next ones a chance
                    except Exception:  # noqa: BLE001 - the context may be broken; the next timings will say so
                        pass
    rec["status"] = "ok"


def _derive(rec: dict, copy_gbs: float | None, datasheet: tuple[str, float] | None, case: Case | None = None) -> None:
    ms = {n: v["median_ms"] for n, v in rec["impls"].items() if "median_ms" in v}
    if case is not None:
        for n, t in ms.items():
            if case.flops.get(n):
                rec["impls"][n]["tflops"] = case.flops[n] / (t * 1e-3) / 1e12
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
            report["copy_bandwidth_error"] = _first_line(e)
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
            _derive(rec, report["copy_bandwidth_gbs"], datasheet, case)
            if case.finish is not None and rec["status"] == "ok":
                try:
                    case.finish(rec)
                except Exception as e:  # noqa: BLE001 - recorded, never aborts the run
                    rec["flag"] = f"finish failed: {_first_line(e)}"
            times = ", ".join(f"{n} {v['median_ms']:.4g} ms" if "median_ms" in v else f"{n} -"
                              for n, v in rec["impls"].items())
            log(f"[{i}/{len(cases)}] {case.suite} {case.name} {case.dtype} {case.mode}: {times or rec['status']} "
                f"({time.monotonic() - t:.0f} s)")
        write(report, out)
    report["chart"] = write_chart(report, out / "results.png")
    report["elapsed_s"] = round(time.monotonic() - start, 1)
    write(report, out)
    print(render_table(report))
    return report


# ---------------------------------------------------------------- reports


def write(report: dict, out: Path) -> None:
    """Write results.json and results.md."""
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "results.md").write_text(render_markdown(report))


def _impl_names(report: dict) -> list[str]:
    seen = {n for rec in report["cases"] for n in rec["impls"]}
    return [n for n in IMPL_ORDER if n in seen] + sorted(seen - set(IMPL_ORDER))


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _baseline_names(report: dict) -> list[str]:
    """eager and compile, then every other implementation some case's speedups are computed against."""
    extra = OrderedDict((k[len("speedup_vs_"):], None) for rec in report["cases"] for k in rec
                        if k.startswith("speedup_vs_") and k[len("speedup_vs_"):] not in ("eager", "compile"))
    usual = not extra or any(n in rec["impls"] for rec in report["cases"] for n in ("eager", "compile"))
    return ["eager", "compile"] * usual + list(extra)


def _note(rec: dict) -> str:
    """The table's note: a flag, else a status other than ok, else the targets met or missed."""
    if rec.get("flag"):
        return rec["flag"]
    if rec["status"] != "ok":
        return str(rec["status"] or "running")
    return "; ".join(f"{t['target']}: {'met' if t['met'] else 'MISSED'}" for t in rec.get("targets", []))


def render_table(report: dict) -> str:
    """The Markdown table of every case."""
    impls = _impl_names(report)
    timed = any("median_ms" in v for rec in report["cases"] for v in rec["impls"].values())
    bases = _baseline_names(report)
    rates = any("achieved_tflops" in rec for rec in report["cases"])
    head = ["suite", "case", "dtype", "mode", "floor MB"]
    if timed:
        head += [f"{n} ms" for n in impls] + ["best"] + [f"x {b}" for b in bases] + ["GB/s", "% copy BW",
                                                                                     "% datasheet"]
        head += ["TFLOP/s", "ref TFLOP/s", "% ref rate"] if rates else []
    else:
        head += [f"floor us @{label}" for label in FLOOR_REFERENCES]
    head.append("note")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in report["cases"]:
        row = [rec["suite"], rec["name"], rec["dtype"], rec["mode"], f"{rec['floor_bytes'] / 1e6:.2f}"]
        if timed:
            for n in impls:
                v = rec["impls"].get(n, {})
                row.append(_fmt(v.get("median_ms"), ".4f") if "median_ms" in v else
                           "error" if "error" in v else "n/a" if "unavailable" in v else "")
            row += [rec.get("best_fastgan", "")] + [_fmt(rec.get(f"speedup_vs_{b}"), ".2f") for b in bases]
            row += [_fmt(rec.get("achieved_gbs"), ".0f"), _fmt(rec.get("pct_copy_bw"), ".0f"),
                    _fmt(rec.get("pct_datasheet_bw"), ".0f")]
            if rates:
                row += [_fmt(rec.get("achieved_tflops"), ".1f"), _fmt(rec.get("reference_tflops"), ".1f"),
                        _fmt(rec.get("pct_reference_rate"), ".0f")]
        else:
            row += [f"{rec['floor_us_at_datasheet'][label]:.1f}" for label in FLOOR_REFERENCES]
        row.append(_note(rec))
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows) + "\n"


def describe_gpu(gpu: dict | None) -> str:
    """One line for the GPU of environment()."""
    if not gpu:
        return "no CUDA device"
    return f"{gpu['name']} (compute capability {gpu['capability']}, {gpu['sms']} SMs, {gpu['memory_gib']} GiB)"


def describe_build(b: dict) -> str:
    """One line for the CUDA extension of environment()."""
    if not b["built"]:
        return f"not built ({b['reason']})"
    return (f"built for {', '.join('sm_' + a for a in b['archs']) or '?'} with CUDA {b['cuda_version']}, "
            f"{b['kernels']} kernels x arch ({b['kernels_spilling']} with register spills)"
            + ("" if b["importable"] else f"; does not import: {b['import_error']}"))


def render_markdown(report: dict) -> str:
    """results.md: a header (device, versions, build, bandwidths, date, command), notes, then the table."""
    env = report["env"]
    device, build = describe_gpu(env["gpu"]), describe_build(env["build"])
    copy = report["copy_bandwidth_gbs"]
    lines = [
        "# fastgan bench", "",
        f"- device: {device}",
        f"- versions: fastgan {env['fastgan']}, python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['torch_cuda'] or 'none'}), triton {env['triton'] or 'not installed'}"
        + (", TRITON_INTERPRET=1" if env["triton_interpret"] else ""),
        f"- CUDA extension: {build}",
        "- copy bandwidth (measured: 1 GiB device-to-device copy, bytes read + written): "
        + (f"{copy:.0f} GB/s" if copy else report.get("copy_bandwidth_error") or "not measured (no CUDA device)"),
        "- datasheet HBM bandwidth: "
        + (f"{report['datasheet']['label']} {report['datasheet']['gbs']:.0f} GB/s; " if report["datasheet"] else "")
        + "table: " + ", ".join(f"{r['label']} {r['gbs'] / 1000:g} TB/s" for r in report["datasheet_table"]),
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- options: budget {report['options']['budget_s']:g} s, quick={report['options']['quick']}, "
        f"compile={report['options']['compile']}",
    ]
    for name, info in report["suites"].items():
        for ws, d in info.get("weight_sets", {}).items():
            lines.append(f"- {name} weight set {ws}: {d['tensors']} tensors, {d['params']:,} parameters")
        lines += [f"- {name}: {line}" for line in info.get("lines", [])]
    floors = OrderedDict((r["floor_desc"], None) for r in report["cases"])
    lines += ["", "Floor bytes (the fewest bytes the fused version must move):", ""]
    lines += [f"- {d}" for d in floors]
    lines += ["", "Times are medians in ms. x eager / x compile: the best fastgan backend's speedup. GB/s: floor bytes "
              "over the best fastgan time; % copy BW and % datasheet compare it with the bandwidths above."]
    if _baseline_names(report) != ["eager", "compile"] or any("achieved_tflops" in r for r in report["cases"]):
        lines += ["", "x <implementation>: its time over the time of the case's fastgan implementation in column "
                  "best (the fastest, unless the case names one). TFLOP/s: useful flops over that time; ref "
                  "TFLOP/s: the same for the case's reference implementation; % ref rate: their ratio."]
    notes, unavailable = [], OrderedDict()
    for rec in report["cases"]:
        for n, v in rec["impls"].items():
            if "error" in v:
                notes.append(f"- {rec['name']} {rec['dtype']} {rec['mode']}, {n} error: {v['error']}")
            elif "unavailable" in v:
                key = (n, v["unavailable"])
                unavailable[key] = unavailable.get(key, 0) + 1
    notes += [f"- {n} not run in {k} case{'s' * (k > 1)}: {why}" for (n, why), k in unavailable.items()]
    for rec in report["cases"]:
        if rec.get("flag"):
            notes.append(f"- {rec['name']} {rec['dtype']} {rec['mode']} FLAGGED: {rec['flag']}")
        for t in rec.get("targets", []):
            notes.append(f"- {rec['name']} {rec['dtype']} {rec['mode']}, target {t['target']}: "
                         f"{'met' if t['met'] else 'MISSED'} ({t['value']:.4g})")
    chart = report.get("chart")
    if chart:
        notes.append(f"- results.png: {chart}")
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Results", "", render_table(report)]
    return "\n".join(lines)


def write_chart(report: dict, path: Path) -> str:
    """Bar chart of the speedups vs eager and vs compile (or of the floor times when nothing was timed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not written: matplotlib is not installed"
    timed = [r for r in report["cases"] if "best_fastgan" in r]
    recs = timed or report["cases"]
    if not recs:
        return "not written: no cases"
    labels = [f"{r['name']} {r['dtype']} {r['mode']}" for r in recs]
    if timed:
        series = [(f"vs {b}", [r.get(f"speedup_vs_{b}", float("nan")) for r in recs]) for b in _baseline_names(report)]
        xlabel, title = "speedup of the best fastgan backend (x)", "fastgan speedup"
    else:
        series = [(f"@{label}", [r["floor_us_at_datasheet"][label] for r in recs]) for label in FLOOR_REFERENCES]
        xlabel, title = "floor time at datasheet bandwidth (us)", "floor times (nothing timed)"
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(recs) * len(series) + 1.5))
    h = 0.8 / len(series)
    for k, (name, vals) in enumerate(series):
        bars = ax.barh([i + k * h for i in range(len(recs))], vals, height=h, label=name)
        ax.bar_label(bars, labels=["" if v != v else f"{v:.3g}" for v in vals], fontsize=6, padding=2)
    ax.set_yticks([i + h * (len(series) - 1) / 2 for i in range(len(recs))], labels, fontsize=7)
    ax.invert_yaxis()
    if timed:
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(f"{title} - {(report['env']['gpu'] or {}).get('name', 'no CUDA device')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "speedups per case" if timed else "floor times per case (nothing timed)"


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fastgan bench``."""
    from . import bench_suites
    from .bench_suites import DEFAULT_SUITES, SUITES

    parser.add_argument("--out", default="fastgan-bench", metavar="DIR",
                        help="output folder for results.md, results.json, results.png (default: ./fastgan-bench)")
    parser.add_argument("--budget-s", type=float, default=420.0, metavar="S",
                        help="time budget in seconds; cases left when it is spent are skipped (default: 420)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile baseline")
    parser.add_argument("--suite", action="append", choices=SUITES, metavar="NAME",
                        help=f"suite to run, one of {', '.join(SUITES)} (repeatable; default: "
                             f"{', '.join(DEFAULT_SUITES)})")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--dtype", choices=DTYPES, help="run only this dtype (default: all)")
    for name in SUITES:  # a suite's own options (optional: add_arguments(parser), read by configure(args))
        suite = bench_suites.load(name)
        if hasattr(suite, "add_arguments"):
            suite.add_arguments(parser)


CPU_CASES_NEED_SUITE = "not run: timed on the CPU only when its suite is asked for (--suite {suite})"


def main(args: argparse.Namespace, command: str = "fastgan bench") -> int:
    """Run ``fastgan bench`` with parsed arguments."""
    from . import bench_suites

    if not args.budget_s > 0:
        print(f"fastgan bench: error: --budget-s must be a positive number of seconds, got {args.budget_s:g}",
              file=sys.stderr)
        return 2
    names = list(OrderedDict.fromkeys(args.suite or bench_suites.DEFAULT_SUITES))
    dtypes = (args.dtype,) if args.dtype else DTYPES
    gpu = torch.cuda.is_available()
    cases, suites = [], OrderedDict()
    for name in names:
        suite = bench_suites.load(name)
        if hasattr(suite, "configure"):
            suite.configure(args)
        suites[name] = suite.describe()
        for case in suite.cases(device="cuda", dtypes=dtypes):
            # without a GPU and without --suite, a suite's long CPU timings (minutes) wait for an explicit request
            if case.device == "cpu" and not gpu and not args.suite and getattr(suite, "CPU_TIMING_ON_REQUEST", False):
                case.skip = CPU_CASES_NEED_SUITE.format(suite=name)
            cases.append(case)
    report = run(cases, args.out, budget_s=args.budget_s, quick=args.quick, with_compile=not args.no_compile,
                 command=command, suites=suites)
    print(closing_lines(report, args.out), file=sys.stderr)
    return 0


def closing_lines(report: dict, out_dir) -> str:
    """What a user needs after a run: where the files are, what was not written or not run, and why."""
    chart = report.get("chart") or ""
    written = ["results.md", "results.json"] + ([] if chart.startswith("not written") else ["results.png"])
    lines = [f"wrote {', '.join(written[:-1])} and {written[-1]} to {Path(out_dir)}"]
    if chart.startswith("not written"):
        why = chart[len("not written: "):]
        hint = " (pip install 'fastgan[bench]')" if "matplotlib" in chart else ""
        lines.append(f"results.png not written: {why}{hint}")
    if report["env"]["gpu"] is None:
        timed = [r for r in report["cases"] if "best_fastgan" in r]
        lines.append("No CUDA device here: " + ("the GPU cases were not timed; " if timed else "nothing was timed; ")
                     + "the table gives each case's byte floor and its floor time at H100/H200 bandwidth, to judge "
                       "a GPU run by.")
        cpu_left = [r for r in report["cases"] if str(r.get("status", "")).startswith("not run: timed on the CPU")]
        if cpu_left:
            lines.append("On this CPU, `fastgan bench --suite fid` times the Frechet distance against scipy's sqrtm "
                         "and torch's eigvals (about a minute on 2 cores).")
    return "\n".join(lines)


def command_line(argv) -> str:
    """The command as typed, for the report."""
    return "fastgan " + shlex.join(list(argv))
