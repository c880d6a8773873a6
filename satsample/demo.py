"""The main job on the built-in synthetic data: one whole yearly survey, end to end.

``satsample demo --out DIR`` runs :func:`run_demo`:

1. build the synthetic population of service users (:mod:`satsample.datasets`);
2. plan: per-agency sample sizes reaching a target margin of error of each
   agency's index, given an expected response rate (:func:`allocate_for_precision`);
3. draw a stratified simple random sample per agency (:func:`select`);
4. simulate the field work: answers and nonresponse that depends on the
   respondent's characteristics;
5. declare the design, create Rao-Wu bootstrap replicates, adjust for
   nonresponse within agencies and rake to the frame's agency, sex,
   age-group and channel counts (every step replayed on every replicate);
6. estimate the index per item, element and overall, nationally and per
   agency, with bootstrap standard errors and intervals, and flag agencies
   whose estimates are too unreliable to publish;
7. write ``agency_index.csv``, ``agency_index.png``, ``summary.txt`` and
   ``summary.html``.
"""

from __future__ import annotations

import html
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._spreadsheet import csv_safe
from ._validation import SatsampleError

if TYPE_CHECKING:
    from .datasets import Population
    from .design import SurveyDesign
    from .questionnaire import Questionnaire
    from .results import IndexEstimate

__all__ = ["MIN_RESPONDENTS", "run_demo"]

#: Agencies with fewer respondents than this are flagged "too few to publish"
#: (:func:`satsample.flags.publication_flags` also flags a relative SE above 30 %,
#: a Korn-Graubard effective sample size below 30 and fewer than 8 degrees of freedom).
MIN_RESPONDENTS = 30


