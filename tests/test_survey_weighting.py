"""Weighting steps of the configuration: poststratify, calibrate, trim, propensity, Taylor."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from satsample.survey import load_config, plan, run

EXAMPLES = Path(str(resources.files("satsample") / "survey" / "examples"))


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    work = tmp_path_factory.mktemp("ex")
    for p in EXAMPLES.iterdir():
        shutil.copy(p, work / p.name)
    plan(load_config(work / "survey.toml"))
    return work


def _with(work: Path, name: str, steps: str, variance: str) -> Path:
    text = (work / "survey.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[weighting.steps]]")
    tail = rest[rest.index("[variance]"):]
    tail = tail.replace('method = "bootstrap"\nreplicates = 200', variance)
    cfg = work / name
    cfg.write_text(head + steps + "\n" + tail, encoding="utf-8")
    return cfg


def test_poststratify_calibrate_trim_with_taylor(example):
    steps = '''[[weighting.steps]]
type = "nonresponse"
method = "propensity"
covariates = ["age_group", "channel"]
n_classes = 3

[[weighting.steps]]
type = "poststratify"
variables = ["agency_id"]

[[weighting.steps]]
type = "calibrate"
variables = ["sex", "age_group"]
distance = "raking"
bounds = [0.2, 5.0]

[[weighting.steps]]
type = "trim"
upper = 6.0
'''
    cfg = _with(example, "taylor.toml", steps, 'method = "taylor"')
    res = run(load_config(cfg))
    hist = [s.method for s in res.design.history]
    assert hist[1:] == ["nonresponse", "nonresponse", "poststratify", "calibrate", "trim"]
    w = np.asarray(res.design.weights)
    assert w.max() <= 6.0 * w[w > 0].mean() * (1 + 1e-9)
    est = res.estimates["agency_id"].overall
    assert est["se"].gt(0).all() and res.league is not None
    assert res.estimates["all"].options["variance"] == "taylor"


def test_calibration_totals_from_a_file_are_met(example):
    frame = pd.read_csv(example / "frame.csv", dtype=str)
    counts = frame["sex"].value_counts()
    pd.DataFrame({"variable": "sex", "level": counts.index, "Freq": counts.to_numpy() * 0.9}
                 ).to_csv(example / "totals.csv", index=False)
    steps = '''[[weighting.steps]]
type = "nonresponse"

[[weighting.steps]]
type = "calibrate"
variables = ["sex"]
file = "totals.csv"
distance = "linear"
rescale = false
'''
    cfg = _with(example, "cal.toml", steps, 'method = "bootstrap"\nreplicates = 20')
    res = run(load_config(cfg))
    d = res.design
    w = pd.Series(np.asarray(d.weights)).groupby(d.data["sex"].to_numpy()).sum()
    np.testing.assert_allclose(w.sort_index().to_numpy(),
                               0.9 * counts.sort_index().to_numpy(), rtol=1e-8)
