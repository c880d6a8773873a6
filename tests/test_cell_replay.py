"""Weighting steps replayed on replicate cell tables (satsample.weighting._cell_replay).

The cell path must give the estimates and SEs of the block path (steps replayed
on blocks of materialised replicate weights) and of the materialised path (the
step applied to the stored (R, n) replicate matrix) to 1e-10 relative, on case
C's weighted designs (post-stratification, raking default and tight, linear,
raking and logit calibration with and without bounds, all on categorical
variables) with lazy Rao-Wu and lazy JKn replicates, and on the demo pipeline
(nonresponse adjustment by agency, then raking); and on unbounded linear calibration on
continuous variables (case G's ``wait_minutes`` and ``visits`` joined to case C's sample, and a
generated variable) as the last step, alone or after steps on cells, replayed through
replicate totals of x and x y.  A replicate that does not converge is reported by number
under the full-sample step's policy.  The new
Numba kernels (the Rao-Wu pass with its cell table, the combination of pair totals)
are compared with their numpy twins in ``reference_numpy.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import _case_c as case_c
import numpy as np
import pandas as pd
import pytest
import reference_numpy as ref

from satsample import estimation
from satsample._kernels.bootstrap import _raowu_totals
from satsample._kernels.cells import _combine_pairs
from satsample._validation import ConvergenceError, ConvergenceWarning, DesignError
from satsample.design import survey_design
from satsample.index import satisfaction_index
from satsample.questionnaire import load_questionnaire
from satsample.replicate import bootstrap, jackknife
from satsample.replicate._common import as_values as _as_values
from satsample.replicate._common import design_layout as _layout
from satsample.variance.replicate import (
    _stepped_totals,
    iter_replicate_weight_blocks,
    replay_path,
    replicate_totals,
)
from satsample.weighting import (
    _cell_replay,
    adjust_nonresponse,
    calibrate,
    poststratify,
    rake,
    trim,
)

REF = Path(__file__).resolve().parent / "reference"
ITEMS = [f"q{i:02d}" for i in range(1, 23)]
VARS = case_c.VARS
TOL = 1e-10
BOUNDED = {f"calibrate_{d}_bounded_{b}" for d in ("linear", "logit")
           for b in ("0.5_2", "0.4_2.5", "0.8_1.25")}
METHODS = ["poststratify", "rake_default", "rake_tight", "calibrate_linear", "calibrate_raking",
           *sorted(BOUNDED)]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base():
    df = pd.read_csv(REF / "data" / "sample_strat.csv")
    df["responded"] = np.random.default_rng(2024).random(len(df)) < 0.8
    for q in ITEMS:  # 0/1 satisfied indicators (a missing answer counts as not satisfied)
        df["s" + q[1:]] = df[q].isin([4, 5]).astype(np.uint8)
    return survey_design(df, strata="agency_id", fpc="N_h")


@pytest.fixture(scope="module")
def controls():
    return case_c.controls()


@pytest.fixture(scope="module")
def questionnaire():
    return load_questionnaire("reference_22")


@pytest.fixture(scope="module")
def schemes(base):
    return {
        "raowu": bootstrap(base, n_replicates=40, rng=5, materialize=False),
        "jkn": jackknife(base, kind="JKn", materialize=False),
    }


def weighted(method, design, controls):
    """Case C's weighting steps (tests/_case_c.py), tolerant on replicates."""
    # most replicates cannot meet the narrow bounds: keep them, as R's force=TRUE
    return case_c.weighted(method, design, controls, tolerant_replicates=True)


def materialised(design):
    """The same design with its lazy replicate weights stored as an (R, n) matrix."""
    w = np.vstack(list(iter_replicate_weight_blocks(design, block=50)))
    return design.with_replicates(replace(design.replicates, weights=w))


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    if not ok.any():  # e.g. every replicate of an infeasible logit calibration is NaN
        return 0.0
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)))


def numbers(res):
    """Estimates and SEs of every table of an index result."""
    return {name: (t["estimate"].to_numpy(), t["se"].to_numpy())
            for name, t in (("overall", res.overall), ("elements", res.elements),
                            ("items", res.items))}


def assert_same(a, b, tol=TOL):
    for name in a:
        assert rel(a[name][0], b[name][0]) <= tol, name
        assert rel(a[name][1], b[name][1]) <= tol, name


def quiet(fn, *args, **kwargs):
    """Run ``fn``, returning its result and the messages of the ConvergenceWarnings it raised."""
    with warnings.catch_warnings(record=True) as rec:
        # every warning recorded (an infeasible logit calibration also makes numpy warn about
        # the non-finite g-weights of the replicates, on every path alike)
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(r.message) for r in rec if issubclass(r.category, ConvergenceWarning)]


