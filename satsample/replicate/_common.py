"""What every replicate scheme shares: the PSU layout, checks and the exact column compaction."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import SatsampleError, SatsampleWarning

__all__ = ["Layout", "design_layout", "layout_from_codes"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Layout:
    """Rows grouped by stage-1 stratum, and each row's PSU rank in its stratum."""

    order: np.ndarray  # (n,) rows sorted by stratum
    psu_local: np.ndarray  # (n,) rank of the row's PSU within its stratum
    psu_index: np.ndarray  # (n,) PSU index 0..P-1, PSUs sorted by (stratum, code)
    strat_start: np.ndarray  # (H + 1,)
    strat_code: np.ndarray  # (H,) stratum code (the stream key component)
    strat_npsu: np.ndarray  # (H,)
    psu_stratum: np.ndarray  # (P,) stratum position 0..H-1 of each PSU


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def design_layout(design: Any, *, single_stratum: bool = False) -> Layout:
    """The layout of a design (cached per sample: derived designs share their stage-1 Stage)."""
    key = (single_stratum,)
    cached = _LAYOUTS.get(design.stages[0])
    if cached is not None and key in cached:
        return cached[key]
    n = design.n
    strata = np.zeros(n, dtype=np.int64) if single_stratum else np.asarray(design.strata, np.int64)
    out = layout_from_codes(strata, np.asarray(design.psu, dtype=np.int64))
    _LAYOUTS.setdefault(design.stages[0], {})[key] = out
    return out


def layout_from_codes(strata: np.ndarray, psu: np.ndarray) -> Layout:
    """Rows grouped by stratum (stable) and PSUs ranked by ``(stratum, psu code)``.

    The one construction of the kernel layout: used for a whole design by
    :func:`design_layout` and for the strata of one Dask partition by
    :mod:`satsample.distributed`, so that every PSU gets the same rank, hence
    the same Rao-Wu counts, wherever it is computed.
    """
    n = strata.size
    if n > 1 and np.all(strata[1:] >= strata[:-1]):
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.argsort(strata, kind="stable").astype(np.int64)
    upsu, first, inv = np.unique(psu, return_index=True, return_inverse=True)
    ustrat = strata[first]
    o = np.lexsort((upsu, ustrat))  # PSUs sorted by (stratum, code)
    rank = np.empty(o.size, dtype=np.int64)
    rank[o] = np.arange(o.size)
    psu_index = rank[inv.reshape(-1)]
    s_sorted = ustrat[o]
    codes, npsu = np.unique(s_sorted, return_counts=True)
    first_psu = np.r_[0, np.cumsum(npsu)[:-1]]
    pos_of_code = np.full(int(strata.max()) + 1, -1, dtype=np.int64)
    pos_of_code[codes] = np.arange(codes.size)
    psu_stratum = pos_of_code[s_sorted]
    psu_local = psu_index - first_psu[psu_stratum[psu_index]]
    rows_per = np.bincount(pos_of_code[strata], minlength=codes.size)
    return Layout(
        order=order,
        psu_local=psu_local.astype(np.int64),
        psu_index=psu_index.astype(np.int64),
        strat_start=np.r_[0, np.cumsum(rows_per)].astype(np.int64),
        strat_code=codes.astype(np.int64),
        strat_npsu=npsu.astype(np.int64),
        psu_stratum=psu_stratum.astype(np.int64),
    )


def as_values(values: np.ndarray, n: int) -> np.ndarray:
    """Values as a C-contiguous (n, k) array of a kernel dtype (bool -> uint8)."""
    v = np.asarray(values)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] != n:
        raise SatsampleError(f"values have shape {v.shape}; expected ({n}, k)")
    if v.dtype == np.bool_:
        v = v.view(np.uint8)
    elif v.dtype.kind not in "uif" or v.dtype.itemsize > 8:
        v = v.astype(np.float64)
    return np.ascontiguousarray(v)


