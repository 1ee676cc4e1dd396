"""``fastgan bench``: its options, and the run of the suites asked for (:mod:`fastgan.bench.suites`) through the runner
(:mod:`fastgan.bench.runner`), then the closing lines of the report (:mod:`fastgan.bench.report`)."""
from __future__ import annotations

import argparse
import shlex
import sys
from collections import OrderedDict

import torch

from .report import closing_lines
from .runner import DTYPES, run
from .suites import DEFAULT_SUITES, SUITES, load

CPU_CASES_NEED_SUITE = "not run: timed on the CPU only when its suite is asked for (--suite {suite})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fastgan bench``."""
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
        suite = load(name)
        if hasattr(suite, "add_arguments"):
            suite.add_arguments(parser)


def main(args: argparse.Namespace, command: str = "fastgan bench") -> int:
    """Run ``fastgan bench`` with parsed arguments."""
    if not args.budget_s > 0:
        print(f"fastgan bench: error: --budget-s must be a positive number of seconds, got {args.budget_s:g}",
              file=sys.stderr)
        return 2
    names = list(OrderedDict.fromkeys(args.suite or DEFAULT_SUITES))
    dtypes = (args.dtype,) if args.dtype else DTYPES
    gpu = torch.cuda.is_available()
    cases, suites = [], OrderedDict()
    for name in names:
        suite = load(name)
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


def command_line(argv) -> str:
    """The command as typed, for the report."""
    return "fastgan " + shlex.join(list(argv))
