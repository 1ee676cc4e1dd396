"""fastgan: fused Triton and CUDA kernels for the building blocks of GANs, VAEs and PixelCNNs."""
from . import data, metrics, models, nn, train
from ._backend import BackendUnavailable, current_backend, use_backend
from .checkpoints import (
                          from_biggan_ccbn,
                          from_biggan_spectral_norm,
                          from_legacy_spectral_norm,
                          from_studiogan_cbn,
                          to_biggan_ccbn,
                          to_studiogan_cbn,
)
from .convert import ConversionReport, convert, revert
from .ops import (
                          codebook_ema_update_,
                          codebook_search,
                          conditional_batch_norm,
                          conv_transpose2d,
                          masked_conv2d,
                          spectral_norm_power_iteration_,
                          spectral_normalize,
                          upsample_conv2d,
)
from .ops.gradient_penalty import interpolate_samples, penalty_of_gradient
from .penalties import LazyRegularizer, dragan_penalty, gradient_penalty, r1_penalty, r2_penalty

__version__ = "0.1.0"

__all__ = ["BackendUnavailable", "codebook_ema_update_", "codebook_search", "conditional_batch_norm",
           "conv_transpose2d", "ConversionReport", "convert", "revert",
           "current_backend", "masked_conv2d",
           "dragan_penalty", "from_biggan_ccbn", "from_biggan_spectral_norm", "from_legacy_spectral_norm",
           "from_studiogan_cbn", "data", "gradient_penalty", "interpolate_samples", "LazyRegularizer", "metrics",
           "models", "nn",
           "penalty_of_gradient", "r1_penalty", "r2_penalty", "spectral_norm_power_iteration_", "spectral_normalize",
           "to_biggan_ccbn", "to_studiogan_cbn", "train", "upsample_conv2d", "use_backend", "__version__"]
