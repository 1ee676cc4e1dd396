"""The launch plan of the grouped spectral-norm kernels, shared by the Triton and the CUDA backend.

A group of G weights is described to the kernels by small int64 tables on the device, so that one launch
covers every weight, whatever their number and sizes:

* ``meta`` (G x NF): per weight, in the orientation the power iteration runs in, the pointers of W, of the
  vector it multiplies from the rows side (u) and of the one on the column side (v), the matrix geometry and
  strides, and the offsets of its scratch and snapshot regions;
* ``rows_tiles`` (T1 x 2: weight, first row): work items of the rows pass y = W v, each a band of rows times
  every column;
* ``cols_tiles`` (T2 x 3: weight, first column, row block): work items of the column pass z = W^T y, each
  COLS_TILE columns times a block of rows, writing one partial z per row block, computed with the block's y
  scaled by its largest |y| (written after the partials), so that W^T y cannot overflow where W^T u does not;
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
_cache: OrderedDict = OrderedDict()


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


def iter_plan(weights, us, vs, geoms, u_first: bool) -> IterPlan:
    """Tables for the power iteration; ``weights`` must be contiguous (or, transposed, plain 2-D)."""
    device = weights[0].device
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
        rpt = min(max(ROW_GRAIN, _prev_pow2(tile_elems // max(cols, 1)) // ROW_GRAIN * ROW_GRAIN),
                  -(-max(rows, 1) // ROW_GRAIN) * ROW_GRAIN)
        n_rb = max(-(-rows // rows_ctile), 1)  # a weight without rows still gets its (zero) partial z
        meta.append([w.data_ptr(), up, vp, rows, cols, sr, sc, qq, so, y_off, zp_off, n_rb, rpt, rows_ctile,
                     s_u, s_v])
        rows_tiles += [(g, r0) for r0 in range(0, rows, rpt)]
        cols_tiles += [(g, c0, rb) for rb in range(n_rb) for c0 in range(0, cols, COLS_TILE)]
        y_off += rows
        zp_off += n_rb * cols + n_rb  # the partial z of each row block, then each block's scale of y
    # The column pass runs backwards through the weights (and row blocks), so that it starts on what the rows
    # pass read last, which L2 may still hold; the normalisation then starts where the column pass ended.
    cols_tiles.reverse()
    # scratch = [y of every weight | per weight: partial z of each row block, the row blocks' scales], float32
    for m in meta:
        m[ZP_OFF] += y_off
    return IterPlan(
        meta=torch.tensor(meta, dtype=torch.int64).to(device),
        rows_tiles=torch.tensor(rows_tiles, dtype=torch.int64).to(device),
        cols_tiles=torch.tensor(cols_tiles, dtype=torch.int64).to(device),
        n_rows_tiles=len(rows_tiles), n_cols_tiles=len(cols_tiles), scratch_size=y_off + zp_off,
        has_outer=has_outer, unit_sc=unit_sc, G=len(weights))


def elem_plan(weights, geoms) -> ElemPlan:
    """Tables for the normalisation and its backward; ``weights`` must be contiguous."""
    device = weights[0].device
    su, sv, _ = state_layout(geoms)
    numels = [w.numel() for w in weights]
    if max(numels, default=0) >= 2**31:  # the backward kernels index within a weight in 32 bits
        raise ValueError(f"spectral norm: a weight of {max(numels)} elements is beyond the kernels' 2^31 limit; "
                         "use backend='torch'")
    flat_offs, flat_size = flat_layout(numels)
    emeta, tiles = [], []
    for g, (w, n, (_, h, q, _)) in enumerate(zip(weights, numels, geoms)):
        n_tiles = -(-n // ELEM_TILE)
        aligned = int(w.data_ptr() % 16 == 0)
        emeta.append([w.data_ptr(), n, flat_offs[g], h, q, su[g], sv[g], len(tiles), n_tiles, aligned])
        tiles += [(g, s) for s in range(0, n, ELEM_TILE)]
    return ElemPlan(emeta=torch.tensor(emeta, dtype=torch.int64).to(device),
                    elem_tiles=torch.tensor(tiles, dtype=torch.int64).to(device), n_tiles=len(tiles),
                    flat_size=flat_size)


class GroupLayout:
    """Everything derived from a group's shapes and addresses: geometry, snapshot and flat layouts, and the
    kernel tables (built on first use). Cached by :func:`group_layout`.

    Geometry and layouts depend on the weights only; the power-iteration tables also hold the addresses of the u
    and v they were first built with (``iteration``), which is why the cache (and ``prepare``'s signature) keys
    on the vectors too: a layout is never used with other vectors than its own."""

    def __init__(self, weights, dims):
        self.dims = list(dims)
        self.shapes = [w.shape for w in weights]
        self._shape_tuples = [tuple(shape) for shape in self.shapes]
        self.numels = [w.numel() for w in weights]
        self.geoms = tuple(matrix_geometry(tuple(s), d) for s, d in zip(self.shapes, self.dims))
        self.state_size = state_layout(self.geoms)[2]
        self.flat_offsets, self.flat_size = flat_layout(self.numels)
        offs = self.flat_offsets
        self._split_sizes, self._split_index = [], []
        for off, n, nxt in zip(offs, self.numels, offs[1:] + [self.flat_size]):
            self._split_index.append(len(self._split_sizes))
            self._split_sizes.append(n)
            if nxt - off > n:  # a padding piece, only where there is padding (rare for real weights)
                self._split_sizes.append(nxt - off - n)
        self.contiguous = all(w.is_contiguous() for w in weights)
        self._iter: dict[bool, tuple] = {}
        self._elem: ElemPlan | None = None

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of every weight in a flat buffer; one split, so autograd returns one flat gradient."""
        parts = flat.split_with_sizes(self._split_sizes)
        # view(*ints) parses its arguments about twice as fast as view(torch.Size): this runs every forward
        return [parts[i].view(*shape) for i, shape in zip(self._split_index, self._shape_tuples)]

    def iteration(self, weights, us, vs, u_first: bool):
        """(plan, weights the kernels read): contiguous weights, plain 2-D matrices for the transposed order.

        Copies are made only for unusual layouts; their tables are rebuilt every call (new addresses).
        """
        hit = self._iter.get(u_first)
        if hit is not None:
            return hit
        kw, kgeoms, copied = [], [], False
        for w, d, geom in zip(weights, self.dims, self.geoms):
            p, h, q, wc = geom
            if not u_first and p != 1:  # (p = 0 for an empty weight along dim > 0)
                m = w if d == 0 else w.movedim(d, 0)
                w, geom, copied = m.reshape(h, wc).contiguous(), (1, h, wc, wc), True
            elif not w.is_contiguous():
                w, copied = w.contiguous(), True
            kw.append(w)
            kgeoms.append(geom)
        result = (iter_plan(kw, us, vs, tuple(kgeoms), u_first), kw)
        if not copied:
            self._iter[u_first] = result
        return result

    def elementwise(self, weights):
        """(plan, contiguous weights) of the normalisation and its backward."""
        if self._elem is not None:
            return self._elem, weights
        kw = weights if self.contiguous else [w.contiguous() for w in weights]
        plan = elem_plan(kw, self.geoms)
        if self.contiguous:
            self._elem = plan
        return plan, kw


def _addresses(tensors):
    return [t.data_ptr() for t in tensors]


def group_layout(weights, us, vs, dims) -> GroupLayout:
    """The cached layout of a group (``us``/``vs`` may be None when only the normalisation is needed).

    Keyed by the tensors' identities, dtypes and device, and checked against their current addresses, shapes and
    strides, so a parameter moved, re-assigned (``.data``, ``.to()``) or restrided in place (``t_()``) gets a new
    layout. Holds no reference to the tensors.
    """
    us, vs = us or [], vs or []
    key = (tuple(map(id, weights)), tuple(map(id, us)), tuple(map(id, vs)), tuple(dims), weights[0].dtype,
           weights[0].device, tuple(t.dtype for t in us + vs))
    check = (_addresses(weights), [w.shape for w in weights], [w.stride() for w in weights], _addresses(us),
             _addresses(vs))
    hit = _cache.get(key)
    if hit is not None and hit[0] == check:
        _cache.move_to_end(key)
        return hit[1]
    layout = GroupLayout(weights, dims)
    _cache[key] = (check, layout)
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return layout


def clear_cache() -> None:
    _cache.clear()
