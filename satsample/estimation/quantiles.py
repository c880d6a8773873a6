"""Quantiles of continuous variables, overall and by domain (R's ``svyquantile``).

A quantile is not a smooth function of estimated totals, so it has no
linearised score of its own.  Its point value inverts the weighted
distribution function :math:`\\hat F_d`; its interval inverts an interval
for :math:`\\hat F_d`, which is a mean of indicators and gets its standard
error from :func:`satsample.estimation.mean` (Taylor or replicate, domains
keeping the full design).  Two intervals are offered: Woodruff's (a Wald
interval for :math:`F_d` at the estimate, mapped back through the quantile
function) and the inversion of the score test of :math:`F_d(q) = p`.

The module uses only the public estimators: the indicator variables are
added to a copy of the design's data, and every evaluation of
:math:`\\hat F_d` and its standard error, for all domains, variables and
probabilities at once, is one call of :func:`~satsample.estimation.mean`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._validation import (
    SatsampleError,
    as_column_list,
    as_numbers,
    check_choice,
    check_columns,
    check_probability,
    plain,
)
from ..design import SurveyDesign
from ..results import Estimate
from . import engine
from .domains import domains
from .statistics import _missing, mean

__all__ = ["QUANTILE_CI_METHODS", "QUANTILE_RULES", "QuantileEstimate", "quantile"]

QUANTILE_RULES: tuple[str, ...] = ("math", "hf7", "school")
QUANTILE_CI_METHODS: tuple[str, ...] = ("mean", "score")

_DBL_MAX = float(np.finfo(np.float64).max)
_DBL_EPS = float(np.finfo(np.float64).eps)
_ZEROIN_MAXIT = 1000  # R's uniroot default
_RANK_RTOL = 1e-5  # relative singular-value cut of the replicate-weight rank (R: qr(tol = 1e-5))


@dataclass(frozen=True, kw_only=True)
class QuantileEstimate(Estimate):
    """Quantiles, overall or by domain.

    Attributes
    ----------
    statistic : str
        ``"quantile"``.
    table : pandas.DataFrame
        Columns ``[<by columns...>, "variable", "prob", "estimate", "se",
        "ci_low", "ci_high", "df", "n"]``, one row per (domain, variable,
        probability), domain-major.  ``se`` is R's: the interval width divided
        by :math:`2\\,t_{(1+\\text{level})/2,\\,df}`.  ``n`` counts the
        respondents with a usable value and a positive weight in the domain.
    probs : tuple of float
        The probabilities, in the order given.
    by, variables, options, excluded, empty_cells, n_cells_possible, design_summary
        As in :class:`~satsample.results.Estimate`; ``options`` also records
        ``rule``.  ``replicate_estimates`` is ``None`` (the interval is not
        built from replicate quantiles).

    Notes
    -----
    The quantiles of one domain are not jointly estimated with a covariance:
    only their marginal intervals are defined (as in R, whose ``vcov`` of a
    quantile result is diagonal).
    """

    probs: tuple[float, ...] = ()


# ----------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class _Sorted:
    """One domain's sample of one variable, sorted (stable: ties keep the data order)."""

    x: np.ndarray  # sorted values
    cumw: np.ndarray  # cumulative weights in that order (R: long double cumsum)
    total: float  # sum of the weights in data order (R: sum(w))
    raw: np.ndarray  # values in data order (for the score interval)

    @classmethod
    def build(cls, x: np.ndarray, w: np.ndarray) -> _Sorted:
        order = np.argsort(x, kind="stable")
        # R accumulates sums in long double (80-bit on x86-64) and rounds once
        cumw = np.cumsum(w[order].astype(np.longdouble)).astype(np.float64)
        total = float(np.cumsum(w.astype(np.longdouble))[-1])
        return cls(x[order], cumw, total, x)


