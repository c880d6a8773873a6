"""Weighting steps replayed on replicate cell tables, without replicate weights.

Lazy replicates (``replicates.weights is None``) that carry weighting steps
are replayed in blocks of materialised replicate weights by
:func:`satsample.variance.replicate.iter_replicate_weight_blocks` (the general
path, O(R n) work per step).  When every step is defined on categorical
cells, the same replicate weights have a closed structure:

.. math:: w_{ri} = b_i \\, m_{ri} \\, f_r(\\kappa_i),

with :math:`b_i` the declared design weights, :math:`m_{ri}` the replicate
multipliers and :math:`\\kappa_i` the row's *combined cell*: the
cross-classification of every step's cells (nonresponse classes and the
response indicator, post-strata, raking margins, the distinct rows of a
categorical calibration matrix).  Each step turns a replicate's weights into
new ones through sums over its cells only, and each of its cells is a union
of combined cells, so the whole chain of steps can be replayed on the small
table :math:`B_{r\\kappa} = \\sum_{i \\in \\kappa} b_i m_{ri}` (one kernel
pass): the replay objects' own ``apply`` runs on that table with the
combined cells as rows (same algebra, same convergence rule per replicate,
same non-convergence policy and message).  The factor of a cell is then
:math:`f_r(\\kappa) = B'_{r\\kappa} / B_{r\\kappa}` (0 where
:math:`B_{r\\kappa} = 0`: the cell has no weight in that replicate), and
every replicate total is a combination of the totals by (domain x combined
cell) under the base replicate weights:

.. math:: T_{rgj} = \\sum_\\kappa f_r(\\kappa) \\, U_{r(g,\\kappa)j}, \\quad
          U_{r(g,\\kappa)j} = \\sum_{i:\\, g_i = g,\\, \\kappa_i = \\kappa} b_i m_{ri} v_{ij}.

The replay runs in two phases:

(a) a pass over rows returning additive tables (:class:`CellTables`: the cell
    table :math:`B` and the pair totals :math:`U`), :func:`cell_tables` for a
    design in memory and :func:`raowu_cell_tables` for any set of whole strata
    with global stratum codes (a Dask partition): the tables of disjoint parts
    sum (:func:`add_tables`).  For the lazy Rao-Wu bootstrap both tables come
    from one pass of the kernel :func:`satsample._kernels.bootstrap._raowu_totals`
    (the counts drawn once); for the lazy jackknife from its closed-form totals;
(b) small-table algebra on the summed tables: the steps on the cell table,
    convergence and factors (:func:`replay_factors`), then the replicate
    totals by domain (:func:`finish`).

:func:`cell_replay_totals` is the in-memory composition of the two.  Trimming
(which acts on individual weights), steps of unknown type, calibration on
many distinct rows (continuous variables) and more than ``_MAX_CELLS``
combined cells keep the block path.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..design import SurveyDesign
from ..replicate.bootstrap import RaoWu
from ..replicate.jackknife import Jackknife
from .calibrate import CalibrationStep
from .nonresponse import NonresponseStep
from .poststratify import PostStratifyStep
from .rake import RakeStep

__all__ = ["CellReplay", "CellTables", "add_tables", "cell_replay_plan", "cell_replay_totals",
           "cell_tables", "finish", "raowu_cell_tables", "replay_factors", "replay_path"]

_ENABLED = True  # tests switch the cell path off to compare with the block path
_MAX_CELLS = 20_000  # combined cells; more -> block path
_MAX_TABLE = 2**26  # entries of the (replicates x cells) factor table (512 MiB); more -> blocks
_PAIR_BUDGET = 2**28  # bytes of (replicates x pairs x columns) totals per chunk of domains
_HASH = np.random.default_rng(20240611).standard_normal(64)  # fixed projection of matrix rows


@dataclass(frozen=True, kw_only=True, eq=False)
class CellReplay:
    """The weighting steps of a lazy replicate design, re-expressed on combined cells.

    Attributes
    ----------
    cell : ndarray of int64, shape (n,)
        Combined cell of each row (``0 .. n_cells - 1``).
    n_cells : int
        Number of combined cells present.
    steps : tuple
        The design's replay steps with their row arrays (codes, response
        indicator, model matrix) taken at one row of each combined cell:
        their ``apply`` runs on (R, n_cells) tables of cell weights.
    base : ndarray of float64, shape (n,)
        The weights the replicate multipliers apply to (the declared design weights).
    live : ndarray of bool, shape (n_cells,)
        False for the cells of nonrespondents of a nonresponse step: their
        factor is 0 in every replicate, so their rows are skipped by the
        totals pass (they still weigh in the cell tables).
    """

    cell: np.ndarray
    n_cells: int
    steps: tuple[Any, ...]
    base: np.ndarray
    live: np.ndarray


@dataclass(eq=False)
class _Entry:
    base: np.ndarray
    plan: CellReplay | str
    factors: np.ndarray | None = None


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------ planning
def _dense(key: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Codes ``0 .. m - 1`` of the distinct values of ``key`` (in ``0 .. size - 1``), in order."""
    if size <= 4 * key.size + 1024:
        seen = np.bincount(key, minlength=size) > 0
        rank = np.cumsum(seen) - 1
        return rank[key].astype(np.int64), int(seen.sum())
    u, inv = np.unique(key, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), int(u.size)


