"""Conditional batch-norm suite: training-mode batch norm + affine + ReLU at the BN inputs of real generators.

Shapes (NCHW, contiguous):

* DCGAN-64 generator (pytorch/examples), batch 128: ``nn.BatchNorm2d`` (per-channel weight and bias) + ReLU after
  each of the first four ConvT layers: (128, 512, 4, 4), (128, 256, 8, 8), (128, 128, 16, 16), (128, 64, 32, 32).
* BigGAN-128 generator (ajbrock/BigGAN-PyTorch, G_ch=96), batch 256: ``ccbn`` (BN without affine, then per-sample
  gain and bias of shape (N, C), gain = 1 + linear(y), bias = linear(y); here random (N, C) float32 tensors near 1
  and 0) + ReLU. The G blocks' BN inputs are (256, 1536, 4, 4), (256, 1536, 8, 8), (256, 768, 16, 16),
  (256, 384, 32, 32), (256, 192, 64, 64) and (256, 96, 128, 128); the default run takes the smallest, a middle
  one and the largest (``--cbn-all-shapes``: all six).

Implementations: ``fastgan[cuda]`` and ``fastgan[triton]`` (:func:`fastgan.conditional_batch_norm` with
``activation="relu"`` and that backend), ``eager`` (for DCGAN, what ``nn.BatchNorm2d`` + ``nn.ReLU`` run:
``F.relu(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5))``; for BigGAN, ccbn's code path:
``F.relu(F.batch_norm(x, rm, rv, None, None, True, 0.1, 1e-5) * gain[:, :, None, None] + bias[:, :, None, None])``)
and ``compile`` (``torch.compile(dynamic=False)`` of that eager function). The gain and bias are float32
parameters; the eager ccbn casts them to the activation dtype first, as a bfloat16 model (or autocast, whose linear
layers return bfloat16) hands them to ccbn, so that every implementation returns y in the dtype of x.

Modes, per shape and dtype (float32, bfloat16 for x; parameters and running statistics float32):

* fwd: one training forward, with x, the weight (gain) and the bias requiring grad, as in a generator's forward
  in a training step (autograd records the graph); the running statistics are updated in place;
* fwd+bwd: the same forward, then ``autograd.grad`` of y with a fixed random dy w.r.t. x, weight (gain) and bias.

Every implementation has its own running statistics. Before a case is timed, each implementation is called once
from the same initial statistics and its outputs (y; in fwd+bwd also dx, dweight, dbias) and the batch statistics
its update folded into the running statistics are compared with eager's (norm-relative error, tolerance by dtype);
a case outside the tolerance is flagged.

Floor (the op is memory-bound; parameter and statistics bytes are negligible): |x| = numel x element size; the
forward moves 3 |x| (statistics pass reads x, apply pass reads x and writes y), forward+backward 8 |x| (plus the
backward's 5 |x|: a reduction pass reads dy and x, the dx pass reads dy and x and writes dx). Without a CUDA
device, the report lists each case's floor and its time at datasheet bandwidths.

Compile time: one ``torch.compile`` per shape and dtype (the fwd and fwd+bwd cases of a shape and dtype are
consecutive and share it; its backward graph is compiled by the fwd+bwd case's setup), with
``torch._dynamo.reset()`` and freed buffers between shapes; compilation happens in a case's setup, which the
run's time budget counts, so the cases are ordered by importance: the largest activations first.
"""
from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..runner import Case, Unavailable
from .common import (
    Target,
    compare_with_reference,
    current,
    fastgan_backends,
    record_targets,
    record_value,
    rel_err,  # noqa: F401 - the suite's measure of error, as its tests use it
)

SUITE = "cond_batch_norm"
DTYPES = ("float32", "bfloat16")
BACKENDS = ("cuda", "triton")
MOMENTUM = 0.1
EPS = 1e-5
SEED = 0
MODES = ("fwd", "fwd+bwd")
FLOOR_PASSES = {"fwd": 3, "fwd+bwd": 8}  # floor bytes in units of |x|
# The norm-relative error against eager a case may show, by dtype of x: of y, of the gradients, of the batch
# statistics that the running statistics took in. Eager in bfloat16 rounds every intermediate (the ccbn product,
# its gradient) to bfloat16: measured against float64 at these shapes, its y is off by 0.2-0.4%, its BigGAN dx
# and dbias by 1.2-1.8% (norm-relative), so a fused op that rounds once may differ from it by about that much.
TOLERANCE = {"float32": {"y": 1e-4, "grad": 1e-4, "stats": 1e-4},
             "float16": {"y": 4e-3, "grad": 1e-2, "stats": 1e-4},
             "bfloat16": {"y": 1.6e-2, "grad": 5e-2, "stats": 1e-4}}
