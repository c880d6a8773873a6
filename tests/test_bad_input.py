"""Bad and odd input (issue 10): every case gets a named SatsampleError or a correct result.

One test per numbered case of the issue (``test_caseNN_...``), then the read-only
guarantees of frozen results and designs.  Each test failed on the code before the fix.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from test_ranking import simple_standin

from satsample._validation import (
    SatsampleError,
    SmallDomainWarning,
    check_choice,
    check_positive_int,
    check_probability,
)
from satsample.allocation import allocate
from satsample.datasets import make_population, simulate_responses
from satsample.design import survey_design
from satsample.estimation import mean, satisfaction_index, total
from satsample.intervals import CI_METHODS, confidence_interval
from satsample.outputs.ranking import league_table
from satsample.outputs.report import build_report
from satsample.replicate import bootstrap, declare_replicates
from satsample.selection import select
from satsample.weighting import adjust_nonresponse, calibrate, poststratify, rake

NP_REPR = re.compile(r"np\.(int|float|uint|bool|str)\w*\(")


def _frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sex": np.tile(["F", "M"], n // 2),
        "age": np.repeat(["old", "young"], n // 2),
        "st": np.tile(["a", "b", "c"], n // 3),
        "w": rng.uniform(50, 150, n),
        "y": rng.normal(10, 2, n),
    })


@pytest.fixture(scope="module")
def fielded():
    """A small SIPAS-like sample: 5 agencies, 30 sampled users each, with answers."""
    pop = make_population(n_users=1500, n_agencies=5, rng=3)
    sel = select(pop.frame, ids="user_id", strata="agency_id", n=30, rng=4)
    return pop, simulate_responses(pop, sel.sample, rng=5)


# ------------------------------------------------------------------------------ case 1
def test_case01_rake_list_margins_with_different_totals():
    df = _frame()
    d = survey_design(df, weights="w")
    sex = pd.Series({"F": 3000.0, "M": 3000.0})
    with pytest.raises(SatsampleError, match=r"same population total \('sex': 6000, 'age': 7200\)"):
        rake(d, [("sex", sex), ("age", pd.Series({"old": 3600.0, "young": 3600.0}))])
    # the same list with agreeing totals rakes to both margins (sex and age cross evenly
    # in this frame, so one pass already meets both)
    out = rake(d, [("sex", sex), ("age", pd.Series({"old": 2400.0, "young": 3600.0}))],
               epsilon=1e-9)
    assert out.history[-1].converged
    w = pd.Series(out.weights)
    np.testing.assert_allclose(w.groupby(df["sex"]).sum()[["F", "M"]], [3000, 3000], rtol=1e-9)
    np.testing.assert_allclose(w.groupby(df["age"]).sum()[["old", "young"]], [2400, 3600],
                               rtol=1e-9)


# ------------------------------------------------------------------------------ case 2
FORMULAS = ["=1+1", '=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)",
            "\tTabbed", "\rReturn"]


def test_case02_report_excel_and_csv_never_hold_formulas(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    from satsample._spreadsheet import csv_safe, escape_csv_text
    from satsample.outputs.report import _write_excel

    labels = [*FORMULAS[:5], "Ward 7"]  # tab and CR are checked below (no glyph in the figures)
    e = np.array([0.8, 0.7, 0.9, 0.75, 0.6, 0.65])
    rng = np.random.default_rng(2)
    res = simple_standin(e, e + rng.normal(0, 0.02, size=(60, 6)), domains=labels)
    build_report(res, league=league_table(res, top_k=2, bottom_k=2),
                 html_path=tmp_path / "r.html", excel_path=tmp_path / "r.xlsx")
    _write_excel(tmp_path / "t.xlsx", {"s": pd.DataFrame({"agency": FORMULAS})})

    def cells(path):
        out = []
        for ws in openpyxl.load_workbook(path).worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                    if isinstance(cell.value, str):
                        out.append(cell.value)
                        if cell.value.startswith(("=", "+", "-", "@", "\t", "\r", "\n")):
                            assert cell.quotePrefix, (ws.title, cell.coordinate)
        return out

    texts = cells(tmp_path / "r.xlsx")
    for label in labels:  # the text is kept exactly, in the agency and element sheets
        assert texts.count(label) >= 2, label
    # XML turns a CR into LF (openpyxl keeps no _x000D_ escape); the cell is still text
    assert cells(tmp_path / "t.xlsx") == ["agency", *FORMULAS[:6], "\nReturn"]
    # CSV written from data labels: leading = + - @ tab CR get a quote, numbers stay numbers
    table = pd.DataFrame({"agency": [*FORMULAS, "Ward 1"], "estimate": [-0.5] * 8})
    safe = csv_safe(table)
    assert safe["agency"].tolist() == ["'" + s for s in FORMULAS] + ["Ward 1"]
    assert safe["estimate"].tolist() == [-0.5] * 8
    assert table["agency"].tolist() == [*FORMULAS, "Ward 1"]  # input not modified
    assert escape_csv_text(3) == 3


# ------------------------------------------------------------------------------ case 3
def test_case03_booleans_are_not_answer_codes_or_weights(fielded):
    pop, s = fielded
    q = pop.questionnaire
    item = q.items[0]
    answers = s.assign(**{item: s[item].astype(object)})
    answers.loc[answers.index[4], item] = True
    with pytest.raises(SatsampleError, match=rf"item column '{item}' holds 1 boolean value"):
        q.indicators(answers)
    df = _frame()
    for dtype in ("boolean", bool):
        bad = df.assign(flag=pd.array([True] * len(df), dtype=dtype))
        with pytest.raises(SatsampleError, match=r"weights column 'flag' is boolean"):
            survey_design(bad, weights="flag")
    with pytest.raises(SatsampleError, match=r"weights column 'flag' holds 1 boolean"):
        survey_design(df.assign(flag=[True] + [2.0] * (len(df) - 1)), weights="flag")
    d = survey_design(df.assign(r1=1.0, r2=True), weights="w")
    with pytest.raises(SatsampleError, match=r"replicate weights column 'r2' is boolean"):
        declare_replicates(d, ["r1", "r2"], kind="JK1", scale=0.5)


# ------------------------------------------------------------------------------ case 4
def test_case04_allocation_budget_below_the_minimum_per_stratum():
    N = pd.Series({"A": 1000, "B": 2000, "C": 500, "D": 800})
    for budget in (1, 79):  # the minimum of 2 per stratum costs 4 x 2 x 10 = 80
        with pytest.raises(SatsampleError, match=r"budget=\d+ cannot give each of the 4 strata "
                           r"its minimum sample \(min_n=2.*the minimum costs 80"):
            allocate(N, rule="optimal", cost=10, budget=budget, sd=1)
    with pytest.raises(SatsampleError, match=r"n=5 cannot give .* the minimum needs 8 units"):
        allocate(N, 5)
    a = allocate(N, rule="optimal", cost=10, budget=80, sd=1)
    np.testing.assert_array_equal(a.n_h, [2, 2, 2, 2])
    # the default minimum is settable: min_n=None gives the unbounded optimum (hand value:
    # n_h = C N_h S_h/sqrt(c_h) / sum_k N_k S_k sqrt(c_k) = 79 N_h / 43000)
    free = allocate(N, rule="optimal", cost=10, budget=79, sd=1, min_n=None, rounding="none")
    np.testing.assert_allclose(free.n_exact, 79 * N.to_numpy() / 43000, rtol=1e-12)


# ------------------------------------------------------------------------------ case 5
@pytest.mark.parametrize("method", CI_METHODS)
def test_case05_no_interval_without_degrees_of_freedom(method):
    # one respondent: se = 0, df = 0 -> NaN under every method, as the docstring says
    lo, hi = confidence_interval(0.96, 0.0, 0.0, method=method, n_design=1, n_obs=1)
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = confidence_interval([0.5, 0.7], [0.1, 0.0], [0.5, 0.0], method=method,
                                 n_design=[10, 10], n_obs=[10, 10])
    assert np.isnan(lo).all() and np.isnan(hi).all()
    # with degrees of freedom nothing changes: se = 0 gives [p, p] (beta/wilson: n* = n)
    lo, hi = confidence_interval(0.96, 0.0, 5.0, method=method, n_design=10, n_obs=10)
    if method in ("beta", "wilson"):
        assert lo < 0.96 <= hi
    else:
        assert lo == hi == 0.96


def test_case05_one_respondent_domain_end_to_end():
    df = pd.DataFrame({"g": ["a"] * 5 + ["b"], "y": [1, 0, 1, 1, 0, 1], "w": [2.0] * 6})
    d = survey_design(df, weights="w")
    from satsample.estimation import proportion
    for method in CI_METHODS:
        t = proportion(d, "y", by="g", ci_method=method).table.set_index("g")
        assert t.loc["b", "df"] == 0
        assert np.isnan(t.loc["b", "ci_low"]) and np.isnan(t.loc["b", "ci_high"]), method
        assert np.isfinite(t.loc["a", "ci_low"]), method


# ------------------------------------------------------------------------------ case 6
def test_case06_grouping_column_mixing_types():
    df = _frame().assign(g=pd.Series([1, "1"] * 30, dtype=object),
                         resp=[True, False, True] * 20)
    d = survey_design(df, weights="w")
    msg = r"column 'g' mixes number and text values \(1 and '1'\)"
    with pytest.raises(SatsampleError, match=msg):
        mean(d, "y", by="g")
    with pytest.raises(SatsampleError, match=msg):
        poststratify(d, "g", pd.Series({"1": 6000.0}))
    with pytest.raises(SatsampleError, match=msg):
        rake(d, [("g", pd.Series({"1": 6000.0})), ("sex", pd.Series({"F": 3000.0, "M": 3000.0}))])
    with pytest.raises(SatsampleError, match=msg):
        adjust_nonresponse(d, "resp", classes="g")
    with pytest.raises(SatsampleError, match=msg):
        calibrate(d, pd.Series({"(Intercept)": 6000.0}), variables="g")
    with pytest.raises(SatsampleError, match=msg):
        survey_design(df, strata="g", weights="w")
    # one type per column is fine: text "1" and "2" are two domains
    ok = survey_design(df.assign(g=df["g"].astype(str)), weights="w")
    assert len(mean(ok, "y", by="g").table) == 1



def test_case06_categorical_column_mixing_types():
    """A categorical whose categories are 1 and "1" gave two domains both printed "1"."""
    df = _frame().assign(g=pd.Categorical([1, "1", 2] * 20))
    d = survey_design(df, weights="w")
    msg = r"column 'g' mixes number and text values \(1 and '1'\)"
    with pytest.raises(SatsampleError, match=msg):
        mean(d, "y", by="g")
    with pytest.raises(SatsampleError, match=msg):
        survey_design(df, strata="g", weights="w")
    # categories of one kind are fine, unused ones included
    ok = df.assign(g=pd.Categorical(["1", "2", "2"] * 20, categories=["1", "2", "3"]))
    got = mean(survey_design(ok, weights="w"), "y", by="g").table
    y, g = ok["y"].to_numpy(), ok["g"].to_numpy()
    w = ok["w"].to_numpy()
    for level, est in zip(got["g"], got["estimate"]):
        sel = g == level
        assert est == pytest.approx(np.sum(w[sel] * y[sel]) / np.sum(w[sel]), rel=1e-12)

# ------------------------------------------------------------------------------ case 7
@pytest.mark.parametrize("bad", [True, False, 1.5, -1, "7", np.bool_(True)])
def test_case07_one_rng_validator_everywhere(bad):
    df = _frame()
    d = survey_design(df, strata="st", weights="w")
    pop = make_population(n_users=300, n_agencies=3, rng=1)
    sel = select(pop.frame, ids="user_id", strata="agency_id", n=5, rng=2)
    calls = [
        lambda: bootstrap(d, n_replicates=5, rng=bad),
        lambda: bootstrap(d, n_replicates=5, rng=bad, materialize=False),
        lambda: select(df.assign(id=range(60)), ids="id", strata="st", n=3, rng=bad),
        lambda: make_population(n_users=300, n_agencies=3, rng=bad),
        lambda: simulate_responses(pop, sel.sample, rng=bad),
    ]
    for call in calls:
        with pytest.raises(SatsampleError, match=r"rng=.* must be None, a non-negative int|"
                           r"a seed must be a non-negative integer"):
            call()
    # numpy integers, SeedSequence and Generator are accepted and reproducible
    a = bootstrap(d, n_replicates=5, rng=np.int64(3)).replicates.weights
    b = bootstrap(d, n_replicates=5, rng=np.random.default_rng(3)).replicates.weights
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ case 8
def test_case08_weights_too_large_or_too_small_are_rejected():
    df = _frame()
    with pytest.raises(SatsampleError, match=r"weights 'w': too large to compute with "
                       r"\(largest 1e\+307.*rescale"):
        survey_design(df.assign(w=1e307), weights="w")
    with pytest.raises(SatsampleError, match=r"weights 'w': 60 positive value\(s\) are below "
                       r"2.23e-308.*rescale"):
        survey_design(df.assign(w=1e-320), weights="w")
    with pytest.raises(SatsampleError, match=r"weights 'w': too small to compute with"):
        survey_design(df.assign(w=1e-200), weights="w")
    # large but computable weights give the estimates of the rescaled weights
    big = mean(survey_design(df.assign(w=df["w"] * 1e140), weights="w"), "y").table
    ref = mean(survey_design(df, weights="w"), "y").table
    np.testing.assert_allclose(big[["estimate", "se"]], ref[["estimate", "se"]], rtol=1e-12)
    tot = total(survey_design(df.assign(w=df["w"] * 1e140), weights="w"), "y").table
    np.testing.assert_allclose(tot["estimate"] / 1e140,
                               total(survey_design(df, weights="w"), "y").table["estimate"],
                               rtol=1e-12)


# ------------------------------------------------------------------------------ case 9
def test_case09_text_in_weights_column():
    df = _frame()
    bad = df.assign(w=df["w"].astype(object))
    bad.loc[3, "w"] = "abc"
    with pytest.raises(SatsampleError, match=r"weights column 'w': 1 row\(s\) hold non-numeric "
                       r"value\(s\) 'abc' \(first at row label 3\)"):
        survey_design(bad, weights="w")
    with pytest.raises(SatsampleError, match=r"weights column 'p': 1 row\(s\) hold non-numeric"):
        survey_design(df.assign(p=["x"] + [0.5] * 59), probs="p")
    d = survey_design(df.assign(r1=1.0, r2=["?"] + [1.0] * 59), weights="w")
    with pytest.raises(SatsampleError, match=r"replicate weights column 'r2': 1 row\(s\) hold "
                       r"non-numeric value\(s\) '\?'"):
        declare_replicates(d, ["r1", "r2"], kind="JK1", scale=0.5)
    # numbers written as text are numbers
    d = survey_design(df.assign(w=df["w"].astype(str)), weights="w")
    np.testing.assert_allclose(d.weights, df["w"], rtol=1e-15)


# ------------------------------------------------------------------------------ case 10
def test_case10_propensity_constant_covariate_and_many_classes():
    df = _frame(120, seed=4)
    rng = np.random.default_rng(5)
    df = df.assign(resp=rng.random(120) < np.where(df["sex"] == "F", 0.8, 0.5),
                   c_txt="x", c_num=1.0)
    d = survey_design(df, weights="w")
    with pytest.raises(SatsampleError, match=r"propensity covariate 'c_txt' is constant "
                       r"\(every row is 'x'\)"):
        adjust_nonresponse(d, "resp", method="propensity", covariates=["sex", "c_txt"])
    with pytest.raises(SatsampleError, match=r"propensity covariate 'c_num' is constant "
                       r"\(every row is 1.0\)"):
        adjust_nonresponse(d, "resp", method="propensity", covariates="c_num")
    # 1000 classes asked, 4 distinct propensities: 4 classes, no empty class, no warning,
    # and the weights are those of the classes sex x age
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = adjust_nonresponse(d, "resp", method="propensity", covariates=["sex", "age"],
                                 n_classes=1000)
    p = dict(out.history[-1].params)
    assert p["n_classes"] == 4 and p["n_classes_requested"] == 1000
    assert len(p["adjustment_factors"]) == 4
    assert all(np.isfinite(p["mean_propensity"]))
    ref = adjust_nonresponse(d, "resp", classes=["sex", "age"])
    np.testing.assert_allclose(out.weights, ref.weights, rtol=1e-12)


# ------------------------------------------------------------------------------ case 11
def test_case11_calibration_totals_not_reachable_with_positive_weights():
    d = survey_design(_frame(), weights="w")
    with pytest.raises(SatsampleError, match=r"calibrate: the totals cannot be met with positive "
                       r"weights under distance 'linear'.*bounds="):
        calibrate(d, pd.Series({"(Intercept)": 6000.0, "sexM": 6500.0}), variables="sex")


# ------------------------------------------------------------------------------ case 12
def test_case12_league_table_leaves_out_an_agency_without_usable_answers(fielded):
    pop, s = fielded
    q = pop.questionnaire
    gone = sorted(s["agency_id"].unique())[2]
    s = s.copy()
    s.loc[s["agency_id"] == gone, list(q.items)] = np.nan
    d = bootstrap(survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc"),
                  n_replicates=40, rng=6)
    est = satisfaction_index(d, q, by="agency_id")
    assert np.isnan(est.overall.set_index("agency_id").loc[gone, "estimate"])
    with pytest.warns(SmallDomainWarning, match=rf"1 row\(s\) left out.*'{gone}'"):
        lt = league_table(est, top_k=2, bottom_k=2)
    assert lt.excluded["domain"].tolist() == [gone]
    assert lt.excluded["reason"].iloc[0].startswith("no usable answer (n = 0)")
    assert lt.options["n_excluded"] == 1
    assert gone not in set(lt.table["domain"])
    # the others are ranked among themselves, by their estimates
    kept = est.overall[est.overall["agency_id"] != gone].set_index("agency_id")["estimate"]
    expected = kept.rank(ascending=False, method="min").astype(int)
    got = lt.table.set_index("domain")["rank"]
    assert got.to_dict() == expected.to_dict()
    assert "excluded=1" in repr(lt)


# ------------------------------------------------------------------------------ case 13
def test_case13_messages_show_plain_values():
    messages = []
    for call in (
        lambda: check_choice(np.int64(0), name="ties", allowed=(np.int64(1), "min")),
        lambda: check_positive_int(np.int64(0), name="top_k"),
        lambda: check_probability(np.float64(0.0), name="level"),
        lambda: allocate(pd.Series({"A": 10, "B": 20}), 6, p=np.array([0.5, 1.5])),
        lambda: survey_design(_frame().assign(st=[None] + ["a"] * 59).set_index(
            pd.Index(np.arange(60, dtype=np.int64) + 100)), strata="st", weights="w"),
    ):
        with pytest.raises(SatsampleError) as info:
            call()
        messages.append(str(info.value))
    for m in messages:
        assert not NP_REPR.search(m), m
    assert "ties=0 is not one of 1, 'min'" in messages[0]
    assert "top_k=0" in messages[1] and "level=0.0" in messages[2]
    assert "value 1.5 for stratum 'B'" in messages[3]
    assert "first at row label 100" in messages[4]


# ------------------------------------------------------------------------ read-only results
def test_frozen_result_tables_are_copies(fielded):
    pop, s = fielded
    d = survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc")
    est = satisfaction_index(d, pop.questionnaire, by="agency_id")
    before = est.overall.copy()
    tab = est.overall
    tab.loc[tab.index[0], "estimate"] = 99.0
    tab["se"] = 0.0
    est.elements.pop("estimate")
    pd.testing.assert_frame_equal(est.overall, before)
    assert "estimate" in est.elements.columns
    assert not est.overall["estimate"].to_numpy().flags.writeable
    m = mean(d, "design_weight", by="agency_id")
    t = m.table
    t.loc[t.index[0], "estimate"] = -1.0
    assert (m.table["estimate"] > 0).all()
    # the frame given to a result is not shared with it either
    lt = league_table(simple_standin(np.array([0.8, 0.7]), None), rank_intervals=False)
    lt_tab = lt.table
    lt_tab["rank"] = 0
    assert lt.table["rank"].tolist() == [1, 2]


def test_design_data_cannot_be_edited_to_change_later_estimates():
    df = _frame()
    d = survey_design(df, weights="w")
    first = mean(d, "y").table[["estimate", "se"]].to_numpy()
    data = d.data
    data["y"] = 0.0
    data.loc[:, "w"] = 1.0
    with warnings.catch_warnings():  # pandas 3 warns that the edit of a fresh copy is lost
        warnings.simplefilter("ignore")
        d.data.loc[d.data.index[0], "y"] = 1e6
    with pytest.raises(ValueError, match="read-only"):
        d.data["y"].to_numpy()[0] = 1e6
    again = mean(d, "y").table[["estimate", "se"]].to_numpy()
    np.testing.assert_array_equal(first, again)
    # and the caller's frame stays the caller's
    df.loc[0, "y"] = 1e6
    np.testing.assert_array_equal(mean(d, "y").table[["estimate", "se"]].to_numpy(), first)


# ------------------------------------------------------------------- review: option values
@pytest.mark.parametrize("bad", ["x", "0.95", None, True, [0.9, 0.95]])
def test_level_that_is_not_a_number_is_named(bad):
    """A level given as text, None, a flag or a list: a SatsampleError naming the option."""
    with pytest.raises(SatsampleError, match=r"^level=.* must be a number in \(0, 1\)$"):
        check_probability(bad, name="level")
    with pytest.raises(SatsampleError, match="level="):
        mean(survey_design(_frame(), weights="w"), "y", level=bad)
    # numbers of every kind still pass, and the value is returned as a float
    assert check_probability(np.float32(0.5), name="level") == 0.5
    assert check_probability(np.array(0.9), name="level") == pytest.approx(0.9)
    assert check_probability(1, name="p", closed_high=True) == 1.0
