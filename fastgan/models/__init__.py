"""The standard GANs on fastgan layers: each builds with ``fused=True`` (fastgan layers) or ``fused=False``
(plain PyTorch) with the same parameter names and shapes, so one checkpoint moves between the two.

``GANS[name]`` says how each is built and trained (``fastgan train NAME``): its networks at a resolution and
width, its loss, penalty, critic steps per generator step and Adam settings (those of its paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from . import dcgan, losses, sngan
from .losses import d_loss, g_loss


@dataclass(frozen=True)
class GANSpec:
    """How one GAN of the zoo is built and trained."""

    name: str
    build: object  # (resolution, width, fused, channels) -> (G, D)
    nz: int
    resolutions: tuple
    width: int  # ngf / ndf / ch of its paper's configuration
    loss: str
    lr: float
    betas: tuple
    n_critic: int = 1
    penalty: str | None = None  # 'wgan-gp'
    penalty_weight: float = 10.0
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _dcgan(resolution, width, fused, channels=3):
    return (dcgan.Generator(100, width, channels, resolution, fused),
            dcgan.Discriminator(width, channels, resolution, fused=fused))


def _wgan_gp(resolution, width, fused, channels=3):
    return (dcgan.Generator(100, width, channels, resolution, fused),
            dcgan.critic(width, channels, resolution, fused=fused))


def _sngan(resolution, width, fused, channels=3):
    return sngan.Generator(128, width, channels, fused), sngan.Discriminator(width, channels, fused)


GANS = {
    "dcgan": GANSpec("dcgan", _dcgan, 100, dcgan.RESOLUTIONS, 64, "non_saturating", 2e-4, (0.5, 0.999),
                     notes="Radford et al.: Adam(2e-4, 0.5), non-saturating loss"),
    "wgan-gp": GANSpec("wgan-gp", _wgan_gp, 100, dcgan.RESOLUTIONS, 64, "wasserstein", 1e-4, (0.0, 0.9), n_critic=5,
                       penalty="wgan-gp", notes="Gulrajani et al.: critic without BN, lambda 10, 5 critic steps, "
                                                "Adam(1e-4, 0, 0.9)"),
    "sngan": GANSpec("sngan", _sngan, 128, (32,), 64, "hinge", 2e-4, (0.5, 0.999),
                     notes="Miyato et al. (standard CNN, setting C): hinge loss, Adam(2e-4, 0.5, 0.999), 1 D step"),
}


def build(name: str, resolution: int, width: int | None = None, fused: bool = False,
          channels: int = 3) -> tuple[nn.Module, nn.Module]:
    """(G, D) of the zoo's GAN ``name`` at ``resolution`` pixels (``width``: its ngf/ndf/ch, default the paper's)."""
    if name not in GANS:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(GANS)}")
    spec = GANS[name]
    if resolution not in spec.resolutions:
        raise ValueError(f"{name} supports resolution {', '.join(map(str, spec.resolutions))}, not {resolution}")
    return spec.build(resolution, width or spec.width, fused, channels)


__all__ = ["GANS", "GANSpec", "build", "d_loss", "dcgan", "g_loss", "losses", "sngan"]
