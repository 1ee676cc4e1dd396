"""Functional ops: one file per op (reference, dispatch, torch.library registration, autograd)."""
from .spectral_norm import spectral_norm_power_iteration_, spectral_normalize

__all__ = ["spectral_norm_power_iteration_", "spectral_normalize"]
