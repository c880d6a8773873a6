"""The Dask backend on a LocalCluster (2 worker processes) equals the in-memory engine.

Partitions are cut against the strata: strata split over partitions, rows
interleaved, empty partitions.  The in-memory reference is the design of
``ddf.compute()`` (the same rows in the same order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import add_indicator_columns, load_data

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import satsample as ss  # noqa: E402
from satsample._validation import DesignError, SatsampleError  # noqa: E402
from satsample.design import WeightStep  # noqa: E402
from satsample.distributed import (  # noqa: E402
    DaskSurveyDesign,
    reduce,
    with_weight_factors,
)
from satsample.variance.taylor import taylor_variance  # noqa: E402

pytestmark = pytest.mark.usefixtures("dask_client")


def frame_of(pdf: pd.DataFrame, layout: str, *, seed: int = 0):
    """A Dask frame of ``pdf`` cut against its strata; returns (ddf, the same rows in memory).

    ``"split"``: 5 contiguous partitions of equal size (strata cut in two);
    ``"interleaved"``: rows in random order, 4 partitions; ``"empty"``: 6
    partitions, two of them empty, rows in random order; ``"whole"``: one
    stratum column's groups in 3 partitions (no shuffle needed).
    """
    n = len(pdf)
    rng = np.random.default_rng(seed)
    if layout == "split":
        pieces = np.array_split(np.arange(n), 5)
    elif layout == "interleaved":
        pieces = np.array_split(rng.permutation(n), 4)
    elif layout == "empty":
        cut = np.array_split(rng.permutation(n), 4)
        pieces = [cut[0], cut[1][:0], cut[1], cut[2], cut[3][:0], cut[3]]
    else:
        raise ValueError(layout)
    parts = [pdf.iloc[idx].reset_index(drop=True) for idx in pieces]
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=pdf.iloc[:0], verify_meta=False)
    return ddf, pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def strat():
    return add_indicator_columns(load_data("sample_strat"))


@pytest.fixture(scope="module")
def designs_a(strat):
    return {lay: _both(strat, lay, strata="agency_id", fpc="N_h")
            for lay in ("split", "interleaved", "empty")}


def _both(pdf, layout, **kw):
    ddf, rows = frame_of(pdf, layout)
    return ss.survey_design(ddf, **kw), ss.survey_design(rows, **kw)


@pytest.fixture(scope="module")
def twostage():
    return load_data("sample_twostage")


# ------------------------------------------------------------------ the design
@pytest.mark.parametrize("layout", ["split", "interleaved", "empty"])
def test_design_matches_memory(designs_a, layout):
    d, mem = designs_a[layout]
    pdf = mem.data
    assert isinstance(d, DaskSurveyDesign)
    assert d.shuffled
    assert (d.n, d.n_strata, d.n_psu, d.degf) == (mem.n, mem.n_strata, mem.n_psu, mem.degf)
    np.testing.assert_array_equal(d.strata_labels, mem.strata_labels)
    assert d.history[0].method == "design"
    assert d.history[0].n_rows == mem.history[0].n_rows
    np.testing.assert_allclose(d.history[0].kish_deff, mem.history[0].kish_deff, rtol=1e-12)
    # the Taylor variance of a total: the sum of the partitions' (whole strata)
    y = "n01"
    v = reduce(d, lambda p: taylor_variance(p, p.weights * p.data[y].to_numpy(float)))
    ref = taylor_variance(mem, mem.weights * pdf[y].to_numpy(float))
    np.testing.assert_allclose(v, ref, rtol=1e-12)


def test_partition_designs_have_global_codes(twostage):
    ddf, pdf = frame_of(twostage, "interleaved", seed=3)
    kw = dict(ids=["commune_id", "user_id"], strata="district_id", fpc=["M_h", "N_hi"])
    d = ss.survey_design(ddf, **kw)
    mem = ss.survey_design(pdf, **kw)

    def codes(p):
        return {"rows": p.data["__satsample_row__"].to_numpy(), "strata": p.strata, "psu": p.psu,
                "n_strata": p.n_strata}

    parts = reduce(d, lambda p: [codes(p)], combine=lambda a, b: (a or []) + (b or []))
    rows = np.concatenate([c["rows"] for c in parts])
    assert np.array_equal(np.sort(rows), np.arange(mem.n))  # every row once
    for c in parts:
        np.testing.assert_array_equal(c["strata"], mem.strata[c["rows"]])
        np.testing.assert_array_equal(c["psu"], mem.psu[c["rows"]])
        assert c["n_strata"] == mem.n_strata
        assert np.all(np.diff(c["rows"]) > 0)  # global row order within a partition
    v = reduce(d, lambda p: taylor_variance(p, p.weights * p.data["q01"].fillna(0).to_numpy(float)))
    ref = taylor_variance(mem, mem.weights * pdf["q01"].fillna(0).to_numpy(float))
    np.testing.assert_allclose(v, ref, rtol=1e-12)


def test_whole_strata_are_not_shuffled(strat):
    pdf = strat.sort_values("agency_id", kind="stable").reset_index(drop=True)
    codes = pd.factorize(pdf["agency_id"], sort=True)[0]
    cut = [np.flatnonzero(codes < 10), np.flatnonzero((codes >= 10) & (codes < 20)),
           np.flatnonzero(codes >= 20)]
    ddf = dd.from_delayed([dask.delayed(pdf.iloc[c]) for c in cut], meta=pdf.iloc[:0])
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    assert not d.shuffled and d.n_partitions == 3


# --------------------------------------------------------------- bad input
def _raises_like_memory(pdf, ddf, match, exc=SatsampleError, **kw):
    with pytest.raises(exc, match=match):
        ss.survey_design(pdf, **kw)
    with pytest.raises(exc, match=match):
        ss.survey_design(ddf, **kw)


def test_bad_input_same_errors(strat, twostage):
    ddf, pdf = frame_of(strat, "interleaved")
    _raises_like_memory(pdf, ddf, "strata column.*'nope'.*not found", strata="nope")
    bad = strat.assign(w=1.0)
    bad.loc[5, "w"] = np.nan
    ddf, pdf = frame_of(bad, "split")
    _raises_like_memory(pdf, ddf, "weights 'w': 1 value", strata="agency_id", weights="w")
    with pytest.raises(SatsampleError, match="partition 0: weights 'w'"):
        ss.survey_design(ddf, strata="agency_id", weights="w")
    neg = strat.assign(w=1.0)
    neg.loc[700, "w"] = -1.0
    ddf, pdf = frame_of(neg, "split")
    _raises_like_memory(pdf, ddf, "negative", strata="agency_id", weights="w")
    zero = strat.assign(w=1.0)
    zero.loc[3, "w"] = 0.0
    ddf, pdf = frame_of(zero, "empty")
    _raises_like_memory(pdf, ddf, "are zero", strata="agency_id", weights="w")
    fpc = strat.copy()
    fpc.loc[0, "N_h"] = fpc.loc[0, "N_h"] + 1
    ddf, pdf = frame_of(fpc, "interleaved")
    _raises_like_memory(pdf, ddf, "varies within stratum", DesignError, strata="agency_id",
                        fpc="N_h")
    # clusters not nested, lonely PSU
    ddf, pdf = frame_of(twostage, "interleaved")
    _raises_like_memory(pdf, ddf, "not nested", DesignError, ids="commune_id", strata="sex",
                        weights="design_weight")
    lonely = load_data("sample_twostage_lonely")
    ddf, pdf = frame_of(lonely, "split")
    _raises_like_memory(pdf, ddf, "has only one PSU", DesignError, ids="commune_id",
                        strata="district_id", weights="design_weight")
    ag = sorted(strat["agency_id"].unique())
    one = pd.concat([strat[strat["agency_id"] == ag[0]], strat[strat["agency_id"] == ag[1]].head(1)])
    ddf, pdf = frame_of(one, "split")
    _raises_like_memory(pdf, ddf, "has only one PSU", DesignError, strata="agency_id",
                        fpc="N_h")


# ------------------------------------------------------------ weight columns
def test_with_weight_factors(strat):
    ddf, pdf = frame_of(strat, "empty")
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    mem = ss.survey_design(pdf, strata="agency_id", fpc="N_h")
    fac = np.where(pdf["sex"].to_numpy() == pdf["sex"].iloc[0], 1.5, 0.5)
    sex0 = pdf["sex"].iloc[0]

    def factors(part):
        return np.where(part.data["sex"].to_numpy() == sex0, 1.5, 0.5)

    step = WeightStep(method="test", params=(("what", "factors"),))
    d2 = with_weight_factors(d, factors, step=step)
    assert d2.history[-1].method == "test" and len(d.history) == 1
    ref = WeightStep.from_weights("test", mem.weights * fac)
    assert d2.history[-1].n_rows == ref.n_rows
    np.testing.assert_allclose(
        [d2.history[-1].weight_sum, d2.history[-1].kish_deff, d2.history[-1].weight_max],
        [ref.weight_sum, ref.kish_deff, ref.weight_max], rtol=1e-12)
    got = reduce(d2, lambda p: [(p.data["__satsample_row__"].to_numpy(), p.weights,
                                 p.design_weights)], combine=lambda a, b: (a or []) + (b or []))
    rows = np.concatenate([g[0] for g in got])
    w = np.empty(mem.n)
    w[rows] = np.concatenate([g[1] for g in got])
    np.testing.assert_array_equal(w, mem.weights * fac)
    dw = np.empty(mem.n)
    dw[rows] = np.concatenate([g[2] for g in got])
    np.testing.assert_array_equal(dw, mem.weights)

    def negative(part):
        return -np.ones(part.n)

    with pytest.raises(SatsampleError, match=r"partition \d: weights .* negative"):
        with_weight_factors(d, negative, step=step)


# ======================================================= estimators: memory and R
S_ITEMS = [f"s{i:02d}" for i in range(1, 23)]
NUMERIC = ("estimate", "se", "ci_low", "ci_high", "df", "deff", "n")


def same_table(a: pd.DataFrame, b: pd.DataFrame, *, rtol: float = 1e-12, exact: bool = False):
    """Equal labels, counts and df; numbers to ``rtol`` relative (bit for bit with ``exact``)."""
    assert list(a.columns) == list(b.columns)
    labels = [c for c in a.columns if c not in NUMERIC]
    pd.testing.assert_frame_equal(a[labels], b[labels])
    for col in [c for c in NUMERIC if c in a.columns]:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=col)
        if exact or col in ("n", "df"):
            np.testing.assert_array_equal(x, y, err_msg=col)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=col)


def same_index(a, b, **kw):
    for level in ("overall", "elements", "items"):
        same_table(getattr(a, level), getattr(b, level), **kw)
    assert a.empty_cells == b.empty_cells and a.excluded == b.excluded
    assert dict(a.design_summary) == dict(b.design_summary)
    if b.replicate_estimates is not None:
        for key, arr in b.replicate_estimates.items():
            np.testing.assert_allclose(a.replicate_estimates[key], arr, rtol=kw.get("rtol", 1e-12))


def same_estimate(a, b, **kw):
    same_table(a.table, b.table, **kw)
    assert (a.excluded, a.empty_cells, a.n_cells_possible) == (
        b.excluded, b.empty_cells, b.n_cells_possible)
    assert dict(a.design_summary) == dict(b.design_summary)
    expected = {k: v for k, v in b.options.items() if k != "replay"}
    got = {k: v for k, v in a.options.items() if k not in ("replay", "engine", "partitions",
                                                            "shuffled")}
    assert got == expected
    assert a.options["engine"] == "dask"


def both(pdf, layout, **kw):
    """The Dask design of ``pdf`` cut by ``layout`` and the in-memory design of the same rows."""
    return _both(pdf, layout, **kw)


@pytest.fixture(scope="module")
def case_a():
    from conftest import load_case

    return load_case("A_stratified_srs")["results"]


@pytest.mark.parametrize("layout", ["split", "interleaved", "empty"])
def test_case_a_index_by_strata_is_bit_identical(designs_a, layout, reference_questionnaire,
                                                 case_a):
    d, mem = designs_a[layout]
    res = ss.satisfaction_index(d, reference_questionnaire, by="agency_id")
    ref = ss.satisfaction_index(mem, reference_questionnaire, by="agency_id")
    same_index(res, ref, exact=True)  # domains = strata, whole strata per partition
    assert res.options["engine"] == "dask" and res.options["shuffled"]
    for rec in case_a["by"]["agency_id"]["index"][:5]:
        ov = res.overall[res.overall["agency_id"] == rec["domain"]].iloc[0]
        np.testing.assert_allclose([ov["estimate"], ov["se"]], [rec["index"], rec["index_se"]],
                                   rtol=1e-10)


def test_case_a(designs_a, case_a, reference_questionnaire):
    d, mem = designs_a["split"]
    assert d.degf == case_a["degf"] == 689
    est = ss.proportion(d, S_ITEMS, na="drop")
    same_estimate(est, ss.proportion(mem, S_ITEMS, na="drop"))
    r = pd.DataFrame(case_a["items"])
    np.testing.assert_allclose(est.table["estimate"], r["estimate"], rtol=1e-10)
    np.testing.assert_allclose(est.table["se"], r["se"], rtol=1e-10)
    assert est.table["df"].iloc[0] == 670
    res = ss.satisfaction_index(d, reference_questionnaire)
    same_index(res, ss.satisfaction_index(mem, reference_questionnaire))
    np.testing.assert_allclose([res.overall["estimate"].iloc[0], res.overall["se"].iloc[0]],
                               [case_a["index"]["index"], case_a["index"]["index_se"]],
                               rtol=1e-10)
    by = ss.mean(d, S_ITEMS, by="channel", na="drop")
    same_estimate(by, ss.mean(mem, S_ITEMS, by="channel", na="drop"))
    cells = ss.proportion(d, "s01", by=["agency_id", "channel"], na="drop")
    same_estimate(cells, ss.proportion(mem, "s01", by=["agency_id", "channel"], na="drop"))
    assert (len(cells.table), cells.n_cells_possible, cells.empty_cells) == (65, 84, 19)
    assert cells.excluded == {"'s01' missing (na='drop')": 717 - 698}
    tot = ss.total(d, ["n01", "d01", "n20", "d20"])
    same_estimate(tot, ss.total(mem, ["n01", "d01", "n20", "d20"]))
    t = tot.table.set_index("variable")
    for c in ("n01", "d01", "n20", "d20"):
        np.testing.assert_allclose([t.loc[c, "estimate"], t.loc[c, "se"]],
                                   [case_a["totals"]["estimate"][c], case_a["totals"]["se"][c]],
                                   rtol=1e-10)


def test_case_a_ratio_and_interval_methods(designs_a):
    d, mem = designs_a["interleaved"]
    same_estimate(ss.ratio(d, ["n01", "n02"], "d01", by="sex"),
                  ss.ratio(mem, ["n01", "n02"], "d01", by="sex"))
    for method in ("logit", "beta", "wilson"):
        same_estimate(ss.proportion(d, ["s01", "s05"], by="agency_level", na="drop",
                                    ci_method=method, level=0.9),
                      ss.proportion(mem, ["s01", "s05"], by="agency_level", na="drop",
                                    ci_method=method, level=0.9))
    with pytest.raises(SatsampleError, match=r"likelihood.*not available on a Dask design"):
        ss.proportion(d, "s01", na="drop", ci_method="likelihood")


# ------------------------------------------------------------------- case B
B_DESIGNS = {
    "two_stage_fpc": dict(ids=["commune_id", "user_id"], strata="district_id",
                          fpc=["M_h", "N_hi"]),
    "first_stage_only_fpc": dict(ids="commune_id", strata="district_id", fpc="M_h",
                                 weights="design_weight"),
    "with_replacement": dict(ids="commune_id", strata="district_id", weights="design_weight"),
}


@pytest.mark.parametrize("variant", list(B_DESIGNS))
def test_case_b(variant, reference_questionnaire):
    from conftest import load_case

    case = load_case("B_two_stage")["variants"][variant]
    data = add_indicator_columns(load_data("sample_twostage"))
    d, mem = both(data, "interleaved", **B_DESIGNS[variant])
    res = ss.satisfaction_index(d, reference_questionnaire, by="district_id")
    same_index(res, ss.satisfaction_index(mem, reference_questionnaire, by="district_id"))
    for rec in case["by_district_index"]:
        ov = res.overall[res.overall["district_id"] == rec["domain"]].iloc[0]
        np.testing.assert_allclose([ov["estimate"], ov["se"]], [rec["index"], rec["index_se"]],
                                   rtol=1e-10)
    tot = ss.total(d, ["n01", "d01"])
    same_estimate(tot, ss.total(mem, ["n01", "d01"]))
    np.testing.assert_allclose(tot.table["se"], [case["totals"]["se"][c] for c in ("n01", "d01")],
                               rtol=1e-10)


@pytest.mark.parametrize("rule", ["adjust", "average", "remove"])  # "certainty": as "remove"
def test_case_b_lonely(rule, reference_questionnaire):
    from conftest import load_case

    case = load_case("B_two_stage_lonely_psu")["results"][rule]
    data = add_indicator_columns(load_data("sample_twostage_lonely"))
    d, mem = both(data, "split", ids=["commune_id", "user_id"], strata="district_id",
                  fpc=["M_h", "N_hi"], lonely_psu=rule)
    if rule == "average":  # per-domain strata counts of the "average" rule
        same_estimate(ss.proportion(d, S_ITEMS, na="drop", by="sex"),
                      ss.proportion(mem, S_ITEMS, na="drop", by="sex"))
    res = ss.satisfaction_index(d, reference_questionnaire)
    same_index(res, ss.satisfaction_index(mem, reference_questionnaire))
    np.testing.assert_allclose([res.overall["estimate"].iloc[0], res.overall["se"].iloc[0]],
                               [case["index"]["index"], case["index"]["index_se"]], rtol=1e-10)
    v = ss.total(d, ["n01", "d01"], by="sex").vcov()
    np.testing.assert_allclose(v, ss.total(mem, ["n01", "d01"], by="sex").vcov(), rtol=1e-12)
    if rule in ("adjust", "average"):  # the jackknife's lonely-PSU replicates and scale
        from satsample._validation import SatsampleWarning

        with pytest.warns(SatsampleWarning, match="after the first stage"):
            dj, mj = ss.jackknife(d), ss.jackknife(mem, materialize=False)
        assert (dj.replicates.n_replicates, dj.replicates.scale) == (
            mj.replicates.n_replicates, mj.replicates.scale)
        same_estimate(ss.total(dj, ["n01", "d01"], by="sex"),
                      ss.total(mj, ["n01", "d01"], by="sex"))
        same_index(ss.satisfaction_index(dj, reference_questionnaire),
                   ss.satisfaction_index(mj, reference_questionnaire))


def test_case_b_lonely_fail():
    ddf, _rows = frame_of(load_data("sample_twostage_lonely"), "interleaved")
    with pytest.raises(DesignError, match=r"Stratum \(DIS04\) has only one PSU at stage 1"):
        ss.survey_design(ddf, ids=["commune_id", "user_id"], strata="district_id",
                         fpc=["M_h", "N_hi"])


# ------------------------------------------------------------------- case D
@pytest.fixture(scope="module")
def case_d():
    from conftest import load_case

    return load_case("D_replicate_weights")["results"]


@pytest.mark.parametrize("key", ["JKn", "JKn_mse"])
def test_case_d_jkn(designs_a, case_d, key, reference_questionnaire):
    ref = case_d[key]
    d, mem = designs_a["empty"]
    dj = ss.jackknife(d, mse=ref["mse"])
    mj = ss.jackknife(mem, mse=ref["mse"], materialize=False)
    assert dj.replicates.n_replicates == 717 and dj.degf == 689
    np.testing.assert_array_equal(dj.replicates.rscales, mj.replicates.rscales)
    one = ss.satisfaction_index(dj, reference_questionnaire)
    same_index(one, ss.satisfaction_index(mj, reference_questionnaire))
    assert one.options["replicate_estimates"].startswith("not stored")
    np.testing.assert_allclose(one.overall["se"].iloc[0], ref["index"]["index_se"], rtol=1e-10)
    np.testing.assert_allclose(one.items["se"], pd.DataFrame(ref["items"])["se"], rtol=1e-10)
    if key == "JKn":
        res = ss.satisfaction_index(dj, reference_questionnaire, by="agency_level")
        same_index(res, ss.satisfaction_index(mj, reference_questionnaire, by="agency_level"))
        # replicate totals (not a ratio): every partition adds its totals of all 717 replicates
        same_estimate(ss.total(dj, ["n01", "d01"], by="sex"),
                      ss.total(mj, ["n01", "d01"], by="sex"))


def test_case_d_jk1(designs_a, strat, case_d, reference_questionnaire):
    one = strat[strat["agency_id"] == case_d["JK1"].get("agency", "PRV02")].reset_index(drop=True)
    d, mem = both(one, "split", fpc="N_h")
    assert d.shuffled and d.n_strata == 1  # no strata: every row in one partition
    for key in ("JK1", "JK1_mse"):
        ref = case_d[key]
        dj = ss.jackknife(d, kind="JK1", mse=ref["mse"])
        assert dj.replicates.n_replicates == 40 and dj.degf == 39
        res = ss.satisfaction_index(dj, reference_questionnaire)
        same_index(res, ss.satisfaction_index(
            ss.jackknife(mem, kind="JK1", mse=ref["mse"], materialize=False),
            reference_questionnaire))
        np.testing.assert_allclose(res.overall["se"].iloc[0], ref["index"]["index_se"],
                                   rtol=1e-10)
    with pytest.raises(DesignError, match="JK1"):
        ss.jackknife(designs_a["split"][0], kind="JK1")


def test_case_d_two_stage_jkn(case_d, reference_questionnaire):
    from satsample._validation import SatsampleWarning

    ref = case_d["JKn_two_stage"]
    data = add_indicator_columns(load_data("sample_twostage"))
    d, _mem = both(data, "empty", ids=["commune_id", "user_id"], strata="district_id",
                  fpc=["M_h", "N_hi"])
    with pytest.warns(SatsampleWarning, match="after the first stage are dropped"):
        dj = ss.jackknife(d)
    assert dj.replicates.n_replicates == 6 and dj.degf == 3
    res = ss.satisfaction_index(dj, reference_questionnaire)
    np.testing.assert_allclose(res.overall["se"].iloc[0], ref["index"]["index_se"], rtol=1e-10)


def test_raowu_lazy_equals_memory(designs_a, reference_questionnaire):
    d, mem = designs_a["interleaved"]
    db = ss.bootstrap(d, n_replicates=30, rng=11)
    mb = ss.bootstrap(mem, n_replicates=30, rng=11, materialize=False)
    assert db.replicates.degf == mb.replicates.degf and db.replicates.seed == mb.replicates.seed
    res = ss.satisfaction_index(db, reference_questionnaire, by="agency_id")
    same_index(res, ss.satisfaction_index(mb, reference_questionnaire, by="agency_id"), exact=True)
    same_estimate(ss.total(db, "n01", by="channel"), ss.total(mb, "n01", by="channel"))
    v = ss.mean(db, ["s01", "s02"], by="sex", na="drop").vcov()
    np.testing.assert_allclose(v, ss.mean(mb, ["s01", "s02"], by="sex", na="drop").vcov(),
                               rtol=1e-12)
    with pytest.raises(SatsampleError, match="kind='subbootstrap'"):
        ss.bootstrap(d, n_replicates=30, kind="bootstrap", rng=1)


# ------------------------------------------------------------------- case G
def test_case_g_continuous_and_covariance(strat):
    from conftest import load_case

    case = load_case("G_quantiles_contrasts")["results"]
    data = strat.merge(load_data("extra_strat"), on="user_id", how="left", validate="1:1")
    keep = data["s01"].notna() & data["s02"].notna()
    data.loc[~keep, ["s01", "s02"]] = np.nan
    d, mem = both(data, "split", strata="agency_id", fpc="N_h")
    est = ss.mean(d, ["s01", "s02"], by="sex", na="drop")
    ref = ss.mean(mem, ["s01", "s02"], by="sex", na="drop")
    same_estimate(est, ref)
    cov = case["domain_covariance"]
    np.testing.assert_allclose(est.vcov().loc[cov["labels"], cov["labels"]].to_numpy(),
                               np.array(cov["vcov"]), rtol=1e-10)
    c = ss.contrast(est, case["contrast_linear"]["weights"])
    np.testing.assert_allclose(c.table["se"], ss.contrast(ref, case["contrast_linear"]["weights"])
                               .table["se"], rtol=1e-12)
    cont = [c for c in data.columns if c not in strat.columns and c != "user_id"
            and pd.api.types.is_numeric_dtype(data[c])]
    same_estimate(ss.mean(d, cont, na="drop"), ss.mean(mem, cont, na="drop"))
    same_estimate(ss.total(d, cont, na="drop", by="agency_level"),
                  ss.total(mem, cont, na="drop", by="agency_level"))
    with pytest.raises(SatsampleError, match="quantile is not available on a Dask design"):
        ss.quantile(d, "s01", probs=0.5)


# ------------------------------------------------------ calibration residuals
def test_calibration_residuals_plug_in(designs_a, reference_questionnaire):
    """A weighting step built on the skeleton (post-stratification) with a Dask residualizer.

    The residualizer follows the protocol of :mod:`satsample.distributed.estimators`
    (``cross`` per partition, summed, then ``residualize``); the Taylor SEs then
    equal those of the in-memory ``poststratify`` (R's rule: scores centred at
    their cell means under the pre-step weights, times the new weights).
    """
    d, mem = designs_a["interleaved"]
    pop = pd.DataFrame({"sex": ["F", "M"], "Freq": [6000.0, 5000.0]})
    levels = pd.Index(["F", "M"])

    class PostStratResiduals:  # local: pickled by value for the workers
        def __init__(self, den):
            self.den = den

        def cross(self, part, x):
            cells = levels.get_indexer(part.data["sex"])
            ratio = part.design_weights / part.weights
            out = np.zeros((levels.size, x.shape[1]))
            np.add.at(out, cells, x * ratio[:, None])
            return out

        def residualize(self, part, x, total):
            cells = levels.get_indexer(part.data["sex"])
            means = total / self.den[:, None]
            return x - means[cells] * part.weights[:, None]

    def cell_sums(part):
        return np.bincount(levels.get_indexer(part.data["sex"]), weights=part.weights,
                           minlength=levels.size)

    den = reduce(d, cell_sums)
    factor = pop["Freq"].to_numpy() / den

    def factors(part):
        return factor[levels.get_indexer(part.data["sex"])]

    dp = with_weight_factors(d, factors, step=WeightStep(method="poststratify"),
                             calibration=PostStratResiduals(den))
    mp = ss.poststratify(mem, "sex", pop)
    assert dp.history[-1].n_rows == mp.history[-1].n_rows
    np.testing.assert_allclose(dp.history[-1].weight_sum, mp.history[-1].weight_sum, rtol=1e-12)
    same_estimate(ss.total(dp, ["n01", "d01"], by="agency_level"),
                  ss.total(mp, ["n01", "d01"], by="agency_level"))
    res = ss.satisfaction_index(dp, reference_questionnaire)
    same_index(res, ss.satisfaction_index(mp, reference_questionnaire))
    assert res.options["calibrated"] is True
    np.testing.assert_allclose(ss.mean(dp, ["s01", "s02"], by="sex", na="drop").vcov(),
                               ss.mean(mp, ["s01", "s02"], by="sex", na="drop").vcov(),
                               rtol=1e-12, atol=1e-20)


# --------------------------------------------------------------- bad input
def test_estimators_bad_input_same_errors(designs_a, reference_questionnaire):
    d, mem = designs_a["split"]
    for design in (mem, d):
        with pytest.raises(SatsampleError, match=r"y column\(s\) 'nope' not found"):
            ss.mean(design, "nope")
        with pytest.raises(SatsampleError, match=r"'s01': \d+ row"):
            ss.mean(design, "s01")  # missing values, na="error"
        with pytest.raises(SatsampleError, match=r"column 'N_h' has .* other than 0/1"):
            ss.proportion(design, "N_h")
        with pytest.raises(SatsampleError, match=r"domain \(by\) column\(s\) 'zz' not found"):
            ss.total(design, "n01", by="zz")
        with pytest.raises(SatsampleError, match="no replicate weights"):
            ss.total(design, "n01", variance="replicate")
    with pytest.raises(SatsampleError, match=r"partition \d: .*'s01'"):
        ss.mean(d, "s01")
    with pytest.raises(SatsampleError, match="with_replicates is not available on a Dask"):
        ss.with_replicates(ss.jackknife(d), lambda w, data: {"x": 1.0})
    with pytest.raises(SatsampleError, match=r"brr\(\) is not available on a Dask design"):
        ss.brr(d)
    # replicates replaying a weighting step: their totals need the steps' replay on Dask
    booted = ss.bootstrap(d, n_replicates=5, rng=1)
    with pytest.raises(DesignError, match="must give replicate_step"):
        with_weight_factors(booted, lambda p: np.ones(p.n), step=WeightStep(method="x"))
    stepped = with_weight_factors(booted, lambda p: np.ones(p.n), step=WeightStep(method="x"),
                                  replicate_step=object())
    with pytest.raises(SatsampleError, match="replay weighting steps is not available yet"):
        ss.total(stepped, "n01")


def test_inputs_not_modified(strat):
    ddf, _rows = frame_of(strat, "interleaved")
    seen = ddf.compute()
    before = strat.copy()
    d = ss.survey_design(ddf, strata="agency_id", fpc="N_h")
    ss.total(d, "n01", by="sex")
    pd.testing.assert_frame_equal(ddf.compute(), seen)
    assert list(ddf.columns) == list(strat.columns)
    pd.testing.assert_frame_equal(strat, before)


@pytest.mark.parametrize("kind", ["jkn", "bootstrap"])
def test_case_d_declared_columns(strat, case_d, kind, reference_questionnaire):
    """R's replicate weights (case D, small design) declared as columns of the Dask frame."""
    from conftest import load_case_csv

    small = case_d["small"]
    conf = small[kind]
    data = strat[strat["agency_id"].isin(small["agencies"])].reset_index(drop=True)
    rw = load_case_csv(f"D_small_repweights_{kind}")
    cols = [c for c in rw.columns if c.startswith("r") and c[1:].isdigit()]
    data = pd.concat([data, rw[cols].add_prefix("rep_")], axis=1)
    names = [f"rep_{c}" for c in cols]
    d, mem = both(data, "interleaved", strata="agency_id", fpc="N_h")
    for mse in ((False, True) if kind == "jkn" else (False,)):
        kw = dict(kind={"jkn": "JKn"}.get(kind, kind), scale=conf["scale"],
                  rscales=conf["rscales"], mse=mse, combined_weights=False)
        dd_ = ss.declare_replicates(d, names, **kw)
        md = ss.declare_replicates(mem, names, **kw)
        assert dd_.replicates.degf == md.replicates.degf
        res = ss.satisfaction_index(dd_, reference_questionnaire)
        same_index(res, ss.satisfaction_index(md, reference_questionnaire))
        ref = conf[f"index_mse_{'true' if mse else 'false'}"]
        np.testing.assert_allclose(res.overall["se"].iloc[0], ref["index_se"], rtol=1e-10)
    same_estimate(ss.mean(dd_, S_ITEMS, na="drop"), ss.mean(md, S_ITEMS, na="drop"))
    if kind != "jkn":
        return
    bad = data.copy()
    bad.loc[3, names[1]] = -1.0
    dbad, _m = both(bad, "split", strata="agency_id", fpc="N_h")
    with pytest.raises(SatsampleError, match=rf"partition \d: replicate weights '{names[1]}'"):
        ss.declare_replicates(dbad, names, kind="bootstrap")


def test_docstring_examples_run():
    import doctest

    import satsample.distributed._reduce as reduce_module
    import satsample.distributed.design as design_module

    for module in (reduce_module, design_module):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
