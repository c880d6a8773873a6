"""Figures of the design, the weights and the results (matplotlib), in English or Vietnamese.

Each function takes a computed result, draws it and returns its Axes (one panel) or its
Figure (figures laid out on a page: :func:`plot_agency_index`,
:func:`plot_element_heatmap`); nothing is recomputed from data, nothing is shown or saved.
matplotlib is imported inside the functions, so ``import satsample`` does not load it.

Conventions shared by every figure:

* **Scale**: indices, intervals and margins of error are drawn on ``scale`` (100 = the
  published 0-100 scale, the default; 1 = the 0-1 scale of the results).
* **Suppression**: rows of an estimate flagged ``"suppress"``
  (:func:`satsample.outputs.flags.flag_estimate`) are never drawn: the agency keeps its place as a
  marked gap with "not published (n = ...)"; ``"review"`` rows are drawn with an open
  marker.  Rows from another source than the direct (design-based) estimator (e.g.
  ``"model-based"``) are drawn with a square marker and their own key entry ("model-based
  estimate"); in the heat map their overall cell is framed, in italics, and keyed.
* **Reference**: a reference line always says what it is, in the key: "national estimate
  80.8 (80.4-81.2)" (an :class:`~satsample.results.IndexEstimate` without ``by``, drawn
  with its interval as a band) or "mean of agencies 82.2" (the unweighted mean of the
  published agencies).
* **Language**: ``language="en"`` or ``"vi"``: titles, axis labels, keys, tier and element
  names follow it (Vietnamese element names from the questionnaire's ``label_vi``; numbers
  with a decimal comma).  matplotlib's default font, DejaVu Sans, has the Vietnamese
  diacritics.
* **Legibility**: text is at least 7 pt at the figure's size and keys sit outside the
  data; the tests check both with the renderer's text extents.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._compat import confidence_level_keywords
from .._validation import SatsampleError, check_choice
from .ranking import _level_data

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_agency_index",
    "plot_allocation",
    "plot_change",
    "plot_element_heatmap",
    "plot_index",
    "plot_ranks",
    "plot_response_rates",
    "plot_weights",
]

Language = Literal["en", "vi"]
LANGUAGES: tuple[str, ...] = ("en", "vi")
#: Smallest text size (points, at the figure's size) used by the figures.
MIN_FONT_PT = 7.0
_SMALL = 7.5  # tick labels, notes
_NORMAL = 8.5  # axis labels, keys
A4_PORTRAIT = (8.27, 11.69)

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "index": "Satisfaction index",
        "index_axis": "satisfaction index (0-{top})",
        "element": "element",
        "overall": "Overall",
        "estimate": "estimate",
        "interval": "{pct} % confidence interval",
        "review": "to review (few degrees of freedom)",
        "model": "model-based estimate",
        "not_published": "not published (n = {n})",
        "not_published_short": "not published",
        "national": "national estimate {est} ({lo}-{hi})",
        "mean_agencies": "mean of agencies {est}",
        "reference": "reference {est}",
        "rank_axis": "rank (1 = highest index)",
        "rank": "rank",
        "rank_interval": "95 % rank interval",
        "not_ranked": "Not ranked (not published): {names}",
        "change_axis": "change since last year (points)",
        "change_sig_up": "significant increase",
        "change_sig_down": "significant decrease",
        "change_ns": "no significant change",
        "no_change": "no change",
        "rate_axis": "response rate (%)",
        "rate": "response rate",
        "weight_axis": "weight (log scale)",
        "weight_axis_lin": "weight",
        "weight_range": "smallest to largest weight",
        "weight_mean": "mean weight",
        "kish": "Kish deff {deff}, effective n {neff}",
        "step": "step {i}: {method}",
        "not_converged": " (not converged)",
        "moe_axis": "expected margin of error (points)",
        "expected_moe": "expected margin of error",
        "target_moe": "target",
        "strata": "agencies (strata)",
        "take_all": "take all (census)",
        "n_eq_N": "n = N",
        "publication_min": "units needed to publish",
        "size_N": "users in the frame (N, log scale)",
        "size_n": "units to select (n, log scale)",
        "continued": "{tier} (continued)",
        "cell_suppressed": "– not published",
        "colorbar": "satisfaction index (0-{top})",
    },
    "vi": {
        "index": "Chỉ số hài lòng",
        "index_axis": "chỉ số hài lòng (0-{top})",
        "element": "yếu tố",
        "overall": "Chung",
        "estimate": "ước lượng",
        "interval": "khoảng tin cậy {pct} %",
        "review": "cần xem xét (ít bậc tự do)",
        "model": "ước lượng theo mô hình",
        "not_published": "không công bố (n = {n})",
        "not_published_short": "không công bố",
        "national": "ước lượng chung {est} ({lo}-{hi})",
        "mean_agencies": "trung bình các cơ quan {est}",
        "reference": "giá trị tham chiếu {est}",
        "rank_axis": "thứ hạng (1 = chỉ số cao nhất)",
        "rank": "thứ hạng",
        "rank_interval": "khoảng thứ hạng 95 %",
        "not_ranked": "Không xếp hạng (không công bố): {names}",
        "change_axis": "thay đổi so với năm trước (điểm)",
        "change_sig_up": "tăng có ý nghĩa thống kê",
        "change_sig_down": "giảm có ý nghĩa thống kê",
        "change_ns": "thay đổi không có ý nghĩa",
        "no_change": "không thay đổi",
        "rate_axis": "tỷ lệ trả lời (%)",
        "rate": "tỷ lệ trả lời",
        "weight_axis": "trọng số (thang log)",
        "weight_axis_lin": "trọng số",
        "weight_range": "từ trọng số nhỏ nhất đến lớn nhất",
        "weight_mean": "trọng số trung bình",
        "kish": "deff Kish {deff}, n hiệu dụng {neff}",
        "step": "bước {i}: {method}",
        "not_converged": " (không hội tụ)",
        "moe_axis": "sai số biên dự kiến (điểm)",
        "expected_moe": "sai số biên dự kiến",
        "target_moe": "mục tiêu",
        "strata": "cơ quan (tầng)",
        "take_all": "điều tra toàn bộ",
        "n_eq_N": "n = N",
        "publication_min": "số cần chọn để công bố",
        "size_N": "số người dùng trong khung (N, thang log)",
        "size_n": "số đơn vị cần chọn (n, thang log)",
        "continued": "{tier} (tiếp)",
        "cell_suppressed": "– không công bố",
        "colorbar": "chỉ số hài lòng (0-{top})",
    },
}

#: Display names of the agency tiers of the synthetic data (other values are shown as is).
TIER_LABELS: dict[str, dict[str, str]] = {
    "en": {"province": "Provincial departments", "district": "District one-stop shops",
           "commune": "Commune one-stop shops"},
    "vi": {"province": "Sở, ban, ngành cấp tỉnh", "district": "UBND cấp huyện",
           "commune": "UBND cấp xã"},
}
_TIER_ORDER = ("province", "district", "commune")
_DIRECT = ("direct", "design-based")


def _t(language: str, key: str, **kw: Any) -> str:
    return _TEXT[language][key].format(**kw)


def _check_language(language: str) -> str:
    check_choice(language, name="language", allowed=LANGUAGES)
    return language


def _num(x: float, decimals: int, language: str) -> str:
    """A rounded number in the language's convention (decimal comma in Vietnamese)."""
    if x is None or not np.isfinite(x):
        return "–"
    text = f"{x:.{decimals}f}"
    return text.replace(".", ",") if language == "vi" else text


