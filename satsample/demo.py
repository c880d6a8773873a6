"""The main job on synthetic data, through the same files and commands as a real survey year.

``satsample demo --out DIR`` runs :func:`run_demo`:

1. build the synthetic population of service users (:mod:`satsample.datasets`) and write
   the frame as ``DIR/inputs/frame.csv``;
2. write the year's configuration ``DIR/survey.toml``;
3. ``plan``: allocation with the publication minimum, the sample and ordered reserves, the
   field lists (``DIR/results/../plan/``);
4. simulate the field work from the plan: who responds (depending on age, channel, sex and
   level), refusals, non-contacts, people who moved away (not eligible), questionnaires
   never returned, reserves released for refusals and non-contacts, partial forms; the paper
   questionnaires returned by post go to ``inputs/responses_paper.xlsx`` (answers keyed as
   Vietnamese labels, dispositions as office codes), the enumerators' tablets and the online
   form to ``inputs/responses_online.csv`` (answer codes, every contact outcome), the
   office's record of released reserves to ``inputs/releases.csv``.
   A few problems are planted for ``validate`` to find: an answer code 7, an unknown
   label, a form keyed twice, a form from someone never sampled, a "refused" form full of
   answers, a reserve used beyond those released and straight-lining in one agency;
5. ``validate``: the data-quality report (``DIR/validation/``);
6. ``run`` (with ``checks.on_error = "resolve"``): dispositions and AAPOR rates,
   weighting replayed on every Rao-Wu replicate, indices per item, element and overall for
   the whole province, per agency and per tier, flags, league table, the figures and the
   self-contained report of :func:`satsample.outputs.report.build_report` (``DIR/results/``:
   ``report.html``, ``report.xlsx``, ``agency_index.png``, ``response_rates.png``, the
   CSV tables); no output holds the value of a suppressed agency;
7. compare with the known truth of the synthetic population: ``DIR/truth_check.csv``
   (suppressed agencies without estimates) and ``DIR/summary.txt``.

``satsample demo --small-area`` runs a leaner year of the same province: the sample is
allocated proportionally to the agencies' sizes with a planning floor of
:data:`SMALL_AREA_FLOOR` respondents (``design.min_respondents``), so many commune offices
return 10 to 30 questionnaires, below the publication minimum of :data:`MIN_RESPONDENTS`
(``flags.min_n``).  The configuration has a ``[small_area]`` section: those agencies are
published with the Fay-Herriot EBLUP of their index (REML, GVF-smoothed sampling
variances) from the agency tier, last year's index (``inputs/agency_covariates.csv``) and
the share of online applications in the frame, labelled "model-based" in the CSV tables,
the figures and the report; ``truth_check.csv`` compares them with the truth too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._validation import SatsampleError

if TYPE_CHECKING:
    from .datasets import Population
    from .questionnaire import Questionnaire

__all__ = ["MIN_RESPONDENTS", "SMALL_AREA_FLOOR", "check_moe_points", "run_demo"]

#: Publication minimum of respondents per agency used by the demo.
MIN_RESPONDENTS = 30
#: Planning floor of respondents per agency of ``satsample demo --small-area``.
SMALL_AREA_FLOOR = 10
#: Sample size of the proportional allocation of ``--small-area`` (at most a third of the
#: population): about 3.5 % of the default 200,000 users.
SMALL_AREA_N = 7000

_OFFICE_CODES = {"Hoàn thành": "I", "Trả lời một phần": "P", "Từ chối": "R",
                 "Không liên lạc được": "NC", "Không thuộc đối tượng": "NE"}
_LABELS_VI = {1: "Rất không hài lòng", 2: "Không hài lòng", 3: "Bình thường", 4: "Hài lòng",
              5: "Rất hài lòng", 9: "Không ý kiến"}


def _load_questionnaire(spec: str) -> tuple[Questionnaire, str]:
    from .questionnaire import Questionnaire, available_questionnaires, load_questionnaire

    if spec in available_questionnaires():
        return load_questionnaire(spec), f'name = "{spec}"'
    path = Path(spec)
    if not path.exists():
        raise SatsampleError(
            f"--questionnaire {spec!r} is neither a built-in ({', '.join(available_questionnaires())}) "
            "nor an existing JSON file"
        )
    return Questionnaire.from_json(path), f"file = {json.dumps(str(path.resolve()))}"


def _design_text(*, moe: float, small_area_n: int | None) -> str:
    if small_area_n is None:
        return f"""[design]
