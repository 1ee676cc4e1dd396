"""The FLOPs and the operator calls of a discriminator step with a gradient penalty, textbook vs fastgan, counted
(torch.utils.flop_counter) rather than timed: it needs no GPU. The convolutions are nearly all of a step's work,
so the FLOP ratio bounds the speed-up a compute-bound step can get; the calls count the launches of an eager step.

    python bench/critic_step_flops.py [--batch 64] [--device cpu]

Models and steps: fastgan/bench/suites/gradient_penalty.py (the textbook step there is ``eager_step``, fastgan's
``fastgan_step`` on the torch backend, whose kernels move bytes, not FLOPs).
"""
import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import fastgan
from fastgan.bench.suites import gradient_penalty as suite


class _Count(TorchDispatchMode):
    """FLOPs by aten op (torch.utils.flop_counter's formulas; its FlopCounterMode cannot run inside
    autograd.grad) and the calls that do work (views and metadata excluded)."""

    def __init__(self):
        super().__init__()
        self.flops, self.calls = Counter(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in flop_registry:
            self.flops[str(packet).removeprefix("aten.")] += flop_registry[packet](*args, **kwargs, out_val=out)
        if not (func.is_view or packet in (torch.ops.aten.detach, torch.ops.aten.empty_like,
                                           torch.ops.aten.empty, torch.ops.aten.empty_strided)):
            self.calls += 1
        return out


def count(step, bundle, D):
    with _Count() as c:
        bundle.impl(D, step)()
    return sum(c.flops.values()), c.flops, c.calls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    steps = {"textbook": (suite.eager_step, "eager_D"),
             "fastgan": (lambda *a: suite.fastgan_step(*a, backend="torch"), "fused_D")}
    print(f"GFLOP of one discriminator step (forward + penalty + backward), batch {args.batch}")
    print(f"{'model':28s} {'step':9s} {'GFLOP':>8s} {'calls':>6s}  by op (GFLOP)")
    with fastgan.use_backend("torch"):
        for model in suite.MODELS:
            bundle = suite._Bundle(model, args.batch, args.device)
            totals = {}
            for name, (step, which) in steps.items():
                total, by_op, calls = count(step, bundle, getattr(bundle, which))
                totals[name] = total
                ops = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in by_op.most_common() if v >= 1e7)
                print(f"{model:28s} {name:9s} {total / 1e9:8.1f} {calls:6d}  {ops}")
            print(f"{'':28s} textbook / fastgan FLOPs: {totals['textbook'] / totals['fastgan']:.3f}")


if __name__ == "__main__":
    main()