def _scale_top(scale: float) -> str:
    return f"{scale:g}"


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not np.isfinite(scale) or scale <= 0:
        raise SatsampleError(f"scale={scale!r} must be a positive number (100 = 0-100 scale)")
    return float(scale)


def _axes(ax: Any, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    return _new_figure(figsize).add_subplot()


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # through pyplot, so that a notebook shows the figure; callers that only save it
    # (the report) close it
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")


def _key_above(ax: Axes, handles: Sequence[Any] | None = None, *, ncol: int = 2) -> None:
    """The key above the axes, outside the data."""
    kw: dict[str, Any] = {"loc": "lower left", "bbox_to_anchor": (0.0, 1.01), "ncol": ncol,
                          "frameon": False, "fontsize": _SMALL, "borderaxespad": 0.0,
                          "handlelength": 1.6, "columnspacing": 1.2}
    if handles is not None:
        ax.legend(handles=list(handles), **kw)
    else:
        ax.legend(**kw)


# --------------------------------------------------------------------------- domain rows
def _lookup(mapping: Any, keys: pd.Series, what: str) -> pd.Series | None:
    """Values of a domain -> value mapping (dict, Series, or None) for each domain label."""
    if mapping is None:
        return None
    if isinstance(mapping, (pd.Series, Mapping)):
        m = {str(k): v for k, v in mapping.items()}
    else:
        raise SatsampleError(f"{what} must be a mapping or Series from domain to value, got "
                             f"{type(mapping).__name__}")
    missing = [k for k in keys if k not in m]
    if missing:
        raise SatsampleError(f"{what} has no value for domain(s) {missing[:5]}")
    return keys.map(lambda k: m[k])


def _status_cols(tab: pd.DataFrame) -> pd.DataFrame:
    out = tab.copy()
    if "status" not in out.columns:
        out["status"] = "publish"
    if "reason" not in out.columns:
        out["reason"] = ""
    if "source" not in out.columns:
        out["source"] = "direct"
    out["status"] = out["status"].astype(str)
    out["source"] = out["source"].fillna("direct").astype(str)
    return out


def _domain_rows(tab: pd.DataFrame, *, names: Any, tier: Any, by_order: str) -> pd.DataFrame:
    """Rows to draw: domain, name, tier, values and flags, in drawing order (top first)."""
    tab = _status_cols(tab)
    keys = tab["domain"].astype(str)
    nm = _lookup(names, keys, "names")
    tab["name"] = keys if nm is None else nm.astype(str)
    tr = _lookup(tier, keys, "tier")
    tab["tier"] = "" if tr is None else tr.astype(str)
    tiers = list(pd.unique(tab["tier"]))
    rank = {t: (_TIER_ORDER.index(t) if t in _TIER_ORDER else len(_TIER_ORDER) + i)
            for i, t in enumerate(tiers)}
    tab["_tier"] = tab["tier"].map(rank)
    tab["_sup"] = (tab["status"] == "suppress").astype(int)
    tab["_pos"] = np.arange(len(tab))
    est = tab["estimate"].where(tab["_sup"] == 0)
    if by_order == "estimate":
        tab["_key"] = -est.fillna(-np.inf)
        cols = ["_tier", "_sup", "_key", "name"]
    elif by_order == "label":
        cols = ["_tier", "name"]
    else:
        cols = ["_tier", "_pos"]
    return tab.sort_values(cols, kind="stable").drop(
        columns=[c for c in ("_tier", "_sup", "_key", "_pos") if c in tab.columns]
    ).reset_index(drop=True)


def _layout(rows: pd.DataFrame, *, grouped: bool, language: str) -> list[tuple[str, Any]]:
    """Flat list of ("header", tier label) and ("row", row index) in drawing order."""
    out: list[tuple[str, Any]] = []
    last = None
    for i, t in enumerate(rows["tier"]):
        if grouped and t != last:
            out.append(("header", TIER_LABELS[language].get(t, t)))
            last = t
        out.append(("row", i))
    return out


def _split_columns(items: list[tuple[str, Any]], n_cols: int, language: str
                   ) -> list[list[tuple[str, Any]]]:
    """Split the drawing list into columns of near-equal length, repeating a cut header."""
    per = math.ceil(len(items) / n_cols)
    cols: list[list[tuple[str, Any]]] = []
    current: list[tuple[str, Any]] = []
    header = None
    for kind, val in items:
        if kind == "header":
            header = val
            if len(current) >= per - 1 and len(cols) < n_cols - 1:  # no orphan header
                cols.append(current)
                current = []
        elif len(current) >= per and len(cols) < n_cols - 1:
            cols.append(current)
            current = []
            if header is not None:
                current.append(("header", _t(language, "continued", tier=header)))
        current.append((kind, val))
    cols.append(current)
    return [c for c in cols if c]


def _reference(reference: Any, rows: pd.DataFrame, *, scale: float, language: str,
               decimals: int, label: str | None) -> dict[str, Any] | None:
    """What the reference line is: value, optional band, and its label in words."""
    if reference is None or reference is False:
        return None
    if isinstance(reference, str):
        check_choice(reference, name="reference", allowed=("mean_of_domains",))
        shown = rows.loc[rows["status"] != "suppress", "estimate"].to_numpy(dtype=float)
        shown = shown[np.isfinite(shown)]
        if not shown.size:
            return None
        v = scale * float(shown.mean())
        return {"value": v, "band": None,
                "label": label or _t(language, "mean_agencies", est=_num(v, decimals, language))}
    if isinstance(reference, (int, float, np.integer, np.floating)) and not isinstance(
            reference, bool):
        v = scale * float(reference)
        return {"value": v, "band": None,
                "label": label or _t(language, "reference", est=_num(v, decimals, language))}
    tab = reference.to_frame() if hasattr(reference, "to_frame") and not isinstance(
        reference, pd.DataFrame) else reference
    if isinstance(tab, pd.Series):
        tab = tab.to_frame().T
    if not isinstance(tab, pd.DataFrame) or len(tab) != 1 or "estimate" not in tab.columns:
        raise SatsampleError(
            "reference must be 'mean_of_domains', a number, None, or the national estimate "
            "(an IndexEstimate without by=, or its one-row overall table)"
        )
    row = tab.iloc[0]
    v = scale * float(row["estimate"])
    lo = scale * float(row["ci_low"]) if "ci_low" in tab.columns else np.nan
    hi = scale * float(row["ci_high"]) if "ci_high" in tab.columns else np.nan
    band = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None
    text = label or _t(language, "national", est=_num(v, decimals, language),
                       lo=_num(lo, decimals, language), hi=_num(hi, decimals, language))
    return {"value": v, "band": band, "label": text}


def _draw_index_panel(ax: Axes, rows: pd.DataFrame, items: list[tuple[str, Any]], *,
                      scale: float, ref: dict[str, Any] | None, language: str,
                      fontsize: float, xlim: tuple[float, float]) -> None:
    """Dot-and-interval rows with tier headers, gaps for suppressed rows, reference band."""
    from matplotlib.transforms import blended_transform_factory

    n = len(items)
    ypos = np.arange(n)[::-1].astype(float)
    labels: list[str] = []
    kinds: dict[str, list[int]] = {"estimate": [], "review": [], "model": [], "gap": []}
    row_y: dict[int, float] = {}
    for y, (kind, val) in zip(ypos, items, strict=True):
        if kind == "header":
            labels.append(str(val))
            continue
        r = rows.iloc[val]
        labels.append(str(r["name"]))
        row_y[val] = y
        if r["status"] == "suppress":
            kinds["gap"].append(val)
        elif r["source"] not in _DIRECT:
            kinds["model"].append(val)
        elif r["status"] == "review":
            kinds["review"].append(val)
        else:
            kinds["estimate"].append(val)
    if ref is not None and ref["band"] is not None:
        ax.axvspan(ref["band"][0], ref["band"][1], color="#9ecae1", alpha=0.45, lw=0,
                   label=ref["label"], zorder=0)
        ax.axvline(ref["value"], color="#08519c", lw=1.0, zorder=1)
    elif ref is not None:
        ax.axvline(ref["value"], color="#08519c", lw=1.0, ls="--", label=ref["label"], zorder=1)
    shown = kinds["estimate"] + kinds["review"] + kinds["model"]
    if shown:
        idx = sorted(shown)
        ys = np.array([row_y[i] for i in idx])
        lo = scale * rows["ci_low"].to_numpy(dtype=float)[idx]
        hi = scale * rows["ci_high"].to_numpy(dtype=float)[idx]
        ax.hlines(ys, lo, hi, color="0.35", lw=1.3, label="interval", zorder=2)
    styles = {"estimate": dict(marker="o", color="#08306b", mfc="#08306b"),
              "review": dict(marker="o", color="#08306b", mfc="white"),
              "model": dict(marker="s", color="#7a0177", mfc="#7a0177")}
    for kind, st in styles.items():
        idx = sorted(kinds[kind])
        if not idx:
            continue
        ax.plot(scale * rows["estimate"].to_numpy(dtype=float)[idx],
                [row_y[i] for i in idx], ls="none", ms=4.2, zorder=3, label=kind, **st)
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for i in kinds["gap"]:
        y = row_y[i]
        ax.axhspan(y - 0.42, y + 0.42, color="0.92", lw=0, zorder=0)
        n_val = rows["n"].iloc[i] if "n" in rows.columns else np.nan
        n_txt = str(int(n_val)) if pd.notna(n_val) else "–"
        ax.text(0.02, y, _t(language, "not_published", n=n_txt), transform=trans,
                va="center", ha="left", fontsize=fontsize, color="0.3", style="italic",
                zorder=4)
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=fontsize)
    for tick, (kind, val) in zip(ax.get_yticklabels(), items, strict=True):
        if kind == "header":
            tick.set_fontweight("bold")
        elif rows["status"].iloc[val] == "suppress":
            tick.set_color("0.4")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(*xlim)
    ax.tick_params(axis="x", labelsize=fontsize)
    ax.grid(axis="x", alpha=0.3, lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _index_xlim(rows: pd.DataFrame, ref: dict[str, Any] | None, scale: float
                ) -> tuple[float, float]:
    ok = rows["status"] != "suppress"
    vals = np.concatenate([scale * rows.loc[ok, c].to_numpy(dtype=float)
                           for c in ("ci_low", "ci_high", "estimate") if c in rows.columns])
    if ref is not None:
        vals = np.append(vals, [ref["value"], *(ref["band"] or ())])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return 0.0, scale
    lo, hi = float(vals.min()), float(vals.max())
    pad = 0.05 * max(hi - lo, 0.02 * scale)
    # the "not published" notes sit at the left: leave them room
    return max(0.0, lo - pad - 0.22 * (hi - lo + 2 * pad)), min(scale, hi + pad)


def _handles(ax: Axes, language: str, pct: int) -> list[Any]:
    """Key entries in a fixed order with words, from what the axes drew."""
    from matplotlib.lines import Line2D

    found = {h.get_label(): h for h in ax.get_lines()}
    out: list[Any] = []
    words = {"estimate": _t(language, "estimate"), "review": _t(language, "review"),
             "model": _t(language, "model")}
    for key in ("estimate", "review", "model"):
        if key in found:
            h = found[key]
            out.append(Line2D([], [], ls="none", marker=h.get_marker(), color=h.get_color(),
                              mfc=h.get_markerfacecolor(), ms=4.2, label=words[key]))
    out.append(Line2D([], [], color="0.35", lw=1.3, label=_t(language, "interval", pct=pct)))
    for art in [*ax.patches, *ax.get_lines()]:
        lab = art.get_label()
        if lab and not lab.startswith("_") and lab not in ("estimate", "review", "model",
                                                           "interval"):
            out.append(art)
    return out


def _overall_rows(estimate: Any, table: str, key: str | None) -> pd.DataFrame:
    tab, _ = _level_data(estimate, table)
    if table != "overall":
        col = "element" if table == "element" else "item"
        if key is None:
            raise SatsampleError(f"table={table!r} needs key= (one {col} to draw)")
        tab = tab[tab[col].astype(str) == str(key)]
        if tab.empty:
            raise SatsampleError(f"{col} {key!r} is not in the estimate")
    for c in ("ci_low", "ci_high"):
        if c not in tab.columns:
            tab[c] = np.nan
    return tab.reset_index(drop=True)


def _conf_pct(estimate: Any) -> int:
    lvl = dict(getattr(estimate, "options", {}) or {}).get("level", 0.95)
    try:
        return round(100 * float(lvl))
    except (TypeError, ValueError):
        return 95


@confidence_level_keywords(table=True)
def plot_index(
    estimate: Any,
    *,
    table: Literal["overall", "element", "item"] = "overall",
    key: str | None = None,
    names: Mapping[str, str] | pd.Series | None = None,
    tier: Mapping[str, str] | pd.Series | None = None,
    by_order: Literal["estimate", "label", "table"] = "estimate",
    reference: Any = "mean_of_domains",
    reference_label: str | None = None,
    scale: float = 100.0,
    language: Language = "en",
    decimals: int = 1,
    ax: Axes | None = None,
) -> Axes:
    """Domain indices with their confidence intervals, grouped by tier, on one panel.

    Parameters
    ----------
    estimate : IndexEstimate
        Result with ``by=`` domains; its publication flags
        (:func:`satsample.outputs.flags.flag_estimate`) are honoured.
    table : {"overall", "element", "item"}, default="overall"
        Index to draw; for ``"element"``/``"item"`` choose one with ``key``.
    key : str or None, default=None
        Element code or item name (required at those levels).
    names : mapping or Series or None, default=None
        Display name of each domain (keyed by the domain label, e.g. the agency id); the
        domain labels when None.
    tier : mapping or Series or None, default=None
        Tier of each domain (``"province"``, ``"district"``, ``"commune"`` or any text);
        rows are grouped by tier under a bold heading.  No grouping when None.
    by_order : {"estimate", "label", "table"}, default="estimate"
        Order within a tier: highest estimate first (suppressed agencies last), by name, or
        the order of the result table.
    reference : "mean_of_domains", IndexEstimate, float or None, default="mean_of_domains"
        The reference line, named in the key: ``"mean_of_domains"`` the unweighted mean of
        the published domains ("mean of agencies 82.2"); the national estimate (an
        IndexEstimate without ``by``, drawn with its interval as a band: "national estimate
        80.8 (80.4-81.2)"); a float on the 0-1 scale of the results; None: no line.
    reference_label : str or None, default=None
        Words for the reference instead of the default.
    scale : float, default=100
        Display scale (100 = 0-100).
    language : {"en", "vi"}, default="en"
    decimals : int, default=1
        Decimals of the numbers in the key.
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Rows top to bottom; the markers of published rows are the line labelled
        ``"estimate"`` (``"review"`` and ``"model"`` for those rows), x = ``scale *
        estimate``; interval bars (collection labelled ``"interval"``) span ``scale *
        ci_low`` to ``scale * ci_high``.  Suppressed rows have no marker and no bar.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=3000, n_agencies=6, rng=1)
    >>> sel = ss.select(pop.frame, ids="user_id", strata="agency_id", n=60, rng=2)
    >>> d = ss.survey_design(ss.simulate_responses(pop, sel.sample, rng=3),
    ...                      strata="agency_id", weights="design_weight", fpc="fpc")
    >>> d = ss.adjust_nonresponse(d, "responded", classes="agency_id")
    >>> est = ss.flag_estimate(ss.satisfaction_index(d, pop.questionnaire, by="agency_id"))
    >>> ax = ss.plot_index(est, tier=pop.agencies.set_index("agency_id")["level"])
    >>> ax.get_xlabel()
    'satisfaction index (0-100)'
    """
    check_choice(by_order, name="by_order", allowed=("estimate", "label", "table"))
    language = _check_language(language)
    scale = _check_scale(scale)
    rows = _domain_rows(_overall_rows(estimate, table, key), names=names, tier=tier,
                        by_order=by_order)
    items = _layout(rows, grouped=tier is not None, language=language)
    ref = _reference(reference, rows, scale=scale, language=language, decimals=decimals,
                     label=reference_label)
    ax = _axes(ax, (7.0, float(min(max(2.5, 0.2 * len(items) + 1.4), 30.0))))
    _draw_index_panel(ax, rows, items, scale=scale, ref=ref, language=language,
                      fontsize=_SMALL, xlim=_index_xlim(rows, ref, scale))
    what = _t(language, "index_axis", top=_scale_top(scale))
    if table != "overall":
        what = f"{key}: {what}"
    ax.set_xlabel(what, fontsize=_NORMAL)
    _key_above(ax, _handles(ax, language, _conf_pct(estimate)), ncol=2)
    return ax


def plot_agency_index(
    estimate: Any,
    *,
    names: Mapping[str, str] | pd.Series | None = None,
    tier: Mapping[str, str] | pd.Series | None = None,
    reference: Any = "mean_of_domains",
    reference_label: str | None = None,
    scale: float = 100.0,
    language: Language = "en",
    decimals: int = 1,
    title: str | None = None,
    max_rows: int = 60,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The agency index on a page: grouped by tier, sorted, readable at 100 agencies on A4.

    Parameters
    ----------
    estimate : IndexEstimate
        Index by agency (``by=`` one domain column); publication flags honoured: a
        suppressed agency keeps its row, without value, marked "not published (n = ...)".
    names, tier, reference, reference_label, scale, language, decimals
        As in :func:`plot_index` (pass the national estimate as ``reference`` to draw its
        interval as a band).
    title : str or None, default=None
        Figure title (none when None; reports put the title in the text).
    max_rows : int, default=60
        Rows (agencies and tier headings) per column; more rows are laid out in side by
        side columns sharing the x axis, a tier cut between columns being headed
        "(continued)".
    figsize : (float, float) or None, default=None
        Inches; None: the width of A4 (8.27) and a height that gives each row at least
        12 pt, at most the A4 page (11.69).

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per column (``fig.axes``), drawn as :func:`plot_index`.

    Notes
    -----
    At 100 agencies in three tiers the default gives two columns of 52 rows on an A4 page:
    names at 7.5 pt on rows about 14 pt apart.
    """
    language = _check_language(language)
    scale = _check_scale(scale)
    rows = _domain_rows(_overall_rows(estimate, "overall", None), names=names, tier=tier,
                        by_order="estimate")
    items = _layout(rows, grouped=tier is not None, language=language)
    n_cols = max(1, math.ceil(len(items) / max(int(max_rows), 1)))
    columns = _split_columns(items, n_cols, language)
    longest = max(len(c) for c in columns)
    if figsize is None:
        height = min(A4_PORTRAIT[1], max(3.0, 12.0 / 72.0 * longest + 1.6))
        figsize = (A4_PORTRAIT[0], height)
    ref = _reference(reference, rows, scale=scale, language=language, decimals=decimals,
                     label=reference_label)
    xlim = _index_xlim(rows, ref, scale)
    fig = _new_figure(figsize)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    row_pt = 72.0 * (figsize[1] - 1.6) / max(longest, 1)
    fs = float(np.clip(0.6 * row_pt, MIN_FONT_PT + 0.5, 9.0))
    for ax, col in zip(axes, columns, strict=True):
        _draw_index_panel(ax, rows, col, scale=scale, ref=ref, language=language,
                          fontsize=fs, xlim=xlim)
        # the same row height in every column, top rows aligned
        ax.set_ylim(len(col) - longest - 0.7, len(col) - 0.3)
        ax.set_xlabel(_t(language, "index_axis", top=_scale_top(scale)), fontsize=_NORMAL)
    handles = _handles(axes[0], language, _conf_pct(estimate))
    # the title heads the key (a suptitle would sit on top of an "outside" key)
    fig.legend(handles=handles, loc="outside upper left", ncol=2, frameon=False,
               fontsize=_SMALL, title=title or None, title_fontsize=10, alignment="left")
    return fig


# --------------------------------------------------------------------------- heat map
def _element_names(estimate: Any, codes: list[str], language: str) -> list[str]:
    """'E1 Access to services' (Vietnamese names from ``label_vi``), or the code alone."""
    q = getattr(estimate, "questionnaire", None)
    out = []
    for c in codes:
        label = c
        if q is not None and c in q.element_codes:
            el = q.element(c)
            text = (el.label_vi or el.label) if language == "vi" else el.label
            label = f"{c} {text}"
        out.append(label)
    return out


def plot_element_heatmap(
    estimate: Any,
    *,
    names: Mapping[str, str] | pd.Series | None = None,
    tier: Mapping[str, str] | pd.Series | None = None,
    scale: float = 100.0,
    language: Language = "en",
    decimals: int = 1,
    max_rows: int = 60,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Agencies x elements: a heat map with the values written in the cells.

    Parameters
    ----------
    estimate : IndexEstimate
        Index by agency with element estimates; flags honoured: a suppressed cell (agency
        or element) is blank, hatched, and holds "–" instead of a value.
    names, tier, scale, language, decimals
        As in :func:`plot_index`; rows are in the order of :func:`plot_agency_index`
        (tier, then overall index).
    max_rows : int, default=60
        Rows per column of panels (as :func:`plot_agency_index`).
    figsize : (float, float) or None, default=None
        None: A4 width and a height giving each row at least 12 pt.

    Returns
    -------
    matplotlib.figure.Figure
        One heat-map Axes per column of panels (plus the colour bar's Axes, last).  Each
        panel's image (``ax.images[0]``) holds ``scale * estimate`` in a masked array: the
        first column is the overall index, then the elements in questionnaire order;
        suppressed cells are masked.  An overall value that is not a direct estimate
        (``source`` ``"model-based"``) is framed (a patch labelled ``"model-based"``) and
        named in the colour bar's key.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    language = _check_language(language)
    scale = _check_scale(scale)
    rows = _domain_rows(_overall_rows(estimate, "overall", None), names=names, tier=tier,
                        by_order="estimate")
    el, _ = _level_data(estimate, "element")
    el = _status_cols(el)
    q = getattr(estimate, "questionnaire", None)
    codes = list(q.element_codes) if q is not None else list(pd.unique(el["element"]))
    el = el.assign(_v=el["estimate"].where(el["status"] != "suppress"))
    wide = el.pivot_table(index="domain", columns="element", values="_v", aggfunc="first",
                          dropna=False).reindex(columns=codes)
    dom = rows["domain"].astype(str)
    wide.index = wide.index.astype(str)
    wide = wide.reindex(dom)
    overall = rows["estimate"].where(rows["status"] != "suppress").to_numpy(dtype=float)
    values = scale * np.column_stack([overall, wide.to_numpy(dtype=float)])
    sup_row = (rows["status"] == "suppress").to_numpy()
    values[sup_row, :] = np.nan  # an agency not published shows none of its elements
    # an overall value from another source than the direct estimator is framed and keyed
    model_row = ~rows["source"].isin(_DIRECT).to_numpy() & ~sup_row
    col_labels = [_t(language, "overall"), *codes]
    element_key = _element_names(estimate, codes, language)
    items = _layout(rows, grouped=tier is not None, language=language)
    n_cols = max(1, math.ceil(len(items) / max(int(max_rows), 1)))
    columns = _split_columns(items, n_cols, language)
    longest = max(len(c) for c in columns)
    if figsize is None:
        height = min(A4_PORTRAIT[1], max(3.0, 12.0 / 72.0 * longest + 2.4))
        figsize = (A4_PORTRAIT[0], height)
    fig = _new_figure(figsize)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    finite = values[np.isfinite(values)]
    lo = float(np.floor(finite.min() / 5) * 5) if finite.size else 0.0
    hi = float(np.ceil(finite.max() / 5) * 5) if finite.size else scale
    norm = Normalize(vmin=lo, vmax=max(hi, lo + 1))
    cmap = colormaps["YlGnBu"]
    row_pt = 72.0 * (figsize[1] - 2.4) / max(longest, 1)
    fs = float(np.clip(0.55 * row_pt, MIN_FONT_PT, 8.5))
    image = None
    for ax, col in zip(axes, columns, strict=True):
        data = np.full((longest, values.shape[1]), np.nan)
        labels = [""] * longest
        for y, (kind, val) in enumerate(col):
            if kind == "header":
                labels[y] = str(val)
            else:
                data[y] = values[val]
                labels[y] = str(rows["name"].iloc[val])
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto",
                          interpolation="nearest")
        for y, (kind, _) in enumerate(col):
            if kind == "header":
                continue
            for x in range(values.shape[1]):
                v = data[y, x]
                if np.isfinite(v):
                    dark = norm(v) > 0.6
                    model = x == 0 and bool(model_row[col[y][1]])
                    ax.text(x, y, _num(v, decimals, language), ha="center", va="center",
                            fontsize=fs, color="white" if dark else "0.1",
                            style="italic" if model else "normal")
                    if model:
                        ax.add_patch(Rectangle((x - 0.45, y - 0.42), 0.9, 0.84, fill=False,
                                               edgecolor="#7a0177", lw=1.4,
                                               label="model-based"))
                else:
                    ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False,
                                           hatch="////", edgecolor="0.75", lw=0))
                    ax.text(x, y, "–", ha="center", va="center", fontsize=fs, color="0.35")
        ax.set_yticks(np.arange(longest))
        ax.set_yticklabels(labels, fontsize=fs)
        for y, (kind, val) in enumerate(col):
            tl = ax.get_yticklabels()[y]
            if kind == "header":
                tl.set_fontweight("bold")
            elif sup_row[val]:
                tl.set_color("0.4")
        ax.set_ylim(longest - 0.5, -0.5)
        ax.set_xticks(np.arange(values.shape[1]))
        ax.set_xticklabels(col_labels, fontsize=fs)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.axvline(0.5, color="white", lw=2.5)
        for sp in ax.spines.values():
            sp.set_visible(False)
    assert image is not None
    cb = fig.colorbar(image, ax=list(axes), location="bottom", shrink=0.5, aspect=40,
                      pad=0.01)
    cb.set_label(_t(language, "colorbar", top=_scale_top(scale)) + "   –  "
                 + _t(language, "not_published_short")
                 + ("   ▢ " + _t(language, "model") if model_row.any() else ""),
                 fontsize=_SMALL)
    cb.ax.tick_params(labelsize=_SMALL)
    if any(k != c for k, c in zip(element_key, codes, strict=True)):
        chars = int(figsize[0] * 72 * 0.95 / (0.58 * _SMALL))
        key_text = textwrap.fill(" · ".join(element_key), chars)
        n_lines = key_text.count("\n") + 1
        frac = (n_lines * 1.35 * _SMALL + 4) / 72 / figsize[1]
        fig.text(0.0, 0.0, key_text, fontsize=_SMALL, ha="left", va="bottom", color="0.2")
        fig.get_layout_engine().set(rect=(0, frac, 1, 1 - frac))
    return fig


# --------------------------------------------------------------------------- ranks
def plot_ranks(
    league: Any,
    *,
    names: Mapping[str, str] | pd.Series | None = None,
    language: Language = "en",
    ax: Axes | None = None,
) -> Axes:
    """Rank plot: each domain's rank with its rank interval, best on top.

    Parameters
    ----------
    league : LeagueTable
        Result of :func:`satsample.outputs.ranking.league_table` at level ``"overall"``.  Domains
        it did not rank (suppressed) are named under the axes, not drawn.
    names : mapping or Series or None, default=None
        Display names of the domains.
    language : {"en", "vi"}, default="en"
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Domains on the y axis in rank order; markers (line labelled ``"rank"``) at the
        ranks, bars (collection labelled ``"rank interval"``) from ``rank_low`` to
        ``rank_high``.  The key sits above the axes.
    """
    from matplotlib.lines import Line2D

    language = _check_language(language)
    tab = league.to_frame() if hasattr(league, "to_frame") else pd.DataFrame(league)
    if "element" in tab.columns or "item" in tab.columns:
        raise SatsampleError("plot_ranks draws an overall league table (table='overall')")
    tab = tab.sort_values(["rank", "domain"], kind="stable").reset_index(drop=True)
    keys = tab["domain"].astype(str)
    nm = _lookup(names, keys, "names")
    labels = (keys if nm is None else nm.astype(str)).tolist()
    n = len(tab)
    ax = _axes(ax, (7.0, float(min(max(2.5, 0.17 * n + 1.6), 30.0))))
    y = np.arange(n)[::-1].astype(float)
    r = tab["rank"].to_numpy(dtype=float)
    lo = tab["rank_low"].to_numpy(dtype=float)
    hi = tab["rank_high"].to_numpy(dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.hlines(y[ok], lo[ok], hi[ok], color="0.55", linewidth=2, label="rank interval")
    review = (tab["status"].astype(str) == "review").to_numpy() if "status" in tab.columns \
        else np.zeros(n, bool)
    ax.plot(r, y, "o", color="#08306b", ms=4, label="rank")
    if review.any():
        ax.plot(r[review], y[review], "o", color="#08306b", mfc="white", ms=4,
                label="review")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=_SMALL)
    ax.set_ylim(-0.7, n - 0.3)
    top = max(n, float(np.nanmax(hi)) if ok.any() else n)
    ax.set_xlim(0.0, top + 1.0)
    ax.set_xlabel(_t(language, "rank_axis"), fontsize=_NORMAL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], ls="none", marker="o", color="#08306b", ms=4,
                      label=_t(language, "rank")),
               Line2D([], [], color="0.55", lw=2, label=_t(language, "rank_interval"))]
    if review.any():
        handles.append(Line2D([], [], ls="none", marker="o", color="#08306b", mfc="white",
                              ms=4, label=_t(language, "review")))
    _key_above(ax, handles, ncol=3)
    sup = getattr(league, "suppressed", None)
    if sup is not None and len(sup):
        skeys = sup["domain"].astype(str)
        snm = _lookup(names, skeys, "names") if names is not None else None
        listed = (skeys if snm is None else snm.astype(str)).tolist()
        text = _t(language, "not_ranked", names=", ".join(listed))
        # under the axes, inside the figure's layout (never over the data)
        fig = ax.figure
        if len(fig.axes) == 1:
            width = max(40, int(fig.get_figwidth() * 0.9 * 72 / (0.56 * _SMALL)))
            fig.supxlabel(textwrap.fill(text, width), fontsize=_SMALL, color="0.25")
        else:
            width = max(30, int(ax.get_position().width * fig.get_figwidth() * 72
                                / (0.56 * _NORMAL)))
            ax.set_xlabel(ax.get_xlabel() + "\n\n" + textwrap.fill(text, width),
                          fontsize=_NORMAL)
    return ax


# --------------------------------------------------------------------------- weights
def _array_step(name: str, w: np.ndarray) -> dict[str, Any]:
    w = np.asarray(w, dtype=float)
    w = w[np.isfinite(w) & (w > 0)]
    s1, s2 = float(w.sum()), float((w**2).sum())
    return {"label": name, "min": float(w.min()) if w.size else np.nan,
            "max": float(w.max()) if w.size else np.nan,
            "mean": s1 / w.size if w.size else np.nan,
            "deff": w.size * s2 / s1**2 if s1 > 0 else np.nan,
            "neff": s1**2 / s2 if s2 > 0 else np.nan}


def plot_weights(
    design: Any,
    *,
    steps: Mapping[str, Any] | None = None,
    log: bool = True,
    language: Language = "en",
    ax: Axes | None = None,
) -> Axes:
    """Weight diagnostics: each weighting step's range, mean and Kish design effect.

    Parameters
    ----------
    design : SurveyDesign
        A design after weighting: one row per entry of ``design.history``
        (:class:`~satsample.design.WeightStep`, the first being the declared design
        weights), top to bottom in the order applied.
    steps : mapping of str to array-like or None, default=None
        Further weights to draw as rows after the history (e.g. those of an intermediate
        design), summarised the same way.
    log : bool, default=True
        Logarithmic weight axis.
    language : {"en", "vi"}, default="en"
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        One chart type for every row: a bar from the smallest to the largest weight (the
        collection labelled ``"range"``), a diamond at the mean weight (line labelled
        ``"mean"``) and the Kish design effect and effective sample size written beside
        it; the key sits above the axes.
    """
    from matplotlib.lines import Line2D

    language = _check_language(language)
    history = tuple(getattr(design, "history", ()) or ())
    if getattr(design, "weights", None) is None:
        raise SatsampleError("design has no weights (expected a SurveyDesign)")
    rows: list[dict[str, Any]] = []
    for i, st in enumerate(history):
        flag = "" if st.converged in (None, True) else _t(language, "not_converged")
        rows.append({"label": _t(language, "step", i=i + 1, method=st.method) + flag,
                     "min": st.weight_min, "max": st.weight_max,
                     "mean": st.weight_sum / st.n_rows if st.n_rows else np.nan,
                     "deff": st.kish_deff, "neff": st.effective_n})
    for name, w in (steps or {}).items():
        rows.append(_array_step(str(name), np.asarray(w, dtype=float)))
    if not rows:
        rows.append(_array_step(_t(language, "weight_axis_lin"),
                                np.asarray(design.weights, dtype=float)))
    n = len(rows)
    ax = _axes(ax, (7.0, float(min(max(2.2, 0.42 * n + 1.3), 30.0))))
    y = np.arange(n)[::-1].astype(float)
    ax.hlines(y, [r["min"] for r in rows], [r["max"] for r in rows], color="#6baed6",
              lw=5, label="range")
    ax.plot([r["mean"] for r in rows], y, "D", color="#08306b", ms=5, ls="none",
            label="mean")
    for yy, r in zip(y, rows, strict=True):
        ax.annotate(_t(language, "kish", deff=_num(r["deff"], 2, language),
                       neff=_num(r["neff"], 0, language)),
                    (r["max"], yy), xytext=(5, 0), textcoords="offset points",
                    va="center", fontsize=_SMALL)
    ax.set_yticks(y)
    ax.set_yticklabels([r["label"] for r in rows], fontsize=_SMALL)
    ax.set_ylim(-0.7, n - 0.3)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    lo_x, hi_x = ax.get_xlim()
    ax.set_xlim(lo_x, hi_x * (6.0 if log else 1.6))  # room for the annotations
    ax.set_xlabel(_t(language, "weight_axis" if log else "weight_axis_lin"), fontsize=_NORMAL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.grid(axis="x", alpha=0.3)
    _key_above(ax, [Line2D([], [], color="#6baed6", lw=5, label=_t(language, "weight_range")),
                    Line2D([], [], ls="none", marker="D", color="#08306b", ms=5,
                           label=_t(language, "weight_mean"))])
    return ax


# --------------------------------------------------------------------------- allocation
def plot_allocation(
    allocation: Any,
    *,
    kind: Literal["sizes", "moe"] = "sizes",
    scale: float = 100.0,
    language: Language = "en",
    ax: Axes | None = None,
) -> Axes:
    """The design plan: sample size against stratum size, or the expected margins of error.

    Parameters
    ----------
    allocation : Allocation
        Result of :func:`satsample.allocation.allocate` or
        :func:`satsample.allocation.allocate_for_precision` (read through ``to_frame()``).
    kind : {"sizes", "moe"}, default="sizes"
        ``"sizes"``: :math:`n_h` against :math:`N_h` (log-log, equal decades on both axes)
        with the take-all line :math:`n = N` and, when the plan has a publication minimum,
        the units needed to publish; ``"moe"``: expected margin of error per stratum,
        sorted, with the targets when the allocation has them, on an axis from 0.
    scale : float, default=100
        Scale of the margins of error (100 = points on the 0-100 scale).
    language : {"en", "vi"}, default="en"
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        ``"sizes"``: the points are the line labelled ``"strata"`` (x = N_h, y = n_h).
        ``"moe"``: the line labelled ``"expected"`` (x = scale * expected_moe) and
        ``"target"``.
    """
    check_choice(kind, name="kind", allowed=("sizes", "moe"))
    language = _check_language(language)
    scale = _check_scale(scale)
    tab = allocation.to_frame() if hasattr(allocation, "to_frame") else pd.DataFrame(allocation)
    if kind == "sizes":
        ax = _axes(ax, (5.5, 5.0))
        N = tab["N_h"].to_numpy(dtype=float)
        nh = tab["n_h"].to_numpy(dtype=float)
        ax.plot(N, nh, "o", color="#08306b", alpha=0.8, ms=4, label="strata")
        if "take_all" in tab.columns and tab["take_all"].any():
            m = tab["take_all"].to_numpy(dtype=bool)
            ax.plot(N[m], nh[m], "s", mfc="none", color="#cb181d", markersize=8,
                    label="take all")
        need = None
        if "respondents_needed" in tab.columns and "expected_respondents" in tab.columns:
            rr = np.asarray(allocation.options.get("response_rate", 1.0), dtype=float)
            need = float(np.max(np.asarray(tab["respondents_needed"], dtype=float) / rr))
        small = min(N.min(), nh.min(), need if need is not None else np.inf) if N.size else 1.5
        lo = float(max(1.0, small / 1.5))
        top = float(max(N.max(), nh.max()) * 1.5) if N.size else 10.0
        ax.plot([lo, top], [lo, top], ":", color="0.5", label="n = N")
        if need is not None:
            ax.axhline(need, color="#cb181d", lw=1, ls="--", label="publication minimum")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, top)
        ax.set_ylim(lo, top)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(_t(language, "size_N"), fontsize=_NORMAL)
        ax.set_ylabel(_t(language, "size_n"), fontsize=_NORMAL)
        ax.tick_params(labelsize=_SMALL)
        words = {"strata": _t(language, "strata"), "take all": _t(language, "take_all"),
                 "n = N": _t(language, "n_eq_N"),
                 "publication minimum": _t(language, "publication_min")}
        handles = ax.get_lines()
        from matplotlib.lines import Line2D

        key = [Line2D([], [], ls=h.get_linestyle(), marker=h.get_marker(), color=h.get_color(),
                      mfc=h.get_markerfacecolor(), label=words[h.get_label()])
               for h in handles]
        _key_above(ax, key, ncol=2)
        ax.grid(alpha=0.3, which="major")
        return ax
    if "expected_moe" not in tab.columns:
        raise SatsampleError(
            "allocation has no expected margins of error: allocate with sd= or p= (or "
            "allocate_for_precision) to plot kind='moe'"
        )
    tab = tab.sort_values("expected_moe", ascending=False, kind="stable")
    n = len(tab)
    ax = _axes(ax, (6.0, float(min(max(2.5, 0.17 * n + 1.4), 30.0))))
    y = np.arange(n)[::-1].astype(float)
    exp = scale * tab["expected_moe"].to_numpy(dtype=float)
    ax.plot(exp, y, "o", color="#08306b", ms=4, label="expected")
    top = float(np.nanmax(exp)) if n else 1.0
    if "target_moe" in tab.columns:
        tgt = scale * tab["target_moe"].to_numpy(dtype=float)
        ax.plot(tgt, y, "|", color="#cb181d", markersize=10, mew=1.5, label="target")
        top = max(top, float(np.nanmax(tgt)))
    ax.set_yticks(y)
    ax.set_yticklabels([str(s) for s in tab.index], fontsize=_SMALL)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0.0, top * 1.15)  # from zero: the length of a margin is its size
    ax.set_xlabel(_t(language, "moe_axis"), fontsize=_NORMAL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.lines import Line2D

    key = [Line2D([], [], ls="none", marker="o", color="#08306b", ms=4,
                  label=_t(language, "expected_moe"))]
    if "target_moe" in tab.columns:
        key.append(Line2D([], [], ls="none", marker="|", color="#cb181d", ms=10, mew=1.5,
                          label=_t(language, "target_moe")))
    _key_above(ax, key)
    return ax


# --------------------------------------------------------------------------- change
def plot_change(
    change: Any,
    *,
    names: Mapping[str, str] | pd.Series | None = None,
    suppressed: Sequence[str] = (),
    scale: float = 100.0,
    language: Language = "en",
    ax: Axes | None = None,
) -> Axes:
    """Change since last year per domain, with intervals; significant changes marked.

    Parameters
    ----------
    change : Change
        Result of :func:`satsample.outputs.change.change` at level ``"overall"``.
    names : mapping or Series or None, default=None
        Display names of the domains.
    suppressed : sequence of str, default=()
        Domains whose estimate (either year) is not published: left out, never drawn.
    scale : float, default=100
        Scale of the changes (100 = points on the 0-100 scale).
    language : {"en", "vi"}, default="en"
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Domains sorted by change (largest increase on top).  Markers are the lines
        labelled ``"increase"``, ``"decrease"`` (interval excludes 0; filled) and
        ``"no significant change"`` (open), x = ``scale * change``; bars (collection
        labelled ``"interval"``) span ``scale * ci_low`` to ``scale * ci_high``; a line
        at 0.
    """
    from matplotlib.lines import Line2D

    language = _check_language(language)
    scale = _check_scale(scale)
    tab = change.to_frame() if hasattr(change, "to_frame") else pd.DataFrame(change)
    if "element" in tab.columns or "item" in tab.columns:
        raise SatsampleError("plot_change draws an overall change (table='overall')")
    hidden = {str(s) for s in suppressed}
    tab = tab[~tab["domain"].astype(str).isin(hidden)]
    tab = tab.sort_values(["change", "domain"], ascending=[False, True],
                          kind="stable").reset_index(drop=True)
    keys = tab["domain"].astype(str)
    nm = _lookup(names, keys, "names")
    labels = (keys if nm is None else nm.astype(str)).tolist()
    n = len(tab)
    ax = _axes(ax, (7.0, float(min(max(2.5, 0.17 * n + 1.6), 30.0))))
    y = np.arange(n)[::-1].astype(float)
    d = scale * tab["change"].to_numpy(dtype=float)
    lo = scale * tab["ci_low"].to_numpy(dtype=float)
    hi = scale * tab["ci_high"].to_numpy(dtype=float)
    up = lo > 0
    down = hi < 0
    ns = ~(up | down)
    ax.axvline(0.0, color="0.3", lw=1)
    ax.hlines(y, lo, hi, color="0.6", lw=1.3, label="interval")
    ax.plot(d[up], y[up], "o", color="#1a9850", ms=5, ls="none", label="increase")
    ax.plot(d[down], y[down], "o", color="#d73027", ms=5, ls="none", label="decrease")
    ax.plot(d[ns], y[ns], "o", color="0.35", mfc="white", ms=5, ls="none",
            label="no significant change")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=_SMALL)
    ax.set_ylim(-0.7, n - 0.3)
    span = float(np.nanmax(np.abs(np.concatenate([lo, hi])))) if n else 1.0
    ax.set_xlim(-1.1 * span, 1.1 * span)  # symmetric about no change
    ax.set_xlabel(_t(language, "change_axis"), fontsize=_NORMAL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.grid(axis="x", alpha=0.3)
    pct = round(100 * float(dict(getattr(change, "options", {}) or {}).get("level", 0.95)))
    _key_above(ax, [
        Line2D([], [], ls="none", marker="o", color="#1a9850", ms=5,
               label=_t(language, "change_sig_up")),
        Line2D([], [], ls="none", marker="o", color="#d73027", ms=5,
               label=_t(language, "change_sig_down")),
        Line2D([], [], ls="none", marker="o", color="0.35", mfc="white", ms=5,
               label=_t(language, "change_ns")),
        Line2D([], [], color="0.6", lw=1.3, label=_t(language, "interval", pct=pct)),
    ])
    return ax


# --------------------------------------------------------------------------- response
def plot_response_rates(
    table: pd.DataFrame,
    *,
    language: Language = "en",
    ax: Axes | None = None,
) -> Axes:
    """Response rate by agency, grouped by tier, on a 0-100 axis with the mean of agencies.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per agency: ``agency`` (id), ``rate`` (share in [0, 1]) and optionally
        ``tier`` and ``name`` (display name).
    language : {"en", "vi"}, default="en"
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Agencies sorted by rate within tier (headed in bold); the line labelled
        ``"rate"`` has x = 100 * rate; a dashed line at the unweighted mean of agencies,
        named in the key.

    Raises
    ------
    SatsampleError
        A missing column, or a rate outside [0, 1] (the message names the agency).
    """
    from matplotlib.lines import Line2D

    language = _check_language(language)
    if not isinstance(table, pd.DataFrame):
        raise SatsampleError(f"table must be a DataFrame, got {type(table).__name__}")
    missing = [c for c in ("agency", "rate") if c not in table.columns]
    if missing:
        raise SatsampleError(f"response-rate table has no column(s) {missing} (expected "
                             "agency, rate and optionally tier, name)")
    rate = pd.to_numeric(table["rate"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rate) | (rate < 0) | (rate > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SatsampleError(
            f"response rate of agency {table['agency'].iloc[i]!s} is "
            f"{table['rate'].iloc[i]!s}; rates are shares in [0, 1] (0.6 = 60 %)")
    rows = pd.DataFrame({"domain": table["agency"].astype(str).to_numpy(),
                         "estimate": rate})
    names = dict(zip(rows["domain"], table["name"].astype(str))) if "name" in table.columns \
        else None
    tier = dict(zip(rows["domain"], table["tier"].astype(str))) if "tier" in table.columns \
        else None
    rows = _domain_rows(rows, names=names, tier=tier, by_order="estimate")
    items = _layout(rows, grouped=tier is not None, language=language)
    n = len(items)
    ax = _axes(ax, (6.5, float(min(max(2.5, 0.17 * n + 1.4), 30.0))))
    ypos = np.arange(n)[::-1].astype(float)
    ys = np.array([y for y, (k, _) in zip(ypos, items, strict=True) if k == "row"])
    idx = [v for k, v in items if k == "row"]
    x = 100 * rows["estimate"].to_numpy(dtype=float)[idx]
    ax.hlines(ys, 0, x, color="#c6dbef", lw=2)
    ax.plot(x, ys, "o", color="#08306b", ms=4, ls="none", label="rate")
    mean = 100 * float(np.mean(rate))
    ax.axvline(mean, color="#cb181d", ls="--", lw=1)
    labels = [str(v) if k == "header" else str(rows["name"].iloc[v]) for k, v in items]
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=_SMALL)
    for tl, (k, _) in zip(ax.get_yticklabels(), items, strict=True):
        if k == "header":
            tl.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0, 100)
    ax.set_xlabel(_t(language, "rate_axis"), fontsize=_NORMAL)
    ax.tick_params(axis="x", labelsize=_SMALL)
    ax.grid(axis="x", alpha=0.3)
    _key_above(ax, [
        Line2D([], [], ls="none", marker="o", color="#08306b", ms=4,
               label=_t(language, "rate")),
        Line2D([], [], color="#cb181d", ls="--", lw=1,
               label=_t(language, "mean_agencies", est=_num(mean, 1, language))),
    ])
    return ax


# --------------------------------------------------------------------------- legibility
def _legibility_problems(fig: Figure, *, min_size: float = MIN_FONT_PT) -> list[str]:
    """Text smaller than ``min_size`` pt, and tick labels that overlap, at the figure's size.

    Draws the figure with the Agg renderer and compares the extents the renderer gives.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out: list[str] = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if t.get_fontsize() < min_size - 1e-9:
            out.append(f"text {t.get_text()!r} is {t.get_fontsize():g} pt < {min_size:g} pt")
    # free text (figure texts, titles, axis labels, keys, notes in the axes) must not overlap
    free: list[Any] = list(fig.texts)
    for obj in (getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None),
                getattr(fig, "_supylabel", None)):
        if obj is not None:
            free.append(obj)
    for leg in fig.legends:
        free.extend(leg.get_texts())
    for ax in fig.axes:
        free += [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.texts]
        if ax.get_legend() is not None:
            free.extend(ax.get_legend().get_texts())
    seen: set[int] = set()
    free = [t for t in free if t.get_visible() and t.get_text().strip()
            and not (id(t) in seen or seen.add(id(t)))]
    if len(free) > 1:
        ext = np.array([tuple(t.get_window_extent(renderer).extents) for t in free])
        x0, y0, x1, y1 = (ext[:, k][:, None] for k in range(4))
        inter = ((np.minimum(x1, x1.T) - np.maximum(x0, x0.T) > 0.5)
                 & (np.minimum(y1, y1.T) - np.maximum(y0, y0.T) > 0.5))
        i_idx, j_idx = np.nonzero(np.triu(inter, k=1))
        for i, j in zip(i_idx[:10], j_idx[:10], strict=True):
            out.append(f"texts {free[i].get_text()[:40]!r} and {free[j].get_text()[:40]!r} "
                       "overlap")
    for ax in fig.axes:
        for axis_name, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels
                     if t.get_visible() and t.get_text().strip()]
            key = (lambda b: b[1].x0) if axis_name == "x" else (lambda b: b[1].y0)
            boxes.sort(key=key)
            for (ta, a), (tb, b) in itertools.pairwise(boxes):
                if a.overlaps(b):
                    out.append(f"{axis_name} tick labels {ta!r} and {tb!r} overlap")
    return out
