"""PixelCNN sampling: the cached sampler against the naive one (a full forward per sub-pixel), same model, same
draws, on the CPU (or a GPU with --device cuda).

    python bench/pixelcnn_sampling.py                       # 32x32 RGB, batch 16, the default model
    python bench/pixelcnn_sampling.py --rows 32 --naive-rows 32   # the naive sampler in full (about an hour on 2 cores)

The cached sampler draws the whole image. The naive one is timed on its first ``--naive-rows`` rows: each of its
H W C steps is the same full forward of the network on the same-sized batch followed by one draw, so its full time
is that time x H / naive-rows (reported as such, with the per-step times, which show whether the steps cost the
same). The images of the rows both drew are compared: they must be equal.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from fastgan.models import pixelcnn as P


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=60)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--naive-rows", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = P.PixelCNN(channels=3, hidden=args.hidden, layers=args.layers, kernel=5, first_kernel=7).to(dev).eval()
    size = (args.size, args.size)
    u = torch.rand(args.batch, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    P.sample_cached(model, args.batch, (1, 4), u=u[:, :, :1, :4])  # warm-up of both
    with torch.no_grad():
        model(torch.zeros(args.batch, 3, *size, dtype=torch.long, device=dev))
    cached, t_cached = timed(lambda: P.sample_cached(model, args.batch, size, u=u))
    r = args.naive_rows
    naive, t_naive = timed(lambda: P.sample(model, args.batch, size, u=u, rows=r))
    equal = torch.equal(naive[:, :, :r], cached[:, :, :r])  # (rows < r do not depend on the rows below them)
    naive_full = t_naive * args.size / r
    steps = r * args.size * 3
    res = {"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "image": [3, *size], "batch": args.batch, "hidden": args.hidden,
           "layers": args.layers, "parameters": sum(p.numel() for p in model.parameters()),
           "cached_s": t_cached, "naive_rows_timed": r, "naive_s_timed": t_naive,
           "naive_ms_per_step": t_naive / steps * 1e3, "naive_s_full": naive_full,
           "naive_full_is": "measured" if r == args.size else f"{r} of {args.size} rows measured, x {args.size / r:g}",
           "speedup": naive_full / t_cached, "equal_images_on_the_rows_both_drew": equal}
    print(f"PixelCNN sampling, {args.batch} x 3x{args.size}x{args.size}, {args.layers} gated layers of {args.hidden} "
          f"({res['parameters']:,} parameters), {res['device']}, {res['threads']} threads, torch {torch.__version__}")
    print(f"  cached sampler, whole image: {t_cached:.2f} s")
    print(f"  naive sampler: {t_naive:.2f} s for {r} row(s) ({res['naive_ms_per_step']:.1f} ms per sub-pixel step); "
          f"whole image {naive_full:.1f} s ({res['naive_full_is']})")
    print(f"  speed-up {res['speedup']:.1f}x; images of the rows both drew equal: {equal}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    if not equal:
        raise SystemExit("the samplers drew different images")


if __name__ == "__main__":
    main()
