"""Weighting steps on a Dask design: the in-memory steps on tables reduced over the partitions.

The public steps (:func:`~satsample.weighting.adjust_nonresponse`,
:func:`~satsample.weighting.poststratify`, :func:`~satsample.weighting.rake`,
:func:`~satsample.weighting.calibrate`, :func:`~satsample.weighting.trim`)
hand a :class:`~satsample.distributed.DaskSurveyDesign` to :func:`dispatch`.
Nothing here re-implements a step: each runs the in-memory core of the step
(``_*_result`` in the step's module, or its row-wise and summed parts) on
quantities that are sums over rows, computed by
:func:`satsample.distributed.reduce` (one task per partition, a tree of
additions):

* **steps on categorical cells** (nonresponse classes, post-strata, raking
  margins, calibration on categorical variables): the new weights of a row
  depend on the table of weighted cells only.  One reduction gives that table
  (one row per distinct combination of the step's variables, with its number
  of rows and its sum of weights); the step's in-memory core runs on it as if
  its rows were the data (``counts`` rows behind each, so counts in messages
  and records are counts of rows), giving the new weight of every cell; the
  factor ``new / old`` of its cell multiplies each row's weight, partition by
  partition (:func:`satsample.distributed.with_weight_factors`).  Raking
  iterates on the cell table: one reduction in all.
* **calibration on numeric variables**: linear calibration is one reduction
  (:math:`X'DX`, :math:`X'd`); raking, logit and bounded linear calibration
  run the in-memory Newton solver (:func:`~satsample.weighting.calibrate.newton`)
  with every iteration's sums (:func:`~satsample.weighting.calibrate.row_moments`)
  reduced over the partitions.
* **trimming**: every pass is one reduction of its sums
  (:func:`~satsample.weighting.trim.trim_local`); the partitions replay the
  earlier passes from their rows and the passes' global shares.

After every step the weights are also kept in a private column
``__satsample_w<j>__`` (step *j*), so the residualizers of later Taylor
variance passes can read the weights before and after their step.

**Taylor variance.**  Post-stratification, raking and calibration record a
Dask residualizer (:class:`DaskResidualizer`): ``cross(part, x)`` returns the
in-memory residualizer's additive cross-products on a partition (one column
per column of ``x``), ``residualize(part, x, cross_total)`` the residuals of
the partition's rows given their sum (the engine,
:mod:`satsample.distributed.estimators`, sums ``cross`` over the partitions
in between).  The in-memory residualizers are these same two methods on all
rows; what does not depend on the scores (the cell totals of the weights
before post-stratification, raking's ratios of weights by combined cell, the
inverse of :math:`X'DX`) is computed once from the step's own tables.

**Replicates.**  Lazy replicates (the Rao-Wu bootstrap and the jackknife of a
Dask design) replay the steps on categorical cells by the cell path of
:mod:`satsample.weighting._cell_replay`, in its two phases.  When a step is
recorded on a design with replicates, the combined cells of all its steps get
global codes (one reduction), every partition computes its replicate cell
table (phase (a)), and the steps run on the summed table (phase (b)); the
factors of the combined cells are kept with the steps (:class:`DaskReplay`),
so a replicate that does not converge is reported by the step, by replicate
number, as when materialised replicate weights are weighted in memory.  The
engine's replicate passes are then additive: on each partition the in-memory
``replicate_totals`` takes the cell path with these factors
(``_cell_replay._entry`` reads them from the last step).  Trimming and
bounded or nonlinear calibration on numeric variables cannot be replayed on
cell tables (in memory they take the block path, which needs materialised
replicate weights): on a Dask design with replicates they raise a
:class:`~satsample.SatsampleError` suggesting Taylor variance.  An unbounded
linear calibration on numeric variables as the last step is replayed through
replicate totals of its model matrix (``CellReplay.linear``), as in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError
from ..design import Stage, SurveyDesign, WeightStep
from ._common import StepResult

__all__ = ["DaskCellStep", "DaskReplay", "DaskResidualizer", "dispatch"]

_PRIVATE = "__satsample_"


def _snapshot(j: int) -> str:
    """Private column holding the weights after weighting step ``j`` (1-based)."""
    return f"{_PRIVATE}w{j}__"


# ------------------------------------------------------------------ entry point
def dispatch(design: Any, step: str, *args: Any, **kwargs: Any) -> Any:
    """Run weighting step ``step`` on a Dask design; ``None`` when ``design`` is not one."""
    if type(design).__name__ != "DaskSurveyDesign":
        return None
    from ..distributed import DaskSurveyDesign

    if not isinstance(design, DaskSurveyDesign):  # pragma: no cover - a foreign class
        return None
    reps = design.replicates
    if step != "calibration_check" and reps is not None:
        from ..replicate.bootstrap import RaoWu
        from ..replicate.jackknife import Jackknife

        if not isinstance(reps.scheme, (RaoWu, Jackknife)):
            raise SatsampleError(
                f"{step}: the {reps.n_replicates} {reps.kind!r} replicate weights of this Dask "
                "design are columns of the frame (declare_replicates); a weighting step cannot "
                "be applied to them on Dask: weight the design first and declare replicate "
                "weights that already include the weighting, or use bootstrap()/jackknife(), "
                "whose replicates replay the steps")
    return _STEPS[step](design, *args, **kwargs)


def _dist() -> Any:
    from .. import distributed

    return distributed


def _none_safe(combine: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """``combine`` for :func:`satsample.distributed.reduce`: ``None`` is an empty partition."""
    if a is None:
        return b
    if b is None:
        return a
    return combine(a, b)


def _reduce(design: Any, fn: Callable[[SurveyDesign], Any],
            combine: Callable[[Any, Any], Any] | None = None) -> Any:
    """:func:`satsample.distributed.reduce` (element-wise sums unless ``combine`` is given)."""
    if combine is None:
        return _dist().reduce(design, fn)
    return _dist().reduce(design, fn, combine=partial(_none_safe, combine))


def _concat_lists(a: list[Any], b: list[Any]) -> list[Any]:
    return a + b


def _user_columns(design: Any) -> list[str]:
    return [c for c in design.frame._meta.columns if not str(c).startswith(_PRIVATE)]


def _weights_before(part: SurveyDesign, j: int) -> np.ndarray:
    """Weights of the partition's rows before weighting step ``j`` (1-based)."""
    if j <= 1:
        return np.asarray(part.design_weights, dtype=np.float64)
    return part.data[_snapshot(j - 1)].to_numpy(dtype=np.float64)