SPEEDUP_TARGETS = (("eager", 2.5), ("compile", 1.2))
COPY_BW_TARGET_PCT = 80.0

# options of fastgan bench (configure)
SCALE = 1  # batch and channels divided by this (a quick check)
ALL_SHAPES = False


class Shape(NamedTuple):
    model: str  # "DCGAN-64 G" or "BigGAN-128 G"
    layers: str  # where the BN sits
    shape: tuple[int, int, int, int]  # (N, C, H, W)
    per_sample: bool  # True: (N, C) gain and bias (ccbn); False: (C,) weight and bias (BatchNorm2d)


DCGAN64_G = [
    Shape("DCGAN-64 G", "main.1 (BN after ConvT 100->512, 4x4)", (128, 512, 4, 4), False),
    Shape("DCGAN-64 G", "main.4 (BN after ConvT 512->256, 8x8)", (128, 256, 8, 8), False),
    Shape("DCGAN-64 G", "main.7 (BN after ConvT 256->128, 16x16)", (128, 128, 16, 16), False),
    Shape("DCGAN-64 G", "main.10 (BN after ConvT 128->64, 32x32)", (128, 64, 32, 32), False),
]
# BigGAN-PyTorch G_arch[128] (ch=96): in 16,16,8,4,2 x ch, out 16,8,4,2,1 x ch, resolution 8..128; each GBlock
# runs bn1 on its input (in_channels, resolution / 2) and bn2 after upsampling + conv1 (out_channels, resolution).
BIGGAN128_G = [
    Shape("BigGAN-128 G", "blocks.0 bn1", (256, 1536, 4, 4), True),
    Shape("BigGAN-128 G", "blocks.0 bn2, blocks.1 bn1", (256, 1536, 8, 8), True),
    Shape("BigGAN-128 G", "blocks.1 bn2, blocks.2 bn1", (256, 768, 16, 16), True),
    Shape("BigGAN-128 G", "blocks.2 bn2, blocks.3 bn1", (256, 384, 32, 32), True),
    Shape("BigGAN-128 G", "blocks.3 bn2, blocks.4 bn1", (256, 192, 64, 64), True),
    Shape("BigGAN-128 G", "blocks.4 bn2", (256, 96, 128, 128), True),
]
# the order cases run in (the time budget skips what is left): largest activations first, alternating models
DEFAULT_ORDER = [BIGGAN128_G[5], DCGAN64_G[3], BIGGAN128_G[2], DCGAN64_G[2], BIGGAN128_G[0], DCGAN64_G[1],
                 DCGAN64_G[0]]
EXTRA_SHAPES = [BIGGAN128_G[4], BIGGAN128_G[3], BIGGAN128_G[1]]  # with --cbn-all-shapes, after the default ones

FWD_DESC = ("fwd: 3 |x| (|x| = numel x element size): statistics pass reads x, apply pass reads x and writes y; "
            "parameters and statistics negligible")
FWD_BWD_DESC = ("fwd+bwd: 8 |x|: forward 3 |x|, backward 5 |x| (reduction pass reads dy and x, dx pass reads dy "
                "and x and writes dx)")


# ---------------------------------------------------------------- options


def add_arguments(parser) -> None:
    """The suite's options of ``fastgan bench``."""
    parser.add_argument("--cbn-scale", type=int, default=None, metavar="K",
                        help="cond_batch_norm suite: divide every batch size and channel count by K (a quick "
                             "check; default 1: the models' shapes)")
    parser.add_argument("--cbn-all-shapes", action="store_true",
                        help="cond_batch_norm suite: all six BigGAN-128 G shapes, not only the smallest, a middle "
                             "and the largest")


