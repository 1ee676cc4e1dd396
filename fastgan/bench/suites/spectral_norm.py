"""Spectral-norm suite: every spectral-normed weight of a discriminator, as one group, per training step.

Implementations: ``fastgan[cuda]`` and ``fastgan[triton]`` (:func:`fastgan.spectral_normalize` on the whole group),
``eager`` (one ``torch.nn.utils.parametrizations.spectral_norm`` per weight, train mode) and ``compile``
(``torch.compile`` of that eager code, default mode). Two kinds of case per weight set and dtype:

* spectral_normalize, fwd and fwd+bwd: power iteration, then W / sigma for every weight; fwd+bwd adds
  ``autograd.grad`` of sum((W_i / sigma_i) * R_i) with fixed random R_i;
* power iteration only: two mv + normalize per weight and sigma = u . W v (fastgan:
  :func:`fastgan.spectral_norm_power_iteration_`).

Before a case is timed, every implementation is called once from the same u and v (those of the eager modules, as
spectral_norm made them) and its results (sigma, or every W / sigma and, in fwd+bwd, every weight gradient) and the
u and v it leaves are compared with eager's (norm-relative error, the largest over the weights; tolerance by dtype,
TOLERANCE). An implementation outside the tolerance is reported as failed, with its error, and not timed.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..runner import Case, Unavailable
from .common import compare_with_reference, current, fastgan_backends

SUITE = "spectral_norm"
OP = "spectral_norm"
DTYPES = ("float32", "bfloat16")
BACKENDS = ("cuda", "triton")
EPS = 1e-12
# The norm-relative error against eager an implementation may show, by dtype of the weights: of its outputs (sigma,
# or every W / sigma), of the weight gradients, of u and v after the call (the largest over the weights). fastgan
# keeps u, v and sigma in float32; eager keeps them in the weight dtype and rounds every step (mv, normalize, vdot,
# W / sigma) to it. Measured on the CPU, fastgan's reference backend against eager at the SNGAN-32 and SNGAN-128 D
# weights: float32 0 (the same operations), bfloat16 sigma, u, v 3-4e-3, W / sigma 5-6e-3, dW 5-7e-3.
TOLERANCE = {"float32": {"out": 1e-4, "grad": 1e-4, "state": 1e-4},
             "float16": {"out": 4e-3, "grad": 8e-3, "state": 4e-3},
             "bfloat16": {"out": 2e-2, "grad": 3e-2, "state": 2e-2}}
_KIND = {"sigma": "out", "W/sigma": "out", "dW": "grad", "u": "state", "v": "state"}
OUTPUTS = {"power_iteration": "sigma", "fwd": "W/sigma", "fwd+bwd": ("W/sigma", "dW")}


def _conv(cout: int, cin: int, k: int) -> tuple[int, int, int, int]:
    return (cout, cin, k, k)


# Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks", table 3: the standard CNN
# discriminator for CIFAR-10 (M_g = 4), seven convolutions and the final linear layer on 4*4*512 features.
SNGAN32_D = [_conv(64, 3, 3), _conv(64, 64, 4), _conv(128, 64, 3), _conv(128, 128, 4), _conv(256, 128, 3),
             _conv(256, 256, 4), _conv(512, 256, 3), (1, 8192)]


def _sngan_block(cin: int, cout: int, downsample: bool = True, optimized: bool = False) -> list[tuple]:
    # pfnet-research/sngan_projection, dis_models/resblocks.py. Block: c1 in->in 3x3 (hidden = in), c2 in->out
    # 3x3, c_sc in->out 1x1 when in != out or downsampling. OptimizedBlock (the first): c1 in->out, c2 out->out,
    # c_sc in->out 1x1.
    if optimized:
        return [_conv(cout, cin, 3), _conv(cout, cout, 3), _conv(cout, cin, 1)]
    shapes = [_conv(cin, cin, 3), _conv(cout, cin, 3)]
    if cin != cout or downsample:
        shapes.append(_conv(cout, cin, 1))
    return shapes


# pfnet-research/sngan_projection, dis_models/snresnet.py, SNResNetProjectionDiscriminator (128x128, ch=64):
# blocks 3->ch (optimized), ch->2ch, 2ch->4ch, 4ch->8ch, 8ch->16ch, 16ch->16ch (no downsample), then
# l7 = SNLinear(16ch, 1) and the projection l_y = SNEmbedID(1000, 16ch).
SNGAN128_D = [*_sngan_block(3, 64, optimized=True), *_sngan_block(64, 128), *_sngan_block(128, 256),
              *_sngan_block(256, 512), *_sngan_block(512, 1024), *_sngan_block(1024, 1024, downsample=False),
              (1, 1024), (1000, 1024)]


def _biggan_dblock(cin: int, cout: int, downsample: bool = True) -> list[tuple]:
    # ajbrock/BigGAN-PyTorch, layers.py DBlock with D_wide=True (hidden = out): conv1 in->out 3x3, conv2
    # out->out 3x3, conv_sc in->out 1x1 when in != out or downsampling.
    shapes = [_conv(cout, cin, 3), _conv(cout, cout, 3)]
    if cin != cout or downsample:
        shapes.append(_conv(cout, cin, 1))
    return shapes


def _biggan_attention(c: int) -> list[tuple]:
    # ajbrock/BigGAN-PyTorch, layers.py Attention: theta, phi C->C/8, g C->C/2, o C/2->C, all 1x1.
    return [_conv(c // 8, c, 1), _conv(c // 8, c, 1), _conv(c // 2, c, 1), _conv(c, c // 2, 1)]


# ajbrock/BigGAN-PyTorch, BigGAN.py D_arch[128] with D_ch=96, D_attn='64': blocks 3->96, 96->192, 192->384,
# 384->768, 768->1536, 1536->1536 (no downsample); self-attention at 64x64, after the first block (C=96); then
# linear 1536->1 and the projection embedding 1000x1536.
BIGGAN128_D = [*_biggan_dblock(3, 96), *_biggan_attention(96), *_biggan_dblock(96, 192), *_biggan_dblock(192, 384),
               *_biggan_dblock(384, 768), *_biggan_dblock(768, 1536), *_biggan_dblock(1536, 1536, downsample=False),
               (1, 1536), (1000, 1536)]

WEIGHT_SETS: "OrderedDict[str, list[tuple]]" = OrderedDict(
    [("SNGAN-32 D", SNGAN32_D), ("SNGAN-128 D", SNGAN128_D), ("BigGAN-128 D", BIGGAN128_D)])

FWD_DESC = "4 x weight bytes: power iteration reads W twice, W/sigma reads W and writes it once"
FWD_BWD_DESC = "7 x weight bytes: forward 4x, backward 3x (read G, read W, write dW)"
PI_DESC = "2 x weight bytes: power iteration reads W twice (W v, W^T u)"


def param_count(shapes) -> int:
    """Total number of elements of a weight set."""
    return sum(math.prod(s) for s in shapes)


def describe() -> dict:
    """The weight sets of this suite: shapes, number of tensors and parameters."""
    return {"weight_sets": {name: {"tensors": len(shapes), "params": param_count(shapes),
                                   "shapes": [list(s) for s in shapes]} for name, shapes in WEIGHT_SETS.items()}}


def cases(device: str = "cuda", dtypes=DTYPES, backends=BACKENDS, weight_sets=None) -> list[Case]:
    """Per weight set and dtype: power iteration, spectral_normalize fwd, spectral_normalize fwd+bwd.

    ``backends``: the fastgan backends to time; ``weight_sets``: name -> list of shapes (default: WEIGHT_SETS)."""
    out = []
    for ws, shapes in (WEIGHT_SETS if weight_sets is None else weight_sets).items():
        n = param_count(shapes)
        shapes = tuple(tuple(s) for s in shapes)
        for dt in dtypes:
            wbytes = n * getattr(torch, dt).itemsize
            base = {"weight_set": ws, "tensors": len(shapes), "params": n, "weight_bytes": wbytes,
                    "power_iteration_floor_bytes": 2 * wbytes}
            key = (ws, shapes, dt, device, tuple(backends))
            out.append(Case(SUITE, f"{ws} power iteration", dt, "fwd", 2 * wbytes, PI_DESC, device=device,
                            params={**base, "op": "power_iteration", "tolerance": dict(TOLERANCE[dt])},
                            setup=functools.partial(_setup_power_iteration, *key),
                            check=functools.partial(_check, *key, "power_iteration")))
            for mode, mult, desc in (("fwd", 4, FWD_DESC), ("fwd+bwd", 7, FWD_BWD_DESC)):
                out.append(Case(SUITE, f"{ws} spectral_normalize", dt, mode, mult * wbytes, desc, device=device,
                                params={**base, "op": "spectral_normalize", "tolerance": dict(TOLERANCE[dt])},
                                setup=functools.partial(_setup_normalize, *key, mode),
                                check=functools.partial(_check, *key, mode)))
    return out


# ---------------------------------------------------------------- setup (not timed)

class _Holder(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)


class _Bundle:
    """The tensors of one weight set and dtype: eager SN modules, their parameters, fastgan's u, v and R."""

    def __init__(self, shapes, dtype: str, device: str):
        gen = torch.Generator(device=device).manual_seed(0)
        dt = getattr(torch, dtype)
        self.mods = []
        for shape in shapes:
            w = torch.randn(shape, generator=gen, device=device) / math.sqrt(math.prod(shape[1:]))
            m = _Holder(w.to(dt))
            nn.utils.parametrizations.spectral_norm(m)  # 15 power iterations at construction, as in a model
            self.mods.append(m.train())
        self.params = [m.parametrizations.weight.original for m in self.mods]
        sns = [m.parametrizations.weight[0] for m in self.mods]
        # the eager state is kept in the weight dtype, as parametrizations.spectral_norm keeps it
        self.eager_us, self.eager_vs = [sn._u for sn in sns], [sn._v for sn in sns]
        self.us = [u.detach().float().clone() for u in self.eager_us]
        self.vs = [v.detach().float().clone() for v in self.eager_vs]
        self._initial = [t.clone() for t in self._state()]
        self.R = [torch.randn(p.shape, generator=gen, device=device, dtype=dt) for p in self.params]
        self.compiled = {}  # what -> compiled callable, or the exception compiling raised

    def _state(self):
        return [*self.eager_us, *self.eager_vs, *self.us, *self.vs]

    def reset_state(self) -> None:
        """Every u and v back to what spectral_norm made (the power iterations update them in place)."""
        with torch.no_grad():
            for t, t0 in zip(self._state(), self._initial):
                t.copy_(t0)

    def uv(self, name: str) -> dict:
        """The u and v that implementation ``name`` updates."""
        if name.startswith("fastgan"):
            return {"u": self.us, "v": self.vs}
        return {"u": self.eager_us, "v": self.eager_vs}

    def eager_fwd(self):
        return [m.weight for m in self.mods]

    def loss_grad(self, ws):
        return torch.autograd.grad(sum((w * r).sum() for w, r in zip(ws, self.R)), self.params)


