"""The batch-norm modules' former module path (now :mod:`fastgan.nn.cond_batch_norm`): models pickled whole
(``torch.save(G)``) before the move name their classes here."""
from .cond_batch_norm import (  # noqa: F401
                              BatchNorm2d,
                              ConditionalBatchNorm2d,
                              LinearConditionalBatchNorm2d,
                              convert_sync_batchnorm,
                              from_torch_batchnorm,
)