def configure(args) -> None:
    """Apply ``--cbn-scale`` and ``--cbn-all-shapes``."""
    global SCALE, ALL_SHAPES
    scale = getattr(args, "cbn_scale", None)
    if scale is not None:
        if scale < 1:
            raise SystemExit(f"fastgan bench: --cbn-scale must be at least 1, got {scale}")
        SCALE = scale
    ALL_SHAPES = bool(getattr(args, "cbn_all_shapes", False))


# ---------------------------------------------------------------- the functions timed


def bn_relu(x, weight, bias, running_mean, running_var):
    """``nn.BatchNorm2d`` (training) then ``nn.ReLU``: DCGAN's generator after each ConvT."""
    return F.relu(F.batch_norm(x, running_mean, running_var, weight, bias, True, MOMENTUM, EPS))


def ccbn_relu(x, gain, bias, running_mean, running_var):
    """BigGAN's ``ccbn`` (BN without affine, then per-sample gain and bias) then ReLU."""
    out = F.batch_norm(x, running_mean, running_var, None, None, True, MOMENTUM, EPS)
    return F.relu(out * gain.to(x.dtype)[:, :, None, None] + bias.to(x.dtype)[:, :, None, None])


def _op():
    """(fastgan's conditional_batch_norm, its name in the backend registry)."""
    from ...ops import cond_batch_norm as mod

    return mod.conditional_batch_norm, getattr(mod, "OP", SUITE)


def fastgan_relu(backend: str):
    """fn(x, weight, bias, running_mean, running_var): :func:`fastgan.conditional_batch_norm`, training, ReLU,
    with ``backend``."""
    op, _ = _op()

    def fn(x, weight, bias, running_mean, running_var):
        return op(x, weight, bias, running_mean, running_var, training=True, momentum=MOMENTUM, eps=EPS,
                  activation="relu", backend=backend)
    return fn


# ---------------------------------------------------------------- cases


