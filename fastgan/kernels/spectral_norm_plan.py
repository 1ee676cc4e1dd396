"""The launch plan of the grouped spectral-norm kernels, shared by the Triton and the CUDA backend.

A group of G weights is described to the kernels by small int64 tables on the device, so that one launch
covers every weight, whatever their number and sizes:

* ``meta`` (G x NF): per weight, in the orientation the power iteration runs in, the pointers of W, of the
  vector it multiplies from the rows side (u) and of the one on the column side (v), the matrix geometry and
  strides, and the offsets of its scratch and snapshot regions;
* ``rows_tiles`` (T1 x 2: weight, first row): work items of the rows pass y = W v, each a band of rows times
  every column;
* ``cols_tiles`` (T2 x 3: weight, first column, row block): work items of the column pass z = W^T y, each
  COLS_TILE columns times a block of rows, writing one partial z per row block;
* ``emeta`` (G x NE) and ``elem_tiles`` (T3 x 2): the same weights seen as flat tensors, for the normalisation
  W/sigma and its backward.

A weight of shape s with spectral-norm dimension d is the matrix W[r, a*Q + k] = w[a, r, k] with P = prod(s[:d]),
h = s[d], Q = prod(s[d+1:]) (this is ``w.movedim(d, 0).flatten(1)`` without a copy). With d = 0, P = 1.

The snapshot ``state`` (float32, or float64 for float64 weights) holds sigma of every weight, then per weight
its u (h values) and v (w values) after the iteration: the copies that the backward uses, like the
``clone()`` PyTorch makes. The flat output of the normalisation holds every normalised weight, each starting at
a multiple of FLAT_ALIGN elements.

Tables depend only on pointers, shapes and strides, so they are built once and cached; a training step
reuses them (parameters keep their storage when the optimizer updates them).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

NF = 16
(W_PTR, U_PTR, V_PTR, R, C, SR, SC, Q, SO, Y_OFF, ZP_OFF, N_RB, ROWS_PER_TILE, ROWS_PER_CTILE, SU_OFF,
 SV_OFF) = range(NF)
NE = 10
(E_W_PTR, E_NUMEL, E_FLAT_OFF, E_H, E_Q, E_SU_OFF, E_SV_OFF, E_TILE0, E_NTILES, E_ALIGNED) = range(NE)

COLS_TILE = 128  # columns per work item of the column pass; the kernels' column block
ELEM_TILE = 8192  # elements per work item of the elementwise kernels
ROW_GRAIN = 8  # row bands are multiples of this
FLAT_ALIGN = 16  # elements: every weight of the flat output starts 64-byte aligned for float32
MIN_TILE_ELEMS, MAX_TILE_ELEMS = 4096, 65536

# Tests set this to a small number so that small matrices still span several tiles.
TILE_ELEMS_OVERRIDE: int | None = None

_CACHE_SIZE = 64
_iter_cache: OrderedDict = OrderedDict()
_elem_cache: OrderedDict = OrderedDict()


def matrix_geometry(shape, dim: int) -> tuple[int, int, int, int]:
    """(P, h, Q, w) of the spectral-norm matrix of a weight of ``shape`` along ``dim`` (w = P*Q)."""
    p = math.prod(shape[:dim])
    q = math.prod(shape[dim + 1:])
    return p, shape[dim], q, p * q


def state_layout(geoms) -> tuple[list[int], list[int], int]:
    """Offsets of each u and v in the snapshot (sigma of all G weights comes first), and its length."""
    su, sv, off = [], [], len(geoms)
    for _, h, _, w in geoms:
        su.append(off)
        sv.append(off + h)
        off += h + w
    return su, sv, off


def flat_layout(numels) -> tuple[list[int], int]:
    offs, off = [], 0
    for n in numels:
        offs.append(off)
        off += -(-n // FLAT_ALIGN) * FLAT_ALIGN
    return offs, off


def split_flat(flat: torch.Tensor, shapes, numels) -> list[torch.Tensor]:
    """Views of each weight in a flat buffer laid out by :func:`flat_layout`.

    One ``split`` (not one slice per weight) so that autograd sends the gradients back as a single flat tensor.
    """
    offs, total = flat_layout(numels)
    sizes = []
    for off, n, nxt in zip(offs, numels, offs[1:] + [total]):
        sizes += [n, nxt - off - n]
    parts = torch.split(flat, sizes)
    return [parts[2 * i].view(shape) for i, shape in enumerate(shapes)]


def _prev_pow2(x: int) -> int:
    return 1 << (max(int(x), 1).bit_length() - 1)


def _tile_elems(device: torch.device, total: int) -> int:
    if TILE_ELEMS_OVERRIDE is not None:
        return TILE_ELEMS_OVERRIDE
    if device.type != "cuda":
        return MIN_TILE_ELEMS
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    # about four work items per SM, so that weights of very different sizes still balance
    return min(max(_prev_pow2(total // (4 * sms)), MIN_TILE_ELEMS), MAX_TILE_ELEMS)


def _cache_get(cache, key):
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
    return hit


def _cache_put(cache, key, value):
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


@dataclass
class IterPlan:
    """Tables of the power iteration for one group and orientation."""

    meta: torch.Tensor
    rows_tiles: torch.Tensor
    cols_tiles: torch.Tensor
    n_rows_tiles: int
    n_cols_tiles: int
    scratch_size: int
    has_outer: bool
    unit_sc: bool
    G: int


@dataclass
class ElemPlan:
    """Tables of the normalisation and its backward for one group."""

    emeta: torch.Tensor
    elem_tiles: torch.Tensor
    n_tiles: int
    flat_size: int


def iter_plan(weights, us, vs, geoms, u_first: bool, cacheable: bool = True) -> IterPlan:
    """Tables for the power iteration; ``weights`` must be contiguous (or, transposed, plain 2-D)."""
    device = weights[0].device
    key = (device, u_first, tuple((w.data_ptr(), u.data_ptr(), v.data_ptr(), tuple(w.shape))
                                  for w, u, v in zip(weights, us, vs)), geoms)
    if cacheable:
        hit = _cache_get(_iter_cache, key)
        if hit is not None:
            return hit
    su, sv, _ = state_layout(geoms)
    total = sum(g[1] * g[3] for g in geoms)
    tile_elems = _tile_elems(device, total)
    rows_ctile = max(ROW_GRAIN, (tile_elems // COLS_TILE) // ROW_GRAIN * ROW_GRAIN)
    meta, rows_tiles, cols_tiles = [], [], []
    y_off = zp_off = 0
    has_outer, unit_sc = False, True
    for g, (w, u, v, (p, h, q, wc)) in enumerate(zip(weights, us, vs, geoms)):
        if u_first:
            rows, cols, sr, sc, qq, so = h, wc, q, 1, q, h * q
            up, vp, s_u, s_v = u.data_ptr(), v.data_ptr(), su[g], sv[g]
            has_outer |= p > 1
        else:  # v first on W is u first on W^T (u and v swapped); W is a contiguous (h, w) matrix here
            assert p == 1
            rows, cols, sr, sc, qq, so = wc, h, 1, wc, h, 0
            up, vp, s_u, s_v = v.data_ptr(), u.data_ptr(), sv[g], su[g]
        unit_sc &= sc == 1
        rpt = min(max(ROW_GRAIN, _prev_pow2(tile_elems // cols) // ROW_GRAIN * ROW_GRAIN),
                  -(-rows // ROW_GRAIN) * ROW_GRAIN)
        n_rb = -(-rows // rows_ctile)
        meta.append([w.data_ptr(), up, vp, rows, cols, sr, sc, qq, so, y_off, zp_off, n_rb, rpt, rows_ctile,
                     s_u, s_v])
        rows_tiles += [(g, r0) for r0 in range(0, rows, rpt)]
        cols_tiles += [(g, c0, rb) for rb in range(n_rb) for c0 in range(0, cols, COLS_TILE)]
        y_off += rows
        zp_off += n_rb * cols
    # The column pass runs backwards through the weights (and row blocks), so that it starts on what the rows
    # pass read last, which L2 may still hold; the normalisation then starts where the column pass ended.
    cols_tiles.reverse()
    # scratch = [y of every weight | partial z of every weight], both float32
    for m in meta:
        m[ZP_OFF] += y_off
    plan = IterPlan(
        meta=torch.tensor(meta, dtype=torch.int64).to(device),
        rows_tiles=torch.tensor(rows_tiles, dtype=torch.int64).to(device),
        cols_tiles=torch.tensor(cols_tiles, dtype=torch.int64).to(device),
        n_rows_tiles=len(rows_tiles), n_cols_tiles=len(cols_tiles), scratch_size=y_off + zp_off,
        has_outer=has_outer, unit_sc=unit_sc, G=len(weights))
    if cacheable:
        _cache_put(_iter_cache, key, plan)
    return plan


def elem_plan(weights, geoms, cacheable: bool = True) -> ElemPlan:
    """Tables for the normalisation and its backward; ``weights`` must be contiguous."""
    device = weights[0].device
    key = (device, tuple((w.data_ptr(), tuple(w.shape)) for w in weights), geoms)
    if cacheable:
        hit = _cache_get(_elem_cache, key)
        if hit is not None:
            return hit
    su, sv, _ = state_layout(geoms)
    numels = [w.numel() for w in weights]
    flat_offs, flat_size = flat_layout(numels)
    emeta, tiles = [], []
    for g, (w, n, (p, h, q, wc)) in enumerate(zip(weights, numels, geoms)):
        n_tiles = -(-n // ELEM_TILE)
        aligned = int(w.data_ptr() % 16 == 0)
        emeta.append([w.data_ptr(), n, flat_offs[g], h, q, su[g], sv[g], len(tiles), n_tiles, aligned])
        tiles += [(g, s) for s in range(0, n, ELEM_TILE)]
    plan = ElemPlan(emeta=torch.tensor(emeta, dtype=torch.int64).to(device),
                    elem_tiles=torch.tensor(tiles, dtype=torch.int64).to(device), n_tiles=len(tiles),
                    flat_size=flat_size)
    if cacheable:
        _cache_put(_elem_cache, key, plan)
    return plan


def clear_cache() -> None:
    _iter_cache.clear()
    _elem_cache.clear()
