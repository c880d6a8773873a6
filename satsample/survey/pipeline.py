"""The three steps of a survey year: ``plan``, ``validate`` and ``run``.

``plan(config)``
    Reads the frame, allocates the sample across agencies (no agency below the publication
    minimum ``ceil(min_respondents / expected_response)``, capped at ``N_h``), draws the
    sample and the ordered reserves and writes ``plan/``: ``design.json`` (what ``run``
    reads back), ``field_lists.xlsx`` (one sheet per agency, reserves in release order),
    ``field_list.csv`` and ``allocation.csv``.  An existing plan is never overwritten
    unless ``force=True``.
``validate(config)``
    Reads the response files and writes ``validation/``: ``quality_report.html``,
    ``quality_findings.csv``, ``quality_by_agency.csv`` and ``response_rates.csv``.
``run(config)``
    design -> validation -> dispositions -> weighting (replayed on every replicate) ->
    index per item, element and overall for every domain -> flags -> league table ->
    small-area estimates (with ``[small_area]``) -> report and files in ``results/``.

Every step writes into a temporary folder beside its target and moves it into place only
when every file is complete, so a failure leaves no half-written output.

Randomness: ``numpy.random.SeedSequence(survey.seed).spawn(3)``; the first child draws the
sample (``plan``), the second the bootstrap replicates (``run``), the third the parametric
bootstrap of the small-area MSE (``small_area.mse = "bootstrap"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError
from .._version import __version__
from ..questionnaire import Questionnaire
from .config import SurveyConfig, load_config
from .dispositions import ELIGIBLE, UNKNOWN, outcome_rates
from .errors import ConfigError, DataError, OutputError
from .io import (
    answers_to_codes,
    have_excel,
    label_mapping,
    normalise_ids,
    read_table,
    require_columns,
    rows_text,
    write_csv,
    write_excel,
)
from .quality import QualityResult, check_returns

__all__ = ["PlanResult", "RunResult", "ValidationResult", "plan", "run", "validate"]

_DESIGN_FILE = "design.json"


# ============================================================================ progress
class Progress:
    """A plain stderr progress bar shown for steps that last more than a second.

    ``step(label, total)`` is a context manager; ``advance(k)`` moves the bar.  On a
    terminal the bar redraws in place; otherwise one line per step is printed at its end
    (with its duration) so logs stay short.
    """

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._label = ""
        self._total = 0
        self._done = 0
        self._start = 0.0
        self._shown = False
        self._last = 0.0

    @contextmanager
    def step(self, label: str, total: int = 0) -> Iterator[Progress]:
        self._label, self._total, self._done = label, int(total), 0
        self._start = time.perf_counter()
        self._shown = False
        try:
            yield self
        except BaseException:
            if self.enabled and self._shown and self.tty:
                self.stream.write("\n")  # the error message starts on its own line
                self.stream.flush()
            raise
        if self.enabled:
            dt = time.perf_counter() - self._start
            if self._shown and self.tty:
                self._draw(final=True)
                self.stream.write("\n")
            elif dt >= 1.0 or not self.tty:
                self.stream.write(f"  {label} ... done ({dt:.1f} s)\n")
            self.stream.flush()

    def advance(self, k: int = 1) -> None:
        self._done += int(k)
        if not self.enabled or not self.tty:
            return
        now = time.perf_counter()
        if now - self._start >= 1.0 and now - self._last >= 0.1:
            self._draw()
            self._last = now

    def _draw(self, final: bool = False) -> None:
        width = 30
        total = max(self._total, 1)
        done = min(self._done, total) if not final else total
        fill = int(width * done / total)
        dt = time.perf_counter() - self._start
        self.stream.write(f"\r  {self._label} [{'#' * fill}{'.' * (width - fill)}] "
                          f"{done}/{total} {dt:.1f} s")
        self.stream.flush()
        self._shown = True


@dataclass(frozen=True, eq=False)
class _ProgressReplay:
    """Wraps the last weighting step replayed on replicate blocks to move a progress bar.

    The replicate engine replays ``replicates.steps`` block by block (see
    :class:`satsample.design.ReplicateWeights`); this wrapper calls the wrapped step and
    counts the replicates of each block, so the bar follows the real work.
    """

    inner: Any
    progress: Progress

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        out = self.inner.apply(block, replicate_index)
        self.progress.advance(int(np.asarray(replicate_index).size))
        return out


def _with_progress(design: Any, progress: Progress) -> Any:
    from ..variance.replicate import replay_path

    reps = getattr(design, "replicates", None)
    if reps is None or getattr(reps, "weights", 1) is not None or not getattr(reps, "steps", ()):
        return design
    if replay_path(design) == "cells":
        # replayed on replicate cell tables in one pass: no blocks to count, and wrapping a
        # step would hide it from the cell path (which knows the weighting steps by type)
        return design
    steps = tuple(reps.steps)
    wrapped = dataclasses.replace(reps, steps=(*steps[:-1], _ProgressReplay(steps[-1], progress)))
    return design.with_replicates(wrapped)


# ============================================================================ staging
@contextmanager
def _staging(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary folder moved to ``target`` when the block succeeds (removed otherwise)."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output folder {str(parent)!r} cannot be created: "
                          f"{exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(parent)!r} is not writable")
    if target.exists() and not overwrite:
        raise OutputError(f"{str(target)!r} already exists; pass --force to replace it")
    tmp = parent / f".{target.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stratum_column(cfg: SurveyConfig) -> str:
    """The sampling strata: the agency, or the frame.strata column dividing the agencies."""
    return cfg["frame"]["strata"] or cfg["frame"]["agency"]


def _seeds(cfg: SurveyConfig) -> list[np.random.SeedSequence]:
    # children 0 and 1 are those of spawn(2): adding the third changed no earlier draw
    return np.random.SeedSequence(int(cfg["survey"]["seed"])).spawn(3)


# ============================================================================ inputs
def _questionnaire(cfg: SurveyConfig) -> Questionnaire:
    from ..questionnaire import available_questionnaires, load_questionnaire

    q = cfg["questionnaire"]
    try:
        if q["name"] is not None:
            if q["name"] not in available_questionnaires():
                raise ConfigError(f"key questionnaire.name = {q['name']!r} is not a built-in "
                                  f"questionnaire; allowed values: "
                                  f"{', '.join(map(repr, available_questionnaires()))}")
            return load_questionnaire(q["name"])
        return Questionnaire.from_json(q["file"])
    except ConfigError:
        raise
    except SatsampleError as exc:
        raise ConfigError(f"questionnaire: {exc}") from None


_RESERVED = ("id", "stratum", "inclusion_prob", "design_weight", "fpc", "reserve_rank",
             "selection_order", "replaced", "disposition_class", "respondent",
             "eligibility_known", "eligibility_factor", "eligibility_weight", "in_design")


def _read_frame(cfg: SurveyConfig) -> pd.DataFrame:
    fr = cfg["frame"]
    df, _ = read_table(fr["file"], sheet=fr["sheet"], what="frame")
    name = Path(fr["file"]).name
    roles = {"frame.id": fr["id"], "frame.agency": fr["agency"],
             "frame.agency_name": fr["agency_name"], "frame.tier": fr["tier"],
             "frame.strata": fr["strata"], "frame.size": fr["size"]}
    roles.update({f"frame.auxiliary {c}": c for c in fr["auxiliary"]})
    roles.update({f"frame.contact {c}": c for c in fr["contact"]})
    for dom in cfg.domains:
        roles.update({f"estimation.domains {c}": c for c in dom})
    require_columns(df, roles, what="frame", file=name)
    q = _questionnaire(cfg)
    reserved = sorted((set(_RESERVED) | set(q.items)) & set(df.columns)
                      - {fr["id"], fr["strata"]})
    if reserved:
        raise DataError(f"frame {name!r}: column {reserved[0]!r} has a name that satsample uses "
                        "for the sample (or an item of the questionnaire); rename it in the "
                        f"frame (reserved: {', '.join(_RESERVED)} and the item names)")
    ids = normalise_ids(df[fr["id"]])
    miss = ids.isna().to_numpy()
    if miss.any():
        raise DataError(f"frame {name!r}, column {fr['id']!r}: {int(miss.sum())} empty id(s) "
                        f"({rows_text(df.loc[miss, '_row'])})")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        rows = df.loc[(ids == first).to_numpy(), "_row"]
        raise DataError(f"frame {name!r}, column {fr['id']!r}: id {first!r} appears more than "
                        f"once ({rows_text(rows)}; {int(dup.sum())} rows with duplicated ids)")
    ag = df[fr["agency"]]
    miss = ag.isna().to_numpy() | (ag.astype(str).str.strip() == "").to_numpy()
    if miss.any():
        raise DataError(f"frame {name!r}, column {fr['agency']!r}: {int(miss.sum())} empty "
                        f"agency value(s) ({rows_text(df.loc[miss, '_row'])})")
    out = df.copy()
    out[fr["id"]] = ids
    out[fr["agency"]] = normalise_ids(ag)
    # categories used for weighting and domains are compared as text (a file read from
    # Excel or SPSS may hold numbers where the margins files hold text)
    cats = {fr["tier"], *fr["auxiliary"], *(c for dom in cfg.domains for c in dom)}
    for c in cats - {None, fr["id"], fr["agency"], fr["size"]}:
        if not pd.api.types.is_float_dtype(out[c].dtype) or out[c].dropna().map(
                float.is_integer).all():
            out[c] = normalise_ids(out[c])
    if fr["strata"]:
        st = normalise_ids(out[fr["strata"]])
        miss = st.isna().to_numpy()
        if miss.any():
            raise DataError(f"frame {name!r}, column {fr['strata']!r}: {int(miss.sum())} empty "
                            f"stratum value(s) ({rows_text(out.loc[miss, '_row'])})")
        out[fr["strata"]] = st
        spans = out.groupby(fr["strata"])[fr["agency"]].nunique()
        if (spans > 1).any():
            bad = spans.index[(spans > 1).to_numpy()][0]
            ags = sorted(set(out.loc[st == bad, fr["agency"]]))
            raise DataError(f"frame {name!r}, column {fr['strata']!r}: stratum {bad!r} spans "
                            f"several agencies ({', '.join(map(repr, ags[:5]))}); strata must "
                            "divide agencies (use a label per agency, e.g. agency + field)")
    if fr["size"]:
        size = pd.to_numeric(out[fr["size"]], errors="coerce")
        bad = size.isna().to_numpy() | (size <= 0).to_numpy()
        if bad.any():
            v = out.loc[bad, fr["size"]].iloc[0]
            raise DataError(f"frame {name!r}, column {fr['size']!r}: value {v!r} is not a "
                            f"positive number ({rows_text(out.loc[bad, '_row'])})")
        out[fr["size"]] = size.astype(float)
    return out


# ============================================================================ plan
@dataclass(frozen=True, kw_only=True, eq=False)
class PlanResult:
    """What :func:`plan` wrote: the plan folder, the allocation table and the sample size."""

    folder: Path
    allocation: pd.DataFrame
    n_main: int
    n_reserve: int
    #: Planning notes, e.g. agencies too small to reach the publication minimum even by census.
    notes: tuple[str, ...] = ()


def _allocation(cfg: SurveyConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, Any, list[str]]:
    """The allocation table, the Allocation behind it (or None) and the planning notes.

    With ``allocation = "precision"`` the publication minimum is a bound of
    :func:`satsample.allocate_for_precision` (``min_respondents``, ``min_effective_n``):
    ``n_h = max(n_rule, min(N_h, ceil(q_h / rr)))`` with ``q_h = max(a, b deff)``.  The
    other rules are raised to the same floor here.
    """
    import warnings

    from .._validation import SmallDomainWarning
    from ..allocation import allocate, allocate_for_precision

    fr, d = cfg["frame"], cfg["design"]
    counts = frame[fr["agency"]].value_counts().sort_index()
    counts.index.name = "agency"
    N = counts.astype(np.int64)
    rr = d["expected_response"]
    if rr <= 0:
        raise ConfigError("key design.expected_response = 0 is out of range: it must be > 0")
    rule = d["allocation"]
    min_eff = d["min_effective_n"]
    needed = max(float(d["min_respondents"]), float(min_eff or 0.0) * float(d["deff"]))
    notes: list[str] = []
    alloc: Any = None
    try:
        if rule == "precision":
            opts = {"moe": d["moe"], "p": d["p"], "deff": d["deff"], "response_rate": rr,
                    "level": d["level"]}
            n_rule = pd.Series(allocate_for_precision(N, **opts).n_h, index=N.index)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SmallDomainWarning)
                alloc = allocate_for_precision(N, **opts, min_respondents=d["min_respondents"],
                                               min_effective_n=min_eff)
            notes += [str(w.message) for w in caught
                      if issubclass(w.category, SmallDomainWarning)]
        elif rule == "fixed":
            n_rule = pd.Series(np.minimum(d["n_per_agency"], N.to_numpy()), index=N.index)
        else:
            kw: dict[str, Any] = {"rule": rule}
            if rule == "neyman":
                kw["p"] = d["p"]
            n_rule = pd.Series(allocate(N, int(d["n"]), take_all=True, **kw).n_h, index=N.index)
    except ConfigError:
        raise
    except SatsampleError as exc:
        raise ConfigError(f"design: the allocation failed: {exc}") from None
    floor = np.minimum(math.ceil(needed / rr - 1e-9), N.to_numpy())
    if alloc is not None:
        planned = np.asarray(alloc.n_h, dtype=np.int64)
    else:
        planned = np.maximum(n_rule.to_numpy(dtype=np.int64), floor)
        short = N.to_numpy() * rr < needed * (1 - 1e-12)
        if short.any():
            names = [str(a) for a in N.index[short]]
            notes.append(f"{len(names)} agencies cannot reach the publication minimum of "
                         f"{needed:g} respondents even with a census at the expected "
                         f"response rate (planned as take-all): {names[:10]}"
                         + (" ..." if len(names) > 10 else ""))
    res = d["reserves"]
    if isinstance(res, int):
        reserves = np.full(len(N), res, dtype=np.int64)
    else:
        reserves = np.ceil(res * planned - 1e-9).astype(np.int64)
    reserves = np.minimum(reserves, N.to_numpy() - planned)
    out = pd.DataFrame({"agency": N.index.astype(str), "N_h": N.to_numpy(),
                        "n_rule": n_rule.to_numpy(dtype=np.int64),
                        "publication_minimum": floor, "n_h": planned,
                        "raised_to_minimum": planned > n_rule.to_numpy(),
                        "expected_respondents": planned * rr,
                        "publishable": planned * rr >= needed * (1 - 1e-9),
                        "n_reserve": reserves})
    return out, alloc, notes


def _strata_allocation(cfg: SurveyConfig, frame: pd.DataFrame, alloc: pd.DataFrame
                       ) -> pd.DataFrame:
    """Sample and reserve sizes per sampling stratum.

    Without ``frame.strata`` the strata are the agencies.  With it, each agency's planned
    ``n_h`` is split over its strata by :func:`satsample.allocate` (proportional to their
    sizes, at least 2 units or all of them per stratum so that its variance can be
    estimated, largest-remainder rounding keeping ``n_h``); a share of reserves applies per
    stratum, an integer count to every stratum.
    """
    from ..allocation import allocate

    fr = cfg["frame"]
    if not fr["strata"]:
        return pd.DataFrame({"stratum": alloc["agency"], "agency": alloc["agency"],
                             "N": alloc["N_h"], "n": alloc["n_h"],
                             "n_reserve": alloc["n_reserve"]})
    res = cfg["design"]["reserves"]
    rows = []
    counts = frame.groupby([fr["agency"], fr["strata"]]).size()
    for a, n_h in zip(alloc["agency"], alloc["n_h"], strict=True):
        sub = counts.loc[a]
        sizes = sub.to_numpy(dtype=np.int64)
        floor = int(np.minimum(2, sizes).sum())
        n_s = allocate(pd.Series(sizes, index=sub.index), max(int(n_h), floor),
                       rule="proportional", min_n=2, take_all=True).n_h.astype(np.int64)
        if isinstance(res, int):
            r_s = np.minimum(res, sizes - n_s)
        else:
            r_s = np.minimum(np.ceil(res * n_s - 1e-9).astype(np.int64), sizes - n_s)
        rows += [{"stratum": str(k), "agency": a, "N": int(N), "n": int(n), "n_reserve": int(r)}
                 for k, N, n, r in zip(sub.index, sizes, n_s, r_s, strict=True)]
    return pd.DataFrame(rows)


def plan(config: str | Path | SurveyConfig, *, force: bool = False,
         progress: Progress | None = None) -> PlanResult:
    """Allocate, draw the sample and the reserves, and write the field lists.

    Parameters
    ----------
    config : str, Path or SurveyConfig
        The survey configuration (see :func:`satsample.survey.load_config`).
    force : bool, default=False
        Replace an existing plan (the field lists handed out would no longer match).
    progress : Progress, optional
        Progress reporting (default: none).

    Returns
    -------
    PlanResult

    Raises
    ------
    ConfigError, DataError, OutputError
    """
    from ..selection import select

    cfg = config if isinstance(config, SurveyConfig) else load_config(config)
    pg = progress or Progress(enabled=False)
    target = cfg.folder / "plan"
    if target.exists() and not force:
        raise OutputError(f"a plan already exists in {str(target)!r}; pass --force to replace "
                          "it (the field lists already handed out would no longer match)")
    fr, d = cfg["frame"], cfg["design"]
    _questionnaire(cfg)  # a bad questionnaire is reported before anything is drawn
    with pg.step("reading the frame"):
        frame = _read_frame(cfg)
    strat = _stratum_column(cfg)
    with pg.step("allocating and drawing the sample"):
        alloc, _, notes = _allocation(cfg, frame)
        strata_tab = _strata_allocation(cfg, frame, alloc)
        sizes = dict(zip(strata_tab["stratum"], strata_tab["n"].astype(int), strict=True))
        reserves = dict(zip(strata_tab["stratum"], strata_tab["n_reserve"].astype(int),
                            strict=True))
        try:
            drawn = select(frame.drop(columns=["_file", "_row"]), ids=fr["id"],
                           strata=strat, n=sizes, method=d["method"],
                           size=fr["size"], sort=list(d["sort"]) or None, n_reserve=reserves,
                           take_all=True, rng=_seeds(cfg)[0])
        except SatsampleError as exc:
            raise DataError(f"frame: the draw failed: {exc}") from None
    draws = drawn.draws
    units = pd.DataFrame({
        "id": draws[fr["id"]].astype(str).to_numpy(),
        "agency": draws[fr["agency"]].astype(str).to_numpy(),
        "stratum": draws["stratum"].astype(str).to_numpy(),
        "reserve_rank": draws["reserve_rank"].to_numpy(dtype=np.int64),
        "selection_order": draws["selection_order"].to_numpy(dtype=np.int64),
        "pi_full": draws["_pi_full"].to_numpy(dtype=np.float64),
        "certainty": draws["_certainty"].to_numpy(dtype=bool),
    })
    rec = drawn.record
    design_doc = {
        "satsample": __version__, "survey": cfg["survey"]["name"], "year": cfg["survey"]["year"],
        "config_sha256": cfg.sha256,
        "frame": {"file": str(fr["file"]), "sha256": _sha256(Path(fr["file"])),
                  "rows": len(frame)},
        "seed": int(cfg["survey"]["seed"]),
        "selection": {"method": rec.method, "id": fr["id"], "stratum": strat,
                      "agency": fr["agency"],
                      "size": fr["size"], "sort": list(rec.sort),
                      "N": {str(k): int(v) for k, v in rec.N.items()},
                      "n": {str(k): int(v) for k, v in rec.n.items()},
                      "n_reserve": {str(k): int(v) for k, v in rec.n_reserve.items()},
                      "rng": rec.rng},
        "units": {c: units[c].tolist() for c in units.columns},
    }
    with pg.step("writing the field lists"), _staging(target, overwrite=force) as tmp:
        (tmp / _DESIGN_FILE).write_text(json.dumps(design_doc, ensure_ascii=False),
                                        encoding="utf-8")
        write_csv(alloc, tmp / "allocation.csv")
        if fr["strata"]:
            write_csv(strata_tab, tmp / "allocation_strata.csv")
        lists = _field_lists(cfg, frame, units)
        write_csv(pd.concat(lists.values(), ignore_index=True), tmp / "field_list.csv")
        if have_excel():
            write_excel({"README": _field_readme(cfg), **lists}, tmp / "field_lists.xlsx")
        else:  # pragma: no cover - openpyxl comes with the io and test extras
            for a, tab in lists.items():
                write_csv(tab, tmp / f"field_list_{a}.csv")
    return PlanResult(folder=target, allocation=alloc,
                      n_main=int((units["reserve_rank"] == 0).sum()),
                      n_reserve=int((units["reserve_rank"] > 0).sum()), notes=tuple(notes))


_TEXT = {
    "en": {"order": "order", "role": "role", "main": "main sample", "reserve": "reserve",
           "rank": "reserve_rank", "disposition": "disposition (fill in)",
           "note": "note (fill in)",
           "readme": [
               "Field lists: one sheet per agency.",
               "Interview the main sample first (role 'main sample').",
               "Use a reserve only when the office releases it, strictly in reserve_rank "
               "order: reserve 1, then 2, ...; never skip one.",
               "Record a disposition for every person contacted (main sample and released "
               "reserves), also when nobody answered.",
               "Text from the frame is shown exactly as text: a spreadsheet never runs it as "
               "a formula."]},
    "vi": {"order": "thu_tu", "role": "vai_tro", "main": "mẫu chính", "reserve": "mẫu dự phòng",
           "rank": "thu_tu_du_phong", "disposition": "kết quả tiếp xúc (điền)",
           "note": "ghi chú (điền)",
           "readme": [
               "Danh sách điều tra: mỗi cơ quan một trang tính.",
               "Phỏng vấn mẫu chính trước (vai_tro 'mẫu chính').",
               "Chỉ dùng mẫu dự phòng khi được cấp, đúng thứ tự thu_tu_du_phong: 1, rồi 2, ...; "
               "không bỏ qua số nào.",
               "Ghi kết quả tiếp xúc cho mọi người đã liên hệ (mẫu chính và mẫu dự phòng đã "
               "cấp), kể cả khi không trả lời.",
               "Dữ liệu từ danh sách được giữ nguyên dạng văn bản; bảng tính không bao giờ coi "
               "đó là công thức."]},
}


def _field_readme(cfg: SurveyConfig) -> pd.DataFrame:
    t = _TEXT[cfg["output"]["language"]]
    return pd.DataFrame({cfg["survey"]["name"]: t["readme"]})


def _field_lists(cfg: SurveyConfig, frame: pd.DataFrame, units: pd.DataFrame
                 ) -> dict[str, pd.DataFrame]:
    fr = cfg["frame"]
    t = _TEXT[cfg["output"]["language"]]
    cols = list(dict.fromkeys(c for c in (fr["agency_name"], fr["tier"], *fr["contact"])
                              if c and c not in (fr["id"], fr["agency"], fr["strata"])))
    info = frame.set_index(fr["id"])[cols] if cols else None
    out: dict[str, pd.DataFrame] = {}
    for a, g in units.sort_values(["agency", "stratum", "selection_order"]).groupby(
            "agency", sort=True):
        tab = pd.DataFrame({
            t["order"]: g["selection_order"].to_numpy(),
            t["role"]: np.where(g["reserve_rank"].to_numpy() == 0, t["main"], t["reserve"]),
            t["rank"]: g["reserve_rank"].to_numpy(),
            fr["id"]: g["id"].to_numpy(), fr["agency"]: a})
        if fr["strata"]:
            tab.insert(0, fr["strata"], g["stratum"].to_numpy())
        if info is not None:
            extra = info.loc[g["id"].to_numpy()].reset_index(drop=True)
            tab = pd.concat([tab.reset_index(drop=True), extra], axis=1)
        tab[t["disposition"]] = ""
        tab[t["note"]] = ""
        out[str(a)] = tab
    return out


# ============================================================================ read back
def _read_plan(cfg: SurveyConfig, frame: pd.DataFrame) -> dict[str, Any]:
    path = cfg.folder / "plan" / _DESIGN_FILE
    if not path.exists():
        raise DataError(f"no plan in {str(path.parent)!r}: run 'satsample plan "
                        f"{cfg.path}' first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        units = pd.DataFrame(doc["units"])
        sel = doc["selection"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"design file {str(path)!r} cannot be read: {exc}") from None
    fr = cfg["frame"]
    now = _sha256(Path(fr["file"]))
    if now != doc["frame"]["sha256"]:
        raise DataError(f"frame {str(fr['file'])!r} has changed since the plan was drawn "
                        f"(sha256 {now[:12]}... instead of {doc['frame']['sha256'][:12]}...); "
                        "the sample no longer matches it")
    strat = _stratum_column(cfg)
    if sel["id"] != fr["id"] or sel["stratum"] != strat:
        raise ConfigError(f"frame.id and the sampling strata ({fr['id']!r}, {strat!r}) differ "
                          f"from those of the plan ({sel['id']!r}, {sel['stratum']!r})")
    units["id"] = units["id"].astype(str)
    units["agency"] = units["agency"].astype(str)
    units["stratum"] = (units["stratum"] if "stratum" in units.columns
                        else units["agency"]).astype(str)
    missing = ~units["id"].isin(frame[fr["id"]])
    if missing.any():
        raise DataError(f"design file {str(path)!r}: id {units['id'][missing].iloc[0]!r} is not "
                        "in the frame")
    doc["units_frame"] = units
    return doc


def _selected_sample(cfg: SurveyConfig, frame: pd.DataFrame, doc: Mapping[str, Any]) -> Any:
    """Rebuild the drawn sample of the plan (a SelectedSample with nothing released)."""
    from ..selection import SelectedSample, SelectionRecord

    fr = cfg["frame"]
    sel = doc["selection"]
    units = doc["units_frame"]
    rows = frame.drop(columns=["_file", "_row"]).set_index(fr["id"], drop=False)
    draws = rows.loc[units["id"].to_numpy()].reset_index(drop=True)
    draws["stratum"] = units["stratum"].to_numpy()
    draws["fpc"] = units["stratum"].map(lambda a: float(sel["N"][a])).to_numpy()
    draws["reserve_rank"] = units["reserve_rank"].to_numpy(dtype=np.int64)
    draws["selection_order"] = units["selection_order"].to_numpy(dtype=np.int64)
    draws["_pi_full"] = units["pi_full"].to_numpy(dtype=np.float64)
    draws["_certainty"] = units["certainty"].to_numpy(dtype=bool)
    record = SelectionRecord(method=sel["method"], id=fr["id"], stratum=sel["stratum"],
                             size=sel["size"], sort=tuple(sel["sort"]),
                             N=dict(sel["N"]), n=dict(sel["n"]),
                             n_reserve=dict(sel["n_reserve"]), released={},
                             rng=str(sel.get("rng", "")))
    return SelectedSample(sample=draws.iloc[:0], reserves=draws.iloc[:0], record=record,
                          draws=draws)


def _read_releases(cfg: SurveyConfig, strata: set[str]) -> dict[str, int] | None:
    path = cfg["field"]["releases"]
    if path is None:
        return None
    df, _ = read_table(path, what="releases file")
    name = Path(path).name
    key = "stratum" if cfg["frame"]["strata"] else "agency"
    require_columns(df, {key: key, "released": "released"}, what="releases file", file=name)
    out: dict[str, int] = {}
    for a, v, r in zip(normalise_ids(df[key]), df["released"], df["_row"], strict=True):
        if a not in strata:
            raise DataError(f"releases file {name!r}, column {key!r}: {key} {a!r} is not in "
                            f"the plan (row {int(r)})")
        try:
            k = float(v)
        except (TypeError, ValueError):
            k = float("nan")
        if not np.isfinite(k) or k < 0 or not k.is_integer():
            raise DataError(f"releases file {name!r}, column 'released': value {v!r} is not a "
                            f"count >= 0 (row {int(r)})")
        out[a] = int(k)
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class _Returns:
    forms: pd.DataFrame
    unreadable: pd.DataFrame
    raw: pd.DataFrame


def _read_responses(cfg: SurveyConfig, q: Questionnaire) -> _Returns:
    fld = cfg["field"]
    qc = cfg["questionnaire"]
    mapping = label_mapping(q, qc["value_labels"], qc["blank_labels"])
    id_col = fld["id"] or cfg["frame"]["id"]
    col_of = {item: str(fld["columns"].get(item, item)) for item in q.items}
    unknown = sorted(set(fld["columns"]) - set(q.items))
    if unknown:
        raise ConfigError(f"key field.columns.{unknown[0]}: {unknown[0]!r} is not an item of "
                          f"questionnaire {q.name!r}; items: {', '.join(q.items)}")
    parts, unread, raws = [], [], []
    for entry in fld["responses"]:
        df, _ = read_table(entry["file"], sheet=entry["sheet"], what="response file")
        name = Path(entry["file"]).name
        roles: dict[str, str | None] = {"field.id": id_col,
                                        "field.disposition": fld["disposition"],
                                        "field.agency": fld["agency"]}
        roles.update({f"item {item}": col for item, col in col_of.items()})
        require_columns(df, roles, what="response file", file=name)
        part = pd.DataFrame({"_file": df["_file"], "_row": df["_row"],
                             "id": normalise_ids(df[id_col])})
        if fld["agency"]:
            part["agency_reported"] = normalise_ids(df[fld["agency"]])
        if fld["disposition"]:
            part["disposition_raw"] = df[fld["disposition"]].astype(object).where(
                df[fld["disposition"]].notna(), None)
        part["mode"] = entry["mode"]
        un = pd.DataFrame(index=df.index)
        rw = pd.DataFrame(index=df.index)
        for item, col in col_of.items():
            codes, bad = answers_to_codes(df[col], mapping)
            part[item] = codes
            un[item] = bad
            rw[item] = df[col].astype(object)
        parts.append(part)
        unread.append(un)
        raws.append(rw)
    return _Returns(forms=pd.concat(parts, ignore_index=True),
                    unreadable=pd.concat(unread, ignore_index=True),
                    raw=pd.concat(raws, ignore_index=True))


def _check(cfg: SurveyConfig, q: Questionnaire, frame: pd.DataFrame, doc: Mapping[str, Any],
           returns: _Returns) -> QualityResult:
    units = doc["units_frame"]
    agencies = sorted(set(frame[cfg["frame"]["agency"]]))
    released = _read_releases(cfg, set(units["stratum"]))
    disp, ch, fld = cfg["dispositions"], cfg["checks"], cfg["field"]
    from .dispositions import classify_dispositions

    classify_dispositions([], disp["codes"])  # validates the office codes
    return check_returns(
        returns.forms, unreadable=returns.unreadable, raw=returns.raw, units=units,
        agencies=agencies, released_record=released, questionnaire=q,
        disposition_codes=disp["codes"], not_returned=disp["not_returned"],
        respondents=disp["respondents"], complete_min=disp["complete_min"],
        partial_min=disp["partial_min"], straight_min_items=ch["straightlining_min_items"],
        straight_max_share=ch["straightlining_max_share"],
        has_disposition=bool(fld["disposition"]), has_agency=bool(fld["agency"]),
        disposition_column=fld["disposition"], agency_column=fld["agency"])


def _rates(cfg: SurveyConfig, cases: pd.DataFrame, frame: pd.DataFrame,
           weights: np.ndarray | None = None) -> pd.DataFrame:
    fr = cfg["frame"]
    tab = cases.copy()
    by: list[Any] = ["agency"]
    if fr["tier"]:
        tier = frame.set_index(fr["id"])[fr["tier"]]
        tab["tier"] = tier.loc[tab["id"].to_numpy()].astype(str).to_numpy()
        by.append("tier")
    parts = [outcome_rates(tab, by=by, e=cfg["dispositions"]["e"])]
    if weights is not None:
        tab["_w"] = weights
        parts.append(outcome_rates(tab, by=by, weights="_w", e=cfg["dispositions"]["e"]))
    return pd.concat(parts, ignore_index=True)


# ============================================================================ validate
@dataclass(frozen=True, kw_only=True, eq=False)
class ValidationResult:
    """What :func:`validate` found and wrote."""

    folder: Path
    quality: QualityResult
    rates: pd.DataFrame

    @property
    def failed(self) -> bool:
        """True when any check failed (an error or a warning)."""
        return bool(self.quality.findings)


def _read_and_check(cfg: SurveyConfig, q: Any, pg: Any) -> tuple[Any, Any, Any]:
    """The first two steps of ``validate`` and ``run``: read the frame, plan and forms; check them."""
    with pg.step("reading the frame, the plan and the response files"):
        frame = _read_frame(cfg)
        doc = _read_plan(cfg, frame)
        returns = _read_responses(cfg, q)
    with pg.step("checking the returned data"):
        qr = _check(cfg, q, frame, doc, returns)
    return frame, doc, qr


def validate(config: str | Path | SurveyConfig, *, progress: Progress | None = None
             ) -> ValidationResult:
    """Check the returned data and write the data-quality report (HTML and tables).

    Parameters
    ----------
    config : str, Path or SurveyConfig
    progress : Progress, optional

    Returns
    -------
    ValidationResult
        ``failed`` tells whether any check failed (``satsample validate --strict`` then
        exits with status 1).
    """
    cfg = config if isinstance(config, SurveyConfig) else load_config(config)
    pg = progress or Progress(enabled=False)
    q = _questionnaire(cfg)
    frame, _, qr = _read_and_check(cfg, q, pg)
    rates = _rates(cfg, qr.cases, frame)
    target = cfg.folder / "validation"
    with pg.step("writing the data-quality report"), _staging(target, overwrite=True) as tmp:
        write_csv(qr.table(), tmp / "quality_findings.csv")
        write_csv(qr.by_agency, tmp / "quality_by_agency.csv")
        write_csv(rates, tmp / "response_rates.csv")
        (tmp / "quality_report.html").write_text(_quality_html(cfg, qr, rates),
                                                 encoding="utf-8")
    return ValidationResult(folder=target, quality=qr, rates=rates)


_QTEXT = {
    "en": {"title": "Data-quality report", "summary": "Summary", "findings": "Problems found",
           "agencies": "By agency", "rates": "Response rates (AAPOR, cases)",
           "none": "No problem found.", "errors": "errors", "warnings": "warnings"},
    "vi": {"title": "Báo cáo chất lượng dữ liệu", "summary": "Tóm tắt",
           "findings": "Các vấn đề phát hiện", "agencies": "Theo cơ quan",
           "rates": "Tỷ lệ phản hồi (AAPOR, số phiếu)", "none": "Không phát hiện vấn đề nào.",
           "errors": "lỗi", "warnings": "cảnh báo"},
}


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                txt = "" if np.isnan(v) else f"{v:.3f}"
            else:
                txt = "" if v is None else str(v)
            cells.append(f"<td>{html.escape(txt)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _quality_html(cfg: SurveyConfig, qr: QualityResult, rates: pd.DataFrame) -> str:
    t = _QTEXT[cfg["output"]["language"]]
    title = f"{t['title']}: {cfg['survey']['name']}"
    parts = [f"<h1>{html.escape(title)}</h1>", f"<h2>{t['summary']}</h2>",
             f"<p>{len(qr.errors)} {t['errors']}, {len(qr.warnings)} {t['warnings']}; "
             f"satsample {html.escape(__version__)}</p>"]
    parts.append(f"<h2>{t['findings']}</h2>")
    tab = qr.table()
    parts.append(_html_table(tab.drop(columns=["rows", "ids"])) if len(tab) else
                 f"<p>{t['none']}</p>")
    parts.append(f"<h2>{t['agencies']}</h2>")
    parts.append(_html_table(qr.by_agency))
    parts.append(f"<h2>{t['rates']}</h2>")
    cols = ["grouping", "group", "sampled", "I", "P", "R", "NC", "O", "UH", "UO", "NE", "e",
            "RR1", "RR3", "RR5", "COOP1", "REF1", "CON1"]
    parts.append(_html_table(rates[rates["basis"] == "cases"][cols]))
    style = ("body{font-family:sans-serif;max-width:75em;margin:2em auto}table{border-collapse:"
             "collapse;font-size:.8em}td,th{border:1px solid #ccc;padding:2px 6px}")
    lang = cfg["output"]["language"]
    return (f"<!DOCTYPE html><html lang='{lang}'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{style}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


# ============================================================================ run
@dataclass(frozen=True, kw_only=True, eq=False)
class RunResult:
    """What :func:`run` estimated and wrote.

    Attributes
    ----------
    folder : pathlib.Path
        ``results/``.
    design : SurveyDesign
        The final weighted design.
    estimates : dict
        Domain-set name (``"all"`` or the columns joined by ``"_"``) -> IndexEstimate.
    league : LeagueTable or None
    rates : pandas.DataFrame
    quality : QualityResult
    small_area : SmallAreaStep or None
        The small-area step (``[small_area]`` enabled): the Fay-Herriot fit and the
        agencies published with a model-based estimate; None otherwise.
    """

    folder: Path
    design: Any
    estimates: Mapping[str, Any]
    league: Any
    rates: pd.DataFrame
    quality: QualityResult
    small_area: Any = None


def _margin_tables(cfg: SurveyConfig, step: Mapping[str, Any], frame: pd.DataFrame,
                   variables: tuple[str, ...]) -> pd.DataFrame:
    """Tidy table variable, level, Freq from a file or from the frame's counts."""
    if step["file"] is not None:
        df, _ = read_table(step["file"], what="margins file")
        require_columns(df, {"variable": "variable", "level": "level", "Freq": "Freq"},
                        what="margins file", file=Path(step["file"]).name)
        tab = pd.DataFrame({"variable": df["variable"].astype(str),
                            "level": df["level"].astype(str),
                            "Freq": pd.to_numeric(df["Freq"], errors="coerce")})
        bad = tab["Freq"].isna() | (tab["Freq"] < 0)
        if bad.any():
            r = df.loc[bad.to_numpy(), "_row"]
            raise DataError(f"margins file {Path(step['file']).name!r}, column 'Freq': value "
                            f"{df.loc[bad.to_numpy(), 'Freq'].iloc[0]!r} is not a count "
                            f"({rows_text(r)})")
        missing = [v for v in variables if v not in set(tab["variable"])]
        if missing:
            raise DataError(f"margins file {Path(step['file']).name!r}: no rows for "
                            f"variable(s) {missing}")
        return tab[tab["variable"].isin(variables)].reset_index(drop=True)
    rows = []
    for v in variables:
        if v not in frame.columns:
            raise ConfigError(f"weighting step {step['type']!r}: variable {v!r} is not a column "
                              "of the frame (list it under frame.auxiliary)")
        vc = frame[v].astype(str).value_counts().sort_index()
        rows += [{"variable": v, "level": lv, "Freq": float(c)} for lv, c in vc.items()]
    return pd.DataFrame(rows)


