"""Tests of fastgan.metrics.inception: the FID InceptionV3 of pytorch-fid, without its weights (CPU, random init)."""
import math
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F

from fastgan.metrics import inception as inc
from fastgan.metrics.inception import (
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
    FIDInceptionV3,
    InceptionB,
    InceptionD,
    InceptionWeightsError,
    InceptionWeightsNotFoundError,
    fid_inception_v3,
)

pytestmark = pytest.mark.no_triton  # (CI runs these on one Triton release)

# Every entry of pytorch-fid's pt_inception-2015-12-05-6726825d.pth, with its shape. Derived, not read from
# fastgan: each conv's (out, in, kh, kw) was written from the constructor arguments of torchvision's Inception3
# (pytorch/vision, torchvision/models/inception.py: BasicConv2d = Conv2d(bias=False) + BatchNorm2d(eps=0.001);
# blocks InceptionA..E) with pytorch-fid's configuration (mseitzer/pytorch-fid, src/pytorch_fid/inception.py,
# fid_inception_v3: num_classes=1008, aux_logits=False; the FID blocks keep the torchvision blocks' layers).
# Each BatchNorm has weight, bias, running_mean, running_var (out,) and num_batches_tracked () — the file
# holds the last too (see the comment in fastgan/metrics/inception_weights.py), although loading does not need it.
EXPECTED_STATE = [
    ('Conv2d_1a_3x3.conv.weight', (32, 3, 3, 3)),
    ('Conv2d_1a_3x3.bn.weight', (32,)),
    ('Conv2d_1a_3x3.bn.bias', (32,)),
    ('Conv2d_1a_3x3.bn.running_mean', (32,)),
    ('Conv2d_1a_3x3.bn.running_var', (32,)),
    ('Conv2d_1a_3x3.bn.num_batches_tracked', ()),
    ('Conv2d_2a_3x3.conv.weight', (32, 32, 3, 3)),
    ('Conv2d_2a_3x3.bn.weight', (32,)),
    ('Conv2d_2a_3x3.bn.bias', (32,)),
    ('Conv2d_2a_3x3.bn.running_mean', (32,)),
    ('Conv2d_2a_3x3.bn.running_var', (32,)),
    ('Conv2d_2a_3x3.bn.num_batches_tracked', ()),
    ('Conv2d_2b_3x3.conv.weight', (64, 32, 3, 3)),
    ('Conv2d_2b_3x3.bn.weight', (64,)),
    ('Conv2d_2b_3x3.bn.bias', (64,)),
    ('Conv2d_2b_3x3.bn.running_mean', (64,)),
    ('Conv2d_2b_3x3.bn.running_var', (64,)),
    ('Conv2d_2b_3x3.bn.num_batches_tracked', ()),
    ('Conv2d_3b_1x1.conv.weight', (80, 64, 1, 1)),
    ('Conv2d_3b_1x1.bn.weight', (80,)),
    ('Conv2d_3b_1x1.bn.bias', (80,)),
    ('Conv2d_3b_1x1.bn.running_mean', (80,)),
    ('Conv2d_3b_1x1.bn.running_var', (80,)),
    ('Conv2d_3b_1x1.bn.num_batches_tracked', ()),
    ('Conv2d_4a_3x3.conv.weight', (192, 80, 3, 3)),
    ('Conv2d_4a_3x3.bn.weight', (192,)),
    ('Conv2d_4a_3x3.bn.bias', (192,)),
    ('Conv2d_4a_3x3.bn.running_mean', (192,)),
    ('Conv2d_4a_3x3.bn.running_var', (192,)),
    ('Conv2d_4a_3x3.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch1x1.conv.weight', (64, 192, 1, 1)),
    ('Mixed_5b.branch1x1.bn.weight', (64,)),
    ('Mixed_5b.branch1x1.bn.bias', (64,)),
    ('Mixed_5b.branch1x1.bn.running_mean', (64,)),
    ('Mixed_5b.branch1x1.bn.running_var', (64,)),
    ('Mixed_5b.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch5x5_1.conv.weight', (48, 192, 1, 1)),
    ('Mixed_5b.branch5x5_1.bn.weight', (48,)),
    ('Mixed_5b.branch5x5_1.bn.bias', (48,)),
    ('Mixed_5b.branch5x5_1.bn.running_mean', (48,)),
    ('Mixed_5b.branch5x5_1.bn.running_var', (48,)),
    ('Mixed_5b.branch5x5_1.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch5x5_2.conv.weight', (64, 48, 5, 5)),
    ('Mixed_5b.branch5x5_2.bn.weight', (64,)),
    ('Mixed_5b.branch5x5_2.bn.bias', (64,)),
    ('Mixed_5b.branch5x5_2.bn.running_mean', (64,)),
    ('Mixed_5b.branch5x5_2.bn.running_var', (64,)),
    ('Mixed_5b.branch5x5_2.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch3x3dbl_1.conv.weight', (64, 192, 1, 1)),
    ('Mixed_5b.branch3x3dbl_1.bn.weight', (64,)),
    ('Mixed_5b.branch3x3dbl_1.bn.bias', (64,)),
    ('Mixed_5b.branch3x3dbl_1.bn.running_mean', (64,)),
    ('Mixed_5b.branch3x3dbl_1.bn.running_var', (64,)),
    ('Mixed_5b.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch3x3dbl_2.conv.weight', (96, 64, 3, 3)),
    ('Mixed_5b.branch3x3dbl_2.bn.weight', (96,)),
    ('Mixed_5b.branch3x3dbl_2.bn.bias', (96,)),
    ('Mixed_5b.branch3x3dbl_2.bn.running_mean', (96,)),
    ('Mixed_5b.branch3x3dbl_2.bn.running_var', (96,)),
    ('Mixed_5b.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch3x3dbl_3.conv.weight', (96, 96, 3, 3)),
    ('Mixed_5b.branch3x3dbl_3.bn.weight', (96,)),
    ('Mixed_5b.branch3x3dbl_3.bn.bias', (96,)),
    ('Mixed_5b.branch3x3dbl_3.bn.running_mean', (96,)),
    ('Mixed_5b.branch3x3dbl_3.bn.running_var', (96,)),
    ('Mixed_5b.branch3x3dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_5b.branch_pool.conv.weight', (32, 192, 1, 1)),
    ('Mixed_5b.branch_pool.bn.weight', (32,)),
    ('Mixed_5b.branch_pool.bn.bias', (32,)),
    ('Mixed_5b.branch_pool.bn.running_mean', (32,)),
    ('Mixed_5b.branch_pool.bn.running_var', (32,)),
    ('Mixed_5b.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch1x1.conv.weight', (64, 256, 1, 1)),
    ('Mixed_5c.branch1x1.bn.weight', (64,)),
    ('Mixed_5c.branch1x1.bn.bias', (64,)),
    ('Mixed_5c.branch1x1.bn.running_mean', (64,)),
    ('Mixed_5c.branch1x1.bn.running_var', (64,)),
    ('Mixed_5c.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch5x5_1.conv.weight', (48, 256, 1, 1)),
    ('Mixed_5c.branch5x5_1.bn.weight', (48,)),
    ('Mixed_5c.branch5x5_1.bn.bias', (48,)),
    ('Mixed_5c.branch5x5_1.bn.running_mean', (48,)),
    ('Mixed_5c.branch5x5_1.bn.running_var', (48,)),
    ('Mixed_5c.branch5x5_1.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch5x5_2.conv.weight', (64, 48, 5, 5)),
    ('Mixed_5c.branch5x5_2.bn.weight', (64,)),
    ('Mixed_5c.branch5x5_2.bn.bias', (64,)),
    ('Mixed_5c.branch5x5_2.bn.running_mean', (64,)),
    ('Mixed_5c.branch5x5_2.bn.running_var', (64,)),
    ('Mixed_5c.branch5x5_2.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch3x3dbl_1.conv.weight', (64, 256, 1, 1)),
    ('Mixed_5c.branch3x3dbl_1.bn.weight', (64,)),
    ('Mixed_5c.branch3x3dbl_1.bn.bias', (64,)),
    ('Mixed_5c.branch3x3dbl_1.bn.running_mean', (64,)),
    ('Mixed_5c.branch3x3dbl_1.bn.running_var', (64,)),
    ('Mixed_5c.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch3x3dbl_2.conv.weight', (96, 64, 3, 3)),
    ('Mixed_5c.branch3x3dbl_2.bn.weight', (96,)),
    ('Mixed_5c.branch3x3dbl_2.bn.bias', (96,)),
    ('Mixed_5c.branch3x3dbl_2.bn.running_mean', (96,)),
    ('Mixed_5c.branch3x3dbl_2.bn.running_var', (96,)),
    ('Mixed_5c.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch3x3dbl_3.conv.weight', (96, 96, 3, 3)),
    ('Mixed_5c.branch3x3dbl_3.bn.weight', (96,)),
    ('Mixed_5c.branch3x3dbl_3.bn.bias', (96,)),
    ('Mixed_5c.branch3x3dbl_3.bn.running_mean', (96,)),
    ('Mixed_5c.branch3x3dbl_3.bn.running_var', (96,)),
    ('Mixed_5c.branch3x3dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_5c.branch_pool.conv.weight', (64, 256, 1, 1)),
    ('Mixed_5c.branch_pool.bn.weight', (64,)),
    ('Mixed_5c.branch_pool.bn.bias', (64,)),
    ('Mixed_5c.branch_pool.bn.running_mean', (64,)),
    ('Mixed_5c.branch_pool.bn.running_var', (64,)),
    ('Mixed_5c.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch1x1.conv.weight', (64, 288, 1, 1)),
    ('Mixed_5d.branch1x1.bn.weight', (64,)),
    ('Mixed_5d.branch1x1.bn.bias', (64,)),
    ('Mixed_5d.branch1x1.bn.running_mean', (64,)),
    ('Mixed_5d.branch1x1.bn.running_var', (64,)),
    ('Mixed_5d.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch5x5_1.conv.weight', (48, 288, 1, 1)),
    ('Mixed_5d.branch5x5_1.bn.weight', (48,)),
    ('Mixed_5d.branch5x5_1.bn.bias', (48,)),
    ('Mixed_5d.branch5x5_1.bn.running_mean', (48,)),
    ('Mixed_5d.branch5x5_1.bn.running_var', (48,)),
    ('Mixed_5d.branch5x5_1.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch5x5_2.conv.weight', (64, 48, 5, 5)),
    ('Mixed_5d.branch5x5_2.bn.weight', (64,)),
    ('Mixed_5d.branch5x5_2.bn.bias', (64,)),
    ('Mixed_5d.branch5x5_2.bn.running_mean', (64,)),
    ('Mixed_5d.branch5x5_2.bn.running_var', (64,)),
    ('Mixed_5d.branch5x5_2.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch3x3dbl_1.conv.weight', (64, 288, 1, 1)),
    ('Mixed_5d.branch3x3dbl_1.bn.weight', (64,)),
    ('Mixed_5d.branch3x3dbl_1.bn.bias', (64,)),
    ('Mixed_5d.branch3x3dbl_1.bn.running_mean', (64,)),
    ('Mixed_5d.branch3x3dbl_1.bn.running_var', (64,)),
    ('Mixed_5d.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch3x3dbl_2.conv.weight', (96, 64, 3, 3)),
    ('Mixed_5d.branch3x3dbl_2.bn.weight', (96,)),
    ('Mixed_5d.branch3x3dbl_2.bn.bias', (96,)),
    ('Mixed_5d.branch3x3dbl_2.bn.running_mean', (96,)),
    ('Mixed_5d.branch3x3dbl_2.bn.running_var', (96,)),
    ('Mixed_5d.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch3x3dbl_3.conv.weight', (96, 96, 3, 3)),
    ('Mixed_5d.branch3x3dbl_3.bn.weight', (96,)),
    ('Mixed_5d.branch3x3dbl_3.bn.bias', (96,)),
    ('Mixed_5d.branch3x3dbl_3.bn.running_mean', (96,)),
    ('Mixed_5d.branch3x3dbl_3.bn.running_var', (96,)),
    ('Mixed_5d.branch3x3dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_5d.branch_pool.conv.weight', (64, 288, 1, 1)),
    ('Mixed_5d.branch_pool.bn.weight', (64,)),
    ('Mixed_5d.branch_pool.bn.bias', (64,)),
    ('Mixed_5d.branch_pool.bn.running_mean', (64,)),
    ('Mixed_5d.branch_pool.bn.running_var', (64,)),
    ('Mixed_5d.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_6a.branch3x3.conv.weight', (384, 288, 3, 3)),
    ('Mixed_6a.branch3x3.bn.weight', (384,)),
    ('Mixed_6a.branch3x3.bn.bias', (384,)),
    ('Mixed_6a.branch3x3.bn.running_mean', (384,)),
    ('Mixed_6a.branch3x3.bn.running_var', (384,)),
    ('Mixed_6a.branch3x3.bn.num_batches_tracked', ()),
    ('Mixed_6a.branch3x3dbl_1.conv.weight', (64, 288, 1, 1)),
    ('Mixed_6a.branch3x3dbl_1.bn.weight', (64,)),
    ('Mixed_6a.branch3x3dbl_1.bn.bias', (64,)),
    ('Mixed_6a.branch3x3dbl_1.bn.running_mean', (64,)),
    ('Mixed_6a.branch3x3dbl_1.bn.running_var', (64,)),
    ('Mixed_6a.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_6a.branch3x3dbl_2.conv.weight', (96, 64, 3, 3)),
    ('Mixed_6a.branch3x3dbl_2.bn.weight', (96,)),
    ('Mixed_6a.branch3x3dbl_2.bn.bias', (96,)),
    ('Mixed_6a.branch3x3dbl_2.bn.running_mean', (96,)),
    ('Mixed_6a.branch3x3dbl_2.bn.running_var', (96,)),
    ('Mixed_6a.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_6a.branch3x3dbl_3.conv.weight', (96, 96, 3, 3)),
    ('Mixed_6a.branch3x3dbl_3.bn.weight', (96,)),
    ('Mixed_6a.branch3x3dbl_3.bn.bias', (96,)),
    ('Mixed_6a.branch3x3dbl_3.bn.running_mean', (96,)),
    ('Mixed_6a.branch3x3dbl_3.bn.running_var', (96,)),
    ('Mixed_6a.branch3x3dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch1x1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6b.branch1x1.bn.weight', (192,)),
    ('Mixed_6b.branch1x1.bn.bias', (192,)),
    ('Mixed_6b.branch1x1.bn.running_mean', (192,)),
    ('Mixed_6b.branch1x1.bn.running_var', (192,)),
    ('Mixed_6b.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7_1.conv.weight', (128, 768, 1, 1)),
    ('Mixed_6b.branch7x7_1.bn.weight', (128,)),
    ('Mixed_6b.branch7x7_1.bn.bias', (128,)),
    ('Mixed_6b.branch7x7_1.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7_1.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7_1.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7_2.conv.weight', (128, 128, 1, 7)),
    ('Mixed_6b.branch7x7_2.bn.weight', (128,)),
    ('Mixed_6b.branch7x7_2.bn.bias', (128,)),
    ('Mixed_6b.branch7x7_2.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7_2.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7_2.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7_3.conv.weight', (192, 128, 7, 1)),
    ('Mixed_6b.branch7x7_3.bn.weight', (192,)),
    ('Mixed_6b.branch7x7_3.bn.bias', (192,)),
    ('Mixed_6b.branch7x7_3.bn.running_mean', (192,)),
    ('Mixed_6b.branch7x7_3.bn.running_var', (192,)),
    ('Mixed_6b.branch7x7_3.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7dbl_1.conv.weight', (128, 768, 1, 1)),
    ('Mixed_6b.branch7x7dbl_1.bn.weight', (128,)),
    ('Mixed_6b.branch7x7dbl_1.bn.bias', (128,)),
    ('Mixed_6b.branch7x7dbl_1.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7dbl_1.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7dbl_2.conv.weight', (128, 128, 7, 1)),
    ('Mixed_6b.branch7x7dbl_2.bn.weight', (128,)),
    ('Mixed_6b.branch7x7dbl_2.bn.bias', (128,)),
    ('Mixed_6b.branch7x7dbl_2.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7dbl_2.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7dbl_3.conv.weight', (128, 128, 1, 7)),
    ('Mixed_6b.branch7x7dbl_3.bn.weight', (128,)),
    ('Mixed_6b.branch7x7dbl_3.bn.bias', (128,)),
    ('Mixed_6b.branch7x7dbl_3.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7dbl_3.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7dbl_4.conv.weight', (128, 128, 7, 1)),
    ('Mixed_6b.branch7x7dbl_4.bn.weight', (128,)),
    ('Mixed_6b.branch7x7dbl_4.bn.bias', (128,)),
    ('Mixed_6b.branch7x7dbl_4.bn.running_mean', (128,)),
    ('Mixed_6b.branch7x7dbl_4.bn.running_var', (128,)),
    ('Mixed_6b.branch7x7dbl_4.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch7x7dbl_5.conv.weight', (192, 128, 1, 7)),
    ('Mixed_6b.branch7x7dbl_5.bn.weight', (192,)),
    ('Mixed_6b.branch7x7dbl_5.bn.bias', (192,)),
    ('Mixed_6b.branch7x7dbl_5.bn.running_mean', (192,)),
    ('Mixed_6b.branch7x7dbl_5.bn.running_var', (192,)),
    ('Mixed_6b.branch7x7dbl_5.bn.num_batches_tracked', ()),
    ('Mixed_6b.branch_pool.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6b.branch_pool.bn.weight', (192,)),
    ('Mixed_6b.branch_pool.bn.bias', (192,)),
    ('Mixed_6b.branch_pool.bn.running_mean', (192,)),
    ('Mixed_6b.branch_pool.bn.running_var', (192,)),
    ('Mixed_6b.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch1x1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6c.branch1x1.bn.weight', (192,)),
    ('Mixed_6c.branch1x1.bn.bias', (192,)),
    ('Mixed_6c.branch1x1.bn.running_mean', (192,)),
    ('Mixed_6c.branch1x1.bn.running_var', (192,)),
    ('Mixed_6c.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7_1.conv.weight', (160, 768, 1, 1)),
    ('Mixed_6c.branch7x7_1.bn.weight', (160,)),
    ('Mixed_6c.branch7x7_1.bn.bias', (160,)),
    ('Mixed_6c.branch7x7_1.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7_1.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7_1.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7_2.conv.weight', (160, 160, 1, 7)),
    ('Mixed_6c.branch7x7_2.bn.weight', (160,)),
    ('Mixed_6c.branch7x7_2.bn.bias', (160,)),
    ('Mixed_6c.branch7x7_2.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7_2.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7_2.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7_3.conv.weight', (192, 160, 7, 1)),
    ('Mixed_6c.branch7x7_3.bn.weight', (192,)),
    ('Mixed_6c.branch7x7_3.bn.bias', (192,)),
    ('Mixed_6c.branch7x7_3.bn.running_mean', (192,)),
    ('Mixed_6c.branch7x7_3.bn.running_var', (192,)),
    ('Mixed_6c.branch7x7_3.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7dbl_1.conv.weight', (160, 768, 1, 1)),
    ('Mixed_6c.branch7x7dbl_1.bn.weight', (160,)),
    ('Mixed_6c.branch7x7dbl_1.bn.bias', (160,)),
    ('Mixed_6c.branch7x7dbl_1.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7dbl_1.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7dbl_2.conv.weight', (160, 160, 7, 1)),
    ('Mixed_6c.branch7x7dbl_2.bn.weight', (160,)),
    ('Mixed_6c.branch7x7dbl_2.bn.bias', (160,)),
    ('Mixed_6c.branch7x7dbl_2.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7dbl_2.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7dbl_3.conv.weight', (160, 160, 1, 7)),
    ('Mixed_6c.branch7x7dbl_3.bn.weight', (160,)),
    ('Mixed_6c.branch7x7dbl_3.bn.bias', (160,)),
    ('Mixed_6c.branch7x7dbl_3.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7dbl_3.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7dbl_4.conv.weight', (160, 160, 7, 1)),
    ('Mixed_6c.branch7x7dbl_4.bn.weight', (160,)),
    ('Mixed_6c.branch7x7dbl_4.bn.bias', (160,)),
    ('Mixed_6c.branch7x7dbl_4.bn.running_mean', (160,)),
    ('Mixed_6c.branch7x7dbl_4.bn.running_var', (160,)),
    ('Mixed_6c.branch7x7dbl_4.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch7x7dbl_5.conv.weight', (192, 160, 1, 7)),
    ('Mixed_6c.branch7x7dbl_5.bn.weight', (192,)),
    ('Mixed_6c.branch7x7dbl_5.bn.bias', (192,)),
    ('Mixed_6c.branch7x7dbl_5.bn.running_mean', (192,)),
    ('Mixed_6c.branch7x7dbl_5.bn.running_var', (192,)),
    ('Mixed_6c.branch7x7dbl_5.bn.num_batches_tracked', ()),
    ('Mixed_6c.branch_pool.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6c.branch_pool.bn.weight', (192,)),
    ('Mixed_6c.branch_pool.bn.bias', (192,)),
    ('Mixed_6c.branch_pool.bn.running_mean', (192,)),
    ('Mixed_6c.branch_pool.bn.running_var', (192,)),
    ('Mixed_6c.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch1x1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6d.branch1x1.bn.weight', (192,)),
    ('Mixed_6d.branch1x1.bn.bias', (192,)),
    ('Mixed_6d.branch1x1.bn.running_mean', (192,)),
    ('Mixed_6d.branch1x1.bn.running_var', (192,)),
    ('Mixed_6d.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7_1.conv.weight', (160, 768, 1, 1)),
    ('Mixed_6d.branch7x7_1.bn.weight', (160,)),
    ('Mixed_6d.branch7x7_1.bn.bias', (160,)),
    ('Mixed_6d.branch7x7_1.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7_1.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7_1.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7_2.conv.weight', (160, 160, 1, 7)),
    ('Mixed_6d.branch7x7_2.bn.weight', (160,)),
    ('Mixed_6d.branch7x7_2.bn.bias', (160,)),
    ('Mixed_6d.branch7x7_2.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7_2.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7_2.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7_3.conv.weight', (192, 160, 7, 1)),
    ('Mixed_6d.branch7x7_3.bn.weight', (192,)),
    ('Mixed_6d.branch7x7_3.bn.bias', (192,)),
    ('Mixed_6d.branch7x7_3.bn.running_mean', (192,)),
    ('Mixed_6d.branch7x7_3.bn.running_var', (192,)),
    ('Mixed_6d.branch7x7_3.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7dbl_1.conv.weight', (160, 768, 1, 1)),
    ('Mixed_6d.branch7x7dbl_1.bn.weight', (160,)),
    ('Mixed_6d.branch7x7dbl_1.bn.bias', (160,)),
    ('Mixed_6d.branch7x7dbl_1.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7dbl_1.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7dbl_2.conv.weight', (160, 160, 7, 1)),
    ('Mixed_6d.branch7x7dbl_2.bn.weight', (160,)),
    ('Mixed_6d.branch7x7dbl_2.bn.bias', (160,)),
    ('Mixed_6d.branch7x7dbl_2.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7dbl_2.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7dbl_3.conv.weight', (160, 160, 1, 7)),
    ('Mixed_6d.branch7x7dbl_3.bn.weight', (160,)),
    ('Mixed_6d.branch7x7dbl_3.bn.bias', (160,)),
    ('Mixed_6d.branch7x7dbl_3.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7dbl_3.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7dbl_4.conv.weight', (160, 160, 7, 1)),
    ('Mixed_6d.branch7x7dbl_4.bn.weight', (160,)),
    ('Mixed_6d.branch7x7dbl_4.bn.bias', (160,)),
    ('Mixed_6d.branch7x7dbl_4.bn.running_mean', (160,)),
    ('Mixed_6d.branch7x7dbl_4.bn.running_var', (160,)),
    ('Mixed_6d.branch7x7dbl_4.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch7x7dbl_5.conv.weight', (192, 160, 1, 7)),
    ('Mixed_6d.branch7x7dbl_5.bn.weight', (192,)),
    ('Mixed_6d.branch7x7dbl_5.bn.bias', (192,)),
    ('Mixed_6d.branch7x7dbl_5.bn.running_mean', (192,)),
    ('Mixed_6d.branch7x7dbl_5.bn.running_var', (192,)),
    ('Mixed_6d.branch7x7dbl_5.bn.num_batches_tracked', ()),
    ('Mixed_6d.branch_pool.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6d.branch_pool.bn.weight', (192,)),
    ('Mixed_6d.branch_pool.bn.bias', (192,)),
    ('Mixed_6d.branch_pool.bn.running_mean', (192,)),
    ('Mixed_6d.branch_pool.bn.running_var', (192,)),
    ('Mixed_6d.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch1x1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6e.branch1x1.bn.weight', (192,)),
    ('Mixed_6e.branch1x1.bn.bias', (192,)),
    ('Mixed_6e.branch1x1.bn.running_mean', (192,)),
    ('Mixed_6e.branch1x1.bn.running_var', (192,)),
    ('Mixed_6e.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7_1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6e.branch7x7_1.bn.weight', (192,)),
    ('Mixed_6e.branch7x7_1.bn.bias', (192,)),
    ('Mixed_6e.branch7x7_1.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7_1.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7_1.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7_2.conv.weight', (192, 192, 1, 7)),
    ('Mixed_6e.branch7x7_2.bn.weight', (192,)),
    ('Mixed_6e.branch7x7_2.bn.bias', (192,)),
    ('Mixed_6e.branch7x7_2.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7_2.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7_2.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7_3.conv.weight', (192, 192, 7, 1)),
    ('Mixed_6e.branch7x7_3.bn.weight', (192,)),
    ('Mixed_6e.branch7x7_3.bn.bias', (192,)),
    ('Mixed_6e.branch7x7_3.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7_3.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7_3.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7dbl_1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6e.branch7x7dbl_1.bn.weight', (192,)),
    ('Mixed_6e.branch7x7dbl_1.bn.bias', (192,)),
    ('Mixed_6e.branch7x7dbl_1.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7dbl_1.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7dbl_2.conv.weight', (192, 192, 7, 1)),
    ('Mixed_6e.branch7x7dbl_2.bn.weight', (192,)),
    ('Mixed_6e.branch7x7dbl_2.bn.bias', (192,)),
    ('Mixed_6e.branch7x7dbl_2.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7dbl_2.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7dbl_3.conv.weight', (192, 192, 1, 7)),
    ('Mixed_6e.branch7x7dbl_3.bn.weight', (192,)),
    ('Mixed_6e.branch7x7dbl_3.bn.bias', (192,)),
    ('Mixed_6e.branch7x7dbl_3.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7dbl_3.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7dbl_3.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7dbl_4.conv.weight', (192, 192, 7, 1)),
    ('Mixed_6e.branch7x7dbl_4.bn.weight', (192,)),
    ('Mixed_6e.branch7x7dbl_4.bn.bias', (192,)),
    ('Mixed_6e.branch7x7dbl_4.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7dbl_4.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7dbl_4.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch7x7dbl_5.conv.weight', (192, 192, 1, 7)),
    ('Mixed_6e.branch7x7dbl_5.bn.weight', (192,)),
    ('Mixed_6e.branch7x7dbl_5.bn.bias', (192,)),
    ('Mixed_6e.branch7x7dbl_5.bn.running_mean', (192,)),
    ('Mixed_6e.branch7x7dbl_5.bn.running_var', (192,)),
    ('Mixed_6e.branch7x7dbl_5.bn.num_batches_tracked', ()),
    ('Mixed_6e.branch_pool.conv.weight', (192, 768, 1, 1)),
    ('Mixed_6e.branch_pool.bn.weight', (192,)),
    ('Mixed_6e.branch_pool.bn.bias', (192,)),
    ('Mixed_6e.branch_pool.bn.running_mean', (192,)),
    ('Mixed_6e.branch_pool.bn.running_var', (192,)),
    ('Mixed_6e.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch3x3_1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_7a.branch3x3_1.bn.weight', (192,)),
    ('Mixed_7a.branch3x3_1.bn.bias', (192,)),
    ('Mixed_7a.branch3x3_1.bn.running_mean', (192,)),
    ('Mixed_7a.branch3x3_1.bn.running_var', (192,)),
    ('Mixed_7a.branch3x3_1.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch3x3_2.conv.weight', (320, 192, 3, 3)),
    ('Mixed_7a.branch3x3_2.bn.weight', (320,)),
    ('Mixed_7a.branch3x3_2.bn.bias', (320,)),
    ('Mixed_7a.branch3x3_2.bn.running_mean', (320,)),
    ('Mixed_7a.branch3x3_2.bn.running_var', (320,)),
    ('Mixed_7a.branch3x3_2.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch7x7x3_1.conv.weight', (192, 768, 1, 1)),
    ('Mixed_7a.branch7x7x3_1.bn.weight', (192,)),
    ('Mixed_7a.branch7x7x3_1.bn.bias', (192,)),
    ('Mixed_7a.branch7x7x3_1.bn.running_mean', (192,)),
    ('Mixed_7a.branch7x7x3_1.bn.running_var', (192,)),
    ('Mixed_7a.branch7x7x3_1.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch7x7x3_2.conv.weight', (192, 192, 1, 7)),
    ('Mixed_7a.branch7x7x3_2.bn.weight', (192,)),
    ('Mixed_7a.branch7x7x3_2.bn.bias', (192,)),
    ('Mixed_7a.branch7x7x3_2.bn.running_mean', (192,)),
    ('Mixed_7a.branch7x7x3_2.bn.running_var', (192,)),
    ('Mixed_7a.branch7x7x3_2.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch7x7x3_3.conv.weight', (192, 192, 7, 1)),
    ('Mixed_7a.branch7x7x3_3.bn.weight', (192,)),
    ('Mixed_7a.branch7x7x3_3.bn.bias', (192,)),
    ('Mixed_7a.branch7x7x3_3.bn.running_mean', (192,)),
    ('Mixed_7a.branch7x7x3_3.bn.running_var', (192,)),
    ('Mixed_7a.branch7x7x3_3.bn.num_batches_tracked', ()),
    ('Mixed_7a.branch7x7x3_4.conv.weight', (192, 192, 3, 3)),
    ('Mixed_7a.branch7x7x3_4.bn.weight', (192,)),
    ('Mixed_7a.branch7x7x3_4.bn.bias', (192,)),
    ('Mixed_7a.branch7x7x3_4.bn.running_mean', (192,)),
    ('Mixed_7a.branch7x7x3_4.bn.running_var', (192,)),
    ('Mixed_7a.branch7x7x3_4.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch1x1.conv.weight', (320, 1280, 1, 1)),
    ('Mixed_7b.branch1x1.bn.weight', (320,)),
    ('Mixed_7b.branch1x1.bn.bias', (320,)),
    ('Mixed_7b.branch1x1.bn.running_mean', (320,)),
    ('Mixed_7b.branch1x1.bn.running_var', (320,)),
    ('Mixed_7b.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3_1.conv.weight', (384, 1280, 1, 1)),
    ('Mixed_7b.branch3x3_1.bn.weight', (384,)),
    ('Mixed_7b.branch3x3_1.bn.bias', (384,)),
    ('Mixed_7b.branch3x3_1.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3_1.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3_1.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3_2a.conv.weight', (384, 384, 1, 3)),
    ('Mixed_7b.branch3x3_2a.bn.weight', (384,)),
    ('Mixed_7b.branch3x3_2a.bn.bias', (384,)),
    ('Mixed_7b.branch3x3_2a.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3_2a.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3_2a.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3_2b.conv.weight', (384, 384, 3, 1)),
    ('Mixed_7b.branch3x3_2b.bn.weight', (384,)),
    ('Mixed_7b.branch3x3_2b.bn.bias', (384,)),
    ('Mixed_7b.branch3x3_2b.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3_2b.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3_2b.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3dbl_1.conv.weight', (448, 1280, 1, 1)),
    ('Mixed_7b.branch3x3dbl_1.bn.weight', (448,)),
    ('Mixed_7b.branch3x3dbl_1.bn.bias', (448,)),
    ('Mixed_7b.branch3x3dbl_1.bn.running_mean', (448,)),
    ('Mixed_7b.branch3x3dbl_1.bn.running_var', (448,)),
    ('Mixed_7b.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3dbl_2.conv.weight', (384, 448, 3, 3)),
    ('Mixed_7b.branch3x3dbl_2.bn.weight', (384,)),
    ('Mixed_7b.branch3x3dbl_2.bn.bias', (384,)),
    ('Mixed_7b.branch3x3dbl_2.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3dbl_2.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3dbl_3a.conv.weight', (384, 384, 1, 3)),
    ('Mixed_7b.branch3x3dbl_3a.bn.weight', (384,)),
    ('Mixed_7b.branch3x3dbl_3a.bn.bias', (384,)),
    ('Mixed_7b.branch3x3dbl_3a.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3dbl_3a.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3dbl_3a.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch3x3dbl_3b.conv.weight', (384, 384, 3, 1)),
    ('Mixed_7b.branch3x3dbl_3b.bn.weight', (384,)),
    ('Mixed_7b.branch3x3dbl_3b.bn.bias', (384,)),
    ('Mixed_7b.branch3x3dbl_3b.bn.running_mean', (384,)),
    ('Mixed_7b.branch3x3dbl_3b.bn.running_var', (384,)),
    ('Mixed_7b.branch3x3dbl_3b.bn.num_batches_tracked', ()),
    ('Mixed_7b.branch_pool.conv.weight', (192, 1280, 1, 1)),
    ('Mixed_7b.branch_pool.bn.weight', (192,)),
    ('Mixed_7b.branch_pool.bn.bias', (192,)),
    ('Mixed_7b.branch_pool.bn.running_mean', (192,)),
    ('Mixed_7b.branch_pool.bn.running_var', (192,)),
    ('Mixed_7b.branch_pool.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch1x1.conv.weight', (320, 2048, 1, 1)),
    ('Mixed_7c.branch1x1.bn.weight', (320,)),
    ('Mixed_7c.branch1x1.bn.bias', (320,)),
    ('Mixed_7c.branch1x1.bn.running_mean', (320,)),
    ('Mixed_7c.branch1x1.bn.running_var', (320,)),
    ('Mixed_7c.branch1x1.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3_1.conv.weight', (384, 2048, 1, 1)),
    ('Mixed_7c.branch3x3_1.bn.weight', (384,)),
    ('Mixed_7c.branch3x3_1.bn.bias', (384,)),
    ('Mixed_7c.branch3x3_1.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3_1.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3_1.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3_2a.conv.weight', (384, 384, 1, 3)),
    ('Mixed_7c.branch3x3_2a.bn.weight', (384,)),
    ('Mixed_7c.branch3x3_2a.bn.bias', (384,)),
    ('Mixed_7c.branch3x3_2a.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3_2a.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3_2a.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3_2b.conv.weight', (384, 384, 3, 1)),
    ('Mixed_7c.branch3x3_2b.bn.weight', (384,)),
    ('Mixed_7c.branch3x3_2b.bn.bias', (384,)),
    ('Mixed_7c.branch3x3_2b.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3_2b.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3_2b.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3dbl_1.conv.weight', (448, 2048, 1, 1)),
    ('Mixed_7c.branch3x3dbl_1.bn.weight', (448,)),
    ('Mixed_7c.branch3x3dbl_1.bn.bias', (448,)),
    ('Mixed_7c.branch3x3dbl_1.bn.running_mean', (448,)),
    ('Mixed_7c.branch3x3dbl_1.bn.running_var', (448,)),
    ('Mixed_7c.branch3x3dbl_1.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3dbl_2.conv.weight', (384, 448, 3, 3)),
    ('Mixed_7c.branch3x3dbl_2.bn.weight', (384,)),
    ('Mixed_7c.branch3x3dbl_2.bn.bias', (384,)),
    ('Mixed_7c.branch3x3dbl_2.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3dbl_2.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3dbl_2.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3dbl_3a.conv.weight', (384, 384, 1, 3)),
    ('Mixed_7c.branch3x3dbl_3a.bn.weight', (384,)),
    ('Mixed_7c.branch3x3dbl_3a.bn.bias', (384,)),
    ('Mixed_7c.branch3x3dbl_3a.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3dbl_3a.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3dbl_3a.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch3x3dbl_3b.conv.weight', (384, 384, 3, 1)),
    ('Mixed_7c.branch3x3dbl_3b.bn.weight', (384,)),
    ('Mixed_7c.branch3x3dbl_3b.bn.bias', (384,)),
    ('Mixed_7c.branch3x3dbl_3b.bn.running_mean', (384,)),
    ('Mixed_7c.branch3x3dbl_3b.bn.running_var', (384,)),
    ('Mixed_7c.branch3x3dbl_3b.bn.num_batches_tracked', ()),
    ('Mixed_7c.branch_pool.conv.weight', (192, 2048, 1, 1)),
    ('Mixed_7c.branch_pool.bn.weight', (192,)),
    ('Mixed_7c.branch_pool.bn.bias', (192,)),
    ('Mixed_7c.branch_pool.bn.running_mean', (192,)),
    ('Mixed_7c.branch_pool.bn.running_var', (192,)),
    ('Mixed_7c.branch_pool.bn.num_batches_tracked', ()),
    ('fc.weight', (1008, 2048)),
    ('fc.bias', (1008,)),
]
EXPECTED_PARAMETERS = 23_850_960  # conv weights + BN weights/biases + fc: the sum over the table above


