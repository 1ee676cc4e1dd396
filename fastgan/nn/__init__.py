"""Drop-in nn.Modules built on fastgan's ops."""
from .codebook_search import Quantized, VectorQuantizer
from .cond_batch_norm import (
                              BatchNorm2d,
                              ConditionalBatchNorm2d,
                              LinearConditionalBatchNorm2d,
                              convert_sync_batchnorm,
                              from_torch_batchnorm,
)
from .conv_transpose2d import ConvTranspose2d, ConvTransposeBNAct, UpsampleConv2d
from .masked_conv2d import MaskedConv2d
from .spectral_norm import (
                              SNConv2d,
                              SNConvTranspose2d,
                              SNEmbedding,
                              SNLinear,
                              SpectralNorm,
                              SpectralNormGroup,
                              spectral_norm,
                              spectral_norm_layers,
)

__all__ = ["BatchNorm2d", "ConditionalBatchNorm2d", "ConvTranspose2d", "ConvTransposeBNAct",
           "LinearConditionalBatchNorm2d", "MaskedConv2d", "SNConv2d", "SNConvTranspose2d", "SNEmbedding", "SNLinear",
           "SpectralNorm", "SpectralNormGroup", "convert_sync_batchnorm", "UpsampleConv2d", "from_torch_batchnorm",
           "spectral_norm", "spectral_norm_layers", "Quantized", "VectorQuantizer"]