def _cells(cfg: SurveyConfig, step: Mapping[str, Any], frame: pd.DataFrame,
           variables: tuple[str, ...], total: float) -> pd.DataFrame:
    """Post-stratification cells (the variables and ``Freq``) from a file or the frame."""
    cols = list(variables)
    if step["file"] is not None:
        df, _ = read_table(step["file"], what="cells file")
        name = Path(step["file"]).name
        require_columns(df, {**{f"variable {v}": v for v in cols}, "counts": "Freq"},
                        what="cells file", file=name)
        pop = pd.DataFrame({v: normalise_ids(df[v]) for v in cols})
        pop["Freq"] = pd.to_numeric(df["Freq"], errors="coerce")
        bad = pop["Freq"].isna().to_numpy() | (pop["Freq"] < 0).to_numpy()
        if bad.any():
            raise DataError(f"cells file {name!r}, column 'Freq': value "
                            f"{df.loc[bad, 'Freq'].iloc[0]!r} is not a count "
                            f"({rows_text(df.loc[bad, '_row'])})")
    else:
        missing = [v for v in cols if v not in frame.columns]
        if missing:
            raise ConfigError(f"weighting step 'poststratify': variable {missing[0]!r} is not a "
                              "column of the frame (list it under frame.auxiliary)")
        pop = frame.groupby(cols, observed=True).size().rename("Freq").reset_index()
        for v in cols:
            pop[v] = pop[v].astype(str)
    if step["rescale"]:
        pop["Freq"] = pop["Freq"] * total / float(pop["Freq"].sum())
    return pop


