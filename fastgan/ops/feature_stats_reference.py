"""Streaming feature moments in eager torch: the reference of ``feature_stats.py`` (same formula, float32)."""
from __future__ import annotations

import torch


def update(mean, m2, x, count):
    """Merge the batch x (b, d) into the running (mean, M2) of ``count`` rows, in place."""
    b = x.shape[0]
    xf = x.float()
    batch_mean = xf.mean(0)
    delta = batch_mean - mean
    centred = xf - batch_mean
    m2.add_(centred.T @ centred).add_(torch.outer(delta, delta), alpha=count * b / (count + b))
    mean.add_(delta, alpha=b / (count + b))
