"""HTML report: parsed back, every agency present, text from the data escaped; Excel tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from test_ranking import simple_standin

from satsample._validation import SatsampleError
from satsample.allocation import allocate
from satsample.datasets import make_population, simulate_responses
from satsample.design import survey_design
from satsample.index import satisfaction_index
from satsample.ranking import league_table
from satsample.report import build_report
from satsample.selection import select
from satsample.weighting import adjust_nonresponse

EVIL = "<script>alert(1)</script>"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.imgs: list[dict] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag == "td":
            self._in_td = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_td:
            self.cells[-1] += data


@pytest.fixture(scope="module")
def survey():
    pop = make_population(n_users=2500, n_agencies=7, rng=11)
    sel = select(pop.frame, id="user_id", stratum="agency_id", n=45, rng=12)
    s = simulate_responses(pop, sel.sample, rng=13)
    names = s["agency_name"].astype(str)
    names = names.where(s["agency_id"] != "COM01", EVIL)
    names = names.where(s["agency_id"] != "COM02", 'Ward "A" & <b>B</b>')
    s = s.assign(agency_name=names)
    d = survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc")
    d = adjust_nonresponse(d, "responded", classes="agency_id")
    est = satisfaction_index(d, pop.questionnaire, by="agency_name")
    alloc = allocate(pop.agencies.set_index("agency_id")["N_h"], 315, rule="proportional",
                     p=0.8, min_n=30)
    return est, d, alloc


def test_report_contains_every_agency_and_escapes_text(survey, tmp_path):
    est, d, alloc = survey
    out = build_report(estimate=est, design=d, allocation=alloc, path=tmp_path / "r.html",
                       title="Report <2024> & co", excel_path=tmp_path / "r.xlsx")
    assert out == tmp_path / "r.html"
    doc = out.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(doc)
    p.close()
    assert "script" not in p.tags  # no script element at all, in particular none from data
    assert "b" not in p.tags  # markup inside a name stays text
    text = "".join(p.text)
    for name in est.overall["agency_name"]:
        assert name in p.cells, name
    assert EVIL in p.cells
    assert 'Ward "A" & <b>B</b>' in p.cells
    assert "Report <2024> & co" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    # figures are embedded, nothing external
    assert len(p.imgs) >= 4
    assert all(img["src"].startswith("data:image/png;base64,") for img in p.imgs)
    assert "http://" not in doc and "https://" not in doc
    # the weighting history and the flags are there
    assert "nonresponse" in p.cells
    assert "kish_deff" in text
    assert "publish" in p.cells or "suppress" in p.cells
    # the estimate column shows the estimates x100 with 2 decimals, in table order
    for v in est.overall["estimate"]:
        assert f"{100 * v:.2f}" in p.cells
    # workbook
    book = pd.read_excel(tmp_path / "r.xlsx", sheet_name=None)
    assert {"summary", "weighting", "allocation", "overall", "elements", "items"} <= set(book)
    ov = book["overall"].set_index("domain")
    ref = est.overall.set_index("agency_name")
    np.testing.assert_allclose(ov.loc[ref.index, "estimate"], ref["estimate"], rtol=1e-12)
    assert len(book["weighting"]) == len(d.history)


def test_report_with_league_table(tmp_path):
    rng = np.random.default_rng(1)
    e = np.array([0.8, 0.7, 0.9, 0.75])
    res = simple_standin(e, e + rng.normal(0, 0.02, size=(100, 4)),
                         domains=["A", "B", EVIL, "D"])
    lt = league_table(res, top_k=2, bottom_k=2)
    out = build_report(estimate=res, league=lt, path=tmp_path / "l.html")
    p = _Collect()
    p.feed(out.read_text(encoding="utf-8"))
    assert "script" not in p.tags
    assert "League table" in "".join(p.text)
    assert p.cells.count(EVIL) >= 2  # index table and league table
    assert len(p.imgs) == 3  # index, element profile, ranks


def test_report_unwritable_paths_name_the_path(survey, tmp_path):
    est, _, _ = survey
    bad = tmp_path / "missing_folder" / "r.html"
    with pytest.raises(SatsampleError, match="missing_folder"):
        build_report(estimate=est, path=bad)
    with pytest.raises(SatsampleError, match="is a folder"):
        build_report(estimate=est, path=tmp_path)
    with pytest.raises(SatsampleError, match="excel_path"):
        build_report(estimate=est, path=tmp_path / "ok.html",
                     excel_path=tmp_path / "nope" / "x.xlsx")
