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
every replicate total follows in one more pass over the data:

.. math:: T_{rgj} = \\sum_i b_i m_{ri} f_r(\\kappa_i) v_{ij} 1\\{g_i = g\\}.

For the lazy Rao-Wu bootstrap that pass is the kernel
:func:`satsample._kernels.cells._raowu_cell_totals`; for the lazy jackknife
the closed-form totals by (domain x combined cell) are combined with the
factors.  Trimming (which acts on individual weights), steps of unknown type,
calibration on many distinct rows (continuous variables) and more than
``_MAX_CELLS`` combined cells keep the block path.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from itertools import pairwise
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

__all__ = ["CellReplay", "cell_replay_plan", "cell_replay_totals", "replay_path"]

_ENABLED = True  # tests switch the cell path off to compare with the block path
_MAX_CELLS = 20_000  # combined cells; more -> block path
_MAX_TABLE = 2**26  # entries of the (replicates x cells) factor table (512 MiB); more -> blocks
_PAIR_BUDGET = 2**28  # bytes of (replicates x pairs x columns) totals per chunk (jackknife)
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


def cell_factors(design: SurveyDesign) -> np.ndarray:
    """Factors ``f[r, kappa]`` of every combined cell in every replicate, (R, n_cells).

    The replicate cell table :math:`B_{r\\kappa}` comes from one kernel pass
    (:func:`satsample._kernels.cells._raowu_cell_table` for the Rao-Wu
    bootstrap, the closed-form jackknife totals by cell otherwise);
    the steps run on it in order (their ``apply``, so a replicate that does
    not converge is reported by number under the step's own policy); the
    factor is the ratio of the final cell weight to :math:`B_{r\\kappa}`, 0
    where :math:`B_{r\\kappa} = 0`.  Cached per design.
    """
    from ..variance.replicate import replicate_totals

    e = _entry(design)
    if e is None or not isinstance(e.plan, CellReplay):
        raise ValueError("the design has no cell replay")
    if e.factors is not None:
        return e.factors
    plan = e.plan
    reps = design.replicates
    assert reps is not None
    if isinstance(reps.scheme, RaoWu):
        from .._kernels.cells import _raowu_cell_table
        from ..replicate._common import design_layout, task_block

        lay = design_layout(design)
        table = _raowu_cell_table(np.uint64(reps.scheme.seed), plan.base, plan.cell,
                                  plan.n_cells, lay.order, lay.psu_local, lay.strat_start,
                                  lay.strat_code, lay.strat_npsu, 0, reps.n_replicates,
                                  task_block(reps.n_replicates))
        f = _replay_steps(plan, table, 0)
        f.setflags(write=False)
        e.factors = f
        return f
    ones = np.ones((design.n, 1), dtype=np.uint8)
    table = replicate_totals(_shadow(design, plan.base), ones, domain=plan.cell,
                             n_domains=plan.n_cells)[:, :, 0]
    f = _replay_steps(plan, table, 0)
    f.setflags(write=False)
    e.factors = f
    return f


def _pair_totals(design: SurveyDesign, plan: CellReplay, f: np.ndarray, v: np.ndarray,
                 domain: np.ndarray, n_domains: int) -> np.ndarray:
    """Totals by (domain x combined cell) under the base replicate weights, combined with ``f``."""
    from ..variance.replicate import replicate_totals

    reps = design.replicates
    assert reps is not None
    n_rep, c, k = reps.n_replicates, plan.n_cells, v.shape[1]
    out = np.zeros((n_rep, n_domains, k))
    keep = domain >= 0
    if not keep.any():
        return out
    pk = (domain * c + plan.cell)[keep]
    codes, n_pairs = _dense(pk, n_domains * c)  # pairs in (domain, cell) order
    pair = np.full(domain.size, -1, dtype=np.int64)
    pair[keep] = codes
    upair = np.empty(n_pairs, dtype=np.int64)
    upair[codes] = pk
    p_dom = upair // c
    p_cell = upair % c
    shadow = _shadow(design, plan.base)
    # chunks of whole domains of about `per` pairs each (memory R x pairs x k per chunk)
    per = max(1, _PAIR_BUDGET // max(1, 8 * n_rep * k))
    bounds = np.r_[np.flatnonzero(np.r_[True, p_dom[1:] != p_dom[:-1]]), n_pairs]
    edges = [0]
    for prev, b in pairwise(bounds):
        if b - edges[-1] > per and prev > edges[-1]:
            edges.append(int(prev))
    edges.append(n_pairs)
    for p0, p1 in pairwise(edges):
        key = np.where((pair >= p0) & (pair < p1), pair - p0, -1)
        u = replicate_totals(shadow, v, domain=key, n_domains=p1 - p0)
        u *= f[:, p_cell[p0:p1], None]
        starts = np.flatnonzero(np.r_[True, p_dom[p0 + 1:p1] != p_dom[p0:p1 - 1]])
        out[:, p_dom[p0:p1][starts]] = np.add.reduceat(u, starts, axis=1)
    return out


def cell_replay_totals(design: SurveyDesign, v: np.ndarray, domain: np.ndarray,
                       n_domains: int) -> np.ndarray | None:
    """Replicate totals ``(R, n_domains, k)`` by the cell replay, or None (use the block path).

    ``v`` (n, k) and ``domain`` (n,) as checked by
    :func:`satsample.variance.replicate.replicate_totals`.
    """
    plan = cell_replay_plan(design)
    if not isinstance(plan, CellReplay):
        return None
    reps = design.replicates
    assert reps is not None
    dom = domain if plan.live.all() else np.where(plan.live[plan.cell], domain, -1)
    if not isinstance(reps.scheme, RaoWu):
        return _pair_totals(design, plan, cell_factors(design), v, dom, n_domains)
    from .._kernels.cells import _raowu_cell_totals
    from ..replicate._common import compact, design_layout, expand, task_block

    f = cell_factors(design)
    lay = design_layout(design)
    vc, where = compact(v)
    out = _raowu_cell_totals(np.uint64(reps.scheme.seed), plan.base, vc, dom, plan.cell,
                             np.ascontiguousarray(f.T), lay.order, lay.psu_local,
                             lay.strat_start, lay.strat_code, lay.strat_npsu, 0,
                             reps.n_replicates, n_domains, task_block(reps.n_replicates))
    return expand(out, where)