def _weighting(cfg: SurveyConfig, design: Any, frame: pd.DataFrame) -> Any:
    from ..weighting import adjust_nonresponse, calibrate, poststratify, rake, trim

    agency = cfg["frame"]["agency"]
    elig = cfg["weighting"]["eligibility_classes"] or (agency,)
    design = adjust_nonresponse(design, "eligibility_known", classes=list(elig))
    # the same algebra as a class nonresponse adjustment, recorded under its own name (the
    # history's method names are labels: summary, run.json, the report's weighting table)
    design = dataclasses.replace(design, history=(
        *design.history[:-1], dataclasses.replace(design.history[-1], method="eligibility")))
    n_frame = float(len(frame))
    for st in cfg["weighting"]["steps"]:
        kind = st["type"]
        if kind == "nonresponse":
            cls = list(st["classes"] or (agency,))
            design = adjust_nonresponse(design, "respondent", classes=cls, method=st["method"],
                                        covariates=list(st["covariates"]) or None,
                                        n_classes=st["n_classes"])
            continue
        if kind == "trim":
            design = trim(design, lower=st["lower"], upper=st["upper"],
                          relative=st["relative"], strict=st["strict"])
            continue
        variables = tuple(st["margins"] if kind == "rake" else st["variables"])
        if kind == "poststratify":
            design = poststratify(design, list(variables),
                                  _cells(cfg, st, frame, variables, float(np.sum(design.weights))))
            continue
        tab = _margin_tables(cfg, st, frame, variables)
        if st["rescale"]:
            totals = tab.groupby("variable", sort=False)["Freq"].sum()
            base = n_frame if st["file"] is None else float(totals.iloc[0])
            tab = tab.assign(Freq=tab["Freq"] * float(np.sum(design.weights)) / base)
        if kind == "rake":
            margins = [(v, tab[tab["variable"] == v][["level", "Freq"]].rename(
                columns={"level": v})) for v in variables]
            design = rake(design, margins, max_iter=st["max_iter"], epsilon=st["epsilon"])
        else:
            design = calibrate(design, tab, variables=list(variables), distance=st["distance"],
                               bounds=None if st["bounds"] is None else tuple(st["bounds"]),
                               max_iter=st["max_iter"])
    return design


