"""Where the time of a discriminator step with a gradient penalty goes, on a GPU: the textbook eager step and
fastgan's, per phase (D forwards, the create_graph gradient, the penalty, the backward) and per kernel.

    python bench/profile_critic_step.py [--model "SNGAN-32 D (R1)"] [--batch 64]
"""
import argparse
import time

import torch
from profiling import profile_calls

from fastgan.bench.suites import gradient_penalty as suite


def phases(D, real, fake, eps, kind):
    """Wall ms of each phase of the textbook step (synchronised around each)."""
    out = {}

    def timed(name, fn):
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = fn()
        torch.cuda.synchronize()
        out[name] = out.get(name, 0.0) + (time.perf_counter() - t) * 1e3
        return r

    x = (real if kind == "r1" else (eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake))
    x = x.detach().requires_grad_(True)
    d_x = timed("D(x_hat or real), graph kept", lambda: D(x))
    (g,) = timed("dD/dx, create_graph", lambda: torch.autograd.grad(d_x.sum(), x, create_graph=True))
    flat = g.reshape(g.shape[0], -1)
    if kind == "r1":
        pen = timed("penalty", lambda: 5.0 * flat.pow(2).sum(1).mean())
    else:
        pen = timed("penalty", lambda: 10.0 * ((flat.norm(2, dim=1) - 1) ** 2).mean())
    d_real = timed("D(real)", lambda: D(real))
    d_fake = timed("D(fake)", lambda: D(fake))
    loss = timed("loss", lambda: d_fake.mean() - d_real.mean() + pen)
    timed("backward (double backward through D)", loss.backward)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="DCGAN-64 critic (WGAN-GP)", choices=list(suite.MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    b = suite._Bundle(args.model, args.batch, "cuda")
    for _ in range(3):
        phases(b.eager_D, b.real, b.fake, b.eps, b.kind)
    totals = {}
    for _ in range(args.iters):
        for k, v in phases(b.eager_D, b.real, b.fake, b.eps, b.kind).items():
            totals[k] = totals.get(k, 0.0) + v / args.iters
    print(f"{args.model}, batch {args.batch}: the textbook step by phase (ms, synchronised)")
    for k, v in totals.items():
        print(f"  {v:8.3f}  {k}")
    profile_calls("eager step", b.impl(b.eager_D, suite.eager_step), args.iters)
    for backend in ("triton", "cuda"):
        step = b.impl(b.fused_D, lambda *a, backend=backend: suite.fastgan_step(*a, backend=backend))
        profile_calls(f"fastgan step ({backend})", step, args.iters)


if __name__ == "__main__":
    main()
