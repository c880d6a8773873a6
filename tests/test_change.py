"""Year-on-year change: SE and intervals by hand, layout mapping, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_ranking import make_standin

from satsample._validation import SatsampleError
from satsample.outputs.change import SIPAS_2017_2022_ITEMS, ItemMapping, change, map_items
from satsample.questionnaire import Element, Questionnaire, load_questionnaire

Q17 = load_questionnaire("sipas_2017")
Q22 = load_questionnaire("sipas_2022")


def _year(domains, level_shift, q, se=0.02, df=40, seed=0):
    rng = np.random.default_rng(seed)
    K = len(q.items)
    est = np.clip(rng.uniform(0.6, 0.9, size=(len(domains), K)) + level_shift, 0, 1)
    return make_standin(domains, est, np.full((len(domains), K), se), q=q, df=df)


def test_change_se_df_and_interval_by_hand():
    y1 = _year(["A", "B", "C"], 0.0, Q17, se=0.03, df=[10, 20, 30], seed=1)
    y2 = _year(["B", "A", "D"], 0.02, Q17, se=0.01, df=[50, 40, 60], seed=2)
    ch = change(y1, y2)
    t = ch.table.set_index("domain")
    assert sorted(t.index) == ["A", "B"]
    assert ch.unmatched_domains.sort_values("domain").to_dict("list") == {
        "domain": ["C", "D"], "year": [1, 2]}
    o1 = y1.overall.set_index("agency")
    o2 = y2.overall.set_index("agency")
    for d, (df1, df2) in {"A": (10, 40), "B": (20, 50)}.items():
        e1, s1 = o1.loc[d, "estimate"], o1.loc[d, "se"]
        e2, s2 = o2.loc[d, "estimate"], o2.loc[d, "se"]
        se = np.sqrt(s1**2 + s2**2)
        nu = (s1**2 + s2**2) ** 2 / (s1**4 / df1 + s2**4 / df2)
        q = stats.t.ppf(0.975, nu)
        assert t.loc[d, "change"] == pytest.approx(e2 - e1, rel=1e-13)
        assert t.loc[d, "se"] == pytest.approx(se, rel=1e-13)
        assert t.loc[d, "df"] == pytest.approx(nu, rel=1e-13)
        assert t.loc[d, "ci_low"] == pytest.approx(e2 - e1 - q * se, rel=1e-12)
        assert t.loc[d, "ci_high"] == pytest.approx(e2 - e1 + q * se, rel=1e-12)
        assert t.loc[d, "p_value"] == pytest.approx(
            2 * stats.t.sf(abs(e2 - e1) / se, nu), rel=1e-10)
        assert min(df1, df2) <= nu <= df1 + df2
    tm = change(y1, y2, df="min", level=0.9).table.set_index("domain")
    e1, s1 = o1.loc["A", "estimate"], o1.loc["A", "se"]
    e2, s2 = o2.loc["A", "estimate"], o2.loc["A", "se"]
    se = np.hypot(s1, s2)
    assert tm.loc["A", "df"] == 10
    assert tm.loc["A", "ci_high"] == pytest.approx(e2 - e1 + stats.t.ppf(0.95, 10) * se)
    tn = change(y1, y2, df="normal").table.set_index("domain")
    assert tn.loc["A", "ci_high"] == pytest.approx(e2 - e1 + stats.norm.ppf(0.975) * se)
    assert change(y1, y2).options["comparability"] == "same questionnaire"


def test_map_items_sipas_2017_to_2022():
    m = map_items(Q17, Q22)
    assert isinstance(m, ItemMapping)
    assert m.items == tuple(SIPAS_2017_2022_ITEMS.items())
    assert len(m.items) == 14
    assert m.elements == tuple((e, e) for e in ("E1", "E2", "E3", "E4", "E5"))
    assert m.all_elements_matched
    assert m.unmatched_1 == ("q01", "q03", "q04", "q06", "q11", "q16", "q18", "q20")
    assert m.unmatched_2 == ("s01", "s02", "s03", "s14", "s16")
    assert len(m.items) + len(m.unmatched_1) == 22
    assert len(m.items) + len(m.unmatched_2) == 19
    for a, b in m.items:  # pairs stay inside elements of the same code
        assert Q17.item_element[a] == Q22.item_element[b]
    rev = map_items(Q22, Q17)
    assert rev.items == tuple(sorted(((b, a) for a, b in m.items)))
    assert "reversed" in rev.source
    frame = m.to_frame()
    assert len(frame) == 14 + 8 + 5
    same = map_items(Q17, Q17)
    assert same.source == "identical" and len(same.items) == 22 and not same.unmatched_1


def test_map_items_errors():
    other = Questionnaire(name="other", elements=(
        Element(code="P1", label="Policy", items=("x1", "x2")),))
    with pytest.raises(SatsampleError, match="cannot be mapped"):
        map_items(Q17, other)
    with pytest.raises(SatsampleError, match="not in"):
        map_items(Q17, Q22, table={"q01": "zz"})
    with pytest.raises(SatsampleError, match="same code"):
        map_items(Q17, Q22, table={"q01": "s05"})
    with pytest.raises(SatsampleError, match="several"):
        map_items(Q17, Q22, table={"q02": "s04", "q03": "s04"})


def test_change_across_layouts_by_element_and_item():
    y1 = _year(["A", "B"], 0.0, Q17, seed=3)
    y2 = _year(["A", "B"], 0.0, Q22, seed=4)
    el = change(y1, y2, table="element")
    assert el.options["comparability"].startswith("mapped (built-in")
    assert len(el.table) == 10
    t = el.table.set_index(["domain", "element"])
    e1 = y1.elements.set_index(["agency", "element"])
    e2 = y2.elements.set_index(["agency", "element"])
    np.testing.assert_allclose(
        t["change"], (e2["estimate"] - e1["estimate"]).loc[t.index], rtol=1e-13)
    it = change(y1, y2, table="item")
    assert len(it.table) == 2 * 14
    row = it.table.set_index(["domain", "item"]).loc[("A", "q09")]
    assert row["item_2"] == "s08"
    i1 = y1.items.set_index(["agency", "item"]).loc[("A", "q09")]
    i2 = y2.items.set_index(["agency", "item"]).loc[("A", "s08")]
    assert row["change"] == pytest.approx(i2["estimate"] - i1["estimate"], rel=1e-13)
    assert row["se"] == pytest.approx(np.hypot(i1["se"], i2["se"]), rel=1e-13)
    ov = change(y1, y2)
    assert len(ov.table) == 2 and ov.mapping is not None


def test_change_overall_needs_all_elements_and_unmappable_layouts_fail():
    four = Questionnaire(name="four", elements=tuple(Q17.elements[:4]))
    y1 = _year(["A"], 0.0, Q17, seed=5)
    y2 = _year(["A"], 0.0, four, seed=6)
    with pytest.raises(SatsampleError, match="do not all correspond"):
        change(y1, y2)
    assert len(change(y1, y2, table="item").table) == 18
    other = Questionnaire(name="other", elements=(
        Element(code="P1", label="Policy", items=("x1", "x2")),))
    with pytest.raises(SatsampleError, match="cannot be mapped"):
        change(y1, _year(["A"], 0.0, other), table="item")
    with pytest.raises(SatsampleError, match="no domain in common"):
        change(_year(["A"], 0.0, Q17), _year(["B"], 0.0, Q17))
