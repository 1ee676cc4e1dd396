"""The report of a ``fastgan bench`` run: results.json, results.md (a header that says what the run ran on, notes,
then one table row a case), results.png (the speedups, or the floor times when nothing was timed) and the closing
lines printed after a run. Renders the report dict that :func:`fastgan.bench.runner.run` builds; times nothing."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from .environment import DATASHEET_TFLOPS, FLOOR_REFERENCES, describe_build, describe_gpu, describe_versions

IMPL_ORDER = ("fastgan[cuda]", "fastgan[triton]", "eager", "compile")  # the table's columns, these first


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


def _peak_lines(report: dict) -> list[str]:
    """The header's dense-peak lines: measured (a GPU run with FLOP floors), and the datasheet figures."""
    if not any(r.get("floor_flops") for r in report["cases"]):
        return []
    lines = []
    measured = report.get("dense_peak_tflops")
    if measured is not None:
        errors = report.get("dense_peak_error") or {}
        lines.append("- dense peak (measured: 8192^3 matrix product): "
                     + ", ".join([f"{k} {v:.0f} TFLOP/s" for k, v in measured.items()]
                                 + [f"{k} not measured ({why})" for k, why in errors.items()]))
    sheet = report.get("datasheet_peak") or {}
    lines.append("- datasheet dense peak (TFLOP/s): "
                 + (f"{sheet['label']} " + ", ".join(f"{k} {v:g}" for k, v in sheet["tflops"].items()) + "; "
                    if sheet else "")
                 + "table: " + "; ".join(f"{label} " + ", ".join(f"{k} {v:g}" for k, v in peaks.items())
                                         for label, _, peaks in DATASHEET_TFLOPS if label in FLOOR_REFERENCES))
    return lines


def render_table(report: dict) -> str:
    """The Markdown table of every case."""
    impls = _impl_names(report)
    timed = any("median_ms" in v or "failed" in v for rec in report["cases"] for v in rec["impls"].values())
    bases = _baseline_names(report)
    rates = any("achieved_tflops" in rec for rec in report["cases"])
    peak = any("pct_peak" in rec for rec in report["cases"])
    flops = any(rec.get("floor_flops") for rec in report["cases"])
    head = ["suite", "case", "dtype", "mode", "floor MB"] + ["floor GFLOP"] * flops
    if timed:
        head += [f"{n} ms" for n in impls] + ["best"] + [f"x {b}" for b in bases] + ["GB/s", "% copy BW",
                                                                                     "% datasheet"]
        head += ["TFLOP/s", "ref TFLOP/s", "% ref rate"] if rates else []
        head += ["% peak"] * peak
    else:
        head += [f"floor us @{label}" for label in FLOOR_REFERENCES]
        head += [f"FLOP floor us @{label}" for label in FLOOR_REFERENCES] if flops else []
    head.append("note")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in report["cases"]:
        row = [rec["suite"], rec["name"], rec["dtype"], rec["mode"], f"{rec['floor_bytes'] / 1e6:.2f}"]
        if flops:
            row.append(_fmt(rec["floor_flops"] / 1e9 if rec.get("floor_flops") else None, ".2f"))
        if timed:
            for n in impls:
                v = rec["impls"].get(n, {})
                row.append(_fmt(v.get("median_ms"), ".4f") if "median_ms" in v else
                           "failed" if "failed" in v else "error" if "error" in v else
                           "n/a" if "unavailable" in v else "")
            row += [rec.get("best_fastgan", "")] + [_fmt(rec.get(f"speedup_vs_{b}"), ".2f") for b in bases]
            row += [_fmt(rec.get("achieved_gbs"), ".0f"), _fmt(rec.get("pct_copy_bw"), ".0f"),
                    _fmt(rec.get("pct_datasheet_bw"), ".0f")]
            if rates:
                row += [_fmt(rec.get("achieved_tflops"), ".1f"), _fmt(rec.get("reference_tflops"), ".1f"),
                        _fmt(rec.get("pct_reference_rate"), ".0f")]
            if peak:
                row.append(_fmt(rec.get("pct_peak"), ".0f"))
        else:
            row += [f"{rec['floor_us_at_datasheet'][label]:.1f}" for label in FLOOR_REFERENCES]
            if flops:
                row += [_fmt(rec.get("floor_us_at_peak", {}).get(label), ".1f") for label in FLOOR_REFERENCES]
        row.append(_note(rec))
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows) + "\n"


def render_markdown(report: dict) -> str:
    """results.md: a header (device, versions, build, bandwidths, date, command), notes, then the table."""
    env = report["env"]
    device, build = describe_gpu(env["gpu"]), describe_build(env["build"])
    copy = report["copy_bandwidth_gbs"]
    lines = [
        "# fastgan bench", "",
        f"- device: {device}",
        f"- versions: {describe_versions(env)}",
        f"- CUDA extension: {build}",
        "- copy bandwidth (measured: 1 GiB device-to-device copy, bytes read + written): "
        + (f"{copy:.0f} GB/s" if copy else report.get("copy_bandwidth_error") or "not measured (no CUDA device)"),
        "- datasheet HBM bandwidth: "
        + (f"{report['datasheet']['label']} {report['datasheet']['gbs']:.0f} GB/s; " if report["datasheet"] else "")
        + "table: " + ", ".join(f"{r['label']} {r['gbs'] / 1000:g} TB/s" for r in report["datasheet_table"]),
        *_peak_lines(report),
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
                  "TFLOP/s: the same for the case's reference implementation; % ref rate: their ratio."
                  + (" % peak: TFLOP/s over the measured dense peak of the case's dtype (above)."
                     if any("pct_peak" in r for r in report["cases"]) else "")]
    if any(r.get("floor_flops") for r in report["cases"]):
        lines += ["", "floor GFLOP: the fewest flops of a case (its dense work); FLOP floor us: that work at the "
                  "datasheet dense peak of the case's dtype (float32 as TF32 where cuDNN may use it)."]
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
                     + "the table gives each case's byte floor and its floor time at H100/H200 bandwidth (and, for a "
                       "case with a FLOP floor, that work at their dense peak), to judge a GPU run by.")
        cpu_left = [r for r in report["cases"] if str(r.get("status", "")).startswith("not run: timed on the CPU")]
        if cpu_left:
            lines.append("On this CPU, `fastgan bench --suite fid` times the Frechet distance against scipy's sqrtm "
                         "and torch's eigvals (about a minute on 2 cores).")
    return "\n".join(lines)


