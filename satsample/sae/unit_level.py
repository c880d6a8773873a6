"""Unit-level small-area estimation: the Battese-Harter-Fuller nested-error model.

:func:`battese_harter_fuller` fits :math:`y_{dj} = x_{dj}'\\beta + v_d + e_{dj}` to the
respondents (per-respondent satisfied indicator or score) with statsmodels' linear mixed
model (REML), and predicts the finite-population mean of every area from the population
means of the covariates (known from the frame: shares of online users, women, age groups,
the agency level...), with the Prasad-Rao MSE.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from .._tables import TableField
from .._validation import (
    ConvergenceError,
    SatsampleError,
    as_column_list,
    as_numbers,
    check_columns,
    check_grouping,
    check_probability,
)
from ..results import Summary, _frozen_mapping
from .area_level import _model_columns, _show

__all__ = ["UnitLevelEstimate", "battese_harter_fuller"]


@dataclass(frozen=True, kw_only=True)
class UnitLevelEstimate:
    """Battese-Harter-Fuller (unit-level) small-area estimates of area means with their MSE.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per area of the population table: the area column, ``n`` (respondents used),
        ``N`` (population size), ``direct`` (respondent mean), ``direct_se``
        (:math:`s_d\\sqrt{(1-f_d)/n_d}`), ``in_sample``, ``synthetic``
        (:math:`\\bar X_d'\\hat\\beta`), ``gamma``, ``estimate`` (EBLUP of the population mean),
        ``mse``, ``rmse``, ``ci_low``, ``ci_high``, ``g1``, ``g2``, ``g3``, ``source`` and
        ``method``.
    area : str
    covariates : tuple of str
    coefficients : pandas.DataFrame
        ``term``, ``estimate``, ``se`` (from :math:`(\\sum_d X_d'V_d^{-1}X_d)^{-1}`).
    sigma2_v, sigma2_e : float
        Area-effect and unit-error variances (REML).
    boundary : bool
        True when :math:`\\hat\\sigma^2_v = 0`.
    mse_method : str
    level : float
    options : mapping
        ``excluded_missing_y`` (respondents without a usable value), ``n_units``.
    """

    table: pd.DataFrame = TableField()
    area: str
    covariates: tuple[str, ...]
    coefficients: pd.DataFrame = TableField()
    sigma2_v: float
    sigma2_e: float
    boundary: bool
    mse_method: str = "prasad-rao"
    level: float = 0.95
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen_mapping(self.options))

    @property
    def model(self) -> str:
        """One-line statement of the model, for methods sections and output labels."""
        terms = " + ".join(self.coefficients["term"])
        return (f"Battese-Harter-Fuller unit-level model, REML (sigma2_v = {self.sigma2_v:.4g}, "
                f"sigma2_e = {self.sigma2_e:.4g}{', sigma2_v at its boundary 0' if self.boundary else ''}); "
                f"terms: {terms}; MSE: {self.mse_method}")

    def to_frame(self) -> pd.DataFrame:
        """Return a copy of :attr:`table`."""
        return self.table.copy()

    def summary(self) -> Summary:
        """A :class:`~satsample.Summary` of the fit and the area table."""
        info: list[tuple[str, str]] = [
            ("model", "y_dj = x_dj' beta + v_d + e_dj, v_d ~ N(0, sigma2_v), e_dj ~ N(0, sigma2_e)"),
            ("fit", "REML (statsmodels MixedLM)"),
            ("sigma2_v", f"{self.sigma2_v:.6g}" + (" (at its boundary 0)" if self.boundary else "")),
            ("sigma2_e", f"{self.sigma2_e:.6g}"),
            ("MSE", self.mse_method),
            ("units", f"{self.options.get('n_units')} respondents; "
                      f"{self.options.get('excluded_missing_y', 0)} without a usable value left out"),
            ("level", f"{self.level:g}"),
        ]
        for rec in self.coefficients.itertuples(index=False):
            info.append((f"beta {rec.term}", f"{rec.estimate:.6g} (SE {rec.se:.4g})"))
        cols = [self.area, "n", "direct", "direct_se", "estimate", "rmse", "gamma", "source"]
        return Summary(title="Battese-Harter-Fuller small-area estimates", info=tuple(info),
                       table=self.table[cols].copy(),
                       notes=("Model-based estimates: publish them labelled as such.",))

    def _repr_html_(self) -> str:
        return self.summary().as_html()


def _neg_reml(params: np.ndarray, n_d: np.ndarray, xbar: np.ndarray, ybar: np.ndarray,
              xtx: np.ndarray, xty: np.ndarray, yty: float) -> float:
    """Minus the REML log-likelihood of the nested-error model from per-area sums.

    :math:`V_d = \\sigma^2_e I + \\sigma^2_v J`, :math:`\\log|V_d| = (n_d-1)\\log\\sigma^2_e
    + \\log(\\sigma^2_e + n_d\\sigma^2_v)`, :math:`V_d^{-1} = \\sigma_e^{-2}(I - \\gamma_d J/n_d)`.
    """
    s2v, s2e = float(params[0]), float(params[1])
    if s2e <= 0 or s2v < 0:
        return np.inf
    gam = n_d * s2v / (s2e + n_d * s2v)
    a = (xtx - np.einsum("d,di,dj->ij", gam * n_d, xbar, xbar)) / s2e
    b = (xty - np.einsum("d,di->i", gam * n_d * ybar, xbar)) / s2e
    beta = np.linalg.solve(a, b)
    rtr = yty - 2 * beta @ xty + beta @ xtx @ beta
    rbar = ybar - xbar @ beta
    quad = (rtr - np.sum(gam * n_d * rbar**2)) / s2e
    logdet_v = np.sum((n_d - 1) * np.log(s2e) + np.log(s2e + n_d * s2v))
    return 0.5 * (logdet_v + np.linalg.slogdet(a)[1] + quad)


def _fit_mixedlm(y: np.ndarray, x: np.ndarray, groups: np.ndarray) -> tuple[float, float, bool]:
    """REML variance components of the nested-error model through statsmodels."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    model = MixedLM(y, x, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary / convergence notes are checked below
        res = None
        # statsmodels' default sequence (BFGS first); L-BFGS alone can stop at sigma2_v = 0
        for method in (None, "nm"):
            try:
                res = model.fit(reml=True) if method is None else \
                    model.fit(reml=True, method=method, maxiter=5000)
            except (np.linalg.LinAlgError, ValueError):
                continue
            if res.converged:
                break
    if res is None or not res.converged:
        raise ConvergenceError("battese_harter_fuller: statsmodels MixedLM (REML) did not converge")
    s2e = float(res.scale)
    s2v = float(np.asarray(res.cov_re)[0, 0])
    s2v = max(s2v, 0.0)
    return s2v, s2e, s2v <= 1e-12 * s2e


