"""Where the time of a grouped spectral norm goes, on a GPU: per-kernel device time (torch.profiler) and host
time per call, for fastgan's backends, forward and forward+backward.

    python bench/profile_spectral_norm.py [--set "SNGAN-128 D"] [--dtype float32]
"""
import argparse

import torch
from profiling import profile_calls

import fastgan
from fastgan.bench.suites.spectral_norm import WEIGHT_SETS


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", default="SNGAN-128 D", choices=list(WEIGHT_SETS))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    dt = getattr(torch, args.dtype)
    gen = torch.Generator(device="cuda").manual_seed(0)
    ws = [torch.randn(s, device="cuda", generator=gen).to(dt).requires_grad_() for s in WEIGHT_SETS[args.set]]
    us = [torch.nn.functional.normalize(torch.randn(w.shape[0], device="cuda"), dim=0) for w in ws]
    vs = [torch.nn.functional.normalize(torch.randn(w[0].numel(), device="cuda"), dim=0) for w in ws]
    rs = [torch.randn_like(w) for w in ws]
    print(f"{args.set} {args.dtype}: {len(ws)} weights, {sum(w.numel() for w in ws) / 1e6:.1f} M parameters")
    for backend in ("triton", "cuda"):
        def fwd():
            return fastgan.spectral_normalize(ws, us, vs, backend=backend)[0]

        def fwd_bwd():
            outs = fwd()
            return torch.autograd.grad(outs, ws, rs)

        for name, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            profile_calls(f"{backend} {name}", fn, args.iters)


if __name__ == "__main__":
    main()
