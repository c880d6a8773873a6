"""Raking by iterative proportional fitting (R's ``rake``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError, as_column_list, check_positive_int
from ..design import SurveyDesign
from ._common import (
    StepResult,
    check_block,
    check_design,
    check_on,
    finish_result,
    frozen,
    nonconvergence,
)
from .controls import cell_codes, check_equal_totals, margins_from_table
from .poststratify import _indicator, _poststrat_factors, _prepare

__all__ = ["RakeResidualizer", "RakeStep", "rake"]

MarginSpec = tuple[str | Sequence[str], pd.DataFrame | pd.Series]


@dataclass(frozen=True, kw_only=True, eq=False)
class RakeResidualizer:
    """Taylor residuals after raking, as R's ``svyrecvar`` computes them.

    Attributes
    ----------
    margins : tuple of (ndarray of int64, int, ndarray of float64)
        For each margin of the last raking pass: the cell code of each row,
        the number of codes, and the weights right after that margin was
        post-stratified.
    rounds : int
        Rounds of centring (R uses 10).
    cells : ndarray of int64, shape (K, M) or None
        The combined cells (one margin code per column) of the whole sample,
        sorted; ``None``: those of the rows given (a design in memory).
    fixed : ndarray of float64, shape (K, M M + M) or None
        :meth:`fixed_tables` of the whole sample; ``None``: of the rows given.

    Notes
    -----
    ``rounds`` times, for every margin :math:`m` in order, with weights
    :math:`w^{(m)}` and cells :math:`c_m`:

    .. math:: x_i \\leftarrow x_i - w^{(m)}_i \\,
              \\operatorname{ave}_{j \\in c_m(i)}\\bigl(x_j / w^{(m)}_j\\bigr),

    where ``ave`` is the *unweighted* mean over the cell.  This is R's rule;
    it is not the GREG residual of the raking calibration, so SEs differ
    slightly from those of ``calibrate(distance="raking")``.  Rows with weight
    0 are left out of the means and keep a residual of 0.

    The centring is linear: :math:`x_i \\leftarrow x_i - \\sum_m w^{(m)}_i
    A_m[c_m(i)]`, and every mean it needs is a sum over the combined cells
    :math:`\\kappa` (the cross-classification of the margins) of
    :math:`S_{m\\kappa} = \\sum_{i \\in \\kappa} x_i / w^{(m)}_i` and
    :math:`R_{m'm\\kappa} = \\sum_{i \\in \\kappa} w^{(m')}_i / w^{(m)}_i` (rows with
    :math:`w^{(m)}_i > 0`).  :meth:`cross` computes :math:`S` (additive over
    any split of the rows: the Dask backend sums it over the partitions),
    :meth:`fixed_tables` :math:`R` and the counts, and :meth:`apply` runs the
    rounds on them.
    """

    margins: tuple[tuple[np.ndarray, int, np.ndarray], ...]
    rounds: int = 10
    cells: np.ndarray | None = None
    fixed: np.ndarray | None = None

    def _cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Combined cells (K, M) and the combined cell of each row (n,)."""
        codes = np.stack([c for c, _n, _w in self.margins], axis=1)
        if self.cells is None:
            keys, inv = np.unique(codes, axis=0, return_inverse=True)
            return keys, inv.reshape(-1).astype(np.int64)
        mi = pd.MultiIndex.from_arrays(list(self.cells.T))
        return self.cells, mi.get_indexer(pd.MultiIndex.from_arrays(list(codes.T)))

    def fixed_tables(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Per combined cell: :math:`R` (M M, flat) and the rows with a positive weight (M).

        They do not depend on the scores.  ``counts``: rows behind each row
        when the rows are weighted cells (the Dask backend computes the whole
        sample's tables on its table of cells, whose weights have the rows'
        ratios).
        """
        keys, kappa = self._cells()
        n_k, n_m = keys.shape[0], len(self.margins)
        c = np.ones(kappa.size) if counts is None else np.asarray(counts, dtype=np.float64)
        r = np.zeros((n_k, n_m, n_m))
        cnt = np.zeros((n_k, n_m))
        for m, (_codes, _nc, psw) in enumerate(self.margins):
            pos = psw > 0
            inv = np.divide(1.0, psw, out=np.zeros_like(psw), where=pos)
            for m2, (_c2, _n2, psw2) in enumerate(self.margins):
                r[:, m2, m] = np.bincount(kappa, weights=c * psw2 * inv, minlength=n_k)
            cnt[:, m] = np.bincount(kappa, weights=c * pos, minlength=n_k)
        return np.concatenate([r.reshape(n_k, -1), cnt], axis=1)

    def cross(self, x: np.ndarray) -> np.ndarray:
        """Per (combined cell, margin): :math:`S` of every column of ``x``, (K M, k)."""
        n = self.margins[0][0].shape[0]
        x = np.asarray(x, dtype=np.float64).reshape(n, -1)
        keys, kappa = self._cells()
        n_k, n_m = keys.shape[0], len(self.margins)
        s = np.zeros((n_k, n_m, x.shape[1]))
        ind = _indicator(kappa, n_k)
        for m, (_codes, _nc, psw) in enumerate(self.margins):
            inv = np.divide(1.0, psw, out=np.zeros_like(psw), where=psw > 0)
            s[:, m, :] = ind @ (x * inv[:, None])
        return s.reshape(n_k * n_m, -1)

    def apply(self, x: np.ndarray, cross: np.ndarray) -> np.ndarray:
        """Residuals of ``x`` (n, k) given the (summed) :meth:`cross`.

        The tables of :meth:`fixed_tables` are ``fixed`` when given (the whole
        sample's, for a Dask partition), else those of the rows.
        """
        n = self.margins[0][0].shape[0]
        x = np.asarray(x, dtype=np.float64).reshape(n, -1)
        keys = self.cells if self.cells is not None else self._cells()[0]
        fixed = self.fixed if self.fixed is not None else self.fixed_tables()
        n_k, n_m, k = keys.shape[0], len(self.margins), x.shape[1]
        s = np.asarray(cross, dtype=np.float64).reshape(n_k, n_m, k)
        r = fixed[:, :n_m * n_m].reshape(n_k, n_m, n_m)
        cnt = fixed[:, n_m * n_m:]
        sizes = [nc for _c, nc, _w in self.margins]
        counts = [np.bincount(keys[:, m], weights=cnt[:, m], minlength=sizes[m])
                  for m in range(n_m)]
        acc = [np.zeros((sizes[m], k)) for m in range(n_m)]
        for _ in range(self.rounds):
            for m in range(n_m):
                t = s[:, m, :].copy()
                for m2 in range(n_m):
                    t -= r[:, m2, m, None] * acc[m2][keys[:, m2]]
                sums = _indicator(keys[:, m], sizes[m]) @ t
                c = counts[m][:, None]
                acc[m] += np.divide(sums, c, out=np.zeros_like(sums), where=c > 0)
        out = x.copy()
        for m, (codes, _nc, psw) in enumerate(self.margins):
            out -= psw[:, None] * acc[m][codes]
        return out

    def residualize(self, x: np.ndarray) -> np.ndarray:
        """Return the raking residuals of the weighted scores ``x`` (n, k)."""
        squeeze = np.ndim(x) == 1
        out = self.apply(x, self.cross(x))
        return out[:, 0] if squeeze else out


@dataclass(frozen=True, kw_only=True, eq=False)
class RakeStep:
    """Raking, replayed on blocks of replicate weights.

    Attributes
    ----------
    margins : tuple of (ndarray of int64, int, ndarray of float64)
        For each margin in raking order: the cell code of each row, the
        number of codes and the population count of each code.
    passes : int
        Passes performed on the full sample; every replicate gets the same
        number (as R's ``rake`` on a replicate design).

    Notes
    -----
    ``passes`` times, for every margin :math:`m` in order,
    :math:`w_{ri} \\leftarrow w_{ri} N_{m,c} / \\sum_{j \\in c} w_{rj}`.
    """

    margins: tuple[tuple[np.ndarray, int, np.ndarray], ...]
    passes: int

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Rake a block (b, n) of replicate weights; returns a new (b, n) array."""
        n = self.margins[0][0].shape[0]
        w, _ = check_block(block, replicate_index, n, "rake")
        for _ in range(self.passes):
            for codes, n_cells, pop in self.margins:
                w = w * _poststrat_factors(codes, n_cells, pop, w)
        return w


def _normalise_margins(margins: Any) -> list[tuple[list[str], Any]]:
    if isinstance(margins, pd.DataFrame):
        return [([v], s) for v, s in margins_from_table(margins)]
    if not isinstance(margins, (list, tuple)) or not margins:
        raise SatsampleError(
            "rake: margins must be a tidy table (variable, level, Freq) or a non-empty list of "
            "(variable(s), population table) pairs"
        )
    out = []
    for k, m in enumerate(margins):
        if not isinstance(m, (list, tuple)) or len(m) != 2:
            raise SatsampleError(
                f"rake: margin {k} must be a (variable(s), population table) pair, got {m!r}"
            )
        variables = as_column_list(m[0])
        if not variables:
            raise SatsampleError(f"rake: margin {k} names no variable")
        out.append((variables, m[1]))
    return out


def _cross_codes(data: pd.DataFrame, variables: list[str]) -> tuple[np.ndarray, int]:
    codes, cells = cell_codes(data, variables, role="raking")
    return codes, len(cells)


def rake(design: SurveyDesign, margins: Sequence[MarginSpec] | pd.DataFrame, *,
         max_iter: int = 10, epsilon: float = 1.0, on_nonconvergence: str = "error"
         ) -> SurveyDesign:
    """Rake the weights to population margins by iterative proportional fitting (R's ``rake``).

    Parameters
    ----------
    design : SurveyDesign
        The design; it is not modified.
    margins : list of (str or list of str, DataFrame or Series), or DataFrame
        The margins in raking order: pairs ``(variable(s), population)`` where
        ``population`` is a cell table (variables + ``Freq``) or a Series
        indexed by level; or one tidy table with columns ``variable, level,
        Freq`` (one margin per variable, in order of appearance).
    max_iter : int, default=10
        Maximum number of passes (R's ``maxit``).
    epsilon : float, default=1.0
        Stop when the largest absolute change of any cell of the full
        cross-table of all margin variables between two passes is below
        ``epsilon``.  ``epsilon >= 1`` is a count of people; ``epsilon < 1`` is
        relative to the sum of the weights before raking (R's rule).
    on_nonconvergence : {"error", "warn"}, default="error"
        Raise :class:`~satsample.ConvergenceError`, or accept the weights of
        the last pass with a :class:`~satsample.ConvergenceWarning` (R warns).

    Returns
    -------
    SurveyDesign
        A new design with raked weights, a ``"rake"`` history step (passes
        performed, converged) and a :class:`RakeResidualizer`.  Replicate
        weights, if any, are raked with the same number of passes (as R's
        ``rake`` on a replicate design does); replicates generated on the fly
        get a :class:`RakeStep` in ``replicates.steps``.

    Raises
    ------
    SatsampleError
        Mismatched levels, empty cells, missing or negative controls.
    ConvergenceError
        No convergence in ``max_iter`` passes (``on_nonconvergence="error"``).

    Notes
    -----
    One pass post-stratifies on each margin in turn,
    :math:`w_i \\leftarrow w_i N_{m,c} / \\sum_{j \\in c} w_j`.  After pass
    :math:`t` the weighted cross-table :math:`T^{(t)}` of all margin variables
    is compared with :math:`T^{(t-1)}` (:math:`T^{(0)}` from the starting
    weights); raking stops at the first pass with
    :math:`\\max |T^{(t)} - T^{(t-1)}| < \\varepsilon`.  So, as in R, the
    default tolerance of one person leaves the weights only roughly converged.
    On a Dask design the passes run on the table of weighted cells of all
    margins, computed in one reduction over the partitions
    (:mod:`satsample.weighting._dask`).
    """
    from ._dask import dispatch

    if (out := dispatch(design, "rake", margins, max_iter=max_iter, epsilon=epsilon,
                        on_nonconvergence=on_nonconvergence)) is not None:
        return out
    design = check_design(design, "rake")
    return finish_result(design, _rake_result(design, margins, max_iter=max_iter,
                                              epsilon=epsilon,
                                              on_nonconvergence=on_nonconvergence))


def check_rake_options(max_iter: int, epsilon: float, on_nonconvergence: str
                       ) -> tuple[int, float, str]:
    """Validated ``max_iter``, ``epsilon``, ``on_nonconvergence`` of :func:`rake`."""
    max_iter = check_positive_int(max_iter, name="max_iter")
    on = check_on(on_nonconvergence)
    eps_in = float(epsilon)
    if not np.isfinite(eps_in) or eps_in <= 0:
        raise SatsampleError(f"rake: epsilon={epsilon!r} must be a positive number")
    return max_iter, eps_in, on


def margin_variables(margins: Sequence[MarginSpec] | pd.DataFrame) -> list[str]:
    """Every variable of the margins, in order of first appearance."""
    out: list[str] = []
    for variables, _population in _normalise_margins(margins):
        out.extend(v for v in variables if v not in out)
    return out


def _rake_result(design: SurveyDesign, margins: Sequence[MarginSpec] | pd.DataFrame, *,
                 max_iter: int, epsilon: float, on_nonconvergence: str,
                 counts: np.ndarray | None = None) -> StepResult:
    """Raking of the design's rows (``counts``: rows behind each, when they are cells)."""
    max_iter, eps_in, on = check_rake_options(max_iter, epsilon, on_nonconvergence)
    specs = _normalise_margins(margins)
    d = np.array(design.weights, dtype=np.float64)

    prepared = []
    for variables, population in specs:
        codes, n_cells, pop, _ = _prepare(design.data, variables, population, d,
                                          partial=False, step=f"rake (margin {'×'.join(variables)})",
                                          counts=counts)
        prepared.append((variables, codes, n_cells, pop))
    check_equal_totals([("×".join(v), float(pop.sum())) for v, _, _, pop in prepared], what="rake")

    all_vars: list[str] = []
    for variables, *_ in prepared:
        for v in variables:
            if v not in all_vars:
                all_vars.append(v)
    cross, n_cross = _cross_codes(design.data, all_vars)
    tol = eps_in * float(d.sum()) if eps_in < 1 else eps_in

    w = d.copy()
    old = np.bincount(cross, weights=w, minlength=n_cross)
    converged = False
    passes = 0
    last: list[tuple[np.ndarray, int, np.ndarray]] = []
    delta = np.inf
    while passes < max_iter:
        passes += 1
        last = []
        for _variables, codes, n_cells, pop in prepared:
            w = w * _poststrat_factors(codes, n_cells, pop, w)
            last.append((codes, n_cells, w.copy()))
        new = np.bincount(cross, weights=w, minlength=n_cross)
        delta = float(np.max(np.abs(new - old)))
        if delta < tol:
            converged = True
            break
        old = new

    replay = RakeStep(margins=tuple((frozen(codes, np.int64), n_cells, frozen(pop))
                                    for _variables, codes, n_cells, pop in prepared),
                      passes=passes)

    message = ""
    if not converged:
        message = (f"raking did not converge in {max_iter} passes (max_iter): largest change "
                   f"of the cross-table {delta:.6g} >= epsilon {tol:.6g}")
        nonconvergence(on, "rake: " + message)

    resid = RakeResidualizer(margins=tuple(last))
    params = {"margins": tuple("×".join(v) for v, *_ in prepared), "max_iter": max_iter,
              "epsilon": eps_in, "tolerance": tol, "last_change": delta}
    return StepResult(weights=w, method="rake", params=params, converged=converged,
                      n_iter=passes, message=message, calibration=resid, replicate_step=replay)
