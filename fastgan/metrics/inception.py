"""The InceptionV3 network of FID, exactly as pytorch-fid runs it (``FID_WEIGHTS``).

:class:`FIDInceptionV3` is the network that pytorch-fid builds in ``fid_inception_v3()``: torchvision's
``Inception3`` with ``num_classes=1008`` and ``aux_logits=False``, with four kinds of block patched to match
the TensorFlow graph of ``inception-2015-12-05`` that the original FID code uses:

* ``FIDInceptionA`` (Mixed_5b/c/d), ``FIDInceptionC`` (Mixed_6b/c/d/e) and ``FIDInceptionE_1`` (Mixed_7b):
  the pool branch averages with ``count_include_pad=False`` (TensorFlow does not count the zero padding);
* ``FIDInceptionE_2`` (Mixed_7c): the pool branch takes the *maximum* over 3x3 instead of the average.

It is written here without torchvision; its state dict has the key names and shapes of pytorch-fid's weight
file ``pt_inception-2015-12-05-6726825d.pth``, so that file loads into it unchanged.

Inputs and outputs (as pytorch-fid's ``InceptionV3(output_blocks=[3], resize_input=True,
normalize_input=True)``): images of shape (N, 3, H, W), floating point, RGB, values in [0, 1]; any H, W. They
are resized to 299x299 (``F.interpolate(mode="bilinear", align_corners=False)``), scaled to [-1, 1] with
``2 * x - 1``, and run up to the final average pool: features of shape (N, 2048) in the weights' dtype
(float32). The 1008-way logits of the classifier (for the Inception Score) and the 64/192/768-channel maps
of the earlier blocks (pytorch-fid's ``output_blocks`` 0, 1, 2) are available too.

Weights are never downloaded. :func:`fid_inception_v3` (or :meth:`FIDInceptionV3.from_pretrained`) loads
them from the path it is given, else from the path in the environment variable
``FASTGAN_INCEPTION_WEIGHTS``; get the file from pytorch-fid's release page (:data:`WEIGHTS_URL`).

This module assembles the network and runs it; its blocks are defined in :mod:`fastgan.metrics.inception_blocks`,
and finding, reading and checking the weight file is :mod:`fastgan.metrics.inception_weights`. Every public name
of both is importable from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .inception_blocks import (
    BasicConv2d,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
    InceptionB,
    InceptionD,
)

# Importable from here too, where they are documented (and where they were defined before the split):
from .inception_weights import (  # noqa: F401
    WEIGHTS_ENV,
    WEIGHTS_FILENAME,
    WEIGHTS_SHA256_PREFIX,
    WEIGHTS_URL,
    InceptionWeightsError,
    InceptionWeightsNotFoundError,
    PathLike,
    check_state_dict,
    load_weights_file,
    read_weights,
    resolve_weights_path,
)

__all__ = [
    "BLOCK_DIMS", "FIDInceptionA", "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2", "FIDInceptionV3",
    "InceptionB", "InceptionD", "InceptionWeightsError", "InceptionWeightsNotFoundError", "WEIGHTS_ENV",
    "WEIGHTS_FILENAME", "WEIGHTS_SHA256_PREFIX", "WEIGHTS_URL", "fid_inception_v3",
]

INPUT_SIZE = 299
NUM_CLASSES = 1008  # outputs of the classifier of the TensorFlow graph (and of pytorch-fid's `fc`)
# Channels of pytorch-fid's output blocks: 0 = first max pool, 1 = second max pool, 2 = input of the
# (absent) aux classifier, 3 = final average pool.
BLOCK_DIMS = (64, 192, 768, 2048)
_MIN_SIZE = 75  # smallest H, W the network accepts when the input is not resized


def _check_images(x, low: float = 0.0) -> None:
    """Shape (N, 3, H, W), floating point, values in [low, 1] (low is -1 for inputs already scaled)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"FIDInceptionV3 expects a torch.Tensor of images, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        hint = ""
        if x.ndim == 4 and x.shape[1] == 1:
            hint = " For grayscale images repeat the channel: x.expand(-1, 3, -1, -1)."
        elif x.ndim == 4 and x.shape[-1] == 3:
            hint = " Channels-last arrays (N, H, W, 3) need x.permute(0, 3, 1, 2)."
        elif x.ndim == 3 and x.shape[0] == 3:
            hint = " For a single image add the batch dimension: x.unsqueeze(0)."
        raise ValueError(f"FIDInceptionV3 expects images of shape (N, 3, H, W) (RGB), got {tuple(x.shape)}.{hint}")
    if not x.is_floating_point():
        raise TypeError(f"FIDInceptionV3 expects floating-point images with values in [{low:g}, 1], got dtype "
                        f"{x.dtype}."
                        + (" For 8-bit images use x.float() / 255." if x.dtype == torch.uint8 else ""))
    if x.numel() == 0:
        raise ValueError(f"FIDInceptionV3 got an empty batch of shape {tuple(x.shape)}")
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (lo >= low and hi <= 1.0):  # also catches NaN
        hint = ("Images in [-1, 1] (tanh outputs) need (x + 1) / 2, 8-bit values need x / 255; "
                if low == 0.0 else "With normalize_input=False the input is the network's own range [-1, 1]; ")
        raise ValueError(f"FIDInceptionV3 expects image values in [{low:g}, 1]; got values in [{lo}, {hi}]. "
                         f"{hint}clamp what is only slightly out of range.")


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID InceptionV3, from pixels in [0, 1] to 2048-d pool features (and 1008-way logits).

    Args:
        resize_input: resize the input to 299x299 (bilinear, ``align_corners=False``) first, as pytorch-fid
            does by default. Without it the input must be at least 75x75.
        normalize_input: map [0, 1] to [-1, 1] with ``2 * x - 1`` (after the resize, as pytorch-fid). Without
            it the input must already be in [-1, 1].

    Built without weights (random initialisation: for tests, or to load a state dict of your own); use
    :meth:`from_pretrained` / :func:`fid_inception_v3` or :meth:`load_weights` for the FID weights.

    The module is always in eval mode (``train()`` keeps it there): BatchNorm uses the stored statistics and
    never updates them, also when a parent model is put in training mode. Its parameters are frozen
    (``requires_grad=False``). The forward passes do not enter ``torch.no_grad()`` themselves, so that a
    gradient can flow back to an input that requires one; with frozen parameters and a plain input no
    autograd graph is recorded anyway.
    """

    BLOCK_DIMS = BLOCK_DIMS

    def __init__(self, resize_input: bool = True, normalize_input: bool = True) -> None:
        super().__init__()
        self.resize_input = bool(resize_input)
        self.normalize_input = bool(normalize_input)
        self.weights_path: str | None = None  # set by load_weights from a file
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE_1(1280)
        self.Mixed_7c = FIDInceptionE_2(2048)
        self.fc = nn.Linear(2048, NUM_CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # keeps activations of order 1 through the depth (BN stats are 0, 1)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        self.requires_grad_(False)
        self.eval()

    # -- modes and weights ----------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> "FIDInceptionV3":
        """Stays in eval mode whatever ``mode`` is: the FID network's BatchNorm statistics are fixed."""
        return super().train(False)

    @classmethod
    def from_pretrained(cls, weights: PathLike | Mapping[str, torch.Tensor] | None = None, *,
                        check_hash: bool = True, **kwargs) -> "FIDInceptionV3":
        """Build the network and load the FID weights (see :meth:`load_weights`); ``kwargs`` go to the constructor.

        The file is found and read before the network is built, so a missing file fails at once.
        """
        loaded = read_weights(weights, check_hash)
        return cls(**kwargs)._apply_weights(*loaded)

    def load_weights(self, weights: PathLike | Mapping[str, torch.Tensor] | None = None, *,
                     check_hash: bool = True) -> "FIDInceptionV3":
        """Load ``pt_inception-2015-12-05-6726825d.pth`` (or a state dict with the same keys and shapes).

        ``weights``: a path to the file (or to a folder holding it), a state dict, or None for the path in
        ``$FASTGAN_INCEPTION_WEIGHTS``. Files are read with ``torch.load(..., weights_only=True)``; nothing is
        downloaded. Raises :class:`InceptionWeightsNotFoundError` (a FileNotFoundError) when there is no file,
        :class:`InceptionWeightsError` when it is unsafe, unreadable, or has missing, unexpected or misshapen
        entries (a few of each are named). ``num_batches_tracked`` entries are optional. See
        :func:`load_weights_file` for ``check_hash``. Returns ``self``.
        """
        return self._apply_weights(*read_weights(weights, check_hash))

    def _apply_weights(self, state: dict[str, torch.Tensor], origin: str, path: Path | None) -> "FIDInceptionV3":
        own = self.state_dict()
        check_state_dict(state, own, origin)
        full = {k: state[k] if k in state else own[k] for k in own}  # missing num_batches_tracked: keep 0
        self.load_state_dict(full, strict=True)
        self.weights_path = None if path is None else str(path)
        return self


    # -- forward passes -------------------------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, low=0.0 if self.normalize_input else -1.0)
        if not self.resize_input and min(x.shape[-2:]) < _MIN_SIZE:
            raise ValueError(f"FIDInceptionV3(resize_input=False) needs images of at least {_MIN_SIZE}x{_MIN_SIZE}, "
                             f"got {tuple(x.shape[-2:])}; use resize_input=True (the FID setting)")
        x = x.to(self.fc.weight.dtype)
        if self.resize_input:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        if self.normalize_input:
            x = 2 * x - 1
        return x

    def _blocks(self, x: torch.Tensor, last: int) -> Iterable[torch.Tensor]:
        """Yields pytorch-fid's output blocks 0..last (feature maps) of a prepared input."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        yield x  # 64 x 73 x 73 for a 299 x 299 input
        if last < 1:
            return
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        yield x  # 192 x 35 x 35
        if last < 2:
            return
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        yield x  # 768 x 17 x 17
        if last < 3:
            return
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        yield F.adaptive_avg_pool2d(x, (1, 1))  # 2048 x 1 x 1

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features (N, 2048) and classifier logits (N, 1008) from one pass."""
        *_, pooled = self._blocks(self._prepare(x), 3)
        features = torch.flatten(pooled, 1)
        return features, self.fc(features)  # the classifier's dropout is the identity in eval

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """Pool features (N, 2048) of images (N, 3, H, W) in [0, 1]; with ``return_logits=True`` the 1008-way
        classifier logits (N, 1008) instead (for the Inception Score: softmax over all 1008)."""
        if return_logits:
            return self.features_and_logits(x)[1]
        *_, pooled = self._blocks(self._prepare(x), 3)
        return torch.flatten(pooled, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1008-way classifier logits (N, 1008); the same as ``self(x, return_logits=True)``."""
        return self.features_and_logits(x)[1]

    def feature_maps(self, x: torch.Tensor, dims: Iterable[int] = BLOCK_DIMS, pool: bool = False
                     ) -> dict[int, torch.Tensor]:
        """pytorch-fid's ``output_blocks`` by their channel count: {64: (N, 64, 73, 73), 192: (N, 192, 35, 35),
        768: (N, 768, 17, 17), 2048: (N, 2048, 1, 1)} for the requested ``dims`` (sizes for a 299 input);
        the network runs only as far as the deepest one. ``pool=True`` averages each map over its grid to
        (N, dim), as pytorch-fid's ``get_activations`` does before computing statistics."""
        dims = [int(d) for d in ([dims] if isinstance(dims, int) else dims)]
        bad = [d for d in dims if d not in BLOCK_DIMS]
        if bad or not dims:
            raise ValueError(f"dims must be a non-empty selection of {BLOCK_DIMS}, got {dims}")
        wanted = {BLOCK_DIMS.index(d) for d in dims}
        out = {}
        for i, fmap in enumerate(self._blocks(self._prepare(x), max(wanted))):
            if i in wanted:
                out[BLOCK_DIMS[i]] = torch.flatten(F.adaptive_avg_pool2d(fmap, (1, 1)), 1) if pool else fmap
        return out


def fid_inception_v3(weights: PathLike | Mapping[str, torch.Tensor] | None = None, *, check_hash: bool = True,
                     **kwargs) -> FIDInceptionV3:
    """pytorch-fid's FID InceptionV3 with its weights, from ``weights`` or ``$FASTGAN_INCEPTION_WEIGHTS``.

    Never downloads: see :meth:`FIDInceptionV3.load_weights` for what is accepted and the errors raised.
    """
    return FIDInceptionV3.from_pretrained(weights, check_hash=check_hash, **kwargs)
