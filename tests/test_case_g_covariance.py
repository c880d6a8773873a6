"""Case G: covariance of domain means across domains and svycontrast (R survey 4.1.1), plus
vcov/contrast/with_replicates identities on Taylor and replicate designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import add_indicator_columns, assert_rel, load_case, load_data

import satsample as ss
from satsample._validation import SatsampleError

TOL = 1e-10


@pytest.fixture(scope="module")
def case_g():
    return load_case("G_quantiles_contrasts")


@pytest.fixture(scope="module")
def design_g():
    """Case A sample + extra_strat (joined on user_id); rows missing s01 or s02 out of both.

    R: ``subset(design, !is.na(s01) & !is.na(s02))``, a domain restriction; here the two
    columns are NaN together and ``na="drop"`` restricts the domain the same way.
    """
    data = add_indicator_columns(load_data("sample_strat"))
    data = data.merge(load_data("extra_strat"), on="user_id", how="left", validate="1:1")
    both = data["s01"].notna() & data["s02"].notna()
    data.loc[~both, ["s01", "s02"]] = np.nan
    return ss.survey_design(data, strata="agency_id", fpc="N_h")


@pytest.fixture(scope="module")
def means_by_sex(design_g):
    return ss.mean(design_g, ["s01", "s02"], by="sex", na="drop")


@pytest.mark.reference
def test_domain_covariance(case_g, means_by_sex):
    ref = case_g["results"]["domain_covariance"]
    labels = ref["labels"]
    est = means_by_sex
    assert sorted(est.labels) == sorted(labels)
    got = est.table.assign(label=est.labels).set_index("label").loc[labels, "estimate"]
    assert_rel(got, [ref["estimates"][k] for k in labels], rtol=TOL)
    v = est.vcov()
    assert list(v.index) == est.labels
    assert_rel(v.loc[labels, labels].to_numpy(), np.array(ref["vcov"]), rtol=TOL)
    # the diagonal is the squared SE of the table; symmetric
    assert_rel(np.diag(v), est.table["se"] ** 2, rtol=1e-12)
    np.testing.assert_array_equal(v.to_numpy(), v.to_numpy().T)


@pytest.mark.reference
def test_contrast_linear(case_g, means_by_sex):
    ref = case_g["results"]["contrast_linear"]
    res = ss.contrast(means_by_sex, ref["weights"])
    assert_rel(res.table["estimate"], [ref["estimate"]], rtol=TOL)
    assert_rel(res.table["se"], [ref["se"]], rtol=TOL)
    # the same with coefficients in table order
    coef = [ref["weights"][k] for k in means_by_sex.labels]
    assert_rel(ss.contrast(means_by_sex, coef).table["se"], [ref["se"]], rtol=1e-14)


@pytest.mark.reference
def test_contrast_log_ratio(case_g, means_by_sex):
    ref = case_g["results"]["contrast_log_ratio"]
    res = ss.contrast(means_by_sex, ref["expression"])
    assert_rel(res.table["estimate"], [ref["estimate"]], rtol=TOL)
    assert_rel(res.table["se"], [ref["se"]], rtol=TOL)
    both = ss.contrast(means_by_sex, {"diff": case_g["results"]["contrast_linear"]["weights"],
                                      "log ratio": ref["expression"]})
    assert both.table["variable"].tolist() == ["diff", "log ratio"]
    assert_rel(both.table["se"].iloc[1], ref["se"], rtol=TOL)
    assert_rel(np.diag(both.vcov()), both.table["se"] ** 2, rtol=1e-12)


def test_contrast_by_hand(means_by_sex):
    """Delta method by hand: gradient of log(b/a) is (-1/a, 1/b)."""
    t = means_by_sex.table.assign(label=means_by_sex.labels).set_index("label")
    a, b = t.loc["F:s01", "estimate"], t.loc["M:s01", "estimate"]
    v = means_by_sex.vcov().loc[["F:s01", "M:s01"], ["F:s01", "M:s01"]].to_numpy()
    g = np.array([-1 / a, 1 / b])
    res = ss.contrast(means_by_sex, "log(`M:s01` / `F:s01`)")
    assert_rel(res.table["se"].iloc[0], np.sqrt(g @ v @ g), rtol=1e-13)
    assert_rel(res.table["estimate"].iloc[0], np.log(b / a), rtol=1e-15)


def test_contrast_errors(means_by_sex):
    with pytest.raises(SatsampleError, match="unknown estimate"):
        ss.contrast(means_by_sex, {"X:s01": 1})
    with pytest.raises(SatsampleError, match="coefficients for 4 estimates"):
        ss.contrast(means_by_sex, [1, -1])
    with pytest.raises(SatsampleError, match="not allowed"):
        ss.contrast(means_by_sex, "`F:s01`.__class__")
    with pytest.raises(SatsampleError, match="only the functions"):
        ss.contrast(means_by_sex, "open(`F:s01`)")


@pytest.mark.parametrize("kind", ["jackknife", "bootstrap"])
def test_replicate_vcov_is_replicate_covariance(design_g, kind):
    d = (ss.jackknife(design_g) if kind == "jackknife"
         else ss.bootstrap(design_g, n_replicates=30, rng=4))
    est = ss.mean(d, ["s01", "s02"], by="sex", na="drop")
    theta_r = est.replicate_estimates
    dev = theta_r - theta_r.mean(axis=0)
    reps = d.replicates
    want = reps.scale * (dev.T * reps.rscales) @ dev
    assert_rel(est.vcov().to_numpy(), want, rtol=1e-12)
    assert_rel(np.diag(est.vcov()), est.table["se"] ** 2, rtol=1e-12)


def test_closed_form_jackknife_vcov(design_g):
    """Replicates not stored: vcov recomputes the replicate estimates, same as stored."""
    lazy = ss.mean(ss.jackknife(design_g, materialize=False), ["s01"], by="sex", na="drop")
    mat = ss.mean(ss.jackknife(design_g), ["s01"], by="sex", na="drop")
    assert lazy.replicate_estimates is None
    assert_rel(lazy.vcov().to_numpy(), mat.vcov().to_numpy(), rtol=1e-10)


def test_index_vcov_diagonal(design_g, reference_questionnaire):
    for d in (design_g, ss.bootstrap(design_g, n_replicates=20, rng=1)):
        res = ss.satisfaction_index(d, reference_questionnaire, by="sex")
        for tier in ("overall", "element", "item"):
            v = res.vcov(tier)
            assert v.shape == (len(res.to_frame(tier)),) * 2
            assert_rel(np.diag(v), res.to_frame(tier)["se"] ** 2, rtol=1e-12)
        assert list(res.vcov("overall").index) == ["F", "M"]


def test_taylor_vcov_polarisation(design_g):
    """cov(a, b) = (V(a + b) - V(a - b)) / 4 with the variance engine (two-stage, lonely PSUs)."""
    from satsample.variance.taylor import taylor_variance, taylor_vcov

    data = add_indicator_columns(load_data("sample_twostage_lonely"))
    for rule in ("adjust", "remove", "certainty"):
        d = ss.survey_design(data, ids=["commune_id", "user_id"], strata="district_id",
                             fpc=["M_h", "N_hi"], lonely_psu=rule)
        rng = np.random.default_rng(1)
        x = rng.normal(size=(d.n, 3)) * d.weights[:, None]
        dom = rng.integers(0, 2, d.n)
        v = taylor_vcov(d, x, domain=dom, n_domains=2)
        dense = np.zeros((d.n, 6))
        dense[np.arange(d.n)[:, None], dom[:, None] * 3 + np.arange(3)] = x
        var = taylor_variance(d, dense)[0]
        assert_rel(np.diag(v), var, rtol=1e-12)
        i, j = 0, 4
        plus = taylor_variance(d, dense[:, i] + dense[:, j])
        minus = taylor_variance(d, dense[:, i] - dense[:, j])
        assert_rel(v[i, j], (plus - minus) / 4, rtol=1e-10)


def test_with_replicates_equals_mean(design_g):
    d = ss.jackknife(design_g)

    def share(w, data):
        ok = data["s01"].notna().to_numpy()
        return pd.Series({"s01": np.sum(w[ok] * data["s01"].to_numpy()[ok]) / np.sum(w[ok])})

    res = ss.with_replicates(d, share)
    ref = ss.mean(d, "s01", na="drop").table
    assert res.table["variable"].tolist() == ["s01"]
    for c in ("estimate", "se", "ci_low", "ci_high", "df"):
        assert_rel(res.table[c], ref[c], rtol=1e-10, what=c)
    assert res.replicate_estimates.shape == (d.replicates.n_replicates, 1)
    lazy = ss.bootstrap(design_g, n_replicates=25, rng=2, materialize=False)
    stored = ss.bootstrap(design_g, n_replicates=25, rng=2)
    np.testing.assert_array_equal(ss.with_replicates(lazy, share).table["se"],
                                  ss.with_replicates(stored, share).table["se"])
    with pytest.raises(SatsampleError, match="replicate weights"):
        ss.with_replicates(design_g, share)


def test_league_table_uses_the_covariance(design_g, reference_questionnaire):
    """Taylor comparisons with the mean of domains: c' V c with the domains' covariance.

    Agencies are strata: their estimates are independent and the covariance gives the
    independence formula.  Channels cut across strata: the covariance changes the SEs.
    """
    for by, independent in (("agency_id", True), ("channel", False)):
        res = ss.satisfaction_index(design_g, reference_questionnaire, by=by)
        lt = ss.league_table(res, rank_intervals=False)
        assert lt.options["contrast_variance"] == "taylor (covariance of the domains)"
        tab = res.to_frame("overall")
        v = res.vcov("overall").to_numpy()
        G = len(tab)
        c = np.eye(G) - 1.0 / G
        want = np.sqrt(np.diag(c @ v @ c.T))
        got = lt.table.set_index("domain").loc[tab[by].astype(str), "diff_se"].to_numpy()
        assert_rel(got, want, rtol=1e-12)
        se = tab["se"].to_numpy()
        indep = np.sqrt((1 - 1 / G) ** 2 * se**2 + (np.sum(se**2) - se**2) / G**2)
        if independent:
            assert_rel(got, indep, rtol=1e-10)
        else:
            assert np.max(np.abs(got / indep - 1)) > 1e-3
