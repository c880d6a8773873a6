"""The report: parsed back (HTML and Excel), no suppressed value anywhere, words not column
names, text from the data escaped, a single self-contained file."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from outputs_data import REVIEW, SMALL, agencies_estimate, agency_frame, national_estimate

from satsample._validation import SatsampleError
from satsample.allocation import allocate_for_precision
from satsample.datasets import make_population, simulate_responses
from satsample.design import survey_design
from satsample.estimation import satisfaction_index
from satsample.outputs.flags import flag_estimate
from satsample.outputs.ranking import league_table
from satsample.outputs.report import ReportFiles, build_report
from satsample.replicate import bootstrap
from satsample.selection import select
from satsample.weighting import adjust_nonresponse

EVIL = "<script>alert(1)</script>"
FORMULA = "=HYPERLINK(\"http://x\")"
AG = agency_frame(100)


class _Collect(HTMLParser):
    """Tags, text, images, table rows (list of cell texts with the row class), list items."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[dict] = []
        self.text: list[str] = []
        self.imgs: list[dict] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.items: list[str] = []
        self.paras: list[str] = []
        self._cell: str | None = None
        self._li: str | None = None
        self._p: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.append(a)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "tr":
            self.rows.append((a.get("class", ""), []))
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "li":
            self._li = ""
        elif tag == "p":
            self._p = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append(self._cell)
            self._cell = None
        elif tag == "li" and self._li is not None:
            self.items.append(self._li)
            self._li = None
        elif tag == "p" and self._p is not None:
            self.paras.append(self._p)
            self._p = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell += data
        if self._li is not None:
            self._li += data
        if self._p is not None:
            self._p += data


def _parse(path):
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


@pytest.fixture(scope="module")
def hundred_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    est = flag_estimate(agencies_estimate(0))
    last = agencies_estimate(1, shift=-0.02)
    nat = national_estimate()
    files = build_report(est, national=nat, previous=last, names=AG["name"], tier=AG["tier"],
                         html_path=out / "r.html", excel_path=out / "r.xlsx")
    return est, nat, files


def test_report_is_one_self_contained_file(hundred_report):
    _, _, files = hundred_report
    assert isinstance(files, ReportFiles) and files.notes == ()
    doc = files.html.read_text(encoding="utf-8")
    p = _parse(files.html)
    assert doc.startswith("<!DOCTYPE html>")
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    srcs = [a.get("src") for a in p.attrs if "src" in a] + [a.get("href") for a in p.attrs
                                                           if "href" in a]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "url(" not in doc and "@import" not in doc
    assert len(p.imgs) == 4  # agency index, heat map, ranks, change


def test_no_suppressed_value_in_the_html(hundred_report):
    est, _, files = hundred_report
    p = _parse(files.html)
    ov = est.overall.set_index("agency_id")
    el = est.elements
    for agency in SMALL:
        name = AG.loc[agency, "name"]
        secret = {f"{100 * v:.1f}" for v in ov.loc[agency, ["estimate", "ci_low", "ci_high"]]}
        secret |= {f"{100 * v:.1f}" for v in el.loc[el["agency_id"] == agency, "estimate"]}
        mentions = [cells for _, cells in p.rows if name in cells]
        mentions += [[t] for t in p.items + p.paras if name in t]
        assert mentions
        for cells in mentions:
            for c in cells:
                assert not (set(re.findall(r"\d+\.\d", c)) & secret), (agency, c)
        # its row in the agency table: no value, no rank, "not published"
        (row,) = [(cls, cells) for cls, cells in p.rows if len(cells) == 7 and cells[1] == name]
        assert row == ("suppress", ["", name, "–", "–", "–", str(SMALL[agency]),
                                    "not published"])
    # listed once with the reason and n; each reason stated once
    reasons = [t for t in p.items if "fewer than 30" in t]
    assert len(reasons) == 1
    for agency, n in SMALL.items():
        assert f"{AG.loc[agency, 'name']} (n = {n})" in reasons[0]
    assert "effective sample size" not in reasons[0]
    page = [t for t in p.paras if t.startswith("Not published:")]
    assert len(page) == len(SMALL)
    assert "Not published: too few respondents (fewer than 30) (n = 26)." in page


def test_summary_review_words_and_rounding(hundred_report):
    est, nat, files = hundred_report
    p = _parse(files.html)
    text = " ".join(" ".join(p.text).split())
    n = nat.overall.iloc[0]
    assert (f"National satisfaction index: {100 * n['estimate']:.1f} (95 % confidence "
            f"interval {100 * n['ci_low']:.1f} to {100 * n['ci_high']:.1f})") in text
    assert "96 of 100 agencies are published, 1 of them marked for review; 4 are not published" \
        in text
    assert "Highest indices" in text and "Lowest indices" in text
    assert "Significant changes since last year" in text
    # the review agency is marked
    (row,) = [(cls, c) for cls, c in p.rows if len(c) == 7 and c[1] == AG.loc[REVIEW, "name"]]
    assert row[0] == "review" and row[1][6] == "to review"
    # words, not column names; numbers rounded
    for raw in ("ci_low", "ci_high", "kish_deff", "effective_n", "p_top", "lonely", "n_h"):
        assert raw not in text
    assert not re.search(r"\d\.\d{4,}", text)
    # the rank of a published agency equals the league table's
    lt = league_table(est)
    top = lt.table.iloc[0]
    assert (f"1. {AG.loc[top['domain'], 'name']}: {100 * top['estimate']:.1f} (rank between "
            f"{int(top['rank_low'])} and {int(top['rank_high'])})") in text
    assert "Status: RECONSTRUCTED" in text  # sipas_2017 criteria list
    assert "fewer than 30 people answered" in text  # the rule, stated in the methods


