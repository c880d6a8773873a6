"""Interval methods: hand formulas, limits, edge cases (the R comparisons are in test_reference_cases)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from satsample._validation import SatsampleError
from satsample.intervals import CI_METHODS, confidence_interval, t_quantile


def test_wilson_reduces_to_classical_wilson():
    p, n = 0.3, 50
    se = np.sqrt(p * (1 - p) / n)
    low, high = confidence_interval(p, se, 1e12, method="wilson")
    z = stats.norm.ppf(0.975)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert low == pytest.approx(centre - half, rel=1e-9)
    assert high == pytest.approx(centre + half, rel=1e-9)


def test_t_quantile_used_and_df_below_one():
    assert t_quantile(0.95, 10) == pytest.approx(stats.t.ppf(0.975, 10))
    low, high = confidence_interval(0.5, 0.1, 0, method="mean")
    assert np.isnan(low) and np.isnan(high)


@pytest.mark.parametrize("method", CI_METHODS)
def test_vectorised_and_ordered(method):
    p = np.array([0.1, 0.5, 0.93])
    se = np.array([0.02, 0.05, 0.01])
    df = np.array([30, 100, 12])
    low, high = confidence_interval(p, se, df, method=method, n_design=np.array([60, 120, 20]),
                                    n_obs=np.array([60, 120, 20]))
    assert low.shape == (3,)
    assert np.all(low < p) and np.all(p < high)
    if method != "mean":
        assert np.all(low >= 0) and np.all(high <= 1)
    for i in range(3):
        lo1, hi1 = confidence_interval(p[i], se[i], df[i], method=method, n_design=[60, 120, 20][i],
                                       n_obs=[60, 120, 20][i])
        assert lo1 == pytest.approx(low[i], rel=1e-12) and hi1 == pytest.approx(high[i], rel=1e-12)


def test_zero_se_and_boundary_shares():
    for method in ("mean", "logit", "xlogit", "asin", "likelihood"):
        low, high = confidence_interval(1.0, 0.0, 20, method=method)
        assert (low, high) == (1.0, 1.0)
    low, high = confidence_interval(1.0, 0.0, 20, method="beta", n_design=25)
    assert high == 1.0 and low == pytest.approx(stats.beta.ppf(0.025, 25, 1))
    low, high = confidence_interval(0.0, 0.0, 20, method="wilson", n_design=25)
    assert low == 0.0 and 0 < high < 0.2


def test_errors():
    with pytest.raises(SatsampleError, match="ci_method='bogus'"):
        confidence_interval(0.5, 0.1, 10, method="bogus")  # type: ignore[arg-type]
    with pytest.raises(SatsampleError, match="n_design"):
        confidence_interval(0.5, 0.1, 10, method="beta")
    with pytest.raises(SatsampleError, match="outside"):
        confidence_interval(1.5, 0.1, 10, method="logit")
    with pytest.raises(SatsampleError, match="level"):
        confidence_interval(0.5, 0.1, 10, level=0)


def test_likelihood_is_between_wald_variants_and_asymmetric():
    low, high = confidence_interval(0.9, 0.03, 50, method="likelihood", n_obs=100)
    assert (0.9 - low) > (high - 0.9)  # skewed towards 0.5


def test_glm_likelihood_bounds_solve_the_profile_equation():
    """(D(pi) - D(mu))/phi = t^2 lambda with D(pi) = -2 W (p log pi + (1 - p) log(1 - pi))."""
    from satsample.intervals import _glm_likelihood_bounds

    p, mu, w_tot, lam, phi, t = 0.7, 0.69995, 40.0, 0.96, 1.0256, 2.02
    low, high = _glm_likelihood_bounds(np.array([p]), np.array([t]), rao_scott=np.array([lam]),
                                       dispersion=np.array([phi]), weight_total=np.array([w_tot]),
                                       fitted=np.array([mu]))

    def dev(pi):
        return -2 * w_tot * (p * np.log(pi) + (1 - p) * np.log(1 - pi))

    for lim in (low[0], high[0]):
        assert (dev(lim) - dev(mu)) / phi == pytest.approx(t * t * lam, rel=1e-12)
    assert low[0] < p < high[0]


def _glm_likelihood_twin(y, w, strata, in_dom, level):
    """Plain replay of R: glm.fit IRLS (lstsq on x*sqrt(w)), svy.varcoef sandwich, profile roots."""
    from scipy import optimize, special

    ys, ws = y[in_dom], w[in_dom]
    a = ws / ws.mean()
    mu = (a * ys + 0.5) / (a + 1)
    eta = special.logit(mu)

    def dev(m):
        return -2 * np.sum(a * (ys * np.log(m) + (1 - ys) * np.log(1 - m)))

    dev_old = dev(mu)
    for _ in range(25):
        me = np.exp(eta) / (1 + np.exp(eta)) ** 2
        z = eta + (ys - mu) / me
        sw = np.sqrt(a * me**2 / (mu * (1 - mu)))
        beta = np.linalg.lstsq(sw[:, None], z * sw, rcond=None)[0][0]
        eta = np.full(ys.shape, beta)
        mu = special.expit(eta)
        d = dev(mu)
        if abs(d - dev_old) / (abs(d) + 0.1) < 1e-8:
            break
        dev_old = d
    wt = sw**2
    a_inv = 1 / wt.sum()
    est = np.zeros(y.shape)
    est[in_dom] = (ys - mu) / (np.exp(eta) / (1 + np.exp(eta)) ** 2) * wt * a_inv
    v = 0.0
    for h in np.unique(strata):
        e = est[strata == h]
        v += e.size / (e.size - 1) * np.sum((e - e.mean()) ** 2)
    lam = v / a_inv
    p = np.sum(ws * ys) / ws.sum()
    n = ys.size
    phi = p * (1 - p) / (mu[0] * (1 - mu[0])) * n / (n - 1)
    df = n - np.unique(strata[in_dom]).size  # element sampling: rows minus strata in the domain
    t = stats.t.ppf((1 + level) / 2, df)

    def f(pi):
        return (dev(np.full(ys.shape, pi)) - dev(mu)) / phi - t * t * lam

    return optimize.brentq(f, 1e-9, p, xtol=1e-15), optimize.brentq(f, p, 1 - 1e-9, xtol=1e-15)


def test_proportion_likelihood_matches_plain_glm_replay():
    """proportion(ci_method="likelihood") = a literal replay of svyglm + profile, overall and in a domain."""
    import pandas as pd

    from satsample.design import survey_design
    from satsample.estimation import proportion

    rng = np.random.default_rng(7)
    n = 60
    df = pd.DataFrame({
        "h": np.repeat(["a", "b", "c"], 20),
        "w": rng.uniform(1, 9, n),
        "y": (rng.uniform(size=n) < 0.7).astype(float),
        "g": rng.choice(["x", "z"], n),
    })
    design = survey_design(df, strata="h", weights="w")
    y, w, h = df["y"].to_numpy(), df["w"].to_numpy(), df["h"].to_numpy()
    res = proportion(design, "y", ci_method="likelihood", level=0.9).table.iloc[0]
    lo, hi = _glm_likelihood_twin(y, w, h, np.ones(n, dtype=bool), 0.9)
    assert [res["ci_low"], res["ci_high"]] == pytest.approx([lo, hi], rel=1e-11)
    tab = proportion(design, "y", by="g", ci_method="likelihood").table
    for level_name, row in tab.set_index("g").iterrows():
        lo, hi = _glm_likelihood_twin(y, w, h, df["g"].to_numpy() == level_name, 0.95)
        assert [row["ci_low"], row["ci_high"]] == pytest.approx([lo, hi], rel=1e-11)
