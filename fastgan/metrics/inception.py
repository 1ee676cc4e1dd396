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
"""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCK_DIMS", "FIDInceptionA", "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2", "FIDInceptionV3",
    "InceptionB", "InceptionD", "InceptionWeightsError", "InceptionWeightsNotFoundError", "WEIGHTS_ENV",
    "WEIGHTS_FILENAME", "WEIGHTS_SHA256_PREFIX", "WEIGHTS_URL", "fid_inception_v3",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
WEIGHTS_ENV = "FASTGAN_INCEPTION_WEIGHTS"
# torch.hub naming convention: the hex digits after the last '-' are the first digits of the file's SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"

INPUT_SIZE = 299
NUM_CLASSES = 1008  # outputs of the classifier of the TensorFlow graph (and of pytorch-fid's `fc`)
# Channels of pytorch-fid's output blocks: 0 = first max pool, 1 = second max pool, 2 = input of the
# (absent) aux classifier, 3 = final average pool.
BLOCK_DIMS = (64, 192, 768, 2048)
_MIN_SIZE = 75  # smallest H, W the network accepts when the input is not resized

PathLike = Union[str, "os.PathLike[str]"]

# Does the weight file hold `num_batches_tracked` keys? Yes, as far as can be told without the file at hand
# (it is not in this repository and is never downloaded): 94 of them, one per BatchNorm, 0-dim tensors.
#  * pytorch-fid converted the TensorFlow weights in May 2019 (mseitzer/pytorch-fid pull request #16, merged
#    2019-05-27) and saved the state dict of torchvision's Inception3; BatchNorm has had the
#    `num_batches_tracked` buffer since PyTorch 0.4.1 (July 2018), so `state_dict()` wrote it. "Produced for
#    an old PyTorch" concerns the serialization: saved before PyTorch 1.6, the file is in the legacy (non-zip)
#    format, which torch.load still reads, with weights_only=True too (the tests load such a file).
#  * tinygrad's loader of this exact file (tinygrad/tinygrad, extra/models/inception.py,
#    `FidInceptionV3.load_from_pretrained`) reshapes every `...num_batches_tracked` entry of the loaded dict to
#    (1,) (its buffers' shape) before a strict load that looks up every key of its model, which has these
#    buffers; without the keys in the file that load would fail.
# Their value plays no part in eval mode. Loading accepts a state dict with or without them, as
# `BatchNorm2d` itself does for files older than 0.4.1: missing ones are set to 0.
_OPTIONAL_SUFFIX = ".num_batches_tracked"


class InceptionWeightsNotFoundError(FileNotFoundError):
    """The FID Inception weight file is not where fastgan was told to look (or it was told nowhere)."""


class InceptionWeightsError(RuntimeError):
    """A weight file was found but cannot be used: unsafe to load, unreadable, or not the FID Inception weights."""


def _how_to_get_weights() -> str:
    hint = (f"fastgan never downloads it. Get {WEIGHTS_FILENAME} (about 95 MB) from the pytorch-fid release "
            f"page:\n    {WEIGHTS_URL}\nthen pass its path as the `weights` argument (`--weights` on the command "
            f"line), or set the environment variable {WEIGHTS_ENV} to its path (or to the folder that holds it).")
    try:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME
        if cached.is_file():
            hint += f"\nA copy downloaded by pytorch-fid exists at {cached}: {WEIGHTS_ENV}={cached} would use it."
    except Exception:  # pragma: no cover - an odd hub directory is only a missed hint
        pass
    return hint


def resolve_weights_path(weights: PathLike | None = None) -> Path:
    """The path of the weight file: ``weights`` if given, else ``$FASTGAN_INCEPTION_WEIGHTS``.

    A folder stands for ``folder/pt_inception-2015-12-05-6726825d.pth``. Raises
    :class:`InceptionWeightsNotFoundError` (a ``FileNotFoundError``) that says where to get the file when no
    path is given or the file does not exist.
    """
    if weights is None:
        env = os.environ.get(WEIGHTS_ENV, "").strip()
        if not env:
            raise InceptionWeightsNotFoundError(
                f"The FID Inception weights are needed and no path to them was given: neither the `weights` "
                f"argument (`--weights`) nor the environment variable {WEIGHTS_ENV} is set.\n"
                + _how_to_get_weights())
        source, path = f"the environment variable {WEIGHTS_ENV}", Path(env)
    else:
        source, path = "the `weights` argument (`--weights`)", Path(os.fspath(weights))
    path = path.expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILENAME
    if not path.is_file():
        raise InceptionWeightsNotFoundError(
            f"The FID Inception weight file {str(path)!r} (from {source}) does not exist.\n" + _how_to_get_weights())
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights_file(path: PathLike, check_hash: bool = True) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(path, map_location="cpu", weights_only=True)``.

    A file that needs more than ``weights_only`` (pickled code or objects) is refused with
    :class:`InceptionWeightsError`, as are files that are not a mapping of names to tensors.

    ``check_hash``: when the file is named ``pt_inception-2015-12-05-6726825d.pth`` (the name pytorch-fid and
    torch.hub give it), its SHA-256 is computed (about 0.1-0.5 s for its 95 MB) and a *warning*, not an
    error, is issued when it does not start with ``6726825d``: a copy re-saved by a newer PyTorch holds the
    same tensors but different bytes, and the tensors are validated by key and shape anyway.
    """
    path = Path(os.fspath(path))
    if check_hash and path.name == WEIGHTS_FILENAME:
        digest = _sha256(path)
        if not digest.startswith(WEIGHTS_SHA256_PREFIX):
            warnings.warn(
                f"{str(path)!r} is named like pytorch-fid's weight file, whose SHA-256 starts with "
                f"{WEIGHTS_SHA256_PREFIX}, but its SHA-256 is {digest}. It may be a re-saved copy of the same "
                f"weights (its keys and shapes are checked next) or a different file: FID values computed with "
                f"it may not match published ones. The original is at {WEIGHTS_URL}", stacklevel=3)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InceptionWeightsError(
            f"Refusing to load {str(path)!r}: torch.load(weights_only=True) could not read it ({e}). Either the "
            f"file holds pickled objects or code beyond tensors and containers, which fastgan does not run "
            f"(files are data, never code), or it is not a PyTorch file / is damaged. The FID weights are a "
            f"plain state dict: {WEIGHTS_URL}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InceptionWeightsError(
            f"Could not read {str(path)!r} as a PyTorch weight file ({type(e).__name__}: {e}); it may be "
            f"truncated or damaged. The FID weights are at {WEIGHTS_URL}") from e
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise InceptionWeightsError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors) but a "
            f"{type(obj).__name__}. The FID weights are a plain state dict: {WEIGHTS_URL}")
    return dict(obj)


