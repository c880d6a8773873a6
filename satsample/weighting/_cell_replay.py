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
pass): the replay objects' own ``apply`` runs on that table summed by each
step's own cells (same algebra, same convergence rule per replicate, same
non-convergence policy and message).  The factor of a cell is then
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

Two shortcuts make this cheap.  Every step multiplies a replicate's weights
by a factor of *its own* cells (a nonresponse class and response status, a
cross of the raking margins, a post-stratum, a distinct row of a calibration
matrix) and depends on the weights only through their sums over those cells,
so each step runs on the cell table summed by its own cells (a dozen columns
for a rake on sex and age, however many combined cells the chain has) and
its factors are spread back to the combined cells (:func:`_replay_steps`).
And once the factors are known (computed once per design and cached), the lazy Rao-Wu
totals need no (domain x cell) table: one pass of the kernel keyed by domain,
each row's multipliers scaled by its cell's factors
(:func:`factored_totals`), costs about what the plain bootstrap costs.

:func:`cell_replay_totals` is the in-memory composition: for the lazy Rao-Wu
bootstrap with every step on cells, a pass for the cell table (when the
factors are not yet known), the factors, then the factored pass -- unless
the (domain x cell) pairs hold many rows each (``_PAIR_RUN``), where phases
(a) and (b) cost less (one pass instead of two; the choice depends on the
design and the domains only, so a repeated call gives the same bits); the
lazy jackknife and a final linear calibration take phases (a) and (b).  A Dask
design sums the cell tables of its partitions and hands the factors to every
partition, which then makes the same choice on its own rows (the factored pass,
or the pair totals without a cell table).

Unbounded linear calibration as the *last* step, on a model matrix :math:`x`
that is not categorical (more distinct rows, alone or crossed with the cells
of the steps before it, than ``_MAX_CELLS``), is replayed through replicate
totals of :math:`x` and :math:`x v`: its g-weights are :math:`1 +
x_i'\\lambda_r` with :math:`\\lambda_r` from the replicate's :math:`X'W_rX` and
:math:`X'W_r 1`, which are sums over the combined cells of the earlier steps
of the cell moments of :math:`x` times their factors (:func:`linear_lambda`).
Trimming (which acts on individual weights), steps of unknown type, bounded
or nonlinear calibration on continuous variables, a continuous calibration
followed by other steps, and more than ``_MAX_CELLS`` combined cells keep the
block path.
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
           "cell_tables", "finish", "linear_lambda", "raowu_cell_tables", "replay_factors",
           "replay_path"]

