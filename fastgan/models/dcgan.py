"""DCGAN (Radford et al. 2016) at 32 and 64 pixels, and the WGAN-GP critic (the same network without batch norm).

The layout and state-dict keys are pytorch/examples' DCGAN: ``main`` is an ``nn.Sequential`` of ConvTranspose2d
(bias-free) -> BatchNorm2d -> ReLU blocks ending in ConvTranspose2d -> Tanh (``main.0.weight``, ``main.1.weight``,
``main.1.running_mean``, ...), and the discriminator's Conv2d -> BatchNorm2d -> LeakyReLU(0.2) blocks likewise, so
checkpoints trained there load as they are. The discriminator returns logits, (N,): pytorch/examples' final
Sigmoid (which has no parameters) is left to the loss.

``fused=True`` builds the same networks on fastgan layers with the same parameter names and shapes: the
transposed convolutions on :class:`fastgan.nn.ConvTranspose2d` (each feeding its batch-norm statistics to the
next BN, which then skips its statistics pass), the batch norms on :class:`fastgan.nn.BatchNorm2d` with the
ReLU / LeakyReLU fused (the activation's slot in ``main`` becomes an ``nn.Identity``), the final Tanh fused into
the last transposed convolution.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import nn as fnn

RESOLUTIONS = (32, 64)


def _blocks(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN: resolution must be one of {RESOLUTIONS}, got {resolution}")
    return 3 if resolution == 32 else 4


def init_weights(module: nn.Module) -> None:
    """pytorch/examples' ``weights_init``: conv weights N(0, 0.02); batch-norm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _run(main: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``main(x)``, handing each fastgan transposed convolution's batch-norm statistics to the BN after it."""
    layers = list(main)
    i = 0
    while i < len(layers):
        m = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(m, fnn.ConvTranspose2d) and isinstance(nxt, fnn.BatchNorm2d) and nxt.training:
            y, stats = m(x, bn_stats=True)
            x = nxt(y, stats=stats)
            i += 2
        else:
            x = m(x)
            i += 1
    return x


class Generator(nn.Module):
    """z (N, nz) or (N, nz, 1, 1) -> images (N, nc, resolution, resolution) in [-1, 1].

    64 pixels: ConvT nz -> 8 ngf (4x4), -> 4 ngf (8x8), -> 2 ngf (16x16), -> ngf (32x32), -> nc (64x64); 32 pixels:
    the same from 4 ngf. BN + ReLU after each but the last (Tanh).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64, fused: bool = False):
        super().__init__()
        n = _blocks(resolution)
        self.nz, self.resolution, self.fused = nz, resolution, fused
        convt = fnn.ConvTranspose2d if fused else nn.ConvTranspose2d
        layers, c_in = [], nz
        for i in range(n):
            c = ngf * 2 ** (n - 1 - i)
            layers.append(convt(c_in, c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False))
            if fused:
                layers += [fnn.BatchNorm2d(c, activation="relu"), nn.Identity()]
            else:
                layers += [nn.BatchNorm2d(c), nn.ReLU(True)]
            c_in = c
        if fused:
            layers += [fnn.ConvTranspose2d(c_in, nc, 4, 2, 1, bias=False, activation="tanh"), nn.Identity()]
        else:
            layers += [nn.ConvTranspose2d(c_in, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return _run(self.main, z)


class Discriminator(nn.Module):
    """images (N, nc, resolution, resolution) -> logits (N,).

    Conv nc -> ndf (k4 s2 p1) + LeakyReLU(0.2), then Conv -> 2 ndf, 4 ndf (, 8 ndf at 64 pixels), each with BN +
    LeakyReLU(0.2), then Conv -> 1 (k4 s1 p0). ``batch_norm=False``: the WGAN-GP critic (no batch statistics, as the
    gradient penalty needs; the BN slots hold ``nn.Identity``, so the conv keys stay where they are).
    """

    def __init__(self, ndf: int = 64, nc: int = 3, resolution: int = 64, batch_norm: bool = True,
                 fused: bool = False):
        super().__init__()
        n = _blocks(resolution)
        self.resolution, self.fused = resolution, fused
        layers, c_in = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)], ndf
        for i in range(1, n):
            c = ndf * 2 ** i
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=False))
            if not batch_norm:
                layers += [nn.Identity(), nn.LeakyReLU(0.2, inplace=True)]
            elif fused:
                layers += [fnn.BatchNorm2d(c, activation="leaky_relu", negative_slope=0.2), nn.Identity()]
            else:
                layers += [nn.BatchNorm2d(c), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def critic(ndf: int = 64, nc: int = 3, resolution: int = 64, fused: bool = False) -> Discriminator:
    """The WGAN-GP critic: the DCGAN discriminator without batch norm (Gulrajani et al.)."""
    return Discriminator(ndf, nc, resolution, batch_norm=False, fused=fused)
