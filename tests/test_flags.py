"""Publication flags: thresholds, Korn-Graubard effective n (reference case F), reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from satsample._validation import SatsampleError
from satsample.outputs.flags import publication_flags

REF = Path(__file__).resolve().parent / "reference"


def _table():
    return pd.DataFrame({
        "agency": ["ok", "small", "noisy", "thin", "fewdf", "zero"],
        "estimate": [0.80, 0.80, 0.10, 0.80, 0.80, 1.0],
        "se": [0.02, 0.02, 0.04, 0.09, 0.02, 0.0],
        "n": [400, 20, 400, 400, 400, 50],
        "df": [100, 100, 100, 100, 5, 40],
    })


def test_flags_thresholds_and_effective_n_by_hand():
    tab = _table()
    before = tab.copy()
    out = publication_flags(tab)
    pd.testing.assert_frame_equal(tab, before)  # input untouched
    q = stats.t.ppf(0.025, 399) / stats.t.ppf(0.025, 100)
    neff_ok = 0.8 * 0.2 / 0.02**2 * q**2
    assert out.loc[0, "effective_n"] == pytest.approx(neff_ok, rel=1e-12)
    assert out.loc[1, "effective_n"] == 20  # capped at n
    assert out.loc[5, "effective_n"] == 50  # se 0 -> n
    neff_thin = 0.8 * 0.2 / 0.09**2 * q**2
    assert neff_thin < 30
    assert out.loc[3, "effective_n"] == pytest.approx(neff_thin, rel=1e-12)
    np.testing.assert_allclose(out["rse"], tab["se"] / tab["estimate"])
    assert out["flag_n"].tolist() == [False, True, False, False, False, False]
    assert out["flag_rse"].tolist() == [False, False, True, False, False, False]
    assert out["flag_effective_n"].tolist() == [False, True, False, True, False, False]
    assert out["flag_df"].tolist() == [False, False, False, False, True, False]
    assert out["status"].tolist() == ["publish", "suppress", "suppress", "suppress", "review",
                                      "publish"]
    assert out.loc[0, "reason"] == ""
    assert "too few respondents: n = 20 < 30" in out.loc[1, "reason"]
    assert "relative SE too high: 0.40 > 0.30" in out.loc[2, "reason"]
    assert "Korn-Graubard effective n too small" in out.loc[3, "reason"]
    assert out.loc[4, "reason"] == "few degrees of freedom: df = 5 < 8"
    # thresholds are options
    loose = publication_flags(tab, min_n=10, max_rse=None, min_effective_n=10, min_df=None)
    assert loose["status"].tolist() == ["publish"] * 6
    # NCHS-like CI width rule (Korn-Graubard interval on n_eff)
    wide = publication_flags(tab, max_ci_width=0.30)
    x = neff_thin * 0.8
    w = stats.beta.ppf(0.975, x + 1, neff_thin - x) - stats.beta.ppf(0.025, x, neff_thin - x + 1)
    assert wide.loc[3, "flag_ci_width"] == (w > 0.30)


def test_effective_n_matches_reference_case_f():
    path = REF / "cases" / "F_ci_proportions.json"
    case = json.loads(path.read_text())
    results = case["results"]
    records = [r for group in results.values() for r in (group if isinstance(group, list)
                                                          else [group])]
    checked = 0
    for rec in records:
        if not isinstance(rec, dict) or "beta" not in rec or "nrow_design" not in rec:
            continue
        p, se, degf, nrow = rec["estimate"], rec["se"], rec["degf"], rec["nrow_design"]
        level = float(rec.get("level", 0.95))
        if not 0 < p < 1:
            continue
        tab = pd.DataFrame({"estimate": [p], "se": [se], "n": [nrow], "df": [degf]})
        out = publication_flags(tab, level=level, max_ci_width=1.0)
        neff = p * (1 - p) / se**2 * (stats.t.ppf((1 - level) / 2, nrow - 1)
                                      / stats.t.ppf((1 - level) / 2, degf)) ** 2
        assert out.loc[0, "effective_n"] == pytest.approx(min(neff, nrow), rel=1e-12)
        if neff <= nrow:  # uncapped: the beta interval of R uses this n_eff
            a = 1 - level
            lo = stats.beta.ppf(a / 2, neff * p, neff * (1 - p) + 1)
            hi = stats.beta.ppf(1 - a / 2, neff * p + 1, neff * (1 - p))
            beta = rec["beta"]
            lo_r, hi_r = (beta["ci_low"], beta["ci_high"]) if isinstance(beta, dict) else beta
            assert lo == pytest.approx(lo_r, rel=1e-9)
            assert hi == pytest.approx(hi_r, rel=1e-9)
        checked += 1
    assert checked >= 3


def test_flags_bad_input_and_non_proportions():
    with pytest.raises(SatsampleError, match="se"):
        publication_flags(pd.DataFrame({"estimate": [0.5]}))
    with pytest.raises(SatsampleError, match="min_n"):
        publication_flags(_table(), min_n=-1)
    scores = pd.DataFrame({"estimate": [3.9, 4.2], "se": [0.05, 2.0], "n": [100, 100],
                           "df": [50, 50]})
    out = publication_flags(scores)
    assert out["effective_n"].isna().all()
    assert out["status"].tolist() == ["publish", "suppress"]
    nodf = publication_flags(_table().drop(columns="df"), df=None)
    assert not nodf["flag_df"].any()


def test_each_reason_is_stated_once():
    # n = 26 < 30 also makes n_eff <= 26 < 30: the reason is given once, the flag kept
    tab = pd.DataFrame({"estimate": [0.8], "se": [0.02], "n": [26], "df": [40]})
    out = publication_flags(tab)
    assert out.loc[0, "reason"] == "too few respondents: n = 26 < 30"
    assert bool(out.loc[0, "flag_effective_n"])


def test_flag_estimate_makes_publication_a_property_of_the_estimate():
    from outputs_data import SMALL, agencies_estimate

    from satsample.outputs.flags import flag_estimate

    est = agencies_estimate(0, n_agencies=40)
    flagged = flag_estimate(est)
    assert est.overall.columns.tolist() == [c for c in flagged.overall.columns
                                            if c not in ("effective_n", "status", "reason",
                                                         "source")]
    assert "status" not in est.overall.columns  # input untouched
    for tab, ref in ((flagged.overall, est.overall), (flagged.elements, est.elements),
                     (flagged.items, est.items)):
        expect = publication_flags(ref)
        assert tab["status"].tolist() == expect["status"].tolist()
        assert tab["reason"].tolist() == expect["reason"].tolist()
        assert set(tab["source"]) == {"direct"}
    sup = flagged.overall.loc[flagged.overall["status"] == "suppress", "agency_id"]
    assert set(sup) == {a for a in SMALL if a in set(est.overall["agency_id"])}
    assert flagged.options["publication_rule"]["min_n"] == 30
    # flagging twice keeps the first flags; a model-based row keeps its source
    again = flag_estimate(flagged, min_n=5)
    assert again.overall["status"].tolist() == flagged.overall["status"].tolist()
    ov = flagged.overall.copy()
    i = ov.index[ov["agency_id"] == sup.iloc[0]][0]
    ov.loc[i, ["status", "source"]] = ["publish", "model-based"]
    import dataclasses

    replaced = flag_estimate(dataclasses.replace(flagged, overall=ov))
    assert replaced.overall.loc[i, "source"] == "model-based"
    with pytest.raises(SatsampleError, match="IndexEstimate"):
        flag_estimate(est.overall)
