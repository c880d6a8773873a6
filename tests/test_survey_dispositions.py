"""AAPOR dispositions and outcome rates against hand calculations (Standard Definitions 2023)."""

from __future__ import annotations

import pandas as pd
import pytest

from satsample.survey import ConfigError, classify_dispositions, outcome_rates
from satsample.survey.dispositions import disposition_class, eligibility_rate

# a small table: I=40, P=5, R=10, NC=8, O=2, UH=3, UO=7, NE=5  (80 cases)
COUNTS = {"I": 40, "P": 5, "R": 10, "NC": 8, "O": 2, "UH": 3, "UO": 7, "NE": 5}


def _cases() -> pd.DataFrame:
    rows = [c for c, k in COUNTS.items() for _ in range(k)]
    return pd.DataFrame({"disposition_class": rows})


def test_rates_equal_the_aapor_formulas_by_hand_with_e_below_one():
    # by hand: I+P = 45, R+NC+O = 20, U = UH+UO = 10, e = 0.4 -> eU = 4
    row = outcome_rates(_cases(), e=0.4).iloc[0]
    assert row["RR1"] == pytest.approx(40 / 75, abs=1e-15)
    assert row["RR2"] == pytest.approx(45 / 75, abs=1e-15)
    assert row["RR3"] == pytest.approx(40 / 69, abs=1e-15)
    assert row["RR4"] == pytest.approx(45 / 69, abs=1e-15)
    assert row["RR5"] == pytest.approx(40 / 65, abs=1e-15)
    assert row["RR6"] == pytest.approx(45 / 65, abs=1e-15)
    assert row["COOP1"] == pytest.approx(40 / 57, abs=1e-15)  # (I+P)+R+O = 57
    assert row["COOP2"] == pytest.approx(45 / 57, abs=1e-15)
    assert row["COOP3"] == pytest.approx(40 / 55, abs=1e-15)  # (I+P)+R = 55
    assert row["COOP4"] == pytest.approx(45 / 55, abs=1e-15)
    assert row["REF1"] == pytest.approx(10 / 75, abs=1e-15)
    assert row["REF2"] == pytest.approx(10 / 69, abs=1e-15)
    assert row["REF3"] == pytest.approx(10 / 65, abs=1e-15)
    assert row["CON1"] == pytest.approx(57 / 75, abs=1e-15)
    assert row["CON2"] == pytest.approx(57 / 69, abs=1e-15)
    assert row["CON3"] == pytest.approx(57 / 65, abs=1e-15)
    assert row["sampled"] == 80 and row["e"] == 0.4 and row["e_basis"] == "set"


def test_proportional_e_is_the_eligible_share_of_known_cases():
    # e = (I+P+R+NC+O) / (I+P+R+NC+O+NE) = 65 / 70
    row = outcome_rates(_cases()).iloc[0]
    e = 65 / 70
    assert row["e"] == pytest.approx(e, abs=1e-15)
    assert row["RR3"] == pytest.approx(40 / (65 + e * 10), abs=1e-15)
    assert eligibility_rate({"I": 3, "NE": 1}) == 0.75
    assert eligibility_rate({"UO": 4}) == 1.0  # nothing known: every unknown counted


def test_e_equal_one_gives_rr1_and_zero_gives_rr5():
    one = outcome_rates(_cases(), e=1.0).iloc[0]
    zero = outcome_rates(_cases(), e=0.0).iloc[0]
    assert one["RR3"] == one["RR1"] and zero["RR3"] == zero["RR5"]


def test_groups_and_weighted_rates():
    cases = _cases().assign(agency=["A", "B"] * 40, w=[1.0, 3.0] * 40)
    tab = outcome_rates(cases, by=["agency"], weights="w", e=0.5)
    assert list(tab["group"]) == ["all", "A", "B"] and set(tab["basis"]) == {"weighted"}
    a = cases[cases["agency"] == "A"]
    t = {c: float((a["disposition_class"] == c).sum()) for c in COUNTS}
    u = t["UH"] + t["UO"]
    want = t["I"] / (t["I"] + t["P"] + t["R"] + t["NC"] + t["O"] + 0.5 * u)
    assert tab.iloc[1]["RR3"] == pytest.approx(want, abs=1e-15)
    # B's weights are all 3: weighted rates equal the unweighted ones
    b_w = tab.iloc[2]
    b_u = outcome_rates(cases[cases["agency"] == "B"], e=0.5).iloc[0]
    for name in ("RR1", "RR3", "COOP1", "REF2", "CON3"):
        assert b_w[name] == pytest.approx(b_u[name], abs=1e-15)


@pytest.mark.parametrize(("code", "cls"), [
    ("1.1", "I"), (1.1, "I"), ("1.2", "P"), ("2.10", "R"), ("2.11", "R"), ("2.12", "R"),
    ("2.111", "R"), (2.2, "NC"), ("2.21", "NC"), ("2.32", "O"), ("3.19", "UH"),
    ("3.10", "UH"), ("3.20", "UO"), ("3.91", "UO"), ("4.10", "NE"), ("4.7", "NE"),
    ("nc", "NC"), (" UO ", "UO"), ("1.0", None), ("1.3", None), ("5.1", None), ("x", None),
    (None, None), ("", None),
])
def test_disposition_codes(code, cls):
    assert disposition_class(code) == cls


def test_office_codes_map_to_classes():
    got = classify_dispositions(["Hoàn thành", "từ chối ", "2.20", "?"],
                                {"Hoàn thành": "I", "Từ chối": "2.11"})
    assert got.tolist() == ["I", "R", "NC", None]
    with pytest.raises(ConfigError, match=r"'Từ chối'.*'X'"):
        classify_dispositions(["a"], {"Từ chối": "X"})


def test_unknown_class_is_named():
    with pytest.raises(ConfigError, match=r"\['ZZ'\]"):
        outcome_rates(pd.DataFrame({"disposition_class": ["I", "ZZ"]}))
