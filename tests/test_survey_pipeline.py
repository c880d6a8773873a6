"""plan -> simulated field work (Excel, CSV, SPSS .sav) -> validate -> run, through the CLI.

The response rates are checked against a hand calculation from the AAPOR formulas, the
planted data problems must be reported, and the results must equal the same pipeline
written with the Python API.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

import satsample as ss
from satsample.survey.io import write_csv, write_excel

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
E = 0.6
R_REPS = 40
ITEMS = [f"q{k}" for k in range(1, 7)]
VI = {1: "Rất không hài lòng", 2: "Không hài lòng", 3: "Bình thường", 4: "Hài lòng",
      5: "Rất hài lòng", 9: "Không ý kiến"}
OFFICE = {"done": "I", "part": "P", "refused": "R", "away": "NC", "ill": "2.32",
          "moved": "NE"}
CODE_OF = {"I": "done", "P": "part", "R": "refused", "NC": "away", "O": "ill", "NE": "moved"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "satsample", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=600)


def _questionnaire() -> dict:
    return {
        "name": "test_6",
        "scale_labels": {"1": "very dissatisfied (rất không hài lòng)",
                         "2": "dissatisfied (không hài lòng)", "3": "neutral (bình thường)",
                         "4": "satisfied (hài lòng)", "5": "very satisfied (rất hài lòng)",
                         "9": "no opinion (không ý kiến)"},
        "elements": [{"code": "E1", "label": "Access", "items": ITEMS[:3]},
                     {"code": "E2", "label": "Staff", "items": ITEMS[3:]}],
    }


CONFIG = f"""
[survey]
name = "Test survey 2025"
year = 2025
seed = {SEED}

[frame]
file = "frame.csv"
id = "id"
agency = "agency"
agency_name = "name"
tier = "tier"
auxiliary = ["sex"]
contact = ["name"]

[questionnaire]
file = "q.json"

[design]
allocation = "precision"
moe = 0.15
p = 0.8
expected_response = 0.6
min_respondents = 40
reserves = 12

[field]
disposition = "disp"
agency = "agency"
releases = "releases.csv"

[[field.responses]]
file = "paper.xlsx"
mode = "paper"

[[field.responses]]
file = "web.csv"
mode = "online"

[[field.responses]]
file = "web.sav"
mode = "online"

[dispositions]
codes = {{ done = "I", part = "P", refused = "R", away = "NC", ill = "2.32", moved = "NE" }}
e = {E}

[checks]
straightlining_min_items = 5
straightlining_max_share = 0.2
on_error = "resolve"

[[weighting.steps]]
type = "nonresponse"

[[weighting.steps]]
type = "rake"
margins = ["sex"]

[variance]
method = "bootstrap"
replicates = {R_REPS}

[estimation]
domains = [["agency"], ["tier"]]

