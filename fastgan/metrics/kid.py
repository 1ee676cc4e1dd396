"""KernelInceptionDistance: unbiased MMD^2 with the cubic polynomial kernel, over seeded random subsets."""
from __future__ import annotations

import torch
from torch import nn

from ._network import MetricNetwork, default_device


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0,
                  gamma: float | None = None) -> float:
    """Unbiased MMD^2 between samples x (m, d) and y (n, d) with k(a, b) = (gamma a.b + coef0)^degree; needs at
    least 2 samples on each side (the unbiased estimate leaves out the diagonal)."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2_unbiased: x and y must be (m, d) and (n, d) with the same d, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"mmd2_unbiased: the unbiased estimate needs at least 2 samples on each side, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = (g * x @ x.T + coef0) ** degree
    kyy = (g * y @ y.T + coef0) ** degree
    kxy = (g * x @ y.T + coef0) ** degree
    m, n = x.shape[0], y.shape[0]
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


class KernelInceptionDistance:
    """Kernel Inception Distance (Binkowski et al.): mean and standard deviation of the unbiased MMD^2 between
    ``subsets`` random subsets of ``subset_size`` real and generated features, drawn with ``seed``.

    Args:
        feature_extractor: images -> features (N, d); default the FID InceptionV3 (2048-d, images in [0, 1]).
        subsets, subset_size: 100 and 1000 as in the paper's code and clean-fid; subsets are capped at the
            number of samples available.
        degree, coef0, gamma: the kernel (a.b / d + 1)^3 by default.
        seed: the subsets are reproducible: the same features and seed give the same result.

    Features are kept (float32) until :meth:`reset`; computation is in float64 on ``device``.
    """

    def __init__(self, feature_extractor: nn.Module | None = None, subsets: int = 100, subset_size: int = 1000,
                 degree: int = 3, coef0: float = 1.0, gamma: float | None = None, seed: int = 0,
                 device: torch.device | str | None = None):
        if subsets < 1 or subset_size < 2:
            raise ValueError(f"subsets must be >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
        self.subsets, self.subset_size, self.degree, self.coef0, self.gamma, self.seed = (
            subsets, subset_size, degree, coef0, gamma, seed)
        self.device = default_device(device)
        self._network = MetricNetwork(feature_extractor, self.device)
        self._features = {True: [], False: []}

    @property
    def feature_extractor(self) -> nn.Module:
        return self._network.get()

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of images to the real or the generated set."""
        self.update_features(self._network(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        if features.dim() != 2:
            raise ValueError(f"features must have shape (N, d), got {tuple(features.shape)}")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features hold NaN or Inf values")
        self._features[bool(real)].append(features.detach().float())

    def compute(self) -> tuple[float, float]:
        """(mean, standard deviation) of MMD^2 over the subsets."""
        if not self._features[True] or not self._features[False]:
            raise ValueError("KernelInceptionDistance needs both real and generated features")
        real = torch.cat(self._features[True]).to(self.device, torch.float64)
        fake = torch.cat(self._features[False]).to(self.device, torch.float64)
        if real.shape[1] != fake.shape[1]:
            raise ValueError(f"real features are {real.shape[1]}-d, generated {fake.shape[1]}-d")
        m = min(self.subset_size, real.shape[0], fake.shape[0])
        if m < 2:
            raise ValueError("KernelInceptionDistance needs at least 2 real and 2 generated samples")
        gen = torch.Generator().manual_seed(self.seed)
        values = []
        for _ in range(self.subsets):
            ir = torch.randperm(real.shape[0], generator=gen)[:m].to(self.device)
            ig = torch.randperm(fake.shape[0], generator=gen)[:m].to(self.device)
            values.append(mmd2_unbiased(real[ir], fake[ig], self.degree, self.coef0, self.gamma))
        v = torch.tensor(values, dtype=torch.float64)
        return float(v.mean()), float(v.std(unbiased=False))

    def reset(self, real: bool = False) -> None:
        """Forget the generated features; with ``real=True`` also the real ones."""
        self._features[False] = []
        if real:
            self._features[True] = []
