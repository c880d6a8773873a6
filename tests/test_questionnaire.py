"""Questionnaire definitions: built-ins, validation, indicators, aggregation, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from satsample._validation import SatsampleError
from satsample.questionnaire import (
    Element,
    Questionnaire,
    available_questionnaires,
    load_questionnaire,
)

REFERENCE = Path(__file__).resolve().parent / "reference"


def tiny() -> Questionnaire:
    return Questionnaire(
        name="tiny",
        elements=(
            Element(code="A", label="first", items=("a1", "a2")),
            Element(code="B", label="second", items=("b1",)),
        ),
    )


# ------------------------------------------------------------------ built-ins
def test_available_builtins():
    assert available_questionnaires() == ("reference_22", "sipas_2017", "sipas_2022")


@pytest.mark.parametrize(
    ("name", "n_items", "split", "first", "last", "reconstructed"),
    [
        ("sipas_2017", 22, [4, 5, 6, 3, 4], "q01", "q22", True),
        ("sipas_2022", 19, [4, 4, 5, 3, 3], "s01", "s19", False),
        ("reference_22", 22, [5, 5, 4, 4, 4], "q01", "q22", False),
    ],
)
def test_builtin_layouts(name, n_items, split, first, last, reconstructed):
    q = load_questionnaire(name)
    assert q.name == name
    assert len(q.items) == n_items == q.n_items
    assert [len(el.items) for el in q.elements] == split
    assert q.element_codes == ("E1", "E2", "E3", "E4", "E5")
    assert q.items[0] == first and q.items[-1] == last
    prefix = first[0]
    assert q.items == tuple(f"{prefix}{i:02d}" for i in range(1, n_items + 1))
    assert q.reconstructed is reconstructed
    assert q.valid_codes == (1, 2, 3, 4, 5)
    assert q.satisfied_codes == (4, 5)
    assert q.unusable_codes == (9,)
    assert q.aggregation == "mean_of_means"
    assert q.source


def test_builtin_labels_and_provenance():
    q17 = load_questionnaire("sipas_2017")
    assert len(q17.item_labels) == 22
    assert q17.element("E2").label_vi == "Thủ tục hành chính"
    assert "[I]" in q17.source and "RECONSTRUCTED" in q17.source
    q22 = load_questionnaire("sipas_2022")
    assert "[S]" in q22.source
    assert q22.element_of("s13") == "E3" and q22.element_of("s14") == "E4"
    assert q17.element_of("q10") == "E3" and q17.element_of("q19") == "E5"
    assert q17.item_element["q04"] == "E1"
    with pytest.raises(SatsampleError, match="'q99' is not in questionnaire 'sipas_2017'"):
        q17.element_of("q99")


def test_reference_22_matches_items_csv():
    path = REFERENCE / "data" / "items.csv"
    items = pd.read_csv(path)
    q = load_questionnaire("reference_22")
    assert list(q.items) == items["item"].tolist()
    assert [q.element_of(i) for i in q.items] == items["element"].tolist()
    labels = dict(zip(items["element"], items["element_label"]))
    assert {el.code: el.label for el in q.elements} == labels


def test_unknown_builtin():
    with pytest.raises(SatsampleError, match="'sipas_1999' is not built in; available: "):
        load_questionnaire("sipas_1999")


# ------------------------------------------------------------------ validation
def test_item_twice_across_elements():
    with pytest.raises(
        SatsampleError, match=r"item 'a2' appears twice \(in elements 'A' and 'B'\)"
    ):
        Questionnaire(
            name="bad",
            elements=(
                Element(code="A", label="a", items=("a1", "a2")),
                Element(code="B", label="b", items=("a2",)),
            ),
        )


def test_item_twice_in_one_element():
    with pytest.raises(SatsampleError, match="item 'a1' appears twice in element 'A'"):
        Element(code="A", label="a", items=("a1", "a1"))


def test_empty_element_and_questionnaire():
    with pytest.raises(SatsampleError, match="element 'E2' is empty: it has no item"):
        Element(code="E2", label="x", items=())
    with pytest.raises(SatsampleError, match="questionnaire 'none' is empty: it has no element"):
        Questionnaire(name="none", elements=())
    with pytest.raises(SatsampleError, match="element 'E2' is empty"):
        Questionnaire.from_dict(
            {"name": "d", "elements": [{"code": "E1", "label": "x", "items": ["a"]},
                                       {"code": "E2", "label": "y", "items": []}]}
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"satisfied_codes": (4, 6)}, r"satisfied code\(s\) \[6\] are not valid codes"),
        ({"unusable_codes": (5, 9)}, r"code\(s\) \[5\] are both valid and unusable"),
        ({"valid_codes": (1, 2, 2, 3)}, r"valid_codes lists code\(s\) \[2\] more than once"),
        ({"valid_codes": (5, 4, 3, 2, 1)}, "valid_codes must be in increasing order"),
        ({"satisfied_codes": ()}, "satisfied_codes is empty"),
        ({"satisfied_codes": (4.5,)}, "satisfied_codes must be integers"),
        ({"aggregation": "median"}, "aggregation='median' is not one of 'mean_of_means'"),
        ({"item_labels": {"zz": "?"}}, r"item_labels names unknown item\(s\) \['zz'\]"),
    ],
)
def test_bad_codes_and_options(changes, message):
    base = {"name": "t", "elements": tiny().elements}
    with pytest.raises(SatsampleError, match=message):
        Questionnaire(**base, **changes)


def test_duplicate_element_codes():
    with pytest.raises(SatsampleError, match=r"element code\(s\) \['A'\] used more than once"):
        Questionnaire(
            name="t",
            elements=(
                Element(code="A", label="a", items=("a1",)),
                Element(code="A", label="b", items=("b1",)),
            ),
        )


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(SatsampleError, match=r"unknown key\(s\) \['satisfied'\]"):
        Questionnaire.from_dict(
            {"name": "t", "satisfied": [5], "elements": [{"code": "A", "label": "",
                                                          "items": ["a"]}]}
        )


def test_lists_are_stored_as_tuples_and_frozen():
    q = Questionnaire(
        name="t",
        elements=[Element(code="A", label="a", items=["x", "y"])],
        satisfied_codes=[4, 5],
        item_labels={"x": "first"},
    )
    assert q.elements[0].items == ("x", "y")
    assert q.satisfied_codes == (4, 5)
    with pytest.raises(TypeError):
        q.item_labels["x"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        q.name = "other"  # type: ignore[misc]
    assert hash(q) == hash(Questionnaire.from_dict(q.to_dict()))


# ------------------------------------------------------------------ indicators
def answers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a1": [5, 4, 3, 9, np.nan, 1],
            "a2": pd.array([2, None, 4, 4, 5, 9], dtype="Int64"),
            "b1": ["5", "3", None, "4", "9", "1"],
            "other": list("uvwxyz"),
        }
    )


def test_indicators_satisfied_by_hand():
    data = answers()
    before = data.copy()
    y, d = tiny().indicators(data)
    expected_d = np.array(
        [[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=float
    )
    expected_y = np.array(
        [[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=float
    )
    assert y.dtype == np.float64 and d.dtype == np.float64
    np.testing.assert_array_equal(d, expected_d)
    np.testing.assert_array_equal(y, expected_y)
    pd.testing.assert_frame_equal(data, before)


def test_indicators_mean_score_and_top_two_box():
    q = tiny()
    y, d = q.indicators(answers(), measure="mean_score")
    np.testing.assert_array_equal(
        y, [[5, 2, 5], [4, 0, 3], [3, 4, 0], [0, 4, 4], [0, 5, 0], [1, 0, 1]]
    )
    # mean score of a1 over its 4 valid answers: (5+4+3+1)/4
    assert y[:, 0].sum() / d[:, 0].sum() == pytest.approx(13 / 4, abs=0)
    y2, _ = q.indicators(answers(), measure="top_two_box")
    y_sat, _ = q.indicators(answers())
    np.testing.assert_array_equal(y2, y_sat)  # on 1..5 the top two box is {4, 5}
    q5 = q.with_codes(satisfied_codes=(5,))
    y5, d5 = q5.indicators(answers())
    np.testing.assert_array_equal(y5[:, 0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(d5, d)
    q7 = q.with_codes(valid_codes=range(1, 8), satisfied_codes=(6, 7))
    data7 = pd.DataFrame({"a1": [7, 6, 5, 4], "a2": [1, 2, 3, 9], "b1": [6, 6, 6, 6]})
    y7, _ = q7.indicators(data7, measure="top_two_box")
    np.testing.assert_array_equal(y7[:, 0], [1, 1, 0, 0])
    with pytest.raises(SatsampleError, match="measure='mean' is not one of"):
        q.indicators(answers(), measure="mean")  # type: ignore[arg-type]


def test_unusable_codes_are_configurable():
    q = tiny().with_codes(unusable_codes=(9, 0))
    data = pd.DataFrame({"a1": [0, 9, 5], "a2": [4, 4, 4], "b1": [1, 1, 1]})
    y, d = q.indicators(data)
    np.testing.assert_array_equal(d[:, 0], [0, 0, 1])
    np.testing.assert_array_equal(y[:, 0], [0, 0, 1])
    with pytest.raises(SatsampleError, match=r"column 'a1': 1 row\(s\) with invalid code\(s\) 0"):
        tiny().indicators(data)


def test_invalid_code_names_column_codes_and_count():
    data = pd.DataFrame({"a1": [5, 7, 7, 0, 4], "a2": [1, 2, 3, 4, 5], "b1": [1, 2, 3, 4, 6]})
    with pytest.raises(SatsampleError) as info:
        tiny().indicators(data)
    message = str(info.value)
    assert "column 'a1': 3 row(s) with invalid code(s) 0, 7" in message
    assert "column 'b1': 1 row(s) with invalid code(s) 6" in message
    assert "'a2'" not in message
    assert "\n" not in message


def test_non_numeric_and_missing_columns():
    data = pd.DataFrame({"a1": ["5", "x", "y"], "a2": [1, 2, 3], "b1": [1, 2, 3]})
    with pytest.raises(SatsampleError, match=r"item column 'a1': 2 row\(s\) hold non-numeric"):
        tiny().indicators(data)
    with pytest.raises(SatsampleError, match=r"item column\(s\) 'a2', 'b1' of questionnaire"):
        tiny().indicators(pd.DataFrame({"a1": [1]}))


def test_validate_answers_report():
    data = answers()
    data.loc[0, "a1"] = 6.0
    report = tiny().validate_answers(data)
    assert report.index.tolist() == ["a1", "a2", "b1"]
    assert report["element"].tolist() == ["A", "A", "B"]
    assert report["n_valid"].tolist() == [3, 4, 4]
    assert report["n_satisfied"].tolist() == [1, 3, 2]
    assert report["n_code_9"].tolist() == [1, 1, 1]
    assert report["n_blank"].tolist() == [1, 1, 1]
    assert report["n_unusable"].tolist() == [2, 2, 2]
    assert report["n_invalid"].tolist() == [1, 0, 0]
    assert report["invalid_codes"].tolist() == ["6", "", ""]
    total = report["n_valid"] + report["n_unusable"] + report["n_invalid"]
    assert (total == report["n_rows"]).all()


# ------------------------------------------------------------------ aggregation
def test_aggregate_by_hand_with_empty_item_and_element():
    q = tiny()
    num = np.array([[3.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    den = np.array([[4.0, 2.0, 5.0], [2.0, 0.0, 0.0]])
    p, e, index = q.aggregate(num, den)
    np.testing.assert_allclose(p[0], [0.75, 0.5, 0.4], rtol=1e-15)
    np.testing.assert_allclose(e[0], [0.625, 0.4], rtol=1e-15)
    assert index[0] == pytest.approx((0.625 + 0.4) / 2, rel=1e-15)
    # domain 2: a2 has no usable answer (left out of A), element B is empty (left out of I)
    assert p[1, 0] == 0.5 and np.isnan(p[1, 1]) and np.isnan(p[1, 2])
    assert e[1, 0] == 0.5 and np.isnan(e[1, 1])
    assert index[1] == 0.5
    _, _, none = q.aggregate(np.zeros(3), np.zeros(3))
    assert np.isnan(none)
    with pytest.raises(SatsampleError, match="must have the same shape ending in n_items=3"):
        q.aggregate(np.zeros(2), np.zeros(2))


def test_indicators_and_aggregate_reproduce_reference_case_A():
    case = REFERENCE / "cases" / "A_stratified_srs.json"
    spec = json.loads(case.read_text())
    sample = pd.read_csv(REFERENCE / "data" / Path(spec["inputs"]["sample"]).name)
    q = load_questionnaire("reference_22")
    y, d = q.indicators(sample)
    w = sample["design_weight"].to_numpy()
    p, e, index = q.aggregate(w @ y, w @ d)
    res = spec["results"]
    expected_items = np.array([r["estimate"] for r in res["items"]])
    np.testing.assert_allclose(p, expected_items, rtol=1e-10)
    assert [r["n"] for r in res["items"]] == d.sum(axis=0).astype(int).tolist()
    np.testing.assert_allclose(e, [res["index"][c] for c in q.element_codes], rtol=1e-10)
    assert index == pytest.approx(res["index"]["index"], rel=1e-10)
    # by agency: domain totals with the same weights
    groups = sample["agency_id"].to_numpy()
    labels = [r["domain"] for r in res["by"]["agency_id"]["index"]]
    num = np.stack([w[groups == g] @ y[groups == g] for g in labels])
    den = np.stack([w[groups == g] @ d[groups == g] for g in labels])
    _, e_by, i_by = q.aggregate(num, den)
    expected = np.array([r["index"] for r in res["by"]["agency_id"]["index"]])
    np.testing.assert_allclose(i_by, expected, rtol=1e-10)
    expected_e5 = np.array([r["E5"] for r in res["by"]["agency_id"]["index"]])
    np.testing.assert_allclose(e_by[:, 4], expected_e5, rtol=1e-10)


# ------------------------------------------------------------------ JSON and helpers
@pytest.mark.parametrize("name", ["sipas_2017", "sipas_2022", "reference_22"])
def test_json_round_trip(name, tmp_path):
    q = load_questionnaire(name)
    path = q.to_json(tmp_path / f"{name}.json")
    back = Questionnaire.from_json(path)
    assert back == q
    assert dict(back.item_labels) == dict(q.item_labels)
    assert dict(back.scale_labels) == dict(q.scale_labels)
    assert json.loads(path.read_text(encoding="utf-8"))["elements"][0]["code"] == "E1"


def test_user_defined_json_with_plain_item_names(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "name": "mine",
                "satisfied_codes": [5],
                "unusable_codes": [],
                "elements": [
                    {"code": "X", "label": "x", "items": ["c1", "c2"]},
                    {"code": "Y", "label": "y", "items": [{"id": "c3", "label": "third"}]},
                ],
            }
        ),
        encoding="utf-8",
    )
    q = Questionnaire.from_json(path)
    assert q.items == ("c1", "c2", "c3")
    assert q.satisfied_codes == (5,) and q.unusable_codes == ()
    assert dict(q.item_labels) == {"c3": "third"}
    with pytest.raises(SatsampleError, match="is not valid JSON"):
        (tmp_path / "broken.json").write_text("{", encoding="utf-8")
        Questionnaire.from_json(tmp_path / "broken.json")
    with pytest.raises(SatsampleError, match="cannot read questionnaire file"):
        Questionnaire.from_json(tmp_path / "absent.json")


def test_select_elements():
    q = load_questionnaire("sipas_2017")
    sub = q.select_elements(["E4", "E1"], name="two")
    assert sub.name == "two"
    assert sub.items == ("q16", "q17", "q18", "q01", "q02", "q03", "q04")
    assert set(sub.item_labels) == set(sub.items)
    np.testing.assert_array_equal(sub.element_index(), [0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(SatsampleError, match="element 'E9' is not in questionnaire"):
        q.select_elements(["E9"])


# ------------------------------------------------------------------ answer classes
@pytest.mark.parametrize("codes", [
    {},  # 1..5 valid, the default unusable codes
    {"valid_codes": (0, 1, 2, 3, 4), "unusable_codes": (9,), "satisfied_codes": (3, 4)},
    {"valid_codes": (1, 2, 3), "unusable_codes": (99999,), "satisfied_codes": (3,)},  # sparse
])
def test_answer_classes_equal_one_test_per_code(codes):
    """The one-pass lookup equals the equality tests ``x == code`` on awkward values."""
    from dataclasses import replace

    import reference_numpy as ref

    q = replace(tiny(), **codes)
    rng = np.random.default_rng(4)
    allc = [*q.valid_codes, *q.unusable_codes]
    odd = [np.nan, -0.0, 0.5, 2.0000000000000004, -1.0, 1e300, -1e300, np.inf, -np.inf,
           min(allc) - 1.0, max(allc) + 1.0, 65536.0 + min(allc)]
    x = rng.choice(np.array(allc + odd, dtype=np.float64), size=(3000, 3))
    x = np.asfortranarray(x)
    for measure, num in (("satisfied", q.satisfied_codes),
                         ("top_two_box", tuple(sorted(q.valid_codes)[-2:])), ("mean_score", ())):
        got = q._classes(x, num)
        np.testing.assert_array_equal(got, ref.answer_classes(x, q.valid_codes, q.unusable_codes,
                                                              num))
        ok = ~np.isin(got & 3, [0]).any(axis=1)
        frame = pd.DataFrame(x[ok], columns=["a1", "a2", "b1"])
        y, d = q.indicators(frame, measure=measure)
        xv = x[ok]
        valid = np.isin(xv, q.valid_codes)
        np.testing.assert_array_equal(d, valid.astype(float))
        want = np.where(valid, xv, 0.0) if measure == "mean_score" else (
            np.isin(xv, num) & valid).astype(float)
        np.testing.assert_array_equal(y, want)
