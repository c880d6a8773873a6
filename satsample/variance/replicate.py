"""Weighted totals under every replicate, by domain: the replicate hot path.

``replicate_totals`` is what every replicate-variance estimator calls.  It
dispatches on the design's replicates:

* materialised weights ``(R, n)`` -> one-pass Numba kernel
  (:func:`satsample._kernels.totals._dense_replicate_totals`);
* lazy Rao-Wu bootstrap (``kind="subbootstrap"``, ``weights=None``, built by
  :func:`lazy_raowu_replicates`) -> counts drawn on the fly from a
  counter-based stream, never storing ``n x R``
  (:func:`satsample._kernels.bootstrap._raowu_totals`);
* lazy jackknife (``kind="JKn"``/``"JK1"``, ``weights=None``, built by
  :func:`lazy_jackknife_replicates`) -> closed form from PSU totals.
* lazy replicates with weighting steps (``weights=None``,
  ``replicates.steps`` non-empty) -> replicate weights generated in blocks of
  50 replicates from the declared design weights, every step replayed on the
  block, then the materialised-weights kernel on the block (memory
  O(50 x n)).

:func:`replicate_ratio_variance` goes one step further for linear
combinations of ratios (item proportions, satisfaction indices): the
jackknife variance is accumulated in closed form, in O(n) memory even with
one replicate per response.

``replicate_totals_numpy`` is the plain-numpy twin used in tests.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._random import RNGLike, stream_key
from .._validation import DesignError, SatsampleError, check_choice, check_positive_int
from ..design import ReplicateWeights, SurveyDesign

__all__ = [
    "iter_replicate_weight_blocks",
    "lazy_jackknife_replicates",
    "lazy_raowu_replicates",
    "replicate_ratio_variance",
    "replicate_totals",
    "replicate_totals_numpy",
]

_BLOCK = 50  # replicates per kernel task
_CHUNK = 4096  # rows per cache chunk (materialised weights)
_STEP_BLOCK = 50  # replicates per block when weighting steps are replayed (fixed)


def replicate_totals_numpy(
    rep_weights: np.ndarray, values: np.ndarray, domain: np.ndarray, n_domains: int
) -> np.ndarray:
    """Plain numpy: ``out[r, g, j] = sum_i W[r, i] * values[i, j] * 1{domain_i = g}``.

    Parameters
    ----------
    rep_weights : ndarray of shape (R, n)
    values : ndarray of shape (n, k)
    domain : ndarray of int64 of shape (n,)
        Domain codes in ``0..n_domains-1``; ``-1`` excludes the row.
    n_domains : int

    Returns
    -------
    ndarray of shape (R, n_domains, k)
    """
    keep = domain >= 0
    order = np.argsort(domain[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    g_sorted = domain[rows]
    out = np.zeros((rep_weights.shape[0], n_domains, values.shape[1]))
    if rows.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    present = g_sorted[starts]
    v = values[rows]
    for r in range(rep_weights.shape[0]):
        out[r, present] = np.add.reduceat(rep_weights[r, rows][:, None] * v, starts, axis=0)
    return out


# ---------------------------------------------------------------- layout
@dataclass(frozen=True, kw_only=True, eq=False)
class _Layout:
    """Rows grouped by stage-1 stratum, and each row's PSU rank in its stratum."""

    order: np.ndarray  # (n,) rows sorted by stratum
    psu_local: np.ndarray  # (n,) rank of the row's PSU within its stratum
    psu_index: np.ndarray  # (n,) PSU index 0..P-1, PSUs sorted by (stratum, code)
    strat_start: np.ndarray  # (H + 1,)
    strat_code: np.ndarray  # (H,) stratum code (the stream key component)
    strat_npsu: np.ndarray  # (H,)
    psu_stratum: np.ndarray  # (P,) stratum position 0..H-1 of each PSU


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(design: SurveyDesign, *, single_stratum: bool = False) -> _Layout:
    # keyed by the stage-1 Stage object, which designs derived by weighting or
    # with_replicates share: the layout is computed once per sample
    key = (single_stratum,)
    cached = _LAYOUTS.get(design.stages[0])
    if cached is not None and key in cached:
        return cached[key]
    n = design.n
    strata = np.zeros(n, dtype=np.int64) if single_stratum else np.asarray(design.strata, np.int64)
    out = layout_from_codes(strata, np.asarray(design.psu, dtype=np.int64))
    _LAYOUTS.setdefault(design.stages[0], {})[key] = out
    return out