def _is_parameter(key):
    return key.endswith((".weight", ".bias"))


def _randomize_bn(module, seed):
    """BN statistics and affine parameters away from (0, 1, 1, 0), so that every branch shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return module


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module: its full-size forward passes (299x299) then take about the same
    time on a busy 2-core machine, where two OpenMP threads that share the cores with another process were
    measured 10x slower (90 s instead of 8 s for this file)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _randomize_bn(FIDInceptionV3(), seed=1)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def reference_out(model, images):
    return model.features_and_logits(images)


@pytest.fixture(scope="module")
def weight_files(model, tmp_path_factory):
    """The model's weights as files: legacy serialization without num_batches_tracked (like a pre-0.4.1 file),
    and the current zip format with every key."""
    d = tmp_path_factory.mktemp("weights")
    sd = model.state_dict()
    legacy = d / "legacy.pth"
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, legacy,
               _use_new_zipfile_serialization=False)
    full = d / "full.pt"
    torch.save(sd, full)
    yield {"legacy": legacy, "full": full}
    legacy.unlink()  # 2 x 92 MiB: not left behind in pytest's kept temporary folders
    full.unlink()


# --- architecture against the weight file's keys and shapes ----------------------------------------------

def test_table_is_consistent():
    keys = [k for k, _ in EXPECTED_STATE]
    assert len(keys) == len(set(keys)) == 94 * 6 + 2
    assert sum(math.prod(s) for k, s in EXPECTED_STATE if _is_parameter(k)) == EXPECTED_PARAMETERS


def test_state_dict_keys_and_shapes_match_the_weight_file():
    sd = FIDInceptionV3().state_dict()
    expected = dict(EXPECTED_STATE)
    assert set(sd) - set(expected) == set(), "keys the weight file does not have"
    assert set(expected) - set(sd) == set(), "keys of the weight file the module lacks"
    wrong = {k: (tuple(sd[k].shape), expected[k]) for k in expected if tuple(sd[k].shape) != expected[k]}
    assert wrong == {}
    assert list(sd) == [k for k, _ in EXPECTED_STATE]  # same order as torchvision registers them


def test_parameter_count_and_batchnorm_eps():
    m = FIDInceptionV3()
    assert sum(p.numel() for p in m.parameters()) == EXPECTED_PARAMETERS
    assert sum(p.numel() for n, p in m.named_parameters() if _is_parameter(n)) == EXPECTED_PARAMETERS
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert len(bns) == 94 and all(b.eps == 0.001 for b in bns)
    assert not any(p.requires_grad for p in m.parameters())


def test_fid_block_types():
    m = FIDInceptionV3()
    names = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
    assert [type(getattr(m, f"Mixed_{n}")) for n in names] == \
        [FIDInceptionA] * 3 + [InceptionB] + [FIDInceptionC] * 4 + [InceptionD, FIDInceptionE_1, FIDInceptionE_2]


# --- forward -------------------------------------------------------------------------------------------------

def test_forward_shapes_and_dtype(model, images, reference_out):
    feats, logits = reference_out
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert logits.shape == (2, 1008) and logits.dtype == torch.float32
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    assert (feats >= 0).all()  # average of ReLU outputs
    assert torch.equal(model(images), feats)
    assert torch.equal(model(images, return_logits=True), logits)
    assert torch.equal(model.logits(images), logits)
    assert not feats.requires_grad
    # the resize makes any size work; half-precision input is computed in the weights' dtype
    odd = model(torch.rand(1, 3, 17, 45).half())
    assert odd.shape == (1, 2048) and odd.dtype == torch.float32


def test_feature_maps_are_pytorch_fid_output_blocks(model, images, reference_out):
    maps = model.feature_maps(images)
    assert {d: tuple(t.shape) for d, t in maps.items()} == {
        64: (2, 64, 73, 73), 192: (2, 192, 35, 35), 768: (2, 768, 17, 17), 2048: (2, 2048, 1, 1)}
    assert torch.equal(maps[2048].flatten(1), reference_out[0])
    pooled = model.feature_maps(images, dims=[192], pool=True)
    assert list(pooled) == [192] and torch.allclose(pooled[192], maps[192].mean((2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="dims"):
        model.feature_maps(images, dims=[100])


def test_always_in_eval_mode(model, images, reference_out):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        assert not any(m.training for m in model.modules())
        assert torch.equal(model(images), reference_out[0])
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN stats untouched
        parent = torch.nn.Sequential(model)
        parent.train()
        assert not model.training
    finally:
        model.eval()


def test_gradient_reaches_the_input(model):
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("bad, exc, words", [
    (lambda: torch.rand(2, 3, 8, 8) * 2, ValueError, ["[0, 1]", "2"]),
    (lambda: torch.rand(2, 3, 8, 8) * 2 - 1, ValueError, ["[0, 1]", "(x + 1) / 2"]),
    (lambda: torch.full((1, 3, 8, 8), float("nan")), ValueError, ["[0, 1]", "nan"]),
    (lambda: torch.rand(2, 1, 8, 8), ValueError, ["(N, 3, H, W)", "(2, 1, 8, 8)", "expand"]),
    (lambda: torch.rand(2, 8, 8, 3), ValueError, ["(N, 3, H, W)", "permute"]),
    (lambda: torch.rand(3, 8, 8), ValueError, ["(N, 3, H, W)", "unsqueeze"]),
    (lambda: torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), TypeError, ["torch.uint8", "/ 255"]),
    (lambda: torch.rand(2, 3, 8, 8).numpy(), TypeError, ["torch.Tensor", "ndarray"]),
])
def test_bad_inputs_are_refused_clearly(model, bad, exc, words):
    with pytest.raises(exc) as err:
        model(bad())
    for w in words:
        assert w in str(err.value), str(err.value)


def test_no_resize_needs_75_pixels_and_no_normalize_takes_minus_one_to_one():
    m = FIDInceptionV3(resize_input=False, normalize_input=False)
    with pytest.raises(ValueError, match="75"):
        m(torch.rand(1, 3, 32, 32))
    assert m(torch.rand(1, 3, 75, 80) * 2 - 1).shape == (1, 2048)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m(torch.rand(1, 3, 75, 75) - 1.5)


# --- weights -------------------------------------------------------------------------------------------------

def test_load_from_argument_gives_identical_outputs(weight_files, images, reference_out):
    for f in weight_files.values():
        m = fid_inception_v3(f)
        assert m.weights_path == str(f)
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        feats, logits = m.features_and_logits(images)
        assert torch.equal(feats, reference_out[0]) and torch.equal(logits, reference_out[1])


def test_load_from_environment_variable(weight_files, images, reference_out, monkeypatch):
    monkeypatch.setenv(inc.WEIGHTS_ENV, str(weight_files["legacy"]))
    m = FIDInceptionV3.from_pretrained()
    assert torch.equal(m(images), reference_out[0])
    assert all(int(b.num_batches_tracked) == 0 for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))


def test_load_state_dict_mapping(model, images, reference_out):
    m = FIDInceptionV3().load_weights(model.state_dict())
    assert m.weights_path is None and torch.equal(m(images), reference_out[0])


def test_missing_file_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.WEIGHTS_ENV, raising=False)
    for call in (lambda: fid_inception_v3(), lambda: fid_inception_v3(tmp_path / "nope.pth"),
                 lambda: fid_inception_v3(tmp_path)):  # a folder without the file
        with pytest.raises(InceptionWeightsNotFoundError) as err:
            call()
        assert isinstance(err.value, FileNotFoundError)
        msg = str(err.value)
        for w in ("pt_inception-2015-12-05-6726825d.pth", inc.WEIGHTS_URL, "FASTGAN_INCEPTION_WEIGHTS", "weights"):
            assert w in msg, msg
    assert inc.WEIGHTS_URL == ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                               "pt_inception-2015-12-05-6726825d.pth")
    monkeypatch.setenv(inc.WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(InceptionWeightsNotFoundError, match="environment variable FASTGAN_INCEPTION_WEIGHTS"):
        fid_inception_v3()


def test_wrong_shape_file_is_refused(model, tmp_path):
    sd = model.state_dict()
    sd["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)
    f = tmp_path / "wrong.pth"
    torch.save(sd, f)
    try:
        with pytest.raises(InceptionWeightsError) as err:
            fid_inception_v3(f)
    finally:
        f.unlink()
    msg = str(err.value)
    assert "Mixed_6b.branch7x7_2.conv.weight: (128, 128, 7, 1) (expected (128, 128, 1, 7))" in msg
    assert "wrong shape" in msg and inc.WEIGHTS_URL in msg


def test_missing_and_unexpected_keys_are_listed(model):
    sd = dict(model.state_dict())
    for k in list(sd)[:12]:
        if not k.endswith("num_batches_tracked"):
            del sd[k]
    sd["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    with pytest.raises(InceptionWeightsError) as err:
        FIDInceptionV3().load_weights(sd)
    msg = str(err.value)
    assert "10 missing: Conv2d_1a_3x3.conv.weight" in msg and "(5 more)" in msg
    assert "1 unexpected: AuxLogits.fc.weight" in msg and "torchvision" in msg
    bad = dict(model.state_dict())
    bad["fc.bias"] = torch.full((1008,), float("nan"))
    with pytest.raises(InceptionWeightsError, match="NaN or infinite values: fc.bias"):
        FIDInceptionV3().load_weights(bad)


class _Payload:  # an object that only a full unpickler can rebuild
    def __init__(self):
        self.weight = torch.zeros(2)


def test_files_that_need_more_than_weights_only_are_refused(tmp_path):
    f = tmp_path / "payload.pth"
    torch.save(_Payload(), f)
    with pytest.raises(InceptionWeightsError, match="weights_only") as err:
        fid_inception_v3(f)
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)
    f2 = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], f2)
    with pytest.raises(InceptionWeightsError, match="does not hold a state dict"):
        fid_inception_v3(f2)
    f3 = tmp_path / "garbage.pth"
    f3.write_bytes(b"not a torch file at all" * 10)
    with pytest.raises(InceptionWeightsError):
        fid_inception_v3(f3)


def test_hash_in_the_file_name_is_checked_with_a_warning(weight_files, tmp_path, monkeypatch, images,
                                                          reference_out):
    named = tmp_path / inc.WEIGHTS_FILENAME
    named.symlink_to(weight_files["full"])
    monkeypatch.setenv(inc.WEIGHTS_ENV, str(tmp_path))  # a folder holding the file
    with pytest.warns(UserWarning, match="SHA-256"):
        m = fid_inception_v3()
    assert torch.equal(m(images), reference_out[0])  # a warning only: the weights still load
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid_inception_v3(check_hash=False)
        fid_inception_v3(weight_files["full"])  # other names are not hashed


# --- the FID-specific blocks against a functional re-computation of the upstream definitions -------------

def _bconv(m, x, stride=1, padding=0):
    """torchvision's BasicConv2d: conv (no bias), BatchNorm(eps=0.001) with running statistics, ReLU."""
    y = F.conv2d(x, m.conv.weight, stride=stride, padding=padding)
    y = F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, False, 0.0, 0.001)
    return F.relu(y)


