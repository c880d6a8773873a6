"""Totals, means, ratios and proportions, overall and by domain (R's svytotal/svymean/svyratio/svyby).

Every estimator is a free function of a :class:`~satsample.design.SurveyDesign`
returning a frozen :class:`~satsample.results.Estimate`.  Domains keep the full
design: rows outside a domain score zero, and strata, ``n_h`` and the fpc stay
those of the whole sample.  All variables and all domains are computed with one
call of the variance engine (no Python loop over domains or variables).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._validation import (
    ConvergenceWarning,
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    check_probability,
)
from ..design import SurveyDesign
from ..intervals import CI_METHODS, _glm_likelihood_bounds, confidence_interval, t_quantile
from ..results import Estimate
from ..variance.taylor import taylor_variance
from . import engine
from .domains import Domains, domains
from .engine import Fit, Identity, Inputs

__all__ = ["mean", "proportion", "ratio", "total"]

Variance = Literal["auto", "taylor", "replicate"]
NaPolicy = Literal["error", "drop"]
Deff = Literal["srswor", "srswr"]


def _small_int_columns(design: SurveyDesign, cols: list[str]) -> np.ndarray | None:
    """The columns as a uint8 (n, k) matrix when all are bool/integer with values in 0..255."""
    data = design.data
    arrays = []
    for c in cols:
        s = data[c]
        if not (isinstance(s.dtype, np.dtype) and s.dtype.kind in "biu"):
            return None
        a = s.to_numpy()
        if a.size and s.dtype.kind != "b" and (int(a.min()) < 0 or int(a.max()) > 255):
            return None
        arrays.append(a)
    out = np.empty((design.n, len(cols)), dtype=np.uint8)
    for j, a in enumerate(arrays):
        out[:, j] = a
    return out


def _numeric_columns(design: SurveyDesign, cols: list[str], role: str) -> np.ndarray:
    check_columns(design.data, cols, role=role)
    small = _small_int_columns(design, cols)
    if small is not None:
        return small
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


def _missing(values: np.ndarray, cols: list[str], na: str, excluded: dict[str, int],
             what: str) -> np.ndarray | None:
    """Usable mask (``None``: every value usable); raise (``na="error"``) or count (``na="drop"``)."""
    if values.dtype.kind != "f":
        return None
    miss = np.isnan(values)
    counts = miss.sum(axis=0)
    if not counts.any():
        return None
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


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a & b


def design_summary(design: Any) -> dict[str, Any]:
    if not isinstance(design, SurveyDesign):  # a Dask design: its level tables
        out = {"n": design.n, "strata": design.n_strata, "psu": design.n_psu,
               "degf": design.degf}
        if design.replicates is not None:
            out["replicates"] = design.replicates.n_replicates
        return out
    # PSU codes are 0..P-1: count them without a sort
    psu = design.psu
    n_psu = int(np.count_nonzero(np.bincount(psu))) if psu.size else 0
    degf = int(design.replicates.degf) if design.replicates is not None else n_psu - design.n_strata
    out: dict[str, Any] = {"n": design.n, "strata": design.n_strata, "psu": n_psu, "degf": degf}
    if design.replicates is not None:
        out["replicates"] = design.replicates.n_replicates
    return out


def n_positive(design: Any) -> int:
    """Rows with a positive analysis weight (a Dask design: from its last weighting step)."""
    if isinstance(design, SurveyDesign):
        return int(np.count_nonzero(design.weights))
    return int(design.history[-1].n_rows)


def options(design: Any, fitted: Fit, **extra: Any) -> dict[str, Any]:
    """The options of a result fitted on ``design`` (see :func:`engine.options`).

    ``replay`` says how the weighting steps of replicates generated on the fly
    were replayed: ``"cells"`` (replicate cell tables), ``"blocks"`` (blocks of
    replicate weights) or ``None`` (nothing replayed).  A Dask design adds
    ``engine="dask"``, ``partitions`` and ``shuffled`` (whether the frame was
    shuffled by stratum).
    """
    from ..variance.replicate import replay_path

    out = engine.options(fitted, replicates=design.replicates, lonely_psu=design.lonely_psu,
                         calibrated=bool(design.calibrations), **extra)
    if isinstance(design, SurveyDesign):
        out["replay"] = replay_path(design) if fitted.variance == "replicate" else None
    else:
        reps = design.replicates
        out["replay"] = ("partitions" if fitted.variance == "replicate" and reps is not None
                         and reps.steps else None)
        out.update(engine="dask", partitions=design.n_partitions, shuffled=design.shuffled)
    return out


def is_dask_design(design: Any) -> bool:
    """True for a :class:`satsample.distributed.DaskSurveyDesign` (without importing dask)."""
    return (type(design).__name__ == "DaskSurveyDesign"
            and type(design).__module__.startswith("satsample.distributed"))


def fit_design(design: Any, make_inputs: Any, by: str | Sequence[str] | None,
               combo: engine.Combination, variance: str, deff: str, den: str | None
               ) -> tuple[Any, Domains, Fit, dict[str, int], Inputs | None]:
    """Domains, inputs and the engine's fit, in memory or on Dask: every estimator's one entry.

    ``make_inputs(design) -> (Inputs, excluded)`` builds the per-row inputs of
    an in-memory design: the sample's, or on Dask each partition's (the
    passes over the partitions check them and add up ``excluded``).
    Returns the source (for :func:`engine.vcov_source`), the domains, the fit,
    the exclusions and the inputs (``None`` on Dask).
    """
    if isinstance(design, SurveyDesign):
        dom = domains(design.data, by)
        inputs, excluded = make_inputs(design)
        src: Any = engine.MemorySource(design, inputs, dom.codes, dom.n_domains)
    else:
        from ..distributed.estimators import dask_source

        src, dom = dask_source(design, make_inputs, by, variance)
        inputs = None
    fitted = engine.fit_source(src, combo, dom.n_domains, variance, deff, den=den)
    if inputs is None:
        excluded = dict(src.excluded)  # counted by the passes over the partitions
    return src, dom, fitted, excluded, inputs


def _build(
    statistic: str,
    design: Any,
    make_inputs: Any,
    by: str | Sequence[str] | None,
    labels: list[str],
    *,
    den: str | None,
    variance: str,
    level: float,
    ci_method: str,
    na: str,
    deff: str,
    likelihood: bool = False,
) -> Estimate:
    """Run the engine for the identity combination and lay the result out as an Estimate."""
    combo = Identity(len(labels))
    src, dom, fitted, excluded, inputs = fit_design(design, make_inputs, by, combo, variance,
                                                    deff, den)
    k = fitted.estimate.shape[1]
    keep = fitted.n > 0  # (G, k)
    # rows: domain-major, variable-minor
    gi, ki = np.nonzero(keep)
    est = fitted.estimate[gi, ki]
    se = fitted.se[gi, ki]
    df = fitted.df[gi, ki]
    n_obs = fitted.n[gi, ki]
    if statistic == "proportion":
        n_design = n_obs if not design.calibrations else np.full(
            n_obs.shape, float(n_positive(design)))
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,  # type: ignore[arg-type]
                                        n_design=n_design, n_obs=n_obs)
        if likelihood and variance == "taylor":
            # cells R's glm replay covers (finite limits) replace the approximation
            o_low, o_high = _glm_likelihood_ci(design, inputs.num, inputs.ok, dom, fitted, level)
            o_low, o_high = o_low[gi, ki], o_high[gi, ki]
            has = np.isfinite(o_low) & np.isfinite(o_high)
            low = np.where(has, o_low, low)
            high = np.where(has, o_high, high)
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
        deff=fitted.deff[gi, ki],
        n=n_obs.astype(np.int64),
    )
    reps = None if fitted.replicates is None else np.ascontiguousarray(fitted.replicates[:, gi, ki])
    cells = gi * k + ki

    def covariance() -> np.ndarray:
        full = engine.vcov_source(src, combo, dom.n_domains, variance, fitted, den=den)
        return full[np.ix_(cells, cells)]

    return Estimate(
        statistic=statistic,
        table=table,
        by=dom.by,
        variables=tuple(labels),
        options=options(design, fitted, level=level, ci_method=ci_method, na=na, deff=deff),
        excluded=excluded,
        empty_cells=int(dom.n_possible * k - gi.size),
        n_cells_possible=int(dom.n_possible * k),
        replicate_estimates=reps,
        design_summary=design_summary(design),
        vcov_fn=covariance,
    )


def _y_inputs(cols: list[str], na: str, den: str | None, statistic: str,
              design: SurveyDesign) -> tuple[Inputs, dict[str, int]]:
    """The inputs of total/mean/proportion: the ``y`` columns, usable mask, exclusions."""
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    ok = _missing(vals, cols, na, excluded, "y")
    if statistic == "proportion":
        _check_01(vals, ok, cols)
    return Inputs(num=vals, den=den, ok=ok), excluded


def _ratio_inputs(nums: list[str], dens: list[str], na: str,
                  design: SurveyDesign) -> tuple[Inputs, dict[str, int]]:
    """The inputs of ratio: numerators, denominators, rows usable for both, exclusions."""
    excluded: dict[str, int] = {}
    y = _numeric_columns(design, nums, "numerator")
    x = _numeric_columns(design, dens, "denominator")
    ok_y = _missing(y, nums, na, excluded, "numerator")
    ok_x = _missing(x, dens, na, excluded, "denominator")
    x = np.asarray(x, dtype=np.float64)
    return Inputs(num=y, den=x, ok=_both(ok_y, ok_x)), excluded


def _check_01(vals: np.ndarray, ok: np.ndarray | None, cols: list[str]) -> None:
    if vals.dtype == np.uint8:
        bad = vals > 1
    else:
        bad = (vals != 0) & (vals != 1)
        if ok is not None:
            bad &= ok
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        shown = ", ".join(f"{v:g}" for v in np.unique(vals[bad[:, j], j])[:5])
        raise SatsampleError(
            f"proportion: column {cols[j]!r} has {int(bad[:, j].sum())} value(s) other than 0/1 "
            f"({shown}); recode it to 0/1 (or use mean())"
        )


def _y_columns(y: str | Sequence[str]) -> list[str]:
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    return cols


def _prepare(design: Any, level: float, variance: str, na: str, deff: str) -> str:
    if not isinstance(design, SurveyDesign) and not is_dask_design(design):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    check_probability(level, name="level")
    check_choice(na, name="na", allowed=("error", "drop"))
    check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    return engine.resolve_variance(design, variance)


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
    cols = _y_columns(y)
    return _build("total", design, partial(_y_inputs, cols, na, None, "total"), by, cols,
                  den=None, variance=variance, level=level, ci_method="mean", na=na, deff=deff)


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
    cols = _y_columns(y)
    return _build("mean", design, partial(_y_inputs, cols, na, "used", "mean"), by, cols,
                  den="used", variance=variance, level=level, ci_method="mean", na=na, deff=deff)


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
    labels = [f"{a}/{b}" for a, b in zip(nums, dens)]
    return _build("ratio", design, partial(_ratio_inputs, nums, dens, na), by, labels,
                  den="ratio", variance=variance, level=level, ci_method="mean", na=na,
                  deff=deff)


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

    For ``"likelihood"`` with a Taylor variance, the Rao-Scott scale
    :math:`\\lambda` and the dispersion :math:`\\phi` are those of R's
    ``svyglm(y ~ 1, family = quasibinomial)`` fitted as ``glm.fit`` fits it
    (IRLS from R's starting values, stopped at a relative deviance change of
    1e-8), so the limits are R's exact profile roots, not only their
    converged-fit approximation :math:`\\lambda\\phi = se^2 n^2/(p(1-p)(n-1))`
    used by :func:`satsample.intervals.confidence_interval` (the two differ by
    ~1e-6 relative).  Replicate-weight designs keep that approximation.
    """
    check_choice(ci_method, name="ci_method", allowed=CI_METHODS)
    variance = _prepare(design, level, variance, na, deff)
    if ci_method == "likelihood" and variance == "taylor" and is_dask_design(design):
        raise SatsampleError(
            "ci_method='likelihood' with a Taylor variance replays R's quasibinomial glm on the "
            "rows of each domain and is not available on a Dask design; use 'logit', 'beta', "
            "'wilson'... or replicate weights")
    cols = _y_columns(y)
    return _build("proportion", design, partial(_y_inputs, cols, na, "used", "proportion"), by,
                  cols, den="used", variance=variance, level=level, ci_method=ci_method, na=na,
                  deff=deff, likelihood=ci_method == "likelihood")


