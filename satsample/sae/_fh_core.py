"""Array core of the Fay-Herriot area-level model: variance fits, EBLUPs and MSE terms.

Everything here works on plain arrays (``y`` of shape (D,), ``X`` of shape (D, p), known
sampling variances ``psi`` of shape (D,)); the public layer in :mod:`.area_level` builds
them from tables, checks them and wraps the results.  Notation follows Rao & Molina (2015),
ch. 6: :math:`V_d = \\sigma^2_v + \\psi_d`, :math:`\\gamma_d = \\sigma^2_v / V_d`,
:math:`B_d = 1 - \\gamma_d`, :math:`A = X'V^{-1}X`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .._validation import ConvergenceError

METHODS: tuple[str, ...] = ("reml", "ml", "fh", "amrl", "ampl")
LIKELIHOOD_METHODS: tuple[str, ...] = ("reml", "ml", "amrl", "ampl")


@dataclass(frozen=True)
class _Moments:
    """Quantities of the model at one value of sigma2_v."""

    sigma2: float
    w: np.ndarray  # 1 / V_d
    a_inv: np.ndarray  # (X'V^-1 X)^-1
    beta: np.ndarray
    resid: np.ndarray  # y - X beta


def moments(y: np.ndarray, x: np.ndarray, psi: np.ndarray, sigma2: float) -> _Moments:
    """GLS fit of beta at a given sigma2_v."""
    w = 1.0 / (sigma2 + psi)
    xw = x * w[:, None]
    a = x.T @ xw
    a_inv = np.linalg.inv(a)
    a_inv = 0.5 * (a_inv + a_inv.T)
    beta = a_inv @ (xw.T @ y)
    return _Moments(sigma2=float(sigma2), w=w, a_inv=a_inv, beta=beta, resid=y - x @ beta)


def _trace_terms(x: np.ndarray, m: _Moments) -> tuple[float, float, float]:
    """tr(A^-1 X'W^2 X), tr(A^-1 X'W^3 X) and tr((A^-1 X'W^2 X)^2)."""
    w = m.w
    c2 = m.a_inv @ (x.T @ (x * (w**2)[:, None]))
    c3 = m.a_inv @ (x.T @ (x * (w**3)[:, None]))
    return float(np.trace(c2)), float(np.trace(c3)), float(np.sum(c2 * c2.T))


def loglik(y: np.ndarray, x: np.ndarray, psi: np.ndarray, sigma2: float, method: str) -> float:
    """Profile (ML) or residual (REML) log-likelihood, plus log sigma2 for the adjusted ones.

    Constants (the :math:`2\\pi` terms) are left out.
    """
    m = moments(y, x, psi, sigma2)
    value = -0.5 * (np.sum(np.log(sigma2 + psi)) + np.sum(m.w * m.resid**2))
    if method in ("reml", "amrl"):
        _, logdet_inv = np.linalg.slogdet(m.a_inv)
        value += 0.5 * logdet_inv  # -0.5 log|X'V^-1 X|
    if method in ("amrl", "ampl"):
        value += np.log(sigma2) if sigma2 > 0 else -np.inf
    return float(value)


def _score_info(x: np.ndarray, m: _Moments, method: str) -> tuple[float, float]:
    """Score and expected information of the (adjusted) log-likelihood in sigma2_v."""
    w = m.w
    quad = float(np.sum(w**2 * m.resid**2))  # y'P^2 y = r'V^-2 r
    if method in ("reml", "amrl"):
        t2, t3, t22 = _trace_terms(x, m)
        score = -0.5 * (float(np.sum(w)) - t2) + 0.5 * quad
        info = 0.5 * (float(np.sum(w**2)) - 2.0 * t3 + t22)
    else:
        score = -0.5 * float(np.sum(w)) + 0.5 * quad
        info = 0.5 * float(np.sum(w**2))
    if method in ("amrl", "ampl"):
        score += 1.0 / m.sigma2
        info += 1.0 / m.sigma2**2
    return score, info


@dataclass(frozen=True)
class Fit:
    """Result of a variance fit."""

    sigma2: float
    n_iter: int
    converged: bool
    boundary: bool


def _fit_fh(y: np.ndarray, x: np.ndarray, psi: np.ndarray, tol: float) -> Fit:
    """Fay-Herriot moment estimator: root of sum_d r_d^2 / V_d = D - p (Paule-Mandel)."""
    d, p = x.shape
    target = float(d - p)

    def excess(s2: float) -> float:
        m = moments(y, x, psi, s2)
        return float(np.sum(m.w * m.resid**2)) - target

    if excess(0.0) <= 0.0:
        return Fit(sigma2=0.0, n_iter=1, converged=True, boundary=True)
    hi = max(float(np.var(y)), float(np.median(psi)), 1e-12)
    n_iter = 0
    while excess(hi) > 0.0:
        hi *= 4.0
        n_iter += 1
        if n_iter > 200:
            raise ConvergenceError("method='fh': no upper bracket for sigma2_v found")
    scale = max(hi, float(np.median(psi)))
    root, res = optimize.brentq(excess, 0.0, hi, xtol=tol * scale, rtol=4 * np.finfo(float).eps,
                                maxiter=500, full_output=True)
    return Fit(sigma2=float(root), n_iter=n_iter + int(res.iterations), converged=bool(res.converged),
               boundary=False)


def fit_variance(y: np.ndarray, x: np.ndarray, psi: np.ndarray, method: str, *,
                 tol: float = 1e-12, max_iter: int = 200) -> Fit:
    """Estimate sigma2_v by REML, ML, the FH moment method or an adjusted likelihood.

    Likelihood methods use Fisher scoring with step halving (the likelihood never decreases),
    started at the moment estimate, truncated at 0 (REML, ML) or kept positive (adjusted).
    The iteration stops when a step is below ``tol`` times the scale
    ``max(sigma2_v, median psi)``.
    """
    start = _fit_fh(y, x, psi, tol)
    if method == "fh":
        return start
    adjusted = method in ("amrl", "ampl")
    scale_psi = float(np.median(psi))
    s2 = start.sigma2
    if adjusted and s2 <= 0.0:
        s2 = 0.1 * scale_psi
    current = loglik(y, x, psi, s2, method)
    for it in range(1, max_iter + 1):
        m = moments(y, x, psi, s2)
        score, info = _score_info(x, m, method)
        step = score / info
        new = s2 + step
        if new < 0.0:
            new = 0.5 * s2 if adjusted else 0.0
        # step halving: the (adjusted) likelihood must not decrease
        value = loglik(y, x, psi, new, method)
        halvings = 0
        while value < current - 1e-14 * abs(current) and halvings < 60:
            new = 0.5 * (s2 + new)
            value = loglik(y, x, psi, new, method)
            halvings += 1
        change = abs(new - s2)
        s2, current = new, value
        if change <= tol * max(s2, scale_psi):
            break
        if s2 == 0.0 and not adjusted:
            # at the boundary: stop when the score points outside the parameter space
            score0, _ = _score_info(x, moments(y, x, psi, 0.0), method)
            if score0 <= 0.0:
                return Fit(sigma2=0.0, n_iter=it, converged=True, boundary=True)
    else:
        raise ConvergenceError(
            f"method={method!r}: Fisher scoring for sigma2_v did not converge in "
            f"{max_iter} iterations (last value {s2:.6g}); raise max_iter or check the data"
        )
    return Fit(sigma2=float(s2), n_iter=it, converged=True, boundary=(s2 == 0.0))


def bias_sigma2(x: np.ndarray, m: _Moments, method: str) -> float:
    """Second-order bias b(sigma2_v) of the estimator of sigma2_v (0 for REML).

    ML: :math:`-\\operatorname{tr}(A^{-1}X'V^{-2}X)/\\sum V_d^{-2}` (Datta & Lahiri 2000);
    FH: :math:`2[D\\sum V_d^{-2} - (\\sum V_d^{-1})^2]/(\\sum V_d^{-1})^3` (Datta, Rao & Smith
    2005); adjusted REML: :math:`2/(\\sigma^2_v \\sum V_d^{-2})`, adjusted ML: the ML bias
    plus that term (Li & Lahiri 2010).
    """
    w = m.w
    s_w2 = float(np.sum(w**2))
    if method == "reml":
        return 0.0
    if method == "fh":
        s_w = float(np.sum(w))
        return 2.0 * (w.size * s_w2 - s_w**2) / s_w**3
    t2 = float(np.trace(m.a_inv @ (x.T @ (x * (w**2)[:, None]))))
    if method == "ml":
        return -t2 / s_w2
    if method == "amrl":
        return 2.0 / (m.sigma2 * s_w2)
    if method == "ampl":
        return (-t2 + 2.0 / m.sigma2) / s_w2
    raise ValueError(method)  # pragma: no cover - checked by the caller


def var_sigma2(m: _Moments, method: str) -> float:
    """Asymptotic variance of the estimator of sigma2_v (the V-bar of the g3 term)."""
    w = m.w
    if method == "fh":
        return 2.0 * w.size / float(np.sum(w)) ** 2
    return 2.0 / float(np.sum(w**2))


def mse_terms(x: np.ndarray, psi: np.ndarray, m: _Moments, method: str,
              x_out: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """g1, g2, g3, the bias correction and the analytic MSE, in sample and out of sample.

    In sample: :math:`\\text{mse}_d = g_{1d} + g_{2d} + 2 g_{3d} - B_d^2 b(\\hat\\sigma^2_v)`
    with :math:`g_{1d} = \\gamma_d \\psi_d`, :math:`g_{2d} = B_d^2 x_d' A^{-1} x_d`,
    :math:`g_{3d} = B_d^2 \\bar V / V_d`.  Out of sample (synthetic estimate, :math:`B_d = 1`):
    :math:`\\hat\\sigma^2_v + x_d'A^{-1}x_d - b(\\hat\\sigma^2_v)`.
    """
    s2 = m.sigma2
    v = s2 + psi
    gamma = s2 / v
    b_d = psi / v
    lev = np.einsum("ij,jk,ik->i", x, m.a_inv, x)
    vbar = var_sigma2(m, method)
    bias = bias_sigma2(x, m, method)
    g1 = gamma * psi
    g2 = b_d**2 * lev
    g3 = b_d**2 * vbar / v
    corr = b_d**2 * bias
    out = {"g1": g1, "g2": g2, "g3": g3, "bias_term": corr, "mse": g1 + g2 + 2.0 * g3 - corr}
    if x_out is not None and x_out.shape[0]:
        lev_out = np.einsum("ij,jk,ik->i", x_out, m.a_inv, x_out)
        out["mse_out"] = s2 + lev_out - bias
        out["g2_out"] = lev_out
    return out