def blocks(monkeypatch, fn, *args, **kwargs):
    """``fn`` with the cell path switched off (the block path)."""
    with monkeypatch.context() as m:
        m.setattr(_cell_replay, "_ENABLED", False)
        return quiet(fn, *args, **kwargs)


# ------------------------------------------------------------------ case C
# JKn x the (0.8, 1.25) bounds: every one of the 717 replicates is infeasible and runs 200
# Newton iterations on the row paths (~2 min); the Rao-Wu cases cover those bounds
CASES = [(m, s) for s in ("raowu", "jkn") for m in METHODS
         if not (s == "jkn" and m.endswith("0.8_1.25"))]


@pytest.mark.parametrize(("method", "scheme"), CASES)
def test_cell_path_equals_block_and_materialised_paths(method, scheme, schemes, controls,
                                                       questionnaire, monkeypatch):
    lazy = schemes[scheme]
    des, _ = quiet(weighted, method, lazy, controls)
    assert replay_path(des) == "cells"
    cells, w_cells = quiet(satisfaction_index, des, questionnaire, by="agency_level",
                           variance="replicate")
    assert cells.options["replay"] == "cells"
    blk, w_blk = blocks(monkeypatch, satisfaction_index, des, questionnaire, by="agency_level",
                        variance="replicate")
    assert blk.options["replay"] == "blocks"
    mat_design, _ = quiet(weighted, method, materialised(lazy), controls)
    mat, _ = quiet(satisfaction_index, mat_design, questionnaire, by="agency_level",
                   variance="replicate")
    assert mat.options["replay"] is None
    assert_same(numbers(cells), numbers(blk))
    assert_same(numbers(cells), numbers(mat))
    # the comparison is not vacuous: the weighting changed the replicate SEs
    raw = satisfaction_index(lazy, questionnaire, by="agency_level", variance="replicate")
    se_cells = numbers(cells)["overall"][1]
    if np.isfinite(se_cells).all():
        assert rel(se_cells, numbers(raw)["overall"][1]) > 1e-3
    else:  # infeasible logit bounds: NaN replicate weights, on every path alike
        assert method == "calibrate_logit_bounded_0.8_1.25"
    # the same replicates fail to converge on both paths (one message per replay here;
    # the block path warns once per block of 50 replicates)
    failed_cells = {m.split("replicate(s) ")[1].split(";")[0] for m in w_cells}
    if method in BOUNDED and w_cells:
        n_cells = sum(int(m.split("Calibration failed for ")[1].split(" of")[0]) for m in w_cells)
        n_blk = sum(int(m.split("Calibration failed for ")[1].split(" of")[0]) for m in w_blk)
        assert n_cells == n_blk
    else:
        assert not failed_cells and not w_blk


def test_proportions_by_domain_equal_on_both_paths(schemes, controls, monkeypatch):
    for scheme in ("raowu", "jkn"):
        des = rake(adjust_nonresponse(schemes[scheme], "responded", classes="agency_id"),
                   controls["margins"], max_iter=50, epsilon=1e-9)
        items = [f"s{i:02d}" for i in (1, 7, 13)]
        a = estimation.proportion(des, items, by="agency_id", variance="replicate")
        b, _ = blocks(monkeypatch, estimation.proportion, des, items, by="agency_id",
                      variance="replicate")
        assert a.options["replay"] == "cells" and b.options["replay"] == "blocks"
        assert rel(a.table["estimate"], b.table["estimate"]) <= TOL
        assert rel(a.table["se"], b.table["se"]) <= TOL
        t = estimation.total(des, "q01", variance="replicate", na="drop")
        tb, _ = blocks(monkeypatch, estimation.total, des, "q01", variance="replicate", na="drop")
        assert rel(t.table["se"], tb.table["se"]) <= TOL


def test_replicate_totals_with_excluded_rows_and_empty_domains(schemes, controls):
    """Rows outside every domain still weigh in the replicate cell tables."""
    for scheme in ("raowu", "jkn"):
        des = rake(adjust_nonresponse(schemes[scheme], "responded", classes="agency_id"),
                   controls["margins"])
        v = des.data[ITEMS[:4]].fillna(0).to_numpy(dtype=float)
        dom = np.asarray(pd.factorize(des.data["sex"])[0], dtype=np.int64)
        dom[::3] = -1
        got = replicate_totals(des, v, domain=dom, n_domains=4)  # domains 2, 3 empty
        want = _stepped_totals(des, _as_values(v, des.n), dom, 4)
        assert rel(got + 1.0, want + 1.0) <= 1e-12
        assert np.all(got[:, 2:] == 0.0)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9 * np.abs(want).max())


