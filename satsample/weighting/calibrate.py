"""Calibration to population totals (R's ``calibrate`` / ``grake``): GREG, raking, logit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._validation import ConvergenceError, SatsampleError, as_column_list, check_positive_int
from ..design import SurveyDesign
from ._common import (
    StepResult,
    check_block,
    check_design,
    check_on,
    finish_result,
    frozen,
    nonconvergence,
    replicate_labels,
    row_count,
)
from .controls import ModelMatrix, model_matrix, totals_from_margins, totals_vector

__all__ = [
    "LINEAR",
    "LOGIT",
    "RAKING",
    "CalibrationDistance",
    "CalibrationStep",
    "GregResidualizer",
    "calibrate",
    "make_distance",
]

_PINV_TOL = 256 * np.finfo(np.float64).eps


# ------------------------------------------------------------------ distances
@dataclass(frozen=True, kw_only=True)
class CalibrationDistance:
    """A calibration distance, given by its calibration function (R's ``make.calfun``).

    Attributes
    ----------
    name : str
        Label used in records.
    fm1 : callable
        ``fm1(u, lower, upper) -> g - 1``: the calibration function
        :math:`F(u) - 1` applied to the linear predictor :math:`u = x'\\lambda`.
    dfm1 : callable
        ``dfm1(u, lower, upper)``: its derivative :math:`F'(u)`.
    requires_finite_bounds : bool
        Whether the distance needs finite bounds (logit).
    """

    name: str
    fm1: Callable[[np.ndarray, float, float], np.ndarray]
    dfm1: Callable[[np.ndarray, float, float], np.ndarray]
    requires_finite_bounds: bool = False


def make_distance(fm1: Callable[[np.ndarray, float, float], np.ndarray],
                  dfm1: Callable[[np.ndarray, float, float], np.ndarray], name: str, *,
                  requires_finite_bounds: bool = False) -> CalibrationDistance:
    """Build a custom :class:`CalibrationDistance` from ``F - 1`` and ``F'``."""
    if not (callable(fm1) and callable(dfm1)):
        raise SatsampleError("make_distance: fm1 and dfm1 must be callables (u, lower, upper)")
    return CalibrationDistance(name=str(name), fm1=fm1, dfm1=dfm1,
                               requires_finite_bounds=requires_finite_bounds)


def _linear_fm1(u, lo, hi):
    return np.minimum(np.maximum(u + 1.0, lo), hi) - 1.0


def _linear_df(u, lo, hi):
    return ((u < hi - 1.0) & (u > lo - 1.0)).astype(np.float64)


def _raking_fm1(u, lo, hi):
    with np.errstate(over="ignore"):
        return np.minimum(np.maximum(np.exp(u), lo), hi) - 1.0


def _raking_df(u, lo, hi):
    with np.errstate(over="ignore"):
        return np.where((u < hi - 1.0) & (u > lo - 1.0), np.exp(u), 0.0)


def _logit_parts(u, lo, hi):
    a = (hi - lo) / ((hi - 1.0) * (1.0 - lo))
    with np.errstate(over="ignore"):
        e = np.exp(a * u)
    return a, e


def _logit_fm1(u, lo, hi):
    _, e = _logit_parts(u, lo, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        return (lo * (hi - 1.0) + hi * (1.0 - lo) * e) / (hi - 1.0 + (1.0 - lo) * e) - 1.0


def _logit_df(u, lo, hi):
    a, e = _logit_parts(u, lo, hi)
    den = hi - 1.0 + (1.0 - lo) * e
    with np.errstate(invalid="ignore", over="ignore"):
        return (hi * (1.0 - lo) * e * a / den
                - (lo * (hi - 1.0) + hi * (1.0 - lo) * e) * ((1.0 - lo) * e * a) / den**2)


LINEAR = CalibrationDistance(name="linear", fm1=_linear_fm1, dfm1=_linear_df)
"""Linear (chi-square) distance, GREG; with bounds, the truncated linear distance."""
RAKING = CalibrationDistance(name="raking", fm1=_raking_fm1, dfm1=_raking_df)
"""Raking (multiplicative, Kullback-Leibler) distance: ``g = exp(x'lambda)``."""
LOGIT = CalibrationDistance(name="logit", fm1=_logit_fm1, dfm1=_logit_df,
                            requires_finite_bounds=True)
"""Deville-Särndal logit distance: g stays strictly inside finite bounds (L, U)."""

_ALIASES = {"linear": LINEAR, "raking": RAKING, "logit": LOGIT}


def _distance(distance: str | CalibrationDistance) -> CalibrationDistance:
    if isinstance(distance, CalibrationDistance):
        return distance
    if isinstance(distance, str) and distance in _ALIASES:
        return _ALIASES[distance]
    raise SatsampleError(
        f"distance={distance!r} is not one of 'linear', 'raking', 'logit' or a "
        "CalibrationDistance (see make_distance)"
    )


# ------------------------------------------------------------------ residuals
def cross_inverse(xtdx: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse of :math:`X'DX` (p, p), directions below 1e-7 of the top dropped.

    The eigenvalues of :math:`X'DX` are the squared singular values of
    :math:`D^{1/2}X`: a direction is kept when its singular value exceeds
    1e-7 times the largest (a rank-deficient model matrix is projected on its
    column space, as R's ``lm.wfit``).
    """
    lam, vec = np.linalg.eigh((xtdx + xtdx.T) / 2.0)
    top = lam.max() if lam.size else 0.0
    keep = lam > 1e-14 * top
    v = vec[:, keep]
    return (v / lam[keep]) @ v.T


@dataclass(frozen=True, kw_only=True, eq=False)
class GregResidualizer:
    """Taylor residuals after calibration (R's ``greg_calibration`` rule).

    Attributes
    ----------
    matrix : ndarray of float64, shape (n, p)
        The calibration model matrix :math:`X`.
    g : ndarray of float64, shape (n,)
        The g-weights :math:`g_i`.
    weights : ndarray of float64, shape (n,)
        The weights :math:`d_i` before calibration.
    inverse : ndarray of float64, shape (p, p)
        :math:`(\\sum_j d_j X_j X_j')^{+}` of the whole sample (:func:`cross_inverse`).

    Notes
    -----
    With weighted scores :math:`x_i = w_i z_i = g_i d_i z_i`, the residual is

    .. math:: e_i = g_i d_i (z_i - X_i' B), \\qquad
              B = \\Bigl(\\sum_j d_j X_j X_j'\\Bigr)^{+} \\sum_j d_j X_j z_j,

    the regression of :math:`z` on :math:`X` weighted by the **pre-calibration**
    weights :math:`d`, times the g-weights; 0 where :math:`g_i d_i = 0`.  The
    cross-product :math:`\\sum_j d_j X_j z_j = \\sum_j X_j x_j / g_j` is
    :meth:`cross` (additive over any split of the rows: the Dask backend sums
    it over the partitions) and :meth:`apply` forms the residuals from it.
    """

    matrix: np.ndarray
    g: np.ndarray
    weights: np.ndarray
    inverse: np.ndarray

    def cross(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\sum_j X_j x_j / g_j` over the rows with :math:`g_j d_j > 0`, (p, k)."""
        x = np.asarray(x, dtype=np.float64).reshape(self.g.shape[0], -1)
        live = (self.g * self.weights > 0)[:, None]
        z = np.divide(x, self.g[:, None], out=np.zeros_like(x), where=live)
        return self.matrix.T @ z

    def apply(self, x: np.ndarray, cross: np.ndarray) -> np.ndarray:
        """Residuals of ``x`` (n, k) given the (summed) :meth:`cross` (p, k)."""
        x = np.asarray(x, dtype=np.float64).reshape(self.g.shape[0], -1)
        gd = self.g * self.weights
        fit = self.matrix @ (self.inverse @ cross)
        return np.where((gd > 0)[:, None], x - gd[:, None] * fit, 0.0)

    def residualize(self, x: np.ndarray) -> np.ndarray:
        """Return the calibration residuals of the weighted scores ``x`` (n, k)."""
        squeeze = np.ndim(x) == 1
        r = self.apply(x, self.cross(x))
        return r[:, 0] if squeeze else r

    @classmethod
    def build(cls, matrix: np.ndarray, design_weights: np.ndarray, g: np.ndarray,
              inverse: np.ndarray | None = None) -> GregResidualizer:
        """Build from the model matrix, the pre-calibration weights and the g-weights.

        ``inverse``: :func:`cross_inverse` of the whole sample when ``matrix``
        holds only some of its rows (a Dask partition).
        """
        m = np.ascontiguousarray(matrix, dtype=np.float64)
        d = np.asarray(design_weights, dtype=np.float64)
        if inverse is None:
            inverse = cross_inverse((m * d[:, None]).T @ m)
        return cls(matrix=m, g=np.asarray(g, dtype=np.float64), weights=d, inverse=inverse)


# ------------------------------------------------------------------ solvers
def _linear_lambda(t: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Lagrange multipliers (R, p) of unbounded linear calibration from X'WX (R, p, p), T - X'w."""
    try:
        return np.linalg.solve(t, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError as exc:
        raise SatsampleError(
            "calibrate: the weighted cross-product of the calibration model matrix is "
            "singular (collinear calibration variables, or a level with no weight)"
        ) from exc


def _linear_closed_form(m: np.ndarray, w: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """g for unbounded linear calibration, (R, n) weights -> (R, n)."""
    t = np.einsum("rn,np,nq->rpq", w, m, m)
    rhs = pop[None, :] - w @ m
    return 1.0 + _linear_lambda(t, rhs) @ m.T


Moments = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def row_moments(m: np.ndarray, w: np.ndarray, dist: CalibrationDistance, lo: float, hi: float
                ) -> Moments:
    """The Newton sums of rows ``m`` (n, p) with weights ``w`` (R, n).

    Returns ``moments(eta (b, p), rows (b,))``: for the replicates ``rows`` at
    multipliers ``eta``, :math:`\\sum_i w_i F_m(x_i'\\eta) x_i` (b, p),
    :math:`\\sum_i w_i F'(x_i'\\eta) x_i x_i'` (b, p, p) and whether every
    :math:`F_m`, :math:`F'` is finite (b,).  Over any split of the rows the sums add
    up and the flags combine by ``and`` (the Dask backend, over the partitions).
    """
    def moments(eta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xe = eta @ m.T
        fm, df = dist.fm1(xe, lo, hi), dist.dfm1(xe, lo, hi)
        ww = w[rows]
        finite = np.isfinite(fm).all(axis=1) & np.isfinite(df).all(axis=1)
        return (ww * fm) @ m, np.einsum("rn,np,nq->rpq", ww * df, m, m), finite
    return moments


def newton(moments: Moments, sample_total: np.ndarray, pop: np.ndarray, epsilon: float,
           max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton iterations of R's ``grake`` on summed moments (see :func:`row_moments`).

    ``sample_total`` (R, p) is :math:`\\sum_i w_i x_i` per replicate.  Returns the
    multipliers eta (R, p), iterations (R,), achieved max relative misfit (R,).
    """
    n_rep, p = sample_total.shape
    eta = np.zeros((n_rep, p))
    iters = np.ones(n_rep, dtype=np.int64)
    misfit_rel = np.full(n_rep, np.inf)
    active = np.arange(n_rep)
    denom = 1.0 + np.abs(pop)

    wfm, tmat, _finite = moments(eta, active)
    while active.size:
        misfit = pop[None, :] - sample_total[active] - wfm
        deta = np.einsum("rpq,rq->rp", np.linalg.pinv(tmat, rcond=_PINV_TOL), misfit)
        eta_a = eta[active] + deta
        wfm, tmat, finite = moments(eta_a, active)
        bad = ~finite
        while bad.any():
            can = bad & (iters[active] < max_iter)
            if not can.any():
                break
            iters[active[can]] += 1
            deta[can] /= 2.0
            eta_a[can] -= deta[can]
            wfm[can], tmat[can], finite[can] = moments(eta_a[can], active[can])
            bad = ~finite
        eta[active] = eta_a
        misfit = pop[None, :] - sample_total[active] - wfm
        rel = np.max(np.abs(misfit) / denom, axis=1)
        rel = np.where(np.isfinite(rel), rel, np.inf)
        misfit_rel[active] = rel
        done = rel < epsilon
        iters[active[~done]] += 1
        failed = (~done) & (iters[active] > max_iter)
        keep = ~done & ~failed
        active = active[keep]
        wfm, tmat = wfm[keep], tmat[keep]
    return eta, iters, misfit_rel


def _grake(m: np.ndarray, w: np.ndarray, pop: np.ndarray, dist: CalibrationDistance,
           lo: float, hi: float, epsilon: float, max_iter: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton iterations of R's ``grake`` for every row of w (R, n).

    Returns g (R, n), iterations (R,), achieved max relative misfit (R,)."""
    eta, iters, rel = newton(row_moments(m, w, dist, lo, hi), w @ m, pop, epsilon, max_iter)
    return 1.0 + dist.fm1(eta @ m.T, lo, hi), iters, rel


# ------------------------------------------------------------------ replay
@dataclass(frozen=True, kw_only=True, eq=False)
class CalibrationStep:
    """Calibration, replayed on blocks of replicate weights.

    Attributes
    ----------
    matrix : ndarray of float64, shape (n, p)
        Calibration model matrix (columns with no sample weight and a zero
        control already dropped).
    totals : ndarray of float64, shape (p,)
        Population totals of its columns.
    distance : CalibrationDistance
        Calibration distance.
    lower, upper : float
        Bounds on the g-weights (``-inf``/``inf`` when unbounded).
    closed_form : bool
        Unbounded linear calibration, solved in closed form (GREG).
    epsilon : float
        Newton convergence tolerance (R's rule, see :func:`calibrate`).
    max_iter : int
        Newton iterations.
    on_nonconvergence : {"error", "warn"}
        What a replicate that does not converge triggers.
    bounds_text : str
        The bounds as given, for messages.

    Notes
    -----
    Each replicate *r* is calibrated to the same totals with its own
    starting weights: :math:`w_{ri} = d_{ri} g_{ri}`, :math:`g_{ri} = 1 +
    F_m(x_i'\\lambda_r)`, :math:`\\sum_i d_{ri} g_{ri} x_i = T`.  Replicates
    generated on the fly check convergence when they are replayed.
    """

    matrix: np.ndarray
    totals: np.ndarray
    distance: CalibrationDistance
    lower: float
    upper: float
    closed_form: bool
    epsilon: float
    max_iter: int
    on_nonconvergence: str
    bounds_text: str

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Calibrate a block (b, n) of replicate weights; returns a new (b, n) array."""
        w, idx = check_block(block, replicate_index, self.matrix.shape[0], "calibrate")
        if self.closed_form:
            return w * _linear_closed_form(self.matrix, w, self.totals)
        g, _, rel = _grake(self.matrix, w, self.totals, self.distance, self.lower, self.upper,
                           self.epsilon, self.max_iter)
        bad = rel >= self.epsilon
        if bad.any():
            nonconvergence(
                self.on_nonconvergence,
                f"calibrate: Calibration failed for {int(bad.sum())} of {w.shape[0]} replicates "
                f"(replicate(s) {replicate_labels(idx[bad])}; distance {self.distance.name!r}, "
                f"bounds {self.bounds_text})")
        return w * g


# ------------------------------------------------------------------ public
def _is_tidy(totals: Any) -> bool:
    return isinstance(totals, pd.DataFrame) and {"variable", "level"} <= set(totals.columns)


def calibration_variables(totals: Any, variables: Sequence[str] | None) -> list[str]:
    """The calibration variables as :func:`calibrate` reads them (no data needed)."""
    if variables is None:
        if not _is_tidy(totals):
            raise SatsampleError(
                "calibrate: give variables=[...] (the terms of the model matrix) with a "
                "model-matrix vector of totals"
            )
        return [str(v) for v in pd.unique(totals["variable"])]
    names = as_column_list(variables)
    if not names:
        raise SatsampleError("calibrate: variables must name at least one column")
    return names


def _resolve_totals(totals, design: SurveyDesign, variables: Sequence[str] | None
                    ) -> tuple[ModelMatrix, pd.Series]:
    tidy = _is_tidy(totals)
    mm = model_matrix(design.data, calibration_variables(totals, variables))
    if tidy:
        tot = totals_from_margins(totals, mm)
    else:
        tot = totals_vector(totals, columns=mm.columns)
    return mm, tot


def calibrate(design: SurveyDesign, totals: pd.Series | pd.DataFrame | dict, *,
              variables: str | Sequence[str] | None = None,
              distance: str | CalibrationDistance = "linear",
              bounds: tuple[float, float] | None = None, max_iter: int = 50,
              epsilon: float = 1e-7, on_nonconvergence: str = "error") -> SurveyDesign:
    """Calibrate the weights to population totals (R's ``calibrate``).

    Parameters
    ----------
    design : SurveyDesign
        The design; it is not modified.
    totals : Series, dict or DataFrame
        Population totals of the columns of the model matrix
        ``~ variables`` (R's ``model.matrix`` names: ``"(Intercept)"``,
        ``"sexM"``, ``"age_group30-44"``...), as a Series/dict or a two-column
        table ``term, total``; or a tidy margin table ``variable, level, Freq``.
    variables : str or sequence of str, optional
        Terms of the calibration model (main effects, treatment coding, factor
        levels sorted as R's ``factor()`` or in ``Categorical`` order; numeric
        columns enter as they are).  Optional with a tidy table (its variables
        in order of appearance).
    distance : {"linear", "raking", "logit"} or CalibrationDistance, default="linear"
        Calibration distance.  Unbounded linear calibration is solved in
        closed form (GREG); the others by Newton iterations.
    bounds : (float, float), optional
        Bounds ``(L, U)`` on the g-weights ``w / d``; required (finite) for
        ``"logit"``.  ``None``: unbounded.
    max_iter : int, default=50
        Newton iterations (R's ``maxit``).
    epsilon : float, default=1e-7
        Stop when :math:`\\max_j |\\sum_i d_i g_i x_{ij} - T_j| / (1 + |T_j|)`
        is below ``epsilon`` (R's rule).
    on_nonconvergence : {"error", "warn"}, default="error"
        Raise :class:`~satsample.ConvergenceError` ("Calibration failed ...",
        naming the bounds), or keep the last iterate with a
        :class:`~satsample.ConvergenceWarning` (R's ``force=TRUE``).

    Returns
    -------
    SurveyDesign
        A new design with calibrated weights, a ``"calibrate"`` history step
        (g range, counts at the bounds) and a :class:`GregResidualizer`.
        Replicate weights, if any, are calibrated replicate by replicate with
        the same totals and options; replicates generated on the fly get a
        :class:`CalibrationStep` in ``replicates.steps`` (their convergence is
        checked when they are replayed).

    Notes
    -----
    The g-weights are :math:`g_i = 1 + F_m(x_i'\\lambda)` where
    :math:`F_m = F - 1` is the distance's calibration function and
    :math:`\\lambda` solves :math:`\\sum_i d_i g_i x_i = T`.  Newton step:
    :math:`\\lambda \\leftarrow \\lambda + (\\sum_i d_i F'(x_i'\\lambda) x_i x_i')^{+}
    (T - \\sum_i d_i g_i x_i)` (Moore-Penrose inverse, step halving when g is
    not finite).  Linear: :math:`F(u) = 1 + u` clipped to the bounds.  Raking:
    :math:`F(u) = e^u` clipped.  Logit with bounds :math:`(L, U)`,
    :math:`A = (U - L)/((U - 1)(1 - L))`:
    :math:`F(u) = (L(U - 1) + U(1 - L)e^{Au}) / (U - 1 + (1 - L)e^{Au})`.
    Infeasible bounds show up as non-convergence.  The Taylor variance uses
    residuals from the regression of the scores on :math:`x` weighted by
    :math:`d`, times :math:`g` (:class:`GregResidualizer`).

    On a Dask design, calibration on categorical variables runs on the table
    of weighted cells (one reduction), and on numeric variables each Newton
    iteration is one reduction of the sums above over the partitions
    (:mod:`satsample.weighting._dask`).
    """
    from ._dask import dispatch

    if (out := dispatch(design, "calibrate", totals, variables=variables, distance=distance,
                        bounds=bounds, max_iter=max_iter, epsilon=epsilon,
                        on_nonconvergence=on_nonconvergence)) is not None:
        return out
    design = check_design(design, "calibrate")
    opt = calibration_options(distance, bounds, max_iter, epsilon, on_nonconvergence)
    return finish_result(design, _calibrate_result(design, totals, variables, opt))


@dataclass(frozen=True, kw_only=True)
class CalibrationOptions:
    """The validated options of :func:`calibrate`."""

    dist: CalibrationDistance
    bounds: tuple[float, float] | None
    lo: float
    hi: float
    max_iter: int
    epsilon: float
    on: str

    @property
    def closed(self) -> bool:
        """Unbounded linear calibration (closed form)."""
        return self.dist is LINEAR and not (np.isfinite(self.lo) or np.isfinite(self.hi))

    @property
    def bounds_text(self) -> str:
        return "none" if self.bounds is None else f"({self.lo:g}, {self.hi:g})"


def calibration_options(distance: str | CalibrationDistance, bounds: tuple[float, float] | None,
                        max_iter: int, epsilon: float, on_nonconvergence: str
                        ) -> CalibrationOptions:
    """Validate the options of :func:`calibrate` (same checks, same order, same messages)."""
    dist = _distance(distance)
    max_iter = check_positive_int(max_iter, name="max_iter")
    on = check_on(on_nonconvergence)
    epsilon = float(epsilon)
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise SatsampleError(f"calibrate: epsilon={epsilon!r} must be a positive number")
    if bounds is None:
        lo, hi = -np.inf, np.inf
    else:
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError) as exc:
            raise SatsampleError(f"calibrate: bounds={bounds!r} must be a pair (lower, upper)"
                                 ) from exc
        if not (lo < hi) or lo > 1 or hi < 1 or np.isnan(lo) or np.isnan(hi):
            raise SatsampleError(
                f"calibrate: bounds={bounds!r} must satisfy lower <= 1 <= upper and lower < upper"
            )
    if dist.requires_finite_bounds and not (np.isfinite(lo) and np.isfinite(hi)
                                            and lo < 1 < hi):
        raise SatsampleError(
            f"calibrate: distance {dist.name!r} requires finite bounds with lower < 1 < upper; "
            f"got bounds={bounds!r}"
        )
    return CalibrationOptions(dist=dist, bounds=None if bounds is None else (lo, hi), lo=lo,
                              hi=hi, max_iter=max_iter, epsilon=epsilon, on=on)


def drop_empty_columns(mm: ModelMatrix, pop: np.ndarray, col_w: np.ndarray
                       ) -> tuple[np.ndarray, list[str]]:
    """Columns to keep (mask) and their names, given the rows with weight per column ``col_w``.

    A column with no sample weight is dropped when its control is 0 too (R),
    else the call fails naming it.
    """
    empty = col_w == 0
    if empty.any():
        bad = [c for c, e, t in zip(mm.columns, empty, pop, strict=True) if e and t != 0]
        if bad:
            raise SatsampleError(
                f"calibrate: model-matrix column(s) {bad} have no sample row with a positive "
                "weight but a non-zero control total (a level absent from the sample)"
            )
    return ~empty, [c for c, e in zip(mm.columns, empty, strict=True) if not e]


def g_stats(g: np.ndarray, d: np.ndarray, lo: float, hi: float,
            counts: np.ndarray | None = None) -> dict[str, float]:
    """Summaries of the g-weights of some rows; they combine over splits of the rows.

    Counts (``n_*``) add up; ``g_min``, ``gp_min`` combine by minimum and
    ``gp_max`` by maximum (``gp``: rows with a positive design weight).
    """
    pos = d > 0
    gp = g[pos]
    tol_b = 1e-10
    return {
        "n_nonfinite": row_count(~np.isfinite(g), counts),
        "n_negative": row_count(d * g < 0, counts),
        "g_min": float(g.min()) if g.size else np.inf,
        "n_at_lower": (row_count(np.abs(gp - lo) <= tol_b * max(1.0, abs(lo)),
                                 None if counts is None else counts[pos])
                       if np.isfinite(lo) else 0),
        "n_at_upper": (row_count(np.abs(gp - hi) <= tol_b * max(1.0, abs(hi)),
                                 None if counts is None else counts[pos])
                       if np.isfinite(hi) else 0),
        "n_positive": row_count(pos, counts),
        "gp_min": float(gp.min()) if gp.size else np.inf,
        "gp_max": float(gp.max()) if gp.size else -np.inf,
    }


def combine_g_stats(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Combine :func:`g_stats` of disjoint sets of rows."""
    out: dict[str, float] = {}
    for key in parts[0]:
        vals = [p[key] for p in parts]
        out[key] = (min(vals) if key in ("g_min", "gp_min")
                    else max(vals) if key == "gp_max" else sum(vals))
    return out


def conclude(opt: CalibrationOptions, converged: bool, achieved: float | None,
             stats: dict[str, float]) -> str:
    """Check the g-weights (raise or warn as asked); return the step's message."""
    message = ""
    if not converged:
        message = (f"Calibration failed: no convergence in {opt.max_iter} iterations with "
                   f"distance {opt.dist.name!r} and bounds {opt.bounds_text} (largest relative "
                   f"misfit {achieved:.3g} >= epsilon {opt.epsilon:g}); the bounds may be "
                   "infeasible")
        if stats["n_nonfinite"]:
            raise ConvergenceError(
                "calibrate: " + message + f"; {int(stats['n_nonfinite'])} g-weight(s) are "
                "not finite, so the weights cannot be accepted even with on_nonconvergence='warn'"
            )
        nonconvergence(opt.on, "calibrate: " + message)
    if stats["n_negative"]:
        raise SatsampleError(
            f"calibrate: the totals cannot be met with positive weights under distance "
            f"{opt.dist.name!r} and bounds {opt.bounds_text}: {int(stats['n_negative'])} "
            f"calibrated weight(s) would be negative (smallest g-weight "
            f"{float(stats['g_min']):.4g}); check the totals against the sample, or give "
            "bounds=(lower, upper) with lower >= 0 (e.g. bounds=(0.1, 10)), or a bounded "
            "distance (distance='logit' with bounds)"
        )
    return message


def calibration_params(mm: ModelMatrix, columns: list[str], pop: np.ndarray,
                       opt: CalibrationOptions, stats: dict[str, float]) -> dict[str, object]:
    """The ``params`` of the calibration's history record."""
    has = stats["n_positive"] > 0
    return {
        "variables": mm.variables, "columns": tuple(columns), "distance": opt.dist.name,
        "bounds": opt.bounds, "max_iter": opt.max_iter,
        "epsilon": opt.epsilon, "g_min": float(stats["gp_min"]) if has else float("nan"),
        "g_max": float(stats["gp_max"]) if has else float("nan"),
        "n_at_lower": int(stats["n_at_lower"]), "n_at_upper": int(stats["n_at_upper"]),
        "totals": dict(zip(columns, pop.tolist(), strict=True)),
    }


def replay_step(m: np.ndarray, pop: np.ndarray, opt: CalibrationOptions) -> CalibrationStep:
    """The :class:`CalibrationStep` replaying the calibration on replicates."""
    return CalibrationStep(matrix=frozen(m), totals=frozen(pop), distance=opt.dist, lower=opt.lo,
                           upper=opt.hi, closed_form=opt.closed, epsilon=opt.epsilon,
                           max_iter=opt.max_iter, on_nonconvergence=opt.on,
                           bounds_text=opt.bounds_text)


def _calibrate_result(design: SurveyDesign, totals, variables: str | Sequence[str] | None,
                      opt: CalibrationOptions, counts: np.ndarray | None = None) -> StepResult:
    """Calibration of the design's rows (``counts``: rows behind each, when they are cells)."""
    mm, tot = _resolve_totals(totals, design, variables)
    m = mm.matrix
    pop = tot.to_numpy(dtype=np.float64)
    d = np.array(design.weights, dtype=np.float64)
    keep, columns = drop_empty_columns(mm, pop, np.abs(m).T @ (d > 0))
    m, pop = m[:, keep], pop[keep]

    if opt.closed:
        g = _linear_closed_form(m, d[None, :], pop)[0]
        converged, n_iter, achieved = True, 1, None
    else:
        gg, it, rel = _grake(m, d[None, :], pop, opt.dist, opt.lo, opt.hi, opt.epsilon,
                             opt.max_iter)
        g, n_iter, achieved = gg[0], int(it[0]), float(rel[0])
        converged = achieved < opt.epsilon
    stats = g_stats(g, d, opt.lo, opt.hi, counts)
    message = conclude(opt, converged, achieved, stats)
    return StepResult(weights=d * g, method="calibrate",
                      params=calibration_params(mm, columns, pop, opt, stats),
                      converged=converged, n_iter=n_iter, message=message,
                      calibration=GregResidualizer.build(m, d, g),
                      replicate_step=replay_step(m, pop, opt))
