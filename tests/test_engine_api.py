"""The public namespace and the short reprs of designs, results and allocations."""

from __future__ import annotations

import pandas as pd
import pytest

import satsample as ss


def test_dir_lists_only_the_api():
    names = dir(ss)
    assert names == sorted(ss.__all__)
    for leak in ("Any", "annotations", "importlib", "_importlib", "_version", "_EXPORTS"):
        assert leak not in names
    for name in ("contrast", "with_replicates", "satisfaction_index", "survey_design"):
        assert name in names and callable(getattr(ss, name))


@pytest.fixture(scope="module")
def objects():
    pop = ss.make_population(n_users=20_000, n_agencies=10, rng=3)
    sizes = pop.frame["agency_id"].value_counts().sort_index()
    alloc = ss.allocate(sizes, n=400)
    sample = ss.select(pop.frame, id="user_id", stratum="agency_id", n=alloc, rng=4)
    answers = ss.simulate_responses(pop, sample.sample, rng=5)
    design = ss.survey_design(answers, strata="agency_id", weights="design_weight")
    boot = ss.bootstrap(design, replicates=20, rng=1)
    est = ss.mean(design, ["q01", "q02"], by="sex", na="drop")
    index = ss.satisfaction_index(boot, pop.questionnaire, by="agency_id")
    return {"allocation": alloc, "sample": sample, "design": design, "boot": boot,
            "replicates": boot.replicates, "stage": design.stages[0], "estimate": est,
            "index": index}


def test_short_reprs(objects):
    for name, obj in objects.items():
        text = repr(obj)
        assert len(text) < 300, (name, len(text))
        assert "\n" not in text and "array(" not in text, name
    assert "20 subbootstrap replicates" in repr(objects["boot"])
    assert "by sex" in repr(objects["estimate"])
    assert "R=20" in repr(objects["index"])


def test_summary_prints_at_a_plain_repl(objects):
    s = objects["estimate"].summary()
    assert repr(s) == str(s) == s.as_text()
    assert repr(s).startswith("Survey mean\n")
    t = objects["index"].summary(level="item")
    assert repr(t).splitlines()[0] == "Satisfaction index (item)"
    assert isinstance(objects["estimate"].table, pd.DataFrame)