method = "srswor"
allocation = "precision"
moe = {moe / 100!r}             # share: {moe:g} points on the 0-100 scale
p = 0.8
deff = 1.3
expected_response = 0.6
min_respondents = {MIN_RESPONDENTS}
min_effective_n = {MIN_RESPONDENTS}   # Korn-Graubard effective n of the flags
reserves = 0.5"""
    return f"""[design]
# a lean year: proportional allocation, small offices plan only {SMALL_AREA_FLOOR} respondents;
# below the publication minimum (flags.min_n) the model of [small_area] gives their index
method = "srswor"
allocation = "proportional"
n = {small_area_n}
deff = 1.3
expected_response = 0.6
min_respondents = {SMALL_AREA_FLOOR}
reserves = 0.5"""


_SMALL_AREA_TEXT = """
[small_area]
# agencies with fewer than min_n respondents get the Fay-Herriot EBLUP of their index
file = "inputs/agency_covariates.csv"    # index_last_year, one row per agency
covariates = ["agency_level", "index_last_year", "channel:online"]
method = "reml"
variance = "gvf"     # sampling variances smoothed by a generalized variance function
min_n = {min_n}
"""


def _config_text(*, seed: int, q_line: str, moe: float, n_replicates: int,
                 paper: str = "inputs/responses_paper.xlsx",
                 small_area_n: int | None = None) -> str:
    codes = ", ".join(f'"{k}" = "{v}"' for k, v in _OFFICE_CODES.items())
    design = _design_text(moe=moe, small_area_n=small_area_n)
    small = "" if small_area_n is None else _SMALL_AREA_TEXT.format(min_n=MIN_RESPONDENTS)
    return f"""# satsample demo: one survey year of a synthetic province (see docs: Your own survey)
[survey]
name = "SIPAS demo (synthetic province)"
year = 2026
seed = {seed}

[frame]
file = "inputs/frame.csv"
id = "user_id"
agency = "agency_id"
agency_name = "agency_name"
tier = "agency_level"
auxiliary = ["sex", "age_group", "channel"]
contact = ["channel", "procedure_field"]

[questionnaire]
{q_line}
value_labels = {{ "Bình thường" = 3 }}

{design}

[field]
disposition = "disposition"
agency = "agency_id"
releases = "inputs/releases.csv"

[[field.responses]]
file = "{paper}"
mode = "paper"

[[field.responses]]
file = "inputs/responses_online.csv"
mode = "online"

[dispositions]
codes = {{ {codes} }}
not_returned = "UO"
e = "proportional"

[checks]
on_error = "resolve"

[[weighting.steps]]
type = "nonresponse"
classes = ["agency_id"]

[[weighting.steps]]
type = "rake"
margins = ["agency_id", "sex", "age_group", "channel"]
max_iter = 50
epsilon = 1e-8

[variance]
method = "bootstrap"
replicates = {n_replicates}

[estimation]
domains = [["agency_id"], ["agency_level"]]

[flags]
min_n = {MIN_RESPONDENTS}
{small}
[output]
folder = "."
language = "vi"
scale = 100
"""


def _field_work(pop: Population, units: pd.DataFrame, *, rng: np.random.Generator
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate who answers what; return (forms with dispositions, releases per agency)."""
    from .datasets import response_propensity

    units = units.copy()
    units["row"] = units["id"].astype(np.int64) - 1
    units["p"] = response_propensity(pop, units["row"].to_numpy())
    rows_out = []
    releases = {}
    for agency, g in units.groupby("agency", sort=True):
        main = g[g["reserve_rank"] == 0]
        res = g[g["reserve_rank"] > 0].sort_values("reserve_rank")
        queue = list(main.itertuples(index=False))
        used_res = 0
        k = 0
        while k < len(queue):
            u = queue[k]
            k += 1
            if rng.random() < u.p:
                disp = "I"
            else:
                disp = rng.choice(["R", "NC", "NE", "UO"], p=[0.3, 0.3, 0.08, 0.32])
            rows_out.append((u.id, agency, disp))
            if disp in ("R", "NC", "NE") and u.reserve_rank == 0 and used_res < len(res) \
                    and rng.random() < 0.5:
                queue.append(res.iloc[used_res])
                used_res += 1
        releases[agency] = used_res
    forms = pd.DataFrame(rows_out, columns=["user_id", "agency_id", "class"])
    return forms, pd.DataFrame({"agency": list(releases), "released": list(releases.values())})


