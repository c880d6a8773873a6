"""Figures: what they plot equals the result given, suppressed values never drawn, legible.

Legibility is measured with the renderer's text extents at the figure's own size: no text
below 7 pt, no two tick labels overlapping (``plotting._legibility_problems``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from outputs_data import (
    REVIEW,
    SMALL,
    agencies_estimate,
    agency_frame,
    assert_no_suppressed_plotted,
    flagged_agencies,
    national_estimate,
)
from test_ranking import simple_standin

from satsample._validation import SatsampleError
from satsample.allocation import allocate, allocate_for_precision
from satsample.datasets import make_population, simulate_responses
from satsample.design import survey_design
from satsample.outputs.change import change
from satsample.outputs.flags import flag_estimate
from satsample.outputs.plotting import (
    _TEXT,
    TIER_LABELS,
    _legibility_problems,
    plot_agency_index,
    plot_allocation,
    plot_change,
    plot_element_heatmap,
    plot_index,
    plot_ranks,
    plot_response_rates,
    plot_weights,
)
from satsample.outputs.ranking import league_table
from satsample.selection import select
from satsample.weighting import adjust_nonresponse, trim

AG = agency_frame(100)


@pytest.fixture(scope="module")
def hundred():
    return flagged_agencies(0)


@pytest.fixture(scope="module")
def pipeline():
    pop = make_population(n_users=3000, n_agencies=8, rng=1)
    sel = select(pop.frame, ids="user_id", strata="agency_id", n=60, rng=2)
    s = simulate_responses(pop, sel.sample, rng=3)
    d = survey_design(s, strata="agency_id", weights="design_weight", fpc="fpc")
    d2 = adjust_nonresponse(d, "responded", classes="agency_id")
    d3 = trim(d2, upper=12.0)
    est = satisfaction_index_of(d3, pop)
    return pop, d2, d3, est


def satisfaction_index_of(design, pop):
    from satsample.estimation import satisfaction_index

    return satisfaction_index(design, pop.questionnaire, by="agency_id")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _line(ax, label):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def _legible(fig):
    assert _legibility_problems(fig) == []


def _tick_row(ax, y):
    ticks = list(ax.get_yticks())
    return ax.get_yticklabels()[ticks.index(y)].get_text()


def _key_outside_data(ax):
    """The key (legend) does not cover the axes' data area."""
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    leg = ax.get_legend() or (fig.legends[0] if fig.legends else None)
    assert leg is not None
    lb = leg.get_window_extent(r)
    ab = ax.get_window_extent(r)
    assert lb.y0 >= ab.y1 - 1 or lb.x0 >= ab.x1 - 1, "key over the data"


# --------------------------------------------------------------------------- checker
def test_the_legibility_checker_finds_small_text_and_overlapping_labels():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_yticks(range(60))
    ax.set_yticklabels([f"agency {i}" for i in range(60)], fontsize=8)
    ax.set_title("tiny", fontsize=5)
    ax.text(0.5, 0.5, "a note", fontsize=8)
    ax.text(0.5, 0.5, "another note", fontsize=8)
    problems = _legibility_problems(fig)
    assert any("tick labels" in p and "overlap" in p for p in problems)
    assert any("'tiny' is 5 pt" in p for p in problems)
    assert any("texts 'a note' and 'another note' overlap" in p for p in problems)


def test_vietnamese_labels_render_with_the_default_font():
    # every character of every Vietnamese label has a glyph in the font matplotlib picks
    path = font_manager.findfont(plt.rcParams["font.sans-serif"][0])
    font = FT2Font(path)
    text = "".join(_TEXT["vi"].values()) + "".join(TIER_LABELS["vi"].values())
    missing = sorted({c for c in text if c.strip() and font.get_char_index(ord(c)) == 0})
    assert missing == [], f"{path} has no glyph for {missing}"
    assert "DejaVuSans" in path