def _design_data(cfg: SurveyConfig, q: Questionnaire, frame: pd.DataFrame,
                 doc: Mapping[str, Any], qr: QualityResult) -> pd.DataFrame:
    """One row per case in the sample: frame columns, design weight, disposition, answers."""
    from ..selection import release_reserves

    fr = cfg["frame"]
    selected = release_reserves(_selected_sample(cfg, frame, doc),
                                {a: int(k) for a, k in qr.released.items() if k > 0})
    smp = selected.sample.copy()
    smp["id"] = smp[fr["id"]].astype(str)
    cases = qr.cases.set_index("id")
    if set(smp["id"]) != set(cases.index):  # pragma: no cover - both come from the plan
        raise DataError("the sample rebuilt from the plan differs from the cases checked")
    smp["disposition_class"] = cases.loc[smp["id"].to_numpy(), "disposition_class"].to_numpy()
    resp = smp["disposition_class"].isin(list(cfg["dispositions"]["respondents"])).to_numpy()
    smp["respondent"] = resp
    smp["eligibility_known"] = ~smp["disposition_class"].isin(UNKNOWN).to_numpy()
    forms = qr.forms.set_index("id")
    items = list(q.items)
    ans = np.full((len(smp), len(items)), np.nan)
    have = smp["id"].isin(forms.index).to_numpy() & resp
    if have.any():
        ans[have] = forms.loc[smp.loc[have, "id"].to_numpy(), items].to_numpy(dtype=np.float64)
    for k, item in enumerate(items):
        smp[item] = ans[:, k]
    # eligibility factor: 0 not eligible, e unknown, 1 known eligible
    e = cfg["dispositions"]["e"]
    cls = smp["disposition_class"].to_numpy()
    d = smp["design_weight"].to_numpy(dtype=np.float64)
    fac = np.where(np.isin(cls, ELIGIBLE), 1.0, 0.0)
    unknown = np.isin(cls, UNKNOWN)
    if e == "proportional":
        classes = list(cfg["weighting"]["eligibility_classes"] or (fr["agency"],))
        key = smp[classes].astype(str).agg("\x1f".join, axis=1)
        for _, idx in smp.groupby(key, sort=False).indices.items():
            c = cls[idx]
            el = d[idx][np.isin(c, ELIGIBLE)].sum()
            known = el + d[idx][c == "NE"].sum()
            fac[idx[unknown[idx]]] = 1.0 if known <= 0 else el / known
    else:
        fac[unknown] = float(e)
    smp["eligibility_factor"] = fac
    smp["eligibility_weight"] = d * fac
    # not-eligible cases (and unknowns when e = 0) leave the population: they are not part
    # of the design; weights.csv lists them with a final weight of 0
    smp["in_design"] = fac > 0
    return smp


