"""The CUDA kernels of the grouped spectral norm (``csrc/spectral_norm.cu``, in ``fastgan._C``) behind the launchers
of the Triton ones (``fastgan/kernels/spectral_norm.py``): the same functions with the same arguments."""
from __future__ import annotations

import torch

from .. import _backend
from ._op import DTYPE_CODE, cuda_where


def power_iteration(plan, n_iter: int, eps: float, state: torch.Tensor, dtype: torch.dtype) -> None:
    scratch = torch.empty(plan.scratch_size, dtype=torch.float32, device=state.device)
    _backend.extension().spectral_norm_power_iteration(
        plan.meta.data_ptr(), plan.rows_tiles.data_ptr(), plan.n_rows_tiles, plan.cols_tiles.data_ptr(),
        plan.n_cols_tiles, plan.G, scratch.data_ptr(), state.data_ptr(), n_iter, float(eps), DTYPE_CODE[dtype],
        plan.has_outer, plan.unit_sc, *cuda_where(state.device))


def normalize(eplan, state: torch.Tensor, out: torch.Tensor) -> None:
    _backend.extension().spectral_norm_normalize(eplan.emeta.data_ptr(), eplan.elem_tiles.data_ptr(),
                                                 eplan.n_tiles, state.data_ptr(), out.data_ptr(),
                                                 DTYPE_CODE[out.dtype], *cuda_where(out.device))


def normalize_backward(eplan, grad: torch.Tensor, state: torch.Tensor, dw: torch.Tensor) -> None:
    partials = torch.empty(eplan.n_tiles, dtype=torch.float32, device=dw.device)
    _backend.extension().spectral_norm_normalize_backward(
        eplan.emeta.data_ptr(), eplan.elem_tiles.data_ptr(), eplan.n_tiles, grad.data_ptr(), partials.data_ptr(),
        state.data_ptr(), dw.data_ptr(), DTYPE_CODE[dw.dtype], *cuda_where(dw.device))