# --------------------------------------------------------------------------- plot_index
def test_plot_index_plots_the_published_rows_grouped_by_tier(hundred):
    nat = national_estimate()
    ax = plot_index(hundred, names=AG["name"], tier=AG["tier"], reference=nat)
    ov = hundred.overall.set_index("agency_id")
    pub = ov[ov["status"] == "publish"]
    line = _line(ax, "estimate")
    xs = np.asarray(line.get_xdata())
    ys = np.asarray(line.get_ydata())
    assert len(xs) == len(pub)
    for x, y in zip(xs, ys, strict=True):
        name = _tick_row(ax, y)
        agency = AG.index[AG["name"] == name][0]
        assert x == pytest.approx(100 * ov.loc[agency, "estimate"], rel=1e-14)
    # the review row has an open marker, the suppressed rows none
    rev = _line(ax, "review")
    assert _tick_row(ax, rev.get_ydata()[0]) == AG.loc[REVIEW, "name"]
    assert rev.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    assert_no_suppressed_plotted(ax.figure, hundred)
    notes = [t.get_text() for t in ax.texts]
    assert sorted(notes) == sorted(f"not published (n = {n})" for n in SMALL.values())
    # tiers: bold headings in the order province, district, commune; sorted within
    heads = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert heads == ["Provincial departments", "District one-stop shops",
                     "Commune one-stop shops"]
    # the national estimate's interval as a band, named with its numbers
    nrow = nat.overall.iloc[0]
    (band,) = [p for p in ax.patches if p.get_label().startswith("national estimate")]
    label = (f"national estimate {100 * nrow['estimate']:.1f} "
             f"({100 * nrow['ci_low']:.1f}-{100 * nrow['ci_high']:.1f})")
    assert band.get_label() == label
    x0, x1 = band.get_x(), band.get_x() + band.get_width()
    assert (x0, x1) == pytest.approx((100 * nrow["ci_low"], 100 * nrow["ci_high"]))
    _key_outside_data(ax)
    _legible(ax.figure)


def test_plot_index_mean_of_agencies_leaves_out_suppressed_and_says_so(hundred):
    ax = plot_index(hundred)
    ov = hundred.overall
    mean = 100 * ov.loc[ov["status"] != "suppress", "estimate"].mean()
    (ref,) = [ln for ln in ax.lines if ln.get_label().startswith("mean of agencies")]
    assert ref.get_xdata()[0] == pytest.approx(mean, rel=1e-14)
    assert ref.get_label() == f"mean of agencies {mean:.1f}"
    # without flags every row is drawn; element level with a key
    plain = agencies_estimate(0, n_agencies=12)
    ax2 = plot_index(plain, table="element", key="E3", by_order="label", reference=None,
                     scale=1.0)
    e3 = plain.elements[plain.elements["element"] == "E3"].sort_values("agency_id")
    np.testing.assert_allclose(_line(ax2, "estimate").get_xdata(), e3["estimate"].to_numpy(),
                               rtol=1e-14)
    assert ax2.get_xlabel() == "E3: satisfaction index (0-1)"
    with pytest.raises(SatsampleError, match="key="):
        plot_index(plain, table="element")
    with pytest.raises(SatsampleError, match="by_order"):
        plot_index(plain, by_order="size")
    with pytest.raises(SatsampleError, match="language"):
        plot_index(plain, language="fr")
    with pytest.raises(SatsampleError, match="names has no value"):
        plot_index(plain, names={"PRV01": "x"})
    with pytest.raises(SatsampleError, match="scale"):
        plot_index(plain, scale=0)


def test_plot_index_on_real_pipeline_output(pipeline):
    _, _, _, est = pipeline
    ax = plot_index(est)
    tab = est.overall.sort_values("estimate", ascending=False)
    np.testing.assert_allclose(_line(ax, "estimate").get_xdata(),
                               100 * tab["estimate"].to_numpy(), rtol=1e-14)
    (segs,) = [c.get_segments() for c in ax.collections if c.get_label() == "interval"]
    np.testing.assert_allclose([s[0][0] for s in segs], 100 * tab["ci_low"].to_numpy())
    np.testing.assert_allclose([s[1][0] for s in segs], 100 * tab["ci_high"].to_numpy())
    _legible(ax.figure)


