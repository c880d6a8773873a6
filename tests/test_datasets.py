"""Synthetic population: structure, determinism, exact truth, response simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from satsample._validation import SatsampleError
from satsample.datasets import (
    AGE_GROUPS,
    CHANNELS,
    LEVELS,
    Population,
    make_population,
    response_propensity,
    simulate_responses,
)
from satsample.questionnaire import load_questionnaire

N_USERS = 5_000
N_AGENCIES = 12


@pytest.fixture(scope="module")
def pop() -> Population:
    return make_population(n_users=N_USERS, n_agencies=N_AGENCIES, rng=7)


# ------------------------------------------------------------------ structure
def test_frame_shape_and_types(pop):
    f = pop.frame
    assert f.shape == (N_USERS, 11)
    assert f.columns.tolist() == [
        "user_id", "province", "district_id", "commune_id", "agency_id", "agency_name",
        "agency_level", "procedure_field", "channel", "sex", "age_group",
    ]
    assert f["user_id"].dtype == np.int64
    np.testing.assert_array_equal(f["user_id"], np.arange(1, N_USERS + 1))
    for col in f.columns[1:]:
        assert isinstance(f[col].dtype, pd.CategoricalDtype), col
    assert f["agency_level"].cat.categories.tolist() == list(LEVELS)
    assert f["channel"].cat.categories.tolist() == list(CHANNELS)
    assert f["age_group"].cat.categories.tolist() == list(AGE_GROUPS)
    assert set(f["sex"]) == {"F", "M"}
    assert f["province"].nunique() == 1
    assert pop.codes.shape == (N_USERS, 22) and pop.codes.dtype == np.uint8
    assert not pop.codes.flags.writeable
    assert pop.items == load_questionnaire("sipas_2017").items


def test_agencies_levels_and_nesting(pop):
    a = pop.agencies
    assert len(a) == N_AGENCIES
    # 12 agencies: round(0.2 * 12) = 2 provincial, round(0.15 * 12) = 2 district, 8 communes
    assert a["level"].value_counts().to_dict() == {"commune": 8, "province": 2, "district": 2}
    assert a["N_h"].sum() == N_USERS and (a["N_h"] >= 2).all()
    counts = pop.frame["agency_id"].value_counts().reindex(a["agency_id"])
    np.testing.assert_array_equal(counts.to_numpy(), a["N_h"].to_numpy())
    assert a["agency_id"].is_unique and a["name"].is_unique
    prov = a[a["level"] == "province"]
    assert prov["district_id"].isna().all() and prov["commune_id"].isna().all()
    dist = a[a["level"] == "district"]
    assert (dist["district_id"] == dist["agency_id"]).all() and dist["commune_id"].isna().all()
    comm = a[a["level"] == "commune"]
    assert (comm["commune_id"] == comm["agency_id"]).all()
    assert set(comm["district_id"]) == set(dist["district_id"])  # communes nested in districts
    f = pop.frame
    is_prov = f["agency_level"] == "province"
    assert f.loc[is_prov, "district_id"].isna().all()
    assert f.loc[~is_prov, "district_id"].notna().all()
    is_comm = f["agency_level"] == "commune"
    assert f.loc[is_comm, "commune_id"].notna().all()
    assert f.loc[~is_comm, "commune_id"].isna().all()
    pairs = f[["agency_id", "district_id"]].astype(object).fillna("-").drop_duplicates()
    lookup = a.set_index("agency_id")["district_id"].astype(object).fillna("-")
    assert len(pairs) == N_AGENCIES
    assert (pairs["district_id"].to_numpy() == lookup[pairs["agency_id"]].to_numpy()).all()


def test_default_size_structure_and_other_questionnaire():
    p = make_population(n_users=2_000, n_agencies=100, questionnaire="sipas_2022", rng=1)
    assert p.agencies["level"].value_counts().to_dict() == {
        "commune": 65, "province": 20, "district": 15,
    }
    assert p.codes.shape == (2_000, 19)
    assert p.answers().columns.tolist() == [f"s{i:02d}" for i in range(1, 20)]
    assert p.truth.agency_items.shape == (100, 19)


def test_answer_codes_and_unusable_rates(pop):
    codes = pop.codes
    assert set(np.unique(codes)) <= {0, 1, 2, 3, 4, 5, 9}
    blank = (codes == 0).mean()
    assert 0.015 < blank < 0.025  # documented 2 %
    e5 = codes[:, 18:22]
    assert 0.22 < (e5 == 9).mean() < 0.30  # "no opinion" about 25 % in E5
    assert 0.03 < (codes[:, :18] == 9).mean() < 0.06  # about 4 % elsewhere
    answers = pop.answers([0, 5, 7])
    assert answers.index.tolist() == [0, 5, 7]
    raw = codes[[0, 5, 7]].astype(float)
    raw[raw == 0] = np.nan
    np.testing.assert_array_equal(answers.to_numpy(), raw)
    with pytest.raises(SatsampleError, match=r"1 position\(s\) outside 0..4999"):
        pop.answers([0, N_USERS])


# ------------------------------------------------------------------ determinism
def test_determinism(pop):
    again = make_population(n_users=N_USERS, n_agencies=N_AGENCIES, rng=7)
    pd.testing.assert_frame_equal(pop.frame, again.frame)
    pd.testing.assert_frame_equal(pop.agencies, again.agencies)
    np.testing.assert_array_equal(pop.codes, again.codes)
    pd.testing.assert_frame_equal(pop.truth.agencies, again.truth.agencies)
    assert pop.truth.overall_index == again.truth.overall_index
    generator = make_population(
        n_users=N_USERS, n_agencies=N_AGENCIES, rng=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(pop.codes, generator.codes)
    other = make_population(n_users=N_USERS, n_agencies=N_AGENCIES, rng=8)
    assert not pop.frame["sex"].equals(other.frame["sex"])
    assert (pop.codes != other.codes).mean() > 0.3
    assert pop.truth.overall_index != other.truth.overall_index


# ------------------------------------------------------------------ truth
def hand_index(answers: pd.DataFrame, groups: pd.Series, q) -> pd.DataFrame:
    """Per group: item shares, element means and index, in plain pandas."""
    satisfied = answers.isin([4, 5]).astype(float)
    usable = answers.isin([1, 2, 3, 4, 5]).astype(float)
    shares = satisfied.groupby(groups.to_numpy()).sum() / usable.groupby(groups.to_numpy()).sum()
    out = pd.DataFrame(index=shares.index)
    for el in q.elements:
        out[el.code] = shares[list(el.items)].mean(axis=1)  # skips NaN (empty criterion)
    out["index"] = out[list(q.element_codes)].mean(axis=1)
    return pd.concat([out, shares], axis=1)


def test_truth_equals_hand_computation(pop):
    q = pop.questionnaire
    answers = pop.answers()
    by_agency = hand_index(answers, pop.frame["agency_id"].astype(str), q)
    truth = pop.truth
    by_agency = by_agency.loc[truth.agencies.index]
    np.testing.assert_allclose(truth.agencies["index"], by_agency["index"], rtol=1e-12)
    for code in q.element_codes:
        np.testing.assert_allclose(truth.agencies[code], by_agency[code], rtol=1e-12)
    np.testing.assert_allclose(
        truth.agency_items.to_numpy(), by_agency[list(q.items)].to_numpy(), rtol=1e-12
    )
    overall = hand_index(answers, pd.Series(np.zeros(N_USERS)), q).iloc[0]
    assert truth.overall_index == pytest.approx(overall["index"], rel=1e-12)
    np.testing.assert_allclose(
        truth.overall_elements.to_numpy(), overall[list(q.element_codes)].astype(float),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        truth.overall_items.to_numpy(), overall[list(q.items)].astype(float), rtol=1e-12
    )
    assert truth.mean_of_agencies == pytest.approx(by_agency["index"].mean(), rel=1e-12)
    np.testing.assert_array_equal(truth.agencies["N_h"], pop.agencies["N_h"])
    # plausible SIPAS-like level, agencies differ
    assert 0.6 < truth.overall_index < 0.95
    assert truth.agencies["index"].std() > 0.02
    assert truth.overall_elements["E5"] < truth.overall_elements["E3"]


def test_true_values_by_domain(pop):
    q = pop.questionnaire
    by_age = pop.true_values("age_group")
    hand = hand_index(pop.answers(), pop.frame["age_group"].astype(str), q)
    assert by_age.index.tolist() == list(AGE_GROUPS)
    np.testing.assert_allclose(by_age["index"], hand.loc[list(AGE_GROUPS), "index"], rtol=1e-12)
    assert by_age["N"].sum() == N_USERS
    # documented age effect: older users are more satisfied
    assert by_age["index"].is_monotonic_increasing
    all_users = pop.true_values()
    assert all_users["index"].iloc[0] == pytest.approx(pop.truth.overall_index, rel=1e-14)
    by_district = pop.true_values("district_id")
    assert by_district.index.isna().sum() == 1  # provincial departments: their own domain
    assert by_district["N"].sum() == N_USERS
    two = pop.true_values(["sex", "channel"])
    assert two.index.names == ["sex", "channel"] and len(two) == 6
    with pytest.raises(SatsampleError, match="by column"):
        pop.true_values("nope")


def test_satisfaction_by_group_direction(pop):
    by_channel = pop.true_values("channel")["index"]
    assert by_channel["online"] < by_channel["in_person"] < by_channel["postal"]


# ------------------------------------------------------------------ responses
def test_simulate_responses_census(pop):
    sample = pop.frame.copy()
    before = sample.copy()
    out = simulate_responses(pop, sample, rng=3)
    pd.testing.assert_frame_equal(sample, before)
    assert out.shape == (N_USERS, 11 + 1 + 22)
    assert out["responded"].dtype == bool
    pd.testing.assert_frame_equal(out[sample.columns], sample)
    items = list(pop.items)
    resp = out["responded"].to_numpy()
    assert out.loc[~resp, items].isna().all().all()
    np.testing.assert_array_equal(
        out.loc[resp, items].to_numpy(), pop.answers(np.flatnonzero(resp)).to_numpy()
    )
    rate = resp.mean()
    assert 0.6 < rate < 0.8
    by_age = out.groupby("age_group", observed=True)["responded"].mean()
    assert by_age.is_monotonic_decreasing  # young respond more, 60+ least
    assert by_age["18-29"] - by_age["60+"] > 0.15
    by_channel = out.groupby("channel", observed=True)["responded"].mean()
    assert by_channel["online"] > by_channel["in_person"] > by_channel["postal"]
    assert by_channel["online"] - by_channel["postal"] > 0.2
    # the true propensities order the same way
    prop = pd.Series(response_propensity(pop, np.arange(N_USERS)))
    mean_prop = prop.groupby(pop.frame["channel"].to_numpy()).mean()
    assert mean_prop["online"] > mean_prop["in_person"] > mean_prop["postal"]
    assert abs(mean_prop.mean() - by_channel.mean()) < 0.05
    # respondents under-represent the (more satisfied) old and postal users
    resp_share_60 = (out.loc[resp, "age_group"] == "60+").mean()
    assert resp_share_60 < (pop.frame["age_group"] == "60+").mean()


def test_simulate_responses_sample_deterministic_and_keeps_index(pop):
    rows = np.random.default_rng(0).choice(N_USERS, size=300, replace=False)
    sample = pop.frame.iloc[rows].copy()
    sample.index = pd.RangeIndex(1000, 1300)
    a = simulate_responses(pop, sample, rng=11, keep_propensity=True)
    b = simulate_responses(pop, sample, rng=11, keep_propensity=True)
    pd.testing.assert_frame_equal(a, b)
    c = simulate_responses(pop, sample, rng=12)
    assert not a["responded"].equals(c["responded"])
    assert a.index.tolist() == list(range(1000, 1300))
    np.testing.assert_allclose(a["response_propensity"], response_propensity(pop, rows))
    assert a["q01"].dtype == np.float64
    # only the id column is needed
    slim = simulate_responses(pop, sample[["user_id"]], rng=11)
    np.testing.assert_array_equal(slim["responded"], a["responded"])


def test_simulate_responses_bad_input(pop):
    sample = pop.frame.iloc[:5].copy()
    with pytest.raises(SatsampleError, match=r"id column\(s\) 'uid' not found"):
        simulate_responses(pop, sample, id="uid", rng=1)
    bad = sample.assign(user_id=[1, 2, 3, 4, N_USERS + 1])
    with pytest.raises(SatsampleError, match=r"1 value\(s\) are not user_ids of the population"):
        simulate_responses(pop, bad, rng=1)
    with pytest.raises(SatsampleError, match=r"sample already has column\(s\) 'q01'"):
        simulate_responses(pop, sample.assign(q01=1), rng=1)
    with pytest.raises(SatsampleError, match="must hold the integer user_id"):
        simulate_responses(pop, sample.assign(user_id=sample["user_id"].astype(str)), rng=1)


def test_make_population_bad_arguments():
    with pytest.raises(SatsampleError, match="n_users=10 must be at least 2 \\* n_agencies"):
        make_population(n_users=10, n_agencies=12)
    with pytest.raises(SatsampleError, match="n_agencies=2 must be an integer >= 3"):
        make_population(n_users=100, n_agencies=2)
    with pytest.raises(SatsampleError, match="'nope' is not built in"):
        make_population(n_users=100, n_agencies=5, questionnaire="nope")