def test_chunks_of_domains_give_the_same_totals(schemes, controls, monkeypatch):
    des = poststratify(schemes["jkn"], ["sex", "age_group"], controls["cells"])
    v = des.data[ITEMS[:3]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["agency_id"])[0], dtype=np.int64)
    g = int(dom.max()) + 1
    whole = replicate_totals(des, v, domain=dom, n_domains=g)
    monkeypatch.setattr(_cell_replay, "_PAIR_BUDGET", 1)  # one domain per chunk
    np.testing.assert_array_equal(replicate_totals(des, v, domain=dom, n_domains=g), whole)


# ------------------------------------------------------------------ demo pipeline
def test_demo_pipeline_uses_cells_and_equals_blocks(questionnaire, monkeypatch):
    from satsample.datasets import make_population, simulate_responses
    from satsample.questionnaire import load_questionnaire as lq
    from satsample.selection import select

    q = lq("sipas_2017")
    pop = make_population(n_users=20_000, questionnaire=q, rng=3)
    drawn = select(pop.frame, ids="user_id", strata="agency_id", n=40, method="srswor", rng=4,
                   take_all=True)
    fielded = simulate_responses(pop, drawn.sample, rng=5)
    d = survey_design(fielded, strata="agency_id", weights="design_weight", fpc="fpc")
    d = bootstrap(d, n_replicates=30, rng=6, materialize=False)
    d = adjust_nonresponse(d, "responded", classes="agency_id")
    margins = [(v, pop.frame[v].value_counts().rename("Freq").rename_axis(v).reset_index())
               for v in ("agency_id", "sex", "age_group", "channel")]
    d = rake(d, margins, max_iter=50, epsilon=1e-8)
    assert replay_path(d) == "cells"
    for by in (None, "agency_id"):
        cells = satisfaction_index(d, q, by=by)
        blk, _ = blocks(monkeypatch, satisfaction_index, d, q, by=by)
        assert cells.options["replay"] == "cells" and blk.options["replay"] == "blocks"
        assert_same(numbers(cells), numbers(blk))