@contextmanager
def _step(label: str, progress: bool) -> Iterator[None]:
    start = time.perf_counter()
    if progress:
        print(f"  {label} ...", end="", file=sys.stderr, flush=True)
    yield
    if progress:
        print(f" done ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)


def _load_questionnaire(spec: str) -> Questionnaire:
    from .questionnaire import available_questionnaires, load_questionnaire

    if spec in available_questionnaires():
        return load_questionnaire(spec)
    path = Path(spec)
    if not path.exists():
        raise SatsampleError(
            f"--questionnaire {spec!r} is neither a built-in ({', '.join(available_questionnaires())}) "
            "nor an existing JSON file"
        )
    from .questionnaire import Questionnaire

    return Questionnaire.from_json(path)


def run_demo(
    *,
    out: Path,
    seed: int = 2026,
    population_seed: int = 20240611,
    n_users: int = 200_000,
    n_replicates: int = 500,
    questionnaire: str = "sipas_2017",
    moe: float = 0.10,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the whole survey on synthetic data and write the outputs to ``out``.

    Parameters
    ----------
    out : pathlib.Path
        Existing, writable output folder.
    seed : int, default=2026
        Seed of the sample draw, the field work and the bootstrap.
    population_seed : int, default=20240611
        Seed of the synthetic population (kept fixed so that ``seed`` alone
        changes the sample).
    n_users : int, default=200_000
        Size of the synthetic population.
    n_replicates : int, default=500
        Rao-Wu bootstrap replicates.
    questionnaire : str, default="sipas_2017"
        Built-in questionnaire name or path to a JSON definition.
    moe : float, default=0.10
        Target margin of error (95 %) of each agency's index.
    progress : bool, default=True
        Print progress to stderr.

    Returns
    -------
    pandas.DataFrame
        The per-agency table written to ``agency_index.csv``.
    """
    q = _load_questionnaire(questionnaire)
    from .allocation import allocate_for_precision
    from .datasets import make_population, simulate_responses
    from .design import survey_design
    from .index import satisfaction_index
    from .replicate import bootstrap
    from .selection import select
    from .weighting import adjust_nonresponse, rake

    seeds = np.random.SeedSequence(seed).spawn(3)
    t0 = time.perf_counter()
    if progress:
        print(f"satsample demo: seed {seed}, {n_users:,} service users", file=sys.stderr)

    with _step("building the synthetic population", progress):
        pop = make_population(n_users=n_users, questionnaire=q, rng=population_seed)
    frame = pop.frame
    agencies = pop.agencies.set_index("agency_id")

    with _step("planning the per-agency sample sizes", progress):
        expected_rr = 0.6
        plan = allocate_for_precision(
            agencies["N_h"], moe=moe, p=agencies["p_prior"].clip(0.05, 0.95),
            deff=1.3, response_rate=expected_rr, min_n=10,
        )

    with _step("drawing the stratified sample", progress):
        drawn = select(frame, id="user_id", stratum="agency_id", n=plan, method="srswor",
                       rng=seeds[0])
        sample = drawn.sample

    with _step("simulating answers and nonresponse", progress):
        fielded = simulate_responses(pop, sample, rng=seeds[1])

    with _step(f"weighting ({n_replicates} Rao-Wu replicates)", progress):
        design = survey_design(fielded, strata="agency_id", weights="design_weight", fpc="fpc")
        design = bootstrap(design, replicates=n_replicates, rng=seeds[2])
        design = adjust_nonresponse(design, "responded", classes="agency_id")
        margins = {
            var: frame[var].value_counts().rename("Freq").rename_axis(var).reset_index()
            for var in ("agency_id", "sex", "age_group", "channel")
        }
        design = rake(design, [(var, tab) for var, tab in margins.items()], max_iter=50,
                      epsilon=1e-8)

    with _step("estimating the indices", progress):
        respondents = np.asarray(design.data["responded"], dtype=bool)
        national = satisfaction_index(design, q)
        by_agency = satisfaction_index(design, q, by="agency_id")

    table = _agency_table(by_agency, agencies, pop)
    nat = national.overall.iloc[0]
    truth = float(pop.truth.overall_index)
    covered = bool(nat["ci_low"] <= truth <= nat["ci_high"])

    with _step("writing the outputs", progress):
        _write_outputs(out, table=table, by_agency=by_agency, national=nat, truth=truth, covered=covered,
                       design=design, seed=seed, n_users=n_users, q=q,
                       n_replicates=n_replicates, sample_size=len(sample),
                       respondents=int(respondents.sum()))

    print(
        f"National satisfaction index: {100 * nat['estimate']:.2f} "
        f"(95% CI {100 * nat['ci_low']:.2f} to {100 * nat['ci_high']:.2f}); "
        f"true population value {100 * truth:.2f} "
        f"({'inside' if covered else 'OUTSIDE'} the interval)"
    )
    n_flag = int(table["status"].ne("publish").sum())
    print(
        f"{len(table)} agencies, {int(respondents.sum()):,} respondents of {len(sample):,} "
        f"selected; {n_flag} agencies flagged; outputs in {out} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return table


def _agency_table(est: IndexEstimate, agencies: pd.DataFrame, pop: Population) -> pd.DataFrame:
    from .flags import publication_flags

    flagged = publication_flags(est.overall, min_n=MIN_RESPONDENTS)
    overall = flagged.set_index("agency_id")
    ids = overall.index
    tab = pd.DataFrame({
        "agency_id": ids.astype(str),
        "agency_name": agencies.loc[ids, "name"].to_numpy(),
        "level": agencies.loc[ids, "level"].astype(str).to_numpy(),
        "index": 100 * overall["estimate"].to_numpy(),
        "se": 100 * overall["se"].to_numpy(),
        "ci_low": 100 * overall["ci_low"].to_numpy(),
        "ci_high": 100 * overall["ci_high"].to_numpy(),
        "respondents": overall["n"].to_numpy().astype(int),
        "true_index": 100 * pop.truth.agencies.loc[ids, "index"].to_numpy(),
        "status": overall["status"].to_numpy(),
        "flag": overall["reason"].fillna("").to_numpy(),
    })
    tab = tab.sort_values(["index", "agency_id"], ascending=[False, True], kind="mergesort")
    tab.insert(0, "rank", np.arange(1, len(tab) + 1))
    return tab.reset_index(drop=True).round(
        {"index": 4, "se": 4, "ci_low": 4, "ci_high": 4, "true_index": 4})


def _write_outputs(out: Path, *, table: pd.DataFrame, by_agency: IndexEstimate,
                   national: pd.Series, truth: float,
                   covered: bool, design: SurveyDesign, seed: int, n_users: int,
                   q: Questionnaire, n_replicates: int,
                   sample_size: int, respondents: int) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tmp = Path(tempfile.mkdtemp(prefix=".satsample-", dir=out))
    try:
        csv_safe(table).to_csv(tmp / "agency_index.csv", index=False, float_format="%.4f",
                     lineterminator="\n")
        # chart
        from .plotting import plot_index

        fig, ax = plt.subplots(figsize=(8, max(6, 0.16 * len(table))))
        plot_index(by_agency, reference=float(national["estimate"]), ax=ax)
        ax.tick_params(axis="y", labelsize=5)
        ax.set_title(f"Satisfaction index by agency, 95% bootstrap intervals (synthetic data, seed {seed})",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(tmp / "agency_index.png", dpi=120)
        plt.close(fig)
        # summary
        flagged = table[table["status"] != "publish"]
        lines = [
            "satsample demo - synthetic SIPAS-like survey",
            f"questionnaire: {q.name} ({len(q.items)} criteria in {len(q.elements)} elements)",
            f"population: {n_users:,} service users in {len(table)} agencies; seed {seed}",
            f"selected: {sample_size:,}; respondents: {respondents:,} "
            f"({100 * respondents / sample_size:.1f}%)",
            f"weighting: {' -> '.join(step.method for step in design.history)}",
            f"variance: Rao-Wu bootstrap, {n_replicates} replicates (weighting replayed on each)",
            f"national index: {100 * national['estimate']:.2f} (SE {100 * national['se']:.2f}; "
            f"95% CI {100 * national['ci_low']:.2f} - {100 * national['ci_high']:.2f})",
            f"true population index: {100 * truth:.2f} ({'covered' if covered else 'NOT covered'})",
            f"agencies not cleared for publication (fewer than {MIN_RESPONDENTS} respondents, "
            f"relative SE > 30%, effective n < 30 or df < 8): {len(flagged)}",
            "",
            "top 5: " + ", ".join(f"{r.agency_id} {r.index:.2f}" for r in table.head(5).itertuples()),
            "bottom 5: " + ", ".join(f"{r.agency_id} {r.index:.2f}" for r in table.tail(5).itertuples()),
        ]
        (tmp / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        body = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
        tab_html = table.to_html(index=False, escape=True, float_format=lambda v: f"{v:.2f}")
        (tmp / "summary.html").write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>satsample demo</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "table{border-collapse:collapse;font-size:0.8em}td,th{border:1px solid #ccc;"
            "padding:2px 6px}</style></head><body><h1>satsample demo</h1>"
            f"{body}<img src='agency_index.png' alt='agency indices' style='max-width:100%'>"
            f"{tab_html}</body></html>\n",
            encoding="utf-8",
        )
        for name in ("agency_index.csv", "agency_index.png", "summary.txt", "summary.html"):
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