def layout_from_codes(strata: np.ndarray, psu: np.ndarray) -> _Layout:
    """Rows grouped by stratum (stable) and PSUs ranked by ``(stratum, psu code)``.

    The one construction of the kernel layout: used for a whole design by
    :func:`_layout` and for the strata of one Dask partition by
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
    return _Layout(
        order=order,
        psu_local=psu_local.astype(np.int64),
        psu_index=psu_index.astype(np.int64),
        strat_start=np.r_[0, np.cumsum(rows_per)].astype(np.int64),
        strat_code=codes.astype(np.int64),
        strat_npsu=npsu.astype(np.int64),
        psu_stratum=psu_stratum.astype(np.int64),
    )


def _as_values(values: np.ndarray, n: int) -> np.ndarray:
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


def _compact(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _as_domain(design: SurveyDesign, domain: np.ndarray | None, n_domains: int) -> tuple[np.ndarray, int]:
    if domain is None:
        return np.zeros(design.n, dtype=np.int64), 1
    d = np.ascontiguousarray(domain, dtype=np.int64)
    if d.shape != (design.n,):
        raise SatsampleError(f"domain has shape {d.shape}; expected ({design.n},)")
    if d.size and (d.max() >= n_domains or d.min() < -1):
        raise SatsampleError(f"domain codes must lie in -1..{n_domains - 1} (n_domains={n_domains})")
    return d, int(n_domains)


# ------------------------------------------------------- lazy replicates
def lazy_raowu_replicates(
    design: SurveyDesign,
    *,
    replicates: int = 500,
    rng: RNGLike = None,
    mse: bool = False,
) -> ReplicateWeights:
    """Rao-Wu rescaling bootstrap replicates generated on the fly (never stored).

    Parameters
    ----------
    design : SurveyDesign
    replicates : int, default=500
        Number of replicates ``R``.
    rng : int, Generator or SeedSequence, optional
        Source of the 64-bit key of the counter-based stream.
    mse : bool, default=False
        Centre the variance at the full-sample estimate.

    Returns
    -------
    ReplicateWeights
        ``kind="subbootstrap"``, ``weights=None``, ``seed`` = stream key,
        ``scale = 1/(R-1)``, ``rscales`` ones, ``degf = R - 1``.  Attach it with
        ``design.with_replicates(...)``.

    Raises
    ------
    DesignError
        A stratum has a single PSU and the design's ``lonely_psu`` is not
        ``"remove"`` or ``"certainty"`` (R gives NaN weights there).

    Notes
    -----
    In replicate *r* and stratum *h* with :math:`n_h` PSUs, :math:`n_h - 1`
    PSUs are drawn with replacement; PSU *i*, drawn :math:`c_{hri}` times,
    gets the multiplier :math:`m_{hri} = c_{hri} \\, n_h / (n_h - 1)` (R's
    ``subbootstrap``).  Replicate weights are the analysis weights times the
    multipliers.  The counts are a pure function of (key, stratum code,
    replicate, draw), see :mod:`satsample._kernels._rng`; a stratum with one
    PSU keeps multiplier 1 (it contributes no variance).
    """
    replicates = check_positive_int(replicates, name="replicates")
    if replicates < 2:
        raise SatsampleError(f"replicates={replicates}: need at least 2")
    lay = _layout(design)
    check_raowu_strata(lay.strat_npsu, lambda h: design.strata_labels[lay.strat_code[h]],
                       design.lonely_psu)
    return ReplicateWeights(
        kind="subbootstrap",
        weights=None,
        scale=1.0 / (replicates - 1),
        rscales=np.ones(replicates),
        mse=bool(mse),
        degf=replicates - 1,
        seed=int(stream_key(rng)),
        n_replicates=replicates,
    )


def _jk_rscales(design: SurveyDesign, lay: _Layout, single_stratum: bool) -> np.ndarray:
    """Per stratum position: ``(1 - f_h)(n_h - 1)/n_h`` (stage-1 fpc only, as R)."""
    nh = lay.strat_npsu.astype(np.float64)
    stage = design.stages[0]
    f = np.zeros(nh.size)
    if stage.popsize is not None:
        if single_stratum:
            pops = np.unique(np.c_[stage.stratum, stage.popsize], axis=0)[:, 1]
            f[:] = nh[0] / pops.sum()
        else:
            pop = np.zeros(nh.size)
            pos = np.searchsorted(lay.strat_code, stage.stratum)
            pop[pos] = stage.popsize
            f = nh / pop
    return np.where(nh > 1, (1.0 - f) * (nh - 1.0) / np.maximum(nh, 1.0), 0.0)


def lazy_jackknife_replicates(
    design: SurveyDesign, *, kind: Literal["JKn", "JK1"] = "JKn", mse: bool = False
) -> ReplicateWeights:
    """Delete-one-PSU jackknife replicates that are never materialised.

    Parameters
    ----------
    design : SurveyDesign
    kind : {"JKn", "JK1"}, default="JKn"
        ``"JKn"`` deletes one PSU within its stratum; ``"JK1"`` treats the
        sample as one stratum.
    mse : bool, default=False

    Returns
    -------
    ReplicateWeights
        ``weights=None``; one replicate per PSU of a stratum with at least 2
        PSUs, ordered by stratum then PSU code; ``scale=1``; ``rscales`` as R.

    Notes
    -----
    Replicate *(h, i)* multiplies the weights of stratum *h* by
    :math:`n_h/(n_h-1)` and those of PSU *i* by 0; ``rscales`` are
    :math:`(1 - f_h)(n_h - 1)/n_h` with the stage-1 sampling fraction
    :math:`f_h` (R's ``as.svrepdesign`` drops later-stage fpc).
    """
    kind = check_choice(kind, name="kind", allowed=("JKn", "JK1"))
    single = kind == "JK1"
    lay = _layout(design, single_stratum=single)
    rs = _jk_rscales(design, lay, single)
    keep = lay.strat_npsu > 1
    rscales = np.repeat(rs[keep], lay.strat_npsu[keep])
    return ReplicateWeights(
        kind=kind,
        weights=None,
        scale=1.0,
        rscales=rscales,
        mse=bool(mse),
        degf=int(lay.strat_npsu.sum() - lay.strat_npsu.size),
        n_replicates=int(rscales.size),
    )


def _task_block(n_rep: int, target: int = 48) -> int:
    """Replicates per kernel task: about ``target``, with a multiple of the thread count of tasks.

    The block size changes only how work is shared between threads: every
    replicate's totals are computed by the same operations in the same order.
    """
    import numba

    t = max(1, int(numba.get_num_threads()))
    tasks = t * max(1, -(-n_rep // (t * target)))
    block = -(-n_rep // tasks)
    return max(1, -(-block // 4) * 4)


def _expand(out: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Columns of the compact totals back in the caller's order (see :func:`_compact`)."""
    if where.size == out.shape[2] and bool((where == np.arange(where.size)).all()):
        return out
    return out[:, :, where]


def raowu_totals(key: int, w: np.ndarray, values: np.ndarray, domain: np.ndarray,
                 n_domains: int, lay: _Layout, r0: int, n_rep: int) -> np.ndarray:
    """Rao-Wu replicate totals (n_rep, G, k) of rows laid out by ``lay`` (whole strata).

    The one call of the on-the-fly kernel: a design in memory and a Dask
    partition both come here, with the same key and global stratum codes.
    """
    from .._kernels.bootstrap import _raowu_totals

    vc, where = _compact(_as_values(values, w.shape[0]))
    out = _raowu_totals(np.uint64(key), np.ascontiguousarray(w, dtype=np.float64), vc, domain,
                        lay.order, lay.psu_local, lay.strat_start, lay.strat_code,
                        lay.strat_npsu, r0, n_rep, n_domains, _task_block(n_rep))
    return _expand(out, where)


def check_raowu_strata(npsu: np.ndarray, label_of: Any, lonely_psu: str) -> None:
    """A stratum with one PSU is an error for the Rao-Wu bootstrap unless the rule keeps it fixed.

    ``npsu`` holds the PSUs per stratum, ``label_of(position)`` the stratum label.
    """
    lonely = np.flatnonzero(np.asarray(npsu) < 2)
    if lonely.size and lonely_psu not in ("remove", "certainty"):
        raise DesignError(
            f"stratum {label_of(int(lonely[0]))!r} has a single PSU: the Rao-Wu bootstrap needs "
            f"n_h >= 2 (lonely_psu={lonely_psu!r}; use 'remove' or 'certainty' to keep it "
            "fixed with multiplier 1)"
        )


def _jk_multiplier_block(lay: _Layout, r0: int, nb: int, n: int) -> np.ndarray:
    """Multipliers (nb, n) of lazy jackknife replicates ``r0 .. r0 + nb - 1``."""
    has = lay.strat_npsu > 1
    rep_psu = np.flatnonzero(has[lay.psu_stratum])  # PSU deleted by each replicate
    m = np.ones((nb, n))
    for q in range(nb):
        p = rep_psu[r0 + q]
        h = lay.psu_stratum[p]
        nh = lay.strat_npsu[h]
        rows = lay.order[lay.strat_start[h]:lay.strat_start[h + 1]]
        m[q, rows] = np.where(lay.psu_index[rows] == p, 0.0, nh / (nh - 1.0))
    return m


def _step_base_weights(design: SurveyDesign) -> np.ndarray:
    """Weights the lazy replicates start from when they replay weighting steps."""
    reps = design.replicates
    n_hist = len(design.history) - 1
    if n_hist != len(reps.steps):
        raise DesignError(
            f"the {reps.kind} replicates generated on the fly replay {len(reps.steps)} weighting "
            f"step(s) but the design went through {n_hist} "
            f"({', '.join(st.method for st in design.history[1:]) or 'none'}): replaying starts "
            "from the declared design weights, so create the replicates before any weighting "
            "step and attach every later step"
        )
    return np.asarray(design.design_weights, dtype=np.float64)


def _apply_steps(design: SurveyDesign, wb: np.ndarray, r0: int) -> np.ndarray:
    """Replay ``design.replicates.steps`` in order on a block of replicate weights."""
    index = np.arange(r0, r0 + wb.shape[0], dtype=np.int64)
    for st in design.replicates.steps:
        out = np.asarray(st.apply(wb, index.copy()), dtype=np.float64)
        if out.shape != wb.shape:
            raise SatsampleError(
                f"weighting step {type(st).__name__} returned replicate weights of shape "
                f"{out.shape}; expected {wb.shape}"
            )
        wb = out
    return wb


def iter_replicate_weight_blocks(
    design: SurveyDesign, block: int = 50, *, multipliers: bool = False
) -> Iterator[np.ndarray]:
    """Yield the replicate weights of a design in blocks of replicates.

    Parameters
    ----------
    design : SurveyDesign
        A design with replicates: materialised (sliced), lazy Rao-Wu
        (:func:`lazy_raowu_replicates`) or lazy jackknife
        (:func:`lazy_jackknife_replicates`).
    block : int, default=50
        Replicates per block (the last block may be smaller).
    multipliers : bool, default=False
        Yield the replicate multipliers of lazy replicates (before any
        weighting step), or ``weights / design.weights`` for materialised ones.

    Yields
    ------
    ndarray of shape (R_block, n)
        Replicate analysis weights, block after block: the same draws as
        :func:`replicate_totals` uses.

    Notes
    -----
    Lazy replicates without weighting steps are :math:`w_i m_{ri}` with the
    analysis weights :math:`w_i`.  With ``replicates.steps`` they start from
    the declared design weights, :math:`d_i m_{ri}`, and every step's
    ``apply(block, replicate_index)`` is replayed in order on the block
    (memory O(block x n)).  A step must treat each row of the block on its
    own, so that a replicate does not depend on the block it falls in.
    """
    reps = design.replicates
    if reps is None:
        raise SatsampleError("the design has no replicate weights")
    block = check_positive_int(block, name="block")
    R = reps.n_replicates
    n = design.n
    if reps.weights is not None:
        for r0 in range(0, R, block):
            wb = np.array(reps.weights[r0:r0 + block])
            yield wb / design.weights if multipliers else wb
        return
    if reps.kind == "subbootstrap":
        from .._kernels.bootstrap import _raowu_multipliers

        lay = _layout(design)

        def mult(r0: int, nb: int) -> np.ndarray:
            return _raowu_multipliers(np.uint64(reps.seed), lay.order, lay.psu_local,
                                      lay.strat_start, lay.strat_code, lay.strat_npsu, r0, nb, n)
    elif reps.kind in ("JKn", "JK1"):
        lay_jk = _layout(design, single_stratum=reps.kind == "JK1")

        def mult(r0: int, nb: int) -> np.ndarray:
            return _jk_multiplier_block(lay_jk, r0, nb, n)
    else:
        raise SatsampleError(f"lazy replicates of kind {reps.kind!r} cannot be iterated in blocks")
    base = _step_base_weights(design) if (reps.steps and not multipliers) else design.weights
    for r0 in range(0, R, block):
        m = mult(r0, min(block, R - r0))
        if multipliers:
            yield m
            continue
        m *= base
        yield _apply_steps(design, m, r0) if reps.steps else m


# ------------------------------------------------------ replicate totals
def _jk_cells(design: SurveyDesign, wv: np.ndarray, domain: np.ndarray, n_domains: int,
              single: bool):
    """Group weighted values by (domain, stratum) and (domain, PSU)."""
    lay = _layout(design, single_stratum=single)
    n_psu = int(lay.psu_stratum.size)
    keep = domain >= 0
    key = domain[keep] * n_psu + lay.psu_index[keep]
    o = np.argsort(key, kind="stable")
    ks = key[o]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if ks.size else np.zeros(0, np.int64)
    cell_tot = np.add.reduceat(wv[keep][o], starts, axis=0) if ks.size else wv[:0]
    cell_key = ks[starts]
    cell_dom = cell_key // n_psu
    cell_psu = cell_key % n_psu
    cell_strat = lay.psu_stratum[cell_psu]
    gkey = cell_dom * lay.strat_npsu.size + cell_strat
    gstarts = (np.flatnonzero(np.r_[True, gkey[1:] != gkey[:-1]]) if gkey.size
               else np.zeros(0, np.int64))
    grp_tot = np.add.reduceat(cell_tot, gstarts, axis=0) if gkey.size else cell_tot[:0]
    grp_dom = cell_dom[gstarts]
    grp_strat = cell_strat[gstarts]
    return lay, cell_tot, cell_psu, gstarts, grp_tot, grp_dom, grp_strat


def _jk_totals(design: SurveyDesign, values: np.ndarray, domain: np.ndarray, n_domains: int,
               single: bool) -> np.ndarray:
    """Replicate totals of a lazy jackknife design, (R, G, k), from PSU totals."""
    wv = values * design.weights[:, None]
    lay, cell_tot, cell_psu, gstarts, grp_tot, grp_dom, grp_strat = _jk_cells(
        design, wv, domain, n_domains, single)
    k = values.shape[1]
    full = np.zeros((n_domains, k))
    np.add.at(full, grp_dom, grp_tot)
    nh = lay.strat_npsu
    has_rep = nh > 1
    # replicate of each PSU (PSUs of strata with one PSU have none)
    psu_has = has_rep[lay.psu_stratum]
    rep_of_psu = np.cumsum(psu_has) - 1
    R = int(psu_has.sum())
    out = np.broadcast_to(full, (R, n_domains, k)).copy()
    mh = nh / np.maximum(nh - 1.0, 1.0)
    strat_first_rep = np.r_[0, np.cumsum(np.where(has_rep, nh, 0))[:-1]]
    for q in range(grp_dom.size):
        h = grp_strat[q]
        if not has_rep[h]:
            continue
        r0 = strat_first_rep[h]
        out[r0:r0 + nh[h], grp_dom[q]] += (mh[h] - 1.0) * grp_tot[q]
    sel = psu_has[cell_psu]
    cell_dom = np.repeat(grp_dom, np.diff(np.r_[gstarts, cell_psu.size]))
    np.add.at(out, (rep_of_psu[cell_psu[sel]], cell_dom[sel]),
              -(mh[lay.psu_stratum[cell_psu[sel]]])[:, None] * cell_tot[sel])
    return out


def _stepped_totals(design: SurveyDesign, v: np.ndarray, domain: np.ndarray,
                    n_domains: int) -> np.ndarray:
    """Totals of lazy replicates that replay weighting steps, one block of weights at a time."""
    from .._kernels.totals import _dense_replicate_totals

    vc, where = _compact(v)
    out = np.empty((design.replicates.n_replicates, n_domains, vc.shape[1]))
    r0 = 0
    for wb in iter_replicate_weight_blocks(design, _STEP_BLOCK):
        out[r0:r0 + wb.shape[0]] = _dense_replicate_totals(
            np.ascontiguousarray(wb), vc, domain, n_domains, 8, _CHUNK)
        r0 += wb.shape[0]
    return _expand(out, where)


def replicate_totals(
    design: SurveyDesign,
    values: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
) -> np.ndarray:
    """Replicate totals of ``values`` by domain (the replicate weights are applied here).

    Parameters
    ----------
    design : SurveyDesign
        A design with ``replicates`` (materialised, lazy Rao-Wu or lazy jackknife).
    values : ndarray of shape (n,) or (n, k)
        Unweighted values (any real or boolean dtype; small integer dtypes are
        kept as they are, which saves memory on large samples).
    domain : ndarray of int of shape (n,), optional
        Domain code of each row in ``0..n_domains-1``; ``-1`` puts the row in
        no domain.  ``None``: one domain holding every row.
    n_domains : int, default=1

    Returns
    -------
    ndarray of shape (R, n_domains, k)

    Notes
    -----
    .. math:: T_{rgj} = \\sum_i W_{ri} \\, v_{ij} \\, 1\\{g_i = g\\}

    with :math:`W_{ri}` the replicate weights (for lazy replicates,
    the analysis weight times the replicate multiplier; with weighting steps,
    the design weight times the multiplier, then every step replayed, see
    :func:`iter_replicate_weight_blocks`).  Results do not depend on the
    number of Numba threads.
    """
    reps = design.replicates
    if reps is None:
        raise SatsampleError("the design has no replicate weights")
    v = _as_values(values, design.n)
    domain, n_domains = _as_domain(design, domain, n_domains)
    if reps.weights is None and reps.steps:
        return _stepped_totals(design, v, domain, n_domains)
    if reps.weights is None and reps.kind == "subbootstrap":
        return raowu_totals(reps.seed, design.weights, v, domain, n_domains, _layout(design), 0,
                            reps.n_replicates)
    if reps.weights is not None:
        from .._kernels.totals import _dense_replicate_totals

        vc, where = _compact(v)
        out = _dense_replicate_totals(np.ascontiguousarray(reps.weights, dtype=np.float64),
                                      vc, domain, n_domains, 8, _CHUNK)
        return _expand(out, where)
    if reps.kind in ("JKn", "JK1"):
        return _jk_totals(design, v.astype(np.float64), domain, n_domains, reps.kind == "JK1")
    raise SatsampleError(f"replicates of kind {reps.kind!r} without weights are not supported")


def closed_form(design: SurveyDesign) -> bool:
    """True when the replicate variance of ratios is computed in closed form.

    A jackknife whose replicates are not stored and replay no weighting step:
    its replicate estimates follow from PSU totals, so linear combinations of
    ratios get their variance without forming any replicate.
    """
    reps = design.replicates
    return (reps is not None and reps.weights is None and reps.kind in ("JKn", "JK1")
            and not reps.steps)


# --------------------------------------------------- ratio variances
def _ratios(num_t: np.ndarray, den_t: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``theta[..., g, l] = sum_k coef[g, l, k] num/den`` skipping zero coefficients."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num_t / den_t
    used = coef != 0.0  # (G, L, K)
    bad = ~np.isfinite(ratio)  # (..., G, K)
    r0 = np.where(bad, 0.0, ratio)
    theta = np.einsum("glk,...gk->...gl", coef, r0)
    nan = np.einsum("glk,...gk->...gl", used.astype(np.float64), bad.astype(np.float64)) > 0
    return np.where(nan, np.nan, theta)


def replicate_ratio_variance(
    design: SurveyDesign,
    num: np.ndarray,
    den: np.ndarray,
    coef: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
    kind: Literal["auto", "JKn", "JK1", "replicates"] = "auto",
    mse: bool | None = None,
) -> np.ndarray:
    """Replicate variance of linear combinations of domain ratios.

    Parameters
    ----------
    design : SurveyDesign
    num : ndarray of shape (n, K)
        Numerator values (e.g. ``n_k = 1{satisfied}``, unweighted).
    den : ndarray of shape (n, K) or (n, 1)
        Denominator values (e.g. ``d_k = 1{usable answer}``); one column is
        shared by every ratio.
    coef : ndarray of shape (L, K) or (G, L, K)
        Coefficients of the ratios in each estimate (items: the identity;
        satisfaction index: the element/overall averaging weights, possibly
        per domain when criteria are missing in a domain).
    domain : ndarray of int of shape (n,), optional
        Domain codes (``-1`` = no domain); ``None``: one domain.
    n_domains : int, default=1
    kind : {"auto", "JKn", "JK1", "replicates"}, default="auto"
        ``"JKn"``/``"JK1"``: closed-form jackknife from the design (no
        replicate weights needed).  ``"replicates"``: use
        ``design.replicates`` (materialised, lazy Rao-Wu, or lazy replicates
        replaying weighting steps).  ``"auto"``: closed form for a lazy
        jackknife design without weighting steps, the replicates otherwise.
    mse : bool, optional
        Centre at the full-sample estimate; default: ``design.replicates.mse``
        (False without replicates).

    Returns
    -------
    ndarray of shape (G, L)
        Variance of :math:`\\theta_{gl}`.

    Notes
    -----
    .. math:: \\theta_{gl} = \\sum_k c_{glk} N_{gk} / D_{gk},
              \\quad v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_{r,gl} - c)^2.

    In closed form (JKn), replicate *(h, i)* changes the totals by
    :math:`a = (m_h - 1) N_{hg} - m_h t_{hig}` (and *b* for *D*), so
    :math:`N'/D' - N/D = (a D - N b) / (D (D + b))` is computed without
    cancellation, and the sums :math:`\\sum r_s d`, :math:`\\sum r_s d^2`,
    :math:`\\sum d` give the variance about the replicate mean.  PSUs of the
    stratum with no row in the domain share one replicate value.
    """
    kind = check_choice(kind, name="kind", allowed=("auto", "JKn", "JK1", "replicates"))
    reps = design.replicates
    if mse is None:
        mse = bool(reps.mse) if reps is not None else False
    n = design.n
    num = np.asarray(num, dtype=np.float64).reshape(n, -1)
    den = np.asarray(den, dtype=np.float64).reshape(n, -1)
    K = num.shape[1]
    if den.shape[1] not in (1, K):
        raise SatsampleError(f"den has {den.shape[1]} columns; expected 1 or {K} (as num)")
    domain, n_domains = _as_domain(design, domain, n_domains)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim == 2:
        coef = np.broadcast_to(coef, (n_domains, *coef.shape))
    if coef.shape[0] != n_domains or coef.shape[2] != K:
        raise SatsampleError(f"coef has shape {coef.shape}; expected (L, {K}) or ({n_domains}, L, {K})")
    coef = np.ascontiguousarray(coef)
    if kind == "auto":
        if reps is None:
            raise SatsampleError("the design has no replicate weights; pass kind='JKn' or 'JK1'")
        closed = reps.weights is None and reps.kind in ("JKn", "JK1") and not reps.steps
        kind = reps.kind if closed else "replicates"
    if kind in ("JKn", "JK1"):
        return _jk_ratio_variance(design, num, den, coef, domain, n_domains, kind == "JK1", mse)
    if reps is None:
        raise SatsampleError("kind='replicates' needs a design with replicate weights")
    vals = np.hstack([num, den])
    tot = replicate_totals(design, vals, domain=domain, n_domains=n_domains)
    full_t = np.zeros((n_domains, vals.shape[1]))
    keep = domain >= 0
    np.add.at(full_t, domain[keep], vals[keep] * design.weights[keep, None])
    den_r = tot[..., K:] if den.shape[1] == K else np.broadcast_to(tot[..., K:], tot[..., :K].shape)
    den_f = full_t[:, K:] if den.shape[1] == K else np.broadcast_to(full_t[:, K:], (n_domains, K))
    theta_r = _ratios(tot[..., :K], den_r, coef)
    theta = _ratios(full_t[:, :K], den_f, coef)
    from dataclasses import replace

    return replace(reps, mse=mse).variance(theta_r, theta)


def _jk_ratio_variance(design: SurveyDesign, num: np.ndarray, den: np.ndarray, coef: np.ndarray,
                       domain: np.ndarray, n_domains: int, single: bool, mse: bool) -> np.ndarray:
    from .._kernels.jackknife import _jkn_ratio_variance

    K = num.shape[1]
    wv = np.hstack([num, den]) * design.weights[:, None]
    lay, cell_tot, _cell_psu, gstarts, grp_tot, grp_dom, grp_strat = _jk_cells(
        design, wv, domain, n_domains, single)
    if den.shape[1] == 1:
        cell_d = np.repeat(cell_tot[:, K:], K, axis=1)
        grp_d = np.repeat(grp_tot[:, K:], K, axis=1)
    else:
        cell_d, grp_d = cell_tot[:, K:], grp_tot[:, K:]
    n_full = np.zeros((n_domains, K))
    d_full = np.zeros((n_domains, K))
    np.add.at(n_full, grp_dom, grp_tot[:, :K])
    np.add.at(d_full, grp_dom, grp_d)
    rs = _jk_rscales(design, lay, single)
    dom_start = np.searchsorted(grp_dom, np.arange(n_domains + 1)).astype(np.int64)
    cell_start = np.r_[gstarts, cell_tot.shape[0]].astype(np.int64)
    theta, s1, s2, msum = _jkn_ratio_variance(
        n_full, d_full, coef, dom_start, lay.strat_npsu[grp_strat], rs[grp_strat],
        np.ascontiguousarray(grp_tot[:, :K]), np.ascontiguousarray(grp_d), cell_start,
        np.ascontiguousarray(cell_tot[:, :K]), np.ascontiguousarray(cell_d))
    undefined = np.isnan(theta)  # e.g. an empty domain: every replicate is undefined too
    if mse:
        return np.where(undefined, np.nan, s2)
    nh = lay.strat_npsu
    has = nh > 1
    R = float(nh[has].sum())
    s0 = float((nh[has] * rs[has]).sum())
    cbar = msum / R
    return np.where(undefined, np.nan, s2 - 2.0 * cbar * s1 + cbar * cbar * s0)