def test_demo_reports_the_cell_path(tmp_path):
    from satsample.cli import main

    argv = ["demo", "--out", str(tmp_path), "--quiet", "--n-users", "20000", "--replicates", "20"]
    assert main(argv) == 0
    assert "on replicate cell tables" in (tmp_path / "summary.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------ which path
def test_trimming_and_unknown_steps_keep_the_block_path(schemes, controls, questionnaire):
    lazy = schemes["raowu"]
    des = trim(rake(lazy, controls["margins"]), upper=1.2, relative=True)
    assert replay_path(des) == "blocks"
    assert "TrimStep" in _cell_replay.cell_replay_plan(des)
    res = satisfaction_index(des, questionnaire, variance="replicate")
    assert res.options["replay"] == "blocks"
    assert replay_path(lazy) is None
    assert satisfaction_index(lazy, questionnaire, variance="replicate").options["replay"] is None
    assert satisfaction_index(des, questionnaire, variance="taylor").options["replay"] is None


def test_continuous_calibration_and_too_many_cells_fall_back(schemes, monkeypatch):
    lazy = schemes["raowu"]
    df = lazy.data
    x = np.round(np.linspace(1.0, 3.0, lazy.n) ** 2, 6)
    cont = survey_design(df.assign(x=x), strata="agency_id", fpc="N_h")
    cont = bootstrap(cont, n_replicates=10, rng=1, materialize=False)
    tot = pd.Series({"(Intercept)": 10964.0, "x": float(np.sum(cont.weights * x) * 1.02)})
    monkeypatch.setattr(_cell_replay, "_MAX_CELLS", 100)
    # bounded (or nonlinear) calibration on a continuous variable: the block path
    bounded = calibrate(cont, tot, variables=["x"], bounds=(0.5, 2.0))
    assert "continuous" in _cell_replay.cell_replay_plan(bounded)
    assert "unbounded linear" in _cell_replay.cell_replay_plan(bounded)
    assert replay_path(bounded) == "blocks"
    # a continuous linear calibration followed by another step: the block path
    then_rake = rake(calibrate(cont, tot, variables=["x"]),
                     pd.read_csv(REF / "data" / "margins.csv"))
    assert replay_path(then_rake) == "blocks"
    # unbounded linear, last: replicate totals of x and x y
    linear = calibrate(cont, tot, variables=["x"])
    assert replay_path(linear) == "cells"
    assert _cell_replay.cell_replay_plan(linear).linear is not None
    many = poststratify(lazy, ["sex", "age_group"], pd.read_csv(REF / "data" / "controls_sex_age.csv"))
    monkeypatch.setattr(_cell_replay, "_MAX_CELLS", 5)
    assert "combined cells" in _cell_replay.cell_replay_plan(many)
    assert replay_path(many) == "blocks"


# ------------------------------------------------------------------ continuous linear calibration
@pytest.fixture(scope="module")
def continuous(base):
    """Case C's sample with case G's continuous variables (wait_minutes, visits) and a
    generated continuous one; lazy Rao-Wu and JKn replicates."""
    extra = pd.read_csv(REF / "data" / "extra_strat.csv")
    df = base.data.merge(extra, on="user_id", how="left", validate="one_to_one")
    df["wait_minutes"] = df["wait_minutes"].fillna(df["wait_minutes"].median())
    df["score"] = np.random.default_rng(8).gamma(2.0, 3.0, len(df))  # continuous
    d = survey_design(df, strata="agency_id", fpc="N_h")
    w = d.weights
    totals = pd.Series({"(Intercept)": 10964.0, "sexM": 5440.0,
                        "wait_minutes": float(np.sum(w * df["wait_minutes"]) * 0.97),
                        "visits": float(np.sum(w * df["visits"]) * 1.02),
                        "score": float(np.sum(w * df["score"]) * 1.01)})
    return {"raowu": bootstrap(d, n_replicates=40, rng=9, materialize=False),
            "jkn": jackknife(d, kind="JKn", materialize=False), "totals": totals}


CONT_VARS = ["sex", "wait_minutes", "visits", "score"]


def linear_pipeline(design, controls, totals, before):
    if before == "nonresponse_rake":
        design = rake(adjust_nonresponse(design, "responded", classes="agency_level"),
                      controls["margins"], max_iter=100, epsilon=1e-12)
    elif before == "poststratify":
        design = poststratify(design, ["sex", "age_group"], controls["cells"])
    return calibrate(design, totals, variables=CONT_VARS)


@pytest.mark.parametrize("scheme", ["raowu", "jkn"])
@pytest.mark.parametrize("before", ["none", "poststratify", "nonresponse_rake"])
def test_continuous_linear_calibration_on_cells_equals_block_path(scheme, before, continuous,
                                                                  controls, questionnaire,
                                                                  monkeypatch):
    """Unbounded linear calibration on continuous variables, last, possibly after steps on
    cells: replayed through replicate totals of x and x y, equal to the block path and to the
    materialised path to 1e-10."""
    lazy = continuous[scheme]
    des = linear_pipeline(lazy, controls, continuous["totals"], before)
    monkeypatch.setattr(_cell_replay, "_MAX_CELLS", 300)  # the ~700 distinct x rows: continuous
    plan = _cell_replay.cell_replay_plan(des)
    assert plan.linear is not None
    assert plan.n_cells == {"none": 1, "poststratify": 8}.get(before, plan.n_cells)
    cells = satisfaction_index(des, questionnaire, by="agency_level", variance="replicate")
    assert cells.options["replay"] == "cells"
    blk, _ = blocks(monkeypatch, satisfaction_index, des, questionnaire, by="agency_level",
                    variance="replicate")
    assert blk.options["replay"] == "blocks"
    assert_same(numbers(cells), numbers(blk))
    mat_des = linear_pipeline(materialised(lazy), controls, continuous["totals"], before)
    mat = satisfaction_index(mat_des, questionnaire, by="agency_level", variance="replicate")
    assert_same(numbers(cells), numbers(mat))
    raw = satisfaction_index(lazy, questionnaire, by="agency_level", variance="replicate")
    assert rel(numbers(cells)["overall"][1], numbers(raw)["overall"][1]) > 1e-3
    # totals of the calibration variables themselves: every replicate meets the controls
    x = des.data[["wait_minutes", "visits", "score"]].to_numpy(dtype=float)
    t = replicate_totals(des, x)
    want = continuous["totals"][["wait_minutes", "visits", "score"]].to_numpy()
    np.testing.assert_allclose(t[:, 0], np.broadcast_to(want, t[:, 0].shape), rtol=1e-10)
    # with rows in no domain and empty domains, against the block path's totals
    v = des.data[ITEMS[:4]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["sex"])[0], dtype=np.int64)
    dom[::3] = -1
    got = replicate_totals(des, v, domain=dom, n_domains=3)
    ref_t = _stepped_totals(des, _as_values(v, des.n), dom, 3)
    np.testing.assert_allclose(got, ref_t, rtol=1e-10, atol=1e-10 * np.abs(ref_t).max())