def _rule_value(s: _Sorted, p: float, rule: str) -> float:
    """The quantile of ``s`` at probability ``p`` under ``rule``; NaN for a NaN ``p``."""
    if not np.isfinite(p):
        return float("nan")
    n = s.x.size
    if n == 1:
        return float(s.x[0])
    if rule == "hf7":
        # plotting positions: share of the weight strictly below each sorted value,
        # over the weight of all but the last (Hyndman-Fan type 7 for equal weights)
        pk = np.concatenate(([0.0], s.cumw[:-1])) / s.cumw[n - 2]
        if p <= pk[0]:
            return float(s.x[0])
        if p >= pk[-1]:
            return float(s.x[-1])
        i = int(np.searchsorted(pk, p, side="right")) - 1
        j = i + 1
        if p == pk[i]:
            return float(s.x[i])
        xi, xj = float(s.x[i]), float(s.x[j])
        return xi + (xj - xi) * ((p - pk[i]) / (pk[j] - pk[i]))
    # math / school: pos = last sorted row whose cumulative weight is <= p * total
    target = p * s.total
    pos = int(np.searchsorted(s.cumw, target, side="right")) - 1
    pos = max(pos, 0)
    nxt = min(pos + 1, n - 1)
    at_p = p - s.cumw[pos] / s.total <= 0  # F(x_pos) reaches p (or p is below F(x_1))
    if rule == "math":
        return float(s.x[pos] if at_p else s.x[nxt])
    # school: the midpoint of the two values around a CDF that equals p exactly
    if not at_p:
        return float(s.x[nxt])
    if s.cumw[pos] > target:  # p below the share of the smallest value: that value
        return float(s.x[pos])
    return (float(s.x[pos]) + float(s.x[nxt])) / 2.0


# ----------------------------------------------------------------------------- root finding
def _zeroin(a: float, b: float, fa: float, fb: float, tol: float,
            maxit: int = _ZEROIN_MAXIT) -> Generator[float, float, float]:
    """Brent's root finder (R's ``uniroot``), as a generator.

    It yields each abscissa at which the function is needed and receives
    the value with ``send``; it returns the root.  ``f(a)`` and ``f(b)``
    are given and have opposite signs.  Written after Brent (1973), *Algorithms
    for Minimization without Derivatives*, ch. 4, with the stopping rule
    ``|c - b| / 2 <= 2 eps |b| + tol / 2`` that R's ``zeroin`` uses, so that
    the root lands on the same side of a jump of a step function as R's.
    """
    c, fc = a, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(maxit + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):  # b must be the best approximation
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2.0 * _DBL_EPS * abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # secant step
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2.0) and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = yield b
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _finite(v: float) -> float:
    """R's ``uniroot`` replaces -Inf by -DBL_MAX and NaN/Inf by DBL_MAX."""
    if np.isnan(v) or v == np.inf:
        return _DBL_MAX
    if v == -np.inf:
        return -_DBL_MAX
    return float(v)


