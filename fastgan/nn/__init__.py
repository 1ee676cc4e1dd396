"""Drop-in nn.Modules built on fastgan's ops."""
from .spectral_norm import (SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear, SpectralNorm, SpectralNormGroup,
                            spectral_norm, spectral_norm_layers)

__all__ = ["SNConv2d", "SNConvTranspose2d", "SNEmbedding", "SNLinear", "SpectralNorm", "SpectralNormGroup",
           "spectral_norm", "spectral_norm_layers"]
