"""Fréchet distance between Gaussians, exact, in float64, on the CPU or the GPU.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

pytorch-fid computes sqrt(S1 S2) with ``scipy.linalg.sqrtm`` (a Schur decomposition of a non-symmetric matrix:
seconds on the CPU for d=2048, and complex round-off when the covariances are singular); torchmetrics takes the
eigenvalues of S1 S2 with a general eigensolver. Only the trace is needed, and S1 S2 is similar to a symmetric
matrix: with S1 = L L^T (Cholesky), L^-1 (S1 S2) L = L^T S2 L, which is symmetric positive semi-definite, so

    tr sqrt(S1 S2) = sum_i sqrt(lambda_i(L^T S2 L))

with a symmetric eigensolver, eigenvalues only. When S1 is singular (fewer samples than dimensions) the
Cholesky factorisation fails; S1 = R R with R = sqrt(S1) from ``eigh`` gives the same similarity, R S2 R.
Neither route produces NaN or an imaginary part for a valid covariance.

Round-off: the trace of a square root is not Lipschitz at singular matrices, so an eigenvalue that is 0 but comes
out as 1e-16 |S| would add 1e-8 |S| per null direction. Which computed eigenvalues are round-off is read from the
factorisation itself: the matrix is positive semi-definite, so a negative computed eigenvalue is pure error, and
the most negative one measures the error this factorisation made. Eigenvalues up to ``ROUNDOFF_MARGIN`` times
its size are taken as 0; all others are kept, however small (a full-rank covariance with a condition number of
1e10 has genuine eigenvalues far below any fixed threshold such as max|lambda| d eps). A negative eigenvalue
beyond ``NOT_PSD_TOLERANCE`` of the largest is no round-off: the covariance is refused as not positive
semi-definite.

Because of round-off, the FID of a set with itself can come out as a tiny negative number (about -1e-10 of the
traces); it is returned as computed, not clipped, so that a real bug is not hidden.
"""
from __future__ import annotations

import warnings
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_f64(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    elif isinstance(x, torch.Tensor):
        t = x.detach().to(torch.float64)
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    return t if device is None else t.to(device)


ROUNDOFF_MARGIN = 8.0  # eigenvalues up to this many times the most negative one's size are round-off
NOT_PSD_TOLERANCE = 1e-6  # a negative eigenvalue beyond this fraction of the largest: not a covariance


def _check_cov(s: torch.Tensor, name: str) -> None:
    if s.dim() != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) covariance matrix, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} holds NaN or Inf values: check the features it was computed from")
    asym = float((s - s.mT).abs().max()) if s.numel() else 0.0
    if asym > 1e-6 * max(float(s.diagonal().abs().max()) if s.numel() else 0.0, 1e-300):
        raise ValueError(f"{name} is not symmetric (largest |S - S^T| = {asym:.3g}); a covariance matrix is")


