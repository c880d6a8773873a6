"""Area-level small-area estimation: the Fay-Herriot model, its EBLUPs and their MSE.

:func:`fay_herriot` fits :math:`y_d = x_d'\\beta + v_d + e_d` to one row per area (direct
estimate, known sampling variance, covariates) and returns a frozen
:class:`FayHerriotEstimate`; :func:`small_area_estimates` does the same from a satsample
estimate table by agency and an area covariate table, with the sampling variances chosen
explicitly (raw, GVF-smoothed or :math:`P(1-P)\\,\\text{deff}/n`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._random import RNGLike, as_generator, check_rng
from .._tables import TableField
from .._validation import (
    ConvergenceError,
    SatsampleError,
    SatsampleWarning,
    as_column_list,
    as_numbers,
    check_choice,
    check_columns,
    check_grouping,
    check_positive_int,
    check_probability,
    plain,
)
from ..results import Summary, _frozen_mapping
from . import _fh_core as core
from .variances import VARIANCE_METHODS, compute_psi, describe_psi

__all__ = ["FayHerriotEstimate", "fay_herriot", "small_area_estimates"]

METHOD_NAMES: Mapping[str, str] = MappingProxyType({
    "reml": "REML",
    "ml": "ML",
    "fh": "Fay-Herriot moment estimator",
    "amrl": "adjusted REML (Li-Lahiri)",
    "ampl": "adjusted ML (Li-Lahiri)",
})
ANALYTIC_MSE: Mapping[str, str] = MappingProxyType({
    "reml": "prasad-rao",
    "fh": "prasad-rao",
    "ml": "datta-lahiri",
    "amrl": "li-lahiri",
    "ampl": "li-lahiri",
})


def _show(values: Sequence[Any], limit: int = 5) -> str:
    shown = [str(v) for v in list(values)[:limit]]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


# ------------------------------------------------------------------------ design matrix
@dataclass(frozen=True)
class _Terms:
    names: tuple[str, ...]
    categorical: Mapping[str, tuple[Any, ...]]  # column -> levels (first = reference)


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)) or \
        isinstance(s.dtype, pd.CategoricalDtype)


def _build_terms(data: pd.DataFrame, covariates: list[str], intercept: bool,
                 in_sample: np.ndarray) -> _Terms:
    names: list[str] = ["(Intercept)"] if intercept else []
    levels: dict[str, tuple[Any, ...]] = {}
    first_full = not intercept  # without intercept the first factor keeps all its levels
    for col in covariates:
        s = data[col]
        if _is_categorical(s):
            seen = set(pd.unique(s[in_sample]))
            if isinstance(s.dtype, pd.CategoricalDtype):
                lv = tuple(c for c in s.cat.categories if c in seen)
            else:
                lv = tuple(sorted(seen, key=str))
            levels[col] = lv
            names += [f"{col}[{v}]" for v in (lv if first_full else lv[1:])]
            first_full = False
        else:
            names.append(col)
    return _Terms(names=tuple(names), categorical=MappingProxyType(levels))


def _design_matrix(data: pd.DataFrame, covariates: list[str], terms: _Terms, intercept: bool,
                   area_labels: np.ndarray) -> np.ndarray:
    blocks: list[np.ndarray] = []
    if intercept:
        blocks.append(np.ones((len(data), 1)))
    first_full = not intercept
    for col in covariates:
        s = data[col]
        if col in terms.categorical:
            lv = terms.categorical[col]
            values = s.to_numpy(dtype=object)
            known = pd.Series(values).isin(lv).to_numpy()
            if not known.all():
                bad = ~known
                raise SatsampleError(
                    f"covariate {col!r}: area(s) {_show(area_labels[bad])} have level(s) "
                    f"{_show(sorted({str(v) for v in values[bad]}))} that no sampled area has, "
                    "so the model has no coefficient for them"
                )
            use = lv if first_full else lv[1:]
            first_full = False
            blocks.append(np.column_stack([(values == v) for v in use]).astype(np.float64)
                          if use else np.empty((len(data), 0)))
        else:
            blocks.append(s.to_numpy(dtype=np.float64)[:, None])
    return np.concatenate(blocks, axis=1) if blocks else np.empty((len(data), 0))


def _check_rank(x: np.ndarray, names: Sequence[str]) -> None:
    if x.shape[1] == 0:
        raise SatsampleError("the model has no term: give covariates or keep the intercept")
    rank = 0
    for j in range(x.shape[1]):
        r = np.linalg.matrix_rank(x[:, : j + 1])
        if r == rank:
            raise SatsampleError(
                f"the covariates are collinear in the sampled areas: term {names[j]!r} is a "
                "linear combination of the terms before it (singular X'X); drop it"
            )
        rank = r


# ------------------------------------------------------------------------ result
@dataclass(frozen=True, kw_only=True)
class FayHerriotEstimate:
    """Fay-Herriot (area-level) small-area estimates with their MSE.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per area: the area column, ``direct``, ``direct_se``, ``n`` (when known),
        ``psi`` (sampling variance used), ``in_sample``, ``synthetic`` (:math:`x_d'\\hat\\beta`),
        ``gamma``, ``estimate`` (EBLUP; the synthetic estimate for areas without a sample),
        ``mse``, ``rmse``, ``ci_low``, ``ci_high``, ``residual`` (standardised),
        ``g1``, ``g2``, ``g3``, ``mse_analytic`` and ``mse_bootstrap_naive`` (with
        ``mse="bootstrap"``),
        ``estimate_unbenchmarked`` (with benchmarking), ``source`` and ``method``.
    area : str
        Name of the area column.
    covariates : tuple of str
        Covariate columns (categoricals are expanded into indicator terms).
    coefficients : pandas.DataFrame
        ``term``, ``estimate``, ``se``, ``z``, ``p_value`` of :math:`\\hat\\beta`
        (GLS at :math:`\\hat\\sigma^2_v`, SE from :math:`(X'\\hat V^{-1}X)^{-1}`).
    sigma2_v : float
        Estimated area-effect variance.
    boundary : bool
        True when :math:`\\hat\\sigma^2_v = 0` (every EBLUP is then the synthetic estimate).
    method : str
        ``"reml"``, ``"ml"``, ``"fh"``, ``"amrl"`` or ``"ampl"``.
    mse_method : str
        ``"prasad-rao"``, ``"datta-lahiri"``, ``"li-lahiri"``,
        ``"bootstrap (Butar-Lahiri)"`` or ``"bootstrap (naive, benchmarked replicates)"``
        (``"prasad-rao (bias correction dropped)"`` when a bias-corrected MSE was not
        positive, with a warning).
    sampling_variances : mapping
        How :math:`\\psi_d` was obtained (``method``, ``formula`` and fitted constants).
    level : float
        Confidence level of ``ci_low``/``ci_high``.
    loglik : float
        Log-likelihood of the chosen method at the estimate (without :math:`2\\pi`
        constants; NaN for ``"fh"``).
    n_iter : int
    options : mapping
        Other options (benchmarking, bootstrap replicates, tolerance).
    """

    table: pd.DataFrame = TableField()
    area: str
    covariates: tuple[str, ...]
    coefficients: pd.DataFrame = TableField()
    sigma2_v: float
    boundary: bool
    method: str
    mse_method: str
    sampling_variances: Mapping[str, Any] = field(default_factory=dict)
    level: float = 0.95
    loglik: float = math.nan
    n_iter: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampling_variances", _frozen_mapping(self.sampling_variances))
        object.__setattr__(self, "options", _frozen_mapping(self.options))

    @property
    def n_areas(self) -> int:
        """Number of areas (with and without a sample)."""
        return len(self.table)

    @property
    def n_sampled(self) -> int:
        """Number of areas with a direct estimate (used to fit the model)."""
        return int(self.table["in_sample"].sum())

    @property
    def model(self) -> str:
        """One-line statement of the model, for methods sections and output labels."""
        terms = " + ".join(self.coefficients["term"])
        text = (f"Fay-Herriot area-level model, {METHOD_NAMES[self.method]} "
                f"(sigma2_v = {self.sigma2_v:.4g}{', at its boundary 0' if self.boundary else ''}); "
                f"terms: {terms}; MSE: {self.mse_method}")
        bench = self.options.get("benchmark")
        if bench:
            text += f"; {bench} benchmarking"
        return text

    def to_frame(self) -> pd.DataFrame:
        """Return a copy of :attr:`table`."""
        return self.table.copy()

    def summary(self) -> Summary:
        """A :class:`~satsample.Summary`: the fit, the coefficients and the area table."""
        info: list[tuple[str, str]] = [
            ("model", "y_d = x_d' beta + v_d + e_d, v_d ~ N(0, sigma2_v), e_d ~ N(0, psi_d)"),
            ("fit", METHOD_NAMES[self.method] + f" ({self.n_iter} iterations)"),
            ("sigma2_v", f"{self.sigma2_v:.6g}" + (
                " (at its boundary 0: every EBLUP equals the synthetic estimate; "
                "method='amrl' gives a positive value)" if self.boundary else "")),
            ("MSE", self.mse_method + (
                f" ({self.options['n_replicates']} parametric bootstrap replicates)"
                if self.mse_method.startswith("bootstrap") else "")),
            ("sampling variances", describe_psi(self.sampling_variances)),
            ("areas", f"{self.n_sampled} with a sample, {self.n_areas - self.n_sampled} "
                      "synthetic only"),
            ("level", f"{self.level:g}"),
        ]
        for rec in self.coefficients.itertuples(index=False):
            info.append((f"beta {rec.term}", f"{rec.estimate:.6g} (SE {rec.se:.4g})"))
        if self.options.get("benchmark"):
            info.append(("benchmarking", f"{self.options['benchmark']} to "
                                         f"{self.options['benchmark_target']:.6g}"))
        cols = [self.area, "direct", "direct_se", "estimate", "rmse", "gamma", "residual",
                "source"]
        notes = ("Model-based estimates (source 'model-based') borrow strength from the "
                 "covariates; publish them labelled as such, with the model stated.",)
        return Summary(title="Fay-Herriot small-area estimates", info=tuple(info),
                       table=self.table[cols].copy(), notes=notes)

    def _repr_html_(self) -> str:
        return self.summary().as_html()


# ------------------------------------------------------------------------ fitting
def _prepare(data: pd.DataFrame, area: str, estimate: str, variance: str,
             covariates: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_columns(data, [area, estimate, variance, *covariates], role="fay_herriot")
    labels = data[area].to_numpy()
    if data[area].isna().any():
        raise SatsampleError(f"area column {area!r} has {int(data[area].isna().sum())} "
                             "missing value(s)")
    dup = data[area].duplicated(keep=False).to_numpy()
    if dup.any():
        raise SatsampleError(f"area column {area!r}: area(s) {_show(pd.unique(labels[dup]))} "
                             "appear on more than one row; give one row per area")
    check_grouping(data[area], name=area, role="area")
    y = as_numbers(data[estimate], name=estimate, role="estimate")
    if np.isinf(y).any():
        raise SatsampleError(f"estimate column {estimate!r} has infinite values for area(s) "
                             f"{_show(labels[np.isinf(y)])}")
    in_sample = np.isfinite(y)
    psi = as_numbers(data[variance], name=variance, role="sampling variance")
    bad = in_sample & ~(np.isfinite(psi) & (psi > 0))
    if bad.any():
        raise SatsampleError(
            f"sampling variance column {variance!r} is missing, zero or negative for area(s) "
            f"{_show(labels[bad])}; the model needs a positive known variance for every direct "
            "estimate (smooth_variances gives one)"
        )
    for col in covariates:
        miss = data[col].isna().to_numpy()
        if miss.any():
            raise SatsampleError(f"covariate {col!r} is missing for area(s) {_show(labels[miss])}")
        if not _is_categorical(data[col]):
            inf = np.isinf(data[col].to_numpy(dtype=np.float64))
            if inf.any():
                raise SatsampleError(f"covariate {col!r} is infinite for area(s) "
                                     f"{_show(labels[inf])}")
    return y, psi, in_sample


def _benchmark(est: np.ndarray, y: np.ndarray, weights: np.ndarray, target: float,
               how: str) -> np.ndarray:
    model_total = float(np.sum(weights * est))
    if how == "ratio":
        if model_total == 0:
            raise SatsampleError("ratio benchmarking: the weighted sum of the model estimates is 0")
        return est * (target / model_total)
    return est + (target - model_total)


def _g12(x_in: np.ndarray, x_out: np.ndarray, psi: np.ndarray,
         m: core._Moments) -> tuple[np.ndarray, np.ndarray]:
    """g1 + g2 at the sigma2_v of ``m``: in sample and out of sample (B_d = 1)."""
    b_d = psi / (m.sigma2 + psi)
    g_in = m.sigma2 * b_d + b_d**2 * np.einsum("ij,jk,ik->i", x_in, m.a_inv, x_in)
    g_out = m.sigma2 + np.einsum("ij,jk,ik->i", x_out, m.a_inv, x_out)
    return g_in, g_out


def _bootstrap_mse(y: np.ndarray, x_in: np.ndarray, x_out: np.ndarray, psi: np.ndarray,
                   m_hat: core._Moments, method: str, n_replicates: int,
                   gen: np.random.Generator, tol: float, max_iter: int,
                   bench: tuple[np.ndarray, str] | None) -> dict[str, Any]:
    r"""Parametric bootstrap MSE: naive (Gonzalez-Manteiga et al. 2008) and Butar-Lahiri (2003).

    Replicate: :math:`\theta^*_d = x_d'\hat\beta + v^*_d`, :math:`y^*_d = \theta^*_d + e^*_d`,
    :math:`\hat\sigma^{2*}_v` refitted by the same method.  Naive:
    :math:`E_*(\hat\theta^*_d - \theta^*_d)^2`.  Butar-Lahiri:
    :math:`2[g_1 + g_2](\hat\sigma^2_v) - E_*[g_1 + g_2](\hat\sigma^{2*}_v)
    + E_*[\hat\theta_d(y; \hat\sigma^{2*}_v) - \hat\theta_d(y; \hat\sigma^2_v)]^2`.
    """
    d, d_out = x_in.shape[0], x_out.shape[0]
    s2 = m_hat.sigma2
    mu_in, mu_out = x_in @ m_hat.beta, x_out @ m_hat.beta
    gamma = s2 / (s2 + psi)
    eb_hat = gamma * y + (1 - gamma) * mu_in
    naive_in, naive_out = np.zeros(d), np.zeros(d_out)
    g_acc_in, g_acc_out = np.zeros(d), np.zeros(d_out)
    dev_in, dev_out = np.zeros(d), np.zeros(d_out)
    sd_v, sd_e = math.sqrt(s2), np.sqrt(psi)
    failed = done = 0
    while done < n_replicates:
        v_in = sd_v * gen.standard_normal(d)
        v_out = sd_v * gen.standard_normal(d_out)
        e = sd_e * gen.standard_normal(d)
        theta_in, theta_out = mu_in + v_in, mu_out + v_out
        y_star = theta_in + e
        try:
            fit = core.fit_variance(y_star, x_in, psi, method, tol=max(tol, 1e-10),
                                    max_iter=max_iter)
        except ConvergenceError:
            failed += 1
            if failed > n_replicates:
                raise ConvergenceError(
                    f"parametric bootstrap: more than {n_replicates} replicate fits did not "
                    "converge") from None
            continue
        ms = core.moments(y_star, x_in, psi, fit.sigma2)
        gs = fit.sigma2 / (fit.sigma2 + psi)
        eb = gs * y_star + (1 - gs) * (x_in @ ms.beta)
        if bench is not None:
            eb = _benchmark(eb, y_star, bench[0], float(np.sum(bench[0] * y_star)), bench[1])
        naive_in += (eb - theta_in) ** 2
        naive_out += (x_out @ ms.beta - theta_out) ** 2
        # Butar-Lahiri: the original data with the replicate's sigma2_v
        mo = core.moments(y, x_in, psi, fit.sigma2)
        g_in, g_out = _g12(x_in, x_out, psi, mo)
        g_acc_in += g_in
        g_acc_out += g_out
        dev_in += (gs * y + (1 - gs) * (x_in @ mo.beta) - eb_hat) ** 2
        dev_out += (x_out @ mo.beta - mu_out) ** 2
        done += 1
    g_in, g_out = _g12(x_in, x_out, psi, m_hat)
    b = float(n_replicates)
    return {
        "naive_in": naive_in / b, "naive_out": naive_out / b,
        "bl_in": 2 * g_in - g_acc_in / b + dev_in / b,
        "bl_out": 2 * g_out - g_acc_out / b + dev_out / b,
        "failed": failed,
    }


def fay_herriot(
    data: pd.DataFrame,
    *,
    area: str,
    covariates: str | Sequence[str],
    estimate: str = "estimate",
    variance: str = "psi",
    se: str | None = None,
    n: str | None = None,
    intercept: bool = True,
    method: Literal["reml", "ml", "fh", "amrl", "ampl"] = "reml",
    mse: Literal["analytic", "bootstrap"] = "analytic",
    n_replicates: int = 200,
    rng: RNGLike = None,
    level: float = 0.95,
    benchmark: Literal["ratio", "difference"] | None = None,
    benchmark_weights: str | None = None,
    benchmark_target: float | None = None,
    sampling_variances: Mapping[str, Any] | None = None,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> FayHerriotEstimate:
    """Fit the Fay-Herriot area-level model and return EBLUPs with their MSE.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per area: the ``area`` label, the direct ``estimate`` (NaN for an area
        without a sample: it gets the synthetic estimate), its known sampling ``variance``
        and the ``covariates``.  Not modified.
    area : str
        Column naming the areas (e.g. ``"agency_id"``).
    covariates : str or sequence of str
        Area-level covariate columns.  Numeric and boolean columns enter as they are; text
        and categorical columns are expanded into indicators of their levels, the first
        level (category order, else sorted) being the reference.
    estimate : str, default="estimate"
        Column of direct estimates :math:`y_d`.
    variance : str, default="psi"
        Column of sampling variances :math:`\\psi_d`, treated as known (see
        :func:`~satsample.sae.smooth_variances`).
    se : str or None, default=None
        Column of the direct SE, copied to ``direct_se`` (else :math:`\\sqrt{\\psi_d}`).
    n : str or None, default=None
        Column of respondents per area, copied to the table.
    intercept : bool, default=True
    method : {"reml", "ml", "fh", "amrl", "ampl"}, default="reml"
        Estimator of :math:`\\sigma^2_v`: restricted or full maximum likelihood, the
        Fay-Herriot moment estimator (= Paule-Mandel), or the adjusted residual / profile
        likelihood of Li & Lahiri (2010), which is always positive.
    mse : {"analytic", "bootstrap"}, default="analytic"
        ``"analytic"``: Prasad-Rao (REML, FH), Datta-Lahiri (ML), Li-Lahiri (adjusted).
        ``"bootstrap"``: parametric bootstrap, bias-corrected as Butar & Lahiri (2003); the
        analytic MSE is kept in ``mse_analytic`` and the naive bootstrap MSE in
        ``mse_bootstrap_naive``.
    n_replicates : int, default=200
        Bootstrap replicates.
    rng : int, numpy.random.Generator, numpy.random.SeedSequence or None, default=None
        Randomness of the bootstrap (pass an int for reproducible results).
    level : float, default=0.95
        Confidence level of the intervals :math:`\\hat\\theta_d \\pm z\\sqrt{\\text{mse}_d}`.
    benchmark : {"ratio", "difference"} or None, default=None
        Benchmark the in-sample EBLUPs so that their ``benchmark_weights``-weighted mean
        equals ``benchmark_target``.
    benchmark_weights : str or None, default=None
        Column of area sizes (e.g. population counts); required with ``benchmark``.
    benchmark_target : float or None, default=None
        Direct estimate of the larger area; None uses the weighted mean of the direct
        estimates :math:`\\sum_d w_d y_d / \\sum_d w_d`.
    sampling_variances : mapping or None, default=None
        Record of how ``variance`` was obtained (:func:`smooth_variances` stores one in
        ``attrs["psi_method"]``, used when this is None).
    tol : float, default=1e-12
        Convergence tolerance on :math:`\\sigma^2_v`, relative to
        :math:`\\max(\\sigma^2_v, \\operatorname{median}\\psi_d)`.
    max_iter : int, default=200

    Returns
    -------
    FayHerriotEstimate

    Raises
    ------
    SatsampleError
        Missing columns, duplicated areas, missing covariates (naming the areas), a
        non-positive :math:`\\psi_d`, collinear covariates (naming the term), no more sampled
        areas than terms, an out-of-sample area with a level no sampled area has.
    ConvergenceError
        The variance fit did not converge in ``max_iter`` iterations.

    Notes
    -----
    Model (Fay & Herriot 1979; Rao & Molina 2015, ch. 6):
    :math:`y_d = \\theta_d + e_d`, :math:`\\theta_d = x_d'\\beta + v_d`,
    :math:`v_d \\sim N(0, \\sigma^2_v)`, :math:`e_d \\sim N(0, \\psi_d)`, independent.
    With :math:`V_d = \\sigma^2_v + \\psi_d`, :math:`\\gamma_d = \\sigma^2_v / V_d`,
    :math:`\\hat\\beta = (X'V^{-1}X)^{-1}X'V^{-1}y` and
    :math:`\\hat\\theta_d = \\gamma_d y_d + (1 - \\gamma_d) x_d'\\hat\\beta`
    (out of sample: :math:`x_d'\\hat\\beta`).

    :math:`\\sigma^2_v`: REML and ML by Fisher scoring with step halving, truncated at 0;
    FH moment: the root of :math:`\\sum_d (y_d - x_d'\\hat\\beta)^2 / V_d = D - p` (0 when
    the left side is below :math:`D - p` at 0); adjusted: maximiser of
    :math:`\\sigma^2_v L(\\sigma^2_v)` with :math:`L` the residual (``"amrl"``) or profile
    (``"ampl"``) likelihood.

    MSE: :math:`g_{1d} + g_{2d} + 2g_{3d} - B_d^2\\, b(\\hat\\sigma^2_v)` with
    :math:`g_{1d} = \\gamma_d\\psi_d`, :math:`g_{2d} = B_d^2 x_d'(X'V^{-1}X)^{-1}x_d`,
    :math:`g_{3d} = B_d^2 \\bar V / V_d`, :math:`B_d = 1 - \\gamma_d`,
    :math:`\\bar V = 2/\\sum V_d^{-2}` (:math:`2D/(\\sum V_d^{-1})^2` for FH), and the
    bias :math:`b` of :math:`\\hat\\sigma^2_v`: 0 (REML),
    :math:`-\\operatorname{tr}[(X'V^{-1}X)^{-1}X'V^{-2}X]/\\sum V_d^{-2}` (ML),
    :math:`2[D\\sum V_d^{-2} - (\\sum V_d^{-1})^2]/(\\sum V_d^{-1})^3` (FH),
    :math:`2/(\\sigma^2_v\\sum V_d^{-2})` (adjusted REML; adjusted ML adds the ML term).
    Out of sample: :math:`\\hat\\sigma^2_v + x_d'(X'V^{-1}X)^{-1}x_d - b`.  The terms are
    evaluated at :math:`\\hat\\sigma^2_v`, also at the boundary 0.

    Parametric bootstrap: draw :math:`\\theta^*_d = x_d'\\hat\\beta + v^*_d`,
    :math:`y^*_d = \\theta^*_d + e^*_d`, :math:`v^*_d \\sim N(0, \\hat\\sigma^2_v)`,
    :math:`e^*_d \\sim N(0, \\psi_d)`, refit :math:`\\sigma^2_v` with the same method.  The naive
    estimator (González-Manteiga et al. 2008) averages :math:`(\\hat\\theta^*_d - \\theta^*_d)^2`
    and is biased down by about :math:`g_{3d}`; the reported one is Butar & Lahiri's (2003)
    second-order unbiased
    :math:`2[g_{1d} + g_{2d}](\\hat\\sigma^2_v) - E_*[g_{1d} + g_{2d}](\\hat\\sigma^{2*}_v)
    + E_*[\\hat\\theta_d(\\hat\\sigma^{2*}_v) - \\hat\\theta_d(\\hat\\sigma^2_v)]^2`
    (EBLUPs of the observed data at the two variance values); where it is not positive the
    naive value is used.  With benchmarking the replicates are benchmarked too and the
    naive estimator is reported.

    Benchmarking with :math:`w_d` proportional to ``benchmark_weights`` and target :math:`t`:
    ratio :math:`\\hat\\theta_d t / \\sum_k w_k\\hat\\theta_k`, difference
    :math:`\\hat\\theta_d + t - \\sum_k w_k\\hat\\theta_k`.  The analytic MSE of the
    difference-benchmarked EBLUP adds :math:`g_4 = u'Pu`, :math:`u_d = w_d\\psi_d`,
    :math:`P = V^{-1} - V^{-1}X(X'V^{-1}X)^{-1}X'V^{-1}` (Steorts & Ghosh 2013; exact for the
    default target); the ratio-benchmarked one adds the squared adjustment
    :math:`(\\hat\\theta^{b}_d - \\hat\\theta_d)^2` (an approximation; use the bootstrap for a
    better one).

    References
    ----------
    Fay RE, Herriot RA (1979). JASA 74:269-277.  Prasad NGN, Rao JNK (1990). JASA 85:163-171.
    Datta GS, Lahiri P (2000). Statistica Sinica 10:613-627.  Datta GS, Rao JNK, Smith DD
    (2005). Biometrika 92:183-196.  Li H, Lahiri P (2010). J. Multivariate Analysis
    101:882-892.  González-Manteiga W et al. (2008). J. Stat. Comput. Simul. 78:443-462.
    Butar FB, Lahiri P (2003). J. Statist. Plann. Inference 112:63-76.
    Steorts RC, Ghosh M (2013). Statistica Sinica 23:749-767.  Rao JNK, Molina I (2015).
    Small Area Estimation, 2nd ed., Wiley.

    Examples
    --------
    >>> import pandas as pd
    >>> from satsample.sae import fay_herriot
    >>> d = pd.DataFrame({"area": list("ABCDEF"), "estimate": [0.62, 0.71, 0.55, 0.80, 0.66, None],
    ...                   "psi": [0.010, 0.012, 0.009, 0.015, 0.011, None],
    ...                   "prior": [0.60, 0.70, 0.58, 0.75, 0.65, 0.70]})
    >>> fit = fay_herriot(d, area="area", covariates="prior")
    >>> fit.to_frame()[["area", "estimate", "source"]].round(3).tail(2)
      area  estimate       source
    4    E     0.660  model-based
    5    F     0.725  model-based
    """
    if not isinstance(data, pd.DataFrame):
        raise SatsampleError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    covs = as_column_list(covariates)
    n_replicates, max_iter = _check_fh_options(method=method, mse=mse, benchmark=benchmark,
                                               level=level, n_replicates=n_replicates,
                                               max_iter=max_iter, rng=rng, tol=tol)
    y_all, psi_all, in_sample = _prepare(data, area, estimate, variance, covs)
    labels = data[area].to_numpy()
    if not in_sample.any():
        raise SatsampleError(f"estimate column {estimate!r} has no direct estimate: no area to "
                             "fit the model on")
    terms = _build_terms(data, covs, intercept, in_sample)
    x_all = _design_matrix(data, covs, terms, intercept, labels)
    x_in, x_out = x_all[in_sample], x_all[~in_sample]
    y, psi = y_all[in_sample], psi_all[in_sample]
    d, p = x_in.shape
    if d <= p:
        raise SatsampleError(f"the model has {p} terms but only {d} sampled areas; it needs more "
                             "sampled areas than terms")
    _check_rank(x_in, terms.names)

    fit = core.fit_variance(y, x_in, psi, method, tol=tol, max_iter=max_iter)
    m = core.moments(y, x_in, psi, fit.sigma2)
    s2 = fit.sigma2
    gamma = s2 / (s2 + psi)
    synth_all = x_all @ m.beta
    eblup = gamma * y + (1 - gamma) * synth_all[in_sample]
    terms_mse, mse_in, mse_out, mse_method = _analytic_mse(x_in, x_out, psi, m, method, s2)
    resid = (y - synth_all[in_sample]) / np.sqrt(s2 + psi)

    options: dict[str, Any] = {"tol": tol, "max_iter": max_iter, "intercept": intercept}
    bench_spec: tuple[np.ndarray, str] | None = None
    unbenchmarked = None
    if benchmark is not None:
        w_in, target = _benchmark_weights(data, benchmark_weights, benchmark_target, in_sample,
                                          labels, y)
        unbenchmarked = eblup
        eblup, mse_in, g4 = _benchmarked(eblup, mse_in, y, psi, x_in, m, w_in, target, benchmark)
        if g4 is not None:
            options["benchmark_g4"] = g4
        bench_spec = (w_in, benchmark)
        options.update(benchmark=benchmark, benchmark_weights=benchmark_weights,
                       benchmark_target=target)

    mse_analytic_in, mse_analytic_out = mse_in, mse_out
    boot: dict[str, Any] | None = None
    if mse == "bootstrap":
        gen = as_generator(rng)
        if bench_spec is not None and benchmark_target is not None:
            raise SatsampleError("mse='bootstrap' with benchmarking supports the default "
                                 "benchmark_target (the weighted mean of the direct estimates)")
        boot = _bootstrap_mse(y, x_in, x_out, psi, m, method, n_replicates, gen, tol, max_iter,
                              bench_spec)
        mse_in, mse_out, mse_method, boot_options = _bootstrap_choice(boot, bench_spec is None)
        options.update(boot_options)
        options.update(n_replicates=n_replicates, bootstrap_failed_fits=boot["failed"])

    table = _area_table(data, area=area, se=se, n=n, in_sample=in_sample, y_all=y_all,
                        psi_all=psi_all, synth_all=synth_all, gamma=gamma, eblup=eblup,
                        mse_in=mse_in, mse_out=mse_out, level=level, resid=resid,
                        terms_mse=terms_mse, s2=s2)
    if boot is not None:
        table["mse_analytic"] = _by_row(in_sample, mse_analytic_in, mse_analytic_out)
        table["mse_bootstrap_naive"] = _by_row(in_sample, boot["naive_in"], boot["naive_out"])
    if unbenchmarked is not None:
        table["estimate_unbenchmarked"] = _by_row(in_sample, unbenchmarked, synth_all[~in_sample])
    table["source"] = "model-based"
    table["method"] = np.where(in_sample, f"EBLUP ({method})", f"synthetic ({method})")

    if sampling_variances is None:
        sampling_variances = data.attrs.get("psi_method") or {
            "method": "given", "formula": f"as given in column {variance!r}"}
    loglik = math.nan if method == "fh" else core.loglik(y, x_in, psi, s2, method)
    return FayHerriotEstimate(
        table=table, area=area, covariates=tuple(covs), coefficients=_coefficients(terms, m),
        sigma2_v=s2, boundary=bool(fit.boundary), method=method, mse_method=mse_method,
        sampling_variances=dict(sampling_variances), level=level, loglik=loglik,
        n_iter=fit.n_iter, options=options,
    )


def _check_fh_options(*, method: str, mse: str, benchmark: str | None, level: float,
                      n_replicates: int, max_iter: int, rng: RNGLike,
                      tol: float) -> tuple[int, int]:
    """Check the options of :func:`fay_herriot`; return ``n_replicates`` and ``max_iter``."""
    check_choice(method, name="method", allowed=core.METHODS)
    check_choice(mse, name="mse", allowed=("analytic", "bootstrap"))
    check_choice(benchmark, name="benchmark", allowed=(None, "ratio", "difference"))
    check_probability(level, name="level")
    n_replicates = check_positive_int(n_replicates, name="n_replicates")
    max_iter = check_positive_int(max_iter, name="max_iter")
    check_rng(rng)  # also when mse="analytic" does not draw: a wrong rng is a mistake either way
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(tol) and tol > 0):
        raise SatsampleError(f"tol={plain(tol)!r} must be a positive number")
    return n_replicates, max_iter


def _analytic_mse(
    x_in: np.ndarray, x_out: np.ndarray, psi: np.ndarray, m: core._Moments, method: str, s2: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, str]:
    """The g-terms and the analytic MSE in and out of sample, without the bias term if not > 0."""
    terms_mse = core.mse_terms(x_in, psi, m, method, x_out)
    mse_in = terms_mse["mse"].copy()
    mse_out = terms_mse.get("mse_out", np.empty(0)).copy()
    mse_method = ANALYTIC_MSE[method]
    if (mse_in <= 0).any() or (mse_out <= 0).any():
        # the second-order bias correction is not valid this close to sigma2_v = 0
        bad = int((mse_in <= 0).sum() + (mse_out <= 0).sum())
        mse_in = terms_mse["g1"] + terms_mse["g2"] + 2 * terms_mse["g3"]
        if x_out.shape[0]:
            mse_out = s2 + terms_mse["g2_out"]
        mse_method = "prasad-rao (bias correction dropped)"
        warnings.warn(
            f"the {ANALYTIC_MSE[method]} MSE with its bias correction for method={method!r} is "
            f"not positive in {bad} area(s) at sigma2_v = {s2:.4g}; the uncorrected "
            "g1 + g2 + 2 g3 is reported instead (consider method='reml' or mse='bootstrap')",
            SatsampleWarning, stacklevel=3,  # the caller of fay_herriot
        )
    return terms_mse, mse_in, mse_out, mse_method


def _benchmark_weights(data: pd.DataFrame, benchmark_weights: str | None,
                       benchmark_target: float | None, in_sample: np.ndarray,
                       labels: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Check the area sizes; return the sampled areas' weight shares and the target."""
    if benchmark_weights is None:
        raise SatsampleError("benchmark needs benchmark_weights: the column of area sizes")
    check_columns(data, benchmark_weights, role="benchmark_weights")
    wts = as_numbers(data[benchmark_weights], name=benchmark_weights,
                     role="benchmark_weights")
    bad = in_sample & ~(np.isfinite(wts) & (wts >= 0))
    if bad.any():
        raise SatsampleError(f"benchmark_weights column {benchmark_weights!r} is missing or "
                             f"negative for area(s) {_show(labels[bad])}")
    if not wts[in_sample].sum() > 0:
        raise SatsampleError(f"benchmark_weights column {benchmark_weights!r} sums to 0 over "
                             "the areas with a direct estimate; benchmarking needs positive "
                             "area sizes")
    w_in = wts[in_sample] / wts[in_sample].sum()
    target = float(np.sum(w_in * y)) if benchmark_target is None else float(benchmark_target)
    return w_in, target