[output]
folder = "out"
language = "en"
scale = 100
"""


def _frame() -> pd.DataFrame:
    gen = np.random.default_rng(1)
    sizes = {"A1": 150, "A2": 220, "A3": 130, "B1": 180, "B2": 160}
    rows = []
    uid = 1000
    for a, n in sizes.items():
        for _ in range(n):
            uid += 1
            rows.append({"id": uid, "agency": a,
                         "name": "=HYPERLINK(\"x\")" if a == "A3" else f"Office {a}",
                         "tier": "province" if a.startswith("A") else "district",
                         "sex": "F" if gen.random() < 0.55 else "M"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Plan, field work, validate and run once; return everything the tests look at."""
    base = tmp_path_factory.mktemp("survey")
    frame = _frame()
    frame.to_csv(base / "frame.csv", index=False)
    (base / "q.json").write_text(json.dumps(_questionnaire(), ensure_ascii=False),
                                 encoding="utf-8")
    (base / "survey.toml").write_text(CONFIG, encoding="utf-8")
    plan = cli("plan", "survey.toml", cwd=base)
    assert plan.returncode == 0, plan.stderr
    doc = json.loads((base / "out" / "plan" / "design.json").read_text(encoding="utf-8"))
    units = pd.DataFrame(doc["units"])

    # ---- simulated field work: the truth of every case
    gen = np.random.default_rng(11)
    truth = []  # (id, agency, rank, class)
    released = {}
    for a, g in units.groupby("agency", sort=True):
        main = g[g["reserve_rank"] == 0]
        res = g[g["reserve_rank"] > 0].sort_values("reserve_rank")
        cls = gen.choice(["I", "P", "R", "NC", "O", "UO", "NE"], size=len(main),
                         p=[0.55, 0.05, 0.12, 0.1, 0.03, 0.1, 0.05])
        truth += [(i, a, 0, c) for i, c in zip(main["id"], cls, strict=True)]
        k = min(int(np.isin(cls, ["R", "NC"]).sum()), len(res))
        released[a] = k
        rcls = gen.choice(["I", "UO"], size=k, p=[0.8, 0.2])
        truth += [(i, a, int(r), c) for i, r, c in zip(res["id"][:k], res["reserve_rank"][:k],
                                                        rcls, strict=True)]
    cases = pd.DataFrame(truth, columns=["id", "agency", "rank", "cls"])
    n = len(cases)
    ans = gen.choice([1, 2, 3, 4, 5, 9], size=(n, 6), p=[0.05, 0.1, 0.15, 0.4, 0.27, 0.03])
    ans = ans.astype(float)
    resp = cases["cls"].isin(["I", "P"]).to_numpy()
    ans[~resp] = np.nan
    ans[(cases["cls"] == "P").to_numpy(), 3:] = np.nan  # partial: 3 of 6 answered
    # straight-lining in A3: a third of its complete forms answer 4 everywhere
    a3 = np.flatnonzero((cases["agency"] == "A3").to_numpy() & (cases["cls"] == "I").to_numpy())
    ans[a3[: len(a3) // 3 + 1]] = 4.0
    # split the returned forms (everything but UO) across the three files
    ret = cases["cls"] != "UO"
    where = np.where(~resp, "paper", gen.choice(["paper", "csv", "sav"], size=n))
    forms = cases.assign(disp=cases["cls"].map(CODE_OF))
    for k, item in enumerate(ITEMS):
        forms[item] = ans[:, k]
    clean = forms.copy()
    # ---- planted problems
    paper = forms[ret & (where == "paper")].copy()
    web = forms[ret & (where == "csv")].copy()
    sav = forms[ret & (where == "sav")].copy()
    contra = paper.index[(paper["cls"] == "I").to_numpy()][0]
    paper.loc[contra, "disp"] = "refused"  # a refusal full of answers
    stranger = paper.iloc[[0]].copy()
    never = sorted(set(frame["id"]) - set(units["id"].astype(int)))[0]
    stranger["id"] = never
    stranger["agency"] = frame.set_index("id").loc[never, "agency"]
    paper_out = pd.concat([paper, stranger])
    label_cells = paper_out[ITEMS].apply(lambda c: c.map(
        lambda v: None if pd.isna(v) else VI[int(v)]))
    bad_label_row = paper_out.index[(paper_out["cls"] == "I").to_numpy()][1]
    label_cells.loc[bad_label_row, "q2"] = "hơi hài lòng"
    paper_out = pd.concat([paper_out[["id", "agency", "disp"]], label_cells], axis=1)
    write_excel({"forms": paper_out}, base / "paper.xlsx")
    bad_code_row = web.index[(web["cls"] == "I").to_numpy()][0]
    web.loc[bad_code_row, "q5"] = 7.0
    web_out = pd.concat([web, web.iloc[[1]]])[["id", "agency", "disp", *ITEMS]]
    write_csv(web_out, base / "web.csv", float_format="%g")
    # SPSS: other numeric codes, carried by their Vietnamese value labels
    spss = sav[["id", "agency", "disp"]].copy()
    recode = {1: 11, 2: 12, 3: 13, 4: 14, 5: 15, 9: 99}
    for item in ITEMS:
        spss[item] = sav[item].map(lambda v: np.nan if pd.isna(v) else float(recode[int(v)]))
    labels = {recode[c]: VI[c] for c in VI}
    pyreadstat.write_sav(spss.reset_index(drop=True), str(base / "web.sav"),
                         variable_value_labels={item: labels for item in ITEMS})
    # the office recorded one release fewer than used in A2
    rec = dict(released)
    rec["A2"] -= 1
    pd.DataFrame({"agency": list(rec), "released": list(rec.values())}).to_csv(
        base / "releases.csv", index=False)
    # what run must use: the bad cells blank, the contradiction resolved to a complete
    clean.loc[bad_label_row, "q2"] = np.nan
    clean.loc[bad_code_row, "q5"] = np.nan
    val = cli("validate", "survey.toml", "--strict", cwd=base)
    run = cli("run", "survey.toml", cwd=base)
    return {"base": base, "frame": frame, "cases": cases, "clean": clean, "units": units,
            "released": released, "plan": plan, "validate": val, "run": run}


def test_plan_respects_the_publication_minimum(survey):
    alloc = pd.read_csv(survey["base"] / "out" / "plan" / "allocation.csv")
    floor = math.ceil(40 / 0.6)
    assert (alloc["n_h"] == np.minimum(np.maximum(alloc["n_rule"], floor), alloc["N_h"])).all()
    assert (alloc["n_h"] >= np.minimum(floor, alloc["N_h"])).all()
    ref = ss.allocate_for_precision(alloc.set_index("agency")["N_h"], moe=0.15, p=0.8,
                                    response_rate=0.6)
    assert alloc["n_rule"].tolist() == ref.n_h.tolist()


def test_field_lists_one_sheet_per_agency_with_reserve_order(survey):
    import openpyxl

    wb = openpyxl.load_workbook(survey["base"] / "out" / "plan" / "field_lists.xlsx",
                                read_only=True)
    assert wb.sheetnames == ["README", "A1", "A2", "A3", "B1", "B2"]
    rows = list(wb["A3"].iter_rows(values_only=True))
    header = rows[0]
    rank = [r[header.index("reserve_rank")] for r in rows[1:]]
    main = [r for r in rank if r == 0]
    assert rank[: len(main)] == main and rank[len(main):] == list(range(1, 13))
    # a formula from the frame stays text in the workbook and the CSV
    names = {r[header.index("name")] for r in rows[1:]}
    assert names == {"=HYPERLINK(\"x\")"}  # the text exactly, as a quoted text cell
    ws = openpyxl.load_workbook(survey["base"] / "out" / "plan" / "field_lists.xlsx")["A3"]
    col = next(c for c in ws[1] if c.value == "name").column
    assert all(ws.cell(row=r, column=col).quotePrefix for r in range(2, ws.max_row + 1))
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    text = (survey["base"] / "out" / "plan" / "field_list.csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text


def test_plan_is_never_overwritten_without_force(survey):
    base = survey["base"]
    before = (base / "out" / "plan" / "design.json").read_bytes()
    again = cli("plan", "survey.toml", cwd=base)
    assert again.returncode == 4
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (base / "out" / "plan" / "design.json").read_bytes() == before


def test_validate_reports_every_planted_problem(survey):
    val = survey["validate"]
    assert val.returncode == 1, val.stderr  # --strict and problems found
    f = pd.read_csv(survey["base"] / "out" / "validation" / "quality_findings.csv",
                    dtype=str, keep_default_na=False)
    checks = set(f["check"])
    assert {"unknown_label", "out_of_range", "duplicated_id", "outside_sample",
            "reserve_not_released", "disposition_contradiction", "straightlining"} <= checks
    row = f[f["check"] == "out_of_range"].iloc[0]
    assert (row["file"], row["column"], row["value"]) == ("web.csv", "q5", "7")
    lab = f[f["check"] == "unknown_label"].iloc[0]
    assert (lab["file"], lab["column"], lab["value"]) == ("paper.xlsx", "q2", "hơi hài lòng")
    assert f[f["check"] == "reserve_not_released"]["agency"].tolist() == ["A2"]
    assert f[f["check"] == "straightlining"]["agency"].tolist() == ["A3"]
    html = (survey["base"] / "out" / "validation" / "quality_report.html").read_text("utf-8")
    assert "<script" not in html and "hơi hài lòng" in html
    # the .sav answers came through their value labels: no problem reported in that file
    assert not set(f[f["check"].isin(["unknown_label", "out_of_range"])]["file"]) & {"web.sav"}


def _hand_rates(t: dict[str, float], e: float) -> dict[str, float]:
    i, p, r, nc, o, u = t["I"], t["P"], t["R"], t["NC"], t["O"], t["UH"] + t["UO"]
    return {
        "RR1": i / (i + p + r + nc + o + u), "RR2": (i + p) / (i + p + r + nc + o + u),
        "RR3": i / (i + p + r + nc + o + e * u), "RR4": (i + p) / (i + p + r + nc + o + e * u),
        "RR5": i / (i + p + r + nc + o), "RR6": (i + p) / (i + p + r + nc + o),
        "COOP1": i / (i + p + r + o), "COOP2": (i + p) / (i + p + r + o),
        "COOP3": i / (i + p + r), "COOP4": (i + p) / (i + p + r),
        "REF1": r / (i + p + r + nc + o + u), "REF2": r / (i + p + r + nc + o + e * u),
        "REF3": r / (i + p + r + nc + o),
        "CON1": (i + p + r + o) / (i + p + r + nc + o + u),
        "CON2": (i + p + r + o) / (i + p + r + nc + o + e * u),
        "CON3": (i + p + r + o) / (i + p + r + nc + o),
    }


def test_response_rates_equal_the_hand_calculation(survey):
    assert survey["run"].returncode == 0, survey["run"].stderr
    rates = pd.read_csv(survey["base"] / "out" / "results" / "response_rates.csv")
    cases = survey["cases"]
    for grouping, group, sub in [("all", "all", cases)] + [
            ("agency", a, g) for a, g in cases.groupby("agency")]:
        t = {c: float((sub["cls"] == c).sum()) for c in ("I", "P", "R", "NC", "O", "UH",
                                                          "UO", "NE")}
        want = _hand_rates(t, E)
        got = rates[(rates["grouping"] == grouping) & (rates["group"] == group)
                    & (rates["basis"] == "cases")].iloc[0]
        assert got["e"] == E
        for name, value in want.items():
            assert got[name] == pytest.approx(value, abs=1e-12), (group, name)
    assert set(rates["basis"]) == {"cases", "weighted"}


def test_run_equals_the_python_api(survey):
    """The same pipeline written with the public API gives the same numbers."""
    base = survey["base"]
    frame = pd.read_csv(base / "frame.csv", dtype=str)
    alloc = pd.read_csv(base / "out" / "plan" / "allocation.csv", dtype={"agency": str})
    seeds = np.random.SeedSequence(SEED).spawn(2)
    drawn = ss.select(frame, ids="id", strata="agency",
                      n=dict(zip(alloc["agency"], alloc["n_h"], strict=True)),
                      n_reserve=dict(zip(alloc["agency"], alloc["n_reserve"], strict=True)),
                      take_all=True, rng=seeds[0])
    sel = ss.release_reserves(drawn, survey["released"])
    smp = sel.sample.copy()
    cls = survey["clean"].assign(id=survey["clean"]["id"].astype(str)).set_index("id")
    smp["cls"] = cls.loc[smp["id"], "cls"].to_numpy()
    for item in ITEMS:
        smp[item] = np.where(smp["cls"].isin(["I", "P"]), cls.loc[smp["id"], item], np.nan)
    unknown = smp["cls"].isin(["UH", "UO"])
    smp["a"] = np.where(smp["cls"] == "NE", 0.0, np.where(unknown, E, 1.0))
    smp["w0"] = smp["design_weight"] * smp["a"]
    smp["known"] = ~unknown
    smp["respondent"] = smp["cls"].isin(["I", "P"])
    data = smp[smp["a"] > 0].reset_index(drop=True)
    design = ss.survey_design(data, strata="agency", weights="w0", fpc="fpc")
    design = ss.bootstrap(design, n_replicates=R_REPS, rng=seeds[1], materialize=False)
    design = ss.adjust_nonresponse(design, "known", classes="agency")
    design = ss.adjust_nonresponse(design, "respondent", classes="agency")
    counts = frame["sex"].value_counts().sort_index()
    margin = pd.DataFrame({"sex": counts.index,
                           "Freq": counts.to_numpy() * design.weights.sum() / len(frame)})
    design = ss.rake(design, [("sex", margin)], max_iter=50, epsilon=1e-7)
    q = ss.Questionnaire.from_json(base / "q.json")
    res = base / "out" / "results"
    for by, name in ((None, "all"), (["agency"], "agency"), (["tier"], "tier")):
        est = ss.satisfaction_index(design, q, by=by, variance="replicate")
        got = pd.read_csv(res / f"index_{name}.csv", dtype={"agency": str})
        for level, tab in (("overall", est.overall), ("element", est.elements),
                           ("item", est.items)):
            g = got[got["level"] == level]
            np.testing.assert_allclose(g["estimate"].to_numpy(), 100 * tab["estimate"].to_numpy(),
                                       rtol=1e-9)
            np.testing.assert_allclose(g["se"].to_numpy(), 100 * tab["se"].to_numpy(), rtol=1e-9)
            np.testing.assert_array_equal(g["n"].to_numpy(), tab["n"].to_numpy())
    w = pd.read_csv(res / "weights.csv", dtype={"id": str}).set_index("id")
    final = pd.Series(design.weights, index=design.data["id"])
    np.testing.assert_allclose(w.loc[final.index, "final_weight"], final.to_numpy(), rtol=1e-9)
    assert (w.loc[w["disposition_class"] == "NE", "final_weight"] == 0).all()


def test_run_writes_a_complete_results_folder(survey):
    res = survey["base"] / "out" / "results"
    names = {p.name for p in res.iterdir()}
    assert {"report.html", "report.xlsx", "index_all.csv", "index_agency.csv",
            "index_tier.csv", "league_table.csv", "response_rates.csv", "weights.csv",
            "quality_findings.csv", "survey.toml", "run.json"} <= names
    assert not [p for p in res.parent.iterdir() if p.name.startswith(".")]
    html = (res / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html
    league = pd.read_csv(res / "league_table.csv")
    assert len(league) == 5 and league["rank"].min() == 1


def test_on_error_stop_names_the_first_problem_and_leaves_no_results(survey, tmp_path):
    base = survey["base"]
    cfg = (base / "survey.toml").read_text(encoding="utf-8")
    for name in ("frame.csv", "q.json", "paper.xlsx", "web.csv", "web.sav", "releases.csv"):
        (tmp_path / name).write_bytes((base / name).read_bytes())
    import shutil

    shutil.copytree(base / "out" / "plan", tmp_path / "out" / "plan")
    (tmp_path / "survey.toml").write_text(cfg.replace('on_error = "resolve"',
                                                      'on_error = "stop"'), encoding="utf-8")
    proc = cli("run", "survey.toml", "--quiet", cwd=tmp_path)
    assert proc.returncode == 3
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "paper.xlsx" in err and "q2" in err and "hơi hài lòng" in err and "row" in err
    assert not (tmp_path / "out" / "results").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plan"]


@pytest.mark.parametrize(("edit", "code", "needles"), [
    (lambda c: c.replace('allocation = "precision"', 'allocation = "optimal"'), 2,
     ["design.allocation", "'precision'", "'fixed'"]),
    (lambda c: c.replace("[variance]", "[variance]\nreplicats = 3"), 2,
     ["variance.replicats", "replicates"]),
    (lambda c: c.replace('id = "id"', 'id = "user"'), 3, ["frame.csv", "'user'"]),
    (lambda c: c.replace("seed = 7", "seed = -1"), 2, ["survey.seed"]),
    (lambda c: c + "\n[oops\n", 2, ["not valid TOML"]),
])
def test_bad_configuration_is_one_line_without_traceback(survey, tmp_path, edit, code, needles):
    base = survey["base"]
    for name in ("frame.csv", "q.json"):
        (tmp_path / name).write_bytes((base / name).read_bytes())
    (tmp_path / "survey.toml").write_text(edit(CONFIG), encoding="utf-8")
    proc = cli("plan", "survey.toml", "--quiet", cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_shipped_example_runs_as_the_docs_say(tmp_path):
    """docs/your_own_survey.md: copy the example folder, then plan, validate, run."""
    import shutil
    from importlib import resources

    src = Path(str(resources.files("satsample") / "survey" / "examples"))
    work = tmp_path / "my_survey"
    shutil.copytree(src, work)
    assert cli("plan", "survey.toml", "--quiet", cwd=work).returncode == 0
    val = cli("validate", "survey.toml", "--quiet", cwd=work)
    assert val.returncode == 0 and "6 error(s), 1 warning(s)" in val.stdout
    run = cli("run", "survey.toml", "--quiet", cwd=work)
    assert run.returncode == 0, run.stderr
    idx = pd.read_csv(work / "output" / "results" / "index_agency_id.csv")
    assert len(idx[idx["level"] == "overall"]) == 6
    # e = "proportional": an unknown-eligibility case enters with the eligible share of the
    # known cases of its agency (design weights are equal within an agency)
    w = pd.read_csv(work / "output" / "results" / "weights.csv")
    for _, g in w.groupby("agency_id"):
        c = g["disposition_class"]
        elig = c.isin(["I", "P", "R", "NC", "O"]).sum()
        e_hand = elig / (elig + (c == "NE").sum())
        assert np.allclose(g.loc[c.isin(["UH", "UO"]), "eligibility_factor"], e_hand, rtol=1e-12)
        assert (g.loc[c == "NE", "final_weight"] == 0).all()
        assert (g.loc[c.isin(["UH", "UO", "R", "NC", "O"]), "final_weight"] == 0).all()
    doc = (ROOT / "docs" / "your_own_survey.md").read_text(encoding="utf-8")
    toml = (src / "survey.toml").read_text(encoding="utf-8")
    # the configuration shown line by line is the shipped one (comments aside)
    import tomllib

    shown = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    assert tomllib.loads(shown) == tomllib.loads(toml)


def _copy(survey, tmp_path, names=("frame.csv", "q.json", "paper.xlsx", "web.csv", "web.sav",
                                   "releases.csv"), plan=True):
    import shutil

    base = survey["base"]
    for name in names:
        (tmp_path / name).write_bytes((base / name).read_bytes())
    (tmp_path / "survey.toml").write_text(CONFIG, encoding="utf-8")
    if plan:
        shutil.copytree(base / "out" / "plan", tmp_path / "out" / "plan")


def _one_line(proc, code):
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_files_are_one_line_with_file_column_value_rows(survey, tmp_path):
    _copy(survey, tmp_path, plan=False)
    err = _one_line(cli("validate", "survey.toml", "--quiet", cwd=tmp_path), 3)
    assert "no plan" in err and "satsample plan" in err
    frame = pd.read_csv(tmp_path / "frame.csv")
    frame.loc[5, "id"] = frame.loc[2, "id"]
    frame.to_csv(tmp_path / "frame.csv", index=False)
    err = _one_line(cli("plan", "survey.toml", "--quiet", cwd=tmp_path), 3)
    assert "frame.csv" in err and "'id'" in err and str(frame.loc[2, "id"]) in err
    assert "rows 4, 7" in err


def test_changed_frame_and_missing_response_file_are_data_errors(survey, tmp_path):
    _copy(survey, tmp_path)
    (tmp_path / "web.sav").unlink()
    err = _one_line(cli("run", "survey.toml", "--quiet", cwd=tmp_path), 3)
    assert "web.sav" in err and "does not exist" in err
    _copy(survey, tmp_path, plan=False)
    with open(tmp_path / "frame.csv", "a", encoding="utf-8") as fh:
        fh.write("9999,A1,Office A1,province,F\n")
    err = _one_line(cli("run", "survey.toml", "--quiet", cwd=tmp_path), 3)
    assert "frame.csv" in err and "changed since the plan" in err
    assert not (tmp_path / "out" / "results").exists()


def test_missing_item_column_names_the_file_and_column(survey, tmp_path):
    _copy(survey, tmp_path)
    web = pd.read_csv(tmp_path / "web.csv", encoding="utf-8-sig").drop(columns=["q4"])
    web.to_csv(tmp_path / "web.csv", index=False)
    err = _one_line(cli("validate", "survey.toml", "--quiet", cwd=tmp_path), 3)
    assert "web.csv" in err and "'q4'" in err and "not found" in err


def test_run_report_uses_the_aapor_rates_names_and_the_plan(survey):
    """The output step: build_report with RR4 per agency, names/tiers of the frame, the plan."""
    res = survey["base"] / "out" / "results"
    for png in ("agency_index.png", "response_rates.png"):
        assert (res / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rates = pd.read_csv(res / "response_rates.csv")
    rr4 = rates[(rates["grouping"] == "agency") & (rates["basis"] == "cases")].set_index(
        "group")["RR4"]
    book = pd.read_excel(res / "report.xlsx", sheet_name=None)
    sheet = book["Response rates"].set_index("Code")
    np.testing.assert_allclose(sheet["Response rate (%)"].sort_index().to_numpy(),
                               np.round(100 * rr4.sort_index().to_numpy(), 1), atol=1e-9)
    names = survey["frame"].drop_duplicates("agency").set_index("agency")["name"]
    assert (sheet["Agency"] == sheet.index.map(names)).all()
    alloc = pd.read_csv(survey["base"] / "out" / "plan" / "allocation.csv")
    plan = book["Sample plan"].set_index("Code")
    assert plan.loc[alloc["agency"], "Units to select"].tolist() == alloc["n_h"].tolist()
    html = (res / "report.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in html and "Test survey 2025" in html


def test_the_precision_plan_is_allocate_for_precision_with_the_publication_minimum(survey):
    alloc = pd.read_csv(survey["base"] / "out" / "plan" / "allocation.csv")
    ref = ss.allocate_for_precision(alloc.set_index("agency")["N_h"], moe=0.15, p=0.8,
                                    response_rate=0.6, min_respondents=40)
    assert alloc["n_h"].tolist() == ref.n_h.tolist()
    assert alloc["publishable"].tolist() == ref.to_frame()["publishable"].tolist()


def test_suppressed_rows_have_no_value_in_the_index_files(tmp_path):
    """A suppressed domain keeps its n, status and reason; estimate, SE, interval are empty."""
    from satsample.survey.config import load_config
    from satsample.survey.pipeline import index_table

    pop = ss.make_population(n_users=3000, n_agencies=6, rng=1)
    sel = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    d = ss.survey_design(ss.simulate_responses(pop, sel.sample, rng=3), strata="agency_id",
                         weights="design_weight", fpc="fpc")
    d = ss.adjust_nonresponse(d, "responded", classes="agency_id")
    est = ss.satisfaction_index(d, pop.questionnaire, by="agency_id")
    cfg_path = tmp_path / "survey.toml"
    (tmp_path / "frame.csv").write_text("id,agency\n1,A\n", encoding="utf-8")
    (tmp_path / "q.json").write_text(json.dumps(_questionnaire()), encoding="utf-8")
    cfg_path.write_text(CONFIG, encoding="utf-8")
    cfg = load_config(cfg_path)
    tab = index_table(cfg, est)
    hidden = tab["status"] == "suppress"
    assert hidden.any() and (~hidden).any()
    assert tab.loc[hidden, ["estimate", "se", "ci_low", "ci_high"]].isna().all().all()
    assert (tab.loc[hidden, "n"] > 0).all() and (tab.loc[hidden, "reason"] != "").all()
    shown = tab[~hidden & (tab["level"] == "overall")].set_index("agency_id")
    ov = est.overall.set_index("agency_id")
    np.testing.assert_allclose(shown["estimate"], 100 * ov.loc[shown.index, "estimate"],
                               rtol=1e-12)