# --------------------------------------------------------------------------- A4 page
def test_agency_index_fits_100_agencies_on_an_a4_page(hundred):
    fig = plot_agency_index(hundred, names=AG["name"], tier=AG["tier"],
                            reference=national_estimate(),
                            title="Satisfaction index by agency, 95 % intervals")
    assert fig.legends[0].get_title().get_text().startswith("Satisfaction index by agency")
    w, h = fig.get_size_inches()
    assert w == pytest.approx(8.27) and h <= 11.69
    assert len(fig.axes) == 2  # two columns of about 52 rows
    _legible(fig)
    # every agency is on the page once, the suppressed ones as marked gaps
    names = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()
             if t.get_fontweight() != "bold"]
    assert sorted(names) == sorted(AG["name"])
    gaps = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(gaps) == len(SMALL)
    plotted = np.concatenate([_line(ax, "estimate").get_xdata() for ax in fig.axes])
    ov = hundred.overall
    np.testing.assert_allclose(np.sort(plotted),
                               np.sort(100 * ov.loc[ov["status"] == "publish", "estimate"]))
    assert_no_suppressed_plotted(fig, hundred)
    heads = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()
             if t.get_fontweight() == "bold"]
    assert heads[-1] == "Commune one-stop shops (continued)"
    # the same x axis on both columns
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
    sizes = {t.get_fontsize() for ax in fig.axes for t in ax.get_yticklabels()}
    assert min(sizes) >= 7


def test_agency_index_in_vietnamese(hundred):
    fig = plot_agency_index(hundred, names=AG["name"], tier=AG["tier"], language="vi",
                            reference=national_estimate())
    heads = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()
             if t.get_fontweight() == "bold"]
    assert heads[0] == "Sở, ban, ngành cấp tỉnh"
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0] == "ước lượng"
    assert any(t.startswith("ước lượng chung ") and "," in t for t in texts)  # decimal comma
    assert fig.axes[0].get_xlabel() == "chỉ số hài lòng (0-100)"
    _legible(fig)


# --------------------------------------------------------------------------- heat map
def test_element_heatmap_values_and_gaps(hundred):
    fig = plot_element_heatmap(hundred, names=AG["name"], tier=AG["tier"])
    _legible(fig)
    assert_no_suppressed_plotted(fig, hundred)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    el = hundred.elements.pivot(index="agency_id", columns="element", values="estimate")
    ov = hundred.overall.set_index("agency_id")
    seen = 0
    for ax in panels:
        arr = ax.images[0].get_array()
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["Overall", "E1", "E2", "E3",
                                                               "E4", "E5"]
        for y, name in enumerate(labels):
            if name not in set(AG["name"]):
                assert arr.mask[y].all()  # heading rows (and padding) are empty
                continue
            agency = AG.index[AG["name"] == name][0]
            seen += 1
            if ov.loc[agency, "status"] == "suppress":
                assert arr.mask[y].all()
            else:
                expect = 100 * np.r_[ov.loc[agency, "estimate"], el.loc[agency].to_numpy()]
                np.testing.assert_allclose(arr[y].data, expect, rtol=1e-14)
                # the value is written in the cell, rounded
                cell = [t.get_text() for t in ax.texts if t.get_position() == (0, y)]
                assert cell == [f"{expect[0]:.1f}"]
    assert seen == 100
    key = [t.get_text() for t in fig.texts]
    assert any("E1 Access to services" in t for t in key)


# --------------------------------------------------------------------------- ranks
def test_plot_ranks_shows_ranks_and_intervals_with_the_key_outside():
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
    ys = _line(ax, "rank").get_ydata()
    assert [_tick_row(ax, y) for y in ys] == t["domain"].tolist()
    assert ys[0] == max(ys)  # rank 1 on top
    _key_outside_data(ax)
    _legible(ax.figure)


def test_plot_ranks_leaves_suppressed_agencies_out_and_names_them(hundred):
    lt = league_table(hundred)
    ax = plot_ranks(lt, names=AG["name"])
    assert len(_line(ax, "rank").get_xdata()) == 100 - len(SMALL)
    assert_no_suppressed_plotted(ax.figure, hundred)
    note = ax.figure.get_supxlabel() if hasattr(ax.figure, "get_supxlabel") else \
        ax.figure._supxlabel.get_text()
    note = " ".join(note.split())
    for a in SMALL:
        assert AG.loc[a, "name"] in note
    _legible(ax.figure)


