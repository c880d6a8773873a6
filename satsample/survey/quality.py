"""The data-quality checks of ``satsample validate`` (and the first step of ``run``).

:func:`check_returns` looks at every returned form against the plan and the questionnaire
and returns the problems found (:class:`Finding`), the forms as ``run`` would use them
(each problem resolved by a documented rule) and one disposition class per sampled case.

Checks (severity; what ``run`` does with ``checks.on_error = "resolve"``):

* ``unknown_label`` / ``out_of_range`` (error): an answer that is not a label or code of the
  questionnaire; the cell is made blank.
* ``missing_id`` (error): a form without an id; the form is left out.
* ``duplicated_id`` (error): the same id on several forms; the first form (files in the
  order of the configuration, rows in file order) is kept.
* ``outside_sample`` (error): an id that was never sampled (nor on a reserve list); the
  form is left out.
* ``unknown_agency`` / ``agency_mismatch`` (error): the form's agency is not in the frame,
  or differs from the agency the id was sampled in; the sample's agency is used.
* ``reserve_not_released`` (error): a reserve used beyond those released (when a release
  record is configured); the reserves up to the highest one used count as released.
* ``unknown_disposition`` (error): a disposition code that is neither an office code of
  the configuration nor an AAPOR class or code; the class is derived from the answers.
* ``disposition_contradiction`` (error): a class that contradicts the answers (a refusal,
  non-contact or ineligible with answers, a complete with too few answers, a partial with
  too few or enough for a complete); the class is derived from the answers.
* ``item_never_answered`` (warning): an item with no usable answer in an agency.
* ``straightlining`` (warning): the share of respondents giving the same answer to every
  item (among those answering at least ``checks.straightlining_min_items``) exceeds
  ``checks.straightlining_max_share`` in an agency.
* ``duplicated_form`` (warning): two respondents of one agency with identical answers to
  every item (straight-liners excepted): a form possibly keyed twice under two ids.

Derived class from the share of items answered (a blank is not an answer, "no opinion"
is): at least ``dispositions.complete_min`` -> I, at least ``partial_min`` -> P, some ->
R (break-off), none -> R (a blank form sent back: an implicit refusal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..questionnaire import Questionnaire
from .dispositions import ELIGIBLE, disposition_class
from .io import rows_text

__all__ = ["CHECKS", "Finding", "QualityResult", "check_returns"]

CHECKS: dict[str, str] = {
    "unknown_label": "error", "out_of_range": "error", "missing_id": "error",
    "duplicated_id": "error", "outside_sample": "error", "unknown_agency": "error",
    "agency_mismatch": "error", "reserve_not_released": "error",
    "unknown_disposition": "error", "disposition_contradiction": "error",
    "item_never_answered": "warning", "straightlining": "warning",
    "duplicated_form": "warning",
}
_RESOLUTION = {
    "unknown_label": "cell made blank", "out_of_range": "cell made blank",
    "missing_id": "form left out", "duplicated_id": "first form kept, the others left out",
    "outside_sample": "form left out", "unknown_agency": "agency of the sample used",
    "agency_mismatch": "agency of the sample used",
    "reserve_not_released": "reserves up to the highest used counted as released",
    "unknown_disposition": "class derived from the answers",
    "disposition_contradiction": "class derived from the answers",
    "item_never_answered": "none (reported)", "straightlining": "none (reported)",
    "duplicated_form": "none (reported)",
}


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One problem found in the returned data."""

    check: str
    message: str
    agency: str | None = None
    file: str | None = None
    column: str | None = None
    value: str | None = None
    rows: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        """``"error"`` or ``"warning"``."""
        return CHECKS[self.check]

    @property
    def resolution(self) -> str:
        """What ``run`` does about it with ``checks.on_error = "resolve"``."""
        return _RESOLUTION[self.check]

    def as_row(self) -> dict[str, Any]:
        """A plain dict (one row of the findings table)."""
        return {"severity": self.severity, "check": self.check, "agency": self.agency,
                "file": self.file, "column": self.column, "value": self.value,
                "n_rows": len(self.rows) or len(self.ids),
                "rows": ", ".join(map(str, self.rows[:50])),
                "ids": ", ".join(self.ids[:50]), "message": self.message,
                "resolution": self.resolution}