def test_continuous_linear_tables_of_parts_add_up(continuous, controls, monkeypatch):
    from satsample.replicate._common import layout_from_codes

    des = linear_pipeline(continuous["raowu"], controls, continuous["totals"], "nonresponse_rake")
    monkeypatch.setattr(_cell_replay, "_MAX_CELLS", 300)
    plan = _cell_replay.cell_replay_plan(des)
    v = des.data[ITEMS[:5]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["agency_level"])[0], dtype=np.int64)
    whole = replicate_totals(des, v, domain=dom, n_domains=3)
    lay = _layout(des)
    s_code = np.empty(des.n, dtype=np.int64)
    for h in range(lay.strat_code.size):
        s_code[lay.order[lay.strat_start[h]:lay.strat_start[h + 1]]] = lay.strat_code[h]
    x = np.asarray(plan.linear.matrix)
    parts = []
    for sel in (s_code < 10, s_code >= 10):
        idx = np.flatnonzero(sel)
        parts.append(_cell_replay.raowu_cell_tables(
            des.replicates.scheme.seed, plan.base[idx], v[idx], dom[idx], 3, plan.cell[idx],
            plan.n_cells, plan.live, layout_from_codes(s_code[idx], np.arange(idx.size)), 0,
            des.replicates.n_replicates, x=x[idx]))
    got = _cell_replay.finish(parts[0] + parts[1], plan)
    np.testing.assert_allclose(got, whole, rtol=1e-10, atol=1e-10 * np.abs(whole).max())


def test_history_and_steps_must_agree(schemes, controls):
    des = rake(schemes["raowu"], controls["margins"])
    broken = replace(des, history=des.history[:1])
    with pytest.raises(DesignError, match="replay 1 weighting"):
        replay_path(broken)


def test_combined_cells_refine_every_step(schemes, controls):
    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"])
    plan = _cell_replay.cell_replay_plan(des)
    cell = plan.cell
    for col in ("agency_id", "responded", "sex", "age_group", "channel"):
        # every combined cell lies in one level of every step's variables
        per = pd.DataFrame({"c": cell, "v": des.data[col].astype(str)}).groupby("c")["v"].nunique()
        assert (per == 1).all()
    assert plan.n_cells == pd.DataFrame(
        {c: des.data[c] for c in ("agency_id", "responded", "sex", "age_group", "channel")}
    ).drop_duplicates().shape[0]


# ------------------------------------------------------------------ non-convergence
def failing_replicates(design, step):
    """Replicates whose calibration does not converge, found on materialised weights."""
    from satsample.weighting.calibrate import _grake

    w = np.vstack(list(iter_replicate_weight_blocks(design, block=50)))
    _g, _it, r = _grake(step.matrix, w, step.totals, step.distance, step.lower, step.upper,
                        step.epsilon, step.max_iter)
    return np.flatnonzero(r >= step.epsilon)


def test_nonconverged_replicates_are_named_under_the_steps_policy(schemes, controls,
                                                                  questionnaire, monkeypatch):
    lazy = bootstrap(schemes["raowu"], n_replicates=50, rng=17, materialize=False)
    des = calibrate(lazy, controls["totals"], variables=VARS, bounds=(0.4, 2.5),
                    epsilon=1e-12, max_iter=200)  # the full sample converges
    assert des.history[-1].converged
    bad = failing_replicates(lazy, des.replicates.steps[0])
    assert bad.tolist() == [21, 44]
    with pytest.raises(ConvergenceError,
                       match=r"Calibration failed for 2 of 50 replicates \(replicate\(s\) 21, 44;"):
        satisfaction_index(des, questionnaire, variance="replicate")
    # the block path stops at the first block with a failure, naming the same replicates
    with monkeypatch.context() as m, pytest.raises(ConvergenceError, match=r"replicate\(s\) 21, 44;"):
        m.setattr(_cell_replay, "_ENABLED", False)
        satisfaction_index(des, questionnaire, variance="replicate")
    # warn and keep: one warning naming them, the same estimates as the block path
    warn = calibrate(lazy, controls["totals"], variables=VARS, bounds=(0.4, 2.5),
                     epsilon=1e-12, max_iter=200, on_nonconvergence="warn")
    with pytest.warns(ConvergenceWarning, match=r"2 of 50 replicates \(replicate\(s\) 21, 44;"):
        cells = satisfaction_index(warn, questionnaire, by="agency_level", variance="replicate")
    blk, msgs = blocks(monkeypatch, satisfaction_index, warn, questionnaire, by="agency_level",
                       variance="replicate")
    assert msgs and all("21, 44" in m for m in msgs)
    assert_same(numbers(cells), numbers(blk))


