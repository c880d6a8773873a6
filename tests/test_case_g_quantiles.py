"""Case G of tests/reference (R survey 4.1.1): quantiles, means and totals of continuous variables.

R's script declares ``svydesign(ids = ~1, strata = ~agency_id, fpc = ~N_h)`` on the case A
sample joined with ``extra_strat.csv`` and analyses ``wait_minutes`` (19 missing values, many
ties) on ``subset(design, !is.na(wait_minutes))``.  The domain covariance and the contrasts of
case G are tested with the estimation engine, not here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_rel, load_case, load_data
from scipy import stats

from satsample import jackknife, mean, quantile, survey_design, total

pytestmark = pytest.mark.reference

TOL_Q = 1e-12  # quantiles are data values or interpolations between them
TOL = 1e-10  # SE and CI


@pytest.fixture(scope="module")
def ref():
    return load_case("G_quantiles_contrasts")["results"]


@pytest.fixture(scope="module")
def data():
    sample = load_data("sample_strat")
    extra = load_data("extra_strat")
    merged = sample.merge(extra, on="user_id", how="left", validate="one_to_one")
    # R's data frame keeps the sample's row order: ties are ordered as in R
    assert merged["user_id"].tolist() == sample["user_id"].tolist()
    return merged


@pytest.fixture(scope="module")
def design(data):
    return survey_design(data, strata="agency_id", fpc="N_h")


def test_data_has_missing_values_and_ties(data):
    assert int(data["wait_minutes"].isna().sum()) == 19
    assert data["wait_minutes"].dropna().duplicated().sum() > 500
    assert data["visits"].notna().all()


@pytest.mark.parametrize("rule", ["math", "hf7", "school"])
@pytest.mark.parametrize("ci_method", ["mean", "score"])
def test_quantiles(design, ref, rule, ci_method):
    recs = pd.DataFrame(ref["quantiles"][f"{rule}_{ci_method}"])
    res = quantile(design, "wait_minutes", recs["quantile"].tolist(), rule=rule,
                   ci_method=ci_method, na="drop")
    tab = res.table
    np.testing.assert_array_equal(tab["prob"], recs["quantile"])
    assert_rel(tab["estimate"], recs["estimate"], rtol=TOL_Q, what="estimate")
    assert_rel(tab["ci_low"], recs["ci_low"], rtol=TOL, what="ci_low")
    assert_rel(tab["ci_high"], recs["ci_high"], rtol=TOL, what="ci_high")
    assert_rel(tab["se"], recs["se"], rtol=TOL, what="se")
    # R's df of subset(design, !is.na(wait_minutes)): 698 respondents in 28 strata
    assert (tab["df"] == 670).all()
    assert (tab["n"] == 698).all()
    assert dict(res.excluded) == {"'wait_minutes' missing (na='drop')": 19}
    assert res.options["rule"] == rule and res.options["ci_method"] == ci_method


def test_se_is_r_width_over_twice_t(design, ref):
    # the JSON's definition: SE = (ci_high - ci_low) / (2 qt(0.975, df))
    recs = pd.DataFrame(ref["quantiles"]["hf7_score"])
    width = recs["ci_high"] - recs["ci_low"]
    assert_rel(width / (2 * stats.t.ppf(0.975, 670)), recs["se"], rtol=TOL)


def test_quantiles_by_domain(design, ref):
    block = ref["quantiles_by_domain"]
    assert (block["rule"], block["interval"]) == ("math", "mean")
    recs = pd.DataFrame(block["records"])
    res = quantile(design, "wait_minutes", [0.5, 0.9], by=block["domain_variable"], na="drop")
    tab = res.table
    m = recs.merge(tab, left_on=["domain", "quantile"], right_on=["agency_level", "prob"],
                   suffixes=("_r", ""), validate="one_to_one")
    assert len(m) == len(recs) == len(tab) == 6
    assert_rel(m["estimate"], m["estimate_r"], rtol=TOL_Q, what="estimate")
    assert_rel(m["se"], m["se_r"], rtol=TOL, what="se")
    # svyby keeps the full design: df = PSUs - strata among the domain's respondents
    sub = design.data[design.data["wait_minutes"].notna()]
    for level, grp in sub.groupby("agency_level"):
        expected_df = len(grp) - grp["agency_id"].nunique()
        assert (tab.loc[tab["agency_level"] == level, "df"] == expected_df).all()


@pytest.mark.parametrize("ci_method", ["mean", "score"])
def test_domain_equals_the_subset_of_the_full_design(design, ci_method):
    # svyby: a domain is the full design restricted to the domain's rows (R's subset)
    by_dom = quantile(design, "wait_minutes", [0.25, 0.5, 0.9], by="agency_level", na="drop",
                      ci_method=ci_method, rule="hf7").table
    d = design.data
    for level in ("province", "district", "commune"):
        only = d["wait_minutes"].where(d["agency_level"] == level)
        des = survey_design(d.assign(w_dom=only), strata="agency_id", fpc="N_h")
        alone = quantile(des, "w_dom", [0.25, 0.5, 0.9], na="drop", ci_method=ci_method,
                         rule="hf7").table
        part = by_dom[by_dom["agency_level"] == level].reset_index(drop=True)
        for c in ("estimate", "ci_low", "ci_high", "se", "df", "n"):
            assert_rel(part[c], alone[c], rtol=1e-13, what=f"{level} {c}")


def test_quantiles_jkn(data, ref):
    # R: as.svrepdesign(subset(design, !is.na(wait_minutes)), type = "JKn").  The subset keeps
    # the design weights N_h/n_h of the full sample, while the jackknife uses the PSUs present.
    sub = data[data["wait_minutes"].notna()].reset_index(drop=True)
    jk = jackknife(survey_design(sub, strata="agency_id", fpc="N_h", weights="design_weight"),
                   kind="JKn")
    recs = pd.DataFrame(ref["quantiles_jkn"])
    res = quantile(jk, "wait_minutes", recs["quantile"].tolist())
    tab = res.table
    assert res.options["variance"] == "replicate" and res.options["replicate_kind"] == "JKn"
    assert_rel(tab["estimate"], recs["estimate"], rtol=TOL_Q)
    assert_rel(tab["ci_low"], recs["ci_low"], rtol=TOL)
    assert_rel(tab["ci_high"], recs["ci_high"], rtol=TOL)
    assert_rel(tab["se"], recs["se"], rtol=TOL)
    assert (tab["df"] == 670).all()


def test_means_complete_cases(design, ref):
    # R: svymean(~wait_minutes + visits, design, na.rm = TRUE) drops the rows missing in ANY
    # listed variable, so visits is averaged over the 698 rows with a waiting time.  satsample's
    # na="drop" is item-wise; R's complete-case result is the mean of visits restricted to them.
    r = ref["means"]
    d = design.data.assign(visits_cc=design.data["visits"].where(design.data["wait_minutes"].notna()))
    des = survey_design(d, strata="agency_id", fpc="N_h")
    tab = mean(des, ["wait_minutes", "visits_cc"], na="drop").table.set_index("variable")
    assert_rel(tab.loc["wait_minutes", "estimate"], r["estimate"]["wait_minutes"], rtol=TOL)
    assert_rel(tab.loc["visits_cc", "estimate"], r["estimate"]["visits"], rtol=TOL)
    assert_rel(tab.loc["wait_minutes", "se"], r["se"]["wait_minutes"], rtol=TOL)
    assert_rel(tab.loc["visits_cc", "se"], r["se"]["visits"], rtol=TOL)
    # item-wise handling uses all 717 rows for visits: a different number
    item = mean(design, ["wait_minutes", "visits"], na="drop").table.set_index("variable")
    assert abs(item.loc["visits", "estimate"] - r["estimate"]["visits"]) > 1e-3
    assert item.loc["visits", "n"] == 717


def test_total_visits(design, ref):
    r = ref["total_visits"]
    tab = total(design, "visits").table
    assert_rel(tab["estimate"].iloc[0], r["estimate"], rtol=TOL)
    assert_rel(tab["se"].iloc[0], r["se"], rtol=TOL)
