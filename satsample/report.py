"""One self-contained HTML report (and optionally an Excel workbook) of a survey round.

:func:`build_report` gathers the design summary, the allocation, the weighting history with
its diagnostics, the index tables with publication flags, the league table and the figures
into a single HTML file: CSS inline, figures embedded as base64 PNG, no external resource,
so the file can be mailed or archived as it is.  Every piece of text that comes from the
data (agency names, column values, messages) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._spreadsheet import protect_worksheet
from ._validation import SatsampleError
from .flags import publication_flags
from .ranking import _level_data

__all__ = ["build_report"]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.4;padding:0 1em}
h1{border-bottom:3px solid #2c5d8a;padding-bottom:.2em}
h2{color:#2c5d8a;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#eef3f8}
td.text,th.text{text-align:left}
tr.suppress td{background:#fde2e1}
tr.review td{background:#fff4d6}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.note{font-size:.85em;color:#555}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.15em 1em}
dl.kv dt{font-weight:600}
dl.kv dd{margin:0}
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_cell(value: Any, decimals: int) -> tuple[str, bool]:
    """Formatted text of a cell and whether it is text (left-aligned)."""
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else ""), True
    if isinstance(value, (int, np.integer)):
        return str(int(value)), False
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "", False
        if np.isinf(value):
            return "inf" if value > 0 else "-inf", False
        return f"{value:.{decimals}f}", False
    return ("" if value is None or (not isinstance(value, str) and pd.isna(value))
            else str(value)), True


def _table_html(df: pd.DataFrame, *, decimals: int = 2, row_class: str | None = None,
                index: bool = False, caption: str | None = None) -> str:
    """An escaped HTML table (every header and cell through html.escape)."""
    if index:
        df = df.reset_index()
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{_e(caption)}</caption>")
    heads = []
    for c in df.columns:
        cls = ' class="text"' if not pd.api.types.is_numeric_dtype(df[c]) else ""
        heads.append(f"<th{cls}>{_e(c)}</th>")
    parts.append("<thead><tr>" + "".join(heads) + "</tr></thead><tbody>")
    classes = (df[row_class].astype(str).tolist() if row_class and row_class in df.columns
               else [""] * len(df))
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        cells = []
        for v in row:
            text, is_text = _fmt_cell(v, decimals)
            cells.append(f'<td class="text">{_e(text)}</td>' if is_text else
                         f"<td>{_e(text)}</td>")
        cls = f' class="{_e(classes[i])}"' if classes[i] else ""
        parts.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _kv_html(items: Mapping[str, Any] | list[tuple[str, Any]]) -> str:
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
    return f'<dl class="kv">{body}</dl>'


def _figure_html(draw: Callable[[Any], Any], *, caption: str, height: float,
                 problems: list[str]) -> str:
    """Draw on a fresh (pyplot-free) figure and embed it as a base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, height), dpi=100)
    ax = fig.add_subplot()
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    except SatsampleError as exc:
        problems.append(f"figure '{caption}' not drawn: {exc}")
        return ""
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}"/>'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _percent(tab: pd.DataFrame, scale: float) -> pd.DataFrame:
    out = tab.copy()
    for c in ("estimate", "se", "ci_low", "ci_high", "reference", "diff", "diff_se"):
        if c in out.columns:
            out[c] = out[c] * scale
    return out


def _history_frame(design: Any) -> pd.DataFrame:
    rows = []
    for i, st in enumerate(getattr(design, "history", ()) or ()):
        params = "; ".join(f"{k}={v}" for k, v in st.params if k != "adjustment_factors")
        rows.append({"step": i + 1, "method": st.method, "converged": st.converged,
                     "n_iter": st.n_iter, "kish_deff": st.kish_deff,
                     "effective_n": st.effective_n, "weight_min": st.weight_min,
                     "weight_max": st.weight_max, "weight_sum": st.weight_sum,
                     "rows_weighted": st.n_rows, "options": params, "message": st.message})
    return pd.DataFrame(rows)


def _check_writable(path: Path, what: str) -> None:
    parent = path.parent
    if not parent.exists():
        raise SatsampleError(f"{what} {str(path)!r} cannot be written: folder "
                             f"{str(parent)!r} does not exist")
    if path.exists() and path.is_dir():
        raise SatsampleError(f"{what} {str(path)!r} cannot be written: it is a folder")