# ------------------------------------------------------------------ kernel twins
def _kernel_case(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(4):
        for p in range(int(rng.integers(1, 5))):  # a stratum with one PSU keeps multiplier 1
            rows += [(h, 10 * h + p)] * int(rng.integers(1, 40))
    h, psu = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    n = h.size
    w = rng.uniform(1, 5, n)
    w[rng.random(n) < 0.1] = 0.0  # zero weights are skipped
    des = survey_design(pd.DataFrame({"h": h, "p": psu, "w": np.where(w > 0, w, 1.0)}),
                        ids="p", strata="h", weights="w", lonely_psu="remove")
    return rng, des, w, h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_kernel_with_cell_table_equals_numpy_twin(seed):
    """One pass gives the totals by key and the cell table; the cell table leaves the totals
    bit-identical to the plain bootstrap's."""
    rng, des, w, _h = _kernel_case(seed)
    n = des.n
    lay = _layout(des)
    n_cells, n_rep, r0, n_dom = 5, 37, 3, 3
    cell = rng.integers(0, n_cells, n)
    dom = rng.integers(-1, n_dom, n)
    binary = (rng.random((n, 12)) < 0.4).astype(np.uint8)  # 0/1 columns: pattern buckets
    other = rng.integers(0, 6, (n, 3)).astype(np.float64)
    key = 0xDEADBEEF + seed
    lay_args = (lay.order, lay.psu_local, lay.strat_start, lay.strat_code, lay.strat_npsu)
    for vals in (binary, np.hstack([binary, other]), other):
        want, want_tab = ref.raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom,
                                          cell=cell, n_cells=n_cells)
        for group_bits, block, mbr in ((5, 8, None), (0, 8, None), (3, 48, 1), (5, 4, 2)):
            got, tab = _raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, block,
                                     group_bits=group_bits, cell=cell, n_cells=n_cells,
                                     min_bucket_run=mbr)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-10)
            np.testing.assert_allclose(tab, want_tab, rtol=1e-13, atol=1e-10)
            plain = _raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, block,
                                  group_bits=group_bits, min_bucket_run=mbr)
            assert plain.tobytes() == got.tobytes()
    # long runs of one (stratum, key) take the bucket path; every row in no key still counts
    # in the cell table
    for d in (np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64)):
        got, tab = _raowu_totals(key, w, binary, d, *lay_args, 0, 50, 1, 48, cell=cell,
                                 n_cells=n_cells)
        want, want_tab = ref.raowu_totals(key, w, binary, d, *lay_args, 0, 50, 1, cell=cell,
                                          n_cells=n_cells)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-10)
        np.testing.assert_allclose(tab, want_tab, rtol=1e-13, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_factored_kernel_equals_numpy_twin(seed):
    """Row multipliers scaled by the factor of the row's class (the cell replay's last pass)."""
    rng, des, w, _h = _kernel_case(seed)
    n = des.n
    lay = _layout(des)
    n_fc, n_rep, r0, n_dom = 4, 29, 5, 3
    fcell = rng.integers(0, n_fc, n)
    factor = rng.uniform(0.5, 2.0, (n_fc, n_rep))
    factor[1, ::4] = 0.0  # a cell with no weight in some replicates
    dom = rng.integers(-1, n_dom, n)
    binary = (rng.random((n, 12)) < 0.4).astype(np.uint8)
    other = rng.normal(size=(n, 3))
    key = 0xC0FFEE + seed
    lay_args = (lay.order, lay.psu_local, lay.strat_start, lay.strat_code, lay.strat_npsu)
    for vals in (binary, np.hstack([binary, other]), other):
        want = ref.raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, fcell=fcell,
                                factor=factor)
        for group_bits, block, mbr in ((5, 8, None), (0, 8, None), (3, 48, 1), (5, 4, 2)):
            got = _raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, block,
                                group_bits=group_bits, fcell=fcell, factor=factor,
                                min_bucket_run=mbr)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-10)
        # factors of 1: the plain bootstrap's totals
        ones = _raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, 8, fcell=fcell,
                             factor=np.ones((n_fc, n_rep)))
        plain = _raowu_totals(key, w, vals, dom, *lay_args, r0, n_rep, n_dom, 8)
        np.testing.assert_allclose(ones, plain, rtol=1e-14, atol=1e-12)
    with pytest.raises(ValueError, match="factor"):
        _raowu_totals(key, w, binary, dom, *lay_args, r0, n_rep, n_dom, 8, fcell=fcell,
                      factor=factor[:, :3])


def _steps_on_combined_cells(plan, table):
    """The steps' ``apply`` on the (R, combined cells) table itself (before the collapse)."""
    w = table
    idx = np.arange(table.shape[0], dtype=np.int64)
    for st in plan.steps:
        w = np.asarray(st.apply(w, idx.copy()), dtype=np.float64)
    return np.divide(w, table, out=np.zeros_like(w), where=table > 0)