def _combine(parts: list[tuple[np.ndarray, int]], n: int) -> tuple[np.ndarray, int]:
    """Combined cell codes of the cross-classification of ``parts`` (codes, number of codes)."""
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for codes, m in parts:
        m = max(int(m), 1)
        if size * m > 2**62:
            key, size = _dense(key, size)
        key = key * m + np.asarray(codes, dtype=np.int64)
        size *= m
    return _dense(key, size)


def _row_codes(matrix: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Codes of the distinct rows of a model matrix; None if not finite or too many rows."""
    m = np.asarray(matrix, dtype=np.float64)
    n, p = m.shape
    if n == 0 or not np.isfinite(m).all():
        return None
    u = np.resize(_HASH, p)
    codes, uniq = pd.factorize(m @ u)
    c = len(uniq)
    if c > _MAX_CELLS:
        return None
    rep = np.empty(c, dtype=np.int64)
    rep[codes] = np.arange(n)
    if not np.array_equal(m, m[rep[codes]]):  # a collision of the projection: exact codes
        rows, inv = np.unique(m, axis=0, return_inverse=True)
        if rows.shape[0] > _MAX_CELLS:
            return None
        return inv.reshape(-1).astype(np.int64), int(rows.shape[0])
    return codes.astype(np.int64), c


def _parts(step: Any) -> list[tuple[np.ndarray, int]] | str:
    """The row classifications a step depends on, or why it cannot be replayed on cells."""
    if isinstance(step, NonresponseStep):
        return [(step.codes, step.n_groups), (np.asarray(step.responded, dtype=np.int64), 2)]
    if isinstance(step, PostStratifyStep):
        return [(step.codes, step.n_cells)]
    if isinstance(step, RakeStep):
        return [(codes, n_cells) for codes, n_cells, _pop in step.margins]
    if isinstance(step, CalibrationStep):
        rc = _row_codes(step.matrix)
        if rc is None:
            return (f"calibration matrix with more than {_MAX_CELLS} distinct rows "
                    "(continuous variables)")
        return [rc]
    return f"step {type(step).__name__} is not defined on cells"


def _on_cells(step: Any, rep: np.ndarray) -> Any:
    """The step with its row arrays taken at one row of each combined cell."""
    if isinstance(step, NonresponseStep):
        return replace(step, codes=step.codes[rep], responded=step.responded[rep])
    if isinstance(step, PostStratifyStep):
        return replace(step, codes=step.codes[rep])
    if isinstance(step, RakeStep):
        return replace(step, margins=tuple((codes[rep], n_cells, pop)
                                           for codes, n_cells, pop in step.margins))
    assert isinstance(step, CalibrationStep)
    return replace(step, matrix=np.ascontiguousarray(step.matrix[rep]))


def _make_plan(design: SurveyDesign, base: np.ndarray) -> CellReplay | str:
    reps = design.replicates
    assert reps is not None
    if not isinstance(reps.scheme, (RaoWu, Jackknife)):
        return f"lazy replicates of kind {reps.kind!r}"
    parts: list[tuple[np.ndarray, int]] = []
    for st in reps.steps:
        p = _parts(st)
        if isinstance(p, str):
            return p
        parts.extend(p)
    cell, c = _combine(parts, design.n)
    if c > _MAX_CELLS:
        return f"{c} combined cells (more than {_MAX_CELLS})"
    if c * reps.n_replicates > _MAX_TABLE:
        return f"{c} combined cells x {reps.n_replicates} replicates"
    rep = np.empty(c, dtype=np.int64)
    rep[cell] = np.arange(design.n)  # any row of the cell: every step's arrays agree on it
    steps = tuple(_on_cells(st, rep) for st in reps.steps)
    live = np.ones(c, dtype=bool)
    for st in steps:
        if isinstance(st, NonresponseStep):
            live &= np.asarray(st.responded, dtype=bool)
    return CellReplay(cell=cell, n_cells=c, steps=steps, base=base, live=live)


def _entry(design: SurveyDesign) -> _Entry | None:
    reps = design.replicates
    if reps is None or reps.weights is not None or not reps.steps:
        return None
    from ..variance.replicate import _step_base_weights

    base = _step_base_weights(design)  # raises when the history and the steps disagree
    got = _CACHE.get(reps)
    if got is not None and got.base is base:
        return got
    entry = _Entry(base=base, plan=_make_plan(design, base))
    _CACHE[reps] = entry
    return entry


def cell_replay_plan(design: SurveyDesign) -> CellReplay | str | None:
    """The cell replay of a design's lazy weighting steps, or why there is none.

    Returns
    -------
    CellReplay, str or None
        The plan; a text saying why the block path is used; ``None`` when the
        design has no weighting step to replay on lazy replicates.
    """
    if not _ENABLED:
        e = _entry(design)
        return None if e is None else "cell replay switched off"
    e = _entry(design)
    return None if e is None else e.plan


def replay_path(design: SurveyDesign) -> str | None:
    """``"cells"``, ``"blocks"``, or ``None`` (no weighting step replayed on lazy replicates)."""
    plan = cell_replay_plan(design)
    if plan is None:
        return None
    return "cells" if isinstance(plan, CellReplay) else "blocks"


# ------------------------------------------------------------------ replay
def _shadow(design: SurveyDesign, base: np.ndarray) -> SurveyDesign:
    """The design before its weighting steps: base weights, the same lazy replicates."""
    reps = design.replicates
    assert reps is not None
    return replace(design, weights=base,
                   replicates=replace(reps, steps=(), base_weights=None))


def _replay_steps(plan: CellReplay, table: np.ndarray, r0: int) -> np.ndarray:
    """Factors (b, n_cells) of replicates ``r0 ..`` from their cell table (b, n_cells)."""
    w = table
    idx = np.arange(r0, r0 + table.shape[0], dtype=np.int64)
    for st in plan.steps:
        w = np.asarray(st.apply(w, idx.copy()), dtype=np.float64)
    return np.divide(w, table, out=np.zeros_like(w), where=table > 0)


# ------------------------------------------------- phase (a): additive tables
@dataclass(frozen=True, kw_only=True, eq=False)
class CellTables:
    """Replicate tables of one pass over rows, additive over disjoint sets of whole strata.

    Attributes
    ----------
    cells : ndarray of float64, shape (R, n_cells), or None
        Replicate cell table :math:`B_{r\\kappa} = \\sum_{i \\in \\kappa} b_i m_{ri}` over
        every row (whatever its domain, respondent or not); ``None`` when not
        asked for (the factors are known).
    pairs : ndarray of int64, shape (P,)
        Sorted keys ``g * n_cells + kappa`` of the (domain, combined cell) pairs
        of the rows counted (a domain, and a live cell).
    totals : ndarray of float64, shape (R, P, k_c)
        :math:`U_{rpj} = \\sum_i b_i m_{ri} v_{ij} 1\\{(g_i, \\kappa_i) = p\\}`, on
        the compact columns of the values (see ``columns``).
    columns : ndarray of int64, shape (k,)
        Compact column of every value column
        (:func:`satsample.replicate._common.compact`).
    n_domains, n_cells : int
    """

    cells: np.ndarray | None
    pairs: np.ndarray
    totals: np.ndarray
    columns: np.ndarray
    n_domains: int
    n_cells: int

    def __add__(self, other: CellTables) -> CellTables:
        return add_tables(self, other)


def add_tables(a: CellTables, b: CellTables) -> CellTables:
    """The tables of the union of two disjoint sets of rows (e.g. two Dask partitions).

    Cell tables add; pair totals add on the union of the pairs (the compact
    columns are expanded first when the two parts compacted differently).
    """
    if (a.n_cells, a.n_domains) != (b.n_cells, b.n_domains) or a.columns.size != b.columns.size:
        raise ValueError("tables of different cells, domains or value columns")
    if a.totals.shape[0] != b.totals.shape[0]:
        raise ValueError("tables of different numbers of replicates")
    ta, tb, cols = a.totals, b.totals, a.columns
    if not np.array_equal(a.columns, b.columns):
        ta, tb = ta[:, :, a.columns], tb[:, :, b.columns]
        cols = np.arange(a.columns.size, dtype=np.int64)
    pairs = np.union1d(a.pairs, b.pairs).astype(np.int64)
    totals = np.zeros((ta.shape[0], pairs.size, ta.shape[2]))
    totals[:, np.searchsorted(pairs, a.pairs)] += ta
    totals[:, np.searchsorted(pairs, b.pairs)] += tb
    cells = None if a.cells is None or b.cells is None else a.cells + b.cells
    return CellTables(cells=cells, pairs=pairs, totals=totals, columns=cols,
                      n_domains=a.n_domains, n_cells=a.n_cells)


def _pair_codes(domain: np.ndarray, cell: np.ndarray, live: np.ndarray,
                n_domains: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Local pair code of each row (``-1``: no domain or a dead cell) and the sorted pair keys."""
    keep = (domain >= 0) & live[cell]
    code = np.full(domain.size, -1, dtype=np.int64)
    if not keep.any():
        return code, np.zeros(0, dtype=np.int64)
    key = domain[keep] * n_cells + cell[keep]
    local, n_pairs = _dense(key, n_domains * n_cells)
    code[keep] = local
    pairs = np.empty(n_pairs, dtype=np.int64)
    pairs[local] = key
    return code, pairs


def raowu_cell_tables(key: int, w: np.ndarray, values: np.ndarray, domain: np.ndarray,
                      n_domains: int, cell: np.ndarray, n_cells: int, live: np.ndarray,
                      lay: Any, r0: int, n_rep: int, *, with_cells: bool = True) -> CellTables:
    """Phase (a) for the lazy Rao-Wu bootstrap: one kernel pass over rows laid out by ``lay``.

    Parameters
    ----------
    key : int
        Key of the counter-based stream (``RaoWu.seed``).
    w : ndarray of float64, shape (n,)
        The base weights :math:`b_i` (the declared design weights).
    values : ndarray, shape (n,) or (n, k)
    domain : ndarray of int64, shape (n,)
        Global domain codes (``-1``: no domain).
    n_domains : int
    cell : ndarray of int64, shape (n,)
        Global combined-cell codes (``CellReplay.cell`` of the whole sample).
    n_cells : int
    live : ndarray of bool, shape (n_cells,)
        ``CellReplay.live``: rows of dead cells weigh in the cell table only.
    lay : Layout
        Rows grouped by stratum with **global** stratum codes
        (:func:`satsample.replicate._common.design_layout` or ``layout_from_codes``):
        any set of whole strata -- a design in memory or one Dask partition.
    r0, n_rep : int
        Replicates ``r0 .. r0 + n_rep - 1``.
    with_cells : bool, default=True
        Also accumulate the replicate cell table (same draws, same pass).

    Returns
    -------
    CellTables
        Additive: the tables of disjoint sets of whole strata sum
        (:func:`add_tables`) to the tables of their union.
    """
    from .._kernels.bootstrap import _raowu_totals
    from ..replicate._common import as_values, compact, task_block

    domain = np.ascontiguousarray(domain, dtype=np.int64)
    cell = np.ascontiguousarray(cell, dtype=np.int64)
    code, pairs = _pair_codes(domain, cell, np.asarray(live, dtype=bool), n_domains, n_cells)
    vc, where = compact(as_values(values, w.shape[0]))
    got = _raowu_totals(np.uint64(key), np.ascontiguousarray(w, dtype=np.float64), vc, code,
                        lay.order, lay.psu_local, lay.strat_start, lay.strat_code, lay.strat_npsu,
                        r0, n_rep, pairs.size, task_block(n_rep),
                        cell=cell if with_cells else None, n_cells=n_cells)
    u, table = got if with_cells else (got, None)
    return CellTables(cells=table, pairs=pairs, totals=u, columns=where, n_domains=int(n_domains),
                      n_cells=int(n_cells))


def cell_tables(design: SurveyDesign, v: np.ndarray, domain: np.ndarray, n_domains: int, *,
                with_cells: bool = True) -> CellTables:
    """Phase (a) on a design in memory: the replicate tables of all its rows.

    ``v`` (n, k) and ``domain`` (n,) as checked by
    :func:`satsample.variance.replicate.replicate_totals`.  Lazy Rao-Wu: one
    pass of the kernel (:func:`raowu_cell_tables`); lazy jackknife: the
    closed-form jackknife totals by combined cell and by (domain, cell) pair.
    """
    plan = cell_replay_plan(design)
    if not isinstance(plan, CellReplay):
        raise ValueError("the design has no cell replay")
    reps = design.replicates
    assert reps is not None
    if isinstance(reps.scheme, RaoWu):
        from ..replicate._common import design_layout

        return raowu_cell_tables(reps.scheme.seed, plan.base, v, domain, n_domains, plan.cell,
                                 plan.n_cells, plan.live, design_layout(design), 0,
                                 reps.n_replicates, with_cells=with_cells)
    from ..replicate._common import compact
    from ..variance.replicate import replicate_totals

    shadow = _shadow(design, plan.base)
    cells = None
    if with_cells:
        ones = np.ones((design.n, 1), dtype=np.uint8)
        cells = replicate_totals(shadow, ones, domain=plan.cell, n_domains=plan.n_cells)[:, :, 0]
    code, pairs = _pair_codes(np.asarray(domain, dtype=np.int64), plan.cell, plan.live,
                              n_domains, plan.n_cells)
    vc, where = compact(v)
    u = replicate_totals(shadow, vc, domain=code, n_domains=pairs.size)
    return CellTables(cells=cells, pairs=pairs, totals=u, columns=where, n_domains=int(n_domains),
                      n_cells=plan.n_cells)


# ------------------------------------------------- phase (b): algebra on the tables
def replay_factors(plan: CellReplay, table: np.ndarray) -> np.ndarray:
    """Factors ``f[r, kappa]`` (R, n_cells) from the summed replicate cell table (R, n_cells).

    The steps run on the table in order (their ``apply``, so a replicate that
    does not converge is reported by number under the step's own policy); the
    factor is the ratio of the final cell weight to :math:`B_{r\\kappa}`, 0
    where :math:`B_{r\\kappa} = 0`.
    """
    f = _replay_steps(plan, np.asarray(table, dtype=np.float64), 0)
    f.setflags(write=False)
    return f


def finish(tables: CellTables, plan: CellReplay, factors: np.ndarray | None = None) -> np.ndarray:
    """Phase (b): replicate totals by domain ``(R, n_domains, k)`` from summed tables.

    .. math:: T_{rgj} = \\sum_{\\kappa} f_r(\\kappa) \\, U_{r(g,\\kappa)j}

    ``factors`` (R, n_cells): the factors if known (:func:`replay_factors`),
    else computed from ``tables.cells``.
    """
    from .._kernels.cells import _combine_pairs
    from ..replicate._common import expand

    if factors is None:
        if tables.cells is None:
            raise ValueError("tables without a cell table need the factors")
        factors = replay_factors(plan, tables.cells)
    c = tables.n_cells
    out = _combine_pairs(np.ascontiguousarray(tables.totals, dtype=np.float64),
                         np.ascontiguousarray(factors, dtype=np.float64),
                         tables.pairs % c, tables.pairs // c, int(tables.n_domains))
    return expand(out, tables.columns)


# ------------------------------------------------- in memory: (a) then (b)
def cell_factors(design: SurveyDesign) -> np.ndarray:
    """Factors ``f[r, kappa]`` of every combined cell in every replicate, (R, n_cells).

    From the replicate cell table of one pass (:func:`cell_tables` with no
    value column) and :func:`replay_factors`.  Cached per design.
    """
    e = _entry(design)
    if e is None or not isinstance(e.plan, CellReplay):
        raise ValueError("the design has no cell replay")
    if e.factors is None:
        none = np.full(design.n, -1, dtype=np.int64)
        t = cell_tables(design, np.zeros((design.n, 1), dtype=np.uint8), none, 1)
        e.factors = replay_factors(e.plan, t.cells)
    return e.factors


def _domain_chunks(design: SurveyDesign, plan: CellReplay, domain: np.ndarray, n_domains: int,
                   k: int) -> list[np.ndarray]:
    """Groups of whole domains whose (R x pairs x k) totals fit in ``_PAIR_BUDGET`` bytes."""
    reps = design.replicates
    assert reps is not None
    _code, pairs = _pair_codes(domain, plan.cell, plan.live, n_domains, plan.n_cells)
    per = max(1, _PAIR_BUDGET // max(1, 8 * reps.n_replicates * k))
    if pairs.size <= per:
        return [np.arange(n_domains)]
    counts = np.bincount(pairs // plan.n_cells, minlength=n_domains)
    chunks, cur, size = [], [], 0
    for g in np.flatnonzero(counts):
        if cur and size + counts[g] > per:
            chunks.append(np.array(cur))
            cur, size = [], 0
        cur.append(int(g))
        size += int(counts[g])
    chunks.append(np.array(cur))
    return chunks


def cell_replay_totals(design: SurveyDesign, v: np.ndarray, domain: np.ndarray,
                       n_domains: int) -> np.ndarray | None:
    """Replicate totals ``(R, n_domains, k)`` by the cell replay, or None (use the block path).

    ``v`` (n, k) and ``domain`` (n,) as checked by
    :func:`satsample.variance.replicate.replicate_totals`.  Phase (a)
    (:func:`cell_tables`: one pass giving the cell table and the totals by
    (domain, cell)) then phase (b) (:func:`finish`); domains are taken in
    groups when the pair totals would exceed ``_PAIR_BUDGET`` bytes.
    """
    plan = cell_replay_plan(design)
    if not isinstance(plan, CellReplay):
        return None
    reps = design.replicates
    assert reps is not None
    e = _entry(design)
    assert e is not None
    out = np.zeros((reps.n_replicates, n_domains, v.shape[1]))
    for chunk in _domain_chunks(design, plan, domain, n_domains, v.shape[1]):
        part = domain
        if chunk.size < n_domains:
            inside = np.zeros(n_domains, dtype=bool)
            inside[chunk] = True
            part = np.where((domain >= 0) & inside[np.maximum(domain, 0)], domain, -1)
        tables = cell_tables(design, v, part, n_domains, with_cells=e.factors is None)
        if e.factors is None:
            e.factors = replay_factors(plan, tables.cells)
        got = finish(tables, plan, e.factors)
        if chunk.size < n_domains:
            out[:, chunk] = got[:, chunk]
        else:
            out = got
    return out