def _benchmarked(eblup: np.ndarray, mse_in: np.ndarray, y: np.ndarray, psi: np.ndarray,
                 x_in: np.ndarray, m: core._Moments, w_in: np.ndarray, target: float,
                 benchmark: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Benchmarked EBLUPs, their analytic MSE and the g4 term (difference benchmarking only)."""
    bench = _benchmark(eblup, y, w_in, target, benchmark)
    if benchmark != "difference":
        return bench, mse_in + (bench - eblup) ** 2, None
    u = w_in * psi
    wv = m.w * u
    g4 = float(np.sum(wv * u) - (x_in.T @ wv) @ m.a_inv @ (x_in.T @ wv))
    return bench, mse_in + g4, g4


def _bootstrap_choice(
    boot: dict[str, Any], unbenchmarked: bool,
) -> tuple[np.ndarray, np.ndarray, str, dict[str, Any]]:
    """The bootstrap MSE reported: Butar-Lahiri (naive where not > 0), naive if benchmarked."""
    if not unbenchmarked:
        naive = "bootstrap (naive, benchmarked replicates)"
        return boot["naive_in"], boot["naive_out"], naive, {}
    mse_in, mse_out = boot["bl_in"], boot["bl_out"]
    neg = (mse_in <= 0).sum() + (mse_out <= 0).sum()
    if neg:
        mse_in = np.where(mse_in > 0, mse_in, boot["naive_in"])
        mse_out = np.where(mse_out > 0, mse_out, boot["naive_out"])
    return mse_in, mse_out, "bootstrap (Butar-Lahiri)", {"bootstrap_naive_used_in": int(neg)}


def _by_row(in_sample: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """One value per input row: ``inside`` for the sampled areas, ``outside`` for the others."""
    out = np.full(in_sample.size, np.nan)
    out[in_sample] = inside
    out[~in_sample] = outside
    return out


def _area_table(data: pd.DataFrame, *, area: str, se: str | None, n: str | None,
                in_sample: np.ndarray, y_all: np.ndarray, psi_all: np.ndarray,
                synth_all: np.ndarray, gamma: np.ndarray, eblup: np.ndarray,
                mse_in: np.ndarray, mse_out: np.ndarray, level: float, resid: np.ndarray,
                terms_mse: dict[str, np.ndarray], s2: float) -> pd.DataFrame:
    """The per-area table in the order of the input rows, up to the g3 column."""
    n_rows = len(data)
    est_all = np.where(in_sample, np.nan, synth_all)
    est_all[in_sample] = eblup
    gamma_all = np.zeros(n_rows)
    gamma_all[in_sample] = gamma

    def spread(values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full(n_rows, fill)
        out[in_sample] = values
        return out

    table = pd.DataFrame({area: data[area].to_numpy()})
    table["direct"] = y_all
    if se is not None:
        check_columns(data, se, role="se")
        table["direct_se"] = as_numbers(data[se], name=se, role="se")
    else:
        table["direct_se"] = np.sqrt(psi_all)
    if n is not None:
        check_columns(data, n, role="n")
        table["n"] = data[n].to_numpy()
    table["psi"] = np.where(in_sample, psi_all, np.nan)
    table = table.assign(**_model_columns(in_sample, synth_all, gamma_all, est_all,
                                          _by_row(in_sample, mse_in, mse_out), level))
    table["residual"] = spread(resid)
    table["g1"] = spread(terms_mse["g1"], 0.0)
    table.loc[~in_sample, "g1"] = s2
    table["g2"] = spread(terms_mse["g2"])
    if (~in_sample).any():
        table.loc[~in_sample, "g2"] = terms_mse["g2_out"]
    table["g3"] = spread(terms_mse["g3"], 0.0)
    return table


def _model_columns(in_sample: np.ndarray, synthetic: np.ndarray, gamma: np.ndarray,
                   estimate: np.ndarray, mse: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """The model-based columns of an area table, with normal intervals from the MSE."""
    z = stats.norm.ppf(0.5 + level / 2)
    rmse = np.sqrt(mse)
    return {"in_sample": in_sample, "synthetic": synthetic, "gamma": gamma,
            "estimate": estimate, "mse": mse, "rmse": rmse,
            "ci_low": estimate - z * rmse, "ci_high": estimate + z * rmse}


def _coefficients(terms: _Terms, m: core._Moments) -> pd.DataFrame:
    """The regression coefficients with their SEs, z values and two-sided p-values."""
    se_beta = np.sqrt(np.diag(m.a_inv))
    zval = m.beta / se_beta
    return pd.DataFrame({
        "term": list(terms.names), "estimate": m.beta, "se": se_beta, "z": zval,
        "p_value": 2 * stats.norm.sf(np.abs(zval)),
    })


# ------------------------------------------------------------------------ convenience entry
def _estimate_rows(estimates: Any, *, item: str | None, element: str | None,
                   variable: str | None) -> pd.DataFrame:
    """The per-area rows of a satsample result or table for one item/element/variable."""
    if isinstance(estimates, pd.DataFrame):
        table = estimates
    elif hasattr(estimates, "overall") and hasattr(estimates, "items"):  # IndexEstimate
        if item is not None:
            table = estimates.items
        elif element is not None:
            table = estimates.elements
        else:
            table = estimates.overall
    elif hasattr(estimates, "table"):  # Estimate
        table = estimates.table
    else:
        raise SatsampleError("estimates must be a DataFrame, an Estimate or an IndexEstimate, "
                             f"got {type(estimates).__name__}")
    for col, value in (("item", item), ("element", element), ("variable", variable)):
        if value is None:
            continue
        if col not in table.columns:
            raise SatsampleError(f"{col}={plain(value)!r} given but the estimate table has no {col!r} "
                                 "column")
        sel = table[col] == value
        if not sel.any():
            raise SatsampleError(f"{col}={plain(value)!r} not found; available: "
                                 f"{_show(sorted(map(str, pd.unique(table[col]))), 10)}")
        table = table[sel]
    return table


def small_area_estimates(
    estimates: Any,
    area_data: pd.DataFrame,
    *,
    area: str,
    covariates: str | Sequence[str],
    variances: Literal["direct", "gvf", "proportion"],
    item: str | None = None,
    element: str | None = None,
    variable: str | None = None,
    population_size: str | None = None,
    overall: float | None = None,
    deff: float = 1.0,
    method: Literal["reml", "ml", "fh", "amrl", "ampl"] = "reml",
    mse: Literal["analytic", "bootstrap"] = "analytic",
    n_replicates: int = 200,
    rng: RNGLike = None,
    level: float = 0.95,
    benchmark: Literal["ratio", "difference"] | None = None,
    benchmark_target: float | None = None,
    intercept: bool = True,
) -> FayHerriotEstimate:
    """Fay-Herriot estimates per area from a satsample estimate by area and area covariates.

    Parameters
    ----------
    estimates : IndexEstimate, Estimate or pandas.DataFrame
        Direct estimates by area: e.g. ``satisfaction_index(design, q, by="agency_id")``
        (its ``overall`` table, or ``elements``/``items`` with ``element=``/``item=``), or
        ``proportion(design, ..., by="agency_id")`` (with ``variable=``).  The table needs
        the ``area`` column and ``estimate``, ``se``, ``n``.
    area_data : pandas.DataFrame
        One row per area with ``area`` and the ``covariates`` (and ``population_size``).
        Areas here without a direct estimate get the synthetic estimate; every area with a
        direct estimate must have a row here.
    area : str
        Area column (in both tables).
    covariates : str or sequence of str
        Columns of ``area_data`` (see :func:`fay_herriot`).
    variances : {"direct", "gvf", "proportion"}
        Sampling variances (see :func:`smooth_variances`); recorded in the result.
    item, element, variable : str or None
        Which row of each area to model when the table has several.
    population_size : str or None, default=None
        Column of ``area_data`` with the area population sizes (finite-population correction
        of the smoothed variances; weights of the benchmarking).
    overall : float or None, default=None
        Overall share P for ``variances="proportion"`` (the national direct estimate).
    deff : float, default=1.0
    method, mse, n_replicates, rng, level, benchmark, benchmark_target, intercept
        As in :func:`fay_herriot`; benchmarking weights are ``population_size``.

    Returns
    -------
    FayHerriotEstimate

    Raises
    ------
    SatsampleError
        An area with a direct estimate but no covariate row (named), several rows per area,
        a column missing, and the errors of :func:`fay_herriot` and :func:`smooth_variances`.

    Notes
    -----
    A row with ``n = 0`` or a missing estimate counts as an area without a sample.
    See :func:`fay_herriot` for the model, the estimators and the MSE.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=20_000, n_agencies=30, rng=1)
    >>> frame = pop.frame
    >>> alloc = {a: 12 for a in pop.agencies["agency_id"]}
    >>> smp = frame.groupby("agency_id", observed=True).sample(n=12, random_state=1)
    >>> smp = smp.merge(pop.agencies[["agency_id", "N_h"]], on="agency_id")
    >>> resp = ss.simulate_responses(pop, smp, rng=2)
    >>> design = ss.survey_design(resp[resp["responded"]], strata="agency_id", fpc="N_h")
    >>> est = ss.satisfaction_index(design, pop.questionnaire, by="agency_id")
    >>> fit = ss.small_area_estimates(est, pop.agencies, area="agency_id",
    ...                               covariates=["p_prior", "level"], variances="gvf",
    ...                               population_size="N_h")
    >>> bool((fit.to_frame()["rmse"] < fit.to_frame()["direct_se"]).mean() > 0.5)
    True
    """
    check_choice(variances, name="variances", allowed=VARIANCE_METHODS)
    if not isinstance(area_data, pd.DataFrame):
        raise SatsampleError(f"area_data must be a pandas DataFrame, got "
                             f"{type(area_data).__name__}")
    covs = as_column_list(covariates)
    table = _estimate_rows(estimates, item=item, element=element, variable=variable)
    check_columns(table, [area, "estimate", "se", "n"], role="estimates")
    extra = [c for c in (population_size,) if c is not None]
    check_columns(area_data, [area, *covs, *extra], role="area_data")
    # labels are matched on their text: 1 and "1" in one column would be one area twice
    check_grouping(table[area], name=area, role="estimates area")
    check_grouping(area_data[area], name=area, role="area_data area")
    dup = table[area].duplicated(keep=False)
    if dup.any():
        raise SatsampleError(
            f"estimates: area(s) {_show(pd.unique(table.loc[dup, area]))} have several rows; "
            "choose one with item=, element= or variable="
        )
    dup = area_data[area].duplicated(keep=False)
    if dup.any():
        raise SatsampleError(f"area_data: area(s) {_show(pd.unique(area_data.loc[dup, area]))} "
                             "appear on more than one row")
    direct = table[[area, "estimate", "se", "n"]].copy()
    y_direct = as_numbers(direct["estimate"], name="estimate", role="estimates")
    n_direct = as_numbers(direct["n"], name="n", role="estimates")
    no_n = np.isfinite(y_direct) & np.isnan(n_direct)
    if no_n.any():
        raise SatsampleError(f"estimates: area(s) {_show(direct[area].to_numpy()[no_n])} have a "
                             "direct estimate but a missing 'n'; give the number of respondents")
    direct = direct[np.isfinite(y_direct) & (n_direct > 0)]
    keys_area = set(area_data[area].astype(str))
    missing = [a for a in direct[area] if str(a) not in keys_area]
    if missing:
        raise SatsampleError(f"area_data has no row (no covariates) for area(s) {_show(missing)} "
                             "that have a direct estimate")
    clash = [c for c in ("estimate", "se", "n", "psi") if c in area_data.columns]
    if clash:
        raise SatsampleError(f"area_data must not have column(s) {_show(clash)}; they come from "
                             "the estimates")
    left = area_data.copy()
    left["_key"] = left[area].astype(str)
    direct["_key"] = direct[area].astype(str)
    merged = left.merge(direct.drop(columns=[area]), on="_key", how="left", validate="one_to_one",
                        suffixes=("", "_direct"))
    merged = merged.drop(columns="_key")
    psi, record = compute_psi(merged, method=variances, area=area, population_size=population_size,
                              overall=overall, deff=deff)
    merged["psi"] = psi
    return fay_herriot(
        merged, area=area, covariates=covs, estimate="estimate", variance="psi", se="se", n="n",
        intercept=intercept, method=method, mse=mse, n_replicates=n_replicates, rng=rng,
        level=level, benchmark=benchmark, benchmark_weights=population_size,
        benchmark_target=benchmark_target, sampling_variances=record,
    )
