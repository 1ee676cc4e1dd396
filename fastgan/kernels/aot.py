"""Ahead-of-time compilation of every Triton kernel configuration fastgan launches, for given GPU architectures,
without a GPU: compile errors, registers, spills and 16-byte loads, read from ptxas and the PTX.

    python -m fastgan.kernels.aot [--arch 80 90] [--json]

Exits 1 if a configuration fails to compile or spills registers. Run it without TRITON_INTERPRET=1 (under the
interpreter the kernels are not compilable objects).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from .._ptxas import parse_ptxas_report

# modules whose launch_configs() list what they launch
KERNEL_MODULES = ("fastgan.kernels.spectral_norm", "fastgan.kernels.feature_stats", "fastgan.kernels.newton_schulz",
                  "fastgan.kernels.cond_batch_norm", "fastgan.kernels.conv_transpose2d",
                  "fastgan.kernels.gradient_penalty", "fastgan.kernels.codebook_search",
                  "fastgan.kernels.masked_conv2d")


def configs():
    """(kernel, signature, constexprs, options) of every configuration the modules launch. A module's
    launch_configs() gives (kernel, signature, constexprs[, num_warps or options]); options may hold num_warps,
    num_stages, archs (the compute capabilities the configuration is launched on; default: every arch) and
    divisible_by_16 (integer arguments that Triton's launcher specialises as multiples of 16 in that launch)."""
    import importlib

    for name in KERNEL_MODULES:
        for kernel, signature, constexprs, *rest in importlib.import_module(name).launch_configs():
            options = rest[0] if rest else {}
            yield kernel, signature, constexprs, {"num_warps": options} if isinstance(options, int) else options


def _ptxas_report(ptx: str, arch: str) -> dict:
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([get_ptxas(int(arch[3:5])).path, "-v", f"--gpu-name={arch}", src, "-o",
                               os.path.join(tmp, "k.cubin")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout)
    (entry,) = parse_ptxas_report(proc.stdout)
    return entry


def compile_all(archs=(80, 90), workers: int | None = None) -> list[dict]:
    """One record per (configuration, arch): kernel, arch, constexprs, registers, spills, vector_loads, error.
    Configurations compile in ``workers`` processes (default: one per CPU, at most 8), records in their order."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    n = sum(1 for _ in configs())
    workers = max(1, min(workers or os.cpu_count() or 1, 8, n))
    if workers == 1:
        shares = [_compile_share(0, 1, tuple(archs))]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # (fork: the workers need no re-import; no GPU is touched here)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            shares = list(pool.map(_compile_share, range(workers), [workers] * workers, [tuple(archs)] * workers))
    records = sorted((r for share in shares for r in share), key=lambda r: r["_config"])  # (stable: archs in order)
    for r in records:
        del r["_config"]
    return records


def _compile_share(share: int, shares: int, archs: tuple) -> list[dict]:
    """The records of configurations share, share + shares, ... (each tagged with its index as ``_config``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    records = []
    for index, (kernel, signature, constexprs, options) in enumerate(configs()):
        if index % shares != share:
            continue
        full = {name: ("constexpr" if name in constexprs else signature[name]) for name in kernel.arg_names}
        # launched tensors are 16-byte aligned, as Triton's launcher specialises them
        # (and integers the launcher sees as multiples of 16, where a configuration names them)
        attrs = {(i,): [["tt.divisibility", 16]] for i, (name, t) in enumerate(full.items())
                 if t.startswith("*") or name in options.get("divisible_by_16", ())}
        compile_options = {k: v for k, v in options.items() if k not in ("archs", "divisible_by_16")}
        compile_options.setdefault("num_warps", 4)
        for cc in archs:
            if cc not in options.get("archs", (cc,)):
                continue
            rec = {"_config": index, "kernel": kernel.__name__, "arch": f"sm_{cc}",
                   "num_warps": compile_options["num_warps"],
                   "constexprs": {k: str(v) for k, v in constexprs.items()}}
            try:
                src = ASTSource(fn=kernel, signature=full, constexprs=constexprs, attrs=attrs)
                compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=compile_options)
                ptx = compiled.asm["ptx"]
                target = re.search(r"\.target\s+(sm_\w+)", ptx).group(1)
                rep = _ptxas_report(ptx, target)
                rec.update(arch=target, registers=rep.get("registers"), stack=rep.get("stack", 0),
                           spill_stores=rep.get("spill_stores", 0), spill_loads=rep.get("spill_loads", 0),
                           vector_loads=len(re.findall(r"ld\.global[.\w:]*\.v4\.", ptx)))
            except Exception as e:  # noqa: BLE001 - reported per configuration
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            records.append(rec)
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    args = parser.parse_args(argv)
    records = compile_all(args.arch)
    if args.json:
        print(json.dumps(records))
    else:
        for r in records:
            cx = ",".join(f"{k}={v}" for k, v in r["constexprs"].items())
            state = r.get("error") or (f"{r['registers']} regs, spills {r['spill_stores']}/{r['spill_loads']}, "
                                       f"stack {r['stack']}, {r['vector_loads']} x 16-byte loads")
            print(f"{r['kernel']:22s} {r['arch']:8s} {cx:70s} {state}")
    bad = [r for r in records if r.get("error") or r.get("spill_stores") or r.get("spill_loads")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