def test_no_suppressed_value_in_the_workbook(hundred_report):
    est, _, files = hundred_report
    book = pd.read_excel(files.excel, sheet_name=None)
    assert {"Summary", "Agencies", "Elements", "Criteria", "Not published", "Change"} <= set(book)
    ag = book["Agencies"].set_index("Code")
    ov = est.overall.set_index("agency_id")
    for agency in ov.index:
        row = ag.loc[agency]
        if agency in SMALL:
            assert row[["Rank", "Index", "95 % interval –", "95 % interval +"]].isna().all()
            assert row["Note"] == "not published"
            assert row["Respondents"] == SMALL[agency]
        else:
            assert row["Index"] == pytest.approx(round(100 * ov.loc[agency, "estimate"], 1))
    for sheet in ("Elements", "Criteria"):
        t = book[sheet]
        assert t.loc[t["Code"].isin(list(SMALL)), "Index"].isna().all()
    assert "Change" in book and not set(book["Change"]["Code"]) & set(SMALL)
    nop = book["Not published"]
    assert sorted(nop["Code"]) == sorted(SMALL)
    assert set(nop["Reason"]) == {"too few respondents (fewer than 30)"}
    # no suppressed number anywhere in the workbook
    secret = {round(100 * v, 1) for v in ov.loc[list(SMALL), "estimate"]}
    for name, t in book.items():
        if name in ("Agencies", "Elements", "Criteria", "Change"):
            rows = t[t["Code"].isin(list(SMALL))]
            nums = pd.to_numeric(rows.stack(), errors="coerce").dropna()
            assert not set(nums.round(1)) & secret, name


@pytest.fixture(scope="module")
def survey():
    pop = make_population(n_users=4000, n_agencies=8, rng=11)
    ag = pop.agencies.set_index("agency_id")
    plan = allocate_for_precision(ag["N_h"], moe=0.1, p=0.8, response_rate=0.6,
                                  min_respondents=30)
    sel = select(pop.frame, ids="user_id", strata="agency_id", n=plan, rng=12)
    s = simulate_responses(pop, sel.sample, rng=13)
    d = survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc")
    d = bootstrap(d, n_replicates=40, rng=14)
    d = adjust_nonresponse(d, "responded", classes="agency_id")
    est = satisfaction_index(d, pop.questionnaire, by="agency_id")
    names = ag["name"].astype(str).copy()
    names.iloc[0] = EVIL
    names.iloc[1] = FORMULA
    names.iloc[2] = 'Ward "A" & <b>B</b>'
    rr = (s.groupby("agency_id", observed=True)["responded"].mean().rename("rate")
          .rename_axis("agency").reset_index())
    rr["tier"] = rr["agency"].map(ag["level"].astype(str))
    return pop, plan, d, est, names, rr


def test_report_on_a_real_round_escapes_text_and_states_the_methods(survey, tmp_path):
    pop, plan, d, est, names, rr = survey
    ag = pop.agencies.set_index("agency_id")
    files = build_report(est, national=satisfaction_index(d, pop.questionnaire), design=d,
                         allocation=plan, response_rates=rr, names=names,
                         tier=ag["level"].astype(str), title="Report <2024> & co",
                         html_path=tmp_path / "r.html", excel_path=tmp_path / "r.xlsx")
    doc = files.html.read_text(encoding="utf-8")
    p = _parse(files.html)
    assert "script" not in p.tags and "b" not in p.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    cells = {c for _, row in p.rows for c in row}
    assert EVIL in cells and 'Ward "A" & <b>B</b>' in cells
    text = " ".join(" ".join(p.text).split())
    assert "Report <2024> & co" in text
    assert "Weighting steps and their diagnostics" in text
    assert "Standard errors from 40 Rao-Wu bootstrap replicates" in text
    assert "Response rate by agency: mean of agencies" in text
    assert len(p.imgs) == 6  # index, heat map, ranks, plan, response rates, weights
    weighting = [row for _, row in p.rows if row and row[0] in ("1", "2") and len(row) == 8]
    assert [r[1] for r in weighting] == ["design", "nonresponse"]
    assert weighting[0][3] == f"{d.history[0].kish_deff:.2f}"
    book = pd.read_excel(files.excel, sheet_name=None)
    assert {"Weighting", "Response rates", "Sample plan"} <= set(book)
    agencies = book["Agencies"]
    # a name that a spreadsheet would run as a formula is stored as text, unchanged
    assert FORMULA in set(agencies["Agency"])
    assert EVIL in set(agencies["Agency"])
    import openpyxl

    ws = openpyxl.load_workbook(files.excel)["Agencies"]
    (cell,) = [c for row in ws.iter_rows() for c in row if c.value == FORMULA]
    assert cell.data_type == "s" and cell.quotePrefix