def _estimate(cfg: SurveyConfig, q: Questionnaire, data: pd.DataFrame, frame: pd.DataFrame,
              pg: Progress) -> tuple[Any, dict[str, Any], Any, Any]:
    from ..design import survey_design
    from ..index import satisfaction_index
    from ..outputs.flags import _unranked_model_rows
    from ..outputs.ranking import league_table
    from ..replicate import bootstrap, jackknife

    agency = cfg["frame"]["agency"]
    var = cfg["variance"]
    rank_by = cfg["estimation"]["rank_by"] or agency
    if (rank_by,) not in cfg.domains:
        raise ConfigError(f"key estimation.rank_by = {rank_by!r} is not one of the domain sets "
                          f"of estimation.domains ({[list(b) for b in cfg.domains]})")
    data = data[data["in_design"].to_numpy()].reset_index(drop=True)
    if not len(data):
        raise DataError("no case of known or possible eligibility is left in the sample")
    strat = _stratum_column(cfg)
    counts = data.groupby(strat).size()
    lonely = counts[counts < 2]
    census = all(int(frame[strat].eq(a).sum()) == int(n) for a, n in lonely.items())
    with pg.step("declaring the design and weighting"):
        design = survey_design(data, strata=strat, weights="eligibility_weight", fpc="fpc",
                               lonely_psu="certainty" if len(lonely) and census else "fail")
        if var["method"] == "bootstrap":
            design = bootstrap(design, n_replicates=var["replicates"], rng=_seeds(cfg)[1],
                               materialize=False)
        elif var["method"] == "jackknife":
            design = jackknife(design, materialize=False)
        design = _weighting(cfg, design, frame)
    sets: list[tuple[str, tuple[str, ...] | None]] = [("all", None)]
    sets += [("_".join(dom), dom) for dom in cfg.domains]
    estimates: dict[str, Any] = {}
    n_rep = design.replicates.n_replicates if design.replicates is not None else 0
    replayed = _with_progress(design, pg)
    for k, (name, by) in enumerate(sets):
        label = f"estimating the index ({k + 1}/{len(sets)}: {name})"
        with pg.step(label, total=n_rep):
            estimates[name] = satisfaction_index(
                replayed, q, by=None if by is None else list(by),
                measure=cfg["estimation"]["measure"], level=var["level"],
                variance="taylor" if var["method"] == "taylor" else "replicate",
                ci_method=var["ci_method"])
    # publication is a property of every estimate: each output (CSV, league table, report,
    # figures) reads the same status and leaves suppressed values out
    estimates = {name: _flag(cfg, e) for name, e in estimates.items()}
    sa_step = None
    if cfg["small_area"]["enabled"]:
        from .small_area import apply_small_area

        agency = cfg["frame"]["agency"]
        if agency not in estimates:
            raise ConfigError(f"small_area needs the index by agency: add [{agency!r}] to "
                              f"estimation.domains ({[list(b) for b in cfg.domains]})")
        with pg.step("small-area estimates (Fay-Herriot)"):
            estimates[agency], sa_step = apply_small_area(cfg, estimates[agency], frame,
                                                          _seeds(cfg)[2])
    est = estimates[next(n for n, by in sets if by == (rank_by,))]
    rk = cfg["ranking"]
    with pg.step("league table"):
        # a model-based estimate is shown, labelled, but not ranked (see flags)
        league = league_table(_unranked_model_rows(est), top_k=rk["top_k"],
                              bottom_k=rk["bottom_k"], adjust=rk["adjust"],
                              rank_intervals=est.replicate_estimates is not None)
    return design, estimates, league, sa_step