# --------------------------------------------------------------------------- weights
def test_plot_weights_one_chart_type_for_every_step(pipeline):
    _, d2, d3, _ = pipeline
    ax = plot_weights(d3, steps={"after nonresponse": d2.weights})
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["step 1: design", "step 2: nonresponse", "step 3: trim",
                      "after nonresponse"]
    (ranges,) = [c for c in ax.collections if c.get_label() == "range"]
    xs = [(s[0][0], s[1][0]) for s in ranges.get_segments()]
    w2 = np.asarray(d2.weights)
    w2 = w2[w2 > 0]
    expect = [(st.weight_min, st.weight_max) for st in d3.history] + [(w2.min(), w2.max())]
    np.testing.assert_allclose(xs, expect, rtol=1e-14)
    means = _line(ax, "mean").get_xdata()
    np.testing.assert_allclose(means, [st.weight_sum / st.n_rows for st in d3.history]
                               + [w2.mean()], rtol=1e-12)
    assert ax.get_xscale() == "log"
    kish = [t.get_text() for t in ax.texts]
    assert kish[0] == (f"Kish deff {d3.history[0].kish_deff:.2f}, effective n "
                       f"{d3.history[0].effective_n:.0f}")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "smallest to largest weight", "mean weight"]
    _key_outside_data(ax)
    _legible(ax.figure)


# --------------------------------------------------------------------------- allocation
def test_plot_allocation_sizes_and_moe_with_honest_axes():
    N = {"A": 50, "B": 400, "C": 3000, "D": 20}
    alloc = allocate(N, 200, rule="proportional", p=0.8, min_n=15)
    frame = alloc.to_frame()
    ax = plot_allocation(alloc)
    pts = _line(ax, "strata")
    np.testing.assert_array_equal(pts.get_xdata(), frame["N_h"].to_numpy())
    np.testing.assert_array_equal(pts.get_ydata(), frame["n_h"].to_numpy())
    assert ax.get_xlim() == ax.get_ylim()  # the same decades on both axes
    _legible(ax.figure)
    ax2 = plot_allocation(alloc, kind="moe")
    srt = frame.sort_values("expected_moe", ascending=False)
    np.testing.assert_allclose(_line(ax2, "expected").get_xdata(),
                               100 * srt["expected_moe"].to_numpy(), rtol=1e-14)
    assert ax2.get_xlim()[0] == 0.0  # a margin of error is drawn from zero
    _legible(ax2.figure)
    # margins that all sit at their target are not magnified
    N2 = pd.Series({f"S{i}": 500 + 37 * i for i in range(12)})
    plan = allocate_for_precision(N2, moe=0.08, p=0.8, min_respondents=30,
                                  response_rate=0.7)
    ax3 = plot_allocation(plan, kind="moe")
    lo, hi = ax3.get_xlim()
    assert lo == 0 and hi < 10
    np.testing.assert_allclose(_line(ax3, "target").get_xdata(), 8.0)
    ax4 = plot_allocation(plan)
    need = _line(ax4, "publication minimum").get_ydata()[0]
    assert need == pytest.approx(30 / 0.7)
    no_moe = allocate(N, 200, rule="proportional")
    with pytest.raises(SatsampleError, match="expected margins"):
        plot_allocation(no_moe, kind="moe")