def build_report(
    *,
    estimate: Any,
    design: Any = None,
    allocation: Any = None,
    league: Any = None,
    path: str | Path,
    title: str = "Satisfaction survey report",
    excel_path: str | Path | None = None,
    flag_options: Mapping[str, Any] | None = None,
    scale: float = 100.0,
    decimals: int = 2,
) -> Path:
    """Write one self-contained HTML report of a survey round (and an Excel workbook).

    Parameters
    ----------
    estimate : IndexEstimate
        The index estimates (overall, elements, items) by domain.
    design : SurveyDesign or None, default=None
        The final (weighted) design: its summary and weighting history (each
        :class:`~satsample.design.WeightStep`: Kish deff, effective n, weight range,
        convergence, message) and the weight figure.
    allocation : Allocation or None, default=None
        The design plan (``to_frame()`` table and figures).
    league : LeagueTable or None, default=None
        A league table (:func:`satsample.ranking.league_table`) and its rank plot.
    path : str or Path
        The HTML file to write.
    title : str, default="Satisfaction survey report"
    excel_path : str, Path or None, default=None
        Also write the tables to this ``.xlsx`` workbook (pandas + openpyxl), one sheet per
        table.
    flag_options : mapping or None, default=None
        Options of :func:`satsample.flags.publication_flags` (its defaults when None).
    scale : float, default=100
        Display multiplier of estimates, SEs and intervals (100 = percent).
    decimals : int, default=2
        Decimals shown (SIPAS publishes percentages with two decimals).

    Returns
    -------
    pathlib.Path
        The HTML file written.

    Raises
    ------
    SatsampleError
        When ``path`` or ``excel_path`` cannot be written (the message names the path), or
        when openpyxl is missing for the workbook.

    Notes
    -----
    The HTML has no script and no external reference: styles are inline, figures are
    ``data:image/png;base64`` images drawn with matplotlib's Agg renderer (no pyplot
    state).  All text from the data, the options and the messages is passed through
    :func:`html.escape`, so a domain named ``<script>...`` shows as text.  Figures that
    cannot be drawn for this input (e.g. an allocation without margins of error) are left
    out and listed at the end of the report.
    """
    path = Path(path)
    _check_writable(path, "report path")
    if excel_path is not None:
        excel_path = Path(excel_path)
        _check_writable(excel_path, "excel_path")
    from . import __version__
    from .plotting import (
        plot_allocation,
        plot_element_profile,
        plot_index,
        plot_ranks,
        plot_weights,
    )

    problems: list[str] = []
    sheets: dict[str, pd.DataFrame] = {}
    body: list[str] = [f"<h1>{_e(title)}</h1>"]
    opts = dict(getattr(estimate, "options", {}) or {})
    q = getattr(estimate, "questionnaire", None)
    overall, _ = _level_data(estimate, "overall")
    n_dom = len(overall)

    # -- summary -------------------------------------------------------------------------
    info: list[tuple[str, Any]] = [("satsample version", __version__),
                                   ("questionnaire", getattr(q, "name", "")),
                                   ("domains (by)", ", ".join(map(str, getattr(estimate, "by", ())
                                                                  or ())) or "(none)"),
                                   ("number of domains", n_dom)]
    info += [(f"option: {k}", v) for k, v in opts.items()]
    for k, v in dict(getattr(estimate, "design_summary", {}) or {}).items():
        info.append((f"design: {k}", v))
    excluded = dict(getattr(estimate, "excluded", {}) or {})
    for k, v in excluded.items():
        info.append((f"excluded: {k}", v))
    body.append("<h2>Summary</h2>" + _kv_html(info))
    sheets["summary"] = pd.DataFrame(info, columns=["item", "value"]).astype(str)

    # -- design ------------------------------------------------------------------------
    if design is not None:
        dinfo = [("rows", design.n), ("strata", design.n_strata), ("PSUs", design.n_psu),
                 ("degrees of freedom", design.degf),
                 ("lonely PSU rule", getattr(design, "lonely_psu", "")),
                 ("replicates", "none" if design.replicates is None else
                  f"{design.replicates.kind}, R = {design.replicates.n_replicates}")]
        for role, col in dict(getattr(design, "columns", {}) or {}).items():
            dinfo.append((f"column: {role}", col))
        body.append("<h2>Design</h2>" + _kv_html(dinfo))
        hist = _history_frame(design)
        body.append("<h2>Weighting history and diagnostics</h2>")
        if hist.empty:
            body.append('<p class="note">No weighting step recorded.</p>')
        else:
            body.append(_table_html(hist, decimals=3))
            sheets["weighting"] = hist
        body.append(_figure_html(lambda ax: plot_weights(design, ax=ax),
                                 caption="Weights: declared, each step's range, final",
                                 height=1.2 + 0.45 * (len(hist) + 2), problems=problems))

    # -- allocation ----------------------------------------------------------------------
    if allocation is not None:
        at = allocation.to_frame()
        body.append("<h2>Allocation (design plan)</h2>")
        body.append(_kv_html([("rule", getattr(allocation, "rule", "")),
                              ("total sample size", getattr(allocation, "n", at["n_h"].sum())),
                              ("national margin of error",
                               getattr(allocation, "national_moe", None))]))
        body.append(_table_html(at, decimals=3, index=True))
        sheets["allocation"] = at.reset_index()
        body.append(_figure_html(lambda ax: plot_allocation(allocation, ax=ax),
                                 caption="Sample size n_h against stratum size N_h",
                                 height=4.5, problems=problems))
        if "expected_moe" in at.columns:
            body.append(_figure_html(
                lambda ax: plot_allocation(allocation, kind="moe", scale=scale, ax=ax),
                caption="Expected margin of error per stratum",
                height=1.2 + 0.25 * len(at), problems=problems))

    # -- index tables ---------------------------------------------------------------------
    fo = dict(flag_options or {})
    flagged = publication_flags(overall, **fo)
    show = _percent(flagged, scale)
    by_cols = [c for c in overall.columns if c not in {
        "domain", "estimate", "se", "ci_low", "ci_high", "df", "deff", "n"}]
    cols = ["domain", "estimate", "se", "ci_low", "ci_high", "df", "deff", "n",
            "effective_n", "status", "reason"]
    cols = [c for c in cols if c in show.columns]
    body.append("<h2>Satisfaction index by domain</h2>")
    body.append(f'<p class="note">Estimates, standard errors and intervals x{scale:g}. '
                "Rows marked red are suppressed, yellow need review (publication flags: "
                f"{_e(flagged.attrs.get('flag_options', {}))}).</p>")
    body.append(_table_html(show[cols], decimals=decimals, row_class="status"))
    sheets["overall"] = flagged.drop(columns=by_cols, errors="ignore")
    body.append(_figure_html(lambda ax: plot_index(estimate, scale=scale, ax=ax),
                             caption="Index by domain with confidence intervals "
                                     "(dashed: mean of domains)",
                             height=1.5 + 0.28 * n_dom, problems=problems))

    el, _ = _level_data(estimate, "element")
    if not el.empty:
        el_flag = publication_flags(el, **fo)
        wide = el.pivot_table(index="domain", columns="element", values="estimate",
                              aggfunc="first", sort=False) * scale
        if q is not None:
            wide = wide.reindex(columns=list(q.element_codes))
        body.append("<h2>Element indices</h2>")
        if q is not None:
            body.append(_kv_html([(e.code, e.label) for e in q.elements]))
        body.append(_table_html(wide, decimals=decimals, index=True))
        n_sup = int((el_flag["status"] == "suppress").sum())
        if n_sup:
            body.append(f'<p class="note">{n_sup} element estimate(s) fail the publication '
                        "rules; see the workbook or the elements table of the result.</p>")
        sheets["elements"] = el_flag
        body.append(_figure_html(lambda ax: plot_element_profile(estimate, scale=scale, ax=ax),
                                 caption="Element profile by domain", height=4.8,
                                 problems=problems))
    it, _ = _level_data(estimate, "item")
    if not it.empty:
        sheets["items"] = publication_flags(it, **fo)

    # -- league table ---------------------------------------------------------------------
    if league is not None:
        lt = _percent(league.to_frame(), scale)
        body.append("<h2>League table</h2>")
        lo = dict(getattr(league, "options", {}) or {})
        body.append(f'<p class="note">Ranks with {100 * (1 - lo.get("alpha", 0.05)):.0f} % '
                    "rank intervals from the replicate distribution; P(top k), P(bottom k); "
                    "difference from the reference with multiplicity-adjusted p-values "
                    f"({_e(lo.get('adjust', ''))}).</p>")
        body.append(_kv_html(lo))
        body.append(_table_html(lt, decimals=decimals))
        sheets["league"] = league.to_frame()
        if league.level == "overall":
            body.append(_figure_html(lambda ax: plot_ranks(league, ax=ax),
                                     caption="Ranks with rank intervals",
                                     height=1.5 + 0.28 * len(lt), problems=problems))

    if problems:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(p)}</li>" for p in problems)
                    + "</ul>")
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
           + "\n".join(b for b in body if b) + "</body></html>\n")
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise SatsampleError(f"report path {str(path)!r} cannot be written: {exc}") from exc
    if excel_path is not None:
        _write_excel(excel_path, sheets)
    return path


def _write_excel(path: Path, sheets: Mapping[str, pd.DataFrame]) -> None:
    try:
        import openpyxl  # noqa: F401
    except ImportError as exc:  # pragma: no cover - openpyxl is a test dependency
        raise SatsampleError("excel_path needs the openpyxl package (pip install openpyxl)"
                             ) from exc
    try:
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            for name, frame in sheets.items():
                out = frame.copy()
                for c in out.columns:
                    if out[c].dtype == object:
                        out[c] = out[c].map(lambda v: v if v is None or isinstance(
                            v, (str, int, float, bool)) else str(v))
                out.to_excel(writer, sheet_name=name[:31], index=False)
                protect_worksheet(writer.sheets[name[:31]])  # data text never becomes a formula
    except OSError as exc:
        raise SatsampleError(f"excel_path {str(path)!r} cannot be written: {exc}") from exc
