"""The main job: `satsample demo` writes files and runs plan, validate and run on them.

Every output it writes honours suppression (issue 15): the index CSVs, the league table,
the truth check, the summary, the HTML report, the workbook and the figures.
"""

from __future__ import annotations

import contextlib
import io
import re

import pandas as pd
import pytest

from satsample.cli import main
from satsample.datasets import make_population
from satsample.outputs.report import _W

ARGS = ["--n-users", "40000", "--replicates", "100", "--quiet"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["demo", "--out", str(out), *ARGS]) == 0
    return out, buf.getvalue()


def test_demo_writes_inputs_configuration_and_every_step(demo_run):
    out, _ = demo_run
    assert sorted(p.name for p in out.iterdir()) == [
        "inputs", "plan", "results", "summary.txt", "survey.toml", "truth_check.csv",
        "validation"]
    assert sorted(p.name for p in (out / "inputs").iterdir()) == [
        "frame.csv", "releases.csv", "responses_online.csv", "responses_paper.xlsx"]
    assert {"design.json", "field_lists.xlsx", "field_list.csv", "allocation.csv"} <= {
        p.name for p in (out / "plan").iterdir()}
    assert (out / "validation" / "quality_report.html").exists()
    res = out / "results"
    assert {"report.html", "report.xlsx", "agency_index.png", "response_rates.png"} <= {
        p.name for p in res.iterdir()}
    for png in ("agency_index.png", "response_rates.png"):
        assert (res / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (res / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "PRV01" in html
    assert '<html lang="vi">' in html  # output.language = "vi" in the demo's configuration


def test_validate_finds_the_planted_problems(demo_run):
    out, _ = demo_run
    f = pd.read_csv(out / "validation" / "quality_findings.csv", keep_default_na=False)
    assert {"unknown_label", "out_of_range", "duplicated_id", "outside_sample",
            "reserve_not_released", "disposition_contradiction",
            "straightlining"} <= set(f["check"])


def test_results_against_the_known_truth(demo_run):
    out, stdout = demo_run
    line = stdout.splitlines()[0]
    assert line.startswith("National satisfaction index:") and "inside the interval" in line
    assert "(covered)" in (out / "summary.txt").read_text(encoding="utf-8")
    tab = pd.read_csv(out / "truth_check.csv")
    pop = make_population(n_users=40000)
    assert sorted(tab["agency_id"]) == sorted(pop.agencies["agency_id"])
    shown = tab[tab["status"] != "suppress"]
    assert shown["covered"].astype(bool).mean() >= 0.85
    idx = pd.read_csv(out / "results" / "index_agency_id.csv", keep_default_na=False)
    overall = idx[idx["level"] == "overall"]
    assert len(overall) == 100 and set(overall["status"]) <= {"publish", "review", "suppress"}
    assert (overall.loc[overall["status"] != "publish", "reason"] != "").all()
    rates = pd.read_csv(out / "results" / "response_rates.csv")
    assert ((rates["RR1"] > 0.3) & (rates["RR1"] < 1)).all()


def test_the_plan_expects_every_agency_to_reach_the_publication_minimum(demo_run):
    out, _ = demo_run
    alloc = pd.read_csv(out / "plan" / "allocation.csv")
    assert len(alloc) == 100
    # 30 respondents and a Korn-Graubard effective sample of 30 at the planning deff 1.3,
    # at the expected response 0.6: ceil(39 / 0.6) = 65 selected, or the whole agency
    floor = (alloc["N_h"]).clip(upper=65)
    assert (alloc["n_h"] >= floor).all()
    assert (alloc.loc[alloc["publishable"], "expected_respondents"] >= 39 - 1e-9).all()
    assert (~alloc["publishable"] == (alloc["N_h"] * 0.6 < 39)).all()
    # the report's sample plan is the plan that was drawn
    w = _W["vi"]
    plan = pd.read_excel(out / "results" / "report.xlsx", sheet_name=w["sheet_alloc"])
    got = plan.set_index(w["code"])[w["selected"]].sort_index()
    assert got.tolist() == alloc.set_index("agency")["n_h"].sort_index().tolist()
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert "status: RECONSTRUCTED" in summary


def _small(out, seed):
    argv = ["demo", "--out", str(out), "--quiet", "--n-users", "5000", "--replicates", "20",
            "--seed", str(seed)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return (out / "results" / "index_agency_id.csv").read_bytes()


def test_same_seed_gives_byte_identical_results_and_another_seed_another_sample(tmp_path):
    first = _small(tmp_path / "a", 11)
    again = _small(tmp_path / "b", 11)
    other = _small(tmp_path / "c", 12)
    assert first == again
    assert first != other


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, monkeypatch_module):
    """A small run in which some agency is suppressed; every figure drawn is captured."""
    import satsample.outputs.plotting as plotting

    drawn = []
    for name in ("plot_agency_index", "plot_element_heatmap", "plot_ranks", "plot_index",
                 "plot_change"):
        original = getattr(plotting, name)

        def wrapper(*args, _f=original, **kw):
            out = _f(*args, **kw)
            drawn.append((out if hasattr(out, "savefig") else out.figure, args[0]))
            return out

        monkeypatch_module.setattr(plotting, name, wrapper)
    out = tmp_path_factory.mktemp("demo_small")
    argv = ["demo", "--out", str(out), "--quiet", "--n-users", "20000", "--replicates", "40",
            "--seed", "11"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return out, drawn


def _numbers(text: str) -> set[str]:
    """Decimal numbers in a text, with a point or (Vietnamese) a comma, as 'd.d'."""
    return {m.replace(",", ".") for m in re.findall(r"\d+[.,]\d+", text)}


def test_no_suppressed_value_in_any_output_of_the_demo(small_run):
    from html.parser import HTMLParser

    from outputs_data import assert_no_suppressed_plotted

    out, drawn = small_run
    res = out / "results"
    idx = pd.read_csv(res / "index_agency_id.csv", keep_default_na=False)
    overall = idx[idx["level"] == "overall"]
    hidden = overall[overall["status"] == "suppress"]
    assert len(hidden) >= 1, "the small run is meant to suppress an agency"
    # index CSV: no estimate, SE or interval for any row of a suppressed agency; n and the
    # reason are there
    rows = idx[idx["agency_id"].isin(hidden["agency_id"])]
    for c in ("estimate", "se", "ci_low", "ci_high"):
        assert (rows[c] == "").all(), c
    assert (hidden["reason"].str.startswith("too few respondents")).all()
    assert (hidden["n"].astype(int) > 0).all()
    # league table: listed without rank or value
    lt = pd.read_csv(res / "league_table.csv", keep_default_na=False)
    mine = lt[lt["domain"].isin(hidden["agency_id"])]
    assert len(mine) == len(hidden) and (mine["status"] == "suppress").all()
    for c in ("rank", "estimate", "rank_low", "rank_high", "p_top", "p_bottom"):
        assert (mine[c] == "").all(), c
    # truth check: the demo's own comparison prints no suppressed value either
    tc = pd.read_csv(out / "truth_check.csv", keep_default_na=False)
    tc = tc[tc["agency_id"].isin(hidden["agency_id"])]
    for c in ("index", "ci_low", "ci_high", "covered"):
        assert (tc[c] == "").all(), c
    # figures: what was plotted (the PNG and every figure of the report)
    assert len(drawn) >= 3
    for fig, est in drawn:
        if hasattr(est, "overall") and "status" in est.overall.columns:
            assert_no_suppressed_plotted(fig, est)
    flagged = next(est for _, est in drawn if hasattr(est, "overall")
                   and "status" in est.overall.columns)
    ov = flagged.overall.set_index("agency_id")
    el = flagged.elements
    # HTML: every table row, list item and paragraph naming a suppressed agency is free of
    # its values
    cells: list[list[str]] = []

    class P(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.cur = None

        def handle_starttag(self, tag, attrs):
            if tag in ("tr", "li", "p"):
                self.cur = []
                cells.append(self.cur)

        def handle_data(self, data):
            if self.cur is not None:
                self.cur.append(data)

    P().feed((res / "report.html").read_text(encoding="utf-8"))
    w = _W["vi"]
    book = pd.read_excel(res / "report.xlsx", sheet_name=None)
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    frame = pd.read_csv(out / "inputs" / "frame.csv", dtype=str)
    names = frame.drop_duplicates("agency_id").set_index("agency_id")["agency_name"]
    for r in hidden.itertuples():
        secret = {f"{100 * v:.1f}" for v in ov.loc[r.agency_id, ["estimate", "ci_low",
                                                                "ci_high"]]}
        secret |= {f"{100 * v:.1f}" for v in el.loc[el["agency_id"] == r.agency_id,
                                                     "estimate"]}
        texts = [" ".join(c) for c in cells if names[r.agency_id] in " ".join(c)]
        assert texts
        for text in texts:
            assert not _numbers(text) & secret, text
        for sheet in (w["sheet_agencies"], w["sheet_elements"], w["sheet_items"]):
            tab = book[sheet]
            assert tab.loc[tab[w["code"]] == r.agency_id, w["index"]].isna().all()
        assert r.agency_id in set(book[w["sheet_notpub"]][w["code"]])
        lines = [t for t in summary.splitlines() if r.agency_id in t]
        assert any(t.startswith("not published") for t in lines)
        assert not any(_numbers(t) & secret for t in lines)
