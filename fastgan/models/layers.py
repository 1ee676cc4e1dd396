"""Layer constructors shared by the zoo's ResNet GANs: each returns a fastgan layer (``fused=True``) or the plain
PyTorch one with the same parameter names and shapes (spectral norm: fastgan's or torch's parametrization, whose
keys are the same), and the ResNet blocks of SNGAN / BigGAN built from them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import nn as fnn


def conv(c_in: int, c_out: int, k: int, *, fused: bool, sn: bool, upsample: bool = False) -> nn.Conv2d:
    """A k x k conv (padding k // 2); ``upsample``: preceded by nearest x2, which the fused build computes in the
    conv (:class:`fastgan.nn.UpsampleConv2d`) and the eager build leaves to :func:`up` in the block."""
    m = fnn.UpsampleConv2d(c_in, c_out, k) if (fused and upsample) else nn.Conv2d(c_in, c_out, k, 1, k // 2)
    return _sn(m, fused) if sn else m


def linear(a: int, b: int, *, fused: bool, sn: bool, bias: bool = True) -> nn.Linear:
    m = nn.Linear(a, b, bias=bias)
    return _sn(m, fused) if sn else m


def embedding(n: int, d: int, *, fused: bool, sn: bool) -> nn.Embedding:
    m = nn.Embedding(n, d)
    return _sn(m, fused) if sn else m


def _sn(m: nn.Module, fused: bool) -> nn.Module:
    return fnn.spectral_norm(m) if fused else nn.utils.parametrizations.spectral_norm(m)


def bn_relu(c: int, *, fused: bool) -> tuple[nn.Module, nn.Module]:
    """(batch norm, its ReLU): fastgan's BN with the ReLU fused and an Identity, or torch's pair."""
    if fused:
        return fnn.BatchNorm2d(c, activation="relu"), nn.Identity()
    return nn.BatchNorm2d(c), nn.ReLU()


def up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    """SNGAN / BigGAN generator block: x -> [norm, ReLU, up, conv3x3, norm, ReLU, conv3x3] + up(conv1x1(x)).

    ``cond_features``: the norms are class-conditional (:class:`fastgan.nn.LinearConditionalBatchNorm2d`, BigGAN's
    ``ccbn``, forward(x, c)); else plain batch norm. (conv1x1 then up is up then conv1x1: nearest upsampling
    commutes with a 1x1 conv, at a quarter of the FLOPs.)
    """

    def __init__(self, c_in: int, c_out: int, *, fused: bool, sn: bool = False, cond_features: int | None = None):
        super().__init__()
        self.fused, self.conditional = fused, cond_features is not None
        if self.conditional:
            self.b1 = ccbn(c_in, cond_features, fused=fused, sn=sn)
            self.b2 = ccbn(c_out, cond_features, fused=fused, sn=sn)
            self.a1 = self.a2 = nn.Identity() if fused else nn.ReLU()
        else:
            self.b1, self.a1 = bn_relu(c_in, fused=fused)
            self.b2, self.a2 = bn_relu(c_out, fused=fused)
        self.c1 = conv(c_in, c_out, 3, fused=fused, sn=sn, upsample=True)
        self.c2 = conv(c_out, c_out, 3, fused=fused, sn=sn)
        self.c_sc = conv(c_in, c_out, 1, fused=fused, sn=sn)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        norm = (lambda b, h: b(h, c)) if self.conditional else (lambda b, h: b(h))
        h = self.a1(norm(self.b1, x))
        h = self.c1(h) if self.fused else self.c1(up(h))
        h = self.c2(self.a2(norm(self.b2, h)))
        return h + up(self.c_sc(x))


class DBlock(nn.Module):
    """SNGAN / BigGAN discriminator block: [ReLU, conv3x3, ReLU, conv3x3, (avgpool)] + shortcut; ``first``: the
    "optimized" first block (no leading ReLU, shortcut avgpool then conv1x1). Spectral norm on every conv."""

    def __init__(self, c_in: int, c_out: int, *, fused: bool, downsample: bool = True, first: bool = False):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.a1, self.a2 = nn.ReLU(), nn.ReLU()
        self.c1 = conv(c_in, c_out, 3, fused=fused, sn=True)
        self.c2 = conv(c_out, c_out, 3, fused=fused, sn=True)
        self.learnable_sc = first or downsample or c_in != c_out
        if self.learnable_sc:
            self.c_sc = conv(c_in, c_out, 1, fused=fused, sn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x if self.first else self.a1(x))
        h = self.c2(self.a2(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if not self.learnable_sc:
            return h + x
        if self.first:
            return h + self.c_sc(F.avg_pool2d(x, 2))
        sc = self.c_sc(x)
        return h + (F.avg_pool2d(sc, 2) if self.downsample else sc)


class _EagerCCBN(nn.Module):
    """torch's form of :class:`fastgan.nn.LinearConditionalBatchNorm2d` with its names: BN without affine, then
    x (1 + gain(c)) + bias(c) (bias-free linears)."""

    def __init__(self, c: int, cond_features: int, sn: bool, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.gain = linear(cond_features, c, fused=False, sn=sn, bias=False)
        self.bias = linear(cond_features, c, fused=False, sn=sn, bias=False)
        self.eps, self.momentum = eps, momentum
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked += 1
        h = F.batch_norm(x, self.running_mean, self.running_var, None, None, self.training, self.momentum, self.eps)
        return h * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


def ccbn(c: int, cond_features: int, *, fused: bool, sn: bool) -> nn.Module:
    """Class-conditional BN from a vector c: fastgan's (ReLU fused) or its torch form (ReLU left to the block)."""
    if fused:
        return fnn.LinearConditionalBatchNorm2d(c, cond_features, spectral_norm=sn, activation="relu")
    return _EagerCCBN(c, cond_features, sn)


class SelfAttention(nn.Module):
    """SAGAN's self-attention (Zhang et al.; BigGAN's ``Attention``): 1x1 convs theta (C/8), phi (C/8, max-pooled),
    g (C/2, max-pooled), o (C); out = x + gamma o(g softmax(theta^T phi)); gamma starts at 0."""

    def __init__(self, c: int, *, fused: bool, sn: bool = True):
        super().__init__()
        self.c = c
        self.theta = conv(c, c // 8, 1, fused=fused, sn=sn)
        self.phi = conv(c, c // 8, 1, fused=fused, sn=sn)
        self.g = conv(c, c // 2, 1, fused=fused, sn=sn)
        self.o = conv(c // 2, c, 1, fused=fused, sn=sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).view(n, c // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(n, c // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).view(n, c // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(n, c // 2, h, w))
        return x + self.gamma * o