def _avg_tf(x):  # FIDInceptionA/C/E_1: TensorFlow's average pool ignores the padding
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _avg_torchvision(x):  # torchvision's blocks: padding counted
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


def _max_same(x):  # FIDInceptionE_2
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def ref_a(b, x, pool=_avg_tf):
    return torch.cat([
        _bconv(b.branch1x1, x),
        _bconv(b.branch5x5_2, _bconv(b.branch5x5_1, x), padding=2),
        _bconv(b.branch3x3dbl_3, _bconv(b.branch3x3dbl_2, _bconv(b.branch3x3dbl_1, x), padding=1), padding=1),
        _bconv(b.branch_pool, pool(x)),
    ], 1)


def ref_b(b, x):
    return torch.cat([
        _bconv(b.branch3x3, x, stride=2),
        _bconv(b.branch3x3dbl_3, _bconv(b.branch3x3dbl_2, _bconv(b.branch3x3dbl_1, x), padding=1), stride=2),
        F.max_pool2d(x, kernel_size=3, stride=2),
    ], 1)


def ref_c(b, x, pool=_avg_tf):
    b7 = _bconv(b.branch7x7_1, x)
    b7 = _bconv(b.branch7x7_2, b7, padding=(0, 3))
    b7 = _bconv(b.branch7x7_3, b7, padding=(3, 0))
    bd = _bconv(b.branch7x7dbl_1, x)
    bd = _bconv(b.branch7x7dbl_2, bd, padding=(3, 0))
    bd = _bconv(b.branch7x7dbl_3, bd, padding=(0, 3))
    bd = _bconv(b.branch7x7dbl_4, bd, padding=(3, 0))
    bd = _bconv(b.branch7x7dbl_5, bd, padding=(0, 3))
    return torch.cat([_bconv(b.branch1x1, x), b7, bd, _bconv(b.branch_pool, pool(x))], 1)


