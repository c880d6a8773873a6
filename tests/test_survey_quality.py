"""The validate checks one by one on a tiny plan (hand-made forms, known answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from satsample import Element, Questionnaire
from satsample.survey.quality import check_returns

Q = Questionnaire(name="t4", elements=(Element(code="E", label="e", items=("a", "b", "c", "d")),))
UNITS = pd.DataFrame({"id": [f"u{i}" for i in range(1, 11)],
                      "agency": ["A"] * 5 + ["B"] * 5,
                      "reserve_rank": [0, 0, 0, 1, 2, 0, 0, 0, 1, 2]})


def _check(rows, **kw):
    forms = pd.DataFrame(rows, columns=["id", "agency_reported", "disposition_raw", "a", "b",
                                        "c", "d"])
    forms.insert(0, "_file", "f.csv")
    forms.insert(1, "_row", np.arange(2, 2 + len(forms)))
    for c in "abcd":
        forms[c] = forms[c].astype(float)
    unread = pd.DataFrame(False, index=forms.index, columns=list("abcd"))
    opts = dict(unreadable=unread, raw=forms[list("abcd")].astype(object), units=UNITS,
                agencies=["A", "B"], released_record=None, questionnaire=Q,
                disposition_codes={"ok": "I"}, not_returned="UO", respondents=("I", "P"),
                complete_min=0.75, partial_min=0.5, straight_min_items=3,
                straight_max_share=0.5, has_disposition=True, has_agency=True,
                disposition_column="disp", agency_column="ag")
    opts.update(kw)
    return check_returns(forms, **opts)


def test_each_check_is_reported_with_its_file_column_value_and_rows():
    res = _check([
        ("u1", "A", "ok", 4, 5, 3, 2),
        ("u2", "Z", "ok", 4, 4, 5, 1),          # agency not in the frame
        ("u3", "B", "1.1", 3, 5, 4, 2),         # agency differs from the sample's
        (None, "A", "ok", 5, 5, 5, 5),          # no id
        ("u6", "B", "??", 1, 2, 3, 4),          # unknown disposition: derived (I)
        ("u7", "B", "NE", 1, None, None, None),  # not eligible with an answer
        ("u8", "B", "ok", 2, 3, 4, 5),
        ("u9", "B", "ok", 2, 3, 4, 5),          # same answers as u8: keyed twice?
    ])
    by = {f.check: f for f in res.findings}
    assert by["unknown_agency"].value == "Z" and by["unknown_agency"].rows == (3,)
    assert by["agency_mismatch"].value == "B" and by["agency_mismatch"].agency == "A"
    assert by["missing_id"].rows == (5,)
    assert by["unknown_disposition"].value == "??" and by["unknown_disposition"].column == "disp"
    assert by["disposition_contradiction"].ids == ("u7",)
    assert set(by["duplicated_form"].ids) == {"u8", "u9"}
    # item d is answered in A (u1, u2, u3 are A's forms)
    assert "item_never_answered" not in by
    cases = res.cases.set_index("id")["disposition_class"]
    assert cases["u6"] == "I" and cases["u7"] == "R"  # u7: 1 of 4 answered -> break-off
    # reserve rank 1 was used in B (u9), none in A: the sample is the main units and u9
    assert res.released == {"A": 0, "B": 1}
    assert sorted(cases.index) == ["u1", "u2", "u3", "u6", "u7", "u8", "u9"]
    assert cases["u2"] == "I" and cases["u3"] == "I"  # kept, with the sample's agency


def test_items_never_answered_and_straightlining():
    res = _check([
        ("u1", "A", "ok", 4, 4, 4, None),
        ("u2", "A", "ok", 5, 5, 5, None),
        ("u3", "A", "ok", 3, 1, 2, None),
    ], straight_max_share=0.5)
    by = {f.check: f for f in res.findings}
    assert by["item_never_answered"].column == "d" and by["item_never_answered"].agency == "A"
    assert by["straightlining"].value == "0.667" and set(by["straightlining"].ids) == {"u1", "u2"}
    assert res.by_agency.set_index("agency").loc["A", "straightline_share"] == 2 / 3