# ----------------------------------------------------------------------------- helpers
def _numeric(data: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """The ``y`` columns as float64 (n, k); text, booleans and infinite values raise."""
    out = np.empty((len(data), len(cols)))
    for j, c in enumerate(cols):
        out[:, j] = as_numbers(data[c], name=c, role="y")
    inf = np.isinf(out)
    if inf.any():
        j = int(np.flatnonzero(inf.any(axis=0))[0])
        raise SatsampleError(f"y column {cols[j]!r} has {int(inf[:, j].sum())} infinite value(s)")
    return out


def _check_probs(probs: float | Sequence[float]) -> tuple[float, ...]:
    # a 0-d array (np.array(0.5), a numpy reduction) is one probability, like a scalar
    seq = list(np.asarray(probs, dtype=object).ravel())
    if not seq:
        raise SatsampleError("probs: give at least one probability in [0, 1]")
    out = []
    for p in seq:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise SatsampleError(f"probs: {plain(p)!r} is not a number in [0, 1]")
        out.append(check_probability(float(p), name="probs", closed_low=True, closed_high=True))
    if len(set(out)) != len(out):
        raise SatsampleError(f"probs={out!r} lists a probability more than once")
    return tuple(out)


class _CdfEvaluator:
    """Weighted means of per-row indicator columns, by domain, through :func:`mean`.

    ``evaluate(cols)`` takes a list of (n,) float arrays, NaN on the rows
    outside the variable's usable sample, and returns the (G, m) estimates,
    standard errors and degrees of freedom of their domain means.
    """

    def __init__(self, design: SurveyDesign, data: pd.DataFrame, by: list[str], n_domains: int,
                 levels: pd.DataFrame, variance: str) -> None:
        self.design = design
        self.by = by
        self.g = n_domains
        self.variance = variance
        self._base = data[by].copy() if by else pd.DataFrame(index=data.index)
        if by:
            self._index = pd.MultiIndex.from_frame(levels[by])

    def evaluate(self, cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = len(cols)
        names = [f"__quantile_{j}" for j in range(m)]
        frame = self._base.assign(**dict(zip(names, cols)))
        d = dataclasses.replace(self.design, data=frame)
        tab = mean(d, names, by=self.by or None, na="drop", variance=self.variance).table
        est = np.full((self.g, m), np.nan)
        se = np.full((self.g, m), np.nan)
        df = np.full((self.g, m), np.nan)
        if self.by:
            gi = self._index.get_indexer(pd.MultiIndex.from_frame(tab[self.by]))
        else:
            gi = np.zeros(len(tab), dtype=np.int64)
        ji = pd.Index(names).get_indexer(tab["variable"])
        est[gi, ji] = tab["estimate"].to_numpy()
        se[gi, ji] = tab["se"].to_numpy()
        df[gi, ji] = tab["df"].to_numpy()
        return est, se, df


def _distinct(a: np.ndarray, axis: int) -> np.ndarray:
    """The distinct rows (``axis=0``) or columns (``axis=1``) of ``a`` (values rounded to 1e-10).

    Found by sorting a rounded random projection of each row or column (one
    matrix-vector product, no lexicographic sort of long records).  Rows or
    columns that differ by less than ~1e-10 relative merge, which leaves the
    rank at R's ``qr(tol = 1e-5)`` cut unchanged.
    """
    a = np.round(a, 10)
    v = np.random.default_rng(20240611).uniform(0.5, 1.5, a.shape[1 - axis])
    h = a @ v if axis == 0 else v @ a
    scale = max(float(np.max(np.abs(h))), 1.0)
    _, first = np.unique(np.round(h / scale, 12), return_index=True)
    first.sort()
    return a[first] if axis == 0 else a[:, first]


def _replicate_df(design: SurveyDesign, rows: np.ndarray, cache: dict[bytes, float]) -> float:
    """R's ``degf`` of a replicate design restricted to ``rows``: rank of its replicate weights - 1.

    The rows used by every domain are a subset of the design (R's
    ``svyby``/``subset``/``na.rm``); R recomputes the degrees of freedom as
    the rank of the remaining replicate weights minus one.  When every row
    with a positive weight is used, this is the design's own ``degf``;
    replicates generated on the fly (not stored) keep the design's ``degf``.
    """
    reps = design.replicates
    assert reps is not None
    all_rows = np.flatnonzero(design.weights > 0)
    if reps.weights is None or (rows.size == all_rows.size and np.array_equal(rows, all_rows)):
        return float(reps.degf)
    key = rows.tobytes()
    if key not in cache:
        if rows.size == 0:
            cache[key] = float("nan")
        else:
            # the rank ignores repeated rows and columns: the rows of one PSU are proportional
            # (divide by the analysis weight), and replicates that reweight the domain alike
            # (a jackknife deleting any PSU outside the domain's strata) are equal
            mult = reps.weights[:, rows] / design.weights[rows][None, :]
            mult = _distinct(_distinct(mult, 1), 0)
            gram = mult.T @ mult if mult.shape[0] >= mult.shape[1] else mult @ mult.T
            ev = np.linalg.eigvalsh(gram)
            top = float(ev.max()) if ev.size else 0.0
            rank = int(np.sum(ev > top * _RANK_RTOL**2)) if top > 0 else 0
            cache[key] = float(rank - 1)
    return cache[key]


# ----------------------------------------------------------------------------- public
def quantile(
    design: SurveyDesign,
    y: str | Sequence[str],
    probs: float | Sequence[float],
    *,
    by: str | Sequence[str] | None = None,
    rule: Literal["math", "hf7", "school"] = "math",
    ci_method: Literal["mean", "score"] = "mean",
    level: float = 0.95,
    variance: Literal["auto", "taylor", "replicate"] = "auto",
    na: Literal["error", "drop"] = "error",
) -> QuantileEstimate:
    """Estimate population quantiles with confidence intervals (R's ``svyquantile``).

    Parameters
    ----------
    design : SurveyDesign
        Taylor or replicate-weight design.
    y : str or list of str
        Numeric column(s) of ``design.data`` (waiting time, number of visits...).
    probs : float or sequence of float
        Probabilities in [0, 1] (0.5 for the median).
    by : str or list of str, optional
        Domain column(s); every observed combination of their values is a
        domain, with the full design kept (R's ``svyby``).
    rule : {"math", "hf7", "school"}, default="math"
        Definition of the quantile of a weighted sample (see Notes).
    ci_method : {"mean", "score"}, default="mean"
        ``"mean"``: Woodruff's interval; ``"score"``: inversion of the score
        test of :math:`F(q) = p`.
    level : float, default=0.95
        Confidence level.
    variance : {"auto", "taylor", "replicate"}, default="auto"
        Standard error of the distribution function: ``"auto"`` uses the
        replicate weights when the design has them.
    na : {"error", "drop"}, default="error"
        Missing values of ``y`` raise, or (``"drop"``) leave the row out of
        that variable's estimates as a domain restriction (R's
        ``subset(design, !is.na(y))``: strata and :math:`n_h` stay those of
        the full sample); the rows dropped are counted in ``excluded``.
        Several variables are handled one by one (item-wise), not on the rows
        complete in all of them.

    Returns
    -------
    QuantileEstimate
        Table columns ``[<by...>, "variable", "prob", "estimate", "se",
        "ci_low", "ci_high", "df", "n"]``.

    Raises
    ------
    SatsampleError
        A column is missing or not numeric, a probability lies outside
        [0, 1], ``y`` has missing values with ``na="error"``, or an observed
        domain has no usable value of a variable.

    Notes
    -----
    In a domain :math:`d` with usable rows :math:`i = 1..n_d` sorted by value
    (ties in data order), weights :math:`w_i`, cumulative weights
    :math:`C_i = \\sum_{j \\le i} w_j` and :math:`W = C_{n_d}`, the weighted
    distribution function is :math:`\\hat F(x) = \\sum_i w_i 1\\{x_i \\le x\\}/W`.
    Let :math:`k` be the last row with :math:`C_k \\le pW` (1 if none).

    * ``"math"`` (R's default, ``qrule="math"``):
      :math:`\\hat q_p = \\min\\{x_i : \\hat F(x_i) \\ge p\\}`, i.e. :math:`x_k` if
      :math:`C_k = pW` and :math:`x_{k+1}` otherwise; :math:`p = 0` gives the
      smallest value.
    * ``"school"``: :math:`(x_k + x_{k+1})/2` when :math:`\\hat F` equals
      :math:`p` exactly at :math:`x_k` (:math:`C_k = pW`, as for the median of an
      even number of equally weighted values), ``"math"`` otherwise.
    * ``"hf7"`` (R's ``qrule="hf7"``): linear interpolation of the sorted
      values at the plotting positions :math:`p_i = C_{i-1}/C_{n_d-1}`
      (:math:`C_0 = 0`), which are :math:`(i-1)/(n_d-1)`, Hyndman and Fan's
      type 7, for equal weights.

    For :math:`p` below the weight share of the smallest value, ``"math"``
    and ``"school"`` give the smallest value; R's survey 4.1.1 gives the
    second smallest there (its ``qrule`` tests :math:`p - C_k/W = 0` where
    survey 4.4-1 and later test :math:`\\le 0`).  Everywhere else the rules
    equal R's.

    *Woodruff interval* (``ci_method="mean"``): with
    :math:`\\hat F = \\hat F(\\hat q_p)` and its standard error :math:`s` (the
    domain mean of :math:`1\\{y_i \\le \\hat q_p\\}`, Taylor or replicate),

    .. math:: [\\,Q(\\hat F - t s),\\; Q(\\hat F + t s)\\,],
       \\qquad t = t_{(1+\\text{level})/2,\\; df},

    with :math:`Q` the quantile function of the same rule; a limit whose
    probability falls below 0 or above 1 is NaN (as in R).

    *Score interval* (``ci_method="score"``): the limits solve
    :math:`(p - \\hat F(\\theta)) / s(\\theta) = \\pm t`, with
    :math:`s(\\theta)` the standard error of :math:`\\hat F(\\theta)`, by Brent's
    method on :math:`[\\min y + \\text{IQR}/100, \\max y - \\text{IQR}/100]`
    to a tolerance :math:`1/(100\\sqrt{n_d})` (IQR unweighted, type 7); each
    root :math:`\\theta` is mapped to :math:`Q(\\bar u)` with :math:`\\bar u`
    the *unweighted* share of sample values :math:`\\le \\theta`, exactly as
    R's ``svyquantile(interval.type = "score")``.  A limit without a sign
    change of the score on that range is NaN.

    Standard error (R's): :math:`(\\text{ci\\_high} - \\text{ci\\_low}) / (2t)`.
    Degrees of freedom: PSUs minus strata among the usable rows of the domain
    (Taylor); for replicate designs, the rank of the replicate weights of those
    rows minus one (R's ``degf`` of the subset design), which is the design's
    replicate ``degf`` when every row is used.  ``df < 1`` gives a NaN
    interval.  ``probs`` 0 and 1 give the smallest and largest values.

    R offers the score interval for Taylor designs only; here it also works
    with replicate designs, with the replicate standard error of
    :math:`\\hat F(\\theta)`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from satsample import survey_design, quantile
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"stratum": np.repeat(["a", "b"], 50),
    ...                    "N": np.repeat([500, 2000], 50),
    ...                    "wait": rng.integers(5, 60, 100)})
    >>> d = survey_design(df, strata="stratum", fpc="N")
    >>> q = quantile(d, "wait", [0.5, 0.9])
    >>> list(q.table.columns)
    ['variable', 'prob', 'estimate', 'se', 'ci_low', 'ci_high', 'df', 'n']
    >>> bool((q.table["ci_low"] <= q.table["estimate"]).all())
    True
    """
    _check_options(design, rule, ci_method, level, na)
    variance = engine.resolve_variance(design, variance)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    if len(set(cols)) != len(cols):
        raise SatsampleError(f"y={cols!r} lists a column more than once")
    data = design.data  # one (copy-on-write) copy of the design's table
    check_columns(data, cols, role="y")
    p_all = _check_probs(probs)
    by_cols = as_column_list(by)
    dom = domains(data, by_cols)  # the engine's domain coding (checks the by columns)

    vals = _numeric(data, cols)
    excluded: dict[str, int] = {}
    ok = _missing(vals, cols, na, excluded, "y")  # the estimators' missing-value policy
    miss = np.zeros(vals.shape, dtype=bool) if ok is None else ~ok
    codes, levels, n_possible = dom.codes, dom.levels, dom.n_possible
    g = len(levels)
    k = len(cols)
    usable = ~miss & (design.weights > 0)[:, None]  # (n, k)
    samples, n_obs = _domain_samples(vals, design.weights, usable, codes, levels, by_cols, cols)

    cdf = _CdfEvaluator(design, data, by_cols, g, levels, variance)
    est = _point_estimates(samples, p_all, rule, g, k)  # (G, k, P)

    df = _domain_df(design, variance, cdf, usable, codes, g, k)
    crit = _critical_values(df, level)
    if ci_method == "mean":
        low, high = _woodruff(cdf, vals, usable, codes, samples, est, p_all, rule, crit)
    else:
        low, high = _score(cdf, vals, usable, codes, samples, p_all, rule, crit)
    with np.errstate(invalid="ignore"):
        se = (high - low) / (2.0 * crit[:, :, None])

    return QuantileEstimate(
        statistic="quantile",
        table=_table(levels, by_cols, cols, p_all,
                     {"estimate": est, "se": se, "ci_low": low, "ci_high": high}, df, n_obs),
        by=tuple(by_cols),
        variables=tuple(cols),
        probs=p_all,
        options=_options(design, variance, level, rule, ci_method, na),
        excluded=excluded,
        empty_cells=int((n_possible - g) * k),
        n_cells_possible=int(n_possible * k),
        design_summary=_design_summary(design),
    )


def _check_options(design: SurveyDesign, rule: str, ci_method: str, level: float,
                   na: str) -> None:
    """Check the design type and the choice options of :func:`quantile`."""
    if type(design).__name__ == "DaskSurveyDesign":
        raise SatsampleError(
            "quantile is not available on a Dask design: a quantile is not a smooth function "
            "of totals (its point and interval need the sorted values of each domain); "
            "compute it on the rows of the domains of interest in memory")
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    check_choice(rule, name="rule", allowed=QUANTILE_RULES)
    check_choice(ci_method, name="ci_method", allowed=QUANTILE_CI_METHODS)
    check_probability(level, name="level")
    check_choice(na, name="na", allowed=("error", "drop"))


def _domain_samples(
    vals: np.ndarray, w: np.ndarray, usable: np.ndarray, codes: np.ndarray, levels: pd.DataFrame,
    by_cols: list[str], cols: list[str],
) -> tuple[dict[tuple[int, int], _Sorted], np.ndarray]:
    """The sorted usable sample of every (domain, variable) and its size; none may be empty."""
    g, k = len(levels), len(cols)
    samples: dict[tuple[int, int], _Sorted] = {}
    n_obs = np.zeros((g, k), dtype=np.int64)
    for j in range(k):
        rows_j = np.flatnonzero(usable[:, j])
        cj = codes[rows_j]
        order = np.argsort(cj, kind="stable")
        bounds = np.searchsorted(cj[order], np.arange(g + 1))
        for gg in range(g):
            r = rows_j[order[bounds[gg]:bounds[gg + 1]]]
            if r.size == 0:
                dom = ", ".join(f"{c}={plain(levels[c].iloc[gg])!r}" for c in by_cols) or "the whole sample"
                raise SatsampleError(
                    f"quantile: no usable value of {cols[j]!r} in domain {dom} (all missing or "
                    "zero weight); restrict the analysis to domains with data"
                )
            samples[(gg, j)] = _Sorted.build(vals[r, j], w[r])
            n_obs[gg, j] = r.size
    return samples, n_obs


def _point_estimates(samples: dict[tuple[int, int], _Sorted], p_all: tuple[float, ...],
                     rule: str, g: int, k: int) -> np.ndarray:
    """The quantile of every (domain, variable, probability) by ``rule``."""
    est = np.empty((g, k, len(p_all)))
    for (gg, j), s in samples.items():
        for t, p in enumerate(p_all):
            est[gg, j, t] = _rule_value(s, p, rule)
    return est


def _table(levels: pd.DataFrame, by_cols: list[str], cols: list[str], p_all: tuple[float, ...],
           values: dict[str, np.ndarray], df: np.ndarray, n_obs: np.ndarray) -> pd.DataFrame:
    """The result table: domain-major, then variable, then probability."""
    g, k, n_p = len(levels), len(cols), len(p_all)
    gi, ji, ti = (a.ravel() for a in np.meshgrid(np.arange(g), np.arange(k), np.arange(n_p), indexing="ij"))
    table = levels.iloc[gi].reset_index(drop=True) if by_cols else pd.DataFrame(index=range(gi.size))
    return table.assign(
        variable=np.asarray(cols, dtype=object)[ji],
        prob=np.asarray(p_all)[ti],
        **{name: v[gi, ji, ti] for name, v in values.items()},
        df=df[gi, ji],
        n=n_obs[gi, ji],
    )


def _domain_df(design: SurveyDesign, variance: str, cdf: _CdfEvaluator, usable: np.ndarray,
               codes: np.ndarray, g: int, k: int) -> np.ndarray:
    """Degrees of freedom per (domain, variable): Taylor PSUs - strata, or replicate rank - 1."""
    if variance == "taylor" or design.replicates is None:
        return _taylor_df(cdf, usable, k)
    cache: dict[bytes, float] = {}
    df = np.empty((g, k))
    for j in range(k):
        for gg in range(g):
            rows = np.flatnonzero(usable[:, j] & (codes == gg))
            df[gg, j] = _replicate_df(design, rows, cache)
    return df


def _critical_values(df: np.ndarray, level: float) -> np.ndarray:
    """Student t quantiles at (1 + level)/2 (normal for infinite df, NaN for df < 1)."""
    with np.errstate(invalid="ignore"):
        crit = np.where(df >= 1, stats.t.ppf((1.0 + level) / 2.0, np.where(df >= 1, df, 1.0)), np.nan)
    crit[np.isinf(df)] = stats.norm.ppf((1.0 + level) / 2.0)
    return crit


def _options(design: SurveyDesign, variance: str, level: float, rule: str, ci_method: str,
             na: str) -> dict[str, Any]:
    """The ``options`` record of a :class:`QuantileEstimate`."""
    reps = design.replicates
    use_reps = variance == "replicate"
    return {
        "variance": variance,
        "level": level,
        "rule": rule,
        "ci_method": ci_method,
        "se": "(ci_high - ci_low) / (2 t)",
        "df": ("rank of the replicate weights of the domain's usable rows - 1" if use_reps
               else "PSUs - strata in the domain"),
        "lonely_psu": design.lonely_psu,
        "replicate_kind": reps.kind if use_reps and reps is not None else None,
        "mse": reps.mse if use_reps and reps is not None else None,
        "na": na,
        "calibrated": bool(design.calibrations),
    }


def _design_summary(design: SurveyDesign) -> dict[str, Any]:
    """Sample size, strata, PSUs, degrees of freedom (and replicates) of the design."""
    psu = design.psu
    n_psu = int(np.count_nonzero(np.bincount(psu))) if psu.size else 0
    summary: dict[str, Any] = {"n": design.n, "strata": design.n_strata, "psu": n_psu,
                               "degf": int(design.degf)}
    if design.replicates is not None:
        summary["replicates"] = design.replicates.n_replicates
    return summary


def _taylor_df(cdf: _CdfEvaluator, usable: np.ndarray, k: int) -> np.ndarray:
    """PSUs minus strata among the usable rows of every domain (the df of :func:`mean`)."""
    ones = [np.where(usable[:, j], 1.0, np.nan) for j in range(k)]
    return cdf.evaluate(ones)[2]


def _woodruff(cdf: _CdfEvaluator, vals: np.ndarray, usable: np.ndarray, codes: np.ndarray,
              samples: dict[tuple[int, int], _Sorted], est: np.ndarray, p_all: tuple[float, ...],
              rule: str, crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, k, n_p = est.shape
    cols = []
    for j in range(k):
        q_row = est[codes, j, :]  # (n, P): each row's own domain's estimate
        ind = (vals[:, j][:, None] <= q_row).astype(np.float64)
        ind[~usable[:, j]] = np.nan
        cols += [ind[:, t] for t in range(n_p)]
    f_hat, f_se, _ = cdf.evaluate(cols)
    f_hat = f_hat.reshape(g, k, n_p)
    f_se = f_se.reshape(g, k, n_p)
    half = f_se * crit[:, :, None]
    lo_p, hi_p = f_hat - half, f_hat + half
    low = np.full((g, k, n_p), np.nan)
    high = np.full((g, k, n_p), np.nan)
    for (gg, j), s in samples.items():
        for t in range(n_p):
            a, b = lo_p[gg, j, t], hi_p[gg, j, t]
            if np.isfinite(a) and a >= 0:
                low[gg, j, t] = _rule_value(s, float(a), rule)
            if np.isfinite(b) and b <= 1:
                high[gg, j, t] = _rule_value(s, float(b), rule)
    return low, high


def _score(cdf: _CdfEvaluator, vals: np.ndarray, usable: np.ndarray, codes: np.ndarray,
           samples: dict[tuple[int, int], _Sorted], p_all: tuple[float, ...], rule: str,
           crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score-test limits for every (domain, variable, probability), root finders run in lockstep.

    Every round evaluates the score statistic of all pending root finders
    with one call of :func:`mean`: one column per (variable, probability,
    side), each row scored at the abscissa of its own domain's finder.
    """
    g, k = crit.shape
    n_p = len(p_all)
    low = np.full((g, k, n_p), np.nan)
    high = np.full((g, k, n_p), np.nan)
    lower_t: dict[tuple[int, int], float] = {}
    upper_t: dict[tuple[int, int], float] = {}
    tols: dict[tuple[int, int], float] = {}
    for (gg, j), s in samples.items():
        x = s.raw
        iqr = float(np.quantile(x, 0.75) - np.quantile(x, 0.25))
        lower_t[(gg, j)] = float(x.min()) + iqr / 100.0
        upper_t[(gg, j)] = float(x.max()) - iqr / 100.0
        tols[(gg, j)] = 1.0 / (100.0 * np.sqrt(x.size))
    # problem (domain, variable, prob index, side): side 0 = lower limit (+t), 1 = upper (-t)
    problems = [(gg, j, t, side) for (gg, j) in samples for t in range(n_p) for side in (0, 1)
                if np.isfinite(crit[gg, j]) and lower_t[(gg, j)] < upper_t[(gg, j)]]
    if not problems:
        return low, high

    def score_values(items: list[tuple[tuple[int, int, int, int], int, float]]) -> list[float]:
        """Score statistic minus its critical value at each (problem, slot, abscissa) of ``items``.

        One column per (variable, probability, side, slot) that has a problem to
        evaluate; each row is scored at its own domain's abscissa, NaN elsewhere.
        """
        keys = sorted({(j, t, side, slot) for (_, j, t, side), slot, _ in items})
        col_of = {key: c for c, key in enumerate(keys)}
        theta = np.full((len(keys), g), np.nan)
        for (gg, j, t, side), slot, th in items:
            theta[col_of[(j, t, side, slot)], gg] = th
        cols = []
        for c, (j, t, _side, _slot) in enumerate(keys):
            th_row = theta[c, codes]
            with np.errstate(invalid="ignore"):
                u = np.where(vals[:, j] > th_row, 1.0, 0.0) - (1.0 - p_all[t])
            u[~usable[:, j] | np.isnan(th_row)] = np.nan
            cols.append(u)
        m_hat, m_se, _ = cdf.evaluate(cols)
        out = []
        for (gg, j, t, side), slot, _ in items:
            c = col_of[(j, t, side, slot)]
            target = crit[gg, j] if side == 0 else -crit[gg, j]
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(float(m_hat[gg, c] / m_se[gg, c] - target))
        return out

    # the score at both ends of every search range, in one evaluation
    ends = score_values([(pr, 0, lower_t[pr[:2]]) for pr in problems]
                        + [(pr, 1, upper_t[pr[:2]]) for pr in problems])
    f_low = dict(zip(problems, ends[:len(problems)]))
    f_up = dict(zip(problems, ends[len(problems):]))
    gens: dict[Any, Generator[float, float, float]] = {}
    pending: dict[Any, float] = {}
    roots: dict[Any, float] = {}
    # the score is a step function of theta: its value depends only on how many sample
    # values lie at or below theta, so each finder remembers the steps it has evaluated
    seen: dict[Any, dict[int, float]] = {}

    def step(pr: tuple[int, int, int, int], th: float) -> int:
        return int(np.searchsorted(samples[pr[:2]].x, th, side="right"))

    for pr in problems:
        seen[pr] = {step(pr, lower_t[pr[:2]]): f_low[pr], step(pr, upper_t[pr[:2]]): f_up[pr]}
    for pr in problems:
        if np.isnan(f_low[pr]) or np.isnan(f_up[pr]):
            continue  # R's uniroot stops on an NA at an end point: the limit is NaN
        fa, fb = _finite(f_low[pr]), _finite(f_up[pr])
        if fa * fb > 0:
            continue  # no sign change on the search range: the limit is NaN
        gen = _zeroin(lower_t[pr[:2]], upper_t[pr[:2]], fa, fb, tols[pr[:2]])
        _advance(gen, None, pr, gens, pending, roots)
    while pending:
        hits = [(pr, seen[pr][step(pr, th)]) for pr, th in pending.items() if step(pr, th) in seen[pr]]
        if hits:
            for pr, fv in hits:
                del pending[pr]
                _advance(gens[pr], _finite(fv), pr, gens, pending, roots)
            continue
        batch = list(pending.items())
        fvals = score_values([(pr, 0, th) for pr, th in batch])
        for (pr, th), fv in zip(batch, fvals):
            seen[pr][step(pr, th)] = fv
            del pending[pr]
            _advance(gens[pr], _finite(fv), pr, gens, pending, roots)
    for (gg, j, t, side), root in roots.items():
        s = samples[(gg, j)]
        share = float(np.mean(s.raw <= root))
        (low if side == 0 else high)[gg, j, t] = _rule_value(s, share, rule)
    return low, high


def _advance(gen: Generator[float, float, float], value: float | None, c: Any,
             gens: dict[Any, Generator[float, float, float]], pending: dict[Any, float],
             roots: dict[Any, float]) -> None:
    """Send ``value`` to root finder ``c``; record its next abscissa or its root."""
    try:
        x = next(gen) if value is None else gen.send(value)
    except StopIteration as stop:
        roots[c] = float(stop.value)
        gens.pop(c, None)
        return
    gens[c] = gen
    pending[c] = x

