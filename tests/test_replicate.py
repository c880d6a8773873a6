"""Replicate designs: case D of ../shared/reference and exact identities (BRR = Taylor WR)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ITEMS, add_indicator_columns, assert_rel, load_case, load_case_csv, load_data

from satsample._validation import DesignError, SatsampleError, SatsampleWarning
from satsample.design import survey_design
from satsample.estimation import mean, proportion, ratio, satisfaction_index, total
from satsample.replicate import bootstrap, brr, declare_replicates, jackknife

S_ITEMS = [f"s{i[1:]}" for i in ITEMS]


@pytest.fixture(scope="module")
def case_d():
    return load_case("D_replicate_weights")["results"]


@pytest.fixture(scope="module")
def design_a():
    return survey_design(add_indicator_columns(load_data("sample_strat")), strata="agency_id", fpc="N_h")


def _check(design, items_ref, index_ref, questionnaire, *, rtol=1e-10):
    est = mean(design, S_ITEMS, na="drop").table
    r = pd.DataFrame(items_ref)
    assert_rel(est["estimate"], r["estimate"], rtol=1e-10)
    assert_rel(est["se"], r["se"], rtol=rtol)
    res = satisfaction_index(design, questionnaire)
    assert_rel(res.overall["estimate"].iloc[0], index_ref["index"])
    assert_rel(res.overall["se"].iloc[0], index_ref["index_se"], rtol=rtol)
    el = res.elements.set_index("element")
    for e in ("E1", "E2", "E3", "E4", "E5"):
        assert_rel(el.loc[e, "se"], index_ref[f"{e}_se"], rtol=rtol, what=e)
    return est, res


@pytest.mark.reference
@pytest.mark.parametrize("key", ["JKn", "JKn_mse"])
def test_jkn(design_a, case_d, key, reference_questionnaire):
    ref = case_d[key]
    d = jackknife(design_a, mse=ref["mse"])
    reps = d.replicates
    assert reps.n_replicates == ref["n_replicates"] == 717
    assert d.degf == ref["degf"] == 689
    assert reps.scale == ref["scale"]
    assert_rel(np.unique(np.round(reps.rscales, 12)), np.unique(np.round(ref["rscales_unique"], 12)))
    est, res = _check(d, ref["items"], ref["index"], reference_questionnaire)
    assert est["df"].eq(689).all()
    assert res.options["variance"] == "replicate" and res.options["replicate_kind"] == "JKn"
    assert res.replicate_estimates["overall"].shape == (717, 1)
    if key == "JKn":
        by = mean(d, S_ITEMS, by="agency_level", na="drop").table
        r = pd.DataFrame(ref["by_agency_level"])
        r["variable"] = "s" + r["item"].str[1:]
        m = r.merge(by, left_on=["domain", "variable"], right_on=["agency_level", "variable"],
                    suffixes=("_r", ""))
        assert len(m) == 66
        assert_rel(m["se"], m["se_r"])
    assert design_a.replicates is None  # input unchanged


@pytest.mark.reference
@pytest.mark.parametrize("key", ["JK1", "JK1_mse"])
def test_jk1(case_d, key, reference_questionnaire):
    ref = case_d[key]
    data = add_indicator_columns(load_data("sample_strat"))
    d = jackknife(survey_design(data[data["agency_id"] == ref.get("agency", "PRV02")], fpc="N_h"),
                  kind="JK1", mse=ref["mse"])
    assert d.replicates.n_replicates == 40 and d.degf == ref["degf"] == 39
    assert_rel(d.replicates.scale, ref["scale"])
    _check(d, ref["items"], ref["index"], reference_questionnaire)


@pytest.mark.reference
def test_jkn_two_stage(case_d, reference_questionnaire):
    ref = case_d["JKn_two_stage"]
    data = add_indicator_columns(load_data("sample_twostage"))
    design = survey_design(data, ids=["commune_id", "user_id"], strata="district_id", fpc=["M_h", "N_hi"])
    with pytest.warns(SatsampleWarning, match="after the first stage are dropped"):
        d = jackknife(design)
    assert d.replicates.n_replicates == ref["n_replicates"] == 6
    assert d.degf == ref["degf"] == 3
    _check(d, ref["items"], ref["index"], reference_questionnaire)


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["jkn", "subbootstrap", "bootstrap"])
@pytest.mark.parametrize("mse", [False, True])
def test_small_declared(case_d, kind, mse, reference_questionnaire):
    small = case_d["small"]
    conf = small[kind]
    data = add_indicator_columns(load_data("sample_strat"))
    data = data[data["agency_id"].isin(small["agencies"])].reset_index(drop=True)
    design = survey_design(data, strata="agency_id", fpc="N_h")
    rw = load_case_csv(f"D_small_repweights_{kind}")
    assert (rw["user_id"].to_numpy() == data["user_id"].to_numpy()).all()
    cols = [c for c in rw.columns if c.startswith("r") and c[1:].isdigit()]
    assert len(cols) == conf["n_replicates"]
    d = declare_replicates(design, rw[cols], kind={"jkn": "JKn"}.get(kind, kind), scale=conf["scale"],
                           rscales=conf["rscales"], mse=mse, combined_weights=False)
    tag = "true" if mse else "false"
    _check(d, conf[f"items_mse_{tag}"], conf[f"index_mse_{tag}"], reference_questionnaire)
    # the same as analysis weights (combined_weights=True)
    analysis = rw[cols].to_numpy() * data["design_weight"].to_numpy()[:, None]
    d2 = declare_replicates(design, analysis, kind={"jkn": "JKn"}.get(kind, kind), scale=conf["scale"],
                            rscales=conf["rscales"], mse=mse)
    assert_rel(d2.replicates.weights, d.replicates.weights, rtol=1e-14)


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["subbootstrap", "bootstrap"])
def test_bootstrap_monte_carlo(design_a, case_d, kind, reference_questionnaire):
    ref = case_d[kind]
    n_rep = ref["n_replicates"]
    d = bootstrap(design_a, n_replicates=n_rep, kind=kind, rng=20240612)
    assert d.degf == ref["degf"] == 499
    assert_rel(d.replicates.scale, ref["scale"], rtol=1e-12)
    mc = ref["mc_reference"]
    bound = 4 / np.sqrt(2 * (n_rep - 1))
    est = mean(d, S_ITEMS, na="drop").table
    ratio = est["se"].to_numpy() / pd.DataFrame(mc["items"])["se"].to_numpy()
    assert np.all(np.abs(ratio - 1) < bound), ratio
    res = satisfaction_index(d, reference_questionnaire)
    assert abs(res.overall["se"].iloc[0] / mc["index"]["index_se"] - 1) < bound
    # reproducible for a given seed, different for another
    d_same = bootstrap(design_a, n_replicates=20, kind=kind, rng=5)
    d_again = bootstrap(design_a, n_replicates=20, kind=kind, rng=5)
    np.testing.assert_array_equal(d_same.replicates.weights, d_again.replicates.weights)


def test_subbootstrap_multipliers_structure(design_a):
    d = bootstrap(design_a, n_replicates=30, kind="subbootstrap", rng=1)
    mult = d.replicates.weights / design_a.weights[None, :]
    n_h = pd.Series(design_a.strata).map(pd.Series(design_a.strata).value_counts()).to_numpy()
    counts = mult * (n_h - 1) / n_h
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    # n_h - 1 draws per stratum and replicate
    per = pd.DataFrame(counts.T).groupby(design_a.strata).sum()
    np.testing.assert_allclose(per.to_numpy(), np.repeat((np.bincount(design_a.strata) - 1)[:, None], 30, axis=1))


def test_canty_davison_multipliers(design_a):
    d = bootstrap(design_a, n_replicates=30, kind="bootstrap", rng=2)
    mult = d.replicates.weights / design_a.weights[None, :]
    np.testing.assert_allclose(mult, np.round(mult), atol=1e-12)
    per = pd.DataFrame(mult.T).groupby(design_a.strata).sum().to_numpy()
    np.testing.assert_allclose(per, np.repeat(np.bincount(design_a.strata)[:, None], 30, axis=1))


def _paired_design():
    rng = np.random.default_rng(3)
    n = 60
    data = pd.DataFrame({
        "stratum": np.repeat(np.arange(6), 10),
        "psu": np.repeat(np.arange(12), 5),
        "w": rng.uniform(1, 4, n),
        "y": rng.normal(10, 3, n),
    })
    return survey_design(data, ids="psu", strata="stratum", weights="w")


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_brr_equals_taylor_with_replacement(rho):
    """For totals, fully orthogonal BRR/Fay = stratified with-replacement Taylor variance."""
    design = _paired_design()
    d = brr(design, fay_rho=rho)
    assert d.replicates.kind == ("BRR" if rho == 0 else "Fay")
    assert d.replicates.n_replicates == 8 and d.degf == 6
    rep = total(d, "y").table
    tay = total(design, "y").table
    assert_rel(rep["se"], tay["se"], rtol=1e-12)
    assert_rel(rep["estimate"], tay["estimate"], rtol=1e-14)


def test_brr_needs_two_psus(design_a):
    with pytest.raises(DesignError, match="exactly 2 PSUs per stratum"):
        brr(design_a)


def test_jk1_refuses_strata(design_a):
    with pytest.raises(DesignError, match="kind='JKn'"):
        jackknife(design_a, kind="JK1")


def test_lonely_psu_rules_for_jkn():
    data = add_indicator_columns(load_data("sample_twostage_lonely"))
    base = dict(ids="commune_id", strata="district_id", weights="design_weight")
    adj = jackknife(survey_design(data, **base, lonely_psu="adjust"))
    rem = jackknife(survey_design(data, **base, lonely_psu="remove"))
    avg = jackknife(survey_design(data, **base, lonely_psu="average"))
    assert adj.replicates.n_replicates == rem.replicates.n_replicates + 1
    n_psu = rem.n_psu
    assert_rel(avg.replicates.scale, n_psu / rem.replicates.n_replicates)
    h = rem.n_strata
    assert_rel(adj.replicates.rscales[-1], (h - 1) / h)


def test_declare_replicates_errors(design_a):
    w = np.tile(design_a.weights[:, None], (1, 4))
    with pytest.raises(SatsampleError, match="scale= is required"):
        declare_replicates(design_a, w, kind="JK1")
    with pytest.raises(SatsampleError, match="rscales"):
        declare_replicates(design_a, w, kind="JKn")
    bad = w.copy()
    bad[3, 2] = np.nan
    with pytest.raises(SatsampleError, match=r"'replicate 3': 1 value\(s\) are missing"):
        declare_replicates(design_a, bad, kind="bootstrap")
    with pytest.raises(SatsampleError, match="rows"):
        declare_replicates(design_a, w[:10], kind="bootstrap")
    d = declare_replicates(design_a, w, kind="BRR")
    assert d.replicates.scale == 0.25


def test_replicates_after_weighting_warn(design_a):
    from satsample.design import WeightStep

    w2 = design_a.with_weights(design_a.weights * 2, step=WeightStep.from_weights("trim", design_a.weights * 2))
    with pytest.warns(SatsampleWarning, match="not replayed"):
        jackknife(w2)


# ----------------------------------------------------------------- lazy jackknife (closed form)
def _same(a, b, rtol=1e-10):
    for c in ("estimate", "se", "ci_low", "ci_high", "df", "deff", "n"):
        assert_rel(a[c], b[c], rtol=rtol, what=c)


@pytest.mark.reference
@pytest.mark.parametrize("key", ["JKn", "JKn_mse"])
def test_lazy_jackknife_equals_materialised_case_d(design_a, case_d, key, reference_questionnaire):
    """Element JKn (R = n = 717): closed form through the public estimators = stored replicates = R."""
    ref = case_d[key]
    mat = jackknife(design_a, mse=ref["mse"])
    lazy = jackknife(design_a, mse=ref["mse"], materialize=False)
    assert lazy.replicates.weights is None and lazy.replicates.kind == "JKn"
    assert lazy.replicates.n_replicates == mat.replicates.n_replicates == 717
    assert lazy.degf == mat.degf == 689
    est, res = _check(lazy, ref["items"], ref["index"], reference_questionnaire)
    assert est["df"].eq(689).all()
    assert res.replicate_estimates is None
    assert res.options["replicate_estimates"].startswith("not stored")
    res_m = satisfaction_index(mat, reference_questionnaire, by="agency_level")
    res_l = satisfaction_index(lazy, reference_questionnaire, by="agency_level")
    for lv in ("overall", "element", "item"):
        _same(res_l.to_frame(table=lv), res_m.to_frame(table=lv))
    assert res_m.options["replicate_estimates"] == "stored"
    for fn in (mean, proportion):
        a = fn(lazy, S_ITEMS, by="agency_level", na="drop")
        b = fn(mat, S_ITEMS, by="agency_level", na="drop")
        _same(a.table, b.table)
        assert a.replicate_estimates is None and b.replicate_estimates is not None
    a = ratio(lazy, ["n01", "n02"], ["d01", "d02"], by="agency_level").table
    b = ratio(mat, ["n01", "n02"], ["d01", "d02"], by="agency_level").table
    _same(a, b)
    # totals keep their replicate estimates (replicate totals of the lazy design)
    _same(total(lazy, "n01", by="agency_level").table, total(mat, "n01", by="agency_level").table)


@pytest.mark.reference
@pytest.mark.parametrize("key", ["JK1", "JK1_mse"])
def test_lazy_jk1_equals_reference(case_d, key, reference_questionnaire):
    ref = case_d[key]
    data = add_indicator_columns(load_data("sample_strat"))
    design = survey_design(data[data["agency_id"] == ref.get("agency", "PRV02")], fpc="N_h")
    lazy = jackknife(design, kind="JK1", mse=ref["mse"], materialize=False)
    assert lazy.replicates.n_replicates == 40 and lazy.degf == ref["degf"] == 39
    _check(lazy, ref["items"], ref["index"], reference_questionnaire)


@pytest.mark.reference
@pytest.mark.parametrize("mse", [False, True])
def test_lazy_jackknife_two_stage_certainty_stratum(case_d, reference_questionnaire, mse):
    """Case D's two-stage design has a stratum sampled with certainty: closed form = R."""
    ref = case_d["JKn_two_stage"]
    data = add_indicator_columns(load_data("sample_twostage"))
    design = survey_design(data, ids=["commune_id", "user_id"], strata="district_id",
                           fpc=["M_h", "N_hi"])
    with pytest.warns(SatsampleWarning, match="after the first stage"):
        lazy = jackknife(design, materialize=False, mse=mse)
    with pytest.warns(SatsampleWarning, match="after the first stage"):
        mat = jackknife(design, mse=mse)
    assert lazy.replicates.n_replicates == mat.replicates.n_replicates == ref["n_replicates"]
    assert lazy.degf == mat.degf == ref["degf"]
    assert_rel(lazy.replicates.rscales, mat.replicates.rscales, rtol=1e-15)
    if not mse:
        _check(lazy, ref["items"], ref["index"], reference_questionnaire)
    for lv in ("overall", "element", "item"):
        _same(satisfaction_index(lazy, reference_questionnaire).to_frame(table=lv),
              satisfaction_index(mat, reference_questionnaire).to_frame(table=lv))
    # without fpc: no certainty stratum
    design = survey_design(data, ids=["commune_id", "user_id"], strata="district_id",
                           weights="design_weight")
    lazy, mat = jackknife(design, materialize=False), jackknife(design)
    assert lazy.replicates.n_replicates == mat.replicates.n_replicates and lazy.degf == mat.degf
    for lv in ("overall", "element", "item"):
        _same(satisfaction_index(lazy, reference_questionnaire).to_frame(table=lv),
              satisfaction_index(mat, reference_questionnaire).to_frame(table=lv))