def ref_d(b, x):
    b3 = _bconv(b.branch3x3_2, _bconv(b.branch3x3_1, x), stride=2)
    b7 = _bconv(b.branch7x7x3_1, x)
    b7 = _bconv(b.branch7x7x3_2, b7, padding=(0, 3))
    b7 = _bconv(b.branch7x7x3_3, b7, padding=(3, 0))
    b7 = _bconv(b.branch7x7x3_4, b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def ref_e(b, x, pool):
    b3 = _bconv(b.branch3x3_1, x)
    b3 = torch.cat([_bconv(b.branch3x3_2a, b3, padding=(0, 1)), _bconv(b.branch3x3_2b, b3, padding=(1, 0))], 1)
    bd = _bconv(b.branch3x3dbl_2, _bconv(b.branch3x3dbl_1, x), padding=1)
    bd = torch.cat([_bconv(b.branch3x3dbl_3a, bd, padding=(0, 1)), _bconv(b.branch3x3dbl_3b, bd, padding=(1, 0))], 1)
    return torch.cat([_bconv(b.branch1x1, x), b3, bd, _bconv(b.branch_pool, pool(x))], 1)


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, ref, wrong", [
    (lambda: FIDInceptionA(5, pool_features=3), ref_a, lambda b, x: ref_a(b, x, _avg_torchvision)),
    (lambda: FIDInceptionC(5, channels_7x7=4), ref_c, lambda b, x: ref_c(b, x, _avg_torchvision)),
    (lambda: FIDInceptionE_1(5), lambda b, x: ref_e(b, x, _avg_tf), lambda b, x: ref_e(b, x, _avg_torchvision)),
    (lambda: FIDInceptionE_2(5), lambda b, x: ref_e(b, x, _max_same), lambda b, x: ref_e(b, x, _avg_tf)),
    (lambda: InceptionB(5), ref_b, None),
    (lambda: InceptionD(5), ref_d, None),
], ids=["A", "C", "E_1", "E_2", "B", "D"])
def test_blocks_match_the_upstream_definition(make, ref, wrong):
    torch.manual_seed(3)
    block = _randomize_bn(make(), seed=4).eval()
    x = torch.rand(2, 5, 7, 7) * 2
    with torch.no_grad():
        out = block(x)
        assert _close(out, ref(block, x))
        if wrong is not None:  # the other pooling gives a different output, so the check above has teeth
            assert not _close(out, wrong(block, x))


