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
    sample = ss.select(pop.frame, ids="user_id", strata="agency_id", n=alloc, rng=4)
    answers = ss.simulate_responses(pop, sample.sample, rng=5)
    design = ss.survey_design(answers, strata="agency_id", weights="design_weight")
    boot = ss.bootstrap(design, n_replicates=20, rng=1)
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
    t = objects["index"].summary(table="item")
    assert repr(t).splitlines()[0] == "Satisfaction index (item)"
    assert isinstance(objects["estimate"].table, pd.DataFrame)


def test_renamed_keywords_still_work_with_a_deprecation_warning(objects):
    """One word per concept: n_replicates, ids/strata, target_variance, table (level = confidence)."""
    pop = ss.make_population(n_users=5_000, n_agencies=4, rng=3)
    new = ss.select(pop.frame, ids="user_id", strata="agency_id", n=20, rng=4).sample
    with pytest.warns(DeprecationWarning, match=r"select\(id=\.\.\.\) is now select\(ids="), \
            pytest.warns(DeprecationWarning, match=r"select\(stratum=\.\.\.\) is now "):
        old = ss.select(pop.frame, id="user_id", stratum="agency_id", n=20, rng=4).sample
    pd.testing.assert_frame_equal(new, old)
    with pytest.raises(ss.SatsampleError, match="give ids= only"):
        ss.select(pop.frame, ids="user_id", id="user_id", n=20, rng=4)
    d = objects["design"]
    with pytest.warns(DeprecationWarning, match="n_replicates"):
        b = ss.bootstrap(d, replicates=5, rng=1)
    assert b.replicates.n_replicates == 5
    idx = objects["index"]
    with pytest.warns(DeprecationWarning, match="table"):
        old_t = idx.to_frame(level="item")
    pd.testing.assert_frame_equal(old_t, idx.to_frame(table="item"))
    sizes = pd.Series([1000, 2000], index=["a", "b"])
    a = ss.allocate(sizes, rule="neyman", sd=[1.0, 2.0], target_variance=1e-3)
    with pytest.warns(DeprecationWarning, match="target_variance"):
        b2 = ss.allocate(sizes, rule="neyman", sd=[1.0, 2.0], variance=1e-3)
    assert list(a.n_h) == list(b2.n_h)


@pytest.mark.parametrize("module", ["satsample.replicate.bootstrap", "satsample.replicate.jackknife",
                                    "satsample.estimation.contrasts",
                                    "satsample.estimation.replicates"])
def test_docstring_examples(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module),
                          optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_level_is_the_confidence_level_everywhere_and_old_spellings_still_work():
    """league_table/change/plot_index: table= picks the index table, level= is the confidence
    level; the former level="element", alpha= and conf_level= work for one release, warned."""
    import warnings

    from satsample._compat import confidence_level_keywords
    from satsample._validation import SatsampleError

    @confidence_level_keywords(table=True, alpha=True, conf_level=True)
    def f(*, table="overall", level=0.95):
        return table, level

    assert f() == ("overall", 0.95)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert f(level="item") == ("item", 0.95)
        assert f(alpha=0.1) == ("overall", 0.9)
        assert f(conf_level=0.8) == ("overall", 0.8)
    assert [r.category for r in rec] == [DeprecationWarning] * 3
    assert "f(alpha=...) is now f(level=...)" in str(rec[1].message)
    with pytest.raises(SatsampleError, match="give level= only"):
        f(alpha=0.1, level=0.9)
    import inspect

    from satsample.outputs.change import change
    from satsample.outputs.flags import flag_estimate, publication_flags
    from satsample.outputs.plotting import plot_index
    from satsample.outputs.ranking import league_table, rank_intervals

    for fn in (league_table, change, plot_index):
        assert "table" in inspect.signature(fn).parameters
    for fn in (league_table, change, publication_flags, flag_estimate, rank_intervals):
        params = inspect.signature(fn).parameters
        assert params["level"].default == 0.95
        assert not {"alpha", "conf_level"} & set(params)
