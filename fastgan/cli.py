"""The ``fastgan`` command: ``fastgan info`` and ``fastgan bench``."""
from __future__ import annotations

import argparse
import sys

import torch


def _rows(pairs) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{k:<{width}}{v}" for k, v in pairs]


def info_text() -> str:
    """What ``fastgan info`` prints: versions, the CUDA extension, the GPU and the backend choice of every op."""
    from . import _backend, bench

    env = bench.environment()
    gpu = env["gpu"]
    pairs = [
        ("fastgan", env["fastgan"]),
        ("python", env["python"]),
        ("torch", f"{env['torch']} (CUDA {env['torch_cuda'] or 'none'})"),
        ("triton", env["triton"] or "not installed"),
        ("TRITON_INTERPRET", "1 (Triton kernels run on the CPU, emulated)" if env["triton_interpret"] else "not set"),
        ("CUDA extension", bench.describe_build(env["build"])),
        ("GPU", bench.describe_gpu(gpu)),
        ("backend in force", _backend.current_backend()),
    ]
    lines = _rows(pairs)

    devices = ([("CUDA float32", torch.device("cuda", 0))] if gpu else []) + [("CPU float32", torch.device("cpu"))]
    table = [("op", "tensors", "auto picks")]
    reasons = {}
    for op in sorted(_backend._OPS):
        for label, dev in devices:
            pick = _backend.resolve(op, dev, torch.float32, "auto")
            table.append((op, label, pick))
            reasons[(op, label)] = [(name, _backend.unavailable_reason(name, dev, torch.float32, op))
                                    for name in _backend.BACKENDS if name != pick]
    widths = [max(len(r[i]) for r in table) + 2 for i in range(3)]
    lines.append("")
    for row in table:
        lines.append("".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip())
        for name, why in reasons.get(row[:2], []):
            lines.append(" " * widths[0] + f"  {name}: {why or 'available'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Entry point of the ``fastgan`` console script and of ``python -m fastgan``."""
    from . import bench

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastgan", description="Fused Triton/CUDA kernels for GANs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="versions, the CUDA extension, the GPU and the backend each op uses")
    bench.add_arguments(sub.add_parser("bench", help="benchmark fastgan against eager PyTorch and torch.compile"))
    args = parser.parse_args(argv)
    if args.command == "info":
        sys.stdout.write(info_text())
        return 0
    if args.command == "bench":
        return bench.main(args, bench.command_line(argv))
    parser.print_help()
    return 2
