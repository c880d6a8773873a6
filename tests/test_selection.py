"""Selection: case E inclusion probabilities, Monte-Carlo inclusion frequencies, reserves,
multistage, reproducibility and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_case, load_data

from satsample._validation import DesignError, SatsampleError
from satsample.allocation import allocate
from satsample.selection import (
    Stage,
    _draw_brewer,
    _draw_sampford,
    _draw_systematic,
    inclusion_probabilities,
    release_reserves,
    select,
    select_multistage,
    use_reserves,
)


@pytest.fixture(scope="module")
def case_e():
    return load_case("E_sampling_design")["results"]["pps"]


@pytest.fixture(scope="module")
def psu():
    return load_data("twostage_psu")


# ---------------------------------------------------------------------------- case E


@pytest.mark.reference
def test_case_e_inclusionprobabilities(case_e, psu):
    ref = pd.DataFrame(case_e["pi_all"])
    assert ref["commune_id"].tolist() == psu["commune_id"].tolist()
    pi = inclusion_probabilities(psu["size_files"], case_e["n"])
    np.testing.assert_allclose(pi, ref["pi"], rtol=1e-10)
    assert (pi == 1).sum() == case_e["n_certainty"] == 0
    ref4 = pd.DataFrame(case_e["pi_all_n_plus_4"])
    pi4 = inclusion_probabilities(psu["size_files"].to_numpy(), case_e["n_plus_4"])
    np.testing.assert_allclose(pi4, ref4["pi"], rtol=1e-10)
    assert (pi4 == 1).sum() == case_e["n_certainty_n_plus_4"] == 1
    assert pi4.sum() == pytest.approx(10, rel=1e-12)


@pytest.mark.reference
def test_case_e_pi_within_district(case_e, psu):
    ref = pd.DataFrame(case_e["pi_within_district"])
    m_h = ref.groupby("district_id")["m_h"].first()
    pi = inclusion_probabilities(psu["size_files"], m_h, strata=psu["district_id"])
    np.testing.assert_allclose(pi, ref["pi"], rtol=1e-10)
    # select() gives the same probabilities to the communes it draws, for every PPS method
    for method in ("pps_systematic", "pps_brewer", "pps_sampford"):
        s = select(psu, ids="commune_id", strata="district_id", n=m_h, method=method,
                   size="size_files", rng=7).sample
        assert s.groupby("stratum").size().to_dict() == m_h.to_dict()
        got = s.set_index("commune_id")["inclusion_prob"]
        np.testing.assert_allclose(got, ref.set_index("commune_id").loc[got.index, "pi"],
                                   rtol=1e-10)
        np.testing.assert_allclose(s["design_weight"], 1 / s["inclusion_prob"], rtol=1e-15)
        assert (s.loc[s["stratum"] == "DIS03", "inclusion_prob"] == 1).all()


@pytest.mark.reference
def test_case_e_inclusionprobastrata(case_e):
    frame = load_data("frame")
    ag = load_data("agencies").set_index("agency_id")
    s = select(frame, ids="user_id", strata="agency_id", n=ag["n_h"], rng=20240611).sample
    pi = s.groupby("stratum")["inclusion_prob"].agg(["first", "min", "max"]).loc[ag.index]
    np.testing.assert_allclose(pi["first"], case_e["inclusionprobastrata"]["pi"], rtol=1e-10)
    assert (pi["min"] == pi["max"]).all()
    assert (s.groupby("stratum")["fpc"].first().loc[ag.index] == ag["N_h"]).all()
    assert len(s) == ag["n_h"].sum() == 717


# ---------------------------------------------------------------------------- Monte Carlo

SIZES = np.array([5.0, 1.0, 2.0, 8.0, 3.0, 3.0, 1.5, 6.0, 0.5, 4.0, 30.0, 2.5])
R = 4000


def _mc_check(freq, pi, reps):
    tol = 4.5 * np.sqrt(pi * (1 - pi) / reps) + 1e-9
    assert (np.abs(freq - pi) <= tol).all(), (freq, pi)


@pytest.mark.parametrize("kernel", ["systematic", "brewer", "sampford"])
def test_monte_carlo_fixed_size_pps(kernel):
    pi = inclusion_probabilities(SIZES, 4)
    assert pi[10] == 1.0 and pi.sum() == pytest.approx(4)
    draw = {"systematic": _draw_systematic, "brewer": _draw_brewer,
            "sampford": _draw_sampford}[kernel]
    gen = np.random.default_rng(123)
    counts = np.zeros(len(pi))
    for _ in range(R):
        sel = draw(pi, gen)
        assert len(sel) == 4 and len(set(sel.tolist())) == 4
        counts[sel] += 1
    _mc_check(counts / R, pi, R)


def test_monte_carlo_equal_probability_systematic_and_poisson():
    gen = np.random.default_rng(5)
    pi_eq = np.full(12, 5 / 12)
    counts = np.zeros(12)
    for _ in range(R):
        counts[_draw_systematic(pi_eq, gen)] += 1
    _mc_check(counts / R, pi_eq, R)
    pi = inclusion_probabilities(SIZES, 5)
    hits = gen.random((R, 12)) < pi  # the Poisson rule used by select()
    _mc_check(hits.mean(axis=0), pi, R)


@pytest.mark.parametrize("method", ["srswor", "pps_brewer", "poisson"])
def test_monte_carlo_through_select(method):
    """End to end through select() on a 12-unit frame (fewer draws: pandas overhead)."""
    frame = pd.DataFrame({"uid": [f"u{i:02d}" for i in range(12)], "size": SIZES})
    reps = 300
    gen = np.random.default_rng(99)
    counts = pd.Series(0.0, index=frame["uid"])
    pis = None
    for _ in range(reps):
        s = select(frame, ids="uid", n=4, method=method, size=None if method == "srswor"
                   else "size", rng=gen).sample
        counts[s["uid"]] += 1
        pis = s.set_index("uid")["inclusion_prob"] if pis is None else pis.combine_first(
            s.set_index("uid")["inclusion_prob"])
    expected = (np.full(12, 4 / 12) if method == "srswor"
                else inclusion_probabilities(SIZES, 4))
    np.testing.assert_allclose(pis.loc[frame["uid"]], expected, rtol=1e-12)
    _mc_check(counts.to_numpy() / reps, expected, reps)


def test_monte_carlo_released_reserves_srswor():
    """Main + first k reserves is an SRSWOR of size n + k: frequency (n + k)/N."""
    frame = pd.DataFrame({"uid": range(12)})
    reps = 300
    gen = np.random.default_rng(3)
    counts = np.zeros(12)
    for _ in range(reps):
        s = select(frame, ids="uid", n=3, n_reserve=4, rng=gen)
        s2 = release_reserves(s, {"all": 2})
        counts[s2.sample["uid"].to_numpy()] += 1
        assert (s2.sample["inclusion_prob"] == 5 / 12).all()
    _mc_check(counts / reps, np.full(12, 5 / 12), reps)


# ---------------------------------------------------------------------------- reserves


@pytest.fixture()
def small_frame():
    gen = np.random.default_rng(0)
    return pd.DataFrame({
        "uid": np.arange(1, 61),
        "agency": np.repeat(["A", "B", "C"], [10, 20, 30]),
        "visits": gen.integers(1, 20, 60).astype(float),
        "district": np.repeat(["d1", "d2", "d3", "d4", "d5", "d6"], 10),
    })


def test_reserves_bookkeeping(small_frame):
    before = small_frame.copy()
    s = select(small_frame, ids="uid", strata="agency", n={"A": 3, "B": 5, "C": 6},
               n_reserve={"A": 2, "B": 3, "C": 100}, rng=42)
    pd.testing.assert_frame_equal(small_frame, before)
    assert s.record.n_reserve == {"A": 2, "B": 3, "C": 24}  # truncated to what is left
    assert len(s.sample) == 14 and len(s.reserves) == 29
    assert s.reserves.groupby("stratum")["reserve_rank"].min().tolist() == [1, 1, 1]
    assert (s.sample["reserve_rank"] == 0).all()
    first_b = s.sample[s.sample["stratum"] == "B"]["uid"].iloc[0]
    s2 = use_reserves(s, [first_b])
    b = s2.sample[s2.sample["stratum"] == "B"]
    assert len(b) == 6 and b["replaced"].sum() == 1
    assert b.loc[b["replaced"], "uid"].item() == first_b
    assert b["reserve_rank"].max() == 1
    np.testing.assert_allclose(b["inclusion_prob"], 6 / 20)
    np.testing.assert_allclose(b["design_weight"], 20 / 6)
    # the respondents' weights after a within-stratum nonresponse adjustment: N_h / n_h
    resp = b[~b["replaced"]]
    assert resp["design_weight"].sum() * len(b) / len(resp) == pytest.approx(20)
    # other strata untouched, the original object unchanged
    np.testing.assert_allclose(s2.sample.loc[s2.sample["stratum"] == "A", "inclusion_prob"],
                               0.3)
    assert len(s.sample) == 14 and s.record.released == {}
    assert s2.record.replaced == (first_b,)
    with pytest.raises(DesignError, match="'A'"):
        release_reserves(s2, {"A": 3})
    with pytest.raises(SatsampleError, match="already replaced"):
        use_reserves(s2, [first_b])
    with pytest.raises(SatsampleError, match="not in the sample"):
        use_reserves(s2, [-5])


def test_pps_reserves_probabilities(small_frame):
    s = select(small_frame, ids="uid", strata="agency", n=4, n_reserve=2,
               method="pps_systematic", size="visits", rng=1)
    full = {h: inclusion_probabilities(g["visits"].to_numpy(), 6)
            for h, g in small_frame.groupby("agency")}
    for h, g in s.sample.groupby("stratum"):
        pf = pd.Series(full[h], index=small_frame.loc[small_frame["agency"] == h, "uid"])
        c = int((pf >= 1).sum())
        exp = np.where(pf.loc[g["uid"]] >= 1, 1.0, pf.loc[g["uid"]] * (4 - c) / (6 - c))
        np.testing.assert_allclose(g["inclusion_prob"], exp, rtol=1e-12)
    s_all = release_reserves(s, {"A": 2, "B": 2, "C": 2})
    for h, g in s_all.sample.groupby("stratum"):
        pf = pd.Series(full[h], index=small_frame.loc[small_frame["agency"] == h, "uid"])
        np.testing.assert_allclose(g["inclusion_prob"], pf.loc[g["uid"]], rtol=1e-12)


# ---------------------------------------------------------------------------- other methods


def test_systematic_with_sort_and_srswr(small_frame):
    s = select(small_frame, ids="uid", strata="agency", n=5, method="systematic",
               sort="visits", rng=3).sample
    assert s.groupby("stratum").size().tolist() == [5, 5, 5]
    np.testing.assert_allclose(s.groupby("stratum")["inclusion_prob"].first(),
                               [0.5, 0.25, 5 / 30])
    w = select(small_frame, ids="uid", strata="agency", n=15, method="srswr", rng=3).sample
    assert len(w) == 45  # one row per draw, n_h may exceed N_h
    np.testing.assert_allclose(w.groupby("stratum")["design_weight"].sum(), [10, 20, 30])
    np.testing.assert_allclose(w.loc[w["stratum"] == "A", "inclusion_prob"],
                               1 - 0.9**15)


def test_bernoulli_and_poisson_weights(small_frame):
    b = select(small_frame, ids="uid", strata="agency", n=5, method="bernoulli", rng=8).sample
    np.testing.assert_allclose(b["design_weight"], b["fpc"] / 5)
    p = select(small_frame, ids="uid", strata="agency", n=5, method="poisson", size="visits",
               rng=8).sample
    pis = inclusion_probabilities(small_frame["visits"], 5, strata=small_frame["agency"])
    pis.index = small_frame["uid"]
    np.testing.assert_allclose(p["inclusion_prob"], pis.loc[p["uid"]], rtol=1e-12)


def test_allocation_object_and_take_all(small_frame):
    alloc = allocate(small_frame.groupby("agency").size(), 24, rule="equal")
    s = select(small_frame, ids="uid", strata="agency", n=alloc, rng=1).sample
    assert s.groupby("stratum").size().tolist() == [8, 8, 8]
    with pytest.raises(DesignError, match=r"stratum 'A'.*n_h=12 exceeds N_h=10"):
        select(small_frame, ids="uid", strata="agency", n=12, rng=1)
    t = select(small_frame, ids="uid", strata="agency", n=12, take_all=True, rng=1)
    assert t.record.take_all == ("A",)
    assert (t.sample.loc[t.sample["stratum"] == "A", "inclusion_prob"] == 1).all()


# ---------------------------------------------------------------------------- reproducibility


def test_same_rng_same_sample(small_frame):
    a = select(small_frame, ids="uid", strata="agency", n=4, method="pps_brewer",
               size="visits", n_reserve=2, rng=2024)
    b = select(small_frame, ids="uid", strata="agency", n=4, method="pps_brewer",
               size="visits", n_reserve=2, rng=np.random.default_rng(2024))
    c = select(small_frame, ids="uid", strata="agency", n=4, method="pps_brewer",
               size="visits", n_reserve=2, rng=np.random.SeedSequence(2024))
    pd.testing.assert_frame_equal(a.sample, b.sample)
    pd.testing.assert_frame_equal(a.sample, c.sample)
    pd.testing.assert_frame_equal(a.reserves, b.reserves)
    assert a.record.seed_entropy == 2024 and a.record.rng == "seed 2024"
    assert b.record.rng_state is not None
    # shuffling the rows of the frame does not change an SRSWOR sample
    shuffled = small_frame.sample(frac=1.0, random_state=1)
    d = select(shuffled, ids="uid", strata="agency", n=4, rng=5).sample
    e = select(small_frame, ids="uid", strata="agency", n=4, rng=5).sample
    assert sorted(d["uid"]) == sorted(e["uid"])
    # rng=None records its fresh entropy, which reproduces the draw
    f = select(small_frame, ids="uid", strata="agency", n=4, rng=None)
    g = select(small_frame, ids="uid", strata="agency", n=4,
               rng=np.random.SeedSequence(f.record.seed_entropy))
    pd.testing.assert_frame_equal(f.sample, g.sample)


# ---------------------------------------------------------------------------- multistage


def test_multistage_two_and_three_stages(small_frame):
    fr = small_frame.assign(commune=lambda d: d["district"] + "-" + (d["uid"] % 2).astype(str))
    before = fr.copy()
    ms = select_multistage(fr, stages=[
        Stage(cluster="district", n=3, method="pps_systematic", size="visits"),
        Stage(cluster="commune", n=1),
        Stage(unit="uid", n=2),
    ], rng=6)
    pd.testing.assert_frame_equal(fr, before)
    s = ms.sample
    assert len(s) == 6 and s["psu_stage1"].nunique() == 3
    dist_size = fr.groupby("district")["visits"].sum()
    pi1 = pd.Series(inclusion_probabilities(dist_size.to_numpy(), 3), index=dist_size.index)
    np.testing.assert_allclose(s["prob_stage1"], pi1.loc[s["psu_stage1"]], rtol=1e-12)
    np.testing.assert_allclose(s["prob_stage2"], 0.5)
    np.testing.assert_allclose(s["prob_stage3"], 2 / 5)
    assert (s["fpc_stage1"] == 6).all() and (s["fpc_stage2"] == 2).all()
    assert (s["fpc_stage3"] == 5).all()
    prod = s["prob_stage1"] * s["prob_stage2"] * s["prob_stage3"]
    np.testing.assert_allclose(s["inclusion_prob"], prod, rtol=1e-14)
    np.testing.assert_allclose(s["design_weight"], 1 / prod, rtol=1e-14)
    # stratified first stage
    fr2 = fr.assign(region=np.where(fr["district"] <= "d3", "north", "south"))
    ms2 = select_multistage(fr2, stages=[
        Stage(cluster="district", n={"north": 1, "south": 2}, stratum="region"),
        Stage(unit="uid", n=3),
    ], rng=1)
    s2 = ms2.sample
    assert s2.groupby("stratum")["psu_stage1"].nunique().to_dict() == {"north": 1, "south": 2}
    np.testing.assert_allclose(s2.loc[s2["stratum"] == "north", "prob_stage1"], 1 / 3)
    np.testing.assert_allclose(s2["design_weight"], 1 / (s2["prob_stage1"] * 0.3))
    assert (s2["fpc_stage1"] == 3).all() and (s2["fpc_stage2"] == 10).all()


def test_multistage_errors(small_frame):
    fr = small_frame.assign(half=small_frame["uid"] % 2)
    with pytest.raises(DesignError, match="nested"):
        select_multistage(fr, stages=[
            Stage(cluster="district", n=1, stratum="half"), Stage(unit="uid", n=1)], rng=1)
    with pytest.raises(SatsampleError, match="last stage"):
        select_multistage(small_frame, stages=[Stage(cluster="district", n=1)], rng=1)
    with pytest.raises(DesignError, match="exceeds"):
        select_multistage(small_frame, stages=[
            Stage(cluster="district", n=2), Stage(unit="uid", n=11)], rng=1)


# ---------------------------------------------------------------------------- bad input


def test_bad_input_messages(small_frame):
    dup = pd.concat([small_frame, small_frame.iloc[[3]]])
    with pytest.raises(SatsampleError, match=r"duplicated values: .*4"):
        select(dup, ids="uid", n=3, rng=1)
    miss = small_frame.astype({"uid": float})
    miss.loc[5, "uid"] = np.nan
    with pytest.raises(SatsampleError, match="'uid' has 1 missing"):
        select(miss, ids="uid", n=3, rng=1)
    for bad in (0.0, -2.0, np.nan):
        fr = small_frame.copy()
        fr.loc[7, "visits"] = bad
        with pytest.raises(SatsampleError, match=r"size measure 'visits'.*unit 8"):
            select(fr, ids="uid", n=3, method="pps_brewer", size="visits", rng=1)
    with pytest.raises(DesignError, match=r"'Z'.*not in the frame"):
        select(small_frame, ids="uid", strata="agency", n={"A": 1, "B": 1, "C": 1, "Z": 2},
               rng=1)
    with pytest.raises(DesignError, match=r"no sample size.*'C'"):
        select(small_frame, ids="uid", strata="agency", n={"A": 1, "B": 1}, rng=1)
    with pytest.raises(SatsampleError, match="method"):
        select(small_frame, ids="uid", n=3, method="quota", rng=1)
    with pytest.raises(SatsampleError, match="needs size"):
        select(small_frame, ids="uid", n=3, method="pps_sampford", rng=1)
    with pytest.raises(SatsampleError, match="'nope'"):
        select(small_frame, ids="uid", strata="nope", n=3, rng=1)
    with pytest.raises(SatsampleError, match="size"):
        inclusion_probabilities([1.0, 0.0, 2.0], 2)
