"""InceptionScore: exp(E_x KL(p(y|x) || p(y))), averaged over splits, in float64."""
from __future__ import annotations

import math

import torch
from torch import nn

from ._network import MetricNetwork, default_device


class InceptionScore:
    """Inception Score of generated images.

    Args:
        classifier: a module mapping images to class logits (N, C). Default: the logits (1008 classes) of the FID
            InceptionV3 (``fastgan.metrics.inception``), images in [0, 1].
        splits: the images are cut, in the order they were added, into this many equal parts; the score is the
            mean and standard deviation over the parts (10, as in the original and torch-fidelity).
        device: where the classifier runs (default: CUDA if available).

    The logits of every image are kept (float32, on the CPU: 4 bytes x C per image) until :meth:`reset`.
    """

    def __init__(self, classifier: nn.Module | None = None, splits: int = 10,
                 device: torch.device | str | None = None):
        if not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive int, got {splits!r}")
        self.splits = splits
        self.device = default_device(device)
        self._network = MetricNetwork(classifier, self.device, logits=True)
        self._logits: list[torch.Tensor] = []

    @property
    def classifier(self) -> nn.Module:
        return self._network.get()

    def update(self, images: torch.Tensor) -> None:
        """Add a batch of generated images."""
        self.update_logits(self._network(images))

    def update_logits(self, logits: torch.Tensor) -> None:
        """Add precomputed class logits (N, C)."""
        if logits.dim() != 2:
            raise ValueError(f"logits must have shape (N, classes), got {tuple(logits.shape)}")
        if self._logits and logits.shape[1] != self._logits[0].shape[1]:
            raise ValueError(f"logits with {logits.shape[1]} classes after {self._logits[0].shape[1]}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits hold NaN or Inf values")
        if logits.numel() and bool((logits >= 0).all()) and bool(
                ((logits.double().sum(1) - 1).abs() <= 1e-3).all()):
            raise ValueError("InceptionScore takes class logits, but every row of these is non-negative and sums to "
                             "1: they look like probabilities (a softmax output). Pass the logits, or "
                             "torch.log(probabilities), which has the same softmax")
        self._logits.append(logits.detach().float().cpu())

    def compute(self) -> tuple[float, float]:
        """(mean, standard deviation) of the score over the splits."""
        if not self._logits:
            raise ValueError("InceptionScore: no images were added")
        logp = torch.log_softmax(torch.cat(self._logits).double(), dim=1)
        n = logp.shape[0]
        if n < self.splits:
            raise ValueError(f"{n} images for {self.splits} splits: add more images or use fewer splits")
        scores = []
        for part in torch.tensor_split(logp, self.splits):
            log_py = torch.logsumexp(part, dim=0) - math.log(part.shape[0])  # log of the mean p(y) of the part
            kl = (part.exp() * (part - log_py)).sum(1).mean()
            scores.append(math.exp(float(kl)))
        scores_t = torch.tensor(scores, dtype=torch.float64)
        return float(scores_t.mean()), float(scores_t.std(unbiased=False)) if self.splits > 1 else 0.0

    def reset(self) -> None:
        self._logits = []

