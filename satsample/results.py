"""Result objects of the estimators: frozen values with tables, options and a summary.

An :class:`Estimate` (totals, means, ratios, proportions) or an
:class:`IndexEstimate` (satisfaction index) records the numbers, the options
with statistical meaning (variance method, level, interval method, lonely-PSU
rule, replicate kind), the rows excluded and why, and renders a
:class:`Summary` as text or HTML (notebooks call ``_repr_html_``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._compat import renamed_keywords
from ._tables import TableField
from ._validation import SatsampleError, check_choice

__all__ = ["Estimate", "IndexEstimate", "Summary"]


def _frozen_mapping(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True, kw_only=True)
class Summary:
    """A printable summary: a title, (label, value) lines and a table.

    Attributes
    ----------
    title : str
    info : tuple of (str, str)
        Header lines (options, design, exclusions).
    table : pandas.DataFrame
        The numbers.
    notes : tuple of str
    """

    title: str
    info: tuple[tuple[str, str], ...] = ()
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: tuple[str, ...] = ()

    def as_text(self, *, decimals: int = 4) -> str:
        """Plain-text rendering (``decimals`` digits after the point for floats)."""
        lines = [self.title, "=" * len(self.title)]
        width = max((len(k) for k, _ in self.info), default=0)
        lines += [f"{k.ljust(width)} : {v}" for k, v in self.info]
        lines.append("")
        with pd.option_context("display.max_rows", 200, "display.width", 160):
            lines.append(self.table.to_string(index=False, float_format=lambda x: f"{x:.{decimals}f}"))
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_html(self, *, decimals: int = 4) -> str:
        """HTML rendering; every text is escaped with :func:`html.escape`."""
        esc = html.escape
        rows = "".join(
            f"<tr><th style='text-align:left'>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
            for k, v in self.info
        )
        head = "".join(f"<th>{esc(str(c))}</th>" for c in self.table.columns)
        body = []
        for rec in self.table.itertuples(index=False):
            cells = []
            for v in rec:
                if isinstance(v, (float, np.floating)):
                    text = "" if np.isnan(v) else f"{v:.{decimals}f}"
                else:
                    text = str(v)
                cells.append(f"<td>{esc(text)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        notes = "".join(f"<p><em>{esc(n)}</em></p>" for n in self.notes)
        return (
            f"<div class='satsample-summary'><h4>{esc(self.title)}</h4>"
            f"<table>{rows}</table><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{notes}</div>"
        )

    def _repr_html_(self) -> str:
        return self.as_html()

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        # at a plain REPL, ``est.summary()`` prints the table, as ``print()`` would
        return self.as_text()


def _cell_labels(table: pd.DataFrame, by: Sequence[str], variable: str | None) -> list[str]:
    parts = [table[c].astype(str) for c in by]
    if variable is not None:
        parts.append(table[variable].astype(str))
    if not parts:
        return ["estimate"] * len(table)
    out = parts[0]
    for p in parts[1:]:
        out = out + ":" + p
    return list(out)


def _vcov_frame(fn: Callable[[], np.ndarray] | None, labels: list[str]) -> pd.DataFrame:
    if fn is None:
        raise SatsampleError(
            "this estimate carries no covariance matrix (quantiles and results built by hand "
            "have none; with_replicates() gives the replicate covariance of any statistic)")
    v = np.array(fn(), dtype=np.float64)
    v.setflags(write=False)
    return pd.DataFrame(v, index=labels, columns=labels)


def _variance_words(options: Mapping[str, Any], design: Mapping[str, Any]) -> str:
    variance = options.get("variance")
    if variance == "replicate":
        kind = options.get("replicate_kind")
        r = design.get("replicates")
        return f"replicate variance ({kind}{'' if r is None else f', R={r}'})"
    return f"{variance} variance" if variance else "no variance"


def _level_words(options: Mapping[str, Any]) -> str:
    level = options.get("level")
    return "" if level is None else f", {100 * float(level):g}% intervals"


def _options_info(options: Mapping[str, Any], excluded: Mapping[str, int]) -> list[tuple[str, str]]:
    info = [(str(k), str(v)) for k, v in options.items()]
    for reason, count in excluded.items():
        info.append(("excluded", f"{count} row(s): {reason}"))
    return info


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """Totals, means, ratios or proportions, overall or by domain.

    Attributes
    ----------
    statistic : {"total", "mean", "ratio", "proportion"}
    table : pandas.DataFrame
        Columns ``[<by columns...>, "variable", "estimate", "se", "ci_low",
        "ci_high", "df", "deff", "n"]``; ``n`` counts the respondents with a
        usable value (and a nonzero weight) in the domain.  (Domain, variable)
        cells with no usable value are not rows of the table; they are counted
        in :attr:`empty_cells`.
    by : tuple of str
        Domain columns (empty for the whole population).
    variables : tuple of str
    options : mapping
        Options with statistical meaning: ``variance`` ("taylor" or
        "replicate"), ``level``, ``ci_method``, ``lonely_psu``,
        ``replicate_kind``, ``mse``, ``na``, ``deff``.
    excluded : mapping of str to int
        Rows left out of some estimate, by reason.
    empty_cells : int
        (Domain cell, variable) pairs of the full cross-classification of the
        ``by`` levels with no usable observation (not returned).
    n_cells_possible : int
        Size of that cross-classification times the number of variables.
    replicate_estimates : ndarray of shape (R, len(table)) or None
        The estimates under every replicate (replicate variance only).
    design_summary : mapping
        n, strata, PSUs, degrees of freedom of the design.
    """

    statistic: str
    table: pd.DataFrame = TableField()
    by: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    excluded: Mapping[str, int] = field(default_factory=dict)
    empty_cells: int = 0
    n_cells_possible: int = 0
    replicate_estimates: np.ndarray | None = None
    design_summary: Mapping[str, Any] = field(default_factory=dict)
    vcov_fn: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen_mapping(self.options))
        object.__setattr__(self, "excluded", _frozen_mapping(self.excluded))
        object.__setattr__(self, "design_summary", _frozen_mapping(self.design_summary))
        if self.replicate_estimates is not None:
            self.replicate_estimates.setflags(write=False)

    def to_frame(self) -> pd.DataFrame:
        """Return a copy of :attr:`table`."""
        return self.table.copy()

    def __repr__(self) -> str:
        t = self.table
        dom = f" by {', '.join(self.by)}" if self.by else ""
        return (f"<Estimate: {self.statistic} of {len(self.variables)} variable(s){dom}, "
                f"{len(t)} row(s); {_variance_words(self.options, self.design_summary)}"
                f"{_level_words(self.options)}; see .table, .summary(), .vcov()>")

    @property
    def labels(self) -> list[str]:
        """One label per row of :attr:`table`: ``"<domain>:<variable>"`` as R's ``svyby`` names them."""
        return _cell_labels(self.table, self.by, "variable")

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of all the estimates, across variables and domains.

        R's ``vcov(svyby(..., covmat = TRUE))``: Taylor linearisation of every
        (domain, variable) estimate on the full design, or the replicate
        covariance of the replicate estimates.  Rows and columns follow
        :attr:`table` and are labelled by :attr:`labels`.

        Returns
        -------
        pandas.DataFrame
            Square, symmetric; its diagonal is ``table["se"] ** 2``.
        """
        return _vcov_frame(self.vcov_fn, self.labels)

    def summary(self) -> Summary:
        """A :class:`Summary` of the estimate (text and HTML)."""
        info = _options_info(self.options, self.excluded)
        info.insert(0, ("design", ", ".join(f"{k}={v}" for k, v in self.design_summary.items())))
        notes = []
        if self.empty_cells:
            notes.append(
                f"{self.empty_cells} of {self.n_cells_possible} (domain, variable) cells have no "
                "usable observation and are not shown"
            )
        return Summary(title=f"Survey {self.statistic}", info=tuple(info), table=self.to_frame(),
                       notes=tuple(notes))

    def _repr_html_(self) -> str:
        return self.summary().as_html()


@dataclass(frozen=True, kw_only=True)
class IndexEstimate:
    """Satisfaction index: overall, element and criterion (item) estimates by domain.

    Attributes
    ----------
    overall : pandas.DataFrame
        ``[<by...>, "estimate", "se", "ci_low", "ci_high", "df", "deff", "n"]``,
        one row per domain.
    elements : pandas.DataFrame
        The same with an ``"element"`` column, one row per domain and element.
    items : pandas.DataFrame
        The same with ``"element"`` and ``"item"`` columns.  A criterion with no
        usable answer in a domain has NaN estimate and ``n = 0`` (it is left
        out of its element's mean).
    replicate_estimates : dict or None
        ``{"overall": (R, G), "elements": (R, G, E), "items": (R, G, K)}``.
    questionnaire : Questionnaire
    by : tuple of str
    options : mapping
    excluded : mapping of str to int
    empty_cells : int
        Cells of the cross-classification of the ``by`` levels with no row.
    design_summary : mapping

    Notes
    -----
    Estimates are on the 0-1 scale for the ``"satisfied"`` and
    ``"top_two_box"`` measures (multiply by 100 for published percentages) and
    on the answer scale for ``"mean_score"``.
    """

    overall: pd.DataFrame = TableField()
    elements: pd.DataFrame = TableField()
    items: pd.DataFrame = TableField()
    questionnaire: Any
    by: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    excluded: Mapping[str, int] = field(default_factory=dict)
    empty_cells: int = 0
    replicate_estimates: Mapping[str, np.ndarray] | None = None
    design_summary: Mapping[str, Any] = field(default_factory=dict)
    vcov_fn: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen_mapping(self.options))
        object.__setattr__(self, "excluded", _frozen_mapping(self.excluded))
        object.__setattr__(self, "design_summary", _frozen_mapping(self.design_summary))
        if self.replicate_estimates is not None:
            for arr in self.replicate_estimates.values():
                arr.setflags(write=False)
            object.__setattr__(self, "replicate_estimates",
                               _frozen_mapping(self.replicate_estimates))

    @renamed_keywords(level="table")
    def to_frame(self, table: Literal["overall", "element", "item"] = "overall") -> pd.DataFrame:
        """Return a copy of one table of the index: ``"overall"``, ``"element"`` or ``"item"``.

        ``table`` was called ``level`` before 0.2 (``level`` now always means a confidence
        level, and ``tier`` the agency tier: province, district, commune).
        """
        check_choice(table, name="table", allowed=("overall", "element", "item"))
        return {"overall": self.overall, "element": self.elements, "item": self.items}[table]

    def __repr__(self) -> str:
        q = self.questionnaire
        name = getattr(q, "name", "?")
        dom = (f"by {', '.join(self.by)} ({len(self.overall)} domains)" if self.by
               else "overall")
        return (f"<IndexEstimate: satisfaction index ({name!r}: "
                f"{len(getattr(q, 'elements', ()))} elements, {getattr(q, 'n_items', '?')} "
                f"items) {dom}; {_variance_words(self.options, self.design_summary)}"
                f"{_level_words(self.options)}; see .overall, .elements, .items, .summary(), "
                ".vcov()>")

    def vcov(self, table: Literal["overall", "element", "item"] = "overall") -> pd.DataFrame:
        """Covariance matrix of the estimates of one table, across domains (and elements/items).

        Taylor linearisation on the full design (R's ``svyby(..., covmat =
        TRUE)``) or the replicate covariance.  Rows and columns follow the
        table of :meth:`to_frame` (``"<domain>:<element or item>"`` labels).
        """
        check_choice(table, name="table", allowed=("overall", "element", "item"))
        if self.vcov_fn is None:
            raise SatsampleError("this estimate carries no covariance")
        q = self.questionnaire
        k, n_el = q.n_items, len(q.elements)
        outputs = {"overall": np.array([k + n_el]), "element": k + np.arange(n_el),
                   "item": np.arange(k)}[table]
        tab = self.to_frame(table)
        col = {"overall": None, "element": "element", "item": "item"}[table]
        fn = self.vcov_fn
        return _vcov_frame(lambda: fn(outputs), _cell_labels(tab, self.by, col))

    @renamed_keywords(level="table")
    def summary(self, *, table: Literal["overall", "element", "item"] = "overall") -> Summary:
        """A :class:`Summary` of one table of the index (overall, element or item)."""
        info = _options_info(self.options, self.excluded)
        info.insert(0, ("questionnaire", str(getattr(self.questionnaire, "name", ""))))
        info.insert(1, ("design", ", ".join(f"{k}={v}" for k, v in self.design_summary.items())))
        notes: Sequence[str] = ()
        if self.empty_cells:
            notes = (f"{self.empty_cells} domain cell(s) of the cross-classification have no "
                     "respondent and are not shown",)
        return Summary(title=f"Satisfaction index ({table})", info=tuple(info),
                       table=self.to_frame(table), notes=tuple(notes))

    def _repr_html_(self) -> str:
        return self.summary().as_html()
