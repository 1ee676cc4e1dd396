"""VQ-VAE's vector quantiser on fastgan's codebook search."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.codebook_search import codebook_ema_update_, codebook_search


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns: the quantised input (straight-through gradient), the loss to add
    (commitment, plus the codebook term when the codebook is learned by the loss), the code index of each vector,
    and the batch's codebook perplexity (exp of the entropy of code use; K when all are used equally) and usage
    (share of codes used at least once)."""

    z_q: torch.Tensor
    loss: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation (van den Oord et al. 2017) of z (B, D, H, W) (channels are the code dimension) or
    (N, D). Forward: z_q = e[argmin_k ||z - e_k||^2] with the straight-through gradient (z + (z_q - z).detach()),
    loss = commitment ||z - sg(z_q)||^2 (+ ||sg(z) - z_q||^2 when ``decay`` is None, the codebook learned by the
    loss), both means over elements.

    With ``decay`` (default 0.99) the codebook follows exponential moving averages in training instead
    (Sonnet's VectorQuantizerEMA): N_k <- d N_k + (1 - d) n_k, m_k <- d m_k + (1 - d) sum of the vectors
    assigned to k, then e_k = m_k / N_k with N_k Laplace-smoothed by ``eps``. The per-code counts and sums are a
    deterministic segmented reduction (sorted indices, no atomics). ``weight`` (K, D) is the codebook;
    ``data_init`` (default) sets it, in the first training forward, to vectors of that batch.
    """

    def __init__(self, num_codes: int, dim: int, commitment: float = 0.25, decay: float | None = 0.99,
                 eps: float = 1e-5, data_init: bool = True, backend: str | None = None):
        super().__init__()
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1) or None (a codebook learned by the loss), got {decay}")
        self.num_codes, self.dim, self.commitment, self.decay, self.eps = num_codes, dim, commitment, decay, eps
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes),
                                   requires_grad=decay is None)
        if decay is not None:
            self.register_buffer("ema_count", torch.zeros(num_codes))
            self.register_buffer("ema_sum", self.weight.detach().clone())
        # data_init: the first training batch's vectors (drawn with torch's generator) become the codes; a tiny
        # uniform codebook far from the encoder's outputs otherwise collapses to one code
        self.register_buffer("initialized", torch.tensor(not data_init))

    def extra_repr(self) -> str:
        return f"{self.num_codes}, {self.dim}, commitment={self.commitment}, decay={self.decay}"

    def _flat(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 4 and z.shape[1] == self.dim:
            return z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        if z.dim() == 2 and z.shape[1] == self.dim:
            return z
        raise ValueError(f"VectorQuantizer({self.num_codes}, {self.dim}) takes (B, {self.dim}, H, W) or "
                         f"(N, {self.dim}), got {tuple(z.shape)}")

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = self._flat(z)
        if self.training and not bool(self.initialized):
            self._init_from(flat.detach())
        index, _ = codebook_search(flat.detach(), self.weight.detach().to(flat.dtype), backend=self.backend)
        counts = torch.bincount(index, minlength=self.num_codes)
        if self.training and self.decay is not None:
            self._ema_update(flat.detach(), index, counts)
        q = F.embedding(index, self.weight).to(z.dtype)
        if z.dim() == 4:
            B, _, H, W = z.shape
            q = q.view(B, H, W, self.dim).permute(0, 3, 1, 2)
            index = index.view(B, H, W)
        loss = self.commitment * F.mse_loss(z, q.detach())
        if self.decay is None:
            loss = loss + F.mse_loss(z.detach(), q)
        p = counts.float() / max(1, flat.shape[0])
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())
        return Quantized(z + (q - z).detach(), loss, index, perplexity, (counts > 0).float().mean())

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        pick = torch.randint(0, flat.shape[0], (self.num_codes,)).to(flat.device)
        self.weight.data.copy_(flat[pick])
        if self.decay is not None:
            self.ema_sum.copy_(self.weight.data)
            self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, index: torch.Tensor, counts: torch.Tensor) -> None:
        codebook_ema_update_(self.ema_count, self.ema_sum, flat, index, counts, self.decay, backend=self.backend)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.weight.data.copy_(self.ema_sum / smoothed[:, None])