@pytest.mark.parametrize("rule", ["adjust", "average", "remove", "certainty"])
@pytest.mark.parametrize("mse", [False, True])
def test_lazy_jackknife_lonely_psu_rules(rule, mse, reference_questionnaire):
    """Every lonely-PSU rule: the closed form equals the stored replicates (case B_lonely data)."""
    data = add_indicator_columns(load_data("sample_twostage_lonely"))
    base = dict(ids="commune_id", strata="district_id", weights="design_weight")
    design = survey_design(data, **base, lonely_psu=rule)
    lazy, mat = jackknife(design, materialize=False, mse=mse), jackknife(design, mse=mse)
    for attr in ("n_replicates", "scale", "degf"):
        assert getattr(lazy.replicates, attr) == getattr(mat.replicates, attr), attr
    assert_rel(lazy.replicates.rscales, mat.replicates.rscales, rtol=1e-15)
    for by in (None, "sex"):
        for fn in (mean, proportion):
            a = fn(lazy, S_ITEMS, by=by, na="drop")
            b = fn(mat, S_ITEMS, by=by, na="drop")
            _same(a.table, b.table)
            assert a.replicate_estimates is None
        _same(total(lazy, "n01", by=by).table, total(mat, "n01", by=by).table)
        for lv in ("overall", "element", "item"):
            _same(satisfaction_index(lazy, reference_questionnaire, by=by).to_frame(table=lv),
                  satisfaction_index(mat, reference_questionnaire, by=by).to_frame(table=lv))
    with pytest.raises(DesignError, match="only one PSU"):
        jackknife(survey_design(data, **base), materialize=False)


