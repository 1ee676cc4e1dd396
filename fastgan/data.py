"""Data for ``fastgan train``: an embedded, procedurally generated image set that needs no download, a 2-D ring of
Gaussians for the mode-collapse demonstration, and real images from a folder or an ``.npz`` array.

Every image set gives ``batch(indices) -> (images (B, C, R, R) float32 in [-1, 1], labels (B,) int64)`` with
``len()``, ``resolution``, ``channels`` and ``num_classes``; a trainer draws the indices from its own generator,
so a run is reproduced by its seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class Shapes:
    """Coloured shapes on a dark background, one per image: a circle, a square, an upright triangle or a cross (the
    class label), with a random colour, size and position (and, with ``rotate=True``, angle), deterministic from
    ``seed`` and the index, rendered anti-aliased at any resolution (>= 8). ``size`` images (the parameters are a
    small table; pixels are rendered per batch). ``jitter`` in [0, 1]: how far from the centre a shape may sit,
    as a share of the room it has (0.3 by default: a DCGAN then draws recognisable shapes after about 2,000 steps
    at 32 px; with 1.0 it still draws blobs after 5,000)."""

    def __init__(self, resolution: int = 32, size: int = 50_000, seed: int = 0, rotate: bool = False,
                 jitter: float = 0.3):
        if not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"Shapes: resolution must be an int >= 8, got {resolution!r}")
        if size < 1:
            raise ValueError(f"Shapes: size must be positive, got {size}")
        self.resolution, self.channels, self.num_classes, self.size = resolution, 3, len(SHAPE_CLASSES), size
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, self.num_classes, (size,), generator=g)
        hue = torch.rand(size, generator=g)
        self.colors = _hue_to_rgb(hue) * (0.75 + 0.25 * torch.rand(size, 1, generator=g))
        self.scale = 0.24 + 0.14 * torch.rand(size, generator=g)  # half-extent, in units of the image side
        room = (0.5 - self.scale - 0.03).clamp(min=0)[:, None]  # how far a centre may move and stay inside
        self.centers = 0.5 + room * (2 * torch.rand(size, 2, generator=g) - 1) * jitter
        self.angles = 2 * math.pi * torch.rand(size, generator=g) * rotate

    def __len__(self) -> int:
        return self.size

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        R = self.resolution
        t = (torch.arange(R, dtype=torch.float32) + 0.5) / R
        yy, xx = torch.meshgrid(t, t, indexing="ij")
        dx = xx[None] - self.centers[idx, 0, None, None]
        dy = yy[None] - self.centers[idx, 1, None, None]
        c, s = torch.cos(self.angles[idx])[:, None, None], torch.sin(self.angles[idx])[:, None, None]
        scale = self.scale[idx][:, None, None]
        px, py = (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale
        sdf = torch.stack([_circle(px, py), _square(px, py), _triangle(px, -py), _cross(px, py)], dim=1)
        d = sdf.gather(1, self.labels[idx][:, None, None, None].expand(-1, 1, R, R))  # (B, 1, R, R)
        alpha = (0.5 - d * scale[:, None] * R).clamp(0, 1)  # signed distance in pixels -> coverage
        background = 0.08
        img = background + alpha * (self.colors[idx][:, :, None, None] - background)
        return img * 2 - 1, self.labels[idx].clone()


def _hue_to_rgb(h: torch.Tensor) -> torch.Tensor:
    """Fully saturated colours of hue h in [0, 1): (N, 3) in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _circle(px, py):
    return torch.sqrt(px * px + py * py) - 1


def _square(px, py):
    return torch.maximum(px.abs(), py.abs()) - 0.8


def _triangle(px, py):
    """Signed distance to an equilateral triangle of circumradius about 1 (exact outside, as in Quilez's)."""
    k = math.sqrt(3.0)
    x, y = px.abs() - 1.0, py + 1.0 / k
    flip = x + k * y > 0
    x, y = torch.where(flip, (x - k * y) / 2, x), torch.where(flip, (-k * x - y) / 2, y)
    x = x - x.clamp(-2.0, 0.0)
    return -torch.sqrt(x * x + y * y) * torch.sign(y)