def _significant(lam: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
    """(eigenvalues with those at round-off level set to 0, how many were) of a matrix that must be positive
    semi-definite; raises if it clearly is not (``name`` says which covariance is at fault)."""
    if not lam.numel():
        return lam, 0
    top = float(lam.abs().max())
    neg = max(-float(lam.min()), 0.0)
    if neg > NOT_PSD_TOLERANCE * top:
        raise ValueError(f"{name} is not positive semi-definite (an eigenvalue of {-neg:.6g}, the largest in "
                         f"magnitude is {top:.6g}); a covariance matrix is: check how it was computed")
    keep = lam > ROUNDOFF_MARGIN * neg
    return torch.where(keep, lam, torch.zeros_like(lam)), int((~keep).sum())


def _symmetric_sqrt(s: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(sqrt(s), eigenvalues of s, its rank) for a symmetric PSD s; eigenvalues at round-off level count as 0."""
    lam, vec = torch.linalg.eigh(s)
    sig, zeros = _significant(lam, name)
    return (vec * sig.sqrt()) @ vec.mT, lam, s.shape[0] - zeros


class _Factor:
    """A factor F of a covariance S (S = F F^T), computed once: Cholesky, or the symmetric square root."""

    def __init__(self, s: torch.Tensor, name: str):
        self.name, self.dim = name, s.shape[0]
        chol, info = torch.linalg.cholesky_ex(s)
        if int(info) == 0:
            self.f, self.route, self.eigenvalues, self.rank = chol, "cholesky", None, self.dim
        else:
            self.f, self.eigenvalues, self.rank = _symmetric_sqrt(s, name)
            self.route = "eigh"

    def trace_sqrt_product(self, other: torch.Tensor, other_name: str) -> tuple[float, int | None]:
        """(tr sqrt(S other) = sum sqrt(eig(F^T other F)), the rank of S other if ``other`` lowers it below this
        factor's rank, else None). F^T other F is congruent to ``other`` on the range of F: a negative eigenvalue
        means ``other`` is not PSD, and null directions beyond F's own are null directions of ``other``."""
        m = self.f.mT @ other @ self.f
        lam = torch.linalg.eigvalsh((m + m.mT) * 0.5)  # symmetric up to round-off: make it exactly so
        sig, zeros = _significant(lam, other_name)
        product_rank = self.dim - zeros if zeros > self.dim - self.rank else None
        return float(sig.sqrt().sum()), product_rank

    def info(self) -> dict:
        out = {"route": self.route}
        if self.eigenvalues is not None:
            out.update(rank=self.rank, smallest_eigenvalue=float(self.eigenvalues.min()))
        return out


_SINGULAR_ADVICE = ("as when it was computed from fewer samples than dimensions: the distance is exact for these "
                    "statistics, but such statistics give a biased and noisy FID; use more samples")


def _warn_singular(factor: _Factor) -> None:
    if factor.route == "eigh":
        info = factor.info()
        warnings.warn(f"{factor.name} is singular (rank {info['rank']} of {factor.dim}, smallest eigenvalue "
                      f"{info['smallest_eigenvalue']:.3g}), {_SINGULAR_ADVICE}", stacklevel=4)


def _warn_singular_other(name: str, product_rank: int | None, dim: int) -> None:
    """The warning for the covariance that was not factored, when it is singular (found from the product)."""
    if product_rank is not None:
        warnings.warn(f"{name} is singular (the product of the covariances has rank {product_rank} of {dim}), "
                      f"{_SINGULAR_ADVICE}", stacklevel=4)


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> tuple[float, dict]:
    """tr sqrt(s1 s2) and diagnostics; factors s1, or s2 when only s2 is positive definite. Warns for each
    singular covariance, whichever the order of the arguments."""
    f = _Factor(s1, "sigma1")
    if f.route == "eigh":
        f2 = _Factor(s2, "sigma2")
        if f2.route == "cholesky":  # cheaper than the eigh route, and the trace is symmetric in s1, s2
            tr, _ = f2.trace_sqrt_product(s1, "sigma1")
            _warn_singular(f)
            return tr, {**f.info(), "factored": "sigma2"}
        _warn_singular(f)
    tr, other_rank = f.trace_sqrt_product(s2, "sigma2")
    _warn_singular_other("sigma2", other_rank, f.dim)
    return tr, {**f.info(), "factored": "sigma1"}


def _distance(m1, tr1, m2, s2, tr_covmean) -> float:
    diff = m1 - m2
    return float(diff @ diff) + tr1 + float(s2.diagonal().sum()) - 2.0 * tr_covmean


def _statistics(mu, sigma, which, device=None):
    s = _as_f64(sigma, f"sigma{which}", device)
    m = _as_f64(mu, f"mu{which}", s.device)
    _check_cov(s, f"sigma{which}")
    if m.shape != (s.shape[0],):
        raise ValueError(f"mu{which} has shape {tuple(m.shape)}, expected ({s.shape[0]},) to match sigma{which}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"mu{which} holds NaN or Inf values: check the features it was computed from")
    return m, s


class FrechetReference:
    """The statistics (mu, sigma) of a reference set, with the factor of sigma computed once.

    ``FrechetReference(mu_real, sigma_real).distance(mu, sigma)`` equals ``frechet_distance(mu_real, sigma_real,
    mu, sigma)`` but factorises sigma_real only once, for many evaluations (e.g. every checkpoint of a run).
    Computations happen in float64 on ``device`` (default: where sigma lives; numpy arrays: the CPU).
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, device: torch.device | str | None = None):
        self.mu, self.sigma = _statistics(mu, sigma, "", device)
        self._factor = _Factor(self.sigma, "the reference covariance")
        _warn_singular(self._factor)
        self._trace = float(self.sigma.diagonal().sum())

    @property
    def dim(self) -> int:
        return self.sigma.shape[0]

    def distance(self, mu: ArrayLike, sigma: ArrayLike, return_info: bool = False):
        """The Fréchet distance to N(mu, sigma), a Python float (and a dict of diagnostics if asked)."""
        m2, s2 = _statistics(mu, sigma, "2", self.sigma.device)
        if s2.shape != self.sigma.shape:
            raise ValueError(f"statistics of different dimensions: the reference is {self.dim}-d, the other "
                             f"{s2.shape[0]}-d")
        tr_covmean, other_rank = self._factor.trace_sqrt_product(s2, "sigma")
        _warn_singular_other("sigma", other_rank, self.dim)
        fid = _distance(self.mu, self._trace, m2, s2, tr_covmean)
        if return_info:
            return fid, {"trace_sqrt_product": tr_covmean, **self._factor.info()}
        return fid


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    """tr sqrt(sigma1 sigma2) for symmetric positive semi-definite (d, d) matrices, exactly, in float64 (on the
    device of sigma1 when it is a tensor)."""
    s1 = _as_f64(sigma1, "sigma1")
    s2 = _as_f64(sigma2, "sigma2", s1.device)
    _check_cov(s1, "sigma1")
    _check_cov(s2, "sigma2")
    if s1.shape != s2.shape:
        raise ValueError(f"sigma1 is {tuple(s1.shape)} but sigma2 is {tuple(s2.shape)}")
    return _trace_sqrt_product(s1, s2)[0]


def sqrtm_psd(a: ArrayLike) -> ArrayLike:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from round-off
    are taken as 0); float64, returned as the input's type (numpy array, or tensor on the input's device)."""
    t = _as_f64(a, "a")
    _check_cov(t, "a")
    root, _, _ = _symmetric_sqrt(t, "a")
    return root.numpy() if isinstance(a, np.ndarray) else root


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6,
                     method: str = "exact", return_info: bool = False):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): the FID when these are Inception statistics.

    Args:
        mu1, mu2: (d,) means; sigma1, sigma2: (d, d) covariances. numpy arrays or torch tensors on any device;
            computed in float64 where sigma1 lives (numpy: the CPU).
        eps: pytorch-fid's regulariser, added to both diagonals only if the result is not finite. The exact
            route never needs it for valid covariances (finite, symmetric, positive semi-definite).
        method: ``"exact"`` (symmetric eigenvalue route, see the module docstring) or ``"newton_schulz"``: a
            float32 Newton–Schulz iteration of sqrt(sigma1 sigma2) in fused Triton kernels, on CUDA tensors.
            It is inexact (about 1e-4 relative on the trace) and falls back to the exact route, with a warning,
            when it does not converge or produces NaN (as it does for singular covariances).
        return_info: also return a dict of diagnostics (route taken, and rank and smallest eigenvalue when a
            covariance is singular).

    Returns:
        The distance as a Python float (may be a tiny negative number for identical statistics: see above).
    """
    if method not in ("exact", "newton_schulz"):
        raise ValueError(f"method must be 'exact' or 'newton_schulz', got {method!r}")
    m1, s1 = _statistics(mu1, sigma1, "1")
    m2, s2 = _statistics(mu2, sigma2, "2", s1.device)
    if s1.shape != s2.shape:
        raise ValueError(f"statistics of different dimensions: sigma1 is {tuple(s1.shape)}, sigma2 "
                         f"{tuple(s2.shape)}")
    if method == "newton_schulz":
        # Imported when asked for: the module registers its op with the backend registry (`fastgan info`).
        from .newton_schulz import trace_sqrt_newton_schulz

        tr_covmean = trace_sqrt_newton_schulz(s1, s2)
        if tr_covmean is not None:
            fid = _distance(m1, float(s1.diagonal().sum()), m2, s2, tr_covmean)
            return (fid, {"route": "newton_schulz"}) if return_info else fid
    tr_covmean, info = _trace_sqrt_product(s1, s2)
    fid = _distance(m1, float(s1.diagonal().sum()), m2, s2, tr_covmean)
    if not np.isfinite(fid):  # pytorch-fid's retry; unreachable for valid covariances
        offset = torch.eye(s1.shape[0], dtype=torch.float64, device=s1.device) * eps
        tr_covmean, info = _trace_sqrt_product(s1 + offset, s2 + offset)
        fid = _distance(m1, float(s1.diagonal().sum()), m2, s2, tr_covmean)
        info["eps_added"] = eps
    info["trace_sqrt_product"] = tr_covmean
    return (fid, info) if return_info else fid
