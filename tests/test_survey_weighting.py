"""Weighting steps of the configuration: poststratify, calibrate, trim, propensity, Taylor."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import satsample as ss
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
    assert hist[1:] == ["eligibility", "nonresponse", "poststratify", "calibrate", "trim"]
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


def test_agencies_divided_into_strata(tmp_path):
    """frame.strata: each agency's sample split over its strata; weights N_hs / n_hs."""
    from satsample.survey import DataError

    gen = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame({"uid": np.arange(1, n + 1),
                          "ag": np.repeat(["X", "Y", "Z"], [300, 200, 100]),
                          "sex": gen.choice(["F", "M"], n)})
    frame["st"] = frame["ag"] + "-" + frame["sex"]
    frame.to_csv(tmp_path / "frame.csv", index=False)
    cfg_text = '''[survey]
name = "strata"
seed = 3
[frame]
file = "frame.csv"
id = "uid"
agency = "ag"
strata = "st"
auxiliary = ["sex"]
[questionnaire]
name = "reference_22"
[design]
allocation = "fixed"
n_per_agency = 41
reserves = 2
min_respondents = 5
[field]
disposition = "disp"
[[field.responses]]
file = "forms.csv"
[variance]
method = "taylor"
[output]
folder = "out"
language = "en"
'''
    (tmp_path / "survey.toml").write_text(cfg_text, encoding="utf-8")
    res = plan(load_config(tmp_path / "survey.toml"))
    strata = pd.read_csv(res.folder / "allocation_strata.csv")
    assert strata.groupby("agency")["n"].sum().to_dict() == {"X": 41, "Y": 41, "Z": 41}
    assert (strata["n"] >= np.minimum(2, strata["N"])).all()
    sizes = frame.groupby("st").size()
    # the split is the public bounded proportional allocation of each agency's 41
    for _, g in strata.groupby("agency"):
        ref = ss.allocate(g.set_index("stratum")["N"], 41, rule="proportional", min_n=2)
        assert g["n"].tolist() == ref.n_h.tolist()
    units = pd.DataFrame(json.loads((res.folder / "design.json").read_text())["units"])
    main = units[units["reserve_rank"] == 0]
    assert main.groupby("stratum").size().to_dict() == strata.set_index("stratum")["n"].to_dict()
    from satsample import load_questionnaire

    q = load_questionnaire("reference_22")
    forms = pd.DataFrame({"uid": main["id"], "disp": "I"})
    for item in q.items:
        forms[item] = gen.integers(1, 6, len(forms))
    forms.to_csv(tmp_path / "forms.csv", index=False)
    out = run(load_config(tmp_path / "survey.toml"))
    w = pd.read_csv(out.folder / "weights.csv")
    st = frame.set_index("uid").loc[w["uid"], "st"].to_numpy()
    n_s = strata.set_index("stratum")["n"]
    np.testing.assert_allclose(w["design_weight"], sizes.loc[st].to_numpy() / n_s.loc[st],
                               rtol=1e-12)
    assert out.design.n_strata == len(strata)
    # a stratum spanning two agencies is refused, naming it
    frame.loc[0, "st"] = "Y-F"
    frame.to_csv(tmp_path / "frame.csv", index=False)
    with pytest.raises(DataError, match=r"stratum 'Y-F' spans several agencies \('X', 'Y'\)"):
        plan(load_config(tmp_path / "survey.toml"), force=True)
