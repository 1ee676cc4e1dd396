"""Codebook search: the nearest code of each vector (VQ-VAE's quantisation), without the N x K distance matrix.

    index_n = argmin_k ||z_n - e_k||^2 = argmin_k (||e_k||^2 - 2 z_n . e_k),   distance_n = ||z_n - e_{index_n}||^2

ties to the lowest index, as ``torch.argmin(torch.cdist(z, e), 1)`` picks them. No gradient: the indices select
codes (the straight-through estimator and the commitment loss are written with them, see
``fastgan.models.vqvae``).

The op's files: ``codebook_search_reference.py`` (eager reference), this file (host code),
``fastgan/kernels/codebook_search.py`` (Triton kernel and launcher). No CUDA C++ kernel: the backends are torch and
triton. Registered ops: ``fastgan::codebook_search`` -> (index int64 (N,), distance float32 (N,)), and
``fastgan::codebook_ema_update_`` (mutates the EMA statistics: VQ-VAE's codebook update, Sonnet's
VectorQuantizerEMA).
"""
from __future__ import annotations

import torch

from .. import _backend
from . import _op
from . import codebook_search_reference as ref

OP = "codebook_search"
_backend.register_op(OP, ("torch", "triton"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.codebook_search")
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# ---------------------------------------------------------------- kernel stages and implementation


def _search_impl(z: torch.Tensor, codebook: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "torch":
        return ref.search(z, codebook)
    z, codebook = z.contiguous(), codebook.contiguous()
    index = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    dist = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
    if z.shape[0]:
        _LAUNCH[backend].search(z, codebook, index, dist)
    return index, dist


# ---------------------------------------------------------------- registration


@torch.library.custom_op("fastgan::codebook_search", mutates_args=())
def _registered(z: torch.Tensor, codebook: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _search_impl(z, codebook, backend)


@_registered.register_fake
def _(z, codebook, backend):
    n = z.shape[0]
    return z.new_empty(n, dtype=torch.long), z.new_empty(n, dtype=_op.acc_dtype(z.dtype))


# ---------------------------------------------------------------- validation


def _kernel_limit(z: torch.Tensor) -> str | None:
    from ..kernels.codebook_search import MAX_DIM  # (Triton is imported only when a kernel backend is chosen)

    if z.shape[1] > MAX_DIM:
        return f"searches codes of up to {MAX_DIM} dimensions, not {z.shape[1]}"
    if z.shape[0] >= 2 ** 31:
        return "searches fewer than 2^31 vectors per call"
    return None


def _validate(z, codebook) -> None:
    where = "codebook_search"
    for name, t in (("z", z), ("codebook", codebook)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{where}: {name} must be 2-D ({'(N, D) vectors' if name == 'z' else '(K, D) codes'}), "
                             f"got shape {tuple(t.shape)}; flatten the spatial dimensions first, e.g. "
                             f"z.permute(0, 2, 3, 1).reshape(-1, D)")
        if t.dtype not in _FLOATS:
            raise TypeError(f"{where}: {name} must be float32, float16, bfloat16 or float64, got {t.dtype}")
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(f"{where}: z has {z.shape[1]} dimensions per vector, the codebook {codebook.shape[1]}")
    if codebook.shape[0] == 0:
        raise ValueError(f"{where}: the codebook is empty")
    if z.dtype != codebook.dtype or z.device != codebook.device:
        raise ValueError(f"{where}: z ({z.dtype}, {z.device}) and the codebook ({codebook.dtype}, {codebook.device}) "
                         f"must have the same dtype and device")


# ---------------------------------------------------------------- public API


def codebook_search(z: torch.Tensor, codebook: torch.Tensor, backend: str | None = None,
                    check_finite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest code of each vector: z (N, D) and codebook (K, D), same float dtype and device ->
    (index (N,) int64, squared distance (N,) float32, float64 for float64 inputs). Ties go to the lowest index.
    Not differentiable (gather the codes with the index). ``check_finite``: refuse NaN / Inf (whose nearest code is
    undefined) with an error instead of returning an arbitrary index."""
    _validate(z, codebook)
    if check_finite:
        _op.check_finite("codebook_search", (("z", z), ("codebook", codebook)))
    name = _op.resolve(OP, z.device, z.dtype, backend, "codebook_search", _kernel_limit, z)
    z, codebook = z.detach(), codebook.detach()
    if _op.traced(z):
        return torch.ops.fastgan.codebook_search(z, codebook, name)
    return _search_impl(z, codebook, name)


# ---------------------------------------------------------------- the EMA statistics


def _ema_impl(ema_count, ema_sum, z, index, counts, decay, backend) -> None:
    if backend == "torch" or z.shape[0] == 0:
        ref.ema_update_(ema_count, ema_sum, z, index, counts, decay)
        return
    _LAUNCH[backend].ema_update_(ema_count, ema_sum, z.contiguous(), index, counts, decay)


@torch.library.custom_op("fastgan::codebook_ema_update_", mutates_args=("ema_count", "ema_sum"))
def _registered_ema(ema_count: torch.Tensor, ema_sum: torch.Tensor, z: torch.Tensor, index: torch.Tensor,
                    counts: torch.Tensor, decay: float, backend: str) -> None:
    _ema_impl(ema_count, ema_sum, z, index, counts, decay, backend)


@_registered_ema.register_fake
def _(ema_count, ema_sum, z, index, counts, decay, backend):
    return None


def codebook_ema_update_(ema_count: torch.Tensor, ema_sum: torch.Tensor, z: torch.Tensor, index: torch.Tensor,
                         counts: torch.Tensor, decay: float, backend: str | None = None) -> None:
    """In place, the EMA codebook statistics of a batch: ema_count (K,) <- decay ema_count + (1 - decay) n_k,
    ema_sum (K, D) <- decay ema_sum + (1 - decay) (sum of the rows of z assigned to code k), for z (N, D) (any
    float dtype), index (N,) int64 codes and counts = bincount(index, minlength=K) (int64). The statistics are
    float32 (float64 on the torch backend), contiguous. Deterministic: each code's rows summed in a fixed order."""
    where = "codebook_ema_update_"
    k = ema_count.shape[0] if ema_count.dim() == 1 else -1
    if ema_sum.dim() != 2 or ema_sum.shape[0] != k or z.dim() != 2 or z.shape[1] != ema_sum.shape[1]:
        raise ValueError(f"{where}: expected ema_count (K,), ema_sum (K, D) and z (N, D), got {tuple(ema_count.shape)}"
                         f", {tuple(ema_sum.shape)} and {tuple(z.shape)}")
    if index.shape != (z.shape[0],) or counts.shape != (k,) or index.dtype != torch.long or counts.dtype != torch.long:
        raise ValueError(f"{where}: index must be (N,) int64 and counts (K,) int64 (torch.bincount(index, "
                         f"minlength=K)), got {tuple(index.shape)} {index.dtype} and {tuple(counts.shape)} "
                         f"{counts.dtype}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{where}: decay must be in [0, 1), got {decay}")
    stats = ema_sum.dtype
    name = _op.resolve(OP, z.device, z.dtype, backend, where)
    if name != "torch" and (stats != torch.float32 or ema_count.dtype != torch.float32
                            or not ema_sum.is_contiguous() or not ema_count.is_contiguous()):
        if _backend.requested(backend) != "auto":
            raise _backend.BackendUnavailable(f"{where}: the {name} backend updates contiguous float32 statistics")
        name = "torch"
    if _op.traced(z):
        torch.ops.fastgan.codebook_ema_update_(ema_count, ema_sum, z.detach(), index, counts, float(decay), name)
    else:
        _ema_impl(ema_count, ema_sum, z.detach(), index, counts, float(decay), name)
