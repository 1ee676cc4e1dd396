"""SNGAN (Miyato et al. 2018) at 32 pixels: the standard CNN generator and discriminator of the paper's table 3,
spectral norm on every discriminator layer, trained with the hinge loss.

``fused=False``: torch layers, ``torch.nn.utils.parametrizations.spectral_norm``; ``fused=True``: fastgan's SN
layers (all updated in one grouped call per forward, :class:`fastgan.nn.SpectralNormGroup`), batch norms with the
ReLU fused, transposed convolutions handing their batch-norm statistics on. Parameter names and shapes are the same
in both (fastgan's SN layers keep the parametrization's keys), so one checkpoint serves both builds.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import nn as fnn
from .dcgan import _run
from .layers import DBlock, GBlock, SelfAttention, bn_relu, embedding, linear


class Generator(nn.Module):
    """z (N, nz) -> images (N, 3, 32, 32) in [-1, 1]: linear -> 4x4x(8 ch), BN, ReLU; three ConvT k4 s2 p1
    (-> 4 ch, 2 ch, ch) each with BN + ReLU; conv 3x3 -> 3, tanh. ch = 64 in the paper."""

    def __init__(self, nz: int = 128, ch: int = 64, nc: int = 3, fused: bool = False):
        super().__init__()
        self.nz, self.ch, self.resolution, self.fused = nz, ch, 32, fused
        self.l0 = nn.Linear(nz, 4 * 4 * 8 * ch)
        convt = fnn.ConvTranspose2d if fused else nn.ConvTranspose2d

        def bn_relu(c):
            return [fnn.BatchNorm2d(c, activation="relu"), nn.Identity()] if fused else [nn.BatchNorm2d(c),
                                                                                          nn.ReLU()]
        layers = bn_relu(8 * ch)
        for c_in, c in ((8 * ch, 4 * ch), (4 * ch, 2 * ch), (2 * ch, ch)):
            layers += [convt(c_in, c, 4, 2, 1)] + bn_relu(c)
        layers += [nn.Conv2d(ch, nc, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _run(self.main, self.l0(z.flatten(1)).view(z.shape[0], 8 * self.ch, 4, 4))


class Discriminator(nn.Module):
    """images (N, 3, 32, 32) -> logits (N,): conv 3x3 (ch), 4x4 s2 (ch), 3x3 (2 ch), 4x4 s2 (2 ch), 3x3 (4 ch),
    4x4 s2 (4 ch), 3x3 (8 ch), each with LeakyReLU(0.1), then linear 8 ch x 4 x 4 -> 1; spectral norm on all."""

    def __init__(self, ch: int = 64, nc: int = 3, fused: bool = False):
        super().__init__()
        self.resolution, self.fused = 32, fused
        sn = nn.utils.parametrizations.spectral_norm
        plan = [(nc, ch, 3, 1), (ch, ch, 4, 2), (ch, 2 * ch, 3, 1), (2 * ch, 2 * ch, 4, 2), (2 * ch, 4 * ch, 3, 1),
                (4 * ch, 4 * ch, 4, 2), (4 * ch, 8 * ch, 3, 1)]
        layers = []
        for c_in, c, k, s in plan:
            layers += [fnn.SNConv2d(c_in, c, k, s, 1) if fused else sn(nn.Conv2d(c_in, c, k, s, 1)),
                       nn.LeakyReLU(0.1)]
        self.main = nn.Sequential(*layers)
        self.l_out = fnn.SNLinear(8 * ch * 16, 1) if fused else sn(nn.Linear(8 * ch * 16, 1))
        if fused:
            self.sn_group = fnn.SpectralNormGroup(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l_out(self.main(x).flatten(1)).view(-1)


# ---------------------------------------------------------------- the ResNet models (Miyato et al., appendix B)

RESNET_RESOLUTIONS = (32, 128)


def _resnet_plan(resolution: int, ch: int):
    """(G channels per block, D (c_in, c_out, downsample) per block) at 32 (CIFAR) or 128 (ImageNet) pixels."""
    if resolution == 32:
        return [4 * ch] * 4, [(3, 2 * ch, True), (2 * ch, 2 * ch, True), (2 * ch, 2 * ch, False),
                              (2 * ch, 2 * ch, False)]
    if resolution == 128:
        g = [16 * ch, 16 * ch, 8 * ch, 4 * ch, 2 * ch, ch]
        d = [(3, ch, True), (ch, 2 * ch, True), (2 * ch, 4 * ch, True), (4 * ch, 8 * ch, True),
             (8 * ch, 16 * ch, True), (16 * ch, 16 * ch, False)]
        return g, d
    raise ValueError(f"SNGAN ResNet: resolution must be one of {RESNET_RESOLUTIONS}, got {resolution}")


class ResNetGenerator(nn.Module):
    """z (N, nz) -> (N, 3, R, R): linear -> 4x4, up-blocks to R (3 at 32 px with 4 ch = 256 channels; 5 at 128 px,
    16 ch -> ch), BN, ReLU, conv 3x3, tanh. No spectral norm in G (as the paper)."""

    def __init__(self, nz: int = 128, ch: int = 64, nc: int = 3, resolution: int = 32, fused: bool = False):
        super().__init__()
        chans, _ = _resnet_plan(resolution, ch)
        self.nz, self.resolution, self.fused, self.c0 = nz, resolution, fused, chans[0]
        self.l0 = nn.Linear(nz, 16 * chans[0])
        self.blocks = nn.ModuleList(GBlock(a, b, fused=fused) for a, b in zip(chans[:-1], chans[1:]))
        self.b_out, self.a_out = bn_relu(chans[-1], fused=fused)
        self.c_out = nn.Conv2d(chans[-1], nc, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.l0(z.flatten(1)).view(z.shape[0], self.c0, 4, 4)
        for block in self.blocks:
            h = block(h)
        return torch.tanh(self.c_out(self.a_out(self.b_out(h))))


class ResNetDiscriminator(nn.Module):
    """(N, 3, R, R) -> logits (N,): the optimized first block, ResNet down-blocks (32 px: 128 channels; 128 px:
    ch -> 16 ch), ReLU, global sum pooling, linear -> 1; spectral norm on every layer. ``num_classes``: a
    projection discriminator (Miyato & Koyama): + <embed(y), h> (forward(x, y)). ``attention``: a SAGAN
    self-attention block after the block whose output has that resolution."""

    def __init__(self, ch: int = 64, nc: int = 3, resolution: int = 32, fused: bool = False,
                 num_classes: int | None = None, attention: int | None = None):
        super().__init__()
        _, plan = _resnet_plan(resolution, ch)
        plan = [(nc if i == 0 else a, b, down) for i, (a, b, down) in enumerate(plan)]
        self.resolution, self.fused = resolution, fused
        blocks, res = [], resolution
        for i, (a, b, down) in enumerate(plan):
            blocks.append(DBlock(a, b, fused=fused, downsample=down, first=i == 0))
            res //= 2 if down else 1
            if res == attention and not any(isinstance(m, SelfAttention) for m in blocks):
                blocks.append(SelfAttention(b, fused=fused))
        self.blocks = nn.ModuleList(blocks)
        self.a_out = nn.ReLU()
        self.l_out = linear(plan[-1][1], 1, fused=fused, sn=True)
        self.embed = embedding(num_classes, plan[-1][1], fused=fused, sn=True) if num_classes else None
        if fused:
            self.sn_group = fnn.SpectralNormGroup(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        h = self.a_out(h).sum(dim=(2, 3))
        out = self.l_out(h).view(-1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this projection discriminator needs the class labels: D(x, y)")
            out = out + (self.embed(y) * h).sum(dim=1)
        return out
