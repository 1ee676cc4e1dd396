"""The VAE (Kingma & Welling 2014) and the VQ-VAE (van den Oord et al. 2017) on images in [-1, 1], with
convolutional encoders and decoders of stride-2 4x4 convolutions / transposed convolutions (the DCGAN layout).

``fused=True`` builds the decoders' transposed convolutions as :class:`fastgan.nn.ConvTranspose2d` with the ReLU
in their epilogue (an ``nn.Identity`` holds the eager build's ``nn.ReLU`` slot), ``fused=False`` as the torch
layers: the same parameter names and shapes, so one checkpoint loads into both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import nn as fnn
from ..nn.codebook_search import Quantized, VectorQuantizer

LIKELIHOODS = ("bernoulli", "gaussian")


def _downs(resolution: int, bottom: int) -> int:
    n = int(round(math.log2(resolution / bottom)))
    if n < 1 or bottom * 2 ** n != resolution:
        raise ValueError(f"resolution must be {bottom} times a power of two (>= {2 * bottom}), got {resolution}")
    return n


def encoder(channels: int, width: int, n: int, out: int) -> nn.Sequential:
    """n stride-2 4x4 convs with LeakyReLU(0.2) (channels width, 2 width, ...), then a 1x1 conv to ``out``."""
    layers, c = [], channels
    for i in range(n):
        layers += [nn.Conv2d(c, width * 2 ** i, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width * 2 ** i
    return nn.Sequential(*layers, nn.Conv2d(c, out, 1))


def decoder(c_in: int, width: int, n: int, channels: int, fused: bool) -> nn.Sequential:
    """A 3x3 conv + ReLU, then n stride-2 4x4 transposed convs (ReLU after all but the last, which gives
    ``channels``)."""
    layers = [nn.Conv2d(c_in, width * 2 ** (n - 1), 3, 1, 1), nn.ReLU()]
    c = width * 2 ** (n - 1)
    for i in reversed(range(n)):
        last = i == 0
        c_out = channels if last else width * 2 ** (i - 1)
        if last:
            layers.append(nn.ConvTranspose2d(c, c_out, 4, 2, 1))
        elif fused:
            layers += [fnn.ConvTranspose2d(c, c_out, 4, 2, 1, activation="relu"), nn.Identity()]
        else:
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1), nn.ReLU()]
        c = c_out
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """A convolutional VAE: q(z|x) = N(mu, diag sigma^2) from the encoder, p(z) = N(0, I), and p(x|z) a Bernoulli
    per sub-pixel (``likelihood='bernoulli'``, on (x + 1) / 2 in [0, 1]) or a Gaussian with a learned scale per
    channel (``'gaussian'``, on x). Images (B, C, R, R) in [-1, 1]; the latent is a (latent,) vector from the
    encoder's (latent_channels, 4, 4) grid. ``beta`` weights the KL term (beta-VAE); the ELBO is reported at beta 1.
    """

    def __init__(self, channels: int = 3, resolution: int = 32, latent: int = 64, width: int = 32,
                 likelihood: str = "bernoulli", beta: float = 1.0, fused: bool = False):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        n = _downs(resolution, 4)
        self.channels, self.resolution, self.latent, self.likelihood, self.beta = (channels, resolution, latent,
                                                                                   likelihood, beta)
        self.encoder = encoder(channels, width, n, 16)
        self.to_stats = nn.Linear(16 * 16, 2 * latent)
        self.from_latent = nn.Linear(latent, 16 * 16)
        self.decoder = decoder(16, width, n, channels, fused)
        self.log_scale = nn.Parameter(torch.zeros(channels)) if likelihood == "gaussian" else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2), each (B, latent)."""
        self._check(x)
        return self.to_stats(self.encoder(x).flatten(1)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output (B, C, R, R): Bernoulli logits, or the Gaussian's mean."""
        return self.decoder(self.from_latent(z).view(-1, 16, 4, 4))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(decoder output, mu, logvar) of one reparameterised draw z = mu + sigma eps."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return self.decode(mu + (0.5 * logvar).exp() * eps), mu, logvar

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image (B,) in nats."""
        if self.likelihood == "bernoulli":
            target = ((x + 1) / 2).to(out.dtype)
            return -F.binary_cross_entropy_with_logits(out, target, reduction="none").flatten(1).sum(1)
        log_scale = self.log_scale.view(1, -1, 1, 1).to(out.dtype)
        lp = -0.5 * ((x - out) / log_scale.exp()).square() - log_scale - 0.5 * math.log(2 * math.pi)
        return lp.flatten(1).sum(1)

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """One draw per image: ``loss`` (the mean over the batch of -(log p(x|z) - beta KL), to minimise), and the
        batch means of ``elbo`` (nats per image, at beta 1), ``bits_per_dim`` (-elbo / (C R R ln 2)), ``kl``
        (analytic, nats) and ``reconstruction`` (-log p(x|z), nats)."""
        out, mu, logvar = self(x, generator)
        rec = self.log_likelihood(x, out)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        elbo = rec - kl
        dims = x[0].numel()
        return {"loss": (self.beta * kl - rec).mean(), "elbo": elbo.mean(), "bits_per_dim": -elbo.mean() / (
            dims * math.log(2)), "kl": kl.mean(), "reconstruction": -rec.mean()}

    @torch.no_grad()
    def importance_log_likelihood(self, x: torch.Tensor, k: int = 64,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
        """The importance-weighted estimate of log p(x) (Burda et al. 2016) with k draws from q(z|x), per image
        (B,) in nats: log mean_k p(x|z_k) p(z_k) / q(z_k|x). A lower bound that tightens as k grows."""
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        terms = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + std * eps
            log_q = (-0.5 * eps.square() - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(1)
            log_prior = (-0.5 * z.square() - 0.5 * math.log(2 * math.pi)).sum(1)
            terms.append(self.log_likelihood(x, self.decode(z)) + log_prior - log_q)
        return torch.logsumexp(torch.stack(terms), 0) - math.log(k)

    def images(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's output as images in [-1, 1] (Bernoulli: the mean 2 sigmoid - 1)."""
        return (2 * torch.sigmoid(out) - 1) if self.likelihood == "bernoulli" else out.clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the prior, (n, C, R, R) in [-1, 1] (the likelihood's mean)."""
        w = self.from_latent.weight
        return self.images(self.decode(torch.randn(n, self.latent, generator=generator, dtype=w.dtype).to(
            w.device)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images decoded from the posterior means."""
        return self.images(self.decode(self.encode(x)[0]))

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """(steps, C, R, R): decoded linear interpolations between the posterior means of images a and b."""
        za, zb = self.encode(torch.stack([a, b]))[0]
        t = torch.linspace(0, 1, steps, dtype=za.dtype, device=za.device)[:, None]
        return self.images(self.decode((1 - t) * za + t * zb))

    def _check(self, x):
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2:] != (self.resolution, self.resolution):
            raise ValueError(f"this VAE takes images (B, {self.channels}, {self.resolution}, {self.resolution}), "
                             f"got {tuple(x.shape)}")


class VQVAE(nn.Module):
    """A VQ-VAE: encoder to a (dim, R / 4, R / 4) grid, :class:`fastgan.nn.VectorQuantizer` (``num_codes`` codes,
    EMA updates with ``decay``, or learned by the loss with ``decay=None``), decoder. Loss: mean squared
    reconstruction error of images in [-1, 1] plus the quantiser's (commitment) loss."""

    def __init__(self, channels: int = 3, resolution: int = 32, num_codes: int = 512, dim: int = 64,
                 width: int = 64, commitment: float = 0.25, decay: float | None = 0.99, fused: bool = False,
                 backend: str | None = None):
        super().__init__()
        if resolution % 4:
            raise ValueError(f"a VQ-VAE's resolution must be a multiple of 4 (an R / 4 code grid), not {resolution}")
        n = 2
        self.channels, self.resolution = channels, resolution
        self.encoder = encoder(channels, width, n, dim)
        self.quantizer = VectorQuantizer(num_codes, dim, commitment, decay, backend=backend)
        self.decoder = decoder(dim, width, n, channels, fused)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """(reconstruction (B, C, R, R), the quantiser's output: z_q, loss, indices (B, R/4, R/4), perplexity,
        usage)."""
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.z_q), q

    def losses(self, x: torch.Tensor) -> dict:
        recon, q = self(x)
        rec = F.mse_loss(recon, x)
        return {"loss": rec + q.loss, "reconstruction": rec, "vq": q.loss, "perplexity": q.perplexity,
                "usage": q.usage}

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, C, R, R) from code indices (B, R/4, R/4) (e.g. a PixelCNN prior's samples)."""
        z = F.embedding(indices, self.quantizer.weight).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(-1, 1)