@dataclass(frozen=True, kw_only=True, eq=False)
class QualityResult:
    """What :func:`check_returns` found and the data as ``run`` uses it.

    Attributes
    ----------
    findings : tuple of Finding
    forms : pandas.DataFrame
        The forms kept, one per sampled id: ``id``, ``agency``, ``disposition_class``,
        ``share_answered``, ``_file``, ``_row`` and the item codes (problem cells blank).
    cases : pandas.DataFrame
        One row per case in the sample (main sample and released reserves): ``id``,
        ``agency``, ``reserve_rank``, ``returned`` and ``disposition_class``.
    released : dict
        Reserves counted as released per sampling stratum (the agency, or each of its
        strata when ``frame.strata`` is set).
    by_agency : pandas.DataFrame
        Per agency: sampled, returned, respondents, straight-line share, errors, warnings.
    """

    findings: tuple[Finding, ...]
    forms: pd.DataFrame
    cases: pd.DataFrame
    released: Mapping[str, int]
    by_agency: pd.DataFrame = field(repr=False)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def table(self) -> pd.DataFrame:
        """The findings as a table (one row each)."""
        cols = ["severity", "check", "agency", "file", "column", "value", "n_rows", "rows",
                "ids", "message", "resolution"]
        return pd.DataFrame([f.as_row() for f in self.findings], columns=cols)


def _where(g: pd.DataFrame, limit: int = 5) -> str:
    """``"a.csv row 3; b.xlsx row 9 and 4 more"`` for forms from several files."""
    pairs = [f"{a} row {int(b)}" for a, b in zip(g["_file"], g["_row"], strict=True)]
    more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return "; ".join(pairs[:limit]) + more


def _derive(share: np.ndarray, complete_min: float, partial_min: float) -> np.ndarray:
    out = np.full(share.shape, "R", dtype=object)
    out[share >= partial_min - 1e-12] = "P"
    out[share >= complete_min - 1e-12] = "I"
    return out


def check_returns(
    forms: pd.DataFrame,
    *,
    unreadable: pd.DataFrame,
    raw: pd.DataFrame,
    units: pd.DataFrame,
    agencies: Sequence[str],
    released_record: Mapping[str, int] | None,
    questionnaire: Questionnaire,
    disposition_codes: Mapping[str, str],
    not_returned: str,
    respondents: Sequence[str],
    complete_min: float,
    partial_min: float,
    straight_min_items: int,
    straight_max_share: float,
    has_disposition: bool,
    has_agency: bool,
    disposition_column: str | None = None,
    agency_column: str | None = None,
) -> QualityResult:
    """Check the returned forms against the plan and the questionnaire.

    Parameters
    ----------
    forms : pandas.DataFrame
        All rows of the response files: ``_file``, ``_row``, ``id`` (text or None),
        ``agency_reported`` and ``disposition_raw`` (when configured) and one float column
        of codes per item (NaN blank or unreadable).
    unreadable : pandas.DataFrame
        Boolean, same shape as the item columns: the cell's text is not a known label.
    raw : pandas.DataFrame
        The item cells as read (for the messages).
    units : pandas.DataFrame
        The plan: ``id``, ``agency``, ``reserve_rank`` (0 = main sample) and, when the
        agencies are divided into strata, ``stratum`` (reserves are ordered per stratum).
    agencies : sequence of str
        Agencies of the frame.
    released_record : mapping or None
        Reserves released per sampling stratum (the agency unless it is divided into
        strata), from the office's record (None: not recorded).
    questionnaire : Questionnaire
    disposition_codes : mapping
        Office codes -> AAPOR classes or codes.
    not_returned : str
        Class of a sampled case without a form.
    respondents : sequence of str
        Classes that are respondents.
    complete_min, partial_min : float
        Shares of items answered for a complete and for a partial.
    straight_min_items : int
    straight_max_share : float
    has_disposition, has_agency : bool
        Whether the forms carry a disposition / agency column.
    disposition_column, agency_column : str, optional
        Their names in the files (for messages).

    Returns
    -------
    QualityResult
    """
    q = questionnaire
    findings: list[Finding] = []
    f = forms.reset_index(drop=True).copy()
    codes, answered, share, valid_mask = _check_answers(f, unreadable, raw, q, findings)
    keep = _check_ids(f, units, findings)
    if has_agency:
        _check_agencies(f, keep, agencies, agency_column, findings)
    released, strat_col = _released_reserves(f, keep, units, released_record, findings)
    _classify(f, keep, share, answered, findings, n_items=len(q.items),
              has_disposition=has_disposition, disposition_codes=disposition_codes,
              disposition_column=disposition_column, complete_min=complete_min,
              partial_min=partial_min)
    kept = f[keep].copy()
    straight_share = _check_respondents(kept, codes, valid_mask, units, list(q.items), findings,
                                        respondents=respondents,
                                        straight_min_items=straight_min_items,
                                        straight_max_share=straight_max_share)
    cases = _cases(units, strat_col, released, kept, not_returned)
    by_agency = _agency_summary(cases, findings, respondents, straight_share)
    findings.sort(key=lambda x: (0 if x.severity == "error" else 1, list(CHECKS).index(x.check)))
    return QualityResult(findings=tuple(findings), forms=kept.reset_index(drop=True),
                         cases=cases, released=released, by_agency=by_agency)