def test_lazy_jackknife_certainty_stratum():
    strat = add_indicator_columns(load_data("sample_strat"))
    first = strat["agency_id"] == strat["agency_id"].iloc[0]
    strat.loc[first, "N_h"] = int(first.sum())
    design = survey_design(strat, strata="agency_id", fpc="N_h")
    lazy, mat = jackknife(design, materialize=False), jackknife(design)
    assert lazy.replicates.n_replicates == mat.replicates.n_replicates == 717 - int(first.sum())
    _same(mean(lazy, S_ITEMS, by="agency_level", na="drop").table,
          mean(mat, S_ITEMS, by="agency_level", na="drop").table)


def test_bootstrap_storage_is_bit_identical(design_a, reference_questionnaire):
    """materialize=True/False: the same rng gives the same replicate weights and SEs, bit for bit."""
    from satsample.variance.replicate import iter_replicate_weight_blocks

    a = bootstrap(design_a, n_replicates=40, rng=11)
    b = bootstrap(design_a, n_replicates=40, rng=11, materialize=False)
    assert b.replicates.weights is None and a.degf == b.degf
    np.testing.assert_array_equal(a.replicates.weights,
                                  np.vstack(list(iter_replicate_weight_blocks(b, block=7))))
    for fn in (mean, proportion, total):
        ta = fn(a, S_ITEMS[:4], by="agency_level", na="drop")
        tb = fn(b, S_ITEMS[:4], by="agency_level", na="drop")
        for c in ("estimate", "se", "ci_low", "ci_high", "df", "deff"):
            np.testing.assert_array_equal(ta.table[c], tb.table[c], err_msg=c)
        np.testing.assert_array_equal(ta.replicate_estimates, tb.replicate_estimates)
    for lv in ("overall", "element", "item"):
        np.testing.assert_array_equal(
            satisfaction_index(a, reference_questionnaire, by="sex").to_frame(lv)["se"],
            satisfaction_index(b, reference_questionnaire, by="sex").to_frame(lv)["se"])
    c = bootstrap(design_a, n_replicates=40, rng=12)
    assert not np.array_equal(c.replicates.weights, a.replicates.weights)



