"""Host issue time, wall time and per-kernel device time of a callable on the GPU (used by the profile_*.py
scripts of this folder)."""
import time

import torch
from torch.profiler import ProfilerActivity, profile


def profile_calls(label: str, fn, iters: int = 20, top: int = 10) -> None:
    """Print host issue ms/call (no sync inside the loop), wall ms/call, and the kernels by device time."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    host = (time.perf_counter() - t0) / iters * 1e3
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / iters * 1e3
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    print(f"\n== {label}: host issue {host:.3f} ms/call, wall {wall:.3f} ms/call")
    rows = []
    for e in prof.key_averages():
        dev = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if dev > 0 and getattr(e, "device_type", None) is not None and "cuda" in str(e.device_type).lower():
            rows.append((dev / iters / 1e3, e.count // iters, e.key))
    for ms, count, key in sorted(rows, reverse=True)[:top]:
        print(f"  {ms:8.4f} ms  x{count:<3d} {key[:90]}")
    print(f"  total device time {sum(r[0] for r in rows):.4f} ms/call")
