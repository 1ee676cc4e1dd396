"""GAN losses on discriminator logits: ``d_loss(kind, real, fake)`` and ``g_loss(kind, fake)``, each a 0-dim mean.

    minimax          D: -log s(r) - log(1 - s(f))       G: log(1 - s(f))       (Goodfellow et al., saturating)
    non_saturating   D: as minimax                      G: -log s(f)
    hinge            D: relu(1 - r) + relu(1 + f)       G: -f                  (Lim & Ye; Miyato et al.)
    wasserstein      D: f - r                           G: -f                  (Arjovsky et al.; with a penalty)
    least_squares    D: ((r - 1)^2 + f^2) / 2           G: (f - 1)^2 / 2       (Mao et al.)

s is the sigmoid; log s(x) = -softplus(-x), log(1 - s(x)) = -softplus(x), computed without overflow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("minimax", "non_saturating", "hinge", "wasserstein", "least_squares")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; one of {', '.join(KINDS)}")
    return kind


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss from its logits on real and generated samples."""
    kind = _kind(kind)
    if kind in ("minimax", "non_saturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "wasserstein":
        return fake.mean() - real.mean()
    return ((real - 1).square().mean() + fake.square().mean()) / 2


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's logits on generated samples."""
    kind = _kind(kind)
    if kind == "minimax":
        return -F.softplus(fake).mean()
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wasserstein"):
        return -fake.mean()
    return (fake - 1).square().mean() / 2