def _check_answers(f: pd.DataFrame, unreadable: pd.DataFrame, raw: pd.DataFrame,
                   q: Questionnaire, findings: list[Finding]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unknown labels and codes outside the questionnaire; blanks them in ``f`` (in place).

    Returns the item codes (NaN blank or unusable), the items answered and their share per
    form, and the mask of valid (scored) codes.
    """
    items = list(q.items)
    codes = f[items].to_numpy(dtype=np.float64, copy=True)
    allowed = np.array(sorted(set(q.valid_codes) | set(q.unusable_codes)), dtype=np.float64)
    unread = unreadable[items].to_numpy(dtype=bool)
    outside = ~np.isnan(codes) & ~np.isin(codes, allowed) & ~unread
    for k, item in enumerate(items):
        for mask, check in ((unread[:, k], "unknown_label"), (outside[:, k], "out_of_range")):
            if not mask.any():
                continue
            vals = raw[item].to_numpy(dtype=object)[mask] if check == "unknown_label" else \
                codes[mask, k]
            sub = f.loc[mask, ["_file", "_row"]].assign(_v=[str(v) if check == "unknown_label"
                                                             else f"{v:g}" for v in vals])
            for (file, v), g in sub.groupby(["_file", "_v"], sort=False):
                what = "is not a label of" if check == "unknown_label" else "is not a code of"
                findings.append(Finding(
                    check=check, file=file, column=item, value=v,
                    rows=tuple(int(r) for r in g["_row"]),
                    message=(f"file {file!r}, column {item!r}: value {v!r} {what} "
                             f"questionnaire {q.name!r} (codes {[int(c) for c in allowed]}; "
                             f"{rows_text(g['_row'])})")))
    codes[unread | outside] = np.nan
    f[items] = codes
    answered = (~np.isnan(codes)).sum(axis=1)
    share = answered / max(len(items), 1)
    f["share_answered"] = share
    valid_mask = np.isin(codes, np.asarray(q.valid_codes, dtype=np.float64))
    return codes, answered, share, valid_mask


def _check_ids(f: pd.DataFrame, units: pd.DataFrame, findings: list[Finding]) -> np.ndarray:
    """Forms without an id, duplicated ids, ids never sampled; adds ``f["agency"]`` (in place).

    Returns the mask of forms kept.
    """
    keep = np.ones(len(f), dtype=bool)
    no_id = f["id"].isna().to_numpy()
    for file, g in f[no_id].groupby("_file", sort=False):
        findings.append(Finding(check="missing_id", file=file, rows=tuple(int(r) for r in g["_row"]),
                                message=f"file {file!r}: forms without an id "
                                        f"({rows_text(g['_row'])})"))
    keep &= ~no_id
    dup = f["id"].duplicated(keep="first").to_numpy() & keep
    if dup.any():
        dup_ids = pd.unique(f.loc[dup, "id"])
        for i in dup_ids:
            g = f[f["id"] == i]
            where = "; ".join(f"{a} row {int(b)}" for a, b in zip(g["_file"], g["_row"],
                                                                   strict=True))
            findings.append(Finding(check="duplicated_id", file=str(g["_file"].iloc[1]),
                                    value=str(i), ids=(str(i),),
                                    rows=tuple(int(r) for r in g["_row"]),
                                    message=f"id {i!r} is on {len(g)} forms ({where})"))
    keep &= ~dup
    unit_agency = dict(zip(units["id"], units["agency"], strict=True))
    in_plan = f["id"].map(lambda i: i in unit_agency).to_numpy(dtype=bool)
    out_sample = keep & ~in_plan
    for file, g in f[out_sample].groupby("_file", sort=False):
        ids = tuple(str(i) for i in g["id"])
        findings.append(Finding(check="outside_sample", file=file, column="id", value=ids[0],
                                ids=ids, rows=tuple(int(r) for r in g["_row"]),
                                message=f"file {file!r}: id(s) {', '.join(ids[:5])}"
                                        f"{' ...' if len(ids) > 5 else ''} were never sampled "
                                        f"({rows_text(g['_row'])})"))
    keep &= in_plan
    f["agency"] = f["id"].map(unit_agency)
    return keep


def _check_agencies(f: pd.DataFrame, keep: np.ndarray, agencies: Sequence[str],
                    agency_column: str | None, findings: list[Finding]) -> None:
    """The agency written on the form: unknown to the frame, or not the one sampled."""
    known = set(agencies)
    rep = f["agency_reported"]
    unknown = keep & rep.notna().to_numpy() & ~rep.isin(known).to_numpy()
    for (file, a), g in f[unknown].groupby(["_file", "agency_reported"], sort=False):
        findings.append(Finding(check="unknown_agency", file=file, column=agency_column,
                                value=str(a), rows=tuple(int(r) for r in g["_row"]),
                                message=f"file {file!r}, column {agency_column!r}: agency "
                                        f"{a!r} is not in the frame ({rows_text(g['_row'])})"))
    mism = keep & rep.notna().to_numpy() & ~unknown & (rep != f["agency"]).to_numpy()
    for (file, a), g in f[mism].groupby(["_file", "agency_reported"], sort=False):
        findings.append(Finding(
            check="agency_mismatch", file=file, column=agency_column, value=str(a),
            agency=str(g["agency"].iloc[0]), rows=tuple(int(r) for r in g["_row"]),
            ids=tuple(map(str, g["id"])),
            message=f"file {file!r}, column {agency_column!r}: agency {a!r} differs from "
                    f"the agency the id was sampled in ({g['agency'].iloc[0]!r}; "
                    f"{rows_text(g['_row'])})"))


def _released_reserves(f: pd.DataFrame, keep: np.ndarray, units: pd.DataFrame,
                       released_record: Mapping[str, int] | None, findings: list[Finding]
                       ) -> tuple[dict[str, int], str]:
    """Reserves used per sampling stratum against the record; adds rank and stratum to ``f``.

    Reserves are ordered within each sampling stratum: the agency, or its strata.  Returns
    the reserves released per stratum and the name of the stratum column of ``units``.
    """
    strat_col = "stratum" if "stratum" in units.columns else "agency"
    word = "stratum" if strat_col == "stratum" and not units["stratum"].astype(str).equals(
        units["agency"].astype(str)) else "agency"
    unit_stratum = dict(zip(units["id"], units[strat_col], strict=True))
    unit_rank = dict(zip(units["id"], units["reserve_rank"].astype(int), strict=True))
    f["reserve_rank"] = f["id"].map(unit_rank)
    f["_stratum"] = f["id"].map(unit_stratum)
    kept = f[keep]
    used_max = kept.groupby("_stratum")["reserve_rank"].max().to_dict()
    released: dict[str, int] = {}
    n_res = units.groupby(strat_col)["reserve_rank"].max().to_dict()
    for a in pd.unique(units[strat_col]):
        used = int(used_max.get(a, 0) or 0)
        if released_record is not None:
            rec = int(released_record.get(a, 0))
            if used > rec:
                g = kept[(kept["_stratum"] == a) & (kept["reserve_rank"] > rec)]
                findings.append(Finding(
                    check="reserve_not_released", agency=str(g["agency"].iloc[0]),
                    file=str(g["_file"].iloc[0]), value=str(used), ids=tuple(map(str, g["id"])),
                    rows=tuple(int(r) for r in g["_row"]),
                    message=f"{word} {a!r}: reserve(s) up to rank {used} were used but "
                            f"{rec} released ({_where(g)})"))
            released[str(a)] = max(used, rec)
        else:
            released[str(a)] = used
        released[str(a)] = min(released[str(a)], int(n_res.get(a, 0)))
    return released, strat_col


def _classify(f: pd.DataFrame, keep: np.ndarray, share: np.ndarray, answered: np.ndarray,
              findings: list[Finding], *, n_items: int, has_disposition: bool,
              disposition_codes: Mapping[str, str], disposition_column: str | None,
              complete_min: float, partial_min: float) -> None:
    """Disposition class of every form (``f["disposition_class"]``, in place).

    Derived from the share of items answered, or the office's code when it is known and
    consistent with the answers (unknown codes and contradictions are findings).
    """
    derived = _derive(share, complete_min, partial_min)
    cls = derived.copy()
    if has_disposition:
        raw_disp = f["disposition_raw"]
        coded = np.array([disposition_class(v, disposition_codes) for v in raw_disp],
                         dtype=object)
        blank = raw_disp.isna().to_numpy() | (raw_disp.astype(str).str.strip() == "").to_numpy()
        unknown_d = keep & ~blank & np.array([c is None for c in coded])
        for (file, v), g in f[unknown_d].groupby(["_file", "disposition_raw"], sort=False):
            findings.append(Finding(
                check="unknown_disposition", file=file, column=disposition_column, value=str(v),
                rows=tuple(int(r) for r in g["_row"]),
                message=f"file {file!r}, column {disposition_column!r}: disposition {v!r} is "
                        "not an office code of dispositions.codes nor an AAPOR class or code "
                        f"({rows_text(g['_row'])})"))
        ok = keep & ~blank & ~unknown_d
        contra = np.zeros(len(f), dtype=bool)
        for i in np.flatnonzero(ok):
            c, s = coded[i], share[i]
            bad = ((c == "I" and s < complete_min - 1e-12)
                   or (c == "P" and (s < partial_min - 1e-12 or s >= complete_min - 1e-12))
                   or (c == "R" and s >= partial_min - 1e-12)
                   or (c in ("NC", "O", "UH", "UO", "NE") and answered[i] > 0))
            if bad:
                contra[i] = True
            else:
                cls[i] = c
        sub = f[contra].assign(_c=[str(v) for v in raw_disp[contra]])
        for (file, v), g in sub.groupby(["_file", "_c"], sort=False):
            n_ans = answered[g.index.to_numpy()]
            findings.append(Finding(
                check="disposition_contradiction", file=file, column=disposition_column,
                value=v, rows=tuple(int(r) for r in g["_row"]), ids=tuple(map(str, g["id"])),
                message=f"file {file!r}, column {disposition_column!r}: disposition {v!r} "
                        f"({disposition_class(v, disposition_codes)}) contradicts the answers "
                        f"({_span(n_ans)} of {n_items} items "
                        f"answered; {rows_text(g['_row'])})"))
    f["disposition_class"] = cls


def _span(counts: np.ndarray) -> str:
    """``"21"`` or ``"3-21"``: the range of a few counts, one number when they agree."""
    lo, hi = int(np.min(counts)), int(np.max(counts))
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _check_respondents(kept: pd.DataFrame, codes: np.ndarray, valid_mask: np.ndarray,
                       units: pd.DataFrame, items: list[str], findings: list[Finding], *,
                       respondents: Sequence[str], straight_min_items: int,
                       straight_max_share: float) -> dict[str, float]:
    """Per agency, on respondents: items never answered, straightlining, duplicated forms.

    Returns the straightlining share per agency.
    """
    resp = kept["disposition_class"].isin(list(respondents)).to_numpy()
    rk = kept[resp]
    vm = valid_mask[kept.index.to_numpy()][resp]
    rc = codes[kept.index.to_numpy()][resp]
    n_valid = vm.sum(axis=1)
    with np.errstate(invalid="ignore"):
        vmin = np.where(vm, rc, np.inf).min(axis=1)
        vmax = np.where(vm, rc, -np.inf).max(axis=1)
    eligible_sl = n_valid >= straight_min_items
    straight = eligible_sl & (vmin == vmax)
    agency_arr = rk["agency"].to_numpy()
    straight_share: dict[str, float] = {}
    for a in pd.unique(units["agency"]):
        m = agency_arr == a
        if not m.any():
            continue
        never = [items[k] for k in range(len(items)) if not vm[m, k].any()]
        for item in never:
            findings.append(Finding(check="item_never_answered", agency=str(a), column=item,
                                    message=f"agency {a!r}: item {item!r} has no usable answer "
                                            f"among its {int(m.sum())} respondent(s)"))
        base = eligible_sl & m
        if base.any():
            sh = float(straight[base].mean())
            straight_share[str(a)] = sh
            if sh > straight_max_share:
                g = rk[straight & m]
                findings.append(Finding(
                    check="straightlining", agency=str(a), value=f"{sh:.3f}",
                    rows=tuple(int(r) for r in g["_row"]), ids=tuple(map(str, g["id"])),
                    message=f"agency {a!r}: {int(straight[base].sum())} of {int(base.sum())} "
                            f"respondents ({100 * sh:.1f}%) gave the same answer to every item "
                            f"(limit {100 * straight_max_share:.1f}%; {_where(g)})"))
        cand = m & eligible_sl & ~straight
        if cand.sum() > 1:
            key = pd.DataFrame(np.where(np.isnan(rc[cand]), -1.0, rc[cand]))
            dupm = key.duplicated(keep=False).to_numpy()
            if dupm.any():
                g = rk[cand][dupm]
                findings.append(Finding(
                    check="duplicated_form", agency=str(a), ids=tuple(map(str, g["id"])),
                    rows=tuple(int(r) for r in g["_row"]),
                    message=f"agency {a!r}: ids {', '.join(map(str, g['id'][:6]))} have "
                            f"identical answers to every item (a form keyed twice?; "
                            f"{_where(g)})"))
    return straight_share


def _cases(units: pd.DataFrame, strat_col: str, released: dict[str, int], kept: pd.DataFrame,
           not_returned: str) -> pd.DataFrame:
    """One row per case in the released sample, with its disposition class."""
    rel = units[strat_col].map(released).to_numpy()
    in_sample = units["reserve_rank"].to_numpy() <= rel
    cases = units[in_sample][["id", "agency", "reserve_rank"]].copy()
    form_class = dict(zip(kept["id"], kept["disposition_class"], strict=True))
    cases["returned"] = cases["id"].map(lambda i: i in form_class).astype(bool)
    cases["disposition_class"] = cases["id"].map(lambda i: form_class.get(i, not_returned))
    cases = cases.reset_index(drop=True)
    return cases


def _agency_summary(cases: pd.DataFrame, findings: list[Finding], respondents: Sequence[str],
                    straight_share: dict[str, float]) -> pd.DataFrame:
    """Sampled, released, returned, respondents, eligible, errors and warnings per agency."""
    rows = []
    errs = pd.Series([x.agency for x in findings if x.severity == "error"], dtype=object)
    warns = pd.Series([x.agency for x in findings if x.severity == "warning"], dtype=object)
    for a, g in cases.groupby("agency", sort=True):
        n_resp = int(g["disposition_class"].isin(list(respondents)).sum())
        elig = int(g["disposition_class"].isin(ELIGIBLE).sum())
        rel_a = int(g["reserve_rank"].gt(0).sum())
        rows.append({"agency": a, "sampled": len(g), "reserves_released": rel_a,
                     "returned": int(g["returned"].sum()), "respondents": n_resp,
                     "known_eligible": elig,
                     "straightline_share": straight_share.get(str(a), np.nan),
                     "errors": int((errs == a).sum()), "warnings": int((warns == a).sum())})
    return pd.DataFrame(rows)
