"""Functional ops: one file per op (reference, dispatch, torch.library registration, autograd)."""
from .cond_batch_norm import conditional_batch_norm
from .spectral_norm import spectral_norm_power_iteration_, spectral_normalize

__all__ = ["conditional_batch_norm", "spectral_norm_power_iteration_", "spectral_normalize"]