def scaled(shape: tuple[int, int, int, int], scale: int) -> tuple[int, int, int, int]:
    """(N, C, H, W) with N and C divided by ``scale`` (at least 2 samples, 1 channel)."""
    n, c, h, w = shape
    return (max(2, n // scale), max(1, c // scale), h, w)


def shapes(all_shapes: bool | None = None) -> list[Shape]:
    """The shapes a run takes, in the order it takes them."""
    return DEFAULT_ORDER + (EXTRA_SHAPES if (ALL_SHAPES if all_shapes is None else all_shapes) else [])


def floor_bytes(shape, dtype: str, mode: str) -> int:
    """The floor of one case: 3 |x| (fwd) or 8 |x| (fwd+bwd), |x| = numel x element size."""
    return FLOOR_PASSES[mode] * math.prod(shape) * getattr(torch, dtype).itemsize


def _targets() -> list[Target]:
    out = [Target(f"x {base} >= {x:g}", record_value(f"speedup_vs_{base}"), x) for base, x in SPEEDUP_TARGETS]
    out.append(Target(f"% copy BW >= {COPY_BW_TARGET_PCT:g}", record_value("pct_copy_bw"), COPY_BW_TARGET_PCT))
    return out


def describe() -> dict:
    """The shapes, the scale, the baselines, the targets."""
    scale = SCALE
    rows = [{"model": s.model, "layers": s.layers, "shape": list(scaled(s.shape, scale)),
             "affine": "per-sample (N, C)" if s.per_sample else "per-channel (C,)"} for s in shapes()]
    targets = [t.label for t in _targets()]
    return {"scale": scale, "all_shapes": ALL_SHAPES, "shapes": rows, "targets": targets, "lines": [
        "shapes (in run order): " + ", ".join(f"{r['model']} {tuple(r['shape'])}" for r in rows)
        + (f" (batch and channels divided by {scale})" if scale > 1 else ""),
        ("eager: DCGAN F.relu(F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)); BigGAN ccbn F.relu(F.batch_norm("
         "x, rm, rv, None, None, True, 0.1, 1e-5) * gain + bias) with (N, C) gain and bias cast to the dtype of x"),
        ("compile: torch.compile(dynamic=False) of the eager function, compiled once per shape and dtype (fwd and "
         "fwd+bwd share it), outside the timings; fwd runs with x, weight and bias requiring grad"),
        "targets: " + "; ".join(targets) + " (of the fastest fastgan backend; % copy BW on the floor bytes)",
    ]}


def cases(device: str = "cuda", dtypes=DTYPES, scale: int | None = None, all_shapes: bool | None = None,
          backends=BACKENDS) -> list[Case]:
    """Per shape (largest first), dtype and mode, one case; ``backends``: the fastgan backends to time."""
    scale = SCALE if scale is None else scale
    targets = _targets()
    out = []
    for spec in shapes(all_shapes):
        shape = scaled(spec.shape, scale)
        numel = math.prod(shape)
        for dt in dtypes:
            esize = getattr(torch, dt).itemsize
            for mode in MODES:
                floor = floor_bytes(shape, dt, mode)
                params = {"op": "conditional_batch_norm", "model": spec.model, "layers": spec.layers,
                          "shape": list(shape), "model_shape": list(spec.shape),
                          "affine": "per-sample" if spec.per_sample else "per-channel", "activation": "relu",
                          "numel": numel, "element_bytes": esize, "activation_bytes": numel * esize,
                          "floor_passes": FLOOR_PASSES[mode], "tolerance": dict(TOLERANCE[dt]),
                          "eager": "ccbn_relu" if spec.per_sample else "bn_relu",
                          "targets": [t.label for t in targets]}
                name = f"{spec.model} {'ccbn' if spec.per_sample else 'BN'}+ReLU {'x'.join(map(str, shape))}"
                out.append(Case(SUITE, name, dt, mode, floor, FWD_DESC if mode == "fwd" else FWD_BWD_DESC,
                                device=device, params=params,
                                setup=functools.partial(_setup, shape, spec.per_sample, dt, device, mode,
                                                        tuple(backends)),
                                check=functools.partial(_check, shape, spec.per_sample, dt, device, mode),
                                finish=functools.partial(record_targets, targets)))
    return out


# ---------------------------------------------------------------- setup (not timed)


def inputs(shape, per_sample: bool, dtype: str, device: str) -> dict:
    """x (channel means in [-1, 1], standard deviations in [0.5, 2]), weight (gain) near 1, bias near 0, dy; made
    from SEED, so the same arguments give the same tensors."""
    gen = torch.Generator(device=device).manual_seed(SEED)
    n, c = shape[:2]
    dt = getattr(torch, dtype)
    mean = torch.rand(c, generator=gen, device=device) * 2 - 1
    std = torch.rand(c, generator=gen, device=device) * 1.5 + 0.5
    x = torch.randn(shape, generator=gen, device=device)
    x.mul_(std[:, None, None]).add_(mean[:, None, None])
    x = x.to(dt)
    pshape = (n, c) if per_sample else (c,)
    weight = 1 + 0.1 * torch.randn(pshape, generator=gen, device=device)
    bias = 0.1 * torch.randn(pshape, generator=gen, device=device)
    dy = torch.randn(shape, generator=gen, device=device).to(dt)
    return {"x": x, "weight": weight, "bias": bias, "dy": dy}


def initial_stats(c: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Running mean and variance as nn.BatchNorm2d starts them: zeros and ones, float32."""
    return torch.zeros(c, device=device), torch.ones(c, device=device)


class _Bundle:
    """The tensors of one shape and dtype, every implementation's running statistics, the compiled function."""

    def __init__(self, shape, per_sample: bool, dtype: str, device: str):
        t = inputs(shape, per_sample, dtype, device)
        self.x = t["x"].requires_grad_()
        self.weight = t["weight"].requires_grad_()
        self.bias = t["bias"].requires_grad_()
        self.dy = t["dy"]
        self.c, self.device, self.dtype = shape[1], device, dtype
        self.eager_fn = ccbn_relu if per_sample else bn_relu
        self.stats: dict = {}  # implementation -> (running_mean, running_var)
        self.compiled = None  # the compiled eager function, or the exception compiling raised
        self.compile_s: dict = {}  # "fwd" / "bwd" -> seconds its compilation took

    def running(self, name: str):
        if name not in self.stats:
            self.stats[name] = initial_stats(self.c, self.device)
        return self.stats[name]

    def reset_stats(self) -> None:
        for rm, rv in self.stats.values():
            rm.zero_()
            rv.fill_(1.0)

    def impl(self, name: str, fn, mode: str):
        """The zero-argument callable timed: fn's forward, or forward and autograd.grad (returns y and grads)."""
        rm, rv = self.running(name)
        x, w, b, dy = self.x, self.weight, self.bias, self.dy
        if mode == "fwd":
            return lambda: fn(x, w, b, rm, rv)

        def fwd_bwd():
            y = fn(x, w, b, rm, rv)
            return (y, *torch.autograd.grad(y, (x, w, b), dy))
        return fwd_bwd


def _bundle(shape, per_sample: bool, dtype: str, device: str) -> _Bundle:
    """The tensors of a shape and dtype, one set at a time: fwd+bwd reuses the fwd case's compiled function."""
    return current((SUITE, tuple(shape), per_sample, dtype, device),
                   lambda: _Bundle(shape, per_sample, dtype, device))


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _compiled(b: _Bundle, mode: str):
    """The compiled eager function, compiled now (with its backward for fwd+bwd), or the exception raised."""
    if b.compiled is None:
        try:
            t = time.perf_counter()
            c = torch.compile(b.eager_fn, dynamic=False)
            rm, rv = b.running("compile")
            c(b.x, b.weight, b.bias, rm, rv)
            _sync(b.device)
            b.compile_s["fwd"] = time.perf_counter() - t
            b.compiled = c
        except Exception as e:  # noqa: BLE001 - recorded by the runner as this implementation's error
            b.compiled = e
    if mode == "fwd+bwd" and not isinstance(b.compiled, Exception) and "bwd" not in b.compile_s:
        try:
            t = time.perf_counter()
            b.impl("compile", b.compiled, mode)()
            _sync(b.device)
            b.compile_s["bwd"] = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - as above
            b.compiled = e
    return b.compiled


def _fastgan_backends(device: str, dtype: str, backends) -> list[tuple[str, str | None]]:
    """(backend, unavailable reason or None) for each of ``backends``."""
    try:
        _, op_name = _op()
    except (ImportError, AttributeError) as e:
        why = f"fastgan.conditional_batch_norm is not importable ({type(e).__name__}: {e})"
        return [(name, why) for name in backends]
    return fastgan_backends(op_name, device, dtype, backends)


def _setup(shape, per_sample: bool, dtype: str, device: str, mode: str, backends, with_compile: bool) -> OrderedDict:
    b = _bundle(shape, per_sample, dtype, device)
    impls = OrderedDict()
    for name, why in _fastgan_backends(device, dtype, backends):
        label = f"fastgan[{name}]"
        impls[label] = Unavailable(why) if why else b.impl(label, fastgan_relu(name), mode)
    impls["eager"] = b.impl("eager", b.eager_fn, mode)
    if with_compile:
        c = _compiled(b, mode)
        impls["compile"] = c if isinstance(c, Exception) else b.impl("compile", c, mode)
    return impls


# ---------------------------------------------------------------- check and targets


_KIND = {"y": "y", "dx": "grad", "dweight": "grad", "dbias": "grad", "running_mean": "stats",
         "running_var": "stats"}
OUTPUTS = {"fwd": ("y",), "fwd+bwd": ("y", "dx", "dweight", "dbias")}


def batch_stats(running_mean: torch.Tensor, running_var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch mean and unbiased variance that one update from the initial (0, 1) folded into the running
    statistics (compared instead of the running statistics, where (1 - momentum) * 1 would hide a wrong variance)."""
    return running_mean / MOMENTUM, (running_var - (1 - MOMENTUM)) / MOMENTUM


def _check(shape, per_sample: bool, dtype: str, device: str, mode: str, impls) -> dict:
    """From the same initial running statistics, call every implementation once and compare its outputs and
    running statistics (as :func:`batch_stats`) with eager's; one off by more than TOLERANCE[dtype] fails."""
    b = _bundle(shape, per_sample, dtype, device)

    def stats(name):
        if name not in b.stats:
            return {}
        return OrderedDict(zip(("running_mean", "running_var"), batch_stats(*b.stats[name])))

    out = compare_with_reference(impls, OUTPUTS[mode], TOLERANCE[dtype], _KIND, reset=b.reset_stats, state=stats)
    if b.compile_s:
        out["compile_s"] = {k: round(v, 2) for k, v in b.compile_s.items()}
    return out
