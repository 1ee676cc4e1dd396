"""The standard GANs on fastgan layers: each builds with ``fused=True`` (fastgan layers) or ``fused=False``
(plain PyTorch) with the same parameter names and shapes, so one checkpoint moves between the two.

``GANS[name]`` says how each is built and trained (``fastgan train NAME``): its networks at a resolution and
width, its loss, penalty, critic steps per generator step and Adam settings (those of its paper).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import cond_resnet, dcgan, losses, pixelcnn, ring, sngan, vae
from .losses import d_loss, g_loss


@dataclass(frozen=True)
class GANSpec:
    """How one GAN of the zoo is built and trained."""

    name: str
    build: object  # (resolution, width, fused, channels, num_classes) -> (G, D)
    nz: int
    resolutions: tuple
    width: int  # ngf / ndf / ch of its paper's configuration
    loss: str
    lr: float
    betas: tuple
    n_critic: int = 1
    penalty: str | None = None  # 'wgan-gp'
    penalty_weight: float = 10.0
    lr_d: float | None = None  # the discriminator's, where it differs (BigGAN's two time scales)
    conditional: bool = False  # G(z, y) and D(x, y)
    data: str = "shapes"  # the embedded default: 'shapes' (images) or 'ring' (2-D points)
    notes: str = ""


def _dcgan(resolution, width, fused, channels=3, num_classes=None):
    return (dcgan.Generator(100, width, channels, resolution, fused),
            dcgan.Discriminator(width, channels, resolution, fused=fused))


def _wgan_gp(resolution, width, fused, channels=3, num_classes=None):
    return (dcgan.Generator(100, width, channels, resolution, fused),
            dcgan.critic(width, channels, resolution, fused=fused))


def _sngan(resolution, width, fused, channels=3, num_classes=None):
    return sngan.Generator(128, width, channels, fused), sngan.Discriminator(width, channels, fused)


def _sngan_resnet(resolution, width, fused, channels=3, num_classes=None):
    return (sngan.ResNetGenerator(128, width, channels, resolution, fused),
            sngan.ResNetDiscriminator(width, channels, resolution, fused))


def _ring_mlp(resolution, width, fused, channels=2, num_classes=None):
    return ring.Generator(8, width, channels), ring.Discriminator(width, channels)


def _cond_resnet(resolution, width, fused, channels=3, num_classes=None):
    if not num_classes:
        raise ValueError("cond-resnet is class-conditional: it needs labelled data (num_classes >= 1)")
    return (cond_resnet.Generator(num_classes, resolution, width, nc=channels, fused=fused),
            cond_resnet.Discriminator(num_classes, resolution, width, channels, fused=fused))


GANS = {
    "dcgan": GANSpec("dcgan", _dcgan, 100, dcgan.RESOLUTIONS, 64, "non_saturating", 2e-4, (0.5, 0.999),
                     notes="Radford et al.: Adam(2e-4, 0.5), non-saturating loss"),
    "wgan-gp": GANSpec("wgan-gp", _wgan_gp, 100, dcgan.RESOLUTIONS, 64, "wasserstein", 1e-4, (0.0, 0.9), n_critic=5,
                       penalty="wgan-gp", notes="Gulrajani et al.: critic without BN, lambda 10, 5 critic steps, "
                                                "Adam(1e-4, 0, 0.9)"),
    "sngan": GANSpec("sngan", _sngan, 128, (32,), 64, "hinge", 2e-4, (0.5, 0.999),
                     notes="Miyato et al. (standard CNN, setting C): hinge loss, Adam(2e-4, 0.5, 0.999), 1 D step"),
    "sngan-resnet": GANSpec("sngan-resnet", _sngan_resnet, 128, sngan.RESNET_RESOLUTIONS, 64, "hinge", 2e-4,
                            (0.0, 0.9), n_critic=5,
                            notes="Miyato et al. (ResNet): hinge loss, Adam(2e-4, 0, 0.9), 5 D steps"),
    "cond-resnet": GANSpec("cond-resnet", _cond_resnet, 0, cond_resnet.RESOLUTIONS, 64, "hinge", 1e-4, (0.0, 0.999),
                           n_critic=2, lr_d=4e-4, conditional=True,
                           notes="BigGAN-style: shared embedding, hierarchical z, projection D, SN in G and D, "
                                 "Adam(G 1e-4, D 4e-4, 0, 0.999), 2 D steps"),
    "ring": GANSpec("ring", _ring_mlp, 8, (None,), 128, "non_saturating", 1e-3, (0.5, 0.999), data="ring",
                    notes="an MLP GAN on the 8-Gaussian ring (the mode-collapse test; nothing to fuse)"),
}


def build(name: str, resolution: int, width: int | None = None, fused: bool = False, channels: int = 3,
          num_classes: int | None = None) -> tuple[nn.Module, nn.Module]:
    """(G, D) of the zoo's GAN ``name`` at ``resolution`` pixels (``width``: its ngf/ndf/ch, default the paper's;
    ``num_classes`` for the conditional ones)."""
    if name not in GANS:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(GANS)}")
    spec = GANS[name]
    if spec.resolutions != (None,) and resolution not in spec.resolutions:
        raise ValueError(f"{name} supports resolution {', '.join(map(str, spec.resolutions))}, not {resolution}")
    return spec.build(resolution, width or spec.width, fused, channels, num_classes)


def latent_size(name: str, G: nn.Module) -> int:
    """The latent size of a built generator (the conditional one's depends on its depth)."""
    return getattr(G, "nz", None) or GANS[name].nz


__all__ = ["GANS", "GANSpec", "build", "cond_resnet", "d_loss", "dcgan", "g_loss", "latent_size", "losses", "pixelcnn",
           "ring", "sngan", "vae"]