def _flag_options(cfg: SurveyConfig) -> dict[str, Any]:
    fl = cfg["flags"]
    return {"min_n": fl["min_n"], "max_rse": fl["max_rse"],
            "min_effective_n": fl["min_effective_n"], "min_df": fl["min_df"],
            "level": cfg["variance"]["level"]}


def _flag(cfg: SurveyConfig, est: Any) -> Any:
    from ..outputs.flags import flag_estimate

    return flag_estimate(est, **_flag_options(cfg))


_VALUES = ("estimate", "se", "ci_low", "ci_high")


def index_table(cfg: SurveyConfig, est: Any) -> pd.DataFrame:
    """One long table of an IndexEstimate: overall, element and item rows with flags, scaled.

    The estimate is flagged (:func:`satsample.outputs.flags.flag_estimate` with the ``[flags]``
    options) unless it already is; a suppressed row keeps its domain, ``n``, ``status``
    and ``reason`` but has no estimate, SE or interval.
    """
    from ..outputs.flags import flag_estimate

    scale = float(cfg["output"]["scale"])
    if "status" not in est.overall.columns:
        est = flag_estimate(est, **_flag_options(cfg))
    parts = []
    for level, tab in (("overall", est.overall), ("element", est.elements), ("item", est.items)):
        t = tab.copy()
        t.insert(0, "level", level)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True)
    front = ["level", *[c for c in est.by or ()], "element", "item"]
    for c in ("element", "item"):
        if c not in out.columns:
            out[c] = None
    out = out[[*front, *[c for c in out.columns if c not in front]]]
    hidden = (out["status"] == "suppress").to_numpy()
    for c in out.columns:
        if c in _VALUES or c in ("rse", "ci_width", "df", "effective_n", "deff"):
            vals = out[c].to_numpy(dtype=float) * (scale if c in _VALUES else 1.0)
            out[c] = np.where(hidden, np.nan, vals)
    return out


