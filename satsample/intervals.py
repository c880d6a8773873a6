"""Confidence intervals with design degrees of freedom (R's ``confint`` / ``svyciprop``).

Every method uses the quantile of Student's t with the design degrees of freedom
(never the normal quantile), as R's ``svyciprop`` does.  All functions are
vectorised: ``estimate``, ``se``, ``df`` and ``n_design`` broadcast together.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special, stats

from ._validation import SatsampleError, check_choice, check_probability

__all__ = ["CI_METHODS", "CIMethod", "confidence_interval", "t_quantile"]

CIMethod = Literal["mean", "logit", "xlogit", "likelihood", "asin", "beta", "wilson"]
CI_METHODS: tuple[str, ...] = ("mean", "logit", "xlogit", "likelihood", "asin", "beta", "wilson")
_PROPORTION_ONLY = ("logit", "xlogit", "likelihood", "asin", "beta", "wilson")


def t_quantile(level: float, df: np.ndarray | float) -> np.ndarray:
    """Return ``qt(1 - (1 - level)/2, df)``; NaN where ``df < 1`` (no interval possible)."""
    df = np.asarray(df, dtype=np.float64)
    q = (1.0 + level) / 2.0
    with np.errstate(invalid="ignore"):
        out = np.where(df >= 1, stats.t.ppf(q, np.where(df >= 1, df, 1.0)), np.nan)
    return out


def _kl_bernoulli(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Kullback-Leibler divergence of Bernoulli(p) from Bernoulli(q) (0 log 0 = 0)."""
    return special.xlogy(p, p) - special.xlogy(p, q) + special.xlogy(1 - p, 1 - p) - special.xlogy(
        1 - p, 1 - q
    )