def _read_weights(weights, check_hash: bool) -> tuple[dict[str, torch.Tensor], str, Path | None]:
    """(state dict, where it came from for messages, file path or None) for FIDInceptionV3.load_weights."""
    if isinstance(weights, Mapping):
        return dict(weights), "the given state dict", None
    path = resolve_weights_path(weights)
    return load_weights_file(path, check_hash=check_hash), repr(str(path)), path


# ---------------------------------------------------------------------------------------------------------
# The network. Names of modules follow torchvision's Inception3, so that the state-dict keys do.

class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps=0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool_3x3_same(x: torch.Tensor, mode: str) -> torch.Tensor:
    """3x3, stride 1, padding 1 pooling of the pool branches: TensorFlow's average (padding not counted) or max."""
    if mode == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Inception block A (35x35 grid) with the FID pool branch: average pooling with ``count_include_pad=False``."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_pool_3x3_same(x, "avg"))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Mixed_6a); the same as torchvision's."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """Inception block C (17x17 grid, factorised 7x7) with the FID pool branch (``count_include_pad=False``)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_pool_3x3_same(x, "avg"))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (Mixed_7a); the same as torchvision's."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class _InceptionE(nn.Module):
    """Inception block E (8x8 grid, expanded filter bank); the pool branch's pooling is set by the subclass."""

    _pool_mode = "avg"

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(_pool_3x3_same(x, self._pool_mode))
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionE_1(_InceptionE):
    """First E block (Mixed_7b): average pooling with ``count_include_pad=False`` in the pool branch."""

    _pool_mode = "avg"


class FIDInceptionE_2(_InceptionE):
    """Second E block (Mixed_7c): *max* pooling in the pool branch, as in the TensorFlow FID graph."""

    _pool_mode = "max"


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
        loaded = _read_weights(weights, check_hash)
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
        return self._apply_weights(*_read_weights(weights, check_hash))

    def _apply_weights(self, state: dict[str, torch.Tensor], origin: str, path: Path | None) -> "FIDInceptionV3":
        own = self.state_dict()
        self._validate(state, own, origin)
        full = {k: state[k] if k in state else own[k] for k in own}  # missing num_batches_tracked: keep 0
        self.load_state_dict(full, strict=True)
        self.weights_path = None if path is None else str(path)
        return self

    @staticmethod
    def _validate(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], origin: str) -> None:
        missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
                  for k in own if k in state and state[k].shape != own[k].shape]
        not_float = [f"{k}: {state[k].dtype}" for k in own
                     if k in state and not k.endswith(_OPTIONAL_SUFFIX) and not state[k].is_floating_point()]
        problems = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", shapes),
                            ("not floating point", not_float)):
            if items:
                more = f", ... ({len(items) - 5} more)" if len(items) > 5 else ""
                problems.append(f"{len(items)} {what}: " + ", ".join(items[:5]) + more)
        if not problems:
            bad = [k for k in own if k in state and not k.endswith(_OPTIONAL_SUFFIX)
                   and not bool(torch.isfinite(state[k]).all())]
            if bad:
                problems.append(f"{len(bad)} with NaN or infinite values: " + ", ".join(bad[:5]))
        if problems:
            hint = ""
            if any(k.startswith("AuxLogits.") for k in state):
                hint = (" (AuxLogits entries: this looks like torchvision's ImageNet inception_v3 weights, which "
                        "differ from the FID weights)")
            elif any(k.startswith("module.") for k in state):
                hint = " (keys start with 'module.': strip that DataParallel prefix)"
            raise InceptionWeightsError(
                f"{origin} is not a state dict of the FID InceptionV3{hint}. Entries " + "; ".join(problems)
                + f". The expected file is {WEIGHTS_FILENAME} from {WEIGHTS_URL}")

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