def test_rank_of_wide_multiplier_matrices_equals_the_full_computation():
    """The shortcut on 2R columns (exact by interlacing) gives the rank of the whole matrix,
    full or deficient, as the eigenvalues of the full Gram matrix do."""
    from satsample.replicate._common import matrix_rank

    rng = np.random.default_rng(12)

    def full(m):
        ev = np.linalg.eigvalsh(m @ m.T)
        return int(np.sum(ev > ev.max() * 1e-10))

    cases = [rng.poisson(1.0, size=(40, 400)).astype(float),   # full rank: the shortcut
             rng.multinomial(9, np.full(10, 0.1), size=(30, 50)).reshape(30, -1) * 10 / 9]
    deficient = rng.poisson(1.0, size=(40, 400)).astype(float)
    deficient[20:] = deficient[:20] * 2.0  # rank 20: the shortcut fails, the full computation runs
    cases.append(deficient)
    cases.append(np.ones((25, 300)))  # rank 1
    for m in cases:
        assert matrix_rank(m) == full(m) == np.linalg.matrix_rank(m, tol=None)
    assert matrix_rank(deficient) == 20

@pytest.mark.parametrize("npsu, n_rep, lonely, expected", [
    ([2] * 10, 50, "fail", 10),  # P <= 4R: SVD of the (R, P) matrix; rank H + 1
    ([2] * 3 + [1] * 40, 10, "certainty", 3),  # P > 4R, Gram by blocks: rank 1 + 3
    ([7, 3, 30, 2, 5, 9, 4], 6, "fail", 5),  # full rank
])
def test_raowu_degf_by_blocks_of_strata(monkeypatch, npsu, n_rep, lonely, expected):
    """degf from the strata alone, the Gram summed over blocks = rank of the stored weights."""
    import importlib

    from satsample.replicate._common import matrix_rank

    bs = importlib.import_module("satsample.replicate.bootstrap")  # the module, not the function

    rows = pd.DataFrame({"h": np.repeat(np.arange(len(npsu)), npsu)})
    rows["w"] = 1.0 + np.arange(len(rows)) % 3
    design = survey_design(rows, strata="h", weights="w", lonely_psu=lonely)
    stored = bootstrap(design, n_replicates=n_rep, rng=5).replicates
    assert matrix_rank(stored.weights / rows["w"].to_numpy()[None, :]) - 1 == expected
    codes, sizes = np.arange(len(npsu)), np.asarray(npsu)
    assert bs.raowu_degf(stored.seed, codes, sizes, n_rep) == expected == stored.degf
    monkeypatch.setattr(bs, "_RANK_BLOCK", 3 * n_rep)  # blocks of 3 PSUs (a larger stratum alone)
    assert bs.raowu_degf(stored.seed, codes, sizes, n_rep) == expected