def battese_harter_fuller(
    sample: pd.DataFrame,
    population: pd.DataFrame,
    *,
    y: str,
    area: str,
    covariates: str | Sequence[str],
    population_size: str,
    level: float = 0.95,
) -> UnitLevelEstimate:
    """EBLUPs of area means under the nested-error (Battese-Harter-Fuller) model.

    Parameters
    ----------
    sample : pandas.DataFrame
        One row per respondent: the area, the outcome ``y`` (a 0/1 satisfied indicator or a
        score; missing values are left out and counted) and the numeric ``covariates``
        (code categories as 0/1 indicators).  Not modified.
    population : pandas.DataFrame
        One row per area: the area, ``population_size`` (:math:`N_d`) and the population
        means :math:`\\bar X_d` of the same ``covariates`` (for 0/1 indicators, the shares in
        the frame).  Areas without respondents get the synthetic estimate.
    y : str
        Outcome column of ``sample``.
    area : str
        Area column (in both tables).
    covariates : str or sequence of str
        Numeric unit-level covariate columns (an intercept is added).
    population_size : str
        Column of ``population`` with :math:`N_d`.
    level : float, default=0.95

    Returns
    -------
    UnitLevelEstimate

    Raises
    ------
    SatsampleError
        Missing columns or covariate values (named), an area of the sample missing from
        ``population``, :math:`N_d` below the number of respondents, collinear covariates.
    ConvergenceError
        The mixed-model fit did not converge.

    Notes
    -----
    Model: :math:`y_{dj} = x_{dj}'\\beta + v_d + e_{dj}`, :math:`v_d \\sim N(0,\\sigma^2_v)`,
    :math:`e_{dj} \\sim N(0,\\sigma^2_e)`, holding for the sample as for the population
    (non-informative sampling within areas: the design weights are not used).  Variance
    components by REML (statsmodels ``MixedLM``), :math:`\\hat\\beta` by GLS.
    With :math:`\\gamma_d = \\sigma^2_v/(\\sigma^2_v + \\sigma^2_e/n_d)`,
    :math:`f_d = n_d/N_d` and :math:`\\bar X_{dr}` the mean of the non-sampled units,

    .. math::

        \\hat{\\bar Y}_d = f_d \\bar y_d + (1 - f_d)\\,[\\bar X_{dr}'\\hat\\beta
        + \\gamma_d(\\bar y_d - \\bar x_d'\\hat\\beta)].

    Prasad-Rao MSE (Rao & Molina 2015, sec. 7.2):
    :math:`(1-f_d)^2[g_{1d} + g_{2d} + 2g_{3d} + \\sigma^2_e/(N_d - n_d)]` with
    :math:`g_{1d} = \\gamma_d\\sigma^2_e/n_d`,
    :math:`g_{2d} = (\\bar X_{dr} - \\gamma_d\\bar x_d)'(\\sum_k X_k'V_k^{-1}X_k)^{-1}
    (\\bar X_{dr} - \\gamma_d\\bar x_d)`,
    :math:`g_{3d} = n_d^{-2}(\\sigma^2_v + \\sigma^2_e/n_d)^{-3}[\\sigma^4_e V_{vv}
    - 2\\sigma^2_e\\sigma^2_v V_{ve} + \\sigma^4_v V_{ee}]`, :math:`V` the inverse of the
    information matrix :math:`I_{vv} = \\frac12\\sum n_d^2 a_d^{-2}`,
    :math:`I_{ve} = \\frac12\\sum n_d a_d^{-2}`,
    :math:`I_{ee} = \\frac12\\sum[(n_d-1)\\sigma_e^{-4} + a_d^{-2}]`,
    :math:`a_d = \\sigma^2_e + n_d\\sigma^2_v`.  Areas without respondents:
    :math:`\\bar X_d'\\hat\\beta` with MSE
    :math:`\\hat\\sigma^2_v + \\bar X_d'(\\sum_k X_k'V_k^{-1}X_k)^{-1}\\bar X_d + \\sigma^2_e/N_d`.

    Assumptions: linear model with normal, homoscedastic errors (for a 0/1 indicator this is
    a linear probability model; its EBLUP is still unbiased under the model but intervals
    near 0 or 1 are rough), area effects independent of the covariates, covariate means known
    exactly for the population, sampling ignorable given the covariates.

    References
    ----------
    Battese GE, Harter RM, Fuller WA (1988). JASA 83:28-36.  Prasad NGN, Rao JNK (1990).
    JASA 85:163-171.  Rao JNK, Molina I (2015). Small Area Estimation, 2nd ed., ch. 7.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from satsample.sae import battese_harter_fuller
    >>> gen = np.random.default_rng(0)
    >>> area = np.repeat(["A", "B", "C", "D", "E", "F"], 15)
    >>> online = gen.integers(0, 2, area.size)
    >>> effect = dict(zip("ABCDEF", gen.normal(0, 0.5, 6)))
    >>> score = 3.5 + 0.4 * online + np.array([effect[a] for a in area]) + gen.normal(0, 1, area.size)
    >>> smp = pd.DataFrame({"area": area, "score": score, "online": online})
    >>> pop = pd.DataFrame({"area": list("ABCDEFG"), "N": 300, "online": [.3, .5, .4, .2, .6, .5, .4]})
    >>> fit = battese_harter_fuller(smp, pop, y="score", area="area", covariates="online",
    ...                             population_size="N")
    >>> fit.to_frame()[["area", "n", "estimate", "in_sample"]].tail(2).round(2)
      area   n  estimate  in_sample
    5    F  15      4.00       True
    6    G   0      4.23      False
    """
    covs = _check_bhf_inputs(sample, population, y=y, area=area, covariates=covariates,
                             population_size=population_size, level=level)
    data, excluded = _respondents(sample, population, y=y, area=area, covs=covs)

    keys = population[area].astype(str).to_numpy()
    g = pd.Index(keys).get_indexer(data[area].astype(str)).astype(np.int64)  # no loop over rows
    n_areas = len(population)
    n_d = np.bincount(g, minlength=n_areas).astype(np.float64)
    big_n = as_numbers(population[population_size], name=population_size,
                       role="population_size")
    bad = ~(big_n >= n_d) | ~np.isfinite(big_n) | (big_n <= 0)
    if bad.any():
        raise SatsampleError(f"population_size {population_size!r} is missing, not positive or "
                             f"below the number of respondents for area(s) {_show(keys[bad])}")
    x, names = _unit_design(data, covs)
    yy = data["_y"].to_numpy()
    sampled = n_d > 0
    if int(sampled.sum()) < 3:
        raise SatsampleError("battese_harter_fuller needs respondents in at least 3 areas")

    # per-area sums
    p = x.shape[1]
    sum_x = np.zeros((n_areas, p))
    np.add.at(sum_x, g, x)
    sum_y = np.bincount(g, weights=yy, minlength=n_areas)
    n_safe = np.where(sampled, n_d, 1.0)
    xbar = sum_x / n_safe[:, None]
    ybar = np.where(sampled, sum_y / n_safe, np.nan)

    s2v, s2e, boundary = _reml_components(yy, x, g, n_d, xbar, ybar, sampled)
    gamma = np.where(sampled, s2v / (s2v + s2e / n_safe), 0.0)
    beta, a_inv = _gls(x, yy, gamma, n_d, xbar, ybar, s2e)

    xpop = np.column_stack([np.ones(n_areas), population[covs].to_numpy(dtype=np.float64)])
    f = n_d / big_n
    rest = np.where(big_n > n_d, big_n - n_d, 1.0)
    xr = np.where((big_n > n_d)[:, None], (big_n[:, None] * xpop - n_d[:, None] * xbar)
                  / rest[:, None], xpop)
    v_hat = np.where(sampled, gamma * (np.nan_to_num(ybar) - xbar @ beta), 0.0)
    pred_r = xr @ beta + v_hat
    estimate = np.where(sampled, f * np.nan_to_num(ybar) + (1 - f) * pred_r, xpop @ beta)

    g1, g2, g3, vinv = _prasad_rao_terms(s2v, s2e, n_d, sampled, gamma, xr, xbar, xpop, a_inv)
    tail = np.where(big_n > n_d, s2e / rest, 0.0)
    mse = np.where(sampled, (1 - f) ** 2 * (g1 + g2 + 2 * g3 + tail), g1 + g2 + s2e / big_n)

    direct_se = _direct_se(yy, g, n_d, ybar, f)  # respondent means' SRS SEs, for comparison

    table = pd.DataFrame({area: population[area].to_numpy()})
    table["n"] = n_d.astype(np.int64)
    table["N"] = big_n
    table["direct"] = ybar
    table["direct_se"] = direct_se
    table = table.assign(**_model_columns(sampled, xpop @ beta, gamma, estimate, mse, level))
    table["g1"] = g1
    table["g2"] = g2
    table["g3"] = g3
    table["source"] = "model-based"
    table["method"] = np.where(sampled, "EBLUP (BHF, reml)", "synthetic (BHF, reml)")
    se_beta = np.sqrt(np.diag(a_inv))
    coefficients = pd.DataFrame({"term": names, "estimate": beta, "se": se_beta})
    return UnitLevelEstimate(
        table=table, area=area, covariates=tuple(covs), coefficients=coefficients,
        sigma2_v=s2v, sigma2_e=s2e, boundary=bool(boundary), level=level,
        options={"excluded_missing_y": excluded, "n_units": int(len(yy)),
                 "variance_components_cov": vinv.tolist(), "fit": "statsmodels MixedLM, REML"},
    )