_ENABLED = True  # tests switch the cell path off to compare with the block path
_FACTORED = True  # tests switch the factored pass off to compare with the (domain x cell) tables
# rows per (domain x cell) pair from which one pass giving the cell table and the pair totals
# costs less than a pass for the cell table and the factored pass (measured on T7: factored
# ahead at ~115 rows per pair, 200k rows; pairs ahead at ~580, 1M rows)
_PAIR_RUN = 200
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
        indicator, model matrix) taken at one row of each combined cell;
        :func:`_replay_steps` takes each at one combined cell of each of its
        own cells and runs its ``apply`` on the table summed by those cells.
    base : ndarray of float64, shape (n,)
        The weights the replicate multipliers apply to (the declared design weights).
    live : ndarray of bool, shape (n_cells,)
        False for the cells of nonrespondents of a nonresponse step: their
        factor is 0 in every replicate, so their rows are skipped by the
        totals pass (they still weigh in the cell tables).
    linear : CalibrationStep or None
        A last step of unbounded linear calibration on variables that are not
        categorical (its full (n, p) model matrix): replayed through replicate
        totals of ``x`` and ``x y`` (see :func:`linear_lambda`); ``None``: every
        step is on cells.
    """

    cell: np.ndarray
    n_cells: int
    steps: tuple[Any, ...]
    base: np.ndarray
    live: np.ndarray
    linear: CalibrationStep | None = None


@dataclass(eq=False)
class _Entry:
    base: np.ndarray
    plan: CellReplay | str
    factors: np.ndarray | None = None
    lam: np.ndarray | None = None  # (R, p) coefficients of a final linear calibration


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
    cell_steps, linear = reps.steps, None
    for pos, st in enumerate(reps.steps):
        p = _parts(st)
        # an unbounded linear calibration as the last step is replayed through replicate totals
        # of x and x y (g = 1 + x' lambda_r) when its model matrix is not categorical (too many
        # distinct rows, alone or crossed with the cells of the steps before it)
        last_linear = (pos == len(reps.steps) - 1 and isinstance(st, CalibrationStep)
                       and st.closed_form and bool(np.isfinite(st.matrix).all()))
        if last_linear and (isinstance(p, str) or _combine(parts + p, design.n)[1] > _MAX_CELLS):
            cell_steps, linear = reps.steps[:-1], st
            break
        if isinstance(p, str):
            if isinstance(st, CalibrationStep) and "continuous" in p:
                p += (": only unbounded linear calibration, as the last step, is replayed "
                      "through replicate totals of x and x y")
            return p
        parts.extend(p)
    cell, c = _combine(parts, design.n)
    if c > _MAX_CELLS:
        return f"{c} combined cells (more than {_MAX_CELLS})"
    if c * reps.n_replicates > _MAX_TABLE:
        return f"{c} combined cells x {reps.n_replicates} replicates"
    rep = np.empty(c, dtype=np.int64)
    rep[cell] = np.arange(design.n)  # any row of the cell: every step's arrays agree on it
    steps = tuple(_on_cells(st, rep) for st in cell_steps)
    live = np.ones(c, dtype=bool)
    for st in steps:
        if isinstance(st, NonresponseStep):
            live &= np.asarray(st.responded, dtype=bool)
    return CellReplay(cell=cell, n_cells=c, steps=steps, base=base, live=live, linear=linear)


def _entry(design: SurveyDesign) -> _Entry | None:
    reps = design.replicates
    if reps is None or reps.weights is not None or not reps.steps:
        return None
    from ..variance.replicate import _step_base_weights

    base = _step_base_weights(design)  # raises when the history and the steps disagree
    got = _CACHE.get(reps)
    if got is not None and got.base is base:
        return got
    given = getattr(reps.steps[-1], "cell_entry", None)
    if given is not None:  # a Dask partition: the cells and factors of the whole sample
        plan, factors, lam = given(design, base)
        entry = _Entry(base=base, plan=plan, factors=factors, lam=lam)
    else:
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


def _collapse(step: Any, n_cells: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """A step on combined cells, on its own cells instead.

    Returns the step taken at one combined cell of each of its own cells, the
    own cell of every combined cell, and the order and starts that sum the
    columns of a (b, n_cells) table by own cell (``np.add.reduceat``).
    """
    parts = _parts(step)
    assert not isinstance(parts, str)
    own, m = _combine(parts, n_cells)
    order = np.argsort(own, kind="stable")
    starts = np.searchsorted(own[order], np.arange(m))
    return _on_cells(step, order[starts]), own, order, starts


def _replay_steps(plan: CellReplay, table: np.ndarray, r0: int) -> np.ndarray:
    """Factors (b, n_cells) of replicates ``r0 ..`` from their cell table (b, n_cells).

    Each step multiplies a replicate's weights by a factor of the step's own
    cells (a nonresponse class and response status, a cross of the raking
    margins, a post-stratum, a distinct row of the calibration matrix), and
    depends on the weights only through their sums over those cells.  So each
    step runs on the table summed by its own cells (a few columns, however
    many combined cells the chain has), and its factors are spread back to
    the combined cells.
    """
    w = table
    idx = np.arange(r0, r0 + table.shape[0], dtype=np.int64)
    for st in plan.steps:
        small, own, order, starts = _collapse(st, plan.n_cells)
        wc = np.add.reduceat(w[:, order], starts, axis=1) if starts.size else w[:, :0]
        new = np.asarray(small.apply(wc, idx.copy()), dtype=np.float64)
        fac = np.divide(new, wc, out=np.zeros_like(new), where=wc != 0)
        w = w * fac[:, own]
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
    totals : ndarray of float64, shape (P, k_c, R)
        :math:`U_{rpj} = \\sum_i b_i m_{ri} v_{ij} 1\\{(g_i, \\kappa_i) = p\\}` stored
        key-major (``totals[p, j, r]``, as the kernel writes it), on the compact
        columns of the values (see ``columns``).  With a final
        linear calibration on ``x`` (p columns) the values are ``[v, x_1 v, ..,
        x_p v]``.
    columns : ndarray of int64, shape (k,) or (k (p + 1),)
        Compact column of every value column
        (:func:`satsample.replicate._common.compact`).
    n_domains, n_cells : int
    moments : ndarray of float64, shape (R, n_cells, p + p (p + 1) / 2), or None
        With a final linear calibration (and ``cells``): the replicate totals of
        ``x`` and of the products ``x_a x_b`` (``a <= b``) by combined cell.
    """

    cells: np.ndarray | None
    pairs: np.ndarray
    totals: np.ndarray
    columns: np.ndarray
    n_domains: int
    n_cells: int
    moments: np.ndarray | None = None

    def __add__(self, other: CellTables) -> CellTables:
        return add_tables(self, other)