# --------------------------------------------------------------------------- change
def test_plot_change_marks_significant_changes_and_leaves_out_suppressed(hundred):
    last = flagged_agencies(1, shift=-0.01)
    ch = change(last, hundred)
    sup = hundred.overall.loc[hundred.overall["status"] == "suppress", "agency_id"].tolist()
    ax = plot_change(ch, names=AG["name"], suppressed=sup)
    t = ch.to_frame()
    t = t[~t["domain"].isin(sup)]
    up = t[t["ci_low"] > 0]
    down = t[t["ci_high"] < 0]
    np.testing.assert_allclose(np.sort(_line(ax, "increase").get_xdata()),
                               np.sort(100 * up["change"].to_numpy()))
    np.testing.assert_allclose(np.sort(_line(ax, "decrease").get_xdata()),
                               np.sort(100 * down["change"].to_numpy()))
    assert len(_line(ax, "no significant change").get_xdata()) == len(t) - len(up) - len(down)
    assert len(up) + len(down) > 0
    for a in sup:
        row = ch.to_frame().set_index("domain").loc[a]
        plotted = np.concatenate([ln.get_xdata() for ln in ax.lines])
        assert not np.any(np.isclose(plotted, 100 * row["change"], rtol=0, atol=1e-12))
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(-hi)  # symmetric about no change
    _key_outside_data(ax)
    _legible(ax.figure)


# --------------------------------------------------------------------------- response rates
def test_plot_response_rates_values_axis_and_errors():
    table = pd.DataFrame({"agency": ["A", "B", "C", "D"], "rate": [0.55, 0.8, 0.62, 0.71],
                          "tier": ["province", "commune", "province", "commune"],
                          "name": ["Dept A", "Shop B", "Dept C", "Shop D"]})
    ax = plot_response_rates(table)
    line = _line(ax, "rate")
    got = {_tick_row(ax, y): x for x, y in zip(line.get_xdata(), line.get_ydata(),
                                                strict=True)}
    assert got == pytest.approx({"Dept A": 55.0, "Shop B": 80.0, "Dept C": 62.0,
                                 "Shop D": 71.0})
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Provincial departments", "Dept C", "Dept A", "Commune one-stop shops",
                      "Shop B", "Shop D"]
    assert ax.get_xlim() == (0.0, 100.0)
    keys = [t.get_text() for t in ax.get_legend().get_texts()]
    assert keys == ["response rate", "mean of agencies 67.0"]
    _legible(ax.figure)
    with pytest.raises(SatsampleError, match=r"agency B .*shares in"):
        plot_response_rates(table.assign(rate=[0.5, 80, 0.6, 0.7]))
    with pytest.raises(SatsampleError, match="rate"):
        plot_response_rates(table.drop(columns="rate"))
    ax2 = plot_response_rates(table[["agency", "rate"]], language="vi")
    assert ax2.get_xlabel() == "tỷ lệ trả lời (%)"


def test_every_figure_accepts_an_axes_and_returns_it(pipeline, hundred):
    _, _, d3, est = pipeline
    for draw in (lambda ax: plot_index(est, ax=ax),
                 lambda ax: plot_ranks(league_table(hundred), ax=ax),
                 lambda ax: plot_weights(d3, ax=ax),
                 lambda ax: plot_allocation(allocate({"A": 50, "B": 80}, 40), ax=ax)):
        _fig, ax = plt.subplots()
        assert draw(ax) is ax


def test_flag_estimate_then_plot_real_data_suppresses_small_agencies(pipeline):
    _, _, _, est = pipeline
    n = est.overall["n"].to_numpy()
    cut = int(np.sort(n)[1])
    flagged = flag_estimate(est, min_n=cut, min_effective_n=None)
    ax = plot_index(flagged)
    assert_no_suppressed_plotted(ax.figure, flagged)
    assert len(ax.texts) == int((n < cut).sum()) >= 1


def test_a_model_based_row_replaces_a_suppressed_one_and_is_marked(hundred):
    import dataclasses

    ov = hundred.overall.copy()
    i = ov.index[ov["agency_id"] == "COM23"][0]
    ov.loc[i, ["estimate", "ci_low", "ci_high"]] = [0.7712, 0.7301, 0.8123]
    ov.loc[i, ["status", "source"]] = ["model-based", "model-based"]
    est = dataclasses.replace(hundred, overall=ov)
    ax = plot_index(est, names=AG["name"], tier=AG["tier"])
    model = _line(ax, "model")
    assert model.get_marker() == "s"
    assert model.get_xdata().tolist() == pytest.approx([77.12])
    assert _tick_row(ax, model.get_ydata()[0]) == AG.loc["COM23", "name"]
    keys = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "model-based estimate" in keys
    assert len(ax.texts) == len(SMALL) - 1  # one gap fewer
