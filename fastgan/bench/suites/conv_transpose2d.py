"""Transposed-convolution suite: :func:`fastgan.conv_transpose2d` at the layers of two generators, and
:func:`fastgan.upsample_conv2d` at a BigGAN-style upsampling convolution.

Layers (NCHW, contiguous; k4, groups 1, dilation 1; C_in -> C_out, input -> output size):

* DCGAN-64 G (pytorch/examples ``dcgan``, nz=100, ngf=64, nc=3), batch 128: ``main.0`` 100->512 s1 p0 (1 -> 4),
  ``main.3`` 512->256, ``main.6`` 256->128, ``main.9`` 128->64 s2 p1 (4 -> 8, 8 -> 16, 16 -> 32), each
  ``bias=False`` then BatchNorm2d + ReLU; ``main.12`` 64->3 s2 p1 (32 -> 64) + tanh.
* VAE-64 decoder (a common convolutional VAE for 64x64 images: the latent through a linear layer reshaped to
  (N, 256, 4, 4)), batch 128: ``dec.0`` 256->128, ``dec.3`` 128->64, ``dec.6`` 64->32 s2 p1 (4 -> 8 -> 16 -> 32),
  each ``bias=False`` then BatchNorm2d + ReLU; ``dec.9`` 32->3 s2 p1 (32 -> 64) + sigmoid.
* BigGAN-style G block ``conv1``, batch 64: nearest x2 then a 3x3 conv 256->256 with bias, 16 -> 32.

Run order (the time budget skips what is left): main.9, main.6, main.12, dec.6, the upsampling, main.3, dec.9,
main.0; ``--ct-all-layers`` adds dec.0 and dec.3 (main.3's and main.6's shapes at half the channels).

Parts, per layer and dtype (float32, bfloat16; batch-norm parameters and running statistics float32), each
implementation ``fastgan[triton]`` vs ``eager`` (cuDNN's convolutions on a GPU):

* kernel (fwd): the convolution alone (no bias, no autograd) vs ``F.conv_transpose2d``. Target x eager >= 0.9.
* conv+bias+act: with a bias and the layer's activation fused (ReLU where a batch norm follows, else its tanh or
  sigmoid) vs ``F.conv_transpose2d`` then the activation; fwd (x, weight, bias requiring grad) and, for the last
  layers, fwd+bwd (``autograd.grad`` w.r.t. x, weight, bias). Target x eager >= 1.3.
* block (the layers with a batch norm), what ``fastgan.nn.ConvTransposeBNAct`` runs in training:
  ``conv_transpose2d(..., bn_stats=True)`` then ``conditional_batch_norm(y, w, b, rm, rv, training=True,
  activation="relu", stats=stats)`` (batch norm on the default backend, as the module runs it) vs
  ``F.relu(F.batch_norm(F.conv_transpose2d(x, w), rm, rv, w_bn, b_bn, True, 0.1, 1e-5))`` and ``compile``
  (``torch.compile(dynamic=False)`` of it, once per layer and dtype, in the setup of the fwd case, which the budget
  counts); fwd and fwd+bwd (w.r.t. x, the conv weight, the BN weight and bias). Targets x eager >= 1.5, x compile
  >= 1.1.
* upsample+conv: ``upsample_conv2d`` (one stride-2 transposed convolution with merged 4x4 weights) vs
  ``F.conv2d(F.interpolate(x, scale_factor=2), w, b, padding=1)``; fwd and fwd+bwd; no target.

Before a case is timed, every implementation's outputs (y; the gradients; the block's batch statistics as folded
into its running statistics) are compared with eager's (norm-relative error, TOLERANCE by dtype); one outside the
tolerance is flagged and not timed.

FLOP floor: the dense work 2 N C_in C_out/groups H_in W_in kH kW (the upsampling: of its merged k4 s2 form, 2.25x
less than eager's 3x3 conv on the upsampled map); fwd+bwd 3x (dx and dweight as much again each). TFLOP/s: that
over each time, set on a GPU next to the dense peak measured with a matrix product of the dtype (float32: TF32,
which cuDNN and the Triton kernel use where ``torch.backends.cudnn.allow_tf32``, PyTorch's default). The phase
kernel's own work (``conv_transpose2d_plan.macs``: taps outside the input counted) is in params: the floor for k4
s2 p1, 16x it for main.0 (1x1 input). Byte floors: FLOORS. Without a CUDA device, the report lists each
case's floors and their times at datasheet bandwidth and dense peak.
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
from .cond_batch_norm import MOMENTUM, batch_stats  # batch norm's momentum, and the batch statistics it folds in

SUITE = "conv_transpose2d"
DTYPES = ("float32", "bfloat16")
BACKENDS = ("triton",)
EPS = 1e-5
SEED = 0
UPSAMPLE_K = 4  # the merged kernel of nearest x2 + a 3x3 conv (conv_transpose2d_plan.upsample_conv(3): K = 4, P = 1)
# Norm-relative error against eager, by dtype. float32: both sides use TF32 products on a GPU (cuDNN and the Triton
# kernel, as torch.backends.cudnn.allow_tf32 allows), rounding x and w to 10-bit mantissas, perhaps differently
# (about 5e-4 each from exact). bfloat16: y rounded to 8 bits, sums in another order; the upsampling's merged
# weights are rounded once more (measured on the CPU: 0.3-0.4%).
TOLERANCE = {"float32": {"y": 2e-3, "grad": 2e-3, "stats": 2e-3},
             "bfloat16": {"y": 2e-2, "grad": 5e-2, "stats": 2e-2}}
TARGETS = {"kernel": (("eager", 0.9),), "conv+bias+act": (("eager", 1.3),),
           "block": (("eager", 1.5), ("compile", 1.1)), "upsample+conv": ()}

# options of fastgan bench (configure)
SCALE = 1  # batch and channels divided by this (a quick check)
ALL_LAYERS = False


class Layer(NamedTuple):
    model: str
    name: str  # the module's name in the model
    n: int
    c_in: int
    c_out: int
    size: int  # input height = width
    kernel: int  # the ConvT's (for the upsampling: the 3x3 conv's)
    stride: int
    padding: int
    act: str | None  # "relu" where a batch norm follows (bn), else the layer's own
    bn: bool
    upsample: bool = False


_DC, _VAE = "DCGAN-64 G", "VAE-64 decoder"
DCGAN64_G = [Layer(_DC, "main.0", 128, 100, 512, 1, 4, 1, 0, "relu", True),
             Layer(_DC, "main.3", 128, 512, 256, 4, 4, 2, 1, "relu", True),
             Layer(_DC, "main.6", 128, 256, 128, 8, 4, 2, 1, "relu", True),
             Layer(_DC, "main.9", 128, 128, 64, 16, 4, 2, 1, "relu", True),
             Layer(_DC, "main.12", 128, 64, 3, 32, 4, 2, 1, "tanh", False)]
VAE64_DECODER = [Layer(_VAE, "dec.0", 128, 256, 128, 4, 4, 2, 1, "relu", True),
                 Layer(_VAE, "dec.3", 128, 128, 64, 8, 4, 2, 1, "relu", True),
                 Layer(_VAE, "dec.6", 128, 64, 32, 16, 4, 2, 1, "relu", True),
                 Layer(_VAE, "dec.9", 128, 32, 3, 32, 4, 2, 1, "sigmoid", False)]
BIGGAN_UPSAMPLE = Layer("BigGAN-style G block", "conv1", 64, 256, 256, 16, 3, 1, 1, None, False, True)
DEFAULT_ORDER = [DCGAN64_G[3], DCGAN64_G[2], DCGAN64_G[4], VAE64_DECODER[2], BIGGAN_UPSAMPLE, DCGAN64_G[1],
                 VAE64_DECODER[3], DCGAN64_G[0]]
EXTRA_LAYERS = [VAE64_DECODER[0], VAE64_DECODER[1]]  # with --ct-all-layers, after the default ones

# (part, mode) -> ((coefficients of |x|, |w|, |b|, |y|), how the floor is counted); |t| = numel x element size
FLOORS = {
    ("kernel", "fwd"): ((1, 1, 0, 1), "kernel fwd: |x| + |w| + |y| (each read or written once)"),
    ("conv+bias+act", "fwd"): ((1, 1, 1, 1), "conv+bias+act fwd: |x| + |w| + |b| + |y|"),
    ("conv+bias+act", "fwd+bwd"): ((3, 3, 2, 3), "conv+bias+act fwd+bwd: 3 (|x| + |w| + |y|) + 2 |b|: forward, then "
                                   "the backward reads dy, y (the activation's derivative), x and w and writes dx, "
                                   "dw, db"),
    ("block", "fwd"): ((1, 1, 0, 3), "block fwd: |x| + |w| + 3 |y|: the convolution (its epilogue makes the batch "
                       "statistics), then batch norm's apply pass reads y and writes the output (eager reads y once "
                       "more for the statistics)"),
    ("block", "fwd+bwd"): ((3, 3, 0, 10), "block fwd+bwd: 3 |x| + 3 |w| + 10 |y|: forward 3 |y|; batch norm's "
                           "backward 5 |y| (reduction pass reads dy and y, dx pass reads them again and writes dy of "
                           "the conv); dx reads it and w and writes dx, dw reads it and x and writes dw"),
    ("upsample+conv", "fwd"): ((1, 1, 1, 1), "upsample+conv fwd: |x| + |w| + |b| + |y| (no upsampled map in memory)"),
    ("upsample+conv", "fwd+bwd"): ((3, 3, 2, 2), "upsample+conv fwd+bwd: 3 |x| + 3 |w| + 2 |b| + 2 |y|"),
}


# ---------------------------------------------------------------- options


def add_arguments(parser) -> None:
    """The suite's options of ``fastgan bench``."""
    parser.add_argument("--ct-scale", type=int, default=None, metavar="K",
                        help="conv_transpose2d suite: divide every batch size and channel count by K (a quick "
                             "check; default 1: the models' shapes)")
    parser.add_argument("--ct-all-layers", action="store_true",
                        help="conv_transpose2d suite: also the VAE decoder's dec.0 and dec.3")