def add_tables(a: CellTables, b: CellTables) -> CellTables:
    """The tables of the union of two disjoint sets of rows (e.g. two Dask partitions).

    Cell tables add; pair totals add on the union of the pairs (the compact
    columns are expanded first when the two parts compacted differently).
    """
    if (a.n_cells, a.n_domains) != (b.n_cells, b.n_domains) or a.columns.size != b.columns.size:
        raise ValueError("tables of different cells, domains or value columns")
    if a.totals.shape[2] != b.totals.shape[2]:
        raise ValueError("tables of different numbers of replicates")
    ta, tb, cols = a.totals, b.totals, a.columns
    if not np.array_equal(a.columns, b.columns):
        ta, tb = ta[:, a.columns], tb[:, b.columns]
        cols = np.arange(a.columns.size, dtype=np.int64)
    pairs = np.union1d(a.pairs, b.pairs).astype(np.int64)
    totals = np.zeros((pairs.size, ta.shape[1], ta.shape[2]))
    totals[np.searchsorted(pairs, a.pairs)] += ta
    totals[np.searchsorted(pairs, b.pairs)] += tb
    cells = None if a.cells is None or b.cells is None else a.cells + b.cells
    moments = None if a.moments is None or b.moments is None else a.moments + b.moments
    return CellTables(cells=cells, pairs=pairs, totals=totals, columns=cols,
                      n_domains=a.n_domains, n_cells=a.n_cells, moments=moments)


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


