"""An MLP GAN for 2-D points (the 8-Gaussian ring of ``fastgan.data.Ring``): G z (8) -> 4 x width ReLU -> 2,
D 2 -> 4 x width LeakyReLU(0.2) -> 1 (logits). Plain PyTorch layers in both builds (nothing here to fuse)."""
from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes, act):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class Generator(nn.Module):
    def __init__(self, nz: int = 8, width: int = 128, dim: int = 2):
        super().__init__()
        self.nz = nz
        self.main = _mlp([nz, width, width, width, width, dim], nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, width: int = 128, dim: int = 2):
        super().__init__()
        self.main = _mlp([dim, width, width, width, width, 1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)