def _names_tiers(cfg: SurveyConfig, frame: pd.DataFrame
                 ) -> tuple[pd.Series | None, pd.Series | None]:
    fr = cfg["frame"]
    first = frame.drop_duplicates(fr["agency"]).set_index(
        frame.drop_duplicates(fr["agency"])[fr["agency"]].astype(str))
    names = first[fr["agency_name"]].astype(str) if fr["agency_name"] else None
    tier = first[fr["tier"]].astype(str) if fr["tier"] else None
    return names, tier


def _respondents_rate_table(cfg: SurveyConfig, rates: pd.DataFrame,
                            names: pd.Series | None, tier: pd.Series | None) -> pd.DataFrame:
    """Per agency: the AAPOR response rate that matches the configured respondents.

    RR4 (completes and partials over the eligible and ``e`` times the unknowns) when
    partials count as respondents, RR3 when only completes do; by cases (unweighted).
    """
    col = "RR4" if "P" in cfg["dispositions"]["respondents"] else "RR3"
    sub = rates[(rates["grouping"] == "agency") & (rates["basis"] == "cases")]
    out = pd.DataFrame({"agency": sub["group"].astype(str).to_numpy(),
                        "rate": pd.to_numeric(sub[col]).to_numpy(dtype=float)})
    out["rate"] = out["rate"].fillna(0.0).clip(0.0, 1.0)
    if tier is not None:
        out["tier"] = out["agency"].map(tier).fillna("").to_numpy()
    if names is not None:
        out["name"] = out["agency"].map(names).fillna(out["agency"]).to_numpy()
    return out


def _plan_allocation(cfg: SurveyConfig, frame: pd.DataFrame, doc: Mapping[str, Any]) -> Any:
    """The plan's Allocation when it can be rebuilt exactly (the sizes drawn), else None."""
    try:
        _, alloc, _ = _allocation(cfg, frame)
    except SatsampleError:
        return None
    if alloc is None:
        return None
    drawn: dict[str, int] = {}
    units = doc.get("units", {})
    for a, r in zip(units.get("agency", []), units.get("reserve_rank", []), strict=False):
        if r == 0:
            drawn[str(a)] = drawn.get(str(a), 0) + 1
    mine = dict(zip(alloc.strata.astype(str), (int(v) for v in alloc.n_h), strict=True))
    return alloc if mine == drawn else None