def _weights_after(part: SurveyDesign, j: int) -> np.ndarray:
    return part.data[_snapshot(j)].to_numpy(dtype=np.float64)


def _record(design: Any, fn: Callable[[SurveyDesign], np.ndarray], res: StepResult, *,
            mode: str = "factors", calibration: Any = None, replicate_step: Any = None) -> Any:
    """The new Dask design: weights by partition, the step recorded, the weights kept."""
    step = WeightStep(method=res.method, params=tuple(res.params.items()),
                      converged=res.converged, n_iter=res.n_iter, message=res.message)
    out = _dist().with_weight_factors(design, fn, step=step, calibration=calibration,
                                      replicate_step=replicate_step, mode=mode)
    from ..distributed.design import WEIGHT

    col = _snapshot(len(out.history) - 1)
    out = replace(out, frame=out.frame.assign(**{col: out.frame[WEIGHT]}))
    if out.replicates is not None:
        out = _prepare_replay(out)
    return out


def _no_replay(design: Any, step: str, why: str) -> None:
    """Refuse a step the lazy replicates of a Dask design cannot replay."""
    reps = design.replicates
    if reps is not None:
        raise SatsampleError(
            f"{step}: the {reps.n_replicates} {reps.kind} replicates of a Dask design cannot "
            f"replay {why} (its replay needs materialised replicate weights, which the Dask "
            "backend never builds), so replicate variance is unavailable for this step on "
            "Dask; weight a design without replicates and use Taylor variance (variance="
            "'taylor'), or run the analysis in memory"
        )


# ------------------------------------------------------------------ cell tables
_N = f"{_PRIVATE}n__"
_W = f"{_PRIVATE}wsum__"
_P = f"{_PRIVATE}npos__"
_SUMS = [_N, _W, _P]


def _cell_rows(part: SurveyDesign, keys: tuple[str, ...]) -> pd.DataFrame:
    """One partition's table of cells: key values, rows and sum of the current weights."""
    data = part.data
    w = np.asarray(part.weights, dtype=np.float64)
    if not keys:
        return pd.DataFrame({_N: [part.n], _W: [float(w.sum())], _P: [int((w > 0).sum())]})
    df = data[list(keys)].assign(**{_N: np.ones(part.n, dtype=np.int64), _W: w,
                                    _P: (w > 0).astype(np.int64)})
    return (df.groupby(list(keys), dropna=False, sort=False, observed=True)[_SUMS].sum()
            .reset_index())


