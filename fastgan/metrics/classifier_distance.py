"""A Fréchet distance without Inception weights: in the feature space of a small classifier trained on the same
labelled data (the embedded shapes). It is *not* FID and is never reported as one: its scale depends on the
classifier, so it compares runs on the same data and classifier only. ``fastgan train`` prints it when no
Inception weights are given.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .frechet import frechet_distance
from .statistics import FeatureStatistics

FEATURES = 64


class SmallClassifier(nn.Module):
    """(images resized to 16 x 16 by area) conv 3x3 (32) -> pool -> conv (64) -> pool -> conv (64) -> global mean ->
    features (64) -> logits."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(64, FEATURES, 3, 1, 1), nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 16:
            x = F.adaptive_avg_pool2d(x, 16)
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(data, steps: int = 300, batch_size: int = 64, seed: int = 0, device="cpu") -> SmallClassifier:
    """Fit a :class:`SmallClassifier` to ``data``'s labels (deterministic from ``seed``); returns it in eval mode
    with its held-out accuracy in ``.accuracy``."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallClassifier(data.channels, data.num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    n_train = max(1, int(len(data) * 0.9))
    for _ in range(steps):
        x, y = data.batch(torch.randint(0, n_train, (batch_size,), generator=g))
        loss = F.cross_entropy(net(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        idx = torch.arange(n_train, min(len(data), n_train + 1000))
        x, y = data.batch(idx) if len(idx) else data.batch(torch.arange(min(len(data), 1000)))
        net.accuracy = float((net(x.to(device)).argmax(1).cpu() == y).double().mean())
    return net.requires_grad_(False)


@torch.no_grad()
def classifier_frechet_distance(net: SmallClassifier, real_batches, fake_batches, all_reduce: bool = False) -> float:
    """The Fréchet distance between the classifier features of two streams of image batches (N, C, H, W) in
    [-1, 1]; ``all_reduce``: the statistics are summed over the processes of torch.distributed first."""
    device = next(net.parameters()).device
    stats = []
    for batches in (real_batches, fake_batches):
        s = FeatureStatistics(FEATURES)
        for x in batches:
            s.update(net.features(x.to(device)).double().cpu())
        stats.append(s.all_reduce() if all_reduce else s)
    with warnings.catch_warnings():  # (features that a ReLU keeps at 0 make the covariances singular: expected)
        warnings.simplefilter("ignore", UserWarning)
        return float(frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean, stats[1].covariance))
