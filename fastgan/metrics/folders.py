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


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] from an image file, converted to RGB."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
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


def statistics_of(path: str | os.PathLike, extractor, dims: int, device: torch.device, batch_size: int,
                  progress: bool = True):
    """(mu, sigma) of an ``.npz`` statistics file, or of the images of a folder (``extractor()`` builds the
    network, only when a folder needs it)."""
    from .statistics import load_statistics

    if str(path).endswith(".npz"):
        mu, sigma = load_statistics(path)
        if mu.shape != (dims,):
            raise ValueError(f"{path} holds {mu.shape[0]}-d statistics; --dims is {dims}")
        return mu, sigma
    image_files(path)  # a missing or empty folder is reported before the network is built
    stats = folder_statistics(path, extractor(), dims, device, batch_size, progress)
    return stats.mean, stats.covariance