def _check_bhf_inputs(sample: pd.DataFrame, population: pd.DataFrame, *, y: str, area: str,
                      covariates: str | Sequence[str], population_size: str,
                      level: float) -> list[str]:
    """Check the two tables, their columns and covariates; return the covariate list."""
    if not isinstance(sample, pd.DataFrame) or not isinstance(population, pd.DataFrame):
        raise SatsampleError("sample and population must be pandas DataFrames")
    check_probability(level, name="level")
    covs = as_column_list(covariates)
    check_columns(sample, [area, y, *covs], role="sample")
    check_columns(population, [area, population_size, *covs], role="population")
    for frame, name in ((sample, "sample"), (population, "population")):
        for col in covs:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise SatsampleError(f"{name} covariate {col!r} must be numeric (code categories "
                                     "as 0/1 indicators; their population means are shares)")
            miss = int(frame[col].isna().sum())
            if miss:
                raise SatsampleError(f"{name} covariate {col!r} has {miss} missing value(s)")
            inf = np.isinf(frame[col].to_numpy(dtype=np.float64))
            if inf.any():
                where = (f"area(s) {_show(pd.unique(frame.loc[inf, area]))}" if area in frame
                         else "some rows")
                raise SatsampleError(f"{name} covariate {col!r} is infinite for {where}")
    if population[area].duplicated().any():
        dup = pd.unique(population.loc[population[area].duplicated(keep=False), area])
        raise SatsampleError(f"population: area(s) {_show(dup)} appear on more than one row")
    check_grouping(sample[area], name=area, role="area")
    check_grouping(population[area], name=area, role="area")
    return covs