def _write_results(cfg: SurveyConfig, tmp: Path, *, design: Any, estimates: Mapping[str, Any],
                   league: Any, rates: pd.DataFrame, qr: QualityResult, data: pd.DataFrame,
                   frame: pd.DataFrame | None = None, allocation: Any = None,
                   small_area: Any = None) -> None:
    """The output step: every file of ``results/`` (the one place that calls the report).

    No suppressed value is written: the index CSVs leave it empty, the league table and
    the figures leave the agency out (listed with its reason), and the report
    (:func:`satsample.outputs.report.build_report`) honours the same flags.  With the small-area
    step, a model-based agency's overall row carries the model-based value, status and
    ``source`` ``"model-based"`` and the ``model`` statement in the index CSV; the league
    table lists it, unranked, with that value and label; the figure marks it (legend
    "model-based estimate") and the report states the model in its methods section.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..outputs.plotting import plot_agency_index, plot_response_rates
    from ..outputs.report import build_report

    fr = cfg["frame"]
    scale = float(cfg["output"]["scale"])
    language = cfg["output"]["language"]
    for name, est in estimates.items():
        write_csv(index_table(cfg, est), tmp / f"index_{name}.csv")
    lt = league.to_frame()
    for c in ("estimate", "se", "reference", "diff", "diff_se"):
        if c in lt.columns:
            lt[c] = lt[c] * scale
    sup = getattr(league, "suppressed", None)
    if sup is not None and len(sup):
        # suppressed domains are listed (no rank, no value) so the reader sees they exist
        lt = pd.concat([lt, sup.assign(status="suppress")], ignore_index=True)
        for c in ("rank", "rank_low", "rank_high"):
            if c in lt.columns:
                lt[c] = lt[c].round().astype("Int64")
    if small_area is not None and (cfg["estimation"]["rank_by"] or fr["agency"]) == fr["agency"]:
        lt = _league_model_rows(lt, estimates[fr["agency"]], fr["agency"], scale)
    write_csv(lt, tmp / "league_table.csv")
    write_csv(rates, tmp / "response_rates.csv")
    write_csv(qr.table(), tmp / "quality_findings.csv")
    final = pd.Series(np.asarray(design.weights), index=design.data["id"].to_numpy())
    weights = pd.DataFrame({fr["id"]: data["id"], fr["agency"]: data[fr["agency"]],
                            "reserve_rank": data["reserve_rank"],
                            "disposition_class": data["disposition_class"],
                            "design_weight": data["design_weight"],
                            "eligibility_factor": data["eligibility_factor"],
                            "final_weight": data["id"].map(final).fillna(0.0).to_numpy()})
    write_csv(weights, tmp / "weights.csv")
    (tmp / "survey.toml").write_text(cfg.text, encoding="utf-8")
    names, tier = _names_tiers(cfg, frame) if frame is not None else (None, None)
    rank_by = cfg["estimation"]["rank_by"] or fr["agency"]
    est = estimates.get(rank_by, estimates[next(iter(k for k in estimates if k != "all"),
                                                "all")])
    national = estimates.get("all")
    rr_table = _respondents_rate_table(cfg, rates, names, tier)
    if est.by:
        fig = plot_agency_index(est, names=names, tier=tier, reference=national, scale=scale,
                                language=language, title=str(cfg["survey"]["name"]))
        fig.savefig(tmp / "agency_index.png", dpi=150)
        plt.close(fig)
    ax = plot_response_rates(rr_table, language=language)
    ax.figure.savefig(tmp / "response_rates.png", dpi=150)
    plt.close(ax.figure)
    build_report(est, national=national, league=league, design=design, allocation=allocation,
                 response_rates=rr_table, flags=_flag_options(cfg), names=names, tier=tier,
                 language=language, scale=scale, title=str(cfg["survey"]["name"]),
                 html_path=tmp / "report.html",
                 excel_path=tmp / "report.xlsx" if have_excel() else None,
                 small_area=None if small_area is None or est is not estimates.get(
                     fr["agency"]) else small_area.fit)
    manifest = {
        "satsample": __version__, "survey": cfg["survey"]["name"], "year": cfg["survey"]["year"],
        "config_sha256": cfg.sha256, "seed": int(cfg["survey"]["seed"]),
        "variance": dict(cfg["variance"]),
        "weighting": [s.method for s in design.history],
        "cases": len(data), "respondents": int(data["respondent"].sum()),
        "problems": {"errors": len(qr.errors), "warnings": len(qr.warnings)},
        "small_area": None if small_area is None else small_area.record(),
        "files": [*sorted(p.name for p in tmp.iterdir()), "run.json"],
    }
    (tmp / "run.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2,
                                             default=str), encoding="utf-8")


def _league_model_rows(lt: pd.DataFrame, est: Any, agency: str, scale: float) -> pd.DataFrame:
    """League rows of the model-based agencies: listed unranked, with their labelled value."""
    ov = est.overall
    if "source" not in ov.columns:
        return lt
    model = ov[(ov["source"] == "model-based").to_numpy()]
    if model.empty:
        return lt
    lt = lt.copy()
    for c in ("source", "model"):
        if c not in lt.columns:
            lt[c] = "" if c == "model" else "direct"
        lt[c] = lt[c].astype(object)
    lt["status"] = lt["status"].astype(object)
    lt["reason"] = lt["reason"].astype(object)
    key = lt["domain"].astype(str)
    for _, r in model.iterrows():
        at = (key == str(r[agency])).to_numpy()
        row = {"domain": r[agency], "estimate": scale * float(r["estimate"]),
               "se": scale * float(r["se"]), "n": r["n"], "status": "model-based",
               "reason": "; ".join(filter(None, [str(r.get("reason") or ""),
                                                 "model-based estimate: not ranked"])),
               "source": "model-based", "model": r.get("model", "")}
        if at.any():
            for c, v in row.items():
                lt.loc[at, c] = v
            for c in ("rank", "rank_low", "rank_high", "p_top", "p_bottom", "reference",
                      "diff", "diff_se", "df", "p_value", "p_adjusted", "significant"):
                if c in lt.columns:
                    lt.loc[at, c] = pd.NA if c != "significant" else ""
        else:
            lt = pd.concat([lt, pd.DataFrame([row])], ignore_index=True)
    return lt


def run(config: str | Path | SurveyConfig, *, progress: Progress | None = None) -> RunResult:
    """Weight and estimate a survey year from its files and write ``results/``.

    Parameters
    ----------
    config : str, Path or SurveyConfig
    progress : Progress, optional

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, DataError, OutputError, SatsampleError
        ``DataError`` also when a data-quality check fails and ``checks.on_error`` is
        ``"stop"``: the message names the first problem (file, column, value, rows).

    Notes
    -----
    Weights.  With :math:`d_i` the design weight of case :math:`i` (main sample and released
    reserves, :func:`satsample.release_reserves`), the declared weight is
    :math:`d_i a_i` with :math:`a_i = 1` for known eligible cases (I, P, R, NC, O),
    :math:`a_i = 0` for not-eligible cases (NE: they leave the population) and
    :math:`a_i = e` for unknown eligibility (UH, UO), :math:`e` the configured number or,
    by default, :math:`\\hat e_c = \\sum_{E_c} d / \\sum_{E_c \\cup NE_c} d` in each
    eligibility class.  Then, replayed on every replicate, the unknowns' weight goes to the
    known eligible cases of their class (:func:`satsample.adjust_nonresponse` with the
    indicator "eligibility known"), so that the eligible cases carry
    :math:`\\sum_{E_c} d + e \\sum_{U_c} d`; then the configured steps (nonresponse among
    the eligible, raking, calibration, trimming).
    """
    cfg = config if isinstance(config, SurveyConfig) else load_config(config)
    pg = progress or Progress(enabled=False)
    q = _questionnaire(cfg)
    frame, doc, qr = _read_and_check(cfg, q, pg)
    if qr.errors and cfg["checks"]["on_error"] == "stop":
        first = qr.errors[0]
        more = f" ({len(qr.errors) - 1} more problem(s))" if len(qr.errors) > 1 else ""
        raise DataError(f"{first.message}{more}; run 'satsample validate {cfg.path}' for the "
                        "full report, fix the files or set checks.on_error = \"resolve\"")
    data = _design_data(cfg, q, frame, doc, qr)
    try:
        design, estimates, league, sa_step = _estimate(cfg, q, data, frame, pg)
    except (ConfigError, DataError):
        raise
    rates = _rates(cfg, qr.cases, frame, weights=data.set_index("id").loc[
        qr.cases["id"].to_numpy(), "design_weight"].to_numpy())
    target = cfg.folder / "results"
    with pg.step("writing the results"), _staging(target, overwrite=True) as tmp:
        _write_results(cfg, tmp, design=design, estimates=estimates, league=league,
                       rates=rates, qr=qr, data=data, frame=frame,
                       allocation=_plan_allocation(cfg, frame, doc), small_area=sa_step)
    return RunResult(folder=target, design=design, estimates=estimates, league=league,
                     rates=rates, quality=qr, small_area=sa_step)