@pytest.mark.parametrize("method", ["poststratify", "rake_default", "calibrate_linear",
                                    "calibrate_raking", "calibrate_logit_bounded_0.5_2",
                                    "nonresponse_rake"])
def test_steps_on_their_own_cells_equal_steps_on_combined_cells(method, schemes, controls):
    """Each step runs on the table summed by its own cells; the factors equal those of the
    step on the combined cells, and the factored pass equals the (domain x cell) tables."""
    lazy = schemes["raowu"]
    if method == "nonresponse_rake":
        des = rake(adjust_nonresponse(lazy, "responded", classes="agency_id"),
                   controls["margins"], max_iter=50, epsilon=1e-10)
    else:
        des, _ = quiet(weighted, method, lazy, controls)
    plan = _cell_replay.cell_replay_plan(des)
    assert isinstance(plan, _cell_replay.CellReplay)
    none = np.full(des.n, -1, dtype=np.int64)
    table = _cell_replay.cell_tables(des, np.zeros((des.n, 1), np.uint8), none, 1).cells
    got = quiet(_cell_replay.replay_factors, plan, table)[0]
    want = quiet(_steps_on_combined_cells, plan, table)[0]
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    v = des.data[ITEMS[:6]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["agency_level"])[0], dtype=np.int64)
    dom[::7] = -1
    g = int(dom.max()) + 1
    fact = _cell_replay.factored_totals(des, plan, got, v, dom, g)
    pairs = _cell_replay.finish(_cell_replay.cell_tables(des, v, dom, g), plan, got)
    np.testing.assert_allclose(fact, pairs, rtol=1e-12, atol=1e-10 * np.abs(pairs).max())


@pytest.mark.parametrize("chain", ["nonresponse_linear", "nonresponse_logit_bounded",
                                   "rake_raking"])
def test_collapse_of_a_calibration_after_other_steps(chain, schemes, controls):
    """A calibration whose own cells are unions of the combined cells of a longer chain."""
    lazy = schemes["raowu"]
    nr = adjust_nonresponse(lazy, "responded", classes="agency_id")
    if chain == "nonresponse_linear":
        des = calibrate(nr, controls["totals"], variables=VARS)
    elif chain == "nonresponse_logit_bounded":
        des, _ = quiet(calibrate, nr, controls["totals"], variables=VARS, distance="logit",
                       bounds=(0.4, 2.5), epsilon=1e-13, max_iter=200,
                       on_nonconvergence="warn")
    else:
        tot = controls["totals"][~controls["totals"]["term"].str.startswith("channel")]
        des = calibrate(rake(lazy, controls["margins"], max_iter=50, epsilon=1e-10), tot,
                        variables=["sex", "age_group"], distance="raking", epsilon=1e-13,
                        max_iter=100)
    plan = _cell_replay.cell_replay_plan(des)
    assert isinstance(plan, _cell_replay.CellReplay)
    own = _cell_replay._collapse(plan.steps[-1], plan.n_cells)[1]
    assert own.max() + 1 < plan.n_cells  # the calibration's cells merge combined cells
    none = np.full(des.n, -1, dtype=np.int64)
    table = _cell_replay.cell_tables(des, np.zeros((des.n, 0), np.uint8), none, 1).cells
    got = quiet(_cell_replay.replay_factors, plan, table)[0]
    want = quiet(_steps_on_combined_cells, plan, table)[0]
    # a replicate that does not converge stops where its summation order leads it: 1e-9
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_lazy_raowu_takes_the_factored_pass(schemes, controls, monkeypatch):
    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"], max_iter=50, epsilon=1e-10)
    calls = []
    real = _cell_replay.factored_totals
    monkeypatch.setattr(_cell_replay, "factored_totals",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    dom = np.asarray(pd.factorize(des.data["agency_level"])[0], dtype=np.int64)
    replicate_totals(des, np.ones((des.n, 1)), domain=dom, n_domains=int(dom.max()) + 1)
    assert calls, "the lazy Rao-Wu replay did not take the factored pass"
    monkeypatch.setattr(_cell_replay, "_PAIR_RUN", 0)  # long pairs: the one pass instead
    calls.clear()
    replicate_totals(des, np.ones((des.n, 1)), domain=dom, n_domains=int(dom.max()) + 1)
    assert not calls


def test_repeated_calls_give_the_same_bits(schemes, controls):
    """The pass is chosen from the design and the domains, not from the cached factors."""
    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"], max_iter=50, epsilon=1e-10)
    v = des.data[ITEMS[:4]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["agency_level"])[0], dtype=np.int64)
    for pair_run in (200, 0):
        _cell_replay._CACHE.clear()
        old, _cell_replay._PAIR_RUN = _cell_replay._PAIR_RUN, pair_run
        try:
            first = replicate_totals(des, v, domain=dom, n_domains=int(dom.max()) + 1)
            again = replicate_totals(des, v, domain=dom, n_domains=int(dom.max()) + 1)
        finally:
            _cell_replay._PAIR_RUN = old
        assert first.tobytes() == again.tobytes()
    _cell_replay._CACHE.clear()


