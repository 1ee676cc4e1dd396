"""Where the time of conditional batch norm goes, on a GPU: host issue time per call, wall time and per-kernel
device time (torch.profiler), for fastgan's backends and eager PyTorch, forward and forward+backward (training).
Tells whether a shape is host-bound (issue time above device time) or bandwidth-bound.

    python bench/profile_cond_batch_norm.py [--shape 128 512 4 4] [--dtype float32] [--per-sample]
"""
import argparse
import functools

import torch
from profiling import profile_calls

import fastgan
from fastgan.bench.suites.cond_batch_norm import bn_relu, ccbn_relu, inputs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=4, default=[128, 512, 4, 4], metavar=("N", "C", "H", "W"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--per-sample", action="store_true", help="(N, C) gain and bias, as BigGAN's ccbn")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    t = inputs(tuple(args.shape), args.per_sample, args.dtype, "cuda")
    x, w, b, dy = t["x"].requires_grad_(), t["weight"].requires_grad_(), t["bias"].requires_grad_(), t["dy"]
    rm, rv = torch.zeros(x.shape[1], device="cuda"), torch.ones(x.shape[1], device="cuda")
    floor_fwd = 3 * x.numel() * x.element_size()
    print(f"x {tuple(x.shape)} {args.dtype}, {'per-sample' if args.per_sample else 'per-channel'} affine + ReLU; "
          f"floor {floor_fwd / 1e6:.1f} MB forward, {8 / 3 * floor_fwd / 1e6:.1f} MB forward + backward")
    eager = ccbn_relu if args.per_sample else bn_relu
    impls = {"eager": eager}
    for backend in ("cuda", "triton"):
        impls[backend] = functools.partial(fastgan.conditional_batch_norm, training=True, activation="relu",
                                           backend=backend)
    for label, f in impls.items():
        def fwd(f=f):
            return f(x, w, b, rm, rv)

        def fwd_bwd(f=f):
            return torch.autograd.grad(f(x, w, b, rm, rv), (x, w, b), dy)

        for name, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            try:
                profile_calls(f"{label} {name}", fn, args.iters)
            except fastgan.BackendUnavailable as e:
                print(f"\n== {label} {name}: unavailable ({e})")
                break


if __name__ == "__main__":
    main()