def _write_returns(pop: Population, forms: pd.DataFrame, releases: pd.DataFrame,
                   inputs: Path, sampled: set[str], *, rng: np.random.Generator) -> None:
    """Answers, planted problems, and the paper / online / releases files."""
    q = pop.questionnaire
    items = list(q.items)
    forms = forms[forms["class"] != "UO"].reset_index(drop=True)  # nothing ever returned
    rows = forms["user_id"].astype(np.int64).to_numpy() - 1
    ans = pop.codes[rows].astype(np.float64)
    ans[pop.codes[rows] == 0] = np.nan
    resp = (forms["class"] == "I").to_numpy()
    ans[~resp] = np.nan
    # partial forms: 3% of respondents stop after 60% of the items
    partial = resp & (rng.random(len(forms)) < 0.03)
    ans[np.ix_(partial, np.arange(int(0.6 * len(items)), len(items)))] = np.nan
    channel = pop.frame["channel"].astype(str).to_numpy()[rows]
    # paper questionnaires returned by post are keyed into Excel; the enumerators' tablets
    # and the online form give a CSV export (answers and every contact outcome)
    online = ~((channel == "postal") & resp)
    # planted: straight-lining in the agency with most respondents among communes
    counts = forms[resp].groupby("agency_id").size()
    communes = counts[counts.index.str.startswith("COM")]
    target = communes.idxmax() if len(communes) else counts.idxmax()
    in_target = np.flatnonzero(resp & (forms["agency_id"] == target).to_numpy())
    ans[in_target[: max(3, len(in_target) // 4)]] = 5.0
    # the office codes what it sees: the share of items answered decides complete/partial
    share = (~np.isnan(ans)).sum(axis=1) / len(items)
    derived = np.where(share >= 0.8, "I", np.where(share >= 0.5, "P", "R"))
    forms.loc[resp, "class"] = derived[resp]
    code_of = {v: k for k, v in _OFFICE_CODES.items()}
    disp = forms["class"].map(code_of).to_numpy(dtype=object)
    # planted: a "refused" paper form with answers
    paper_resp = np.flatnonzero(resp & ~online & ~np.isin(np.arange(len(forms)), in_target))
    disp[paper_resp[0]] = "Từ chối"
    base = forms[["user_id", "agency_id"]].copy()
    base["disposition"] = disp
    paper = base[~online].copy()
    web = base[online].copy()
    paper_ans = pd.DataFrame(ans[~online], columns=items, index=paper.index)
    labelled = paper_ans.apply(lambda col: col.map(
        lambda v: None if np.isnan(v) else _LABELS_VI.get(int(v), int(v))))
    paper = pd.concat([paper, labelled], axis=1)
    # planted: an unknown label on a paper form
    first_paper = paper.index[(paper["disposition"] == "Hoàn thành").to_numpy()][1]
    paper.loc[first_paper, items[2]] = "Hơi hài lòng"
    web_ans = pd.DataFrame(ans[online], columns=items, index=web.index)
    web = pd.concat([web, web_ans], axis=1)
    # planted: an out-of-range code, a form keyed twice, a form from someone never sampled
    web.iloc[0, web.columns.get_loc(items[4])] = 7.0
    dup = web.iloc[[1]].copy()
    never = sorted(set(pop.frame["user_id"].astype(str)) - sampled)[0]
    stranger = web.iloc[[2]].copy()
    stranger["user_id"] = int(never)
    stranger["agency_id"] = str(pop.frame.loc[int(never) - 1, "agency_id"])
    web = pd.concat([web, dup, stranger], ignore_index=True)
    # planted: a reserve used beyond those released (the office recorded one fewer)
    rel = releases.copy()
    used = rel.index[rel["released"] > 0]
    if len(used):
        rel.loc[used[0], "released"] -= 1
    from .survey.io import have_excel, write_csv, write_excel

    if have_excel():
        write_excel({"Phieu": paper}, inputs / "responses_paper.xlsx")
    else:  # pragma: no cover - without the io extra the paper forms are a CSV file
        write_csv(paper, inputs / "responses_paper.csv")
    web["user_id"] = web["user_id"].astype(str)
    write_csv(web, inputs / "responses_online.csv", float_format="%g")
    write_csv(rel, inputs / "releases.csv")


def run_demo(
    *,
    out: Path,
    seed: int = 2026,
    population_seed: int = 20240611,
    n_users: int = 200_000,
    n_replicates: int = 500,
    questionnaire: str = "sipas_2017",
    moe: float = 10.0,
    progress: bool = True,
    small_area: bool = False,
) -> pd.DataFrame:
    """Run a whole survey year on synthetic data through files, ``plan``, ``validate``, ``run``.

    Parameters
    ----------
    out : pathlib.Path
        Existing, writable folder: it receives ``inputs/``, ``survey.toml``, ``plan/``,
        ``validation/``, ``results/`` and ``truth_check.csv``.  An earlier demo in the
        same folder is replaced.
    seed : int, default=2026
        Seed of the survey (draw and replicates) and of the simulated field work.
    population_seed : int, default=20240611
        Seed of the synthetic population.
    n_users : int, default=200_000
        Size of the synthetic population.
    n_replicates : int, default=500
        Rao-Wu bootstrap replicates.
    questionnaire : str, default="sipas_2017"
        Built-in questionnaire name or path to a JSON definition.
    moe : float, default=10.0
        Target margin of error (95 %) of each agency's index in points on the 0-100 scale
        of the outputs (10 = ±10 points); from 1 to 50.
    progress : bool, default=True
        Print progress to stderr.
    small_area : bool, default=False
        Run the lean year with model-based estimates for the small agencies (see the
        module notes): proportional allocation of ``min(7000, n_users // 3)`` units with a
        floor of :data:`SMALL_AREA_FLOOR` expected respondents, ``inputs/
        agency_covariates.csv`` and a ``[small_area]`` section in ``survey.toml``.
        Off by default: a model-based estimate is a methodological choice made on request,
        and the default demo shows the standard direct estimates with suppression.

    Returns
    -------
    pandas.DataFrame
        The per-agency comparison with the truth written to ``truth_check.csv`` (with
        ``source``: ``"direct"`` or ``"model-based"``).
    """
    from .datasets import make_population
    from .survey import load_config, plan, run, validate
    from .survey.io import write_csv
    from .survey.pipeline import Progress

    check_moe_points(moe, name="moe")
    q, q_line = _load_questionnaire(questionnaire)
    t0 = time.perf_counter()
    pg = Progress(enabled=progress)
    if progress:
        print(f"satsample demo: seed {seed}, {n_users:,} service users", file=sys.stderr)
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    with pg.step("building the synthetic population and writing the frame"):
        pop = make_population(n_users=n_users, questionnaire=q, rng=population_seed)
        frame = pop.frame.copy()
        write_csv(frame, inputs / "frame.csv")
        covariates = inputs / "agency_covariates.csv"
        if small_area:
            # last year's published index of every agency, on the 0-100 scale
            write_csv(pd.DataFrame({"agency_id": pop.agencies["agency_id"].astype(str),
                                    "index_last_year": (100 * pop.agencies["p_prior"]).round(1)}),
                      covariates)
        elif covariates.exists():
            covariates.unlink()  # an earlier --small-area demo in the same folder
    cfg_path = out / "survey.toml"
    from .survey.io import have_excel

    paper = "inputs/responses_paper.xlsx" if have_excel() else "inputs/responses_paper.csv"
    cfg_path.write_text(_config_text(
        seed=seed, q_line=q_line, moe=moe, n_replicates=n_replicates, paper=paper,
        small_area_n=min(SMALL_AREA_N, n_users // 3) if small_area else None),
        encoding="utf-8")
    cfg = load_config(cfg_path)
    if progress:
        print("satsample plan", file=sys.stderr)
    planned = plan(cfg, force=True, progress=pg)
    design_doc = json.loads((planned.folder / "design.json").read_text(encoding="utf-8"))
    units = pd.DataFrame(design_doc["units"])
    with pg.step("simulating the field work and writing the returned forms"):
        gen = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        forms, releases = _field_work(pop, units, rng=gen)
        _write_returns(pop, forms, releases, inputs, set(units["id"].astype(str)), rng=gen)
    if progress:
        print("satsample validate", file=sys.stderr)
    checked = validate(cfg, progress=pg)
    if progress:
        print("satsample run", file=sys.stderr)
    result = run(cfg, progress=pg)

    est = result.estimates
    nat = est["all"].overall.iloc[0]
    truth = float(pop.truth.overall_index)
    covered = bool(nat["ci_low"] <= truth <= nat["ci_high"])
    by = est["agency_id"].overall.set_index("agency_id")
    shown = (by["status"] != "suppress").to_numpy()

    def value(col: str) -> np.ndarray:  # no suppressed value in any output
        return np.where(shown, 100 * by[col].to_numpy(dtype=float), np.nan)

    table = pd.DataFrame({
        "agency_id": by.index.astype(str),
        "index": value("estimate"),
        "ci_low": value("ci_low"),
        "ci_high": value("ci_high"),
        "respondents": by["n"].to_numpy().astype(int),
        "true_index": 100 * pop.truth.agencies.loc[by.index, "index"].to_numpy(),
        "status": by["status"].to_numpy(),
        "source": (by["source"].astype(object).fillna("direct").to_numpy()
                   if "source" in by.columns else "direct"),
    })
    table["covered"] = pd.array(np.where(
        shown, (table["ci_low"] <= table["true_index"]) & (table["true_index"] <= table["ci_high"]),
        pd.NA), dtype="boolean")
    write_csv(table.round(4), out / "truth_check.csv")
    n_err, n_warn = len(checked.quality.errors), len(checked.quality.warnings)
    rr = result.rates
    rr1 = float(rr[(rr["grouping"] == "all") & (rr["basis"] == "cases")]["RR1"].iloc[0])
    _write_summary(out / "summary.txt", q=q, seed=seed, n_users=n_users, planned=planned,
                   table=table, by=by, nat=nat, truth=truth, covered=covered, rr1=rr1,
                   n_replicates=n_replicates, weighting=[s.method for s in
                                                         result.design.history],
                   replay=est["all"].options.get("replay"), small_area=result.small_area)
    print(
        f"National satisfaction index: {100 * nat['estimate']:.1f} "
        f"(95% CI {100 * nat['ci_low']:.1f} to {100 * nat['ci_high']:.1f}); "
        f"true population value {100 * truth:.1f} "
        f"({'inside' if covered else 'OUTSIDE'} the interval)"
    )
    n_model = int((table["source"] == "model-based").sum())
    print(
        f"{len(table)} agencies ({int(shown.sum())} published"
        + (f", {n_model} with a model-based estimate" if small_area else "")
        + f"); AAPOR RR1 {100 * rr1:.1f}%; "
        f"validate found {n_err} error(s) and {n_warn} warning(s) (planted), resolved by run; "
        f"report in {out / 'results' / 'report.html'} ({time.perf_counter() - t0:.0f} s)"
    )
    return table


def check_moe_points(moe: float, *, name: str = "--moe") -> float:
    """A margin of error in points on the 0-100 scale of the outputs: 1 to 50.

    A value below 1 is refused rather than read as a share, so ``0.10`` (the 0-1 scale)
    cannot silently mean a tenth of a point.
    """
    ok = isinstance(moe, (int, float, np.integer, np.floating)) and not isinstance(moe, bool) \
        and np.isfinite(moe) and 1 <= moe <= 50
    if not ok:
        hint = (f"; {float(moe):g} looks like a share on the 0-1 scale: write "
                f"{name} {100 * float(moe):g} for ±{100 * float(moe):g} points"
                if isinstance(moe, (int, float)) and 0 < moe < 1 else "")
        raise SatsampleError(f"{name} {moe!r} must be a margin of error in points on the 0-100 "
                             f"scale of the outputs, from 1 to 50 (10 = ±10 points){hint}")
    return float(moe)


def _write_summary(path: Path, *, q: Questionnaire, seed: int, n_users: int, planned: Any,
                   table: pd.DataFrame, by: pd.DataFrame, nat: pd.Series, truth: float,
                   covered: bool, rr1: float, n_replicates: int, weighting: list[str],
                   replay: str | None = None, small_area: Any = None) -> None:
    """``summary.txt``: what the demo did, in a few lines; no suppressed value."""
    alloc = planned.allocation
    short = alloc[~alloc["publishable"]]
    status = ("RECONSTRUCTED: the list of criteria is not confirmed by an official text"
              if q.reconstructed else "as published")
    pub = table[(table["status"] != "suppress") & (table["source"] == "direct")].sort_values(
        ["index", "agency_id"], ascending=[False, True], kind="mergesort")
    hidden = table[table["status"] == "suppress"]
    lines = [
        "satsample demo - synthetic SIPAS-like survey through plan, validate and run",
        f"questionnaire: {q.name} ({len(q.items)} criteria in {len(q.elements)} elements); "
        f"status: {status}",
        f"population: {n_users:,} service users in {len(table)} agencies; seed {seed}",
        (f"plan: {planned.n_main:,} selected (+{planned.n_reserve:,} reserves) so that every "
         f"agency expects at least {MIN_RESPONDENTS} respondents and an effective sample of "
         f"{MIN_RESPONDENTS} at a 60 % response rate" if small_area is None else
         f"plan: {planned.n_main:,} selected (+{planned.n_reserve:,} reserves), proportional "
         f"to the agencies' sizes with at least {SMALL_AREA_FLOOR} expected respondents per "
         f"agency at a 60 % response rate")
        + (f"; {len(short)} agencies too small to reach it even with a census are taken whole "
           f"({', '.join(short['agency'].astype(str))})" if len(short) else ""),
        f"AAPOR RR1: {100 * rr1:.1f} %",
        f"weighting: {' -> '.join(weighting)}",
        f"variance: Rao-Wu bootstrap, {n_replicates} replicates (weighting replayed on each, "
        f"on replicate {'cell tables' if replay == 'cells' else 'weights'})",
        f"national index: {100 * nat['estimate']:.1f} (95% CI {100 * nat['ci_low']:.1f} to "
        f"{100 * nat['ci_high']:.1f}; SE {100 * nat['se']:.2f})",
        f"true population index: {100 * truth:.1f} ({'covered' if covered else 'NOT covered'})",
        f"agencies published: {int((table['status'] != 'suppress').sum())} of {len(table)} "
        f"({int((table['status'] == 'review').sum())} marked for review)",
    ]
    if small_area is not None:
        fit = small_area.fit
        mb = table[table["source"] == "model-based"]
        cov = mb["covered"].astype("boolean")
        lines.append(
            f"model-based (Fay-Herriot, {fit.method.upper()}, sigma2_v = {fit.sigma2_v:.3g}; "
            f"covariates {', '.join(small_area.covariates)}): {len(mb)} agencies below "
            f"{small_area.min_n} respondents, true index inside {int(cov.sum())} of "
            f"{int(cov.notna().sum())} intervals: "
            + ", ".join(f"{r.agency_id} {r.index:.1f} (n = {r.respondents})"
                        for r in mb.itertuples()))
    reason = by["reason"].fillna("").astype(str)
    why = hidden["agency_id"].map(lambda a: "; ".join(
        part.split(":")[0] for part in reason.loc[a].split("; ")))
    for text, group in hidden.groupby(why, sort=True):
        lines.append(f"not published ({text}): " + ", ".join(
            f"{r.agency_id} (n = {r.respondents})" for r in group.itertuples()))
    lines += [
        "",
        "top 5: " + ", ".join(f"{r.agency_id} {r.index:.1f}" for r in pub.head(5).itertuples()),
        "bottom 5: " + ", ".join(f"{r.agency_id} {r.index:.1f}"
                                 for r in pub.tail(5).itertuples()),
        "report: results/report.html (and results/report.xlsx)",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
