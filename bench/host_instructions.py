"""Instructions per eager call of each host-overhead case (kernels as no-ops), counted by callgrind: repeatable where
wall-clock time on a shared machine is not.

    python bench/host_instructions.py [--calls 1000] [--backend cuda] [NAME_SUBSTRING ...]

For each case of fastgan/bench/suites/host_overhead.py: valgrind --tool=callgrind of a process that makes the call
--calls times, minus one that makes it 0 times (which cancels the imports), with PYTHONHASHSEED=0, the garbage
collector off and one thread (callgrind counts every thread: the spin-waits of torch's intra-op pool made counts
vary by 20% between runs). About a minute per process.
"""
import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile


def _child(index: int, calls: int, backend: str) -> None:
    import torch

    from fastgan.bench.suites import host_overhead as ho

    torch.set_num_threads(1)
    gc.disable()  # a collection traverses every imported object: not the call's cost
    _, _, make = ho.CALLS[index]
    with ho.kernels_as_no_ops():
        fn = make(backend=backend)
        fn()
        for _ in range(calls):
            fn()


def _count(index: int, calls: int, backend: str) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", sys.executable,
                               __file__, "--child", str(index), str(calls), backend], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"Collected : (\d+)", proc.stdout)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(proc.stdout[-2000:])
    return int(m.group(1))


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return 0
    from fastgan.bench.suites import host_overhead as ho

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--backend", default="cuda", choices=ho.BACKENDS)
    parser.add_argument("names", nargs="*", help="only the cases whose name and mode contain one of these")
    args = parser.parse_args()
    for i, (name, mode, _) in enumerate(ho.CALLS):
        label = f"{name} {mode}"
        if args.names and not any(n in label for n in args.names):
            continue
        per_call = (_count(i, args.calls, args.backend) - _count(i, 0, args.backend)) / args.calls
        print(f"{label:56s} {args.backend:6s} {per_call / 1e3:10.1f} k instructions per call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
