"""Host time per eager call of every op, kernels replaced by no-ops: runs on any machine, a CPU one included.

    python bench/host_overhead.py [--out DIR]

The same cases as ``fastgan bench --suite host_overhead`` (fastgan/bench/suites/host_overhead.py); prints one line
per case: microseconds per call on the triton and the cuda backend's host path.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from fastgan.cli import main

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", help="folder for results.md/.json (default: a temporary one)")
args = parser.parse_args()
out = Path(args.out or tempfile.mkdtemp(prefix="host_overhead-"))
rc = main(["bench", "--suite", "host_overhead", "--no-compile", "--out", str(out)])
report = json.loads((out / "results.json").read_text())
print(f"\n{'case':48s} {'mode':8s} " + " ".join(f"{n:>16s}" for n in ("triton us/call", "cuda us/call")))
for rec in report["cases"]:
    us = [rec["impls"].get(f"fastgan[{b}]", {}).get("us_per_call") for b in ("triton", "cuda")]
    print(f"{rec['name']:48s} {rec['mode']:8s} " + " ".join(f"{u:16.1f}" if u else f"{'-':>16s}" for u in us))
sys.exit(rc)