def configure(args) -> None:
    """Apply ``--ct-scale`` and ``--ct-all-layers``."""
    global SCALE, ALL_LAYERS
    scale = getattr(args, "ct_scale", None)
    if scale is not None:
        if scale < 1:
            raise SystemExit(f"fastgan bench: --ct-scale must be at least 1, got {scale}")
        SCALE = scale
    ALL_LAYERS = bool(getattr(args, "ct_all_layers", False))


# ---------------------------------------------------------------- shapes, floors


def scaled(layer: Layer, scale: int) -> Layer:
    """The layer with its batch (at least 2) and channels (at least 1; 3 image channels kept) divided by ``scale``."""
    def ch(c):
        return c if c <= 3 else max(1, c // scale)
    return layer._replace(n=max(2, layer.n // scale), c_in=ch(layer.c_in), c_out=ch(layer.c_out))


def layers(all_layers: bool | None = None) -> list[Layer]:
    """The layers a run takes, in the order it takes them."""
    return DEFAULT_ORDER + (EXTRA_LAYERS if (ALL_LAYERS if all_layers is None else all_layers) else [])


def parts(layer: Layer) -> list[tuple[str, str]]:
    """(part, mode) of the cases of a layer, in run order."""
    if layer.upsample:
        return [("upsample+conv", "fwd"), ("upsample+conv", "fwd+bwd")]
    if layer.bn:
        return [("kernel", "fwd"), ("conv+bias+act", "fwd"), ("block", "fwd"), ("block", "fwd+bwd")]
    return [("kernel", "fwd"), ("conv+bias+act", "fwd"), ("conv+bias+act", "fwd+bwd")]


def shapes(layer: Layer) -> dict:
    """x, weight and y shapes (the weight as the op takes it: ConvT (C_in, C_out, k, k), conv2d (C_out, C_in, k, k))."""
    k = layer.kernel
    o = 2 * layer.size if layer.upsample else (layer.size - 1) * layer.stride - 2 * layer.padding + k
    w = (layer.c_out, layer.c_in, k, k) if layer.upsample else (layer.c_in, layer.c_out, k, k)
    return {"x": (layer.n, layer.c_in, layer.size, layer.size), "weight": w, "y": (layer.n, layer.c_out, o, o)}


def floor_flops(layer: Layer, mode: str) -> int:
    """2 N C_in C_out H_in W_in kH kW (the upsampling: of its merged 4x4 form); x3 for fwd+bwd."""
    k = UPSAMPLE_K if layer.upsample else layer.kernel
    fwd = 2 * layer.n * layer.c_in * layer.c_out * layer.size * layer.size * k * k
    return fwd * (3 if mode == "fwd+bwd" else 1)


def floor_bytes(layer: Layer, dtype: str, part: str, mode: str) -> int:
    """The byte floor FLOORS[(part, mode)] describes."""
    s, e = shapes(layer), getattr(torch, dtype).itemsize
    sizes = (math.prod(s["x"]), math.prod(s["weight"]), layer.c_out, math.prod(s["y"]))
    return e * sum(c * n for c, n in zip(FLOORS[(part, mode)][0], sizes))


def kernel_macs(layer: Layer) -> int:
    """Multiply-adds of the phase kernel's forward (``conv_transpose2d_plan.macs``)."""
    from ...ops import conv_transpose2d_plan as plan

    if layer.upsample:
        _, pad = plan.upsample_conv(layer.kernel)
        k, stride = UPSAMPLE_K, 2
    else:
        k, stride, pad = layer.kernel, layer.stride, layer.padding
    geom = plan.geometry(shapes(layer)["x"], (layer.c_in, layer.c_out, k, k), stride, pad)
    return plan.macs(geom, layer.n, layer.c_in, layer.c_out)


def _targets(part: str) -> list[Target]:
    return [Target(f"x {base} >= {x:g}", record_value(f"speedup_vs_{base}"), x) for base, x in TARGETS[part]]


def describe() -> dict:
    """The layers, the scale, the baselines, the targets."""
    rows = [{"model": ly.model, "layer": ly.name, "x": list(shapes(ly)["x"]), "weight": list(shapes(ly)["weight"]),
             "y": list(shapes(ly)["y"]), "stride": ly.stride, "padding": ly.padding, "activation": ly.act,
             "batch_norm": ly.bn, "upsample": ly.upsample} for ly in (scaled(s, SCALE) for s in layers())]
    targets = {p: [t.label for t in _targets(p)] for p in TARGETS}
    return {"scale": SCALE, "all_layers": ALL_LAYERS, "layers": rows, "targets": targets, "lines": [
        "layers (in run order): " + ", ".join(f"{r['model']} {r['layer']} {tuple(r['x'])}->{tuple(r['y'])}"
                                              for r in rows)
        + (f" (batch and channels divided by {SCALE})" if SCALE > 1 else ""),
        ("eager: F.conv_transpose2d (cuDNN on a GPU); conv+bias+act then the activation; block F.relu(F.batch_norm("
         "conv, rm, rv, w, b, True, 0.1, 1e-5)); upsample F.conv2d(F.interpolate(x, scale_factor=2), w, b, "
         "padding=1); compile: torch.compile(dynamic=False) of the eager block, once per layer and dtype"),
        "targets: " + "; ".join(f"{p} {', '.join(t)}" for p, t in targets.items() if t)
        + " (of the fastest fastgan backend); TFLOP/s on the FLOP floor",
    ]}


def cases(device: str = "cuda", dtypes=DTYPES, scale: int | None = None, all_layers: bool | None = None,
          backends=BACKENDS) -> list[Case]:
    """Per layer (in run order), dtype, part and mode, one case; ``backends``: the fastgan backends to time."""
    scale = SCALE if scale is None else scale
    out = []
    for spec in layers(all_layers):
        layer = scaled(spec, scale)
        s = shapes(layer)
        macs = kernel_macs(layer)
        for dt in dtypes:
            for part, mode in parts(layer):
                targets = _targets(part)
                flops = floor_flops(layer, mode)
                params = {"op": "upsample_conv2d" if layer.upsample else "conv_transpose2d", "model": layer.model,
                          "layer": layer.name, "part": part, "x": list(s["x"]), "weight": list(s["weight"]),
                          "y": list(s["y"]), "model_x": list(shapes(spec)["x"]), "stride": layer.stride,
                          "padding": layer.padding, "kernel": layer.kernel, "batch_norm": part == "block",
                          "bias": part in ("conv+bias+act", "upsample+conv"),
                          "activation": None if part == "kernel" else layer.act,
                          "element_bytes": getattr(torch, dt).itemsize, "floor_flops": flops,
                          "phase_kernel_flops": 2 * macs, "tolerance": dict(TOLERANCE[dt]),
                          "targets": [t.label for t in targets]}
                name = (f"{layer.model} {layer.name} {'x'.join(map(str, s['x']))}->{'x'.join(map(str, s['y'][1:]))} "
                        + {"conv+bias+act": f"conv+bias+{layer.act}", "block": "ConvT+BN+ReLU",
                           "upsample+conv": "upsample+conv3x3"}.get(part, part))
                out.append(Case(SUITE, name, dt, mode, floor_bytes(layer, dt, part, mode), FLOORS[(part, mode)][1],
                                device=device, params=params, floor_flops=flops,
                                baselines=("eager", "compile") if part == "block" else ("eager",),
                                rate_reference="eager",
                                setup=functools.partial(_setup, layer, dt, device, part, mode, tuple(backends)),
                                check=functools.partial(_check, layer, dt, device, part, mode),
                                finish=functools.partial(record_targets, targets)))
    return out


# ---------------------------------------------------------------- the functions timed


def _act(name: str | None):
    return {None: lambda y: y, "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[name]


def eager_conv(layer: Layer, act: str | None = None):
    """fn(x, weight, bias): eager F.conv_transpose2d (or the upsampling and conv2d), then ``act``."""
    f = _act(act)
    if layer.upsample:
        return lambda x, w, b: f(F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b,
                                          padding=layer.kernel // 2))
    return lambda x, w, b: f(F.conv_transpose2d(x, w, b, layer.stride, layer.padding))


def eager_block(layer: Layer):
    """fn(x, weight, bn_weight, bn_bias, running_mean, running_var): ConvT -> BatchNorm2d (training) -> ReLU."""
    def block(x, w, bn_w, bn_b, rm, rv):
        y = F.conv_transpose2d(x, w, None, layer.stride, layer.padding)
        return F.relu(F.batch_norm(y, rm, rv, bn_w, bn_b, True, MOMENTUM, EPS))
    return block


def fastgan_conv(layer: Layer, backend: str, act: str | None = None):
    """fn(x, weight, bias): :func:`fastgan.conv_transpose2d` (or :func:`fastgan.upsample_conv2d`) with ``act``."""
    # (fastgan.ops.conv_transpose2d is the function, which shadows its module there: import from the module)
    from ...ops.conv_transpose2d import conv_transpose2d, upsample_conv2d

    if layer.upsample:
        return lambda x, w, b: upsample_conv2d(x, w, b, activation=act, backend=backend)
    return lambda x, w, b: conv_transpose2d(x, w, b, layer.stride, layer.padding, activation=act, backend=backend)


def fastgan_block(layer: Layer, backend: str):
    """The block as ``fastgan.nn.ConvTransposeBNAct`` runs it in training: the batch statistics from the
    convolution's epilogue (on ``backend``), batch norm + ReLU in one op (on the default backend, as the module
    runs it: CUDA where the extension is built, else Triton)."""
    from ...ops.cond_batch_norm import conditional_batch_norm
    from ...ops.conv_transpose2d import conv_transpose2d

    def block(x, w, bn_w, bn_b, rm, rv):
        y, stats = conv_transpose2d(x, w, None, layer.stride, layer.padding, bn_stats=True, backend=backend)
        return conditional_batch_norm(y, bn_w, bn_b, rm, rv, training=True, momentum=MOMENTUM, eps=EPS,
                                      activation="relu", stats=stats)
    return block


# ---------------------------------------------------------------- setup (not timed)


def inputs(layer: Layer, dtype: str, device: str) -> dict:
    """x (channel means in [-0.5, 0.5], so y has channel means too), weight (y of about unit scale), bias, the batch
    norm's weight near 1 and bias near 0 (float32), dy; made from SEED: the same arguments give the same tensors."""
    gen = torch.Generator(device=device).manual_seed(SEED)
    s, dt = shapes(layer), getattr(torch, dtype)

    def randn(*shape):
        return torch.randn(shape, generator=gen, device=device)

    x = randn(*s["x"]).add_(randn(layer.c_in)[:, None, None].clamp_(-1, 1) * 0.5).to(dt)
    fan = layer.c_in * layer.kernel ** 2 / (1 if layer.upsample else layer.stride ** 2)
    weight = (randn(*s["weight"]) / math.sqrt(fan)).to(dt)
    bias = (0.1 * randn(layer.c_out)).to(dt)
    bn_weight, bn_bias = 1 + 0.1 * randn(layer.c_out), 0.1 * randn(layer.c_out)
    return {"x": x, "weight": weight, "bias": bias, "bn_weight": bn_weight, "bn_bias": bn_bias,
            "dy": randn(*s["y"]).to(dt)}


class _Bundle:
    """The tensors of one layer and dtype, every implementation's running statistics, the compiled block."""

    def __init__(self, layer: Layer, dtype: str, device: str):
        t = inputs(layer, dtype, device)
        self.t = {k: v.requires_grad_() if k != "dy" else v for k, v in t.items()}
        self.layer, self.device = layer, device
        self.stats: dict = {}  # implementation -> (running_mean, running_var)
        self.compiled = None  # the compiled eager block, or the exception compiling raised
        self.compile_s: dict = {}  # "fwd" / "bwd" -> seconds its compilation took

    def running(self, name: str):
        if name not in self.stats:
            self.stats[name] = (torch.zeros(self.layer.c_out, device=self.device),
                                torch.ones(self.layer.c_out, device=self.device))
        return self.stats[name]

    def reset_stats(self) -> None:
        for rm, rv in self.stats.values():
            rm.zero_()
            rv.fill_(1.0)

    def impl(self, name: str, fn, part: str, mode: str):
        """The zero-argument callable timed: fn's forward, or forward and autograd.grad (returns y and grads)."""
        t = self.t
        if part == "kernel":
            x, w = t["x"].detach(), t["weight"].detach()
            return lambda: fn(x, w, None)
        if part == "block":
            rm, rv = self.running(name)
            args, wrt = (t["x"], t["weight"], t["bn_weight"], t["bn_bias"], rm, rv), ("x", "weight", "bn_weight",
                                                                                     "bn_bias")
        else:
            args, wrt = (t["x"], t["weight"], t["bias"]), ("x", "weight", "bias")
        if mode == "fwd":
            return lambda: fn(*args)
        grads_of, dy = tuple(t[k] for k in wrt), t["dy"]

        def fwd_bwd():
            y = fn(*args)
            return (y, *torch.autograd.grad(y, grads_of, dy))
        return fwd_bwd


def _bundle(layer: Layer, dtype: str, device: str) -> _Bundle:
    """The tensors of a layer and dtype, one set at a time: a layer's cases are consecutive and share them."""
    return current((SUITE, layer, dtype, device), lambda: _Bundle(layer, dtype, device))


def _compiled(b: _Bundle, mode: str):
    """The compiled eager block, compiled now (with its backward for fwd+bwd), or the exception raised."""
    for step in ("fwd", "bwd")[:2 if mode == "fwd+bwd" else 1]:
        if isinstance(b.compiled, Exception) or step in b.compile_s:
            continue
        try:
            t = time.perf_counter()
            b.compiled = b.compiled or torch.compile(eager_block(b.layer), dynamic=False)
            b.impl("compile", b.compiled, "block", "fwd" if step == "fwd" else "fwd+bwd")()
            if torch.device(b.device).type == "cuda":
                torch.cuda.synchronize()
            b.compile_s[step] = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - recorded by the runner as this implementation's error
            b.compiled = e
    return b.compiled


def _fastgan_backends(device: str, dtype: str, backends, part: str) -> list[tuple[str, str | None]]:
    """(backend, unavailable reason or None) for each of ``backends`` (the block: both of its ops must run)."""
    try:
        from ...ops.cond_batch_norm import OP as BN_OP
        from ...ops.conv_transpose2d import OP as CT_OP
    except ImportError as e:
        why = f"fastgan.conv_transpose2d is not importable ({type(e).__name__}: {e})"
        return [(name, why) for name in backends]
    ops = [CT_OP] + ([BN_OP] if part == "block" else [])
    out = []
    for name in backends:
        whys = [why for op in ops for _, why in fastgan_backends(op, device, dtype, (name,)) if why]
        out.append((name, whys[0] if whys else None))
    return out


def _setup(layer: Layer, dtype: str, device: str, part: str, mode: str, backends, with_compile: bool) -> OrderedDict:
    b = _bundle(layer, dtype, device)
    act = None if part == "kernel" else layer.act
    impls = OrderedDict()
    for name, why in _fastgan_backends(device, dtype, backends, part):
        label = f"fastgan[{name}]"
        fn = fastgan_block(layer, name) if part == "block" else fastgan_conv(layer, name, act)
        impls[label] = Unavailable(why) if why else b.impl(label, fn, part, mode)
    impls["eager"] = b.impl("eager", eager_block(layer) if part == "block" else eager_conv(layer, act), part, mode)
    if with_compile and part == "block":
        c = _compiled(b, mode)
        impls["compile"] = c if isinstance(c, Exception) else b.impl("compile", c, part, mode)
    return impls


# ---------------------------------------------------------------- check


_KIND = {"y": "y", "dx": "grad", "dweight": "grad", "dbias": "grad", "dbn_weight": "grad", "dbn_bias": "grad",
         "running_mean": "stats", "running_var": "stats"}


def outputs(part: str, mode: str) -> tuple[str, ...]:
    """The names of what a case's implementations return."""
    if mode == "fwd":
        return ("y",)
    return ("y", "dx", "dweight", "dbn_weight", "dbn_bias") if part == "block" else ("y", "dx", "dweight", "dbias")


def _check(layer: Layer, dtype: str, device: str, part: str, mode: str, impls) -> dict:
    """Call every implementation once (the block: from the same initial running statistics) and compare its
    outputs (and the block's batch statistics, as :func:`batch_stats`) with eager's, within TOLERANCE[dtype]."""
    b = _bundle(layer, dtype, device)

    def stats(name):
        if part != "block" or name not in b.stats:
            return {}
        return OrderedDict(zip(("running_mean", "running_var"), batch_stats(*b.stats[name])))

    out = compare_with_reference(impls, outputs(part, mode), TOLERANCE[dtype], _KIND, reset=b.reset_stats,
                                 state=stats)
    if b.compile_s and part == "block":
        out["compile_s"] = {k: round(v, 2) for k, v in b.compile_s.items()}
    return out