def _kl_roots(p: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roots of ``2 KL(p || pi) = target`` below and above ``p`` (bisection in logit)."""
    b_hat = special.logit(p)
    bounds = []
    for sign in (-1.0, 1.0):
        lo = np.zeros_like(p)  # distance 0: divergence 0 < target
        hi = np.full_like(p, 1.0)
        # grow the bracket until the divergence exceeds the target
        for _ in range(60):
            val = 2 * _kl_bernoulli(p, special.expit(b_hat + sign * hi))
            short = val < target
            if not short.any():
                break
            hi = np.where(short, hi * 2, hi)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            val = 2 * _kl_bernoulli(p, special.expit(b_hat + sign * mid))
            below = val < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
            if np.all(hi - lo <= 1e-15 * np.maximum(1.0, np.abs(hi))):
                break
        bounds.append(special.expit(b_hat + sign * 0.5 * (lo + hi)))
    return bounds[0], bounds[1]


def _likelihood_bounds(p: np.ndarray, se: np.ndarray, crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roots of ``2 KL(p || pi) = crit^2 se^2 / (p (1 - p))`` below and above ``p``."""
    return _kl_roots(p, crit**2 * se**2 / (p * (1 - p)))


def _glm_likelihood_bounds(
    p: np.ndarray,
    crit: np.ndarray,
    *,
    rao_scott: np.ndarray,
    dispersion: np.ndarray,
    weight_total: np.ndarray,
    fitted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rao-Scott scaled profile-likelihood limits of a quasibinomial intercept-only glm.

    Parameters
    ----------
    p : ndarray
        Weighted share of 1s (the exact maximum-likelihood fit).
    crit : ndarray
        ``qt(1 - alpha/2, df)``.
    rao_scott : ndarray
        :math:`\\lambda`, sandwich over model-based variance of the intercept.
    dispersion : ndarray
        Quasibinomial dispersion :math:`\\phi` of the fit.
    weight_total : ndarray
        Sum :math:`W` of the glm's prior weights.
    fitted : ndarray
        The fitted share :math:`\\mu` at which the glm stopped (its deviance
        is the profile's origin).

    Returns
    -------
    low, high : ndarray

    Notes
    -----
    With prior weights summing to :math:`W` the deviance of a constant share
    :math:`\\pi` is :math:`D(\\pi) = 2W\\,[\\mathrm{KL}(p\\,\\|\\,\\pi) + H(p)]`, so
    the limits solve :math:`(D(\\pi) - D(\\mu))/\\phi = t^2\\lambda`, i.e.

    .. math::

        2\\,\\mathrm{KL}(p\\,\\|\\,\\pi) = t^2 \\lambda \\phi / W
        + 2\\,\\mathrm{KL}(p\\,\\|\\,\\mu).
    """
    target = crit**2 * rao_scott * dispersion / weight_total + 2 * _kl_bernoulli(p, fitted)
    return _kl_roots(p, target)


def confidence_interval(
    estimate: np.ndarray | float,
    se: np.ndarray | float,
    df: np.ndarray | float,
    *,
    level: float = 0.95,
    method: CIMethod = "mean",
    n_design: np.ndarray | float | None = None,
    n_obs: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence limits for estimates with design-based standard errors.

    Parameters
    ----------
    estimate, se : array-like
        Point estimates and their standard errors.
    df : array-like
        Design degrees of freedom (PSUs minus strata of the domain, or the
        replicate degrees of freedom).  Where ``df < 1`` the limits are NaN.
    level : float, default=0.95
        Confidence level in (0, 1).
    method : {"mean", "logit", "xlogit", "likelihood", "asin", "beta", "wilson"}, default="mean"
        ``"mean"`` is the symmetric t interval (any statistic); the others
        are for proportions in [0, 1] (R's ``svyciprop`` methods, plus Wilson).
    n_design : array-like, optional
        Rows of the design the proportion was estimated on, R's
        ``nrow(design)``: the domain's respondents for an uncalibrated design,
        the whole sample for a calibrated one.  Required by ``"beta"``; used by
        ``"beta"`` and ``"wilson"`` as the effective size when ``se == 0``.
    n_obs : array-like, optional
        Respondents (rows with a nonzero weight) behind the estimate: the
        quasibinomial dispersion of ``"likelihood"`` is ``n_obs / (n_obs - 1)``
        (taken as 1 when not given).

    Returns
    -------
    low, high : numpy.ndarray
        Broadcast shape of the inputs.

    Notes
    -----
    With :math:`t = t_{1-\\alpha/2,\\,df}` and :math:`q = p(1-p)`:

    * ``mean``: :math:`p \\pm t\\,se`.
    * ``xlogit`` and ``logit``: :math:`\\operatorname{expit}(\\operatorname{logit} p \\pm t\\,se/q)`.
      R's ``logit`` is the Wald interval of the intercept of a quasibinomial
      ``svyglm``, whose sandwich SE is exactly :math:`se/q`; the two differ in R
      only by the glm convergence (~1e-9).
    * ``asin``: :math:`\\sin^2(\\arcsin\\sqrt p \\pm t\\,se/(2\\sqrt q))`, the angle
      clipped to :math:`[0, \\pi/2]`.
    * ``likelihood``: Rao-Scott scaled profile likelihood of the quasibinomial
      intercept: :math:`\\{\\pi: (D(\\pi) - D(\\hat p))/\\phi \\le t^2 \\lambda\\}`
      with :math:`\\lambda` = sandwich over model variance.  For an intercept-only
      model the weight total cancels, leaving
      :math:`2\\,\\mathrm{KL}(p\\,\\|\\,\\pi) = \\phi\\, t^2 se^2 / q` with the
      intercept-only dispersion :math:`\\phi = n/(n-1)` (``n = n_obs``), solved
      exactly by bisection.  This is the root for the *converged* glm; R's
      ``glm.fit`` stops on a relative deviance change of 1e-8, which leaves its
      fitted share (hence its :math:`\\lambda`) off by up to ~1e-4, so R's exact
      roots differ from these by ~1e-6 relative, and R's reported interval
      (spline through a profile grid) by ~1e-5.  :func:`satsample.estimation.proportion`
      (Taylor variance) instead replays R's glm iterations from the data and
      reproduces R's exact roots (to ~1e-14).
    * ``beta`` (Korn-Graubard): :math:`n^* = q/se^2 \\cdot (t_{\\alpha/2,\\,n-1}/t_{\\alpha/2,\\,df})^2`
      with :math:`n` = ``n_design``; limits ``qbeta(α/2, n* p, n*(1-p)+1)`` and
      ``qbeta(1-α/2, n* p + 1, n*(1-p))``.
    * ``wilson`` (design-adjusted, our choice: R has no reference value): the
      Wilson score interval with the effective sample size :math:`n^* = q/se^2`
      and the critical value :math:`t`:
      :math:`(p + t^2/(2n^*) \\pm t\\sqrt{se^2 + t^2/(4n^{*2})})/(1 + t^2/n^*)`.
      It reduces to the classical Wilson interval for simple random sampling
      with replacement when :math:`df = \\infty`.

    Where ``df < 1`` (a domain with one PSU, e.g. one respondent) every method
    gives NaN limits, whatever ``se`` (R's ``qt`` is NaN there too).
    Otherwise, when ``se == 0`` (e.g. a share of exactly 0 or 1) the interval is
    :math:`[p, p]` for every method except ``beta`` and ``wilson``, which then
    use :math:`n^* =` ``n_design`` (so a domain where everyone is satisfied
    gets a one-sided interval below 1).
    """
    check_choice(method, name="ci_method", allowed=CI_METHODS)
    level = check_probability(level, name="level")
    p = np.asarray(estimate, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    p, se, df = np.broadcast_arrays(p, se, df)
    p = p.astype(np.float64, copy=True)
    se = se.astype(np.float64, copy=True)
    crit = t_quantile(level, df)
    alpha = 1.0 - level
    if method == "mean":
        return p - crit * se, p + crit * se
    if method in _PROPORTION_ONLY:
        finite = np.isfinite(p)
        if np.any(finite & ((p < 0) | (p > 1))):
            bad = int(np.sum(finite & ((p < 0) | (p > 1))))
            raise SatsampleError(
                f"ci_method={method!r} is for proportions in [0, 1]; {bad} estimate(s) lie outside"
            )
    q = p * (1 - p)
    zero = se == 0
    inner = (q > 0) & (se > 0)
    low = np.full(p.shape, np.nan)
    high = np.full(p.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method in ("logit", "xlogit"):
            b = special.logit(p)
            h = crit * se / q
            low = np.where(inner, special.expit(b - h), low)
            high = np.where(inner, special.expit(b + h), high)
        elif method == "asin":
            a = np.arcsin(np.sqrt(p))
            h = crit * se / (2 * np.sqrt(q))
            low = np.where(inner, np.sin(np.clip(a - h, 0, np.pi / 2)) ** 2, low)
            high = np.where(inner, np.sin(np.clip(a + h, 0, np.pi / 2)) ** 2, high)
        elif method == "likelihood":
            ok = inner & np.isfinite(crit)
            if ok.any():
                if n_obs is None:
                    phi = np.ones(p.shape)
                else:
                    n_o = np.broadcast_to(np.asarray(n_obs, dtype=np.float64), p.shape)
                    phi = np.where(n_o > 1, n_o / np.maximum(n_o - 1, 1), np.nan)
                lo_v, hi_v = _likelihood_bounds(p[ok], se[ok] * np.sqrt(phi[ok]), crit[ok])
                low[ok] = lo_v
                high[ok] = hi_v
        elif method in ("beta", "wilson"):
            if n_design is None and method == "beta":
                raise SatsampleError(
                    "ci_method='beta' needs n_design (rows of the design, R's nrow(design))"
                )
            n_rows = (
                np.broadcast_to(np.asarray(n_design, dtype=np.float64), p.shape)
                if n_design is not None
                else np.full(p.shape, np.nan)
            )
            n_eff = np.where(se > 0, q / np.where(se > 0, se, 1.0) ** 2, n_rows)
            if method == "beta":
                ratio = (
                    stats.t.ppf(alpha / 2, np.maximum(n_rows - 1, 1)) / stats.t.ppf(alpha / 2, df)
                ) ** 2
                n_eff = np.where(se > 0, n_eff * ratio, n_eff)
                a1, b1 = n_eff * p, n_eff * (1 - p) + 1
                a2, b2 = n_eff * p + 1, n_eff * (1 - p)
                lo_b = np.where(p > 0, stats.beta.ppf(alpha / 2, np.where(p > 0, a1, 1), b1), 0.0)
                hi_b = np.where(p < 1, stats.beta.ppf(1 - alpha / 2, a2, np.where(p < 1, b2, 1)), 1.0)
                good = np.isfinite(n_eff) & (n_eff > 0) & np.isfinite(crit)
                low = np.where(good, lo_b, low)
                high = np.where(good, hi_b, high)
            else:
                c2 = crit**2
                centre = (p + c2 / (2 * n_eff)) / (1 + c2 / n_eff)
                half = crit * np.sqrt(q / n_eff + c2 / (4 * n_eff**2)) / (1 + c2 / n_eff)
                good = np.isfinite(n_eff) & (n_eff > 0) & np.isfinite(crit)
                low = np.where(good, np.maximum(centre - half, 0.0), low)
                high = np.where(good, np.minimum(centre + half, 1.0), high)
    if method not in ("beta", "wilson"):
        degenerate = zero & np.isfinite(p)
        low = np.where(degenerate, p, low)
        high = np.where(degenerate, p, high)
    # no degrees of freedom (df < 1, e.g. one respondent): no interval, whatever the method
    no_df = ~np.isfinite(crit)
    return np.where(no_df, np.nan, low), np.where(no_df, np.nan, high)
