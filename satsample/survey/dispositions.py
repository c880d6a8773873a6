"""AAPOR final dispositions and outcome rates (Standard Definitions, 10th edition, 2023).

Every sampled case (main sample and released reserves) ends in one class:

====  =========================================================  ===========================
code  meaning                                                    AAPOR final codes
====  =========================================================  ===========================
I     complete interview / returned questionnaire               1.1
P     partial                                                    1.2
R     refusal and break-off                                      2.10-2.12x
NC    non-contact                                                2.20-2.2x
O     other eligible non-interview (language, illness, death)   2.30-2.3x
UH    unknown eligibility: unknown if the person/address exists 3.10-3.1x
UO    unknown eligibility, other (e.g. nothing ever returned)   3.20-3.9x
NE    not eligible (moved away, not a service user, duplicate)  4.x
====  =========================================================  ===========================

:func:`outcome_rates` computes, per group and overall, with :math:`U = UH + UO` and
:math:`e` the estimated eligible share among the unknowns:

.. math::

    RR1 = \\frac{I}{(I+P) + (R+NC+O) + U}, \\quad
    RR2 = \\frac{I+P}{(I+P) + (R+NC+O) + U}, \\quad
    RR3 = \\frac{I}{(I+P) + (R+NC+O) + eU}, \\quad
    RR4 = \\frac{I+P}{(I+P) + (R+NC+O) + eU},

    RR5 = \\frac{I}{(I+P) + (R+NC+O)}, \\quad RR6 = \\frac{I+P}{(I+P) + (R+NC+O)},

    COOP1 = \\frac{I}{(I+P)+R+O}, \\quad COOP2 = \\frac{I+P}{(I+P)+R+O}, \\quad
    COOP3 = \\frac{I}{(I+P)+R}, \\quad COOP4 = \\frac{I+P}{(I+P)+R},

    REF1 = \\frac{R}{(I+P)+(R+NC+O)+U}, \\quad REF2 = \\frac{R}{(I+P)+(R+NC+O)+eU}, \\quad
    REF3 = \\frac{R}{(I+P)+(R+NC+O)},

    CON1 = \\frac{(I+P)+R+O}{(I+P)+(R+NC+O)+U}, \\quad
    CON2 = \\frac{(I+P)+R+O}{(I+P)+(R+NC+O)+eU}, \\quad
    CON3 = \\frac{(I+P)+R+O}{(I+P)+(R+NC+O)}.

The default :math:`e` is proportional allocation ("CASRO"): the eligible share among the
cases whose eligibility is known, :math:`e = (I+P+R+NC+O)/(I+P+R+NC+O+NE)`, computed in
each group; a number in [0, 1] can be set instead (AAPOR asks that the basis of ``e`` be
reported; it is recorded in the table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = [
    "CLASSES",
    "ELIGIBLE",
    "RATE_NAMES",
    "UNKNOWN",
    "classify_dispositions",
    "disposition_class",
    "eligibility_rate",
    "outcome_rates",
]

CLASSES: tuple[str, ...] = ("I", "P", "R", "NC", "O", "UH", "UO", "NE")
ELIGIBLE: tuple[str, ...] = ("I", "P", "R", "NC", "O")
UNKNOWN: tuple[str, ...] = ("UH", "UO")
RATE_NAMES: tuple[str, ...] = (
    "RR1", "RR2", "RR3", "RR4", "RR5", "RR6", "COOP1", "COOP2", "COOP3", "COOP4",
    "REF1", "REF2", "REF3", "CON1", "CON2", "CON3",
)
_LABELS = {"I": "complete", "P": "partial", "R": "refusal and break-off", "NC": "non-contact",
           "O": "other", "UH": "unknown if eligible person/address", "UO": "unknown, other",
           "NE": "not eligible"}
_NUMERIC = re.compile(r"^\s*([1-4])(?:\.(\d+))?\s*$")


def disposition_class(code: Any, mapping: Mapping[str, str] | None = None) -> str | None:
    """The AAPOR class of one disposition code, or None when the code is not recognised.

    Parameters
    ----------
    code : str or number
        An office code listed in ``mapping``, an AAPOR class (``"I"``, ``"NC"``...) or an
        AAPOR final disposition code (``"1.1"``, ``"2.11"``, ``3.19``, ``"4.10"``...).
    mapping : mapping of str to str, optional
        Office codes (compared after stripping, case-insensitively) to an AAPOR class or an
        AAPOR numeric code.

    Returns
    -------
    str or None

    Examples
    --------
    >>> disposition_class("2.12"), disposition_class(1.1), disposition_class("Từ chối",
    ...     {"từ chối": "R"})
    ('R', 'I', 'R')
    """
    if code is None or (isinstance(code, float) and np.isnan(code)):
        return None
    text = (f"{code:g}" if isinstance(code, (float, np.floating)) else str(code)).strip()
    if not text:
        return None
    if mapping:
        folded = {str(k).strip().casefold(): v for k, v in mapping.items()}
        if text.casefold() in folded:
            return disposition_class(folded[text.casefold()])
    if text.upper() in CLASSES:
        return text.upper()
    m = _NUMERIC.match(text)
    if not m:
        return None
    major, minor = m.group(1), m.group(2)
    first = int(minor[0]) if minor else 0
    if major == "1":
        return {1: "I", 2: "P"}.get(first)
    if major == "2":
        return {1: "R", 2: "NC", 3: "O"}.get(first)
    if major == "3":
        return "UH" if first == 1 else "UO"
    return "NE"


def classify_dispositions(codes: Sequence[Any] | pd.Series,
                          mapping: Mapping[str, str] | None = None) -> pd.Series:
    """AAPOR classes of a column of disposition codes (None where not recognised).

    Parameters
    ----------
    codes : sequence or pandas.Series
        Disposition codes (office codes, AAPOR classes or AAPOR numeric codes).
    mapping : mapping of str to str, optional
        Office code -> AAPOR class or code (see :func:`disposition_class`).

    Returns
    -------
    pandas.Series
        Object dtype, one class per input value (index kept for a Series).

    Examples
    --------
    >>> classify_dispositions(["1.1", "2.20", "NE", "x"]).tolist()
    ['I', 'NC', 'NE', None]
    """
    if mapping:
        for k, v in mapping.items():
            if disposition_class(v) is None:
                raise ConfigError(
                    f"key dispositions.codes.{k!r} = {v!r} is not an AAPOR class "
                    f"({', '.join(CLASSES)}) or an AAPOR code such as \"2.11\"")
    s = codes if isinstance(codes, pd.Series) else pd.Series(list(codes), dtype=object)
    uniq = pd.unique(s)
    lut = {u: disposition_class(u, mapping) for u in uniq if not _isna(u)}
    return pd.Series([None if _isna(v) else lut.get(v) for v in s], index=s.index,
                     dtype=object)


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _totals(classes: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    w = np.ones(classes.shape[0]) if weights is None else weights
    return {c: float(w[classes == c].sum()) for c in CLASSES}


def eligibility_rate(t: Mapping[str, float], e: str | float = "proportional") -> float:
    """The eligible share ``e`` among unknown-eligibility cases.

    Parameters
    ----------
    t : mapping
        Totals per class (counts or weighted).
    e : "proportional" or float, default="proportional"
        ``"proportional"``: :math:`(I+P+R+NC+O)/(I+P+R+NC+O+NE)` (1 when no case has a
        known eligibility); a number is returned as it is.

    Returns
    -------
    float
    """
    if e != "proportional":
        return float(e)
    elig = sum(t.get(c, 0.0) for c in ELIGIBLE)
    known = elig + t.get("NE", 0.0)
    return 1.0 if known <= 0 else elig / known


def _rates(t: Mapping[str, float], e: float) -> dict[str, float]:
    i, p, r, nc, o = (t[c] for c in ("I", "P", "R", "NC", "O"))
    u = t["UH"] + t["UO"]
    ip = i + p
    base5 = ip + r + nc + o
    base1 = base5 + u
    base3 = base5 + e * u

    def div(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {
        "RR1": div(i, base1), "RR2": div(ip, base1), "RR3": div(i, base3), "RR4": div(ip, base3),
        "RR5": div(i, base5), "RR6": div(ip, base5),
        "COOP1": div(i, ip + r + o), "COOP2": div(ip, ip + r + o), "COOP3": div(i, ip + r),
        "COOP4": div(ip, ip + r),
        "REF1": div(r, base1), "REF2": div(r, base3), "REF3": div(r, base5),
        "CON1": div(ip + r + o, base1), "CON2": div(ip + r + o, base3),
        "CON3": div(ip + r + o, base5),
    }


def outcome_rates(
    cases: pd.DataFrame,
    *,
    disposition: str = "disposition_class",
    by: Sequence[Sequence[str] | str] = (),
    weights: str | None = None,
    e: str | float = "proportional",
) -> pd.DataFrame:
    """AAPOR outcome rates overall and per group.

    Parameters
    ----------
    cases : pandas.DataFrame
        One row per sampled case with its disposition class (one of :data:`CLASSES`).
        Not modified.
    disposition : str, default="disposition_class"
        Column holding the class.
    by : sequence of (str or sequence of str), default=()
        Grouping sets (e.g. ``["agency", "tier"]``): one block of rows per set, plus the
        overall row.
    weights : str or None, default=None
        Column of weights (design weights) for weighted rates; None counts cases.
    e : "proportional" or float, default="proportional"
        Eligible share among the unknowns; proportional is computed within each group.

    Returns
    -------
    pandas.DataFrame
        Columns ``grouping`` (``"all"`` or the set's columns joined by ``" x "``),
        ``group`` (the label), ``basis`` (``"cases"`` or ``"weighted"``), the totals
        ``I, P, R, NC, O, UH, UO, NE``, ``sampled``, ``e``, ``e_basis`` and the 16 rates
        of :data:`RATE_NAMES` (0-1).

    Raises
    ------
    ConfigError
        A class outside :data:`CLASSES` (the value is named).

    Examples
    --------
    >>> import pandas as pd
    >>> cases = pd.DataFrame({"disposition_class": ["I"] * 6 + ["R", "NC", "UO", "NE"]})
    >>> round(outcome_rates(cases)["RR1"].iloc[0], 4)
    0.6667
    """
    cls = cases[disposition].astype(object).to_numpy()
    bad = sorted({str(c) for c in cls if c not in CLASSES})
    if bad:
        raise ConfigError(f"disposition class(es) {bad} are not AAPOR classes "
                          f"({', '.join(CLASSES)})")
    w = None if weights is None else cases[weights].to_numpy(dtype=np.float64)
    rows: list[dict[str, Any]] = []
    e_basis = "proportional" if e == "proportional" else "set"

    def add(grouping: str, group: str, mask: np.ndarray) -> None:
        t = _totals(cls[mask], None if w is None else w[mask])
        ev = eligibility_rate(t, e)
        row: dict[str, Any] = {"grouping": grouping, "group": group,
                               "basis": "cases" if w is None else "weighted", **t,
                               "sampled": sum(t.values()), "e": ev, "e_basis": e_basis}
        row.update(_rates(t, ev))
        rows.append(row)

    add("all", "all", np.ones(len(cls), dtype=bool))
    for spec in by:
        cols = [spec] if isinstance(spec, str) else list(spec)
        keys = cases[cols].astype(str).agg(" / ".join, axis=1) if len(cols) > 1 else \
            cases[cols[0]].astype(str)
        for g in sorted(pd.unique(keys)):
            add(" x ".join(cols), g, (keys == g).to_numpy())
    return pd.DataFrame(rows)


def class_label(code: str) -> str:
    """English label of a class."""
    return _LABELS[code]
