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
    assert names == ["agency_index.csv", "agency_index.png", "summary.html", "summary.txt"]
    assert (default_run / "agency_index.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (default_run / "summary.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "PRV01" in html


def test_agency_table_is_complete_and_coherent(default_run):
    tab = pd.read_csv(default_run / "agency_index.csv", keep_default_na=False)
    assert list(tab.columns) == COLUMNS
    pop = make_population()  # the demo's default population
    assert sorted(tab["agency_id"]) == sorted(pop.agencies["agency_id"])
    assert tab["rank"].tolist() == list(range(1, len(tab) + 1))
    assert tab["index"].is_monotonic_decreasing
    assert ((tab["ci_low"] < tab["index"]) & (tab["index"] < tab["ci_high"])).all()
    assert (tab["se"] > 0).all() and (tab["respondents"] > 0).all()
    # the flag column explains every agency that is not cleared for publication
    assert set(tab["status"]) <= {"publish", "review", "suppress"}
    assert (tab.loc[tab["status"] != "publish", "flag"] != "").all()
    assert (tab.loc[tab["respondents"] < 30, "status"] == "suppress").all()
    # per-agency truth: most agency intervals cover it (bootstrap 95 % intervals)
    covered = ((tab["ci_low"] <= tab["true_index"]) & (tab["true_index"] <= tab["ci_high"])).mean()
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
