"""Functional ops: one file per op (reference, dispatch, torch.library registration, autograd)."""
from .codebook_search import codebook_ema_update_, codebook_search
from .cond_batch_norm import conditional_batch_norm
from .conv_transpose2d import conv_transpose2d, upsample_conv2d
from .masked_conv2d import masked_conv2d
from .spectral_norm import spectral_norm_power_iteration_, spectral_normalize

__all__ = ["codebook_ema_update_", "codebook_search", "conditional_batch_norm", "conv_transpose2d", "masked_conv2d",
           "spectral_norm_power_iteration_", "spectral_normalize", "upsample_conv2d"]
