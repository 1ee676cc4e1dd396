"""Statistics of image folders for ``fastgan fid``: files are read, decoded to RGB in [0, 1] and passed through a
feature extractor in batches, with a progress bar."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .statistics import FeatureStatistics

IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}  # as pytorch-fid


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (not in sub-folders), sorted by name, as pytorch-fid lists them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of images (or an .npz statistics file)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder} holds no image files (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # how Pillow opens 16-bit grayscale PNGs and TIFFs


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] from an image file, converted to RGB. 16-bit grayscale images are scaled by
    1/65535 (Pillow's RGB conversion would clip them at 255); a file that cannot be decoded raises ValueError
    naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode in _SIXTEEN_BIT_MODES:
                gray = np.asarray(img, dtype=np.float64)
                if gray.size and (gray.min() < 0 or gray.max() > 65535):
                    raise ValueError(f"{path}: a {img.mode} image with values outside 0..65535; convert it to 8 or "
                                     "16 bits per channel")
                arr = np.repeat((gray / 65535.0)[..., None], 3, axis=2).astype(np.float32)
                return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            if img.mode == "F":
                raise ValueError(f"{path}: a floating-point image (mode F) has no defined range; save it with 8 or "
                                 "16 bits per channel")
            arr = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
    except (OSError, SyntaxError) as e:  # unidentified, truncated or unreadable files (Pillow raises these)
        raise ValueError(f"{path}: cannot read this image ({type(e).__name__}: {e})") from e
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def _batches(files: list[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of consecutive images of one size (a new batch starts where the size changes)."""
    batch: list[torch.Tensor] = []
    for path in files:
        img = load_image(path)
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)


@torch.no_grad()
def folder_statistics(folder: str | os.PathLike, extractor: nn.Module, dims: int, device: torch.device,
                      batch_size: int = 50, progress: bool = True) -> FeatureStatistics:
    """Streaming statistics of the features of every image in ``folder``."""
    from tqdm import tqdm

    files = image_files(folder)
    stats = FeatureStatistics(dims, device)
    extractor = extractor.to(device).eval()
    with tqdm(total=len(files), desc=str(folder), unit="img", disable=not progress) as bar:
        for batch in _batches(files, batch_size):
            stats.update(extractor(batch.to(device)))
            bar.update(batch.shape[0])
    return stats


class PooledBlock(nn.Module):
    """pytorch-fid's features of ``dims`` = 64, 192, 768 or 2048: a block of the FID InceptionV3, averaged over
    its grid."""

    def __init__(self, net: nn.Module, dims: int):
        super().__init__()
        self.net, self.dims = net, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 2048:
            return self.net(x)
        return self.net.feature_maps(x, (self.dims,), pool=True)[self.dims]


def statistics_of(folder: str | os.PathLike, extractor, dims: int, device: torch.device, batch_size: int,
                  progress: bool = True):
    """(mu, sigma) of the images of a folder (``extractor()`` builds the network, only once the folder is known to
    hold images)."""
    image_files(folder)  # a missing or empty folder is reported before the network is built
    stats = folder_statistics(folder, extractor(), dims, device, batch_size, progress)
    return stats.mean, stats.covariance
