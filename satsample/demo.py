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
7. write ``agency_index.csv`` (suppressed agencies without values), ``agency_index.png``
   (the A4 figure grouped by tier), ``summary.txt``, ``summary.html`` (the self-contained
   report of :func:`satsample.report.build_report`) and ``summary.xlsx``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        import warnings

        from ._validation import SmallDomainWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmallDomainWarning)
            # the publication minimum is part of the plan: no agency is planned below the
            # respondents its publication needs at the expected response rate
            plan = allocate_for_precision(
                agencies["N_h"], moe=moe, p=agencies["p_prior"].clip(0.05, 0.95),
                deff=1.3, response_rate=expected_rr, min_n=10,
                min_respondents=MIN_RESPONDENTS, min_effective_n=MIN_RESPONDENTS,
            )
        for w in caught:
            print(f"satsample demo: note: {w.message}", file=sys.stderr)

    with _step("drawing the stratified sample", progress):
        drawn = select(frame, ids="user_id", strata="agency_id", n=plan, method="srswor",
                       rng=seeds[0])
        sample = drawn.sample

    with _step("simulating answers and nonresponse", progress):
        fielded = simulate_responses(pop, sample, rng=seeds[1])

    with _step(f"weighting ({n_replicates} Rao-Wu replicates)", progress):
        design = survey_design(fielded, strata="agency_id", weights="design_weight", fpc="fpc")
        # lazy replicates: the weighting steps below are replayed on replicate cell tables
        # (options['replay'] of the results says 'cells'), never on n x R weights
        design = bootstrap(design, n_replicates=n_replicates, rng=seeds[2], materialize=False)
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

    from .flags import flag_estimate

    by_agency = flag_estimate(by_agency, min_n=MIN_RESPONDENTS)
    table = _agency_table(by_agency, agencies, pop)
    nat = national.overall.iloc[0]
    truth = float(pop.truth.overall_index)
    covered = bool(nat["ci_low"] <= truth <= nat["ci_high"])

    with _step("writing the outputs", progress):
        _write_outputs(out, table=table, by_agency=by_agency, national=national,
                       truth=truth, covered=covered, design=design, seed=seed,
                       n_users=n_users, q=q, n_replicates=n_replicates,
                       sample_size=len(sample), respondents=int(respondents.sum()),
                       agencies=agencies, plan=plan, fielded=fielded)

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
    """One row per agency; a suppressed agency has no rank, index, SE or interval.

    ``est`` is flagged (:func:`satsample.flags.flag_estimate`).  Published agencies are
    ranked by index (rank 1 = highest); suppressed agencies follow, with their number of
    respondents and the reason, so the reader sees that they exist.
    """
    overall = est.overall.set_index("agency_id")
    ids = overall.index
    shown = (overall["status"] != "suppress").to_numpy()

    def value(col: str) -> np.ndarray:
        return np.where(shown, 100 * overall[col].to_numpy(dtype=float), np.nan)

    tab = pd.DataFrame({
        "agency_id": ids.astype(str),
        "agency_name": agencies.loc[ids, "name"].to_numpy(),
        "level": agencies.loc[ids, "level"].astype(str).to_numpy(),
        "index": value("estimate"),
        "se": value("se"),
        "ci_low": value("ci_low"),
        "ci_high": value("ci_high"),
        "respondents": overall["n"].to_numpy().astype(int),
        "true_index": 100 * pop.truth.agencies.loc[ids, "index"].to_numpy(),
        "status": overall["status"].to_numpy(),
        "flag": overall["reason"].fillna("").to_numpy(),
    })
    tab["_sup"] = ~shown
    tab = tab.sort_values(["_sup", "index", "agency_id"], ascending=[True, False, True],
                          kind="mergesort").drop(columns="_sup")
    n_pub = int(shown.sum())
    tab.insert(0, "rank", pd.array(list(range(1, n_pub + 1)) + [pd.NA] * (len(tab) - n_pub),
                                   dtype="Int64"))
    return tab.reset_index(drop=True).round(
        {"index": 4, "se": 4, "ci_low": 4, "ci_high": 4, "true_index": 4})