def test_factored_pass_equals_pair_tables_in_the_estimates(schemes, controls, questionnaire,
                                                             monkeypatch):
    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"], max_iter=50, epsilon=1e-10)
    _cell_replay._CACHE.clear()
    fact = satisfaction_index(des, questionnaire, by="agency_level", variance="replicate")
    for switch in ("_FACTORED", "_PAIR_RUN"):  # the pair tables, forced or chosen (long runs)
        with monkeypatch.context() as m:
            m.setattr(_cell_replay, switch, False if switch == "_FACTORED" else 0)
            _cell_replay._CACHE.clear()
            pairs = satisfaction_index(des, questionnaire, by="agency_level",
                                       variance="replicate")
        assert fact.options["replay"] == pairs.options["replay"] == "cells"
        assert_same(numbers(fact), numbers(pairs), tol=1e-12)
    _cell_replay._CACHE.clear()


@pytest.mark.parametrize("seed", [0, 1])
def test_combine_pairs_equals_numpy_twin(seed):
    rng = np.random.default_rng(seed)
    n_rep, n_pairs, k, n_cells, n_dom = 23, 17, 4, 6, 5
    u = rng.normal(size=(n_pairs, k, n_rep))
    f = rng.uniform(0, 2, (n_cells, n_rep))
    f[2, 3] = 0.0
    p_dom = np.sort(rng.integers(0, n_dom, n_pairs))
    p_dom[p_dom == 2] = 1  # a domain with no pair stays 0
    p_cell = rng.integers(0, n_cells, n_pairs)
    got = _combine_pairs(u, f, p_cell, p_dom, n_dom)
    want = ref.combine_pairs(u, f, p_cell, p_dom, n_dom)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert np.all(got[2] == 0.0)


def test_tables_of_parts_of_whole_strata_add_up(schemes, controls):
    """Phase (a) on two disjoint sets of whole strata (global stratum codes), added, then
    phase (b): the totals of the whole sample (what a Dask partition relies on)."""
    from satsample.replicate._common import layout_from_codes

    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"])
    plan = _cell_replay.cell_replay_plan(des)
    v = des.data[ITEMS[:5]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["sex"])[0], dtype=np.int64)
    dom[::5] = -1
    whole = replicate_totals(des, v, domain=dom, n_domains=3)
    lay = _layout(des)
    s_code = np.empty(des.n, dtype=np.int64)
    for h in range(lay.strat_code.size):
        s_code[lay.order[lay.strat_start[h]:lay.strat_start[h + 1]]] = lay.strat_code[h]
    reps = des.replicates
    parts = []
    for sel in (s_code % 3 == 0, s_code % 3 != 0):
        idx = np.flatnonzero(sel)
        part_lay = layout_from_codes(s_code[idx], np.arange(idx.size, dtype=np.int64))
        parts.append(_cell_replay.raowu_cell_tables(
            reps.scheme.seed, plan.base[idx], v[idx], dom[idx], 3, plan.cell[idx], plan.n_cells,
            plan.live, part_lay, 0, reps.n_replicates))
    summed = parts[0] + parts[1]
    np.testing.assert_allclose(summed.cells, _cell_replay.cell_tables(des, v, dom, 3).cells,
                               rtol=1e-13)
    got = _cell_replay.finish(summed, plan)
    np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-9 * np.abs(whole).max())


def test_cell_path_is_bit_identical_across_thread_counts(schemes, controls):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    des = rake(adjust_nonresponse(schemes["raowu"], "responded", classes="agency_id"),
               controls["margins"])
    v = des.data[ITEMS[:6]].fillna(0).to_numpy(dtype=float)
    dom = np.asarray(pd.factorize(des.data["agency_level"])[0], dtype=np.int64)
    old = numba.get_num_threads()
    res = {}
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            _cell_replay._CACHE.clear()
            res[t] = replicate_totals(des, v, domain=dom, n_domains=int(dom.max()) + 1)
    finally:
        numba.set_num_threads(old)
    assert res[1].tobytes() == res[2].tobytes()
