"""Post-stratification (R's ``postStratify``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validation import SatsampleError, SatsampleWarning, as_column_list
from ..design import SurveyDesign
from ._common import (
    StepResult,
    check_block,
    check_design,
    finish_result,
    frozen,
    group_sums,
    row_count,
)
from .controls import _cell_label, cell_codes, population_cells

__all__ = ["PostStratResidualizer", "PostStratifyStep", "poststratify"]


def _indicator(codes: np.ndarray, n_cells: int) -> sp.csr_matrix:
    n = codes.shape[0]
    return sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_cells, n))


@dataclass(frozen=True, kw_only=True, eq=False)
class PostStratResidualizer:
    """Taylor residuals after post-stratification (R's ``svyrecvar`` rule).

    Attributes
    ----------
    cells : ndarray of int64, shape (n,)
        Post-stratum code of each row.
    n_cells : int
        Number of codes.
    old_weights, new_weights : ndarray of float64, shape (n,)
        Weights before and after the step.
    den : ndarray of float64, shape (n_cells,) or None
        Sum of ``old_weights`` in each cell over the whole sample; ``None``:
        over the rows given (a design in memory).

    Notes
    -----
    With weighted scores :math:`x_i = w_i z_i` (:math:`w` the post-stratified
    weights, :math:`d` the weights before the step) the residual is

    .. math:: e_i = x_i - w_i \\bar z_{c(i)}, \\qquad
              \\bar z_c = \\frac{\\sum_{j \\in c} d_j z_j}{\\sum_{j \\in c} d_j},

    i.e. the scores are centred at their cell means weighted by the
    *pre-step* weights, then multiplied by the new weights.
    """

    cells: np.ndarray
    n_cells: int
    old_weights: np.ndarray
    new_weights: np.ndarray
    den: np.ndarray | None = None

    def cross(self, x: np.ndarray) -> np.ndarray:
        """Per cell, :math:`\\sum_{j \\in c} x_j d_j / w_j`: (n_cells, k).

        Additive over any split of the rows (the Dask backend sums it over the
        partitions); :meth:`apply` forms the residuals from the sum.
        """
        x = np.asarray(x, dtype=np.float64).reshape(self.cells.shape[0], -1)
        psw = self.new_weights
        ratio = np.divide(self.old_weights, psw, out=np.zeros_like(psw), where=psw > 0)
        return _indicator(self.cells, self.n_cells) @ (x * ratio[:, None])

    def apply(self, x: np.ndarray, cross: np.ndarray) -> np.ndarray:
        """Residuals of ``x`` (n, k) given the (summed) :meth:`cross`.

        The cell sums of the weights before the step are ``den`` when given
        (the whole sample's, for a Dask partition), else those of the rows.
        """
        x = np.asarray(x, dtype=np.float64).reshape(self.cells.shape[0], -1)
        den = self.den
        if den is None:
            den = np.bincount(self.cells, weights=self.old_weights, minlength=self.n_cells)
        den = den[:, None]
        means = np.divide(cross, den, out=np.zeros_like(cross), where=den > 0)
        return x - means[self.cells] * self.new_weights[:, None]

    def residualize(self, x: np.ndarray) -> np.ndarray:
        """Return the post-stratification residuals of the weighted scores ``x`` (n, k)."""
        squeeze = np.ndim(x) == 1
        out = self.apply(x, self.cross(x))
        return out[:, 0] if squeeze else out


def _poststrat_factors(codes: np.ndarray, n_cells: int, pop: np.ndarray,
                       weights: np.ndarray) -> np.ndarray:
    """Per-row multipliers pop_c / sum_c w for (n,) or (R, n) weights (0 where the sum is 0)."""
    sums = group_sums(codes, n_cells, weights)
    fac = np.divide(pop, sums, out=np.zeros_like(sums), where=sums > 0)
    if weights.ndim == 1:
        return fac[codes]
    return fac[:, codes]


@dataclass(frozen=True, kw_only=True, eq=False)
class PostStratifyStep:
    """Post-stratification, replayed on blocks of replicate weights.

    Attributes
    ----------
    codes : ndarray of int64, shape (n,)
        Post-stratum code of each row.
    n_cells : int
        Number of codes.
    population : ndarray of float64, shape (n_cells,)
        Population count of each code (0 for cells ignored with ``partial``).

    Notes
    -----
    In every replicate *r*: :math:`w_{ri} = d_{ri} N_c / \\sum_{j \\in c} d_{rj}`,
    and 0 in a cell with no replicate weight.
    """

    codes: np.ndarray
    n_cells: int
    population: np.ndarray

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Post-stratify a block (b, n) of replicate weights; returns a new (b, n) array."""
        w, _ = check_block(block, replicate_index, self.codes.shape[0], "poststratify")
        return w * _poststrat_factors(self.codes, self.n_cells, self.population, w)


def _prepare(data: pd.DataFrame, variables: list[str], population, weights: np.ndarray, *,
             partial: bool, step: str, counts: np.ndarray | None = None
             ) -> tuple[np.ndarray, int, np.ndarray, list[str]]:
    """Match sample cells to population cells; return codes, n_cells, pop per code, notes.

    ``counts``: rows behind each row of ``data`` when its rows are weighted cells.
    """
    codes, cells = cell_codes(data, variables, role=f"{step} stratifying")
    pop_cells = population_cells(population, variables)
    n_cells = len(cells)
    sample_tot = np.bincount(codes, weights=weights, minlength=n_cells)
    pop = np.zeros(n_cells)
    notes: list[str] = []
    for c, cell in enumerate(cells):
        f = pop_cells.get(cell)
        if sample_tot[c] > 0 and (f is None or f == 0):
            what = "absent from" if f is None else "zero in"
            raise SatsampleError(
                f"{step}: cell {_cell_label(variables, cell)} has {row_count(codes == c, counts)} "
                f"sample row(s) (weight {sample_tot[c]:g}) but is {what} the population table"
            )
        pop[c] = 0.0 if f is None else f
    present = {cell for c, cell in enumerate(cells) if sample_tot[c] > 0}
    empty = [cell for cell, f in pop_cells.items() if f > 0 and cell not in present]
    if empty:
        labels = "; ".join(_cell_label(variables, c) for c in empty[:10])
        more = "" if len(empty) <= 10 else f" (and {len(empty) - 10} more)"
        if not partial:
            raise SatsampleError(
                f"{step}: {len(empty)} population cell(s) have no sample row with a positive "
                f"weight (empty post-stratification cell): {labels}{more}; collapse them or "
                "pass partial=True to ignore them"
            )
        pop_lost = sum(pop_cells[c] for c in empty)
        msg = (f"{len(empty)} empty population cell(s) ignored (partial=True), population "
               f"{pop_lost:g} not represented: {labels}{more}")
        warnings.warn(f"{step}: {msg}", SatsampleWarning, stacklevel=3)
        notes.append(msg)
    return codes, n_cells, pop, notes


def poststratify(design: SurveyDesign, strata: str | Sequence[str],
                 population: pd.DataFrame | pd.Series, *, partial: bool = False) -> SurveyDesign:
    """Post-stratify the weights to known population cell counts (R's ``postStratify``).

    Parameters
    ----------
    design : SurveyDesign
        The design; it is not modified.
    strata : str or sequence of str
        Post-stratification variable(s); the cells are their cross-classification.
    population : DataFrame or Series
        Population count of every cell: a DataFrame with one column per
        variable and a ``Freq`` column, or a Series indexed by the levels (a
        MultiIndex for several variables).
    partial : bool, default=False
        Ignore population cells with no sample row (with a
        :class:`~satsample.SatsampleWarning`) instead of raising.

    Returns
    -------
    SurveyDesign
        A new design with post-stratified weights, a ``"poststratify"`` history
        step and a :class:`PostStratResidualizer` for the Taylor variance.  Its
        replicate weights, if any, are post-stratified replicate by replicate
        (replicates generated on the fly: a :class:`PostStratifyStep` is
        appended to ``replicates.steps``).

    Raises
    ------
    SatsampleError
        A sample cell absent from (or zero in) the population table, an empty
        population cell (unless ``partial``), missing or negative counts.

    Notes
    -----
    For cell :math:`c` with population count :math:`N_c`,

    .. math:: w_i = d_i \\frac{N_c}{\\sum_{j \\in c} d_j}, \\qquad i \\in c,

    with :math:`d` the weights before the step.  Rows with weight 0 (for
    instance nonrespondents) stay at 0.  The Taylor variance uses the
    residuals of :class:`PostStratResidualizer`.  On a Dask design the cell
    totals are one reduction over the partitions (:mod:`satsample.weighting._dask`).
    """
    from ._dask import dispatch

    if (out := dispatch(design, "poststratify", strata, population, partial=partial)
            ) is not None:
        return out
    design = check_design(design, "poststratify")
    return finish_result(design, _poststratify_result(design, strata, population,
                                                      partial=partial))


def _poststratify_result(design: SurveyDesign, strata: str | Sequence[str], population, *,
                         partial: bool, counts: np.ndarray | None = None) -> StepResult:
    """Post-stratification of the design's rows (``counts``: rows behind each cell row)."""
    variables = as_column_list(strata)
    if not variables:
        raise SatsampleError("poststratify: give at least one stratifying variable")
    d = np.array(design.weights, dtype=np.float64)
    codes, n_cells, pop, notes = _prepare(design.data, variables, population, d,
                                          partial=partial, step="poststratify", counts=counts)
    w = d * _poststrat_factors(codes, n_cells, pop, d)
    replay = PostStratifyStep(codes=frozen(codes, np.int64), n_cells=n_cells,
                              population=frozen(pop))
    resid = PostStratResidualizer(cells=codes, n_cells=n_cells, old_weights=d, new_weights=w)
    return StepResult(weights=w, method="poststratify",
                      params={"strata": tuple(variables), "partial": partial,
                              "n_cells": int((pop > 0).sum()),
                              "population_total": float(pop.sum())},
                      message="; ".join(notes), calibration=resid, replicate_step=replay)
