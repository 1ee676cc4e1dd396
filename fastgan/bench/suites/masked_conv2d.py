"""Masked-convolution suite: the gated PixelCNN's convolutions with their gated units, :func:`fastgan.masked_conv2d`
(only the kept taps, the gate in the epilogue) against eager ``tanh(a) * sigmoid(b)`` of ``F.conv2d(x, w * mask,
b)`` (every tap of the kernel, then chunk, tanh, sigmoid and a product) and ``torch.compile`` of it.

Layers (batch 32 of 32x32, h = 128 features: a CIFAR-10 gated PixelCNN's width; NCHW):

* ``3x3 mask B``: the PixelCNN (2016a) layer, weight (256, 128, 3, 3) padded 1: 5 of 9 taps computed.
* ``vertical 3x5``: the gated stack's vertical convolution for k = 5, the (k//2 + 1) x k half-kernel (256, 128, 3,
  5) padded on top, plus a class bias (32, 256, 1, 1) before the gate.
* ``horizontal 1x3 mask B``: the horizontal convolution (256, 128, 1, 3) padded left, plus the vertical stack's
  contribution (32, 256, 32, 32) before the gate.

Modes fwd (the inputs requiring grad) and fwd+bwd (``autograd.grad`` w.r.t. x, weight, bias). Before timing, each
implementation's output and gradients are compared with eager's (norm-relative error, TOLERANCE by dtype).
FLOP floor: 2 N H W C_out C_in x the kept taps (fwd; x3 with the backward, which computes the same taps). Byte
floor: x, the weight, the add tensor and y once (fwd); fwd+bwd adds the backward's reads of dy, x, w and the kept
pre-activation and its writes of dx, dw. Targets: fastgan x eager >= 1.3.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..runner import Case, Unavailable
from .common import Target, compare_with_reference, current, fastgan_backends, record_targets, record_value

SUITE = "masked_conv2d"
DTYPES = ("float32", "bfloat16")
SPEEDUP_TARGET = 1.3
TOLERANCE = {"float32": 2e-3, "bfloat16": 2e-2}
SEED = 0


class Layer(NamedTuple):
    name: str
    n: int
    c_in: int
    c_out: int  # the pre-activation's channels (the gated output has half)
    size: int
    kernel: tuple[int, int]
    anchor: tuple[int, int]
    mask: str | None
    add: str | None  # None, "class" (N, C_out, 1, 1) or "vertical" (N, C_out, H, W)


LAYERS = (Layer("3x3 mask B", 32, 128, 256, 32, (3, 3), (1, 1), "B", None),
          Layer("vertical 3x5", 32, 128, 256, 32, (3, 5), (2, 2), None, "class"),
          Layer("horizontal 1x3 mask B", 32, 128, 256, 32, (1, 3), (0, 2), "B", "vertical"))


def _geom(layer: Layer):
    from ...ops import masked_conv2d_reference as ref

    return ref.Geometry(layer.kernel, layer.anchor, ref.MASKS[layer.mask], 1, True)


def _tensors(layer: Layer, dtype: str, device: str) -> dict:
    """x, the weight (y of about unit scale), bias and dy requiring grad where the backward takes them, the add
    tensor and the mask; the same arguments give the same tensors."""
    from ...ops import masked_conv2d_reference as ref

    g = torch.Generator(device=device).manual_seed(SEED)
    n, s, c = layer.n, layer.size, layer.c_out

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, device=device, generator=g) * scale).to(getattr(torch, dtype))

    t = {"x": rand(n, layer.c_in, s, s), "w": rand(c, layer.c_in, *layer.kernel,
                                                   scale=(layer.c_in * math.prod(layer.kernel)) ** -0.5),
         "b": rand(c, scale=0.1), "dy": rand(n, c // 2, s, s)}
    t["add"] = {None: None, "class": (n, c, 1, 1), "vertical": (n, c, s, s)}[layer.add]
    if t["add"] is not None:
        t["add"] = rand(*t["add"])
    for k in ("x", "w", "b"):
        t[k].requires_grad_(True)
    t["mask"] = ref.mask(t["w"], _geom(layer))
    return t


def eager(layer: Layer, t: dict):
    """The eager layer: F.conv2d of the padded x with the masked weight (every tap), + add, then the gate."""
    pad = _geom(layer).padding

    def fn(x, w, b):
        pre = F.conv2d(F.pad(x, pad), w * t["mask"], b)
        if t["add"] is not None:
            pre = pre + t["add"]
        a, g = pre.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(g)
    return fn


def fastgan_layer(layer: Layer, t: dict, backend: str):
    from ...ops.masked_conv2d import masked_conv2d

    def fn(x, w, b):
        return masked_conv2d(x, w, b, mask=layer.mask, anchor=layer.anchor, gate=True, add=t["add"], backend=backend)
    return fn


def _timed(fn, t: dict, mode: str):
    if mode == "fwd":
        return lambda: fn(t["x"], t["w"], t["b"])
    return lambda: (lambda y: [y.detach(), *torch.autograd.grad(y, (t["x"], t["w"], t["b"]), t["dy"])])(
        fn(t["x"], t["w"], t["b"]))


def _setup(layer, dtype, device, mode, backends, with_compile):
    t = current((SUITE, layer, dtype, device), lambda: _tensors(layer, dtype, device))
    impls = OrderedDict()
    for name, why in fastgan_backends("masked_conv2d", device, dtype, backends):
        impls[f"fastgan[{name}]"] = Unavailable(why) if why else _timed(fastgan_layer(layer, t, name), t, mode)
    impls["eager"] = _timed(eager(layer, t), t, mode)
    if with_compile:
        impls["compile"] = _timed(torch.compile(eager(layer, t), dynamic=False), t, mode)
    return impls


def _check(layer, dtype, device, mode, impls):
    tol = TOLERANCE[dtype]
    outputs = "y" if mode == "fwd" else ("y", "dx", "dw", "db")
    kinds = {k: "all" for k in ("y", "dx", "dw", "db")}
    return compare_with_reference(impls, outputs, {"all": tol}, kinds)


def taps(layer: Layer) -> int:
    return _geom(layer).taps


def floor_flops(layer: Layer, mode: str) -> int:
    fwd = 2 * layer.n * layer.size ** 2 * layer.c_out * layer.c_in * taps(layer)
    return fwd * (3 if mode == "fwd+bwd" else 1)


def floor_bytes(layer: Layer, dtype: str, mode: str) -> int:
    e = getattr(torch, dtype).itemsize
    px = layer.n * layer.size ** 2
    x, w, y = px * layer.c_in, layer.c_out * layer.c_in * math.prod(layer.kernel), px * layer.c_out // 2
    add = {None: 0, "class": layer.n * layer.c_out, "vertical": px * layer.c_out}[layer.add]
    fwd = x + w + y + add
    if mode == "fwd":
        return e * fwd
    # forward keeping pre (2 y), backward: dy, pre, x, w read; dx, dw written
    return e * (fwd + 2 * y + y + 2 * y + x + w + x + w)


def describe() -> dict:
    return {"layers": [layer._asdict() for layer in LAYERS], "lines": [
        "layers: " + "; ".join(f"{ly.name} x ({ly.n}, {ly.c_in}, {ly.size}, {ly.size}) w ({ly.c_out}, {ly.c_in}, "
                               f"{ly.kernel[0]}, {ly.kernel[1]}) taps {taps(ly)}" for ly in LAYERS),
        "eager: tanh(a) * sigmoid(b) of F.conv2d(F.pad(x), w * mask, b) (+ add); compile: torch.compile of it",
        f"target: fastgan x eager >= {SPEEDUP_TARGET:g}; the FLOP floor counts the kept taps only"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("triton",)) -> list[Case]:
    targets = [Target(f"x eager >= {SPEEDUP_TARGET:g}", record_value("speedup_vs_eager"), SPEEDUP_TARGET)]
    out = []
    for layer in LAYERS:
        for dt in dtypes:
            for mode in ("fwd", "fwd+bwd"):
                out.append(Case(SUITE, f"PixelCNN {layer.name} gated {layer.n}x{layer.c_in}x{layer.size}x{layer.size}",
                                dt, mode, floor_bytes(layer, dt, mode),
                                "x, w, add, y once" + ("" if mode == "fwd" else "; backward reads dy, pre, x, w and "
                                                       "writes dx, dw"),
                                device=device, floor_flops=floor_flops(layer, mode), rate_reference="eager",
                                params={"layer": layer.name, "taps": taps(layer), "kernel": list(layer.kernel),
                                        "targets": [targets[0].label], "tolerance": TOLERANCE[dt]},
                                setup=functools.partial(_setup, layer, dt, device, mode, tuple(backends)),
                                check=functools.partial(_check, layer, dt, device, mode),
                                finish=functools.partial(record_targets, targets)))
    return out
