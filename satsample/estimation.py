"""Totals, means, ratios and proportions, overall and by domain (R's svytotal/svymean/svyratio/svyby).

Every estimator is a free function of a :class:`~satsample.design.SurveyDesign`
returning a frozen :class:`~satsample.results.Estimate`.  Domains keep the full
design: rows outside a domain score zero, and strata, ``n_h`` and the fpc stay
those of the whole sample.  All variables and all domains are computed with one
call of the variance engine (no Python loop over domains or variables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._replicate_totals import replicate_totals
from ._validation import (
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    check_probability,
)
from ._variance import taylor_variance
from .design import SurveyDesign
from .intervals import CI_METHODS, confidence_interval
from .results import Estimate

__all__ = ["mean", "proportion", "ratio", "total"]

Variance = Literal["auto", "taylor", "replicate"]
NaPolicy = Literal["error", "drop"]
Deff = Literal["srswor", "srswr"]


# ----------------------------------------------------------------------------- domains
@dataclass(frozen=True)
class _Domains:
    codes: np.ndarray  # (n,) int64, 0..G-1
    n_domains: int
    levels: pd.DataFrame  # G rows, one column per by column
    n_possible: int
    by: tuple[str, ...]


def _domains(design: SurveyDesign, by: str | Sequence[str] | None) -> _Domains:
    """Domain codes of every row for the cross-classification of the ``by`` columns."""
    cols = as_column_list(by)
    n = design.n
    if not cols:
        return _Domains(np.zeros(n, dtype=np.int64), 1, pd.DataFrame(index=range(1)), 1, ())
    check_columns(design.data, cols, role="domain (by)")
    if len(set(cols)) != len(cols):
        raise SatsampleError(f"by={cols!r} lists a column more than once")
    per_codes = []
    per_levels = []
    for c in cols:
        s = design.data[c]
        miss = int(s.isna().sum())
        if miss:
            raise SatsampleError(
                f"domain column {c!r} has {miss} missing value(s); recode them as a level "
                "(e.g. 'unknown') or drop those rows before declaring the design"
            )
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy(dtype=np.int64)
            uniques = np.asarray(s.cat.categories, dtype=object)
        else:
            codes, uniques = pd.factorize(s, sort=True)
            codes = codes.astype(np.int64)
            uniques = np.asarray(uniques, dtype=object)
        per_codes.append(codes)
        per_levels.append(uniques)
    shape = tuple(len(u) for u in per_levels)
    n_possible = int(np.prod(shape))
    flat = np.ravel_multi_index(tuple(per_codes), shape)
    present, codes = np.unique(flat, return_inverse=True)
    idx = np.unravel_index(present, shape)
    levels = pd.DataFrame({c: per_levels[j][idx[j]] for j, c in enumerate(cols)})
    return _Domains(codes.astype(np.int64).reshape(-1), int(present.size), levels, n_possible,
                    tuple(cols))


def _group_sum(codes: np.ndarray, n_domains: int, x: np.ndarray) -> np.ndarray:
    """``out[g, j] = sum_i x[i, j] 1{codes_i = g}`` (rows with code -1 ignored)."""
    keep = codes >= 0
    n = codes.shape[0]
    ind = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))), shape=(n_domains, n)
    )
    return np.asarray(ind @ x)


def _domain_df(design: SurveyDesign, used: np.ndarray, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """PSUs minus strata among the rows used, per domain and column (R's degf of the subset)."""
    k = used.shape[1]
    if design.replicates is not None:
        return np.full((n_domains, k), float(design.replicates.degf))
    rows, cols = np.nonzero(used)
    cell = cols.astype(np.int64) * n_domains + codes[rows]
    n_cells = k * n_domains

    def count(unit: np.ndarray) -> np.ndarray:
        n_units = int(unit.max()) + 1
        key = np.unique(cell * n_units + unit[rows])
        return np.bincount(key // n_units, minlength=n_cells)

    psu = count(design.psu)
    strata = count(design.strata)
    return (psu - strata).reshape(k, n_domains).T.astype(np.float64)


def _resolve_variance(design: SurveyDesign, variance: str) -> str:
    check_choice(variance, name="variance", allowed=("auto", "taylor", "replicate"))
    if variance == "auto":
        return "replicate" if design.replicates is not None else "taylor"
    if variance == "replicate" and design.replicates is None:
        raise SatsampleError(
            "variance='replicate' but the design has no replicate weights; create them with "
            "jackknife(), brr(), bootstrap() or declare_replicates()"
        )
    return variance


def _srs_variance(
    w: np.ndarray, z: np.ndarray, used: np.ndarray, codes: np.ndarray, n_domains: int, deff: str
) -> np.ndarray:
    """Variance of the weighted total of ``z`` under simple random sampling, per domain (R's deff).

    ``N^2 s^2 / n`` times ``(1 - n/N)`` for ``deff="srswor"`` (R's ``deff=TRUE``),
    with ``N`` the weight total of the rows used, ``n`` their count and ``s^2``
    the weighted variance of ``z`` with divisor ``n - 1`` (R's ``svyvar``).
    """
    wu = w[:, None] * used
    big_n = _group_sum(codes, n_domains, wu)
    n_obs = _group_sum(codes, n_domains, used.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        zbar = _group_sum(codes, n_domains, wu * z) / big_n
        dev = np.where(used, z - zbar[codes], 0.0)
        s2 = _group_sum(codes, n_domains, wu * dev * dev) / big_n * n_obs / (n_obs - 1)
        v = big_n**2 * s2 / n_obs
        if deff == "srswor":
            v = v * (big_n - n_obs) / big_n
    return v


# ----------------------------------------------------------------------------- core
@dataclass(frozen=True)
class _Core:
    estimate: np.ndarray  # (G, k)
    se: np.ndarray
    df: np.ndarray
    deff: np.ndarray
    n: np.ndarray
    replicates: np.ndarray | None  # (R, G, k)


def _linear_core(
    design: SurveyDesign,
    num: np.ndarray,
    den: np.ndarray | None,
    used: np.ndarray,
    dom: _Domains,
    variance: str,
    deff: str,
) -> _Core:
    """Totals (``den is None``) or ratios ``sum w num / sum w den`` for every column and domain.

    ``used`` (n, k) marks the rows that count for each column (usable value,
    nonzero weight); the domain is ``dom.codes``.
    """
    w = design.weights
    codes, g = dom.codes, dom.n_domains
    usedf = used.astype(np.float64)
    num0 = np.where(used, num, 0.0)
    tot_num = _group_sum(codes, g, w[:, None] * num0)
    if den is None:
        est = tot_num
        z = num0
    else:
        den0 = np.where(used, den, 0.0)
        tot_den = _group_sum(codes, g, w[:, None] * den0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.where(tot_den != 0, tot_num / np.where(tot_den != 0, tot_den, 1.0), np.nan)
            r_row = np.nan_to_num(est[codes])
            d_row = tot_den[codes]
            z = np.where(used & (d_row != 0), (num0 - r_row * den0) / np.where(d_row != 0, d_row, 1.0), 0.0)
    reps = None
    if variance == "taylor":
        var = taylor_variance(design, w[:, None] * z, domain=codes, n_domains=g)
    else:
        assert design.replicates is not None
        vals = num0 if den is None else np.concatenate([num0, np.where(used, den, 0.0)], axis=1)
        rt = replicate_totals(design, vals, domain=codes, n_domains=g)
        k = num.shape[1]
        if den is None:
            reps = rt
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                reps = rt[..., :k] / rt[..., k:]
        var = design.replicates.variance(reps, est)
    n_obs = _group_sum(codes, g, usedf)
    df = _domain_df(design, used, codes, g)
    vsrs = _srs_variance(w, z, used, codes, g, deff)
    with np.errstate(invalid="ignore", divide="ignore"):
        deff_v = np.where(vsrs > 0, var / np.where(vsrs > 0, vsrs, 1.0), np.nan)
    return _Core(est, np.sqrt(var), df, deff_v, n_obs, reps)


def _numeric_columns(design: SurveyDesign, cols: list[str], role: str) -> np.ndarray:
    check_columns(design.data, cols, role=role)
    out = np.empty((design.n, len(cols)))
    for j, c in enumerate(cols):
        s = design.data[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            out[:, j] = s.to_numpy(dtype=np.float64)
            continue
        if not pd.api.types.is_numeric_dtype(s.dtype):
            conv = pd.to_numeric(s, errors="coerce")
            bad = int((conv.isna() & s.notna()).sum())
            if bad:
                raise SatsampleError(f"{role} column {c!r} has {bad} non-numeric value(s)")
            s = conv
        out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(out)
    if inf.any():
        j = int(np.flatnonzero(inf.any(axis=0))[0])
        raise SatsampleError(f"{role} column {cols[j]!r} has {int(inf[:, j].sum())} infinite value(s)")
    return out


def _missing(values: np.ndarray, cols: list[str], na: str, excluded: dict[str, int], what: str) -> np.ndarray:
    """Usable mask; raise (``na="error"``) or count (``na="drop"``) missing values per column."""
    miss = np.isnan(values)
    counts = miss.sum(axis=0)
    if counts.any():
        if na == "error":
            detail = ", ".join(f"{c!r}: {int(m)}" for c, m in zip(cols, counts) if m)
            raise SatsampleError(
                f"{what} column(s) with missing values ({detail} row(s)); pass na='drop' to "
                "exclude them from the estimate of that variable (a domain restriction, as R's "
                "na.rm=TRUE), or impute them"
            )
        for c, m in zip(cols, counts):
            if m:
                excluded[f"{c!r} missing (na='drop')"] = excluded.get(f"{c!r} missing (na='drop')", 0) + int(m)
    return ~miss


def _design_summary(design: SurveyDesign) -> dict[str, Any]:
    out: dict[str, Any] = {"n": design.n, "strata": design.n_strata, "psu": design.n_psu,
                           "degf": design.degf}
    if design.replicates is not None:
        out["replicates"] = design.replicates.n_replicates
    return out


def _options(design: SurveyDesign, variance: str, level: float, ci_method: str, na: str,
             deff: str) -> dict[str, Any]:
    reps = design.replicates
    return {
        "variance": variance,
        "level": level,
        "ci_method": ci_method,
        "df": "replicate" if variance == "replicate" else "PSUs - strata in the domain",
        "lonely_psu": design.lonely_psu,
        "replicate_kind": None if reps is None or variance == "taylor" else reps.kind,
        "mse": None if reps is None or variance == "taylor" else reps.mse,
        "na": na,
        "deff": deff,
        "calibrated": bool(design.calibrations),
    }


def _build(
    statistic: str,
    design: SurveyDesign,
    core: _Core,
    dom: _Domains,
    labels: list[str],
    *,
    level: float,
    ci_method: str,
    variance: str,
    na: str,
    deff: str,
    excluded: dict[str, int],
) -> Estimate:
    k = core.estimate.shape[1]
    keep = core.n > 0  # (G, k)
    # rows: domain-major, variable-minor
    gi, ki = np.nonzero(keep)
    est = core.estimate[gi, ki]
    se = core.se[gi, ki]
    df = core.df[gi, ki]
    n_obs = core.n[gi, ki]
    if statistic == "proportion":
        n_design = n_obs if not design.calibrations else np.full(n_obs.shape, float(np.count_nonzero(design.weights)))
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,  # type: ignore[arg-type]
                                        n_design=n_design, n_obs=n_obs)
    else:
        low, high = confidence_interval(est, se, df, level=level, method="mean")
    table = dom.levels.iloc[gi].reset_index(drop=True) if dom.by else pd.DataFrame(index=range(gi.size))
    table = table.assign(
        variable=np.asarray(labels, dtype=object)[ki],
        estimate=est,
        se=se,
        ci_low=low,
        ci_high=high,
        df=df,
        deff=core.deff[gi, ki],
        n=n_obs.astype(np.int64),
    )
    reps = None if core.replicates is None else np.ascontiguousarray(core.replicates[:, gi, ki])
    return Estimate(
        statistic=statistic,
        table=table,
        by=dom.by,
        variables=tuple(labels),
        options=_options(design, variance, level, ci_method, na, deff),
        excluded=excluded,
        empty_cells=int(dom.n_possible * k - gi.size),
        n_cells_possible=int(dom.n_possible * k),
        replicate_estimates=reps,
        design_summary=_design_summary(design),
    )


def _prepare(design: SurveyDesign, level: float, variance: str, na: str, deff: str) -> str:
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    check_probability(level, name="level")
    check_choice(na, name="na", allowed=("error", "drop"))
    check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    return _resolve_variance(design, variance)


# ----------------------------------------------------------------------------- public
def total(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate population totals (R's ``svytotal``, ``svyby(..., svytotal)``).

    Parameters
    ----------
    design : SurveyDesign
    y : str or list of str
        Numeric column(s) of ``design.data``.
    by : str or list of str, optional
        Domain column(s); the estimate is computed for every observed
        combination of their values, with the full design kept.
    level : float, default=0.95
        Confidence level of the t interval.
    variance : {"auto", "taylor", "replicate"}, default="auto"
        ``"auto"`` uses the replicate weights when the design has them.
    na : {"error", "drop"}, default="error"
        Missing values in ``y`` raise, or (``"drop"``) exclude the row from
        that variable's estimate as a domain restriction (R's ``na.rm=TRUE``);
        dropped rows are counted in ``Estimate.excluded``.
    deff : {"srswor", "srswr"}, default="srswor"
        Reference variance of the design effect: simple random sampling
        without replacement (R's ``deff=TRUE``) or with replacement (R's
        ``deff="replace"``).

    Returns
    -------
    Estimate

    Notes
    -----
    :math:`\\hat Y_d = \\sum_i w_i y_i 1\\{i \\in d\\}`; Taylor variance of the
    weighted total of :math:`z_i = y_i 1\\{i \\in d\\}` (zero outside the domain),
    stratum by stratum, stage by stage.  The design effect is
    :math:`V / (\\hat N_d^2 s^2_d / n_d \\cdot (1 - n_d/\\hat N_d))`, with
    :math:`s^2_d` the weighted variance of :math:`y` in the domain (divisor
    :math:`n_d - 1`).  Degrees of freedom: PSUs minus strata among the rows of the
    domain with a usable value.
    """
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    used = _missing(vals, cols, na, excluded, "y") & (design.weights > 0)[:, None]
    core = _linear_core(design, vals, None, used, dom, variance, deff)
    return _build("total", design, core, dom, cols, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def mean(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate population means (R's ``svymean``, ``svyby(..., svymean)``).

    Parameters are those of :func:`total`.

    Returns
    -------
    Estimate

    Notes
    -----
    The mean of a domain is the ratio :math:`\\hat{\\bar Y}_d = \\sum_{i \\in d} w_i y_i
    / \\sum_{i \\in d} w_i`, linearised as
    :math:`z_i = 1\\{i \\in d\\} (y_i - \\hat{\\bar Y}_d)/\\hat N_d`; its Taylor variance is
    that of the weighted total of :math:`z` over the full design.  With
    ``na="drop"`` the domain is restricted to rows with a value, variable by
    variable.
    """
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    used = _missing(vals, cols, na, excluded, "y") & (design.weights > 0)[:, None]
    core = _linear_core(design, vals, np.ones_like(vals), used, dom, variance, deff)
    return _build("mean", design, core, dom, cols, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def ratio(
    design: SurveyDesign,
    numerator: str | Sequence[str],
    denominator: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate ratios of totals :math:`R = Y/X` (R's ``svyratio``).

    Parameters
    ----------
    design : SurveyDesign
    numerator, denominator : str or list of str
        Numeric columns.  One denominator for several numerators, or as many
        denominators as numerators (paired).
    by, level, variance, na, deff
        As in :func:`total`; with ``na="drop"`` a row is dropped for a pair
        when either value is missing.

    Returns
    -------
    Estimate
        ``variable`` is ``"<numerator>/<denominator>"``.

    Notes
    -----
    :math:`\\hat R_d = \\hat Y_d / \\hat X_d`, linearised as
    :math:`z_i = 1\\{i \\in d\\}(y_i - \\hat R_d x_i)/\\hat X_d`.  A domain with
    :math:`\\hat X_d = 0` gets NaN.
    """
    variance = _prepare(design, level, variance, na, deff)
    nums = as_column_list(numerator)
    dens = as_column_list(denominator)
    if not nums or not dens:
        raise SatsampleError("ratio needs at least one numerator and one denominator column")
    if len(dens) == 1:
        dens = dens * len(nums)
    if len(dens) != len(nums):
        raise SatsampleError(
            f"ratio: {len(nums)} numerators and {len(dens)} denominators; give one denominator "
            "or one per numerator"
        )
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    y = _numeric_columns(design, nums, "numerator")
    x = _numeric_columns(design, dens, "denominator")
    ok_y = _missing(y, nums, na, excluded, "numerator")
    ok_x = _missing(x, dens, na, excluded, "denominator")
    used = ok_y & ok_x & (design.weights > 0)[:, None]
    core = _linear_core(design, y, x, used, dom, variance, deff)
    labels = [f"{a}/{b}" for a, b in zip(nums, dens)]
    return _build("ratio", design, core, dom, labels, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def proportion(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    ci_method: Literal["logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson"] = "logit",
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate the share of 1s of 0/1 variables, with proportion intervals (R's ``svyciprop``).

    Parameters
    ----------
    design : SurveyDesign
    y : str or list of str
        Columns holding 0/1 (or boolean) values; missing values as in :func:`total`.
    by, level, variance, na, deff
        As in :func:`total`.
    ci_method : {"logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson"}, default="logit"
        Interval method; see :func:`satsample.intervals.confidence_interval`.
        All use the t quantile with the domain's degrees of freedom.

    Returns
    -------
    Estimate

    Notes
    -----
    The estimate and SE are those of :func:`mean`.  For ``"beta"`` the design's
    row count ``nrow`` is the domain's respondents for an uncalibrated design
    and the whole sample (rows with nonzero weight) for a calibrated one, as R
    counts ``nrow(design)`` after ``subset``.
    """
    check_choice(ci_method, name="ci_method", allowed=CI_METHODS)
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    ok = _missing(vals, cols, na, excluded, "y")
    bad = ok & (vals != 0) & (vals != 1)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        shown = ", ".join(f"{v:g}" for v in np.unique(vals[bad[:, j], j])[:5])
        raise SatsampleError(
            f"proportion: column {cols[j]!r} has {int(bad[:, j].sum())} value(s) other than 0/1 "
            f"({shown}); recode it to 0/1 (or use mean())"
        )
    used = ok & (design.weights > 0)[:, None]
    core = _linear_core(design, vals, np.ones_like(vals), used, dom, variance, deff)
    return _build("proportion", design, core, dom, cols, level=level, ci_method=ci_method,
                  variance=variance, na=na, deff=deff, excluded=excluded)
