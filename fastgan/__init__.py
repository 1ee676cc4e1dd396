"""fastgan: fused Triton and CUDA kernels for the building blocks of GANs, VAEs and PixelCNNs."""
from ._backend import BackendUnavailable, current_backend, use_backend
from .ops import spectral_norm_power_iteration_, spectral_normalize

__version__ = "0.1.0"

__all__ = ["BackendUnavailable", "current_backend", "use_backend", "spectral_norm_power_iteration_",
           "spectral_normalize", "__version__"]