def _respondents(sample: pd.DataFrame, population: pd.DataFrame, *, y: str, area: str,
                 covs: list[str]) -> tuple[pd.DataFrame, int]:
    """The rows with an outcome (area, covariates, ``_y``) and the number left out."""
    yv = pd.Series(as_numbers(sample[y], name=y, role="outcome"), index=sample.index)
    usable = yv.notna().to_numpy()
    excluded = int((~usable).sum())
    data = sample.loc[usable, [area, *covs]].copy()
    data["_y"] = yv[usable].to_numpy(dtype=np.float64)
    unknown = sorted(set(data[area].astype(str)) - set(population[area].astype(str)))
    if unknown:
        raise SatsampleError(f"population has no row for area(s) {_show(unknown)} of the sample")
    return data, excluded


def _direct_se(yy: np.ndarray, g: np.ndarray, n_d: np.ndarray, ybar: np.ndarray,
               f: np.ndarray) -> np.ndarray:
    """SRS standard error of each area's respondent mean, :math:`s_d\\sqrt{(1-f_d)/n_d}`."""
    n_safe = np.where(n_d > 0, n_d, 1.0)
    sum_y2 = np.bincount(g, weights=yy**2, minlength=n_d.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = (sum_y2 - n_d * np.nan_to_num(ybar) ** 2) / (n_d - 1)
        return np.where(n_d > 1, np.sqrt(np.maximum(s2, 0) * (1 - f) / n_safe), np.nan)


def _unit_design(data: pd.DataFrame, covs: list[str]) -> tuple[np.ndarray, list[str]]:
    """The unit-level design matrix with an intercept and its term names; not collinear."""
    x = np.column_stack([np.ones(len(data)), data[covs].to_numpy(dtype=np.float64)])
    names = ["(Intercept)", *covs]
    if np.linalg.matrix_rank(x) < x.shape[1]:
        for j in range(1, x.shape[1] + 1):
            if np.linalg.matrix_rank(x[:, :j]) < j:
                raise SatsampleError(f"the covariates are collinear in the sample: term "
                                     f"{names[j - 1]!r} is a combination of the terms before it")
    return x, names


def _reml_components(yy: np.ndarray, x: np.ndarray, g: np.ndarray, n_d: np.ndarray,
                     xbar: np.ndarray, ybar: np.ndarray,
                     sampled: np.ndarray) -> tuple[float, float, bool]:
    """REML variance components (sigma2_v, sigma2_e) and whether sigma2_v is at 0."""
    # REML by statsmodels, then refined on the closed-form REML likelihood to a tight
    # tolerance (statsmodels stops at a loose gradient tolerance: ~1e-2 relative on a small
    # sigma2_v)
    s2v0, s2e0, _ = _fit_mixedlm(yy, x, g)
    sums = (n_d[sampled], xbar[sampled], ybar[sampled], x.T @ x, x.T @ yy, float(yy @ yy))
    scale = s2e0
    refined = optimize.minimize(
        lambda t: _neg_reml(t * scale, *sums), np.array([s2v0, s2e0]) / scale,
        method="L-BFGS-B", bounds=[(0.0, None), (1e-10, None)],
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 500})
    if not refined.success and _neg_reml(refined.x * scale, *sums) > _neg_reml(
            np.array([s2v0, s2e0]), *sums):
        raise ConvergenceError(f"battese_harter_fuller: REML refinement failed ({refined.message})")
    s2v, s2e = (float(v) for v in refined.x * scale)
    boundary = s2v <= 1e-10 * s2e
    if boundary:
        s2v = 0.0
    return s2v, s2e, boundary


