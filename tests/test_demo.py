"""The main job: `satsample demo` writes files and runs plan, validate and run on them."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest

from satsample.cli import main
from satsample.datasets import make_population

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
        "inputs", "plan", "results", "survey.toml", "truth_check.csv", "validation"]
    assert sorted(p.name for p in (out / "inputs").iterdir()) == [
        "frame.csv", "releases.csv", "responses_online.csv", "responses_paper.xlsx"]
    assert {"design.json", "field_lists.xlsx", "field_list.csv", "allocation.csv"} <= {
        p.name for p in (out / "plan").iterdir()}
    assert (out / "validation" / "quality_report.html").exists()
    html = (out / "results" / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "PRV01" in html


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
    tab = pd.read_csv(out / "truth_check.csv")
    pop = make_population(n_users=40000)
    assert sorted(tab["agency_id"]) == sorted(pop.agencies["agency_id"])
    assert tab["covered"].mean() >= 0.85
    idx = pd.read_csv(out / "results" / "index_agency_id.csv", keep_default_na=False)
    overall = idx[idx["level"] == "overall"]
    assert len(overall) == 100 and set(overall["status"]) <= {"publish", "review", "suppress"}
    assert (overall.loc[overall["status"] != "publish", "reason"] != "").all()
    rates = pd.read_csv(out / "results" / "response_rates.csv")
    assert ((rates["RR1"] > 0.3) & (rates["RR1"] < 1)).all()


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