def _bundle(ws: str, shapes, dtype: str, device: str, kind: str) -> _Bundle:
    """One bundle at a time: cases of one weight set and dtype are consecutive, and the fwd+bwd case reuses the
    compiled function of the fwd case."""
    return current((SUITE, ws, shapes, dtype, device, kind), lambda: _Bundle(shapes, dtype, device))


def _compiled(b: _Bundle, what: str, fn):
    if what not in b.compiled:
        try:
            c = torch.compile(fn)
            c()  # compile now, outside the timing
            b.compiled[what] = c
        except Exception as e:  # noqa: BLE001 - recorded by the runner as this implementation's error
            b.compiled[what] = e
    return b.compiled[what]


def _setup_normalize(ws: str, shapes, dtype: str, device: str, backends, mode: str, with_compile: bool) -> OrderedDict:
    import fastgan

    b = _bundle(ws, shapes, dtype, device, "normalize")
    impls = OrderedDict()

    def with_grad(fwd):
        if mode == "fwd":
            return fwd

        def fwd_bwd():  # returns W / sigma too, for the check (the time is that of the gradients)
            normalized = fwd()
            return normalized, b.loss_grad(normalized)
        return fwd_bwd

    for name, why in fastgan_backends(OP, device, dtype, backends):
        if why is not None:
            impls[f"fastgan[{name}]"] = Unavailable(why)
            continue

        def fwd(name=name):
            return fastgan.spectral_normalize(b.params, b.us, b.vs, dims=0, n_power_iterations=1, eps=EPS,
                                              backend=name)[0]
        impls[f"fastgan[{name}]"] = with_grad(fwd)
    impls["eager"] = with_grad(b.eager_fwd)
    if with_compile:
        c = _compiled(b, "fwd", b.eager_fwd)
        impls["compile"] = c if isinstance(c, Exception) else with_grad(c)
    return impls