def _gls(x: np.ndarray, yy: np.ndarray, gamma: np.ndarray, n_d: np.ndarray, xbar: np.ndarray,
         ybar: np.ndarray, s2e: float) -> tuple[np.ndarray, np.ndarray]:
    """GLS coefficients and the inverse of :math:`\\sum_d X_d'V_d^{-1}X_d`."""
    # GLS: sum_d X_d'V_d^-1 X_d = (X'X - sum_d gamma_d n_d xbar_d xbar_d') / s2e
    a = (x.T @ x - np.einsum("d,di,dj->ij", gamma * n_d, xbar, xbar)) / s2e
    b = (x.T @ yy - np.einsum("d,di->i", gamma * n_d * np.nan_to_num(ybar), xbar)) / s2e
    a_inv = np.linalg.inv(a)
    a_inv = 0.5 * (a_inv + a_inv.T)
    return a_inv @ b, a_inv


def _prasad_rao_terms(
    s2v: float, s2e: float, n_d: np.ndarray, sampled: np.ndarray, gamma: np.ndarray,
    xr: np.ndarray, xbar: np.ndarray, xpop: np.ndarray, a_inv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The g1, g2, g3 terms per area and the inverse information of the variance components."""
    n_safe = np.where(sampled, n_d, 1.0)
    # information matrix of (sigma2_v, sigma2_e) and its inverse
    ad = s2e + n_d[sampled] * s2v
    nn = n_d[sampled]
    info = 0.5 * np.array([
        [np.sum(nn**2 / ad**2), np.sum(nn / ad**2)],
        [np.sum(nn / ad**2), np.sum((nn - 1) / s2e**2 + 1 / ad**2)],
    ])
    vinv = np.linalg.inv(info)
    g1 = np.where(sampled, gamma * s2e / n_safe, s2v)
    lvec = np.where(sampled[:, None], xr - gamma[:, None] * xbar, xpop)
    g2 = np.einsum("di,ij,dj->d", lvec, a_inv, lvec)
    g3 = np.where(sampled, (s2e**2 * vinv[0, 0] - 2 * s2e * s2v * vinv[0, 1]
                            + s2v**2 * vinv[1, 1]) / (n_safe**2 * (s2v + s2e / n_safe) ** 3), 0.0)
    return g1, g2, g3, vinv
