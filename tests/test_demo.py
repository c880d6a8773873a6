"""The main job: `satsample demo` end to end on the built-in synthetic data."""

from __future__ import annotations

import pandas as pd
import pytest

from satsample.cli import main
from satsample.datasets import make_population

COLUMNS = ["rank", "agency_id", "agency_name", "level", "index", "se", "ci_low", "ci_high",
           "respondents", "true_index", "status", "flag"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_default")
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out


def test_default_run_writes_every_output(default_run):
    names = sorted(p.name for p in default_run.iterdir())
    assert names == ["agency_index.csv", "agency_index.png", "summary.html", "summary.txt",
                     "summary.xlsx"]
    assert (default_run / "agency_index.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (default_run / "summary.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "PRV01" in html


def test_agency_table_is_complete_and_coherent(default_run):
    tab = pd.read_csv(default_run / "agency_index.csv", keep_default_na=False)
    assert list(tab.columns) == COLUMNS
    pop = make_population()  # the demo's default population
    assert sorted(tab["agency_id"]) == sorted(pop.agencies["agency_id"])
    shown = tab[tab["status"] != "suppress"]
    assert shown["rank"].astype(int).tolist() == list(range(1, len(shown) + 1))
    assert shown["index"].astype(float).is_monotonic_decreasing
    lo, est, hi = (shown[c].astype(float) for c in ("ci_low", "index", "ci_high"))
    assert ((lo < est) & (est < hi)).all()
    assert (shown["se"].astype(float) > 0).all() and (tab["respondents"] > 0).all()
    # the flag column explains every agency that is not cleared for publication
    assert set(tab["status"]) <= {"publish", "review", "suppress"}
    assert (tab.loc[tab["status"] != "publish", "flag"] != "").all()
    assert (tab.loc[tab["respondents"] < 30, "status"] == "suppress").all()
    # per-agency truth: most agency intervals cover it (bootstrap 95 % intervals)
    lo, hi = shown["ci_low"].astype(float), shown["ci_high"].astype(float)
    covered = ((lo <= shown["true_index"]) & (shown["true_index"] <= hi)).mean()
    assert covered >= 0.85


def test_national_interval_covers_the_truth(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("National satisfaction index:")
    assert "inside the interval" in line
    summary = (tmp_path / "summary.txt").read_text(encoding="utf-8")
    assert "(covered)" in summary


def _small(out, seed):
    argv = ["demo", "--out", str(out), "--quiet", "--n-users", "20000", "--replicates", "40",
            "--seed", str(seed)]
    assert main(argv) == 0
    return (out / "agency_index.csv").read_bytes()


def test_same_seed_gives_byte_identical_csv_and_another_seed_another_sample(tmp_path):
    first = _small(tmp_path / "a", 11)
    again = _small(tmp_path / "b", 11)
    other = _small(tmp_path / "c", 12)
    assert first == again
    assert first != other
    a = pd.read_csv(tmp_path / "a" / "agency_index.csv").set_index("agency_id")
    c = pd.read_csv(tmp_path / "c" / "agency_index.csv").set_index("agency_id")
    # the population is the same: the truth does not move, the estimates do
    pd.testing.assert_series_equal(a["true_index"].sort_index(), c["true_index"].sort_index())
    assert not a["index"].sort_index().equals(c["index"].sort_index())


def test_the_plan_expects_every_agency_to_reach_the_publication_minimum(default_run):
    plan = pd.read_excel(default_run / "summary.xlsx", sheet_name="Sample plan")
    assert len(plan) == 100
    # 30 respondents and a Korn-Graubard effective sample of 30 at the planning deff 1.3
    assert (plan["Expected respondents"] >= 30 * 1.3 - 1e-9).all()
    summary = (default_run / "summary.txt").read_text(encoding="utf-8")
    assert "status: RECONSTRUCTED" in summary


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, monkeypatch_module):
    """A small run in which some agency is suppressed; every figure drawn is captured."""
    import satsample.plotting as plotting

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
    assert main(argv) == 0
    return out, drawn


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_no_suppressed_value_in_any_output_of_the_demo(small_run):
    import re
    from html.parser import HTMLParser

    from outputs_data import assert_no_suppressed_plotted

    out, drawn = small_run
    tab = pd.read_csv(out / "agency_index.csv", keep_default_na=False)
    hidden = tab[tab["status"] == "suppress"]
    assert len(hidden) >= 1, "the small run is meant to suppress an agency"
    # CSV: no rank, index, SE or interval; the reason and n are there
    for c in ("rank", "index", "se", "ci_low", "ci_high"):
        assert (hidden[c] == "").all(), c
    assert (hidden["flag"].str.startswith("too few respondents")).all()
    assert (hidden["respondents"] > 0).all()
    # figures: what was plotted (the PNG and every figure of the report)
    assert len(drawn) >= 3
    for fig, est in drawn:
        if hasattr(est, "overall") and "status" in est.overall.columns:
            assert_no_suppressed_plotted(fig, est)
    flagged = next(est for _, est in drawn if hasattr(est, "overall"))
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

    P().feed((out / "summary.html").read_text(encoding="utf-8"))
    book = pd.read_excel(out / "summary.xlsx", sheet_name=None)
    for r in hidden.itertuples():
        secret = {f"{100 * v:.1f}" for v in ov.loc[r.agency_id, ["estimate", "ci_low",
                                                                "ci_high"]]}
        secret |= {f"{100 * v:.1f}" for v in el.loc[el["agency_id"] == r.agency_id,
                                                     "estimate"]}
        rows = [" ".join(c) for c in cells if r.agency_name in " ".join(c)]
        assert rows
        for text in rows:
            assert not set(re.findall(r"\d+\.\d", text)) & secret, text
        for name in ("Agencies", "Elements", "Criteria"):
            sheet = book[name]
            mine = sheet[sheet["Code"] == r.agency_id]
            assert mine["Index"].isna().all()
        assert r.agency_id in set(book["Not published"]["Code"])
