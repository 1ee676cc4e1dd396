"""A class-conditional ResNet GAN with BigGAN's blocks (Brock et al. 2019): a shared class embedding and a
hierarchical latent (z split into one chunk per block, each with the embedding feeding that block's conditional
batch norms), nearest-up + conv upsampling, spectral norm in G and D, optional self-attention (SAGAN), and a
projection discriminator.

``fused=True``: fastgan's ``LinearConditionalBatchNorm2d`` (ReLU fused), ``UpsampleConv2d`` and SN layers (one
grouped power iteration per network and forward); ``fused=False``: the same in torch layers, same names.

Resolutions 32 (G 4 ch at every block, D 4 ch; ch = 64) and 128 (G 16 ch -> ch, D ch -> 16 ch; ch = 96 in BigGAN,
64 here by default); attention at 64 px for 128 (none at 32), as BigGAN's defaults.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import nn as fnn
from .layers import GBlock, SelfAttention, bn_relu, conv, linear
from .sngan import ResNetDiscriminator

RESOLUTIONS = (32, 128)


def _plan(resolution: int, ch: int):
    if resolution == 32:
        return [4 * ch] * 4, None
    if resolution == 128:
        return [16 * ch, 16 * ch, 8 * ch, 4 * ch, 2 * ch, ch], 64
    raise ValueError(f"conditional ResNet GAN: resolution must be one of {RESOLUTIONS}, got {resolution}")


class Generator(nn.Module):
    """(z (N, nz), labels (N,)) -> (N, 3, R, R). nz = z_chunk (blocks + 1)."""

    def __init__(self, num_classes: int, resolution: int = 32, ch: int = 64, z_chunk: int = 20, shared_dim: int = 128,
                 nc: int = 3, attention: int | None = -1, fused: bool = False):
        super().__init__()
        chans, attn_res = _plan(resolution, ch)
        attn_res = attn_res if attention == -1 else attention
        n_blocks = len(chans) - 1
        self.nz, self.z_chunk, self.num_classes, self.resolution, self.fused = (z_chunk * (n_blocks + 1), z_chunk,
                                                                                num_classes, resolution, fused)
        self.c0 = chans[0]
        self.shared = nn.Embedding(num_classes, shared_dim)
        self.l0 = linear(z_chunk, 16 * chans[0], fused=fused, sn=True)
        blocks, res = [], 4
        for a, b in zip(chans[:-1], chans[1:]):
            res *= 2
            blocks.append(GBlock(a, b, fused=fused, sn=True, cond_features=shared_dim + z_chunk))
            if attn_res == res:
                blocks.append(SelfAttention(b, fused=fused))
        self.blocks = nn.ModuleList(blocks)
        self.b_out, self.a_out = bn_relu(chans[-1], fused=fused)
        self.c_out = conv(chans[-1], nc, 3, fused=fused, sn=True)
        if fused:
            self.sn_group = fnn.SpectralNormGroup(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zs = z.flatten(1).split(self.z_chunk, dim=1)
        e = self.shared(y)
        h = self.l0(zs[0]).view(z.shape[0], self.c0, 4, 4)
        i = 1
        for block in self.blocks:
            if isinstance(block, GBlock):
                h = block(h, torch.cat([e, zs[i]], dim=1))
                i += 1
            else:
                h = block(h)
        return torch.tanh(self.c_out(self.a_out(self.b_out(h))))


def Discriminator(num_classes: int, resolution: int = 32, ch: int = 64, nc: int = 3, attention: int | None = -1,
                  fused: bool = False) -> ResNetDiscriminator:
    """The projection discriminator: SNGAN's ResNet D with an SN class embedding, forward(x, y); self-attention
    after the block that reaches 64 px at 128 (BigGAN's default; ``attention``: another resolution or None)."""
    _, attn_res = _plan(resolution, ch)
    return ResNetDiscriminator(ch, nc, resolution, fused, num_classes, attn_res if attention == -1 else attention)


__all__ = ["Discriminator", "Generator", "RESOLUTIONS"]
