"""Figures: produced, and what they plot equals the result they were given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_ranking import simple_standin

from satsample._validation import SatsampleError
from satsample.allocation import allocate
from satsample.datasets import make_population, simulate_responses
from satsample.design import survey_design
from satsample.index import satisfaction_index
from satsample.plotting import (
    plot_allocation,
    plot_element_profile,
    plot_index,
    plot_ranks,
    plot_weights,
)
from satsample.ranking import league_table
from satsample.selection import select
from satsample.weighting import adjust_nonresponse, trim


@pytest.fixture(scope="module")
def pipeline():
    pop = make_population(n_users=3000, n_agencies=8, rng=1)
    sel = select(pop.frame, id="user_id", stratum="agency_id", n=60, rng=2)
    s = simulate_responses(pop, sel.sample, rng=3)
    d = survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc")
    d2 = adjust_nonresponse(d, "responded", classes="agency_id")
    d3 = trim(d2, upper=12.0)
    est = satisfaction_index(d3, pop.questionnaire, by="agency_id")
    return pop, d2, d3, est


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _line(ax, label):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def test_plot_index_plots_the_estimate_table(pipeline):
    _, _, _, est = pipeline
    ax = plot_index(est)
    tab = est.overall.sort_values("estimate", ascending=False)
    line = _line(ax, "estimate")
    np.testing.assert_allclose(line.get_xdata(), 100 * tab["estimate"].to_numpy(), rtol=1e-14)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # y positions: first row on top
    ys = np.asarray(line.get_ydata())
    assert [labels[list(ax.get_yticks()).index(y)] for y in ys] == tab["agency_id"].tolist()
    (segs,) = [c.get_segments() for c in ax.collections]
    lo = np.array([s[0][0] for s in segs])
    hi = np.array([s[1][0] for s in segs])
    np.testing.assert_allclose(lo, 100 * tab["ci_low"].to_numpy(), rtol=1e-14)
    np.testing.assert_allclose(hi, 100 * tab["ci_high"].to_numpy(), rtol=1e-14)
    ref = next(ln for ln in ax.lines if ln.get_label().startswith("reference"))
    assert ref.get_xdata()[0] == pytest.approx(100 * tab["estimate"].mean(), rel=1e-14)
    # element level on a given axes, alphabetical order, no reference
    _fig, ax2 = plt.subplots()
    out = plot_index(est, level="element", key="E3", by_order="label", reference=False, ax=ax2)
    assert out is ax2
    e3 = est.elements[est.elements["element"] == "E3"].sort_values("agency_id")
    np.testing.assert_allclose(_line(ax2, "estimate").get_xdata(),
                               100 * e3["estimate"].to_numpy(), rtol=1e-14)
    with pytest.raises(SatsampleError, match="key="):
        plot_index(est, level="element")
    with pytest.raises(SatsampleError, match="by_order"):
        plot_index(est, by_order="size")


def test_plot_element_profile(pipeline):
    _, _, _, est = pipeline
    ax = plot_element_profile(est, domains=["PRV01", "COM02"])
    line = _line(ax, "PRV01")
    e = est.elements[est.elements["agency_id"] == "PRV01"]
    np.testing.assert_allclose(line.get_ydata(), 100 * e["estimate"].to_numpy(), rtol=1e-14)
    mean = _line(ax, "mean of domains")
    wide = est.elements.pivot(index="agency_id", columns="element", values="estimate")
    np.testing.assert_allclose(mean.get_ydata(), 100 * wide.mean().to_numpy(), rtol=1e-13)
    assert len(ax.lines) == 3
    with pytest.raises(SatsampleError, match="not in the estimate"):
        plot_element_profile(est, domains=["nope"])


def test_plot_ranks_shows_ranks_and_intervals():
    rng = np.random.default_rng(4)
    e = np.array([0.8, 0.7, 0.9, 0.75, 0.81])
    reps = e + rng.normal(0, 0.02, size=(200, 5))
    lt = league_table(simple_standin(e, reps))
    ax = plot_ranks(lt)
    t = lt.table
    np.testing.assert_array_equal(_line(ax, "rank").get_xdata(), t["rank"].to_numpy())
    (segs,) = [c.get_segments() for c in ax.collections]
    np.testing.assert_array_equal([s[0][0] for s in segs], t["rank_low"].to_numpy())
    np.testing.assert_array_equal([s[1][0] for s in segs], t["rank_high"].to_numpy())
    ticks = list(ax.get_yticks())
    labels = [x.get_text() for x in ax.get_yticklabels()]
    ys = _line(ax, "rank").get_ydata()
    assert [labels[ticks.index(y)] for y in ys] == t["domain"].tolist()
    assert ys[0] == max(ys)  # rank 1 on top


def test_plot_weights_draws_every_history_step(pipeline):
    _, d2, d3, _ = pipeline
    ax = plot_weights(d3, steps={"after nonresponse": d2.weights})
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["declared weights", "step 1: design", "step 2: nonresponse",
                      "step 3: trim", "after nonresponse", "final weights"]
    ranges = [c for c in ax.collections if c.get_segments()]
    xs = sorted((s[0][0], s[1][0]) for c in ranges for s in c.get_segments())
    expect = sorted((st.weight_min, st.weight_max) for st in d3.history)
    np.testing.assert_allclose(xs, expect, rtol=1e-14)
    assert ax.get_xscale() == "log"


def test_plot_allocation_sizes_and_moe():
    N = {"A": 50, "B": 400, "C": 3000, "D": 20}
    alloc = allocate(N, 200, rule="proportional", p=0.8, min_n=15)
    frame = alloc.to_frame()
    ax = plot_allocation(alloc)
    pts = _line(ax, "strata")
    np.testing.assert_array_equal(pts.get_xdata(), frame["N_h"].to_numpy())
    np.testing.assert_array_equal(pts.get_ydata(), frame["n_h"].to_numpy())
    ax2 = plot_allocation(alloc, kind="moe")
    srt = frame.sort_values("expected_moe", ascending=False)
    np.testing.assert_allclose(_line(ax2, "expected").get_xdata(),
                               100 * srt["expected_moe"].to_numpy(), rtol=1e-14)
    no_moe = allocate(N, 200, rule="proportional")
    with pytest.raises(SatsampleError, match="expected margins"):
        plot_allocation(no_moe, kind="moe")
