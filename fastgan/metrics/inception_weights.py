"""The weight file of the FID InceptionV3: where it is, reading it safely, checking it against the network.

pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (:data:`WEIGHTS_URL`) is never downloaded: its path
comes from an argument, else from the environment variable ``FASTGAN_INCEPTION_WEIGHTS``
(:func:`resolve_weights_path`). It is read with ``torch.load(..., weights_only=True)``
(:func:`load_weights_file`), and its entries are checked by name, shape, dtype and finiteness against the
state dict of the network that is to load them (:func:`check_state_dict`), with errors that say what the
file looks like instead (torchvision's ImageNet weights, a DataParallel prefix). The network itself is
:class:`fastgan.metrics.inception.FIDInceptionV3`.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch

__all__ = [
    "InceptionWeightsError", "InceptionWeightsNotFoundError", "PathLike", "WEIGHTS_ENV", "WEIGHTS_FILENAME",
    "WEIGHTS_SHA256_PREFIX", "WEIGHTS_URL", "check_state_dict", "load_weights_file", "read_weights",
    "resolve_weights_path",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
WEIGHTS_ENV = "FASTGAN_INCEPTION_WEIGHTS"
# torch.hub naming convention: the hex digits after the last '-' are the first digits of the file's SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"

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


def read_weights(weights, check_hash: bool) -> tuple[dict[str, torch.Tensor], str, Path | None]:
    """(state dict, where it came from for messages, file path or None) of ``weights``: a state dict, a path
    (or a folder holding the file), or None for ``$FASTGAN_INCEPTION_WEIGHTS``."""
    if isinstance(weights, Mapping):
        return dict(weights), "the given state dict", None
    path = resolve_weights_path(weights)
    return load_weights_file(path, check_hash=check_hash), repr(str(path)), path


def check_state_dict(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raises :class:`InceptionWeightsError` unless ``state`` (from ``origin``, for the message) has the keys,
    shapes and floating-point, finite values of ``own``, the state dict of the network to load it;
    ``num_batches_tracked`` entries may be missing. A few of each kind of problem are named."""
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
