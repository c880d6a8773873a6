"""Sample sizes: case E sample-size grid and per-agency sizes, Yamane, hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import load_case

from satsample._validation import SatsampleError
from satsample.samplesize import (
    domain_sample_sizes,
    round_size,
    sample_size_mean,
    sample_size_proportion,
    yamane,
    z_value,
)


@pytest.fixture(scope="module")
def case_e():
    return load_case("E_sampling_design")


def rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.reference
def test_case_e_sample_size_grid(case_e):
    grid = case_e["results"]["sample_size_grid"]
    assert len(grid) == 144
    worst = 0.0
    for r in grid:
        for rule in ("cochran", "simple"):
            s = sample_size_proportion(p=r["p"], moe=r["e"], level=r["conf"], deff=r["deff"],
                                       N=r["N"], fpc_rule=rule, rounding="none")
            worst = max(worst, rel(s.z, r["z"]), rel(s.n0, r["n0"]),
                        rel(s.n_deff, r["n0_deff"]), rel(s.n_fpc, r[f"n_{rule}"]))
            c = sample_size_proportion(p=r["p"], moe=r["e"], level=r["conf"], deff=r["deff"],
                                       N=r["N"], fpc_rule=rule)
            assert c.n_select == r[f"n_{rule}_ceiling"]
            assert c.n_respondents == r[f"n_{rule}_ceiling"]
    assert worst <= 1e-10


@pytest.mark.reference
def test_case_e_per_agency(case_e):
    recs = pd.DataFrame(case_e["results"]["sample_size_per_agency"]).set_index("agency_id")
    out = domain_sample_sizes(recs["N_h"], moe=0.05, p=recs["p"])
    np.testing.assert_allclose(out["n0"], recs["n0"], rtol=1e-10)
    np.testing.assert_allclose(out["n_fpc"], recs["n_cochran"], rtol=1e-10)
    assert (out["n_select"] == recs["n_cochran_ceiling"]).all()
    assert not out["take_all"].any()
    # the expected margin at the rounded-up size is at most the target and close to it
    assert (out["expected_moe"] <= 0.05 + 1e-12).all()
    assert (out["expected_moe"] > 0.045).all()


def test_z_is_exact_quantile():
    assert z_value(0.95) == pytest.approx(1.959963984540054, rel=1e-15)
    assert z_value(0.90) == pytest.approx(1.6448536269514722, rel=1e-15)


def test_yamane_sipas_vectors():
    N = [100, 500, 1000, 5000, 10000, 100000]
    exact = yamane(N, rounding="none")
    np.testing.assert_allclose(exact, [80.0, 222.2222222222, 285.7142857143, 370.3703703704,
                                       384.6153846154, 398.4063745020], rtol=1e-10)
    # 100 / 1.25 is 80 in exact arithmetic: the float noise must not push it to 81
    assert yamane(100) == 80
    assert list(yamane(N)) == [80, 223, 286, 371, 385, 399]
    assert list(yamane(N, rounding="round")) == [80, 222, 286, 370, 385, 398]
    s = yamane(pd.Series([100, 500], index=["a", "b"]))
    assert list(s.index) == ["a", "b"] and list(s) == [80, 223]


def test_relative_moe_deff_and_response_rate_by_hand():
    z = z_value(0.95)
    s = sample_size_proportion(p=0.8, moe=0.05, relative=True, deff=1.5, response_rate=0.6)
    n0 = z * z * 0.8 * 0.2 / 0.04**2
    assert s.n0 == pytest.approx(n0, rel=1e-13)
    assert s.n_respondents == math.ceil(1.5 * n0)
    assert s.n_select == math.ceil(1.5 * n0 / 0.6)
    # take-all when the inflated size exceeds N
    t = sample_size_proportion(p=0.5, moe=0.05, N=300, response_rate=0.5)
    assert t.take_all and t.n_select == 300


def test_mean_by_hand():
    z = z_value(0.95)
    s = sample_size_mean(sd=12.0, moe=2.0, N=1000, rounding="none")
    n0 = z * z * 144 / 4
    assert s.n_fpc == pytest.approx(n0 / (1 + n0 / 1000), rel=1e-13)
    r = sample_size_mean(sd=12.0, moe=0.1, mean=20.0, relative=True)
    assert r.n_select == math.ceil(z * z * 144 / 4 - 1e-9)


def test_round_size():
    assert round_size(80.00000000000001) == 80
    assert round_size(80.001) == 81
    assert round_size(80.5, "round") == 81
    assert round_size(80.4, "none") == 80.4


@pytest.mark.parametrize("moe", [0, 1, -0.1, 1.5, float("nan")])
def test_bad_moe(moe):
    with pytest.raises(SatsampleError, match="moe"):
        sample_size_proportion(moe=moe)


@pytest.mark.parametrize("rr", [0, -0.5, 1.2])
def test_bad_response_rate(rr):
    with pytest.raises(SatsampleError, match="response_rate"):
        sample_size_proportion(moe=0.05, response_rate=rr)


def test_domain_errors_name_domain():
    counts = pd.Series({"A": 100, "B": 200})
    with pytest.raises(SatsampleError, match="'B'"):
        domain_sample_sizes(counts, moe=0.05, response_rate={"A": 0.8, "B": 0.0})
    with pytest.raises(SatsampleError, match="no value for domain"):
        domain_sample_sizes(counts, moe=0.05, p={"A": 0.5})


def test_domain_from_dataframe_columns_and_input_unchanged():
    df = pd.DataFrame({"N_h": [50, 5000], "p": [0.7, 0.9], "rr": [0.5, 0.9]},
                      index=["small", "big"])
    before = df.copy()
    out = domain_sample_sizes(df, moe=0.05, p="p", response_rate="rr")
    pd.testing.assert_frame_equal(df, before)
    assert out.loc["small", "take_all"] and out.loc["small", "n_select"] == 50
    # the small agency cannot reach the target with a census at 50 % response
    assert out.loc["small", "expected_moe"] > 0.05
    assert not out.loc["big", "take_all"]