def _concat_cells(keys: tuple[str, ...], a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([a, b], ignore_index=True)
    if not keys:
        return both.sum().to_frame().T.astype({_N: np.int64, _P: np.int64})
    return (both.groupby(list(keys), dropna=False, sort=False, observed=True)[_SUMS].sum()
            .reset_index())


@dataclass(frozen=True, kw_only=True, eq=False)
class _Cells:
    """The table of weighted cells of a Dask design (the rows a step's core runs on)."""

    keys: tuple[str, ...]
    frame: pd.DataFrame  # user columns (keys with their values, the others all missing)
    counts: np.ndarray  # rows behind each cell
    weights: np.ndarray  # sum of the current weights of those rows
    positive: np.ndarray  # rows with a positive weight

    def design(self) -> SurveyDesign:
        """An in-memory design whose rows are the cells (what the steps' cores read)."""
        m = self.frame.shape[0]
        zero = np.zeros(m, dtype=np.int64)
        stage = Stage(stratum=zero, cluster=np.arange(m, dtype=np.int64),
                      n_sampled=np.full(m, m, dtype=np.int64), popsize=None)
        w = np.array(self.weights, dtype=np.float64)
        w.setflags(write=False)
        return SurveyDesign(data=self.frame, weights=w, design_weights=w, stages=(stage,),
                            strata_labels=np.array(["(cells)"], dtype=object))

    def lookup(self) -> _Lookup:
        return _Lookup(keys=self.keys, table=self.frame[list(self.keys)].reset_index(drop=True))


def _cells(design: Any, keys: Sequence[str]) -> _Cells:
    """One reduction: the table of weighted cells of ``keys`` (missing key columns are skipped)."""
    user = _user_columns(design)
    present = tuple(k for k in dict.fromkeys(keys) if k in user)
    tab = _reduce(design, partial(_cell_rows, keys=present),
                         combine=partial(_concat_cells, present))
    frame = tab[list(present)].reindex(columns=user) if present else pd.DataFrame(
        index=range(tab.shape[0]), columns=user)
    order = _sort_order(frame, present)
    frame = frame.iloc[order].reset_index(drop=True)
    return _Cells(keys=present, frame=frame, counts=tab[_N].to_numpy(dtype=np.int64)[order],
                  weights=tab[_W].to_numpy(dtype=np.float64)[order],
                  positive=tab[_P].to_numpy(dtype=np.int64)[order])


def _sort_order(frame: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """A deterministic order of the cells (by the text of their keys), whatever the partitions."""
    if not keys or frame.shape[0] < 2:
        return np.arange(frame.shape[0])
    text = [np.array([str(v) for v in frame[k]], dtype=str) for k in reversed(keys)]
    return np.lexsort(text)


@dataclass(frozen=True, kw_only=True, eq=False)
class _Lookup:
    """Which cell of a table of cells each row of a partition belongs to."""

    keys: tuple[str, ...]
    table: pd.DataFrame

    def rows(self, data: pd.DataFrame) -> np.ndarray:
        """Index of each row's cell in ``table`` (every row has one)."""
        if not self.keys:
            return np.zeros(data.shape[0], dtype=np.int64)
        if len(self.keys) == 1:
            k = self.keys[0]
            idx = pd.Index(self.table[k]).get_indexer(data[k])
        else:
            mi = pd.MultiIndex.from_frame(self.table[list(self.keys)])
            idx = mi.get_indexer(pd.MultiIndex.from_frame(data[list(self.keys)]))
        if (idx < 0).any():  # pragma: no cover - the table was built from these rows
            raise SatsampleError("internal error: a row's weighting cell is not in the cell table")
        return idx.astype(np.int64)


def _cell_factor(lookup: _Lookup, factors: np.ndarray, part: SurveyDesign) -> np.ndarray:
    return factors[lookup.rows(part.data)]


def _factors(res: StepResult, cells: _Cells) -> np.ndarray:
    new = np.asarray(res.weights, dtype=np.float64)
    return np.divide(new, cells.weights, out=np.zeros_like(new), where=cells.weights > 0)


@dataclass(frozen=True, kw_only=True, eq=False)
class DaskCellStep:
    """A weighting step of a Dask design, kept for the replicates (cell path).

    Attributes
    ----------
    method : str
        The step (``"nonresponse"``, ``"poststratify"``, ``"rake"``, ``"calibrate"``).
    lookup : _Lookup
        The step's table of cells and how to find a row's cell.
    step : object
        The in-memory replay step whose rows are those cells
        (:class:`~satsample.weighting.NonresponseStep`...).
    """

    method: str
    lookup: _Lookup | None
    step: Any
    replay: DaskReplay | None = None
    matrix: Callable[[SurveyDesign], np.ndarray] | None = None

    def cell_entry(self, part: SurveyDesign, base: np.ndarray
                   ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """The cell replay of a partition's rows (read by ``_cell_replay``)."""
        if self.replay is None:  # pragma: no cover - only the last step is read
            raise SatsampleError(f"{self.method}: the replay on replicates was not prepared")
        return self.replay.entry(part, base)

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Not available: the replicate weights of a Dask design are never materialised."""
        raise SatsampleError(
            f"{self.method}: the replicate weights of a Dask design are not materialised; "
            "its replicates replay the steps on cell tables only")


# ------------------------------------------------------------------ residualizers
def _build_poststrat(lookup: _Lookup, step: Any, den: np.ndarray, j: int,
                     part: SurveyDesign) -> Any:
    from .poststratify import PostStratResidualizer

    idx = lookup.rows(part.data)
    return PostStratResidualizer(cells=step.codes[idx], n_cells=step.n_cells,
                                 old_weights=_weights_before(part, j),
                                 new_weights=_weights_after(part, j), den=den)


def _build_rake(lookup: _Lookup, cell_resid: Any, cell_old: np.ndarray, keys: np.ndarray,
                fixed: np.ndarray, j: int, part: SurveyDesign) -> Any:
    from .rake import RakeResidualizer

    idx = lookup.rows(part.data)
    old = _weights_before(part, j)
    margins = []
    for codes, n_cells, w_cell in cell_resid.margins:
        f = np.divide(w_cell, cell_old, out=np.zeros_like(w_cell), where=cell_old > 0)
        margins.append((codes[idx], n_cells, old * f[idx]))
    return RakeResidualizer(margins=tuple(margins), rounds=cell_resid.rounds, cells=keys,
                            fixed=fixed)


def _build_greg_cells(lookup: _Lookup, cell_resid: Any, j: int, part: SurveyDesign) -> Any:
    from .calibrate import GregResidualizer

    idx = lookup.rows(part.data)
    return GregResidualizer.build(cell_resid.matrix[idx], _weights_before(part, j),
                                  cell_resid.g[idx], inverse=cell_resid.inverse)


@dataclass(frozen=True, kw_only=True, eq=False)
class DaskResidualizer:
    """The Taylor residualizer of a weighting step on a Dask design.

    ``build(part)`` gives the in-memory residualizer of a partition's rows
    (their cells, weights before and after the step, and the step's global
    quantities); the engine sums ``cross`` over the partitions, then calls
    ``residualize`` on each with the sum.

    Attributes
    ----------
    method : str
        The weighting step.
    build : callable
        ``build(part: SurveyDesign) -> residualizer`` with ``cross(x)`` and
        ``apply(x, cross_total)`` (picklable).
    """

    method: str
    build: Callable[[SurveyDesign], Any]

    def cross(self, part: SurveyDesign, x: np.ndarray) -> np.ndarray:
        """The partition's additive cross-products of the weighted scores ``x`` (n_part, k)."""
        return self.build(part).cross(x)

    def residualize(self, part: SurveyDesign, x: np.ndarray, cross_total: np.ndarray
                    ) -> np.ndarray:
        """Residuals of the partition's weighted scores given the summed :meth:`cross`."""
        return self.build(part).apply(x, cross_total)


# ------------------------------------------------------------------ nonresponse
def _adjust_nonresponse(design: Any, responded: str, *, classes: Any = None,
                        method: str = "classes", covariates: Any = None, n_classes: int = 5,
                        weighted: bool = True) -> Any:
    from .._validation import as_column_list, check_choice
    from .controls import rows_behind
    from .nonresponse import _nonresponse_result

    check_choice(method, name="method", allowed=("classes", "propensity"))
    if method != "classes":
        raise SatsampleError(
            "adjust_nonresponse: method='propensity' is not available on a Dask design (the "
            "propensity model is fitted in memory); form the classes first, or use "
            "method='classes' with classes=")
    names = as_column_list(classes)
    cells = _cells(design, [*names, responded])
    with rows_behind(cells.counts):
        res = _nonresponse_result(cells.design(), responded, classes=classes, method=method,
                                  covariates=covariates, n_classes=n_classes,
                                  weighted=weighted, counts=cells.counts)
    lookup = cells.lookup()
    return _record(design, partial(_cell_factor, lookup, _factors(res, cells)), res,
                   replicate_step=DaskCellStep(method=res.method, lookup=lookup,
                                               step=res.replicate_step))


# ------------------------------------------------------------------ post-stratification
def _poststratify(design: Any, strata: Any, population: Any, **options: Any) -> Any:
    from .._validation import as_column_list
    from .controls import rows_behind
    from .poststratify import _poststratify_result

    is_partial = options.get("partial", False)
    cells = _cells(design, as_column_list(strata))
    with rows_behind(cells.counts):
        res = _poststratify_result(cells.design(), strata, population, partial=is_partial,
                                   counts=cells.counts)
    lookup = cells.lookup()
    j = len(design.history)
    step = res.replicate_step
    den = np.bincount(step.codes, weights=cells.weights, minlength=step.n_cells)
    resid = DaskResidualizer(method="poststratify",
                             build=partial(_build_poststrat, lookup, step, den, j))
    return _record(design, partial(_cell_factor, lookup, _factors(res, cells)), res,
                   calibration=resid,
                   replicate_step=DaskCellStep(method=res.method, lookup=lookup,
                                               step=res.replicate_step))


# ------------------------------------------------------------------ raking
def _rake(design: Any, margins: Any, *, max_iter: int = 10, epsilon: float = 1.0,
          on_nonconvergence: str = "error") -> Any:
    from .controls import rows_behind
    from .rake import _rake_result, check_rake_options, margin_variables

    check_rake_options(max_iter, epsilon, on_nonconvergence)
    cells = _cells(design, margin_variables(margins))
    with rows_behind(cells.counts):
        res = _rake_result(cells.design(), margins, max_iter=max_iter, epsilon=epsilon,
                           on_nonconvergence=on_nonconvergence, counts=cells.counts)
    lookup = cells.lookup()
    j = len(design.history)
    cell_resid = res.calibration
    keys = np.unique(np.stack([c for c, _n, _w in cell_resid.margins], axis=1), axis=0)
    fixed = cell_resid.fixed_tables(counts=cells.positive)
    resid = DaskResidualizer(method="rake", build=partial(
        _build_rake, lookup, cell_resid, np.array(cells.weights), keys, fixed, j))
    return _record(design, partial(_cell_factor, lookup, _factors(res, cells)), res,
                   calibration=resid,
                   replicate_step=DaskCellStep(method=res.method, lookup=lookup,
                                               step=res.replicate_step))


# ------------------------------------------------------------------ calibration
def _calibrate(design: Any, totals: Any, *, variables: Any = None, distance: Any = "linear",
               bounds: Any = None, max_iter: int = 50, epsilon: float = 1e-7,
               on_nonconvergence: str = "error") -> Any:
    from .calibrate import calibration_options, calibration_variables

    opt = calibration_options(distance, bounds, max_iter, epsilon, on_nonconvergence)
    names = calibration_variables(totals, variables)
    meta = design.frame._meta
    from .controls import _is_numeric

    if any(v in meta.columns and _is_numeric(meta[v]) for v in names):
        if not opt.closed:
            _no_replay(design, "calibrate",
                       "bounded or nonlinear calibration on numeric variables")
        return _calibrate_numeric(design, totals, variables, names, opt)
    from .calibrate import _calibrate_result
    from .controls import rows_behind

    cells = _cells(design, names)
    with rows_behind(cells.counts):
        res = _calibrate_result(cells.design(), totals, variables, opt, counts=cells.counts)
    lookup = cells.lookup()
    j = len(design.history)
    resid = DaskResidualizer(method="calibrate",
                             build=partial(_build_greg_cells, lookup, res.calibration, j))
    return _record(design, partial(_cell_factor, lookup, _factors(res, cells)), res,
                   calibration=resid,
                   replicate_step=DaskCellStep(method=res.method, lookup=lookup,
                                               step=res.replicate_step))


def _levels_part(part: SurveyDesign, names: tuple[str, ...], numeric: tuple[bool, ...]
                 ) -> dict[str, Any]:
    """Per variable: distinct values and missing rows (factors), non-finite rows (numbers)."""
    out: dict[str, Any] = {}
    for v, num in zip(names, numeric, strict=True):
        s = part.data[v]
        if num:
            vals = s.to_numpy(dtype=np.float64)
            out[v] = ("numeric", int((~np.isfinite(vals)).sum()), None)
        else:
            out[v] = ("factor", int(s.isna().sum()), s.dropna().drop_duplicates())
    return out


def _combine_levels(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for v in a:
        kind, na, vals = a[v]
        if kind == "numeric":
            out[v] = (kind, na + b[v][1], None)
        else:
            out[v] = (kind, na + b[v][1],
                      pd.concat([vals, b[v][2]], ignore_index=True).drop_duplicates())
    return out


def _level_frame(meta: pd.DataFrame, names: list[str], levels: dict[str, Any]) -> pd.DataFrame:
    """A small frame with every level of each factor (for the model matrix's columns)."""
    size = max([1] + [len(levels[v][2]) for v in names if levels[v][0] == "factor"])
    cols: dict[str, Any] = {}
    for v in names:
        kind, _na, vals = levels[v]
        if kind == "numeric":
            cols[v] = np.zeros(size)
            continue
        vals = pd.Series(vals, dtype=meta[v].dtype).reset_index(drop=True)
        if vals.size == 0:
            cols[v] = pd.Series([None] * size, dtype=object)
            continue
        cols[v] = pd.concat([vals, vals.iloc[[0] * (size - vals.size)]], ignore_index=True)
    return pd.DataFrame(cols)


def _global_factors(pdf: pd.DataFrame, levels: dict[str, tuple[str, ...] | None]
                    ) -> pd.DataFrame:
    """The partition's factors as categoricals with the levels of the whole sample."""
    out = pdf.copy()
    for v, lv in levels.items():
        if lv is not None:
            out[v] = pd.Categorical(pdf[v].astype(str), categories=list(lv))
    return out


def _part_matrix(names: tuple[str, ...], levels: dict[str, Any], columns: tuple[str, ...],
                 keep: np.ndarray, part: SurveyDesign) -> np.ndarray:
    from .controls import model_matrix

    mm = model_matrix(_global_factors(part.data, levels), list(names))
    if mm.columns != columns:  # pragma: no cover - the levels are those of the whole sample
        raise SatsampleError("internal error: a partition's model matrix has other columns")
    return np.ascontiguousarray(mm.matrix[:, keep])


def _lin_sums(mat: Callable[[SurveyDesign], np.ndarray], part: SurveyDesign
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = mat(part)
    d = np.asarray(part.weights, dtype=np.float64)
    return (np.abs(m).T @ (d > 0).astype(np.float64), np.einsum("n,np,nq->pq", d, m, m), d @ m)


def _moments_part(mat: Callable[[SurveyDesign], np.ndarray], opt: Any, eta: np.ndarray,
                  part: SurveyDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .calibrate import row_moments

    m = mat(part)
    d = np.asarray(part.weights, dtype=np.float64)[None, :]
    return row_moments(m, d, opt.dist, opt.lo, opt.hi)(eta, np.zeros(eta.shape[0], np.int64))


def _combine_moments(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]
                     ) -> tuple[np.ndarray, ...]:
    return a[0] + b[0], a[1] + b[1], a[2] & b[2]


def _g_part(mat: Callable[[SurveyDesign], np.ndarray], opt: Any, lam: np.ndarray, closed: bool,
            part: SurveyDesign) -> np.ndarray:
    m = mat(part)
    if closed:
        return 1.0 + (lam[None, :] @ m.T)[0]
    return 1.0 + opt.dist.fm1(lam[None, :] @ m.T, opt.lo, opt.hi)[0]


def _g_stats_part(g_of: Callable[[SurveyDesign], np.ndarray], opt: Any, part: SurveyDesign
                  ) -> list[dict[str, float]]:
    from .calibrate import g_stats

    return [g_stats(g_of(part), np.asarray(part.weights, dtype=np.float64), opt.lo, opt.hi)]


def _build_greg_rows(mat: Callable[[SurveyDesign], np.ndarray],
                     g_of: Callable[[SurveyDesign], np.ndarray], inverse: np.ndarray, j: int,
                     part: SurveyDesign) -> Any:
    from .calibrate import GregResidualizer

    return GregResidualizer.build(mat(part), _weights_before(part, j), g_of(part),
                                  inverse=inverse)


def _calibrate_numeric(design: Any, totals: Any, variables: Any, names: list[str],
                       opt: Any) -> Any:
    """Calibration with numeric variables: Newton iterations, each one reduction."""
    from .._validation import check_columns, check_grouping
    from .calibrate import (
        _linear_lambda,
        _resolve_totals,
        calibration_params,
        combine_g_stats,
        conclude,
        cross_inverse,
        drop_empty_columns,
        newton,
        replay_step,
    )
    from .controls import _is_numeric, model_matrix, rows_behind

    user = _user_columns(design)
    meta = design.frame._meta[user]
    check_columns(meta, names, role="calibration")
    numeric = tuple(_is_numeric(meta[v]) for v in names)
    levels = _reduce(design, partial(_levels_part, names=tuple(names), numeric=numeric),
                            combine=_combine_levels)
    for v in names:  # the in-memory checks, in the in-memory order, with counts of rows
        kind, na, vals = levels[v]
        if na:
            bad = pd.DataFrame({v: [np.nan if kind == "numeric" else None]})
            with rows_behind(np.array([na])):
                model_matrix(bad, [v])
        if kind == "factor":
            check_grouping(vals, name=v, role="calibration")
    lev_frame = _level_frame(meta, names, levels)
    ones = np.ones(len(lev_frame), dtype=np.int64)
    mm, tot = _resolve_totals(totals, _Cells(keys=(), frame=lev_frame, counts=ones,
                                             weights=ones.astype(np.float64),
                                             positive=ones).design(), variables)
    fac_levels = {v: mm.levels[v] for v in names}
    pop = tot.to_numpy(dtype=np.float64)
    full = partial(_part_matrix, tuple(names), fac_levels, mm.columns,
                   np.ones(len(mm.columns), dtype=bool))
    col_w, xtdx, st = _reduce(design, partial(_lin_sums, full))
    keep, columns = drop_empty_columns(mm, pop, col_w)
    pop = pop[keep]
    mat = partial(_part_matrix, tuple(names), fac_levels, mm.columns, keep)
    xtdx, st = xtdx[np.ix_(keep, keep)], st[keep]
    if opt.closed:
        lam = _linear_lambda(xtdx[None], pop[None, :] - st[None, :])[0]
        converged, n_iter, achieved = True, 1, None
    else:
        def moments(eta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
            return _reduce(design, partial(_moments_part, mat, opt, eta),
                                  combine=_combine_moments)

        eta, it, rel = newton(moments, st[None, :], pop, opt.epsilon, opt.max_iter)
        lam, n_iter, achieved = eta[0], int(it[0]), float(rel[0])
        converged = achieved < opt.epsilon
    g_of = partial(_g_part, mat, opt, lam, opt.closed)
    stats = combine_g_stats(_reduce(design, partial(_g_stats_part, g_of, opt),
                                           combine=_concat_lists))
    message = conclude(opt, converged, achieved, stats)
    res = StepResult(weights=np.zeros(0), method="calibrate",
                     params=calibration_params(mm, columns, pop, opt, stats),
                     converged=converged, n_iter=n_iter, message=message)
    j = len(design.history)
    resid = DaskResidualizer(method="calibrate", build=partial(
        _build_greg_rows, mat, g_of, cross_inverse(xtdx), j))
    linear = None
    if design.replicates is not None:  # unbounded linear (others refused): replayed via x, x v
        linear = DaskCellStep(method="calibrate", lookup=None, matrix=mat,
                              step=replay_step(np.zeros((0, pop.size)), pop, opt))
    return _record(design, g_of, res, calibration=resid, replicate_step=linear)


# ------------------------------------------------------------------ trimming
def _positive_sum(part: SurveyDesign) -> np.ndarray:
    w = np.asarray(part.weights, dtype=np.float64)
    pos = w > 0
    return np.array([float(w[pos].sum()), float(pos.sum())])


def _trim_replay(opt: dict[str, Any], lo: float, hi: float, shares: tuple[np.ndarray, ...],
                 part: SurveyDesign) -> tuple[np.ndarray, np.ndarray]:
    """The partition's weights and fixed flags after the passes with ``shares``."""
    from .trim import trim_apply, trim_local

    w = np.asarray(part.weights, dtype=np.float64)[None, :]
    fixed = np.zeros(w.shape, dtype=bool)
    for share in shares:
        new, fixed, receive, _sums = trim_local(w, fixed, lo, hi)
        w = trim_apply(w, new, receive, share, opt["redistribute"])
    return w, fixed


def _trim_sums(opt: dict[str, Any], lo: float, hi: float, shares: tuple[np.ndarray, ...],
               part: SurveyDesign) -> np.ndarray:
    from .trim import trim_local

    w, fixed = _trim_replay(opt, lo, hi, shares, part)
    return trim_local(w, fixed, lo, hi)[3]


def _trim_unsettled(opt: dict[str, Any], lo: float, hi: float, shares: tuple[np.ndarray, ...],
                    part: SurveyDesign) -> np.ndarray:
    from .trim import unsettled

    w, fixed = _trim_replay(opt, lo, hi, shares, part)
    return unsettled(w, fixed, lo, hi).astype(np.int64)


def _trim_weights(opt: dict[str, Any], lo: float, hi: float, shares: tuple[np.ndarray, ...],
                  part: SurveyDesign) -> np.ndarray:
    return _trim_replay(opt, lo, hi, shares, part)[0][0]


def _trim(design: Any, *, lower: float | None = None, upper: float | None = None,
          relative: bool = False, redistribute: str = "equal", strict: bool = False,
          max_iter: int = 20, on_nonconvergence: str = "error") -> Any:
    from .trim import trim_bounds, trim_options, trim_result, trim_shares

    opt = trim_options(lower=lower, upper=upper, relative=relative, redistribute=redistribute,
                       strict=strict, max_iter=max_iter, on_nonconvergence=on_nonconvergence)
    s1, n_pos = _reduce(design, _positive_sum)
    lo, hi = trim_bounds(opt, s1 / n_pos if n_pos else None)
    _no_replay(design, "trim", "trimming")
    shares: tuple[np.ndarray, ...] = ()
    passes, trimmed, settled = 0, 0, True
    while True:  # the passes of trim._run, each one reduction
        sums = _reduce(design, partial(_trim_sums, opt, lo, hi, shares))
        n_out = int(sums[:, 0].sum())
        if n_out == 0:
            break
        shares = (*shares, trim_shares(sums, lo, hi, opt["redistribute"]))
        passes += 1
        trimmed += n_out
        if not opt["strict"]:
            break
        if passes >= opt["max_iter"]:
            settled = not _reduce(
                design, partial(_trim_unsettled, opt, lo, hi, shares)).any()
            break
    res = trim_result(None, opt, lo, hi, passes, trimmed, settled, design.n)
    return _record(design, partial(_trim_weights, opt, lo, hi, shares), res, mode="weights")


# ------------------------------------------------------------------ diagnostics
def _calibration_check(design: Any, controls: Any, *, variables: Any = None) -> pd.DataFrame:
    """:func:`~satsample.weighting.calibration_check` on the table of weighted cells."""
    from .._validation import as_column_list
    from .controls import margins_from_table, rows_behind
    from .diagnostics import calibration_check

    if isinstance(controls, pd.DataFrame) and {"variable", "level"} <= set(controls.columns):
        keys = [str(v) for v, _m in margins_from_table(controls)]
    else:
        keys = as_column_list(variables)
    cells = _cells(design, keys)
    with rows_behind(cells.counts):
        return calibration_check(cells.design(), controls, variables=variables)


_STEPS: dict[str, Callable[..., Any]] = {
    "adjust_nonresponse": _adjust_nonresponse,
    "poststratify": _poststratify,
    "rake": _rake,
    "calibrate": _calibrate,
    "trim": _trim,
    "calibration_check": _calibration_check,
}


# ------------------------------------------------------------------ replicates
@dataclass(frozen=True, kw_only=True, eq=False)
class DaskReplay:
    """The replay of a Dask design's weighting steps on its lazy replicates, prepared once.

    Attributes
    ----------
    lookups : tuple of _Lookup
        For every replayed step, how a row finds its cell of that step.
    keys : ndarray of int64, shape (K, J)
        The combined cells present in the whole sample: one cell of each of
        the J steps (sorted): their row number is the global combined cell.
    plan : CellReplay
        The steps on the combined cells (``n_cells = K``, ``live``); its row
        arrays are filled per partition (:meth:`entry`).
    factors : ndarray of float64, shape (R, K)
        The factor of every combined cell in every replicate, from the
        replicate cell table of the whole sample.
    lam : ndarray of float64, shape (R, p) or None
        After a final linear calibration on numeric variables: its
        coefficients in every replicate (``_cell_replay.linear_lambda``).
    matrix : callable or None
        That calibration's model matrix of a partition's rows.
    """

    lookups: tuple[_Lookup, ...]
    keys: np.ndarray
    plan: Any
    factors: np.ndarray
    lam: np.ndarray | None = None
    matrix: Callable[[SurveyDesign], np.ndarray] | None = None

    def entry(self, part: SurveyDesign, base: np.ndarray
              ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """The cell replay of a partition: its rows' global cells and base weights."""
        return _partition_plan(self.plan, self.lookups, self.keys, self.matrix, part,
                               base), self.factors, self.lam


def _partition_plan(plan: Any, lookups: tuple[_Lookup, ...], keys: np.ndarray,
                    matrix: Callable[[SurveyDesign], np.ndarray] | None, part: SurveyDesign,
                    base: np.ndarray) -> Any:
    out = replace(plan, cell=_global_cells(lookups, keys, part), base=base)
    if matrix is not None:
        out = replace(out, linear=replace(plan.linear, matrix=matrix(part)))
    return out


def _global_cells(lookups: tuple[_Lookup, ...], keys: np.ndarray, part: SurveyDesign
                  ) -> np.ndarray:
    if not lookups:  # no step on cells: one combined cell
        return np.zeros(part.n, dtype=np.int64)
    rows = _step_cells(lookups, part)
    mi = pd.MultiIndex.from_arrays(list(keys.T))
    idx = mi.get_indexer(pd.MultiIndex.from_arrays(list(rows.T)))
    if (idx < 0).any():  # pragma: no cover - the keys come from these rows
        raise SatsampleError("internal error: a row's combined cell was not collected")
    return idx.astype(np.int64)


def _step_cells(lookups: tuple[_Lookup, ...], part: SurveyDesign) -> np.ndarray:
    return np.stack([lk.rows(part.data) for lk in lookups], axis=1)


def _distinct_cells(lookups: tuple[_Lookup, ...], part: SurveyDesign) -> np.ndarray:
    if not lookups:
        return np.zeros((1, 0), dtype=np.int64)
    return np.unique(_step_cells(lookups, part), axis=0)


def _union_cells(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate([a, b]), axis=0)


def _cell_table_part(lookups: tuple[_Lookup, ...], keys: np.ndarray, plan: Any,
                     matrix: Callable[[SurveyDesign], np.ndarray] | None, part: SurveyDesign
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Phase (a) on a partition: its replicate cell table (R, K) under the base weights.

    With a final linear calibration, also the cell moments of its model matrix.
    """
    from ..variance.replicate import _step_base_weights
    from ._cell_replay import cell_tables

    mine = _partition_plan(plan, lookups, keys, matrix, part, _step_base_weights(part))
    none = np.full(part.n, -1, dtype=np.int64)
    t = cell_tables(part, np.zeros((part.n, 1), dtype=np.uint8), none, 1, plan=mine)
    return t.cells, (np.zeros(0) if t.moments is None else t.moments)


def _prepare_replay(design: Any) -> Any:
    """Prepare the replay of every step of a Dask design on its lazy replicates.

    Two reductions: the combined cells of all steps present in the sample
    (global codes), then the replicate cell table (phase (a) of
    :mod:`satsample.weighting._cell_replay` on every partition, summed).  The
    steps run on the summed table (phase (b): convergence per replicate,
    reported by replicate number under the step's policy, as the weighting of
    materialised replicate weights does) and the factors of the combined
    cells are kept in the last step, so that every later replicate pass of
    the engine is additive over the partitions (each partition's totals use
    these factors, see ``_cell_replay._entry``).
    """
    from ._cell_replay import (
        _MAX_CELLS,
        _MAX_TABLE,
        CellReplay,
        _on_cells,
        linear_lambda,
        replay_factors,
    )
    from .nonresponse import NonresponseStep

    reps = design.replicates
    steps = reps.steps
    linear = steps[-1] if steps[-1].matrix is not None else None
    cell_steps = steps[:-1] if linear is not None else steps
    for st in cell_steps:
        if st.matrix is not None:
            raise SatsampleError(
                f"{steps[-1].method}: a weighting step after a calibration on numeric variables "
                "cannot be replayed on the replicates of a Dask design (only a final unbounded "
                "linear calibration is replayed through replicate totals), so replicate "
                "variance is unavailable; weight a design without replicates and use Taylor "
                "variance")
    lookups = tuple(st.lookup for st in cell_steps)
    keys = _reduce(design, partial(_distinct_cells, lookups), combine=_union_cells)
    n_cells = int(keys.shape[0])
    if n_cells > _MAX_CELLS or n_cells * reps.n_replicates > _MAX_TABLE:
        raise SatsampleError(
            f"{steps[-1].method}: the weighting steps of the Dask design form {n_cells} "
            f"combined cells, more than the replay on replicate cell tables takes "
            f"({_MAX_CELLS}, or {_MAX_TABLE} cells x replicates), so replicate variance is "
            "unavailable on Dask; weight a design without replicates and use Taylor variance")
    on_cells = tuple(_on_cells(st.step, keys[:, j]) for j, st in enumerate(cell_steps))
    live = np.ones(n_cells, dtype=bool)
    for st in on_cells:
        if isinstance(st, NonresponseStep):
            live &= np.asarray(st.responded, dtype=bool)
    plan = CellReplay(cell=np.zeros(0, dtype=np.int64), n_cells=n_cells, steps=on_cells,
                      base=np.zeros(0), live=live,
                      linear=None if linear is None else linear.step)
    matrix = None if linear is None else linear.matrix
    table, moments = _reduce(design, partial(_cell_table_part, lookups, keys, plan, matrix))
    factors = replay_factors(plan, table)
    lam = None if linear is None else linear_lambda(plan, factors, moments)
    replay = DaskReplay(lookups=lookups, keys=keys, plan=plan, factors=factors, lam=lam,
                        matrix=matrix)
    last = replace(steps[-1], replay=replay)
    new_steps = (*steps[:-1], last)
    out = replace(design, replicates=replace(reps, steps=new_steps))
    if getattr(design, "partition_replicates", None) is not None:
        out = replace(out, partition_replicates=replace(design.partition_replicates,
                                                        steps=new_steps))
    return out
