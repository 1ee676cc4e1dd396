"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"): vertical and
horizontal stacks (no blind spot), masks A and B, gated tanh x sigmoid units, residual and skip connections, optional
class conditioning; a 256-way softmax per sub-pixel with R -> G -> B ordering, or one Bernoulli logit per pixel.

Causality is kept by construction, not by masked weights, except for the sub-pixel order at the current pixel:

- the vertical stack's convolution (k//2 + 1 rows, k columns, padded on top) sees the rows at and above its own, and
  reaches the horizontal stack only shifted down by one row: pixel (i, j) sees every row above it;
- the horizontal stack's convolution (1 row, k//2 + 1 columns, padded on the left) sees the columns at and left of
  its own; at its own column (the centre tap) and in every 1x1 convolution, feature group g (the sub-pixel a feature
  predicts) sees input groups < g in the first layer (mask A) and <= g after it (mask B).

:func:`sample` runs the network once per sub-pixel (the naive sampler); :func:`sample_cached` keeps every layer's
features and computes per sub-pixel only the horizontal stack at the new pixel, and per finished row one row of the
vertical stack (Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models"). From the same
uniform draws both give the same images (a test checks it in float64).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.masked_conv2d import masked_conv2d

LEVELS = 256


def _groups(n: int, g: int) -> torch.Tensor:
    """The sub-pixel group of each of n features split into g equal groups (gated halves counted separately)."""
    return torch.arange(n) * g // n


class MaskedConv2d(nn.Conv2d):
    """A conv whose weight at tap (ky, kx) = ``center`` is masked by sub-pixel groups: output group a sees input
    group b iff b < a (mask A) or b <= a (mask B); other taps are untouched. ``out_groups`` / ``in_groups``: the
    group of each output / input channel."""

    def __init__(self, cin, cout, kernel, out_groups, in_groups, mask: str, center):
        super().__init__(cin, cout, kernel)
        allowed = (in_groups[None, :] < out_groups[:, None]) if mask == "A" else (
            in_groups[None, :] <= out_groups[:, None])
        m = torch.ones_like(self.weight)
        m[:, :, center[0], center[1]] = allowed.to(m.dtype)
        self.register_buffer("mask", m, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias)


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (vertical, horizontal) features in, (vertical, horizontal, skip) out. ``first``: mask A, no
    residual (the input is the image's channels). ``fused``: the vertical and horizontal convolutions with their
    gated units are :func:`fastgan.masked_conv2d` calls (same parameters)."""

    def __init__(self, cin: int, h: int, k: int, skip: int, groups: int, first: bool, num_classes: int | None,
                 fused: bool = False, backend: str | None = None):
        super().__init__()
        self.k, self.first, self.sub_pixels, self.fused, self.backend = k, first, groups, fused, backend
        g_in = torch.arange(cin) * groups // cin
        g2h, gh = _groups(h, groups).repeat(2), _groups(h, groups)
        mask = "A" if first else "B"
        self.v_conv = nn.Conv2d(cin, 2 * h, (k // 2 + 1, k))
        self.h_conv = MaskedConv2d(cin, 2 * h, (1, k // 2 + 1), g2h, g_in, mask, (0, k // 2))
        self.v2h = nn.Conv2d(2 * h, 2 * h, 1)
        self.h_out = MaskedConv2d(h, h, 1, gh, gh, "B", (0, 0))
        self.skip = MaskedConv2d(h, skip, 1, _groups(skip, groups), gh, "B", (0, 0))
        self.embed = nn.Embedding(num_classes, 4 * h) if num_classes else None

    def vertical(self, v: torch.Tensor, cond_v) -> torch.Tensor:
        """The vertical stack's pre-activations (with the class bias); v padded as ``F.pad(v, (k//2, k//2, k//2,
        0))`` -> rows of v."""
        pre = self.v_conv(v)
        return pre if cond_v is None else pre + cond_v

    def _cond(self, y):
        if self.embed is None or y is None:
            return None, None
        cv, ch = self.embed(y)[:, :, None, None].chunk(2, dim=1)
        return cv, ch

    def forward(self, v, hx, y=None):
        k, H = self.k, v.shape[2]
        cv, ch = self._cond(y)
        if self.fused:  # the gated units in the masked convolutions' epilogues
            v_out, v_pre = masked_conv2d(v, self.v_conv.weight, self.v_conv.bias, mask=None, anchor=(k // 2, k // 2),
                                         gate=True, add=cv, return_pre=True, backend=self.backend)
        else:
            v_pre = self.vertical(F.pad(v, (k // 2, k // 2, k // 2, 0)), cv)
            v_out = _gate(v_pre)
        above = self.v2h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :H])  # row i sees the vertical stack of row i - 1
        if ch is not None:
            above = above + ch
        if self.fused:
            g = masked_conv2d(hx, self.h_conv.weight, self.h_conv.bias, mask="A" if self.first else "B",
                              sub_pixels=self.sub_pixels, anchor=(0, k // 2), gate=True, add=above,
                              backend=self.backend)
        else:
            g = _gate(self.h_conv(F.pad(hx, (k // 2, 0, 0, 0))) + above)
        out = self.h_out(g)
        return v_out, (out if self.first else hx + out), self.skip(g)


class PixelCNN(nn.Module):
    """Gated PixelCNN over images with ``channels`` sub-pixels of ``LEVELS`` values (``binary=True``: one channel of
    {0, 1}). Input: integer images (B, C, H, W) (uint8 or long; 0..255, or 0/1 when binary); output: logits
    (B, C, 256, H, W) (binary: (B, 1, H, W)). ``num_classes``: class-conditional (``y`` of shape (B,)): a class
    bias on every layer's vertical pre-activations (which the horizontal stack reads) and horizontal ones.
    ``fused``: each layer's two convolutions and gates as :func:`fastgan.masked_conv2d` calls (same parameters and
    state dict as the eager build; ``backend`` as that op's).

    ``levels``: values per sub-pixel (default 256); ``embed``: one channel of ``levels`` categories (a prior over
    VQ-VAE codes) read through a learned embedding of that size instead of as a number in [-1, 1]."""

    def __init__(self, channels: int = 3, hidden: int = 60, layers: int = 8, kernel: int = 5, first_kernel: int = 7,
                 skip: int | None = None, num_classes: int | None = None, binary: bool = False, fused: bool = False,
                 backend: str | None = None, levels: int = LEVELS, embed: int | None = None):
        super().__init__()
        if binary and channels != 1:
            raise ValueError("a binary PixelCNN has one channel")
        if embed is not None and (channels != 1 or binary):
            raise ValueError("embed= takes one channel of categories (a prior over codes), not binary")
        if hidden % channels or (skip or 2 * hidden) % channels:
            raise ValueError(f"hidden ({hidden}) and skip sizes must be multiples of channels ({channels})")
        if kernel % 2 == 0 or first_kernel % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        skip = skip or 2 * hidden
        self.channels, self.binary, self.num_classes, self.levels = channels, binary, num_classes, levels
        self.embed_in = nn.Embedding(levels, embed) if embed else None
        self.layers = nn.ModuleList(
            [GatedLayer(embed or channels, hidden, first_kernel, skip, channels, True, num_classes, fused, backend)]
            + [GatedLayer(hidden, hidden, kernel, skip, channels, False, num_classes, fused, backend)
               for _ in range(layers - 1)])
        levels = 1 if binary else levels
        gs = _groups(skip, channels)
        self.head1 = MaskedConv2d(skip, skip, 1, gs, gs, "B", (0, 0))
        self.head2 = MaskedConv2d(skip, channels * levels, 1, torch.arange(channels * levels) // levels, gs, "B",
                                  (0, 0))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Integer images -> the network's input: values in [-1, 1] (the weights' dtype), or the embedding."""
        if self.embed_in is not None:
            return self.embed_in(x[:, 0].long()).permute(0, 3, 1, 2)
        dtype = self.head2.weight.dtype
        return x.to(dtype) * 2 - 1 if self.binary else x.to(dtype) / ((self.levels - 1) / 2) - 1

    def head(self, skip: torch.Tensor) -> torch.Tensor:
        out = self.head2(F.relu(self.head1(F.relu(skip))))
        B, _, H, W = out.shape
        return out if self.binary else out.view(B, self.channels, self.levels, H, W)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, y)
        v = hx = self.scale(x)
        skip = 0
        for layer in self.layers:
            v, hx, s = layer(v, hx, y)
            skip = skip + s
        return self.head(skip)

    def _check(self, x, y):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PixelCNN takes images (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.is_floating_point():
            raise ValueError("PixelCNN takes integer images (0..255, or 0/1 when binary), got floating point: "
                             "quantise them first, e.g. ((x + 1) * 127.5).round().long()")
        if (self.num_classes is None) != (y is None):
            raise ValueError("a class-conditional PixelCNN needs y, an unconditional one takes none")

    def nll(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of each image in nats, (B,) (exact: the model is a product of conditionals)."""
        logits = self(x, y)
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none").flatten(1).sum(1)
        return F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none").flatten(1).sum(1)

    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per sub-pixel in bits: nll / (C H W ln 2), a scalar."""
        return self.nll(x, y).mean() / (x[0].numel() * math.log(2))

    def _draw(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Sample of logits (B, levels) (binary: (B,)) by the inverse CDF of the uniform draws u (B,)."""
        if self.binary:
            return (u < torch.sigmoid(logits)).long()
        cdf = torch.softmax(logits, dim=1).cumsum(1)
        return (cdf < u[:, None]).sum(1).clamp_(max=self.levels - 1)


def _uniforms(model, n, size, generator, device):
    return torch.rand(n, model.channels, size[0], size[1], generator=generator, dtype=torch.float64).to(device)


@torch.no_grad()
def sample(model: PixelCNN, n: int, size: tuple[int, int], y=None, generator=None, u=None,
           rows: int | None = None) -> torch.Tensor:
    """The naive sampler: one full forward per sub-pixel, in raster then R -> G -> B order. ``u`` (n, C, H, W): the
    uniform draws (default: from ``generator``); ``rows``: draw only the first rows (the rest stays 0; for timing).
    Returns integer images (n, C, H, W) (long)."""
    dev = model.head2.weight.device
    u = _uniforms(model, n, size, generator, dev) if u is None else u.to(dev)
    x = torch.zeros(n, model.channels, *size, dtype=torch.long, device=dev)
    for i in range(size[0] if rows is None else rows):
        for j in range(size[1]):
            for c in range(model.channels):
                logits = model(x, y)[:, c, :, i, j] if not model.binary else model(x, y)[:, 0, i, j]
                x[:, c, i, j] = model._draw(logits, u[:, c, i, j].to(logits.dtype))
    return x


def _masked(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight * conv.mask if isinstance(conv, MaskedConv2d) else conv.weight


@torch.no_grad()
def sample_cached(model: PixelCNN, n: int, size: tuple[int, int], y=None, generator=None, u=None) -> torch.Tensor:
    """The cached sampler (Ramachandran et al. 2017): the naive sampler's images from the same draws, computing per
    sub-pixel only the horizontal stack at the new pixel (and the head) as matrix products, and per finished row
    one row of the vertical stack of every layer. Work per image: O(layers (H W C + H)) small products instead of
    the naive sampler's H W C full forwards."""
    dev, dtype = model.head2.weight.device, model.head2.weight.dtype
    H, W = size
    u = _uniforms(model, n, size, generator, dev) if u is None else u.to(dev)
    x = torch.zeros(n, model.channels, H, W, dtype=torch.long, device=dev)
    model._check(x, y)
    L = model.layers
    conds = [layer._cond(y) for layer in L]
    # The 1-row convolutions at one pixel as matrix products: (window features) @ weight^T.
    flat = [(_masked(layer.h_conv).flatten(1), layer.h_conv.bias, layer.v2h.weight.flatten(1), layer.v2h.bias,
             _masked(layer.h_out).flatten(1), layer.h_out.bias, _masked(layer.skip).flatten(1), layer.skip.bias)
            for layer in L]
    head = [(_masked(c).flatten(1), c.bias) for c in (model.head1, model.head2)]
    # Per layer: its vertical input (padded: top k//2 rows of zeros, k//2 columns each side), the vertical
    # pre-activations of the finished rows (with a zero row -1 on top), and its horizontal input, pixel-major
    # (n, W + k//2, C: a window is a contiguous slice), left-padded.
    v_in = [torch.zeros(n, layer.v_conv.in_channels, H + layer.k // 2, W + 2 * (layer.k // 2), dtype=dtype,
                        device=dev) for layer in L]
    v_pre = [torch.zeros(n, H + 1, W, layer.v2h.in_channels, dtype=dtype, device=dev) for layer in L]
    h_in = [torch.zeros(n, W + layer.k // 2, layer.h_conv.in_channels, dtype=dtype, device=dev) for layer in L]
    for i in range(H):
        for j in range(W):
            for c in range(model.channels):
                skip = 0
                for li, (layer, (wh, bh, wv, bv, wo, bo, ws, bs)) in enumerate(zip(L, flat)):
                    p = layer.k // 2
                    window = h_in[li][:, j:j + p + 1].transpose(1, 2).flatten(1)  # (n, cin (p + 1)), as h_conv
                    pre = torch.addmm(bh, window, wh.T) + torch.addmm(bv, v_pre[li][:, i, j], wv.T)
                    if conds[li][1] is not None:
                        pre = pre + conds[li][1][:, :, 0, 0]
                    g = _gate(pre)
                    out = torch.addmm(bo, g, wo.T)
                    skip = skip + torch.addmm(bs, g, ws.T)
                    if li + 1 < len(L):
                        h_in[li + 1][:, j + L[li + 1].k // 2] = out if layer.first else h_in[li][:, j + p] + out
                logits = torch.addmm(head[1][1], torch.relu(torch.addmm(head[0][1], torch.relu(skip), head[0][0].T)),
                                     head[1][0].T)
                levels = 1 if model.binary else model.levels
                logits = logits[:, 0] if model.binary else logits[:, c * levels:(c + 1) * levels]
                x[:, c, i, j] = model._draw(logits, u[:, c, i, j].to(logits.dtype))
                feature = model.scale(x[:, c:c + 1, i:i + 1, j:j + 1])[:, :, 0, 0]  # (n, 1), or (n, embed)
                cs = slice(None) if model.embed_in is not None else slice(c, c + 1)
                p0 = L[0].k // 2
                h_in[0][:, j + p0, cs] = feature
                v_in[0][:, cs, i + p0, j + p0] = feature
        for li, layer in enumerate(L):  # row i is finished: one row of every vertical stack
            p = layer.k // 2
            pre = layer.vertical(v_in[li][:, :, i:i + p + 1], conds[li][0])  # (n, 2h, 1, W)
            v_pre[li][:, i + 1] = pre[:, :, 0].transpose(1, 2)
            if li + 1 < len(L):
                q = L[li + 1].k // 2
                v_in[li + 1][:, :, i + q, q:q + W] = _gate(pre)[:, :, 0]
    return x
