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