def _write_outputs(out: Path, *, table: pd.DataFrame, by_agency: IndexEstimate,
                   national: IndexEstimate, truth: float,
                   covered: bool, design: SurveyDesign, seed: int, n_users: int,
                   q: Questionnaire, n_replicates: int,
                   sample_size: int, respondents: int, agencies: pd.DataFrame,
                   plan: Any, fielded: pd.DataFrame) -> None:
    """Write the CSV, the A4 agency figure, the text summary, the HTML report, the workbook.

    No suppressed value is written: the CSV leaves the rank, index, SE and interval of a
    suppressed agency empty, and the figure, the report and the workbook honour the flags
    of ``by_agency``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plotting import plot_agency_index
    from .report import build_report

    names = agencies["name"].astype(str)
    tier = agencies["level"].astype(str)
    nat = national.overall.iloc[0]
    tmp = Path(tempfile.mkdtemp(prefix=".satsample-", dir=out))
    try:
        csv_safe(table).to_csv(tmp / "agency_index.csv", index=False, float_format="%.4f",
                     lineterminator="\n")
        fig = plot_agency_index(
            by_agency, names=names, tier=tier, reference=national,
            title=f"Satisfaction index by agency, 95 % bootstrap intervals "
                  f"(synthetic data, seed {seed})")
        fig.savefig(tmp / "agency_index.png", dpi=150)
        plt.close(fig)
        shown = table[table["status"] != "suppress"]
        hidden = table[table["status"] == "suppress"]
        status = ("RECONSTRUCTED: the list of criteria is not confirmed by an official text"
                  if q.reconstructed else "as published")
        lines = [
            "satsample demo - synthetic SIPAS-like survey",
            f"questionnaire: {q.name} ({len(q.items)} criteria in {len(q.elements)} elements); "
            f"status: {status}",
            f"population: {n_users:,} service users in {len(table)} agencies; seed {seed}",
            f"plan: {int(plan.n):,} selected so that every agency expects at least "
            f"{MIN_RESPONDENTS} respondents (and an effective sample of {MIN_RESPONDENTS}) "
            f"at a {100 * float(np.mean(plan.options['response_rate'])):.0f} % response rate"
            + (f"; {n_short} agencies too small to reach it even with a census are taken whole"
               if (n_short := int((~plan.to_frame()["publishable"]).sum())) else ""),
            f"selected: {sample_size:,}; respondents: {respondents:,} "
            f"({100 * respondents / sample_size:.1f}%)",
            f"weighting: {' -> '.join(step.method for step in design.history)}",
            f"variance: Rao-Wu bootstrap, {n_replicates} replicates (weighting replayed on each, "
            f"on replicate {'cell tables' if by_agency.options.get('replay') == 'cells' else 'weights'})",
            f"national index: {100 * nat['estimate']:.1f} (95% CI {100 * nat['ci_low']:.1f} to "
            f"{100 * nat['ci_high']:.1f}; SE {100 * nat['se']:.2f})",
            f"true population index: {100 * truth:.1f} ({'covered' if covered else 'NOT covered'})",
            f"agencies published: {len(shown)} of {len(table)} "
            f"({int((table['status'] == 'review').sum())} marked for review)",
        ]
        why = hidden["flag"].map(lambda t: "; ".join(part.split(":")[0]
                                                      for part in str(t).split("; ")))
        for reason, group in hidden.groupby(why, sort=True):
            lines.append(f"not published ({reason}): " + ", ".join(
                f"{r.agency_id} (n = {r.respondents})" for r in group.itertuples()))
        lines += [
            "",
            "top 5: " + ", ".join(f"{r.agency_id} {r.index:.1f}"
                                  for r in shown.head(5).itertuples()),
            "bottom 5: " + ", ".join(f"{r.agency_id} {r.index:.1f}"
                                     for r in shown.tail(5).itertuples()),
        ]
        (tmp / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        rates = (fielded.groupby("agency_id", observed=True)["responded"].mean()
                 .rename("rate").rename_axis("agency").reset_index())
        rates["agency"] = rates["agency"].astype(str)
        rates["tier"] = rates["agency"].map(tier)
        rates["name"] = rates["agency"].map(names)
        build_report(by_agency, national=national, design=design, allocation=plan,
                     response_rates=rates, names=names, tier=tier,
                     title=f"satsample demo: synthetic SIPAS-like survey (seed {seed})",
                     html_path=tmp / "summary.html", excel_path=tmp / "summary.xlsx")
        for name in ("agency_index.csv", "agency_index.png", "summary.txt", "summary.html",
                     "summary.xlsx"):
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