def _cross(px, py):
    ax, ay = px.abs(), py.abs()
    return torch.minimum(torch.maximum(ax - 1, ay - 0.3), torch.maximum(ax - 0.3, ay - 1))


class ImageArray:
    """Images held in memory as uint8 (N, C, R, R), from an image folder (one subfolder per class, or none) or an
    ``.npz`` file (array ``x``, or its first array: (N, H, W, C) or (N, C, H, W) uint8; optional labels ``y``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, source: str = ""):
        if images.dim() != 4 or images.dtype != torch.uint8 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
            raise ValueError(f"{source or 'images'}: need uint8 images (N, C, H, W) with C 1 or 3 and N > 0, got "
                             f"{images.dtype} {tuple(images.shape)}")
        if images.shape[2] != images.shape[3]:
            raise ValueError(f"{source}: images must be square, got {images.shape[2]}x{images.shape[3]}")
        self.images = images
        self.labels = torch.zeros(len(images), dtype=torch.long) if labels is None else labels.long()
        self.resolution, self.channels = images.shape[2], images.shape[1]
        self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx].float() / 127.5 - 1, self.labels[idx].clone()


def load_images(path: str | Path, resolution: int) -> ImageArray:
    """An image folder or ``.npz`` array at ``resolution`` (centre-cropped to a square and resized)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}: give an image folder or an .npz file")
    if path.suffix == ".npz":
        with np.load(path) as f:
            key = "x" if "x" in f.files else f.files[0]
            x = torch.from_numpy(np.ascontiguousarray(f[key]))
            y = torch.from_numpy(f["y"]) if "y" in f.files else None
        if x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.dtype != torch.uint8:
            raise ValueError(f"{path}: array {key!r} must be uint8 images, got {x.dtype}")
        if x.shape[-1] != resolution:
            x = torch.nn.functional.interpolate(x.float(), size=(resolution, resolution), mode="area")
            x = x.round().clamp(0, 255).to(torch.uint8)
        return ImageArray(x.contiguous(), y, str(path))
    if not path.is_dir():
        raise ValueError(f"{path} is a file: give a folder of images or an .npz array")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
    classes = sorted({p.parent.relative_to(path).as_posix() for p in files})
    images = []
    for p in files:
        with Image.open(p) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
            images.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    labels = torch.tensor([classes.index(p.parent.relative_to(path).as_posix()) for p in files])
    return ImageArray(torch.stack(images), labels, str(path))


class Ring:
    """A mixture of ``modes`` Gaussians (std ``std``) evenly spaced on a circle of radius ``radius``: the usual
    mode-collapse test (Metz et al.; Srivastava et al.). ``size`` points drawn once from ``seed``, served by
    ``batch(indices) -> (points (B, 2), modes (B,))`` like the image sets (``resolution`` is None)."""

    def __init__(self, modes: int = 8, radius: float = 2.0, std: float = 0.02, size: int = 50_000, seed: int = 0):
        self.modes, self.radius, self.std = modes, radius, std
        a = torch.arange(modes) * (2 * math.pi / modes)
        self.centers = radius * torch.stack([torch.cos(a), torch.sin(a)], dim=1)
        self.channels, self.num_classes, self.resolution = 2, modes, None
        self.points, self.labels = self.sample(size, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.points)

    def batch(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.points[idx].clone(), self.labels[idx].clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.randint(0, self.modes, (n,), generator=generator)
        return self.centers[k] + self.std * torch.randn(n, 2, generator=generator), k

    def metrics(self, samples: torch.Tensor) -> dict:
        """``high_quality``: the share of samples within 3 std of a mode; ``modes_covered``: the modes with at least
        20 high-quality samples per 2,500 drawn (PacGAN's criterion)."""
        d = torch.cdist(samples.double().cpu(), self.centers.double())
        nearest, which = d.min(dim=1)
        good = nearest <= 3 * self.std
        counts = torch.bincount(which[good], minlength=self.modes)
        need = max(1, round(20 * len(samples) / 2500))
        return {"high_quality": float(good.double().mean()), "modes_covered": int((counts >= need).sum()),
                "modes": self.modes}
