"""``[small_area]`` in ``satsample run`` and ``satsample demo --small-area`` (issue 16).

An agency below the publication minimum is published with the Fay-Herriot EBLUP of its
index, labelled "model-based" in the index CSV, the league table, the HTML report and the
figure; the value equals :func:`satsample.sae.fay_herriot` called directly on the same
direct estimates and covariates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import re

import numpy as np
import pandas as pd
import pytest

import satsample.outputs.plotting as plotting
import satsample.survey.small_area as sa_module
from satsample.cli import main
from satsample.outputs.plotting import _TEXT
from satsample.outputs.report import _W, build_report
from satsample.sae import fay_herriot, smooth_variances
from satsample.survey import ConfigError, load_config
from satsample.survey.small_area import agency_covariates, apply_small_area

COVS = ["agency_level", "index_last_year", "channel:online"]


@pytest.fixture(scope="module")
def sa_demo(tmp_path_factory):
    """``satsample demo --small-area`` on a small population; the small-area step's input
    (the direct estimate by agency) and every agency figure drawn are captured."""
    mp = pytest.MonkeyPatch()
    seen: dict = {"figures": []}
    original_apply = sa_module.apply_small_area
    original_plot = plotting.plot_agency_index

    def apply(cfg, estimate, frame, rng):
        seen["args"] = (cfg, estimate, frame)
        seen["result"] = original_apply(cfg, estimate, frame, rng)
        return seen["result"]

    def plot(est, *args, **kw):
        fig = original_plot(est, *args, **kw)
        seen["figures"].append((fig, est))
        return fig

    mp.setattr(sa_module, "apply_small_area", apply)
    mp.setattr(plotting, "plot_agency_index", plot)
    out = tmp_path_factory.mktemp("demo_sa")
    argv = ["demo", "--out", str(out), "--quiet", "--n-users", "20000", "--replicates", "20",
            "--seed", "11", "--small-area"]
    try:
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            assert main(argv) == 0
    finally:
        mp.undo()
    seen["stdout"] = buf.getvalue()
    return out, seen


def _overall(out):
    idx = pd.read_csv(out / "results" / "index_agency_id.csv", keep_default_na=False,
                      dtype={"agency_id": str})
    return idx, idx[idx["level"] == "overall"].set_index("agency_id")


def test_a_suppressed_agency_gets_the_fay_herriot_eblup_of_a_direct_fit(sa_demo):
    out, seen = sa_demo
    _cfg, direct_est, _frame = seen["args"]
    _idx, ov = _overall(out)
    direct = direct_est.overall.set_index("agency_id")
    below = direct.index[direct["n"].to_numpy() < 30]
    assert len(below) >= 1 and (direct.loc[below, "status"] == "suppress").all()
    # the model fitted here, from the input files, with the library functions directly
    frame = pd.read_csv(out / "inputs" / "frame.csv", dtype=str)
    prior = pd.read_csv(out / "inputs" / "agency_covariates.csv", dtype={"agency_id": str})
    area = frame.groupby("agency_id").agg(
        agency_level=("agency_level", "first"), N=("user_id", "size"),
        online=("channel", lambda s: float((s == "online").mean())))
    area = area.join(prior.set_index("agency_id"))
    area = area.join(direct[["estimate", "se", "n"]]).rename_axis("agency_id").reset_index()
    area = smooth_variances(area, method="gvf", area="agency_id", population_size="N")
    fit = fay_herriot(area, area="agency_id", estimate="estimate", variance="psi",
                      covariates=["agency_level", "index_last_year", "online"], method="reml")
    ref = fit.table.set_index("agency_id")
    assert fit.n_sampled == 100
    model_rows = ov[ov["source"] == "model-based"]
    assert sorted(model_rows.index) == sorted(below)
    for a in below:
        got = float(ov.loc[a, "estimate"]) / 100
        assert abs(got - ref.loc[a, "estimate"]) <= 1e-12, a
        assert abs(float(ov.loc[a, "se"]) / 100 - ref.loc[a, "rmse"]) <= 1e-12, a
        assert abs(float(ov.loc[a, "ci_low"]) / 100 - ref.loc[a, "ci_low"]) <= 1e-12, a
    # agencies at or above the minimum keep their direct estimate
    at_least = direct.index[direct["n"].to_numpy() >= 30]
    assert (ov.loc[at_least, "source"] == "direct").all()
    for a in at_least[:10]:
        assert float(ov.loc[a, "estimate"]) == pytest.approx(100 * direct.loc[a, "estimate"],
                                                             rel=1e-14)
    # the run records the fit
    step = seen["result"][1]
    assert step.fit.sigma2_v == pytest.approx(fit.sigma2_v, rel=1e-10)
    assert set(step.model_based) == set(below)


def test_the_csv_and_league_table_label_the_model_based_rows(sa_demo):
    out, _ = sa_demo
    idx, ov = _overall(out)
    mb = ov[ov["source"] == "model-based"]
    assert (mb["status"] == "model-based").all()
    assert mb["model"].str.startswith("EBLUP (reml): Fay-Herriot area-level model, REML").all()
    assert mb["model"].str.contains("index_last_year").all()
    assert (ov.loc[ov["source"] == "direct", "model"] == "").all()
    assert (mb["reason"].str.startswith("too few respondents")).all()
    for c in ("df", "deff", "effective_n"):  # properties of the direct estimator
        assert (mb[c] == "").all(), c
    # elements and criteria are not modelled: still unpublished
    rows = idx[(idx["level"] != "overall") & idx["agency_id"].isin(mb.index)]
    assert len(rows) and (rows["estimate"] == "").all() and (rows["source"] == "direct").all()
    lt = pd.read_csv(out / "results" / "league_table.csv", keep_default_na=False,
                     dtype={"domain": str}).set_index("domain")
    assert (lt.loc[mb.index, "status"] == "model-based").all()
    assert (lt.loc[mb.index, "rank"] == "").all()  # listed, not ranked
    assert lt.loc[mb.index, "reason"].str.endswith("model-based estimate: not ranked").all()
    assert np.allclose(lt.loc[mb.index, "estimate"].astype(float),
                       mb["estimate"].astype(float), rtol=1e-14)
    ranked = lt[lt["rank"] != ""]
    assert len(ranked) == 100 - len(mb) and (ranked["source"] == "direct").all()
    truth = pd.read_csv(out / "truth_check.csv", dtype={"agency_id": str})
    assert set(truth.loc[truth["source"] == "model-based", "agency_id"]) == set(mb.index)
    assert "model-based (Fay-Herriot, REML" in (out / "summary.txt").read_text(encoding="utf-8")


def test_the_report_labels_the_value_and_states_the_model(sa_demo):
    out, seen = sa_demo
    _, ov = _overall(out)
    text = (out / "results" / "report.html").read_text(encoding="utf-8")
    w = _W["vi"]
    step = seen["result"][1]
    # the methods paragraph, escaped: the model, the covariates, sigma2_v, method, psi
    assert f"<h3>{html.escape(w['sa_h'])}</h3>" in text
    assert html.escape("y_d = x_d'β + v_d + e_d") in text
    assert "x_d'β" not in text  # the apostrophe is escaped
    para = re.search(r"<h3>" + re.escape(html.escape(w["sa_h"])) + r"</h3><p>(.*?)</p>", text)
    assert para is not None
    body = html.unescape(para.group(1))
    assert "agency_level, index_last_year, channel:online" in body
    assert f"σ²_v = {step.fit.sigma2_v:.4g}" in body and "REML" in body
    assert "generalized variance function" in body
    # the label next to the value: the agency's table row says "model-based"
    frame = pd.read_csv(out / "inputs" / "frame.csv", dtype=str)
    names = frame.drop_duplicates("agency_id").set_index("agency_id")["agency_name"]
    a = ov.index[ov["source"] == "model-based"][0]
    value = f"{float(ov.loc[a, 'estimate']):.1f}".replace(".", ",")
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", text, flags=re.S)
            if f">{html.escape(names[a])}<" in r and value in r]
    assert rows and all(html.escape(w["model"]) in r and 'class="model"' in r for r in rows)
    assert html.escape(w["sa_list_h"]) in text


def test_the_agency_figure_marks_the_model_based_estimate_in_its_legend(sa_demo):
    out, seen = sa_demo
    _, ov = _overall(out)
    mb = ov[ov["source"] == "model-based"]
    figs = [(f, e) for f, e in seen["figures"]
            if "source" in e.overall.columns and (e.overall["source"] == "model-based").any()]
    assert len(figs) >= 2  # agency_index.png and the report's figure
    for fig, _ in figs:
        lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "model"]
        assert lines and all(ln.get_marker() == "s" for ln in lines)
        xs = np.concatenate([ln.get_xdata() for ln in lines])
        assert np.allclose(np.sort(xs), np.sort(mb["estimate"].astype(float)), rtol=1e-12)
        legend = [t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes
                                                         if ax.get_legend()]
                  for t in leg.get_texts()]
        assert _TEXT["vi"]["model"] in legend


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_errors_name_the_key(sa_demo, tmp_path):
    out, _ = sa_demo
    cfg = load_config(out / "survey.toml")
    sa = cfg["small_area"]
    assert sa["enabled"] is True  # the section is present
    assert sa["method"] == "reml" and sa["mse"] == "analytic" and sa["deff"] is None
    assert sa["covariates"] == tuple(COVS) and sa["variance"] == "gvf" and sa["min_n"] == 30
    text = (out / "survey.toml").read_text(encoding="utf-8")
    plain = text[:text.index("\n[small_area]\n")] + text[text.index("\n[output]"):]
    assert load_config(_write(tmp_path, plain))["small_area"]["enabled"] is False
    bad = {
        'variance = "gvf"': ("", r"small_area\.variance"),
        'method = "reml"\nvariance': ('method = "moments"\nvariance',
                                      r"small_area\.method = 'moments' is not allowed"),
        "min_n = 30\n\n[output]": ("min_n = 0\n\n[output]",
                                   r"small_area\.min_n = 0 is out of range"),
        '"channel:online"]': ('"channel:"]', r"small_area\.covariates: element 'channel:'"),
        "\n[small_area]\n": ("\n[small_area]\nenable = true\n",
                              r"unknown key small_area\.enable"),
    }
    for old, (new, pattern) in bad.items():
        with pytest.raises(ConfigError, match=pattern):
            load_config(_write(tmp_path, text.replace(old, new, 1)))
    nothing = text.replace('covariates = ["agency_level", "index_last_year", "channel:online"]',
                           "covariates = []")
    with pytest.raises(ConfigError, match=r"small_area\.covariates"):
        load_config(_write(tmp_path, nothing))


def _write(tmp_path, text):
    p = tmp_path / "survey.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(("covs", "pattern"), [
    ('["agency_level", "last_year"]',
     r"key small_area\.covariates: 'last_year' is not a column of the frame nor of "
     r"small-area file 'agency_covariates\.csv'"),
    ('["channel"]', r"frame column 'channel' varies within agencies.*\"channel:<level>\""),
    ('["channel:fax"]', r"small_area\.covariates: 'channel:fax': no frame user has channel = "
                        r"'fax'; levels: 'in_person', 'online', 'postal'"),
])
def test_a_covariate_that_is_not_there_is_a_config_error_naming_it(sa_demo, covs, pattern):
    out, seen = sa_demo
    _, _, frame = seen["args"]
    text = (out / "survey.toml").read_text(encoding="utf-8").replace(
        '["agency_level", "index_last_year", "channel:online"]', covs)
    path = out / "survey_edit.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern):
        agency_covariates(load_config(path), frame)


def test_no_covariate_and_no_sample_get_a_clear_status(sa_demo):
    out, seen = sa_demo
    _cfg, est, frame = seen["args"]
    ov = est.overall
    small = ov.loc[ov["n"] < 30, "agency_id"].astype(str).tolist()
    lacking, empty = small[0], small[1]
    prior = pd.read_csv(out / "inputs" / "agency_covariates.csv", dtype={"agency_id": str})
    prior.loc[prior["agency_id"] == lacking, "index_last_year"] = np.nan
    path = out / "inputs" / "covariates_gap.csv"
    prior.to_csv(path, index=False)
    text = (out / "survey.toml").read_text(encoding="utf-8").replace(
        "inputs/agency_covariates.csv", "inputs/covariates_gap.csv")
    (out / "survey_gap.toml").write_text(text, encoding="utf-8")
    cfg2 = load_config(out / "survey_gap.toml")
    ov2 = ov.copy()
    at = (ov2["agency_id"].astype(str) == empty).to_numpy()
    ov2.loc[at, ["estimate", "se", "ci_low", "ci_high"]] = np.nan
    ov2.loc[at, "n"] = 0
    est2 = dataclasses.replace(est, overall=ov2)
    new, step = apply_small_area(cfg2, est2, frame, np.random.SeedSequence(1))
    got = new.overall.set_index(new.overall["agency_id"].astype(str))
    assert got.loc[lacking, "status"] == "suppress" and got.loc[lacking, "source"] == "direct"
    assert got.loc[lacking, "reason"].endswith(
        "no model-based estimate: missing covariate(s) index_last_year")
    assert dict(step.no_covariates) == {lacking: ("index_last_year",)}
    assert got.loc[empty, "status"] == "model-based" and got.loc[empty, "n"] == 0
    assert got.loc[empty, "model"].startswith("synthetic (reml): Fay-Herriot")
    assert step.synthetic == (empty,)
    syn = step.fit.table.set_index("agency_id").loc[empty]
    assert got.loc[empty, "estimate"] == syn["synthetic"] and not syn["in_sample"]
    pd.testing.assert_frame_equal(est.overall, ov)  # the input is not modified
    assert "model" not in ov.columns


def test_an_english_report_and_figure_say_model_based(sa_demo, tmp_path):
    _out, seen = sa_demo
    new, step = seen["result"]
    ax_fig = plotting.plot_agency_index(new, language="en")
    legend = [t.get_text() for leg in ax_fig.legends for t in leg.get_texts()] + [
        t.get_text() for ax in ax_fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "model-based estimate" in legend
    files = build_report(new, small_area=step.fit, language="en",
                         html_path=tmp_path / "r.html")
    text = files.html.read_text(encoding="utf-8")
    assert "<h3>Model-based estimates for agencies with few respondents</h3>" in text
    assert html.escape("Fay-Herriot area-level model y_d = x_d'β") in text
    # computed here, the league table leaves the model-based agencies unranked
    a = step.model_based[0]
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", text, flags=re.S)
            if 'class="model"' in r]
    assert len(rows) == len(step.model_based)
    assert all(re.match(r'<tr class="model"><td>–?</td>', r) for r in rows), rows[0]
    assert any(f">{html.escape(a)}<" in r or a in r for r in rows)


def test_a_higher_min_n_replaces_publishable_agencies_and_they_leave_the_ranking(sa_demo):
    from satsample.outputs.flags import _unranked_model_rows
    from satsample.outputs.ranking import league_table

    out, seen = sa_demo
    _cfg, est, frame = seen["args"]
    text = (out / "survey.toml").read_text(encoding="utf-8").replace(
        "min_n = 30\n\n[output]", "min_n = 60\n\n[output]")
    (out / "survey_60.toml").write_text(text, encoding="utf-8")
    new, step = apply_small_area(load_config(out / "survey_60.toml"), est, frame,
                                 np.random.SeedSequence(1))
    ov, got = est.overall, new.overall
    middle = ((ov["n"] >= 30) & (ov["n"] < 60)).to_numpy()
    assert middle.any() and (ov.loc[middle, "status"] != "suppress").all()
    assert (got.loc[middle, "status"] == "model-based").all()
    assert (got.loc[ov["n"].to_numpy() >= 60, "source"] == "direct").all()
    assert step.min_n == 60
    lt = league_table(_unranked_model_rows(new), rank_intervals=False)
    ranked = set(lt.to_frame()["domain"].astype(str))
    assert not ranked & set(step.model_based)
    assert len(ranked) == int((ov["n"] >= 60).sum())


def test_the_heat_map_frames_and_keys_the_model_based_overall_cells(sa_demo):
    _out, seen = sa_demo
    new, step = seen["result"]
    fig = plotting.plot_element_heatmap(new, language="en")
    framed = [p for ax in fig.axes for p in ax.patches if p.get_label() == "model-based"]
    assert len(framed) == len(step.model_based)
    keys = " ".join(ax.get_xlabel() for ax in fig.axes)
    assert "model-based estimate" in keys


def test_satsample_run_says_what_the_small_area_step_did_and_repeats_exactly(sa_demo):
    out, _ = sa_demo
    before = (out / "results" / "index_agency_id.csv").read_bytes()
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        assert main(["run", str(out / "survey.toml"), "--quiet"]) == 0
    text = buf.getvalue()
    _, ov = _overall(out)
    k = int((ov["source"] == "model-based").sum())
    assert f"small-area: {k} agencies below 30 respondents published with a model-based " \
           "estimate (Fay-Herriot area-level model, REML" in text
    assert (out / "results" / "index_agency_id.csv").read_bytes() == before


def test_a_covariate_file_mixing_numbers_and_text_is_a_data_error(sa_demo):
    from satsample.survey import DataError

    out, seen = sa_demo
    _, _, frame = seen["args"]
    prior = pd.read_csv(out / "inputs" / "agency_covariates.csv", dtype=str)
    prior.loc[3, "index_last_year"] = "n/a"
    prior.to_csv(out / "inputs" / "covariates_text.csv", index=False)
    text = (out / "survey.toml").read_text(encoding="utf-8").replace(
        "inputs/agency_covariates.csv", "inputs/covariates_text.csv")
    (out / "survey_text.toml").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"covariates_text\.csv'.*column 'index_last_year': "
                                        r"value 'n/a' is not a number"):
        agency_covariates(load_config(out / "survey_text.toml"), frame)