def compact(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop duplicate columns and store small non-negative integers as uint8.

    Returns the compact values and, for every original column, the index of
    its compact column.  Exact: a column is merged only when it is equal
    element by element, and the uint8 cast only happens when it is lossless.
    The kernels then read ~8x fewer bytes per row (e.g. 44 float64 columns of
    0/1 numerators and denominators, half of them identical).  One pass of a
    Numba kernel over ``v`` gives every column's signature and range.
    """
    from .._kernels.totals import _column_summary, _columns_equal, _take_columns_uint8

    k = v.shape[1]
    if v.shape[0] == 0:
        return v, np.arange(k)
    sig, lo, hi, frac = _column_summary(v)
    first: dict[float, int] = {}
    cand = np.array([first.setdefault(float(sig[j]), j) for j in range(k)], dtype=np.int64)
    pairs = np.flatnonzero(cand != np.arange(k))
    eq = np.zeros(k, dtype=bool)
    eq[pairs] = _columns_equal(v, cand[pairs], pairs)
    keep: list[int] = []
    where = np.empty(k, dtype=np.int64)
    for j in range(k):
        if eq[j]:  # equal to the first column with its signature (already kept)
            where[j] = where[cand[j]]
            continue
        for pos, i in enumerate(keep):  # signature collisions (NaN never equal): exact check
            if i != cand[j] and sig[i] == sig[j] and _columns_equal(
                    v, np.array([i]), np.array([j]))[0]:
                where[j] = pos
                break
        else:
            where[j] = len(keep)
            keep.append(j)
    kept = np.asarray(keep, dtype=np.int64)
    small = bool(np.all(lo[kept] >= 0) and np.all(hi[kept] <= 255) and not frac[kept].any())
    if v.dtype == np.uint8 or small:
        out = v if (kept.size == k and v.dtype == np.uint8) else _take_columns_uint8(v, kept)
    else:
        out = v[:, kept] if kept.size < k else v
    return np.ascontiguousarray(out), where


def expand(out: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Columns of the compact totals back in the caller's order (see :func:`compact`)."""
    if where.size == out.shape[2] and bool((where == np.arange(where.size)).all()):
        return out
    return out[:, :, where]


def task_block(n_rep: int, target: int = 48) -> int:
    """Replicates per kernel task: about ``target``, with a multiple of the thread count of tasks.

    The block size changes only how work is shared between threads: every
    replicate's totals are computed by the same operations in the same order.
    """
    import numba

    t = max(1, int(numba.get_num_threads()))
    tasks = t * max(1, -(-n_rep // (t * target)))
    block = -(-n_rep // tasks)
    return max(1, -(-block // 4) * 4)


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def psu_structure(design: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PSU code -> stratum code, PSUs per stratum code, stage-1 population per stratum code."""
    psu, strata = design.psu, design.strata
    n_psu = int(psu.max()) + 1
    psu_stratum = np.empty(n_psu, dtype=np.int64)
    psu_stratum[psu] = strata
    n_h = np.bincount(psu_stratum, minlength=design.n_strata).astype(np.float64)
    stage = design.stages[0]
    pop = np.full(design.n_strata, np.inf)
    if stage.popsize is not None:
        pop[strata] = stage.popsize
    return psu_stratum, n_h, pop


def warn_if_weighted(design: Any) -> None:
    if len(design.history) > 1:
        warnings.warn(
            f"replicates created after {len(design.history) - 1} weighting step(s) "
            f"({', '.join(s.method for s in design.history[1:])}): those steps are not replayed "
            "on the replicates, so the replicate SEs ignore them; create replicates first",
            SatsampleWarning,
            stacklevel=3,
        )


def matrix_rank(m: np.ndarray) -> int:
    """Rank of a replicate multiplier matrix (R's ``qr(.., tol = 1e-5)$rank``).

    The number of singular values above ``1e-5`` times the largest: from the
    SVD, or for a wide matrix (more than 4 columns per row) by
    :func:`wide_rank` (a shortcut on ``2 R`` columns, else the Gram matrix).
    """
    if m.size == 0:
        return 0
    n_rows, n_cols = m.shape
    if n_cols > 4 * n_rows:
        return wide_rank(lambda: iter((m,)), n_rows, n_cols)
    s = np.linalg.svd(m, compute_uv=False)
    return int(np.sum(s > s.max() * 1e-5))


def wide_rank(blocks: Callable[[], Iterable[np.ndarray]], n_rows: int, n_cols: int) -> int:
    """:func:`matrix_rank` of a wide (R x P) matrix given as blocks of its columns.

    ``blocks()`` yields the column blocks in order (R x P_b each, P_b summing
    to P); it is called once, or twice when the shortcut does not decide, so
    the matrix need never be held whole (the Rao-Wu multipliers of a Dask
    design are generated a block of strata at a time).  The shortcut: the
    matrix is first tried on ``2 R`` of its columns, evenly spread: if the
    smallest singular value of that submatrix is above ``1e-5`` times the
    Frobenius norm of the whole matrix, the rank is R.  This is exact, not an
    approximation: adding columns never lowers a singular value (interlacing),
    and the largest singular value is at most the Frobenius norm.  It costs
    the (R x 2R) Gram product instead of the (R x P) one.  Otherwise the
    eigenvalues of the Gram matrix, summed over the blocks, above ``1e-10``
    times the largest.
    """
    pick = np.linspace(0, n_cols - 1, 2 * n_rows).astype(np.int64)
    subs, sq, start = [], 0.0, 0
    for b in blocks():
        flat = np.ascontiguousarray(b).ravel()
        sq += float(np.dot(flat, flat))
        mine = pick[(pick >= start) & (pick < start + b.shape[1])]
        subs.append(b[:, mine - start])
        start += b.shape[1]
    sub = np.hstack(subs)
    ev_sub = np.linalg.eigvalsh(sub @ sub.T)  # squared singular values of the submatrix
    if ev_sub.min() > (1e-5 * float(np.sqrt(sq))) ** 2:
        return n_rows
    gram = np.zeros((n_rows, n_rows))
    for b in blocks():
        gram += b @ b.T
    return gram_rank(gram)


def gram_rank(gram: np.ndarray) -> int:
    """Rank of a wide matrix ``m`` from its Gram matrix ``m @ m.T`` (eigenvalues above 1e-10 of the largest)."""
    ev = np.linalg.eigvalsh(gram)
    return int(np.sum(ev > ev.max() * 1e-10))