def test_whole_network_matches_the_upstream_definition(model):
    """pytorch-fid's InceptionV3 forward (blocks 0..3 of Inception3 with the FID blocks) written out."""
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(5))
    m = model
    with torch.no_grad():
        y = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        y = 2 * y - 1
        y = _bconv(m.Conv2d_1a_3x3, y, stride=2)
        y = _bconv(m.Conv2d_2a_3x3, y)
        y = _bconv(m.Conv2d_2b_3x3, y, padding=1)
        y = F.max_pool2d(y, kernel_size=3, stride=2)
        y = _bconv(m.Conv2d_3b_1x1, y)
        y = _bconv(m.Conv2d_4a_3x3, y)
        y = F.max_pool2d(y, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            y = ref_a(getattr(m, name), y)
        y = ref_b(m.Mixed_6a, y)
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            y = ref_c(getattr(m, name), y)
        y = ref_d(m.Mixed_7a, y)
        y = ref_e(m.Mixed_7b, y, _avg_tf)
        y = ref_e(m.Mixed_7c, y, _max_same)
        feats = F.adaptive_avg_pool2d(y, (1, 1)).flatten(1)
        logits = F.linear(feats, m.fc.weight, m.fc.bias)
        got_feats, got_logits = m(x), m(x, return_logits=True)
    assert feats.shape == (1, 2048)
    assert torch.allclose(got_feats, feats, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got_logits, logits, rtol=1e-4, atol=1e-5)