def _setup_power_iteration(ws: str, shapes, dtype: str, device: str, backends, with_compile: bool) -> OrderedDict:
    import fastgan

    b = _bundle(ws, shapes, dtype, device, "power_iteration")
    mats = [p.detach().flatten(1) for p in b.params]
    eu, ev = b.eager_us, b.eager_vs

    def eager():
        # as parametrizations.spectral_norm's _power_method, plus sigma = vdot(u, W v)
        with torch.no_grad():
            sigmas = []
            for W, u, v in zip(mats, eu, ev):
                F.normalize(torch.mv(W, v), dim=0, eps=EPS, out=u)
                F.normalize(torch.mv(W.t(), u), dim=0, eps=EPS, out=v)
                sigmas.append(torch.vdot(u, torch.mv(W, v)))
            return torch.stack(sigmas)

    impls = OrderedDict()
    for name, why in fastgan_backends(OP, device, dtype, backends):
        if why is not None:
            impls[f"fastgan[{name}]"] = Unavailable(why)
            continue
        impls[f"fastgan[{name}]"] = functools.partial(
            fastgan.spectral_norm_power_iteration_, b.params, b.us, b.vs, dims=0, n_power_iterations=1, eps=EPS,
            backend=name)
    impls["eager"] = eager
    if with_compile:
        impls["compile"] = _compiled(b, "power_iteration", eager)
    return impls


# ---------------------------------------------------------------- check (not timed)


def _check(ws: str, shapes, dtype: str, device: str, backends, mode: str, impls) -> dict:
    """From the same u and v, call every implementation once and compare its results and the u and v it leaves
    with eager's; one off by more than TOLERANCE[dtype] fails. ``mode``: power_iteration, fwd or fwd+bwd."""
    b = _bundle(ws, shapes, dtype, device, "power_iteration" if mode == "power_iteration" else "normalize")
    return compare_with_reference(impls, OUTPUTS[mode], TOLERANCE[dtype], _KIND, reset=b.reset_state, state=b.uv,
                                  same_dtype=mode != "power_iteration")  # fastgan's sigma is float32 by design