def test_report_in_vietnamese(survey, tmp_path):
    pop, _, d, est, _, _ = survey
    ag = pop.agencies.set_index("agency_id")
    files = build_report(est, national=satisfaction_index(d, pop.questionnaire), design=d,
                         names=ag["name"], tier=ag["level"].astype(str), language="vi",
                         html_path=tmp_path / "vi.html", excel_path=tmp_path / "vi.xlsx")
    doc = files.html.read_text(encoding="utf-8")
    assert '<html lang="vi">' in doc
    text = " ".join(" ".join(_parse(files.html).text).split())
    assert "Tóm tắt" in text and "Chỉ số hài lòng chung:" in text
    assert "Tình trạng: TÁI DỰNG" in text
    assert re.search(r"Chỉ số hài lòng chung: \d+,\d \(", text)  # decimal comma
    book = pd.read_excel(files.excel, sheet_name=None)
    assert {"Tóm tắt", "Cơ quan", "Yếu tố", "Tiêu chí"} <= set(book)


def test_report_recomputes_a_league_table_that_ranks_suppressed_agencies(tmp_path):
    est = agencies_estimate(2, n_agencies=30)
    raw = league_table(est, top_k=3, bottom_k=3)  # ranks everyone, suppressed included
    files = build_report(est, league=raw, html_path=tmp_path / "l.html")
    p = _parse(files.html)
    text = " ".join(p.text)
    flagged = flag_estimate(est)
    sup = flagged.overall.loc[flagged.overall["status"] == "suppress", "agency_id"]
    assert len(sup) >= 1
    ranked_rows = [c for _, c in p.rows if len(c) == 7 and c[0].isdigit()]
    assert len(ranked_rows) == 30 - len(sup)
    assert sorted(int(c[0]) for c in ranked_rows) == list(range(1, 31 - len(sup)))
    assert "Highest indices" in text


def test_report_errors_name_the_path(survey, tmp_path):
    est = survey[3]
    with pytest.raises(SatsampleError, match="missing_folder"):
        build_report(est, html_path=tmp_path / "missing_folder" / "r.html")
    with pytest.raises(SatsampleError, match="is a folder"):
        build_report(est, html_path=tmp_path)
    with pytest.raises(SatsampleError, match="excel_path"):
        build_report(est, html_path=tmp_path / "ok.html",
                     excel_path=tmp_path / "nope" / "x.xlsx")
    with pytest.raises(SatsampleError, match="html_path"):
        build_report(est)
    with pytest.raises(SatsampleError, match="language"):
        build_report(est, html_path=tmp_path / "x.html", language="fr")
    assert not (tmp_path / "x.html").exists()
    np.testing.assert_equal(len(est.overall), 8)


def test_pdf_report_pages_render_and_print_no_suppressed_value(tmp_path):
    import shutil
    import subprocess

    est = flag_estimate(agencies_estimate(0))
    files = build_report(est, national=national_estimate(), previous=agencies_estimate(1),
                         names=AG["name"], tier=AG["tier"], pdf_path=tmp_path / "r.pdf")
    assert files.pdf == tmp_path / "r.pdf" and files.html is None
    raw = files.pdf.read_bytes()
    assert raw.startswith(b"%PDF")
    n_pages = len(re.findall(rb"/Type\s*/Page[^s]", raw))
    # summary, agency index, heat map, ranks (continued over pages), change, methods
    assert n_pages >= 6
    gs = shutil.which("gs")
    if gs is None:
        pytest.skip("ghostscript (gs) is not installed: the PDF pages are not rendered")
    subprocess.run([gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=png16m", "-r40",
                    f"-sOutputFile={tmp_path / 'p%02d.png'}", str(files.pdf)], check=True,
                   timeout=300)
    pages = sorted(tmp_path.glob("p*.png"))
    assert len(pages) == n_pages
    for page in pages:
        img = matplotlib.image.imread(page)
        assert (img[..., :3].mean(axis=2) < 0.8).mean() > 0.002, page.name  # not blank
    text = subprocess.run([gs, "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite",
                           "-sOutputFile=-", str(files.pdf)], capture_output=True, check=True,
                          timeout=300).stdout.decode("utf-8", "replace")
    flat = " ".join(text.split())
    assert "National satisfaction index" in flat and "RECONSTRUCTED" in flat
    ov = est.overall.set_index("agency_id")
    for agency in SMALL:
        secret = {f"{100 * v:.1f}" for v in ov.loc[agency, ["estimate", "ci_low", "ci_high"]]}
        for line in text.splitlines():
            if AG.loc[agency, "name"] in line:
                assert not set(re.findall(r"\d+\.\d", line)) & secret, line