_GLM_EPSILON = 1e-8  # R's glm.control(): relative deviance change
_GLM_MAXIT = 25


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    """d mu / d eta of the logit link as R computes it, ``exp(eta) / (1 + exp(eta))^2``."""
    e = np.exp(np.clip(eta, -30.0, 30.0))
    return e / (1.0 + e) ** 2


def _glm_likelihood_ci(
    design: SurveyDesign,
    vals: np.ndarray,
    ok: np.ndarray | None,
    dom: Domains,
    core: Fit,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """R's ``svyciprop(method = "likelihood")`` limits, replaying its quasibinomial ``svyglm``.

    Returns (G, k) arrays of limits, NaN in the cells it does not cover (share
    0 or 1, SE 0, fewer than 2 respondents, ``df < 1``); those keep
    :func:`confidence_interval`'s limits.

    Notes
    -----
    R fits ``svyglm(y ~ 1, design, family = quasibinomial)`` on the design
    restricted to the domain's respondents: prior weights
    :math:`a_i = w_i W / \\sum w` with :math:`W` = ``nrow(design)`` (the
    domain's respondents; the whole sample for a calibrated design, whose
    subset keeps every row).  ``glm.fit`` starts from
    :math:`\\mu_i^{(0)} = (a_i y_i + 1/2)/(a_i + 1)` and iterates weighted
    least squares on the working response until
    :math:`|D - D_{old}|/(|D| + 0.1) < 10^{-8}` (at most 25 iterations),
    returning the last :math:`\\mu` and the working weights
    :math:`v_i = a_i\\,\\mu'(\\eta)^2/V(\\mu)` *of the last iteration* (computed
    from the previous :math:`\\mu`).  Then, as ``svy.varcoef`` and
    ``confint.svyglm`` do,

    .. math::

        A^{-1} = 1/\\sum_i v_i, \\quad
        \\lambda = A^{-1}\\,\\widehat V\\Big(\\sum_i v_i \\frac{y_i - \\mu}{\\mu'(\\eta)}\\Big),
        \\quad \\phi = \\frac{p(1-p)}{\\mu(1-\\mu)} \\frac{n}{n-1},

    :math:`\\widehat V` the Taylor variance of the total over the full design
    (rows outside the domain score 0), :math:`\\phi` = ``svyvar`` of the
    Pearson residuals, and the limits solve
    :math:`(D(\\pi) - D(\\mu))/\\phi = t^2\\lambda` (see
    :func:`satsample.intervals._glm_likelihood_bounds`).  Because the glm stops
    short of the exact fit, :math:`\\lambda` differs from
    :math:`se^2 n/(p(1-p))` by up to ~1e-4 relative.
    """
    w = design.weights
    codes, g = dom.codes, dom.n_domains
    k = vals.shape[1]
    pos = w > 0
    n_obs = core.n.astype(np.float64)
    if design.calibrations:
        w_total = np.full((g, k), float(np.count_nonzero(w)))
    else:
        w_total = n_obs
    est = np.zeros((g, k))
    mu_fit = np.full((g, k), np.nan)
    inv_a = np.full((g, k), np.nan)
    scores = np.zeros((vals.shape[0], k))
    not_converged = 0
    for j in range(k):
        u = pos if ok is None else pos & ok[:, j]
        rows = np.flatnonzero(u & (codes >= 0))
        c = codes[rows]
        y = np.asarray(vals[rows, j], dtype=np.float64)
        wj = w[rows]
        sw = np.bincount(c, weights=wj, minlength=g)
        scale = np.divide(w_total[:, j], sw, out=np.zeros(g), where=sw > 0)
        a = wj * scale[c]  # prior weights, summing to W in each domain
        s1 = np.bincount(c, weights=a * y, minlength=g)
        sa = np.bincount(c, weights=a, minlength=g)
        p = np.divide(s1, sa, out=np.zeros(g), where=sa > 0)
        est[:, j] = p
        fit = (sa > 0) & (p > 0) & (p < 1)
        # iteration 1 from the per-row starting values
        m0 = (a * y + 0.5) / (a + 1.0)
        eta0 = np.log(m0 / (1.0 - m0))
        me0 = _logit_mu_eta(eta0)
        v0 = a * me0**2 / (m0 * (1.0 - m0))  # working weights of iteration 1
        dev_old = -2.0 * np.bincount(c, weights=a * (y * np.log(m0) + (1 - y) * np.log(1 - m0)),
                                     minlength=g)
        num = np.bincount(c, weights=v0 * (eta0 + (y - m0) / me0), minlength=g)
        den = np.bincount(c, weights=v0, minlength=g)
        b = np.divide(num, den, out=np.zeros(g), where=den > 0)
        first = np.ones(g, dtype=bool)  # stopped at iteration 1: per-row working weights
        wfac = np.zeros(g)  # working weight per unit prior weight, iterations >= 2
        active = fit.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            for it in range(1, _GLM_MAXIT + 1):
                mu = 1.0 / (1.0 + np.exp(-b))
                dev = -2.0 * (s1 * np.log(mu) + (sa - s1) * np.log(1.0 - mu))
                done = np.abs(dev - dev_old) / (np.abs(dev) + 0.1) < _GLM_EPSILON
                active &= ~done
                if not active.any():
                    break
                if it == _GLM_MAXIT:
                    not_converged += int(active.sum())
                    break
                # next iteration from the constant fit
                me = _logit_mu_eta(b)
                first = np.where(active, False, first)
                wfac = np.where(active, me**2 / (mu * (1.0 - mu)), wfac)
                b = np.where(active, b + (p - mu) / me, b)
                dev_old = np.where(active, dev, dev_old)
        mu = 1.0 / (1.0 + np.exp(-b))
        me = _logit_mu_eta(b)
        v = np.where(first[c], v0, a * wfac[c])
        inv_a[:, j] = np.divide(1.0, np.bincount(c, weights=v, minlength=g), out=np.full(g, np.nan),
                                where=fit)
        mu_fit[:, j] = np.where(fit, mu, np.nan)
        scores[rows, j] = np.where(fit[c], v * (y - mu[c]) / me[c], 0.0)
    if not_converged:
        warnings.warn(
            f"likelihood interval: the quasibinomial glm did not converge in {_GLM_MAXIT} "
            f"iterations for {not_converged} cell(s); their limits use the last iteration",
            ConvergenceWarning,
            stacklevel=3,
        )
    var = taylor_variance(design, scores, domain=codes, n_domains=g)
    lam = var * inv_a
    crit = t_quantile(level, core.df)
    low = np.full((g, k), np.nan)
    high = np.full((g, k), np.nan)
    good = (np.isfinite(mu_fit) & np.isfinite(crit) & (n_obs > 1) & (core.se > 0)
            & np.isfinite(lam) & (lam > 0))
    if good.any():
        pg, mg, ng = est[good], mu_fit[good], n_obs[good]
        phi = pg * (1 - pg) / (mg * (1 - mg)) * ng / (ng - 1)
        lo, hi = _glm_likelihood_bounds(pg, crit[good], rao_scott=lam[good], dispersion=phi,
                                        weight_total=w_total[good], fitted=mg)
        low[good] = lo
        high[good] = hi
    return low, high
