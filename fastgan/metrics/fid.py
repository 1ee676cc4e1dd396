"""FrechetInceptionDistance: streaming FID between generated and real images, with any feature extractor."""
from __future__ import annotations

import os

import torch
from torch import nn

from ._network import MetricNetwork, default_device
from .frechet import FrechetReference
from .statistics import FeatureStatistics, load_statistics


class FrechetInceptionDistance:
    """FID between the images passed with ``real=False`` and the reference set (``real=True`` images, or
    precomputed statistics).

    Args:
        feature_extractor: a module mapping images (N, 3, H, W) to features (N, dims). Default: the FID
            InceptionV3 of pytorch-fid (``fastgan.metrics.inception``; needs its weight file, see there), which
            takes images in [0, 1].
        dims: feature dimension (2048 for the default network).
        device: where features are computed and accumulated (default: CUDA if available).
        precision: of the streaming statistics, ``"float64"`` or ``"float32"`` (see FeatureStatistics).
        reference: optional precomputed real statistics: an ``.npz`` path (keys mu, sigma) or a (mu, sigma) pair.

    The real statistics and the factorisation of their covariance are kept across :meth:`reset` (which clears
    the generated set only), so that evaluating many checkpoints against one reference set costs one
    factorisation.
    """

    def __init__(self, feature_extractor: nn.Module | None = None, dims: int = 2048,
                 device: torch.device | str | None = None, precision: str = "float64", reference=None):
        self.device = default_device(device)
        self._network = MetricNetwork(feature_extractor, self.device)
        self.real = FeatureStatistics(dims, self.device, precision)
        self.fake = FeatureStatistics(dims, self.device, precision)
        self._reference: FrechetReference | None = None
        self._reference_count = -1
        if reference is not None:
            self.set_reference(*(load_statistics(reference) if isinstance(reference, (str, os.PathLike))
                                 else reference))

    @property
    def feature_extractor(self) -> nn.Module:
        return self._network.get()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features of a batch of images, as the metric sees them."""
        return self._network(images)

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of images to the real (reference) or the generated set."""
        self.update_features(self.features(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed features (N, dims)."""
        if real and self._reference is not None and self._reference_count < 0:
            raise ValueError("the reference statistics were given precomputed; real images cannot be added to them")
        (self.real if real else self.fake).update(features)

    def set_reference(self, mu, sigma) -> None:
        """Use precomputed real statistics (numpy arrays or tensors) instead of real images."""
        self.real.reset()
        self._reference = FrechetReference(mu, sigma, device=self.device)
        self._reference_count = -1  # precomputed: never rebuilt from self.real

    def reference(self) -> FrechetReference:
        """The reference statistics with their factorisation, rebuilt only when real images were added."""
        if self._reference is None or (self._reference_count >= 0 and self._reference_count != self.real.count):
            if self.real.count < 2:
                raise ValueError("no reference statistics: add real images (update(..., real=True)) or call "
                                 "set_reference(mu, sigma)")
            self._reference = FrechetReference(self.real.mean, self.real.covariance)
            self._reference_count = self.real.count
        return self._reference

    def compute(self) -> float:
        """The FID of the generated images seen since the last reset, a Python float."""
        return self.reference().distance(self.fake.mean, self.fake.covariance)

    def reset(self, real: bool = False) -> None:
        """Forget the generated images; with ``real=True`` also the reference set."""
        self.fake.reset()
        if real:
            self.real.reset()
            self._reference, self._reference_count = None, -1
