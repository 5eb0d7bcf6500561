"""Euclidean distances by blocked GEMM: the one kernel that ``cluster``, ``assign`` and any other
clustering share.

Rows are flattened heatmaps (or any feature vectors), read block by block from an array or a
``.npy`` memmap and mapped by an optional affine ``scale`` (``(x - offset) * factor``: the per-layer
min-max normalisation), so memory stays bounded by the block size whatever the number of rows.

``d(a, b)^2 = |a|^2 + |b|^2 - 2 a.b`` is accumulated in float64 and clamped at 0; pairs whose
``d^2`` is tiny next to their norms (near-duplicates, which Ward merges first and where the GEMM
form cancels) are recomputed exactly, so the relative error stays near 1e-9 everywhere. On the
CPU the GEMM runs in numpy (OpenBLAS), on CUDA in torch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

__all__ = ["euclidean_distances", "distance_blocks", "row_blocks", "minmax_scale"]

_BLOCK_BYTES = 256 << 20  # float64 bytes per block of rows
_WHOLE_BYTES = 1 << 30  # rows that fit in this as float64 are multiplied in one symmetric product
_RECOMPUTE = 1e-6  # relative d^2 below which a pair is recomputed exactly
_RECOMPUTE_CHUNK = 256  # pairs recomputed at once (bounds the memory of a = b cases)


def row_blocks(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in steps of ``size``."""
    return [(start, min(n, start + size)) for start in range(0, n, max(1, size))]


def minmax_scale(x: np.ndarray, *, block_rows: int | None = None) -> tuple[float, float]:
    """``(offset, factor)`` mapping the global min of ``x`` to 0 and its max to 1; a constant array maps to 0.

    Raises ValueError naming the first row with a NaN or Inf.
    """
    lo, hi = np.inf, -np.inf
    for start, stop in row_blocks(len(x), block_rows or _rows_per_block(x)):
        block = np.asarray(x[start:stop], dtype=np.float64).reshape(stop - start, -1)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise ValueError(f"row {start + int(np.flatnonzero(~finite)[0])} has a NaN or infinite value")
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if not np.isfinite(lo):
        return 0.0, 1.0
    return lo, (1.0 / (hi - lo) if hi > lo else 0.0)


def _rows_per_block(x) -> int:
    """Rows per block, bounded by memory."""
    width = int(np.prod(x.shape[1:])) if len(x.shape) > 1 else 1
    return max(16, _BLOCK_BYTES // (8 * max(1, width)))


def _load(x, start: int, stop: int, scale, device: torch.device):
    block = np.asarray(x[start:stop], dtype=np.float64).reshape(stop - start, -1)
    if scale is not None:
        block = (block - scale[0]) * scale[1]
    return torch.from_numpy(block).to(device) if device.type == "cuda" else block


def _gemm_distances(a, b, sq_a, sq_b, out=None):
    """Distances between the rows of two float64 blocks (numpy or torch), clamped at 0.

    Where ``d^2`` is below ``_RECOMPUTE`` times ``|a|^2 + |b|^2`` the GEMM form has cancelled most
    of its digits (near-duplicates): those pairs are recomputed as ``sum((a - b)^2)``.
    """
    d2 = torch.mm(a, b.T) if isinstance(a, torch.Tensor) else np.matmul(a, b.T, out=out)
    d2 *= -2.0
    d2 += sq_a[:, None]
    d2 += sq_b[None, :]
    close = d2 < (_RECOMPUTE * (sq_a + sq_b.max()))[:, None]  # a superset of d^2 < eps * (|a|^2 + |b|^2)
    rows, cols = close.nonzero(as_tuple=True) if isinstance(close, torch.Tensor) else close.nonzero()
    for start in range(0, len(rows), _RECOMPUTE_CHUNK):
        r, c = rows[start:start + _RECOMPUTE_CHUNK], cols[start:start + _RECOMPUTE_CHUNK]
        diff = a[r] - b[c]
        d2[r, c] = (diff * diff).sum(1)
    if isinstance(d2, torch.Tensor):
        return d2.clamp_(min=0.0).sqrt_().cpu().numpy()
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def _sq_norms(block):
    return (block * block).sum(1)


def distance_blocks(a, b, *, scale_a=None, scale_b=None, device: torch.device | str = "cpu", block_rows: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, distances)``: rows ``start:stop`` of ``a`` against every row of ``b``.

    ``distances`` is float64 ``(stop - start, len(b))``. ``a`` and ``b`` are arrays or memmaps of
    shape ``(n, ...)`` (flattened per row); ``scale_*`` are ``(offset, factor)`` applied on the fly.
    """
    device = torch.device(device)
    size = block_rows or _rows_per_block(a)
    b_blocks = row_blocks(len(b), size)
    for start, stop in row_blocks(len(a), size):
        block_a = _load(a, start, stop, scale_a, device)
        sq_a = _sq_norms(block_a)
        parts = []
        for b0, b1 in b_blocks:
            block_b = _load(b, b0, b1, scale_b, device)
            parts.append(_gemm_distances(block_a, block_b, sq_a, _sq_norms(block_b)))
        yield start, stop, np.concatenate(parts, axis=1) if parts else np.zeros((stop - start, 0))


def _mirror_upper(out: np.ndarray, tile: int = 1024) -> None:
    """Copy the strict upper triangle of a square matrix onto the lower one, tile by tile, and zero the diagonal."""
    n = len(out)
    for i0, i1 in row_blocks(n, tile):
        diagonal = out[i0:i1, i0:i1]
        lower = np.tril_indices(i1 - i0, -1)
        diagonal[lower] = diagonal.T[lower]
        for j0, j1 in row_blocks(i0, tile):
            out[i0:i1, j0:j1] = out[j0:j1, i0:i1].T
    np.fill_diagonal(out, 0.0)


def euclidean_distances(x, *, scale=None, device: torch.device | str = "cpu", block_rows: int | None = None) -> np.ndarray:
    """The full ``(n, n)`` float64 distance matrix of the rows of ``x``: exactly symmetric, zero diagonal.

    When the rows fit in 1 GiB as float64 (and no ``block_rows`` is forced) the CPU path is one
    ``x @ x.T``, which BLAS computes as a symmetric rank-k update (half the work of a GEMM);
    otherwise blocks on and above the diagonal are computed and mirrored. Either way the lower
    triangle is the exact mirror of the upper one.
    """
    device = torch.device(device)
    n = len(x)
    out = np.empty((n, n), dtype=np.float64)
    width = int(np.prod(x.shape[1:])) if len(x.shape) > 1 else 1
    if device.type == "cpu" and block_rows is None and n * width * 8 <= _WHOLE_BYTES:
        whole = _load(x, 0, n, scale, device)
        sq = _sq_norms(whole)
        _gemm_distances(whole, whole, sq, sq, out=out)
    else:
        blocks = row_blocks(n, block_rows or _rows_per_block(x))
        for i, (i0, i1) in enumerate(blocks):
            block_i = _load(x, i0, i1, scale, device)
            sq_i = _sq_norms(block_i)
            for j0, j1 in blocks[i:]:
                block_j = block_i if j0 == i0 else _load(x, j0, j1, scale, device)
                out[i0:i1, j0:j1] = _gemm_distances(block_i, block_j, sq_i, sq_i if j0 == i0 else _sq_norms(block_j))
    _mirror_upper(out)
    return out
