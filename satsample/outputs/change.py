"""Year-on-year change of satisfaction indices between two independent annual samples.

:func:`change` compares two :class:`~satsample.results.IndexEstimate` results domain by
domain (agencies, provinces...) and gives the change with its standard error and interval.
:func:`map_items` matches the criteria of two questionnaire layouts (SIPAS 2017-2021 and
2022+) so that elements and criteria can be compared where they match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .._compat import confidence_level_keywords
from .._tables import TableField
from .._validation import SatsampleError, check_choice, check_probability
from ..questionnaire import Questionnaire
from .ranking import _level_data

__all__ = ["SIPAS_2017_2022_ITEMS", "Change", "ItemMapping", "change", "map_items"]

DfRule = Literal["welch", "min", "normal"]

#: Documented correspondence of criteria between the SIPAS 2017-2021 layout (``sipas_2017``,
#: items q01-q22) and the 2022+ layout (``sipas_2022``, items s01-s19), matched on the wording
#: of ``shared/docs/sipas.md`` sections 2.1 and 2.2.  Only one-to-one matches of the same
#: content are listed; a 2022 item that merges two 2017 items (s15 "complete and accurate"
#: vs q17/q18; s17 "available and easy" vs q19/q20) is matched to the first of them only.
#: The 2017 list is itself a reconstruction [I], so this table is too.
SIPAS_2017_2022_ITEMS: Mapping[str, str] = MappingProxyType({
    # E1 access: only the equipment criterion exists in both layouts
    "q02": "s04",  # equipment complete  ~ equipment sufficient and of good quality
    # E2 administrative procedures
    "q05": "s05",  # procedure posted in full ~ posted visibly and understandably
    "q07": "s06",  # dossier components as regulated
    "q08": "s07",  # fees as regulated
    "q09": "s08",  # processing time as regulated
    # E3 civil servants
    "q10": "s09",  # polite ~ polite and respectful
    "q12": "s10",  # answers and explains fully ~ answers promptly and fully
    "q13": "s13",  # guides attentively ~ dedicated and attentive
    "q14": "s11",  # guidance easy to understand ~ guidance clear after one instruction
    "q15": "s12",  # complies with the rules
    # E4 service results
    "q17": "s15",  # information complete ~ information complete and accurate
    # E5 feedback and petitions
    "q19": "s17",  # channel exists ~ channel available and easy to use
    "q21": "s18",  # handles feedback actively ~ handled per regulations
    "q22": "s19",  # notifies outcome promptly
})
_BUILTIN_TABLES: dict[tuple[str, str], Mapping[str, str]] = {
    ("sipas_2017", "sipas_2022"): SIPAS_2017_2022_ITEMS,
}


@dataclass(frozen=True, kw_only=True)
class ItemMapping:
    """Correspondence of elements and criteria between two questionnaire layouts.

    Attributes
    ----------
    questionnaire_1, questionnaire_2 : str
        Names of the two layouts (year 1, year 2).
    elements : tuple of (str, str)
        Matched element codes (year 1, year 2).
    items : tuple of (str, str)
        Matched criteria (year 1 item, year 2 item).
    unmatched_1, unmatched_2 : tuple of str
        Criteria of each layout with no counterpart.
    source : str
        How the items were matched (``"identical"``, ``"built-in table ..."``,
        ``"user table"``, ``"same item names"``).
    n_elements : tuple of (int, int)
        Number of elements of each layout.
    """

    questionnaire_1: str
    questionnaire_2: str
    elements: tuple[tuple[str, str], ...]
    items: tuple[tuple[str, str], ...]
    unmatched_1: tuple[str, ...] = ()
    unmatched_2: tuple[str, ...] = ()
    source: str = ""
    n_elements: tuple[int, int] = (0, 0)

    @property
    def all_elements_matched(self) -> bool:
        """True when every element of both layouts has exactly one counterpart."""
        k = len(self.elements)
        return k > 0 and tuple(self.n_elements) == (k, k)

    def element_map(self) -> dict[str, str]:
        """Year-2 element code -> year-1 element code."""
        return {b: a for a, b in self.elements}

    def item_map(self) -> dict[str, str]:
        """Year-2 item -> year-1 item."""
        return {b: a for a, b in self.items}

    def to_frame(self) -> pd.DataFrame:
        """One row per criterion of either layout: element and item in each year (NaN if none)."""
        rows = [{"item_1": a, "item_2": b} for a, b in self.items]
        rows += [{"item_1": a, "item_2": None} for a in self.unmatched_1]
        rows += [{"item_1": None, "item_2": b} for b in self.unmatched_2]
        return pd.DataFrame(rows, columns=["item_1", "item_2"])


def map_items(
    questionnaire_1: Questionnaire,
    questionnaire_2: Questionnaire,
    *,
    table: Mapping[str, str] | None = None,
) -> ItemMapping:
    """Match the elements and criteria of two questionnaire layouts.

    Parameters
    ----------
    questionnaire_1, questionnaire_2 : Questionnaire
        Layouts of year 1 and year 2 (e.g. ``load_questionnaire("sipas_2017")`` and
        ``load_questionnaire("sipas_2022")``).
    table : mapping of str to str or None, default=None
        Item correspondence ``{year-1 item: year-2 item}``.  None uses, in order: identical
        layouts; the built-in table for the pair (:data:`SIPAS_2017_2022_ITEMS` for
        ``sipas_2017`` -> ``sipas_2022``, also reversed); items with the same names.

    Returns
    -------
    ItemMapping

    Raises
    ------
    SatsampleError
        When the layouts share no element code and no criterion (they cannot be mapped), or
        when ``table`` names unknown items, maps one item twice, or matches items of
        elements with different codes.

    Notes
    -----
    Elements are matched by code (SIPAS uses E1-E5 for access, procedures, civil servants,
    results and feedback in both generations).  A criterion pair must lie in elements with
    the same code.  The built-in SIPAS table matches criteria on their published wording;
    the 2017-2021 criteria list is a reconstruction (sipas.md section 2.1) and the table
    inherits that caveat.
    """
    for q, nm in ((questionnaire_1, "questionnaire_1"), (questionnaire_2, "questionnaire_2")):
        if not isinstance(q, Questionnaire):
            raise SatsampleError(f"{nm} must be a Questionnaire, got {type(q).__name__}")
    q1, q2 = questionnaire_1, questionnaire_2
    el1, el2 = list(q1.element_codes), list(q2.element_codes)
    shared_el = [e for e in el1 if e in el2]
    source: str
    if table is not None:
        pairs_map = dict(table)
        source = "user table"
    elif (q1.name, q2.name) in _BUILTIN_TABLES:
        pairs_map = dict(_BUILTIN_TABLES[(q1.name, q2.name)])
        source = f"built-in table {q1.name} -> {q2.name}"
    elif (q2.name, q1.name) in _BUILTIN_TABLES:
        pairs_map = {b: a for a, b in _BUILTIN_TABLES[(q2.name, q1.name)].items()}
        source = f"built-in table {q2.name} -> {q1.name} (reversed)"
    else:
        pairs_map = {i: i for i in q1.items if i in q2.item_element}
        source = "identical" if q1.items == q2.items else "same item names"
    unknown1 = [a for a in pairs_map if a not in q1.item_element]
    unknown2 = [b for b in pairs_map.values() if b not in q2.item_element]
    if unknown1 or unknown2:
        raise SatsampleError(
            f"item table names item(s) {unknown1} not in {q1.name!r} and/or {unknown2} not in "
            f"{q2.name!r}"
        )
    targets = list(pairs_map.values())
    dup = sorted({b for b in targets if targets.count(b) > 1})
    if dup:
        raise SatsampleError(f"item table maps several year-1 items to {dup}")
    for a, b in pairs_map.items():
        ea, eb = q1.item_element[a], q2.item_element[b]
        if ea != eb:
            raise SatsampleError(
                f"item table pairs {a!r} (element {ea!r}) with {b!r} (element {eb!r}): "
                "matched criteria must belong to elements with the same code"
            )
    if not shared_el and not pairs_map:
        raise SatsampleError(
            f"questionnaires {q1.name!r} (elements {el1}) and {q2.name!r} (elements {el2}) "
            "cannot be mapped: no element code and no criterion in common; pass "
            "table={year-1 item: year-2 item} with matching element codes"
        )
    items = tuple((a, pairs_map[a]) for a in q1.items if a in pairs_map)
    un1 = tuple(a for a in q1.items if a not in pairs_map)
    matched2 = set(pairs_map.values())
    un2 = tuple(b for b in q2.items if b not in matched2)
    mapping = ItemMapping(
        questionnaire_1=q1.name, questionnaire_2=q2.name,
        elements=tuple((e, e) for e in shared_el), items=items,
        unmatched_1=un1, unmatched_2=un2, source=source, n_elements=(len(el1), len(el2)),
    )
    return mapping


@dataclass(frozen=True, kw_only=True, eq=False)
class Change:
    """Change of an index between two survey years (result of :func:`change`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per domain present in both years (and element/item): ``domain``,
        [``element``/``item``, ``item_2``], ``estimate_1``, ``se_1``, ``df_1``,
        ``estimate_2``, ``se_2``, ``df_2``, ``change``, ``se``, ``df``, ``ci_low``,
        ``ci_high``, ``p_value``.
    unmatched_domains : pandas.DataFrame
        Domains present in one year only (columns ``domain``, ``year``); never dropped
        silently.
    mapping : ItemMapping or None
        The element/criterion correspondence used when the layouts differ.
    options : Mapping
        table (``"overall"``, ``"element"`` or ``"item"``), level (confidence), df rule,
        comparability note.
    """

    table: pd.DataFrame = TableField()
    unmatched_domains: pd.DataFrame = TableField()
    mapping: ItemMapping | None = None
    options: Any = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()


def _questionnaire(est: Any, name: str) -> Questionnaire | None:
    q = getattr(est, "questionnaire", None)
    if q is not None and not isinstance(q, Questionnaire):
        raise SatsampleError(f"{name}.questionnaire is not a Questionnaire")
    return q


@confidence_level_keywords(table=True, conf_level=True)
def change(
    est_year1: Any,
    est_year2: Any,
    *,
    table: Literal["overall", "element", "item"] = "overall",
    mapping: ItemMapping | Mapping[str, str] | None = None,
    level: float = 0.95,
    df: DfRule = "welch",
) -> Change:
    """Per-domain change of an index between two independent annual samples.

    Parameters
    ----------
    est_year1, est_year2 : IndexEstimate
        Results of :func:`satsample.index.satisfaction_index` for the two years, with the
        same ``by`` domains (matched on their labels).
    table : {"overall", "element", "item"}, default="overall"
        Which index to compare.
    mapping : ItemMapping, mapping of str to str or None, default=None
        Correspondence of criteria when the layouts differ (:func:`map_items`; a plain
        ``{year-1 item: year-2 item}`` dict is passed to :func:`map_items` as ``table``).
        None: same layout, or :func:`map_items` with its defaults.
    level : float, default=0.95
        Confidence level of the intervals.
    df : {"welch", "min", "normal"}, default="welch"
        Degrees of freedom of the t interval, see Notes.

    Returns
    -------
    Change

    Raises
    ------
    SatsampleError
        When the layouts cannot be mapped, when ``table="overall"`` or ``"element"`` is asked
        across layouts whose elements do not all correspond, or when no domain is common.

    Notes
    -----
    The samples of two survey years are drawn independently, so for domain :math:`g`

    .. math::

        \\hat\\Delta_g = \\hat I_{g,2} - \\hat I_{g,1}, \\qquad
        \\widehat{SE}(\\hat\\Delta_g) = \\sqrt{\\widehat{SE}_{g,1}^2 + \\widehat{SE}_{g,2}^2},

    and the interval is :math:`\\hat\\Delta_g \\pm t_{\\nu,1-\\alpha/2}\\,\\widehat{SE}`.
    Degrees of freedom :math:`\\nu` (``df``): ``"welch"`` (default) the Welch-Satterthwaite
    combination :math:`\\nu = (v_1+v_2)^2 / (v_1^2/\\nu_1 + v_2^2/\\nu_2)` of the two
    years' design df, which lies between :math:`\\min(\\nu_1,\\nu_2)` and
    :math:`\\nu_1+\\nu_2` and reduces to the df of the dominant year; ``"min"`` the smaller
    df (conservative); ``"normal"`` the normal quantile.  A year with unknown or infinite
    df counts as infinite.  The p-value tests :math:`\\Delta_g = 0` with the same reference
    distribution.  Overlapping samples (panel agencies, the same users) would add a
    covariance term and are not handled.

    Across layouts (2017-2021 vs 2022+), ``"item"`` compares the matched criteria only;
    ``"element"`` and ``"overall"`` compare indices whose criteria lists differ (as
    published) and require every element to correspond; ``options["comparability"]``
    records this.
    """
    check_choice(table, name="table", allowed=("overall", "element", "item"))
    check_choice(df, name="df", allowed=("welch", "min", "normal"))
    check_probability(level, name="level")
    which = table
    q1 = _questionnaire(est_year1, "est_year1")
    q2 = _questionnaire(est_year2, "est_year2")
    same_layout = q1 is None or q2 is None or (
        q1.items == q2.items and q1.element_codes == q2.element_codes)
    imap: ItemMapping | None = None
    if isinstance(mapping, ItemMapping):
        imap = mapping
    elif mapping is not None:
        if q1 is None or q2 is None:
            raise SatsampleError("mapping needs both estimates to carry their questionnaire")
        imap = map_items(q1, q2, table=mapping)
    elif not same_layout:
        assert q1 is not None and q2 is not None
        imap = map_items(q1, q2)
    comparability = "same questionnaire" if imap is None else f"mapped ({imap.source})"
    if imap is not None and which in ("overall", "element") and not imap.all_elements_matched:
        raise SatsampleError(
            f"table={which!r}: the elements of {imap.questionnaire_1!r} and "
            f"{imap.questionnaire_2!r} do not all correspond (matched {list(imap.elements)}); "
            "compare table='item' on the matched criteria instead"
        )
    t1, _ = _level_data(est_year1, which)
    t2, _ = _level_data(est_year2, which)
    key = {"overall": None, "element": "element", "item": "item"}[which]
    if key is not None and imap is not None:
        ren = imap.element_map() if key == "element" else imap.item_map()
        t2 = t2.assign(**{f"{key}_2": t2[key].astype(str)})
        t2 = t2[t2[key].astype(str).isin(ren)].copy()
        t2[key] = t2[key].astype(str).map(ren)
    on = ["domain"] + ([key] if key else [])
    for t, nm in ((t1, "est_year1"), (t2, "est_year2")):
        miss = [c for c in ("estimate", "se") if c not in t.columns]
        if miss:
            raise SatsampleError(f"{nm}: the {which!r} table has no column(s) {miss}")
        if t.duplicated(on).any():
            raise SatsampleError(f"{nm}: domain labels are not unique at table {which!r}")
        if "df" not in t.columns:
            t["df"] = np.inf
    keep2 = on + ["estimate", "se", "df"] + ([f"{key}_2"] if key and imap is not None else [])
    merged = t1[[*on, "estimate", "se", "df"]].merge(
        t2[keep2], on=on, how="outer", suffixes=("_1", "_2"), indicator=True, sort=False)
    only = merged[merged["_merge"] != "both"]
    unmatched = pd.DataFrame({
        "domain": only["domain"].to_numpy(),
        "year": np.where(only["_merge"] == "left_only", 1, 2),
    })
    if key:
        unmatched.insert(1, key, only[key].to_numpy())
    unmatched = unmatched.drop_duplicates().reset_index(drop=True)
    both = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    if both.empty:
        raise SatsampleError(
            "the two estimates have no domain in common (domains are matched on their "
            "by-labels, e.g. agency ids)"
        )
    e1, e2 = both["estimate_1"].to_numpy(float), both["estimate_2"].to_numpy(float)
    s1, s2 = both["se_1"].to_numpy(float), both["se_2"].to_numpy(float)
    d1 = both["df_1"].to_numpy(float)
    d2 = both["df_2"].to_numpy(float)
    d1 = np.where(np.isfinite(d1) & (d1 > 0), d1, np.inf)
    d2 = np.where(np.isfinite(d2) & (d2 > 0), d2, np.inf)
    v1, v2 = s1**2, s2**2
    diff = e2 - e1
    se = np.sqrt(v1 + v2)
    if df == "normal":
        nu = np.full(diff.shape, np.inf)
    elif df == "min":
        nu = np.minimum(d1, d2)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            den = np.where(np.isinf(d1), 0.0, v1**2 / d1) + np.where(np.isinf(d2), 0.0,
                                                                      v2**2 / d2)
            nu = np.where(den > 0, (v1 + v2) ** 2 / den, np.inf)
    alpha = 1 - level
    q = np.where(np.isinf(nu), stats.norm.ppf(1 - alpha / 2),
                 stats.t.ppf(1 - alpha / 2, np.where(np.isinf(nu), 1.0, nu)))
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = diff / se
    p = np.where(np.isinf(nu), 2 * stats.norm.sf(np.abs(tstat)),
                 2 * stats.t.sf(np.abs(tstat), np.where(np.isinf(nu), 1.0, nu)))
    p = np.where(se > 0, p, np.nan)
    out = both[on + ([f"{key}_2"] if key and imap is not None else [])].copy()
    out["estimate_1"], out["se_1"], out["df_1"] = e1, s1, d1
    out["estimate_2"], out["se_2"], out["df_2"] = e2, s2, d2
    out["change"], out["se"], out["df"] = diff, se, nu
    out["ci_low"], out["ci_high"] = diff - q * se, diff + q * se
    out["p_value"] = p
    options = MappingProxyType({"table": which, "level": float(level), "df": df,
                                "comparability": comparability, "samples": "independent"})
    return Change(table=out, unmatched_domains=unmatched, mapping=imap,
                  options=options)
