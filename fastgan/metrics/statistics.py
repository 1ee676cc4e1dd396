"""Streaming mean and covariance of feature vectors, and the ``.npz`` statistics files of pytorch-fid/clean-fid."""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from ..ops.feature_stats import feature_moments_update_
from ._network import default_device


class FeatureStatistics:
    """Mean and covariance of a stream of (batch, dim) feature tensors, without storing the features.

    ``precision="float64"`` (default): float64 sums of x and of x^T x (exact enough for any realistic features:
    relative error ~1e-12 even for mean 3, std 0.05). ``precision="float32"``: a float32 Chan merge of each batch's
    centred moments, computed on CUDA by one fused Triton kernel (``fastgan.ops.feature_stats``) at
    tensor-core speed, relative error ~1e-6. Plain float32 raw sums are never used (they lose ~0.5% on such
    features).

    ``mean`` and ``covariance`` (unbiased, like ``np.cov``) are float64 tensors on ``device``.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu", precision: str = "float64",
                 backend: str | None = None):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
        self.dim, self.device, self.precision, self.backend = dim, default_device(device), precision, backend
        self.reset()

    def reset(self) -> None:
        """Forget every feature seen."""
        self.count = 0
        dt = torch.float64 if self.precision == "float64" else torch.float32
        self._a = torch.zeros(self.dim, dtype=dt, device=self.device)  # sum of x, or running mean
        self._b = torch.zeros(self.dim, self.dim, dtype=dt, device=self.device)  # sum of x x^T, or M2
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)

    def update(self, features: torch.Tensor) -> None:
        """Add a (batch, dim) tensor of features (any float dtype; moved to this object's device)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch tensor, got {type(features).__name__}")
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must have shape (batch, {self.dim}), got {tuple(features.shape)}")
        if not features.is_floating_point():
            raise TypeError(f"features must be floating point, got {features.dtype}")
        x = features.detach().to(self.device)
        # checked on the device and reported when the statistics are read: no host sync per batch
        self._finite &= torch.isfinite(x).all()
        if self.precision == "float64":
            x64 = x.to(torch.float64)
            self._a += x64.sum(0)
            self._b.addmm_(x64.T, x64)
        else:
            feature_moments_update_(self._a, self._b, x if x.dtype != torch.float64 else x.float(), self.count,
                                    self.backend)
        self.count += x.shape[0]

    def _moments64(self):
        """(mean, centred scatter sum) in float64."""
        if self.precision == "float64":
            mean = self._a / max(self.count, 1)
            return mean, self._b - self.count * torch.outer(mean, mean)
        m2 = torch.triu(self._b.to(torch.float64))
        return self._a.to(torch.float64), m2 + torch.triu(m2, 1).T

    @property
    def mean(self) -> torch.Tensor:
        self._need(1)
        return self._moments64()[0]

    @property
    def covariance(self) -> torch.Tensor:
        """Unbiased covariance (divided by count - 1, as np.cov), float64; warns when count < dim + 1."""
        self._need(2)
        if self.count <= self.dim:
            warnings.warn(f"{self.count} samples for {self.dim}-dimensional features: the covariance is singular "
                          f"(rank at most {self.count - 1}); an FID from it is exact for these statistics but "
                          "biased and noisy. Use more samples than dimensions (pytorch-fid recommends 10,000+)",
                          stacklevel=2)
        _, scatter = self._moments64()
        return scatter / (self.count - 1)

    def _need(self, n: int) -> None:
        if self.count < n:
            raise ValueError(f"FeatureStatistics: {self.count} samples seen, at least {n} needed")
        if not bool(self._finite):
            raise ValueError("some features passed to update() held NaN or Inf values (check the images and the "
                             "feature extractor); these statistics are unusable: reset() and start again")

    def merge_(self, other: "FeatureStatistics") -> "FeatureStatistics":
        """Add another object's samples to this one (same dim and precision); returns self."""
        if other.dim != self.dim or other.precision != self.precision:
            raise ValueError("FeatureStatistics.merge_: the two objects differ in dim or precision")
        self._finite &= other._finite.to(self.device)
        self._merge(other.count, other._a.to(self.device), other._b.to(self.device))
        return self

    def _merge(self, n2, a2, b2):
        if self.precision == "float64":
            self._a += a2
            self._b += b2
        elif n2:
            n1 = self.count
            delta = a2 - self._a
            self._b += b2 + torch.outer(delta, delta) * (n1 * n2 / (n1 + n2))
            self._a += delta * (n2 / (n1 + n2))
        self.count += n2

    def all_reduce(self, group=None) -> "FeatureStatistics":
        """Combine the statistics of every process of ``group`` (torch.distributed), in rank order; returns self.

        Every rank ends with the statistics of all samples. Collective: call it on every rank.
        """
        import torch.distributed as dist

        world = dist.get_world_size(group)
        counts = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([self.count], dtype=torch.int64, device=self.device), group=group)
        parts_a = [torch.empty_like(self._a) for _ in range(world)]
        parts_b = [torch.empty_like(self._b) for _ in range(world)]
        dist.all_gather(parts_a, self._a, group=group)
        dist.all_gather(parts_b, self._b, group=group)
        finite = self._finite.to(torch.int64).reshape(1)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN, group=group)  # one rank's NaN spoils everyone's result
        self.reset()
        self._finite = finite[0].bool()
        for n, a, b in zip(counts, parts_a, parts_b):
            self._merge(int(n), a, b)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write ``mu`` and ``sigma`` (float64) to an ``.npz`` file, the format of pytorch-fid and clean-fid."""
        save_statistics(path, self.mean, self.covariance)


def save_statistics(path: str | os.PathLike, mu, sigma) -> None:
    """Write (mu, sigma) to ``path`` as ``.npz`` with keys ``mu`` and ``sigma`` (float64)."""
    mu = mu.detach().cpu().numpy() if isinstance(mu, torch.Tensor) else np.asarray(mu)
    sigma = sigma.detach().cpu().numpy() if isinstance(sigma, torch.Tensor) else np.asarray(sigma)
    np.savez(path, mu=mu.astype(np.float64), sigma=sigma.astype(np.float64))


def _npz_header(zf, name: str, path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of the array ``name`` of an open ``.npz`` zip, read from its header alone (a compressed file
    can inflate to far more than its size: check the shape before reading the data)."""
    with zf.open(name + ".npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{path}: {name} is stored in .npy format version {version}, which this reader does not "
                             "take; save it again with numpy.savez")
    return shape, dtype


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from an ``.npz`` file with keys ``mu`` and ``sigma`` (pytorch-fid/clean-fid); data only,
    never pickled objects. Shapes are checked from the headers before any data is read; a file that is not a
    readable ``.npz`` (empty, truncated, another format) raises ValueError naming it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            missing = {"mu", "sigma"} - names
            if missing:
                raise ValueError(f"{path}: not a statistics file, missing {sorted(missing)} (it has "
                                 f"{sorted(names)})")
            (mu_shape, mu_dtype), (sigma_shape, sigma_dtype) = (_npz_header(zf, k, path) for k in ("mu", "sigma"))
            if len(mu_shape) != 1 or sigma_shape != (mu_shape[0], mu_shape[0]):
                raise ValueError(f"{path}: mu {mu_shape} and sigma {sigma_shape} are not (d,) and (d, d)")
            for key, dt in (("mu", mu_dtype), ("sigma", sigma_dtype)):
                if dt.hasobject:
                    raise ValueError(f"{path} holds pickled objects ({key}); statistics files must hold plain arrays")
                if dt.kind not in "fiu":
                    raise ValueError(f"{path}: {key} holds {dt} values; statistics files hold plain numbers")
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = f["mu"], f["sigma"]
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a readable .npz statistics file (empty, truncated, or another format: "
                         f"{e})") from e
    except (EOFError, zipfile.LargeZipFile) as e:
        raise ValueError(f"{path} is not a readable .npz statistics file ({type(e).__name__}: {e})") from e
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(f"{path} holds pickled objects; statistics files must hold plain arrays") from e
        raise
    return mu.astype(np.float64), sigma.astype(np.float64)