def _linear_values(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``[v, x_1 v, .., x_p v]`` (n, k (p + 1)) float64: the values of a final linear calibration."""
    v = np.asarray(v, dtype=np.float64)
    return np.concatenate([v, *(x[:, [a]] * v for a in range(x.shape[1]))], axis=1)


def _moment_values(x: np.ndarray) -> np.ndarray:
    """``[1, x, x_a x_b (a <= b)]`` (n, 1 + p + p (p + 1) / 2) float64."""
    p = x.shape[1]
    prods = [x[:, a] * x[:, b] for a in range(p) for b in range(a, p)]
    return np.column_stack([np.ones(x.shape[0]), x, *prods])


def raowu_cell_tables(key: int, w: np.ndarray, values: np.ndarray, domain: np.ndarray,
                      n_domains: int, cell: np.ndarray, n_cells: int, live: np.ndarray,
                      lay: Any, r0: int, n_rep: int, *, with_cells: bool = True,
                      x: np.ndarray | None = None) -> CellTables:
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
    x : ndarray of float64, shape (n, p), optional
        Model matrix of a final linear calibration (``CellReplay.linear``): the
        values become ``[v, x_1 v, .., x_p v]`` and, with ``with_cells``, the
        cell table and the cell moments of ``x`` come from a second pass keyed
        by cell.

    Returns
    -------
    CellTables
        Additive: the tables of disjoint sets of whole strata sum
        (:func:`add_tables`) to the tables of their union.
    """
    from .._kernels.bootstrap import _MIN_BUCKET_RUN, _raowu_totals
    from ..replicate._common import as_values, compact, task_block

    w = np.ascontiguousarray(w, dtype=np.float64)
    domain = np.ascontiguousarray(domain, dtype=np.int64)
    cell = np.ascontiguousarray(cell, dtype=np.int64)
    layout = (lay.order, lay.psu_local, lay.strat_start, lay.strat_code, lay.strat_npsu)
    code, pairs = _pair_codes(domain, cell, np.asarray(live, dtype=bool), n_domains, n_cells)
    v = as_values(values, w.shape[0])
    moments = table = None
    if x is not None:
        v = _linear_values(v, x)
        if with_cells:
            mom = _raowu_totals(np.uint64(key), w, _moment_values(x), cell, *layout, r0, n_rep,
                                n_cells, task_block(n_rep))
            table, moments = mom[:, :, 0].copy(), mom[:, :, 1:].copy()
        with_cells = False
    vc, where = compact(v)
    # runs of one (stratum, pair) are short: the touched pattern buckets pay from 24 rows
    got = _raowu_totals(np.uint64(key), w, vc, code, *layout, r0, n_rep, pairs.size,
                        task_block(n_rep), cell=cell if with_cells else None, n_cells=n_cells,
                        min_bucket_run=_MIN_BUCKET_RUN, key_major=True)
    u, tab = got if with_cells else (got, None)
    if tab is not None:
        table = np.ascontiguousarray(tab.T)
    return CellTables(cells=table, pairs=pairs, totals=u,
                      columns=where, n_domains=int(n_domains), n_cells=int(n_cells),
                      moments=moments)


def cell_tables(design: SurveyDesign, v: np.ndarray, domain: np.ndarray, n_domains: int, *,
                with_cells: bool = True, plan: CellReplay | None = None) -> CellTables:
    """Phase (a) on a design in memory: the replicate tables of all its rows.

    ``v`` (n, k) and ``domain`` (n,) as checked by
    :func:`satsample.variance.replicate.replicate_totals`.  Lazy Rao-Wu: one
    pass of the kernel (:func:`raowu_cell_tables`); lazy jackknife: the
    closed-form jackknife totals by combined cell and by (domain, cell) pair.
    ``plan``: the combined cells of these rows when they are given from
    outside (a Dask partition: global cell codes, see
    :mod:`satsample.weighting._dask`); by default the design's own plan.
    """
    plan = cell_replay_plan(design) if plan is None else plan
    if not isinstance(plan, CellReplay):
        raise ValueError("the design has no cell replay")
    reps = design.replicates
    assert reps is not None
    x = None if plan.linear is None else np.asarray(plan.linear.matrix, dtype=np.float64)
    if isinstance(reps.scheme, RaoWu):
        from ..replicate._common import design_layout

        return raowu_cell_tables(reps.scheme.seed, plan.base, v, domain, n_domains, plan.cell,
                                 plan.n_cells, plan.live, design_layout(design), 0,
                                 reps.n_replicates, with_cells=with_cells, x=x)
    from ..replicate._common import compact
    from ..variance.replicate import replicate_totals

    shadow = _shadow(design, plan.base)
    cells = moments = None
    if with_cells:
        cv = np.ones((design.n, 1), dtype=np.uint8) if x is None else _moment_values(x)
        mom = replicate_totals(shadow, cv, domain=plan.cell, n_domains=plan.n_cells)
        cells = mom[:, :, 0].copy()
        moments = None if x is None else mom[:, :, 1:].copy()
    code, pairs = _pair_codes(np.asarray(domain, dtype=np.int64), plan.cell, plan.live,
                              n_domains, plan.n_cells)
    vc, where = compact(v if x is None else _linear_values(v, x))
    u = np.ascontiguousarray(
        replicate_totals(shadow, vc, domain=code, n_domains=pairs.size).transpose(1, 2, 0))
    return CellTables(cells=cells, pairs=pairs, totals=u, columns=where, n_domains=int(n_domains),
                      n_cells=plan.n_cells, moments=moments)


# ------------------------------------------------- phase (b): algebra on the tables
def replay_factors(plan: CellReplay, table: np.ndarray) -> np.ndarray:
    """Factors ``f[r, kappa]`` (R, n_cells) from the summed replicate cell table (R, n_cells).

    The steps on cells run on the table in order (their ``apply``, so a
    replicate that does not converge is reported by number under the step's
    own policy); the factor is the ratio of the final cell weight to
    :math:`B_{r\\kappa}`, 0 where :math:`B_{r\\kappa} = 0`.
    """
    f = _replay_steps(plan, np.asarray(table, dtype=np.float64), 0)
    f.setflags(write=False)
    return f


def linear_lambda(plan: CellReplay, factors: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Coefficients ``lambda_r`` (R, p) of a final unbounded linear calibration.

    .. math:: \\lambda_r = \\Big(\\sum_\\kappa f_{r\\kappa} S^{xx}_{r\\kappa}\\Big)^{-1}
              \\Big(T - \\sum_\\kappa f_{r\\kappa} S^{x}_{r\\kappa}\\Big),

    with :math:`S^{x}_{r\\kappa}`, :math:`S^{xx}_{r\\kappa}` the replicate
    totals of :math:`x` and :math:`x x'` by combined cell under
    :math:`b_i m_{ri}` (``moments``) and :math:`f` the factors of the steps
    before it: the replicate's :math:`X'W_r X` and :math:`X'W_r 1` of
    :func:`satsample.weighting.calibrate._linear_closed_form`, summed by cell.
    The g-weights are :math:`1 + x_i'\\lambda_r`.
    """
    step = plan.linear
    assert step is not None
    p = step.matrix.shape[1]
    f = np.asarray(factors, dtype=np.float64)
    sx = np.einsum("rc,rcp->rp", f, moments[:, :, :p])
    sxx = np.einsum("rc,rcm->rm", f, moments[:, :, p:])
    t = np.empty((f.shape[0], p, p))
    m = 0
    for a in range(p):
        for b in range(a, p):
            t[:, a, b] = t[:, b, a] = sxx[:, m]
            m += 1
    rhs = np.asarray(step.totals, dtype=np.float64)[None, :] - sx
    try:
        lam = np.linalg.solve(t, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError as exc:
        from .._validation import SatsampleError

        raise SatsampleError(
            "calibrate: the weighted cross-product of the calibration model matrix is "
            "singular (collinear calibration variables, or a level with no weight)"
        ) from exc
    lam.setflags(write=False)
    return lam


def finish(tables: CellTables, plan: CellReplay, factors: np.ndarray | None = None,
           lam: np.ndarray | None = None) -> np.ndarray:
    """Phase (b): replicate totals by domain ``(R, n_domains, k)`` from summed tables.

    .. math:: T_{rgj} = \\sum_{\\kappa} f_r(\\kappa) \\, U_{r(g,\\kappa)j}

    and, after a final linear calibration,
    :math:`T_{rgj} = \\sum_\\kappa f_r(\\kappa) (U_{r(g,\\kappa)j} + \\sum_a
    \\lambda_{ra} U^{x_a}_{r(g,\\kappa)j})` with :math:`U^{x_a}` the totals of
    :math:`x_a v_j`.  ``factors`` (R, n_cells) and ``lam`` (R, p): if known
    (:func:`replay_factors`, :func:`linear_lambda`), else computed from
    ``tables.cells`` and ``tables.moments``.
    """
    from .._kernels.cells import _combine_pairs
    from ..replicate._common import expand

    if factors is None:
        if tables.cells is None:
            raise ValueError("tables without a cell table need the factors")
        factors = replay_factors(plan, tables.cells)
    u = np.ascontiguousarray(tables.totals, dtype=np.float64)  # (P, k_c, R)
    columns = tables.columns
    if plan.linear is not None:
        if lam is None:
            if tables.moments is None:
                raise ValueError("tables without cell moments need the calibration coefficients")
            lam = linear_lambda(plan, factors, tables.moments)
        u = u[:, columns]
        p = lam.shape[1]
        k = u.shape[1] // (p + 1)
        base = u[:, :k].copy()
        for a in range(p):
            base += lam[None, None, :, a] * u[:, (a + 1) * k:(a + 2) * k]
        u, columns = base, np.arange(k, dtype=np.int64)
    c = tables.n_cells
    out = _combine_pairs(u, np.ascontiguousarray(np.asarray(factors, dtype=np.float64).T),
                         tables.pairs % c, tables.pairs // c, int(tables.n_domains))
    return np.ascontiguousarray(expand(out.transpose(2, 0, 1), columns))


# ------------------------------------------------- in memory: (a) then (b)
def _known(design: SurveyDesign, e: _Entry, tables: CellTables | None = None) -> None:
    """Fill the cached factors (and calibration coefficients) of a design from its tables.

    Without ``tables``, one pass for the cell table only.
    """
    plan = e.plan
    assert isinstance(plan, CellReplay)
    if tables is None:
        none = np.full(design.n, -1, dtype=np.int64)
        tables = cell_tables(design, np.zeros((design.n, 0), dtype=np.uint8), none, 1)
    assert tables.cells is not None
    f = replay_factors(plan, tables.cells)
    if plan.linear is not None:
        assert tables.moments is not None
        e.lam = linear_lambda(plan, f, tables.moments)
    e.factors = f


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


def factored_totals(design: SurveyDesign, plan: CellReplay, factors: np.ndarray,
                    v: np.ndarray, domain: np.ndarray, n_domains: int) -> np.ndarray:
    """Lazy Rao-Wu totals ``(R, n_domains, k)`` with known cell factors: one pass by domain.

    .. math:: T_{rgj} = \\sum_{i:\\, g_i = g} b_i \\, m_{ri} \\, f_r(\\kappa_i) \\, v_{ij}

    The kernel scales each row's multipliers by its cell's factors (rows of
    dead cells, factor 0 in every replicate, are skipped).  The same totals as
    :func:`finish` on the (domain x cell) tables, summed in another order.
    """
    from ..replicate._common import design_layout
    from ..replicate.bootstrap import raowu_totals

    reps = design.replicates
    assert reps is not None and isinstance(reps.scheme, RaoWu)
    dom = np.asarray(domain, dtype=np.int64)
    dom = np.where(plan.live[plan.cell], dom, -1)
    f = np.ascontiguousarray(np.asarray(factors, dtype=np.float64).T)  # (n_cells, R)
    return raowu_totals(reps.scheme.seed, plan.base, v, dom, n_domains, design_layout(design), 0,
                        reps.n_replicates, fcell=plan.cell, factor=f)


def _short_pairs(plan: CellReplay, domain: np.ndarray, n_domains: int) -> bool:
    """Whether the rows counted fall in fewer than ``_PAIR_RUN`` rows per (domain, cell) pair."""
    code, pairs = _pair_codes(np.asarray(domain, dtype=np.int64), plan.cell, plan.live,
                              n_domains, plan.n_cells)
    return bool(np.count_nonzero(code >= 0) < _PAIR_RUN * max(pairs.size, 1))


def cell_replay_totals(design: SurveyDesign, v: np.ndarray, domain: np.ndarray,
                       n_domains: int) -> np.ndarray | None:
    """Replicate totals ``(R, n_domains, k)`` by the cell replay, or None (use the block path).

    ``v`` (n, k) and ``domain`` (n,) as checked by
    :func:`satsample.variance.replicate.replicate_totals`.  Lazy Rao-Wu with
    every step on cells, when the (domain x cell) pairs hold fewer than
    ``_PAIR_RUN`` rows on average: the factors (one pass for the cell table,
    once per design), then :func:`factored_totals`.
    Otherwise phase (a) (:func:`cell_tables`: one pass giving the cell table
    and the totals by (domain, cell)) then phase (b) (:func:`finish`); domains
    are taken in groups when the pair totals would exceed ``_PAIR_BUDGET``
    bytes.  Both give the same totals (summed in another order).
    """
    plan = cell_replay_plan(design)
    if not isinstance(plan, CellReplay):
        return None
    reps = design.replicates
    assert reps is not None
    e = _entry(design)
    assert e is not None
    # the pass is chosen from the design and the call alone (not from what is cached), so
    # that a repeated call gives the same bits
    if (_FACTORED and isinstance(reps.scheme, RaoWu) and plan.linear is None
            and _short_pairs(plan, domain, n_domains)):
        if e.factors is None:
            _known(design, e)
        assert e.factors is not None
        return factored_totals(design, plan, e.factors, v, domain, n_domains)
    k_eff = v.shape[1] * (1 if plan.linear is None else 1 + plan.linear.matrix.shape[1])
    out = np.zeros((reps.n_replicates, n_domains, v.shape[1]))
    for chunk in _domain_chunks(design, plan, domain, n_domains, k_eff):
        part = domain
        if chunk.size < n_domains:
            inside = np.zeros(n_domains, dtype=bool)
            inside[chunk] = True
            part = np.where((domain >= 0) & inside[np.maximum(domain, 0)], domain, -1)
        tables = cell_tables(design, v, part, n_domains, with_cells=e.factors is None)
        if e.factors is None:
            _known(design, e, tables)
        got = finish(tables, plan, e.factors, e.lam)
        if chunk.size < n_domains:
            out[:, chunk] = got[:, chunk]
        else:
            out = got
    return out
