"""Figures of the design, the weights and the results (matplotlib).

Each function takes a computed result, draws it on ``ax`` (a new figure when ``ax`` is
None) and returns the Axes; nothing is recomputed from data and nothing is shown or saved.
matplotlib is imported inside the functions, so ``import satsample`` does not load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ._validation import SatsampleError, check_choice
from .ranking import _level_data

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "plot_allocation",
    "plot_element_profile",
    "plot_index",
    "plot_ranks",
    "plot_weights",
]


def _axes(ax: Any, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new_ax = plt.subplots(figsize=figsize)
    return new_ax


def _height(n_rows: int) -> float:
    return float(min(max(2.5, 0.28 * n_rows + 1.2), 30.0))


def plot_index(
    estimate: Any,
    *,
    level: Literal["overall", "element", "item"] = "overall",
    key: str | None = None,
    by_order: Literal["estimate", "label", "table"] = "estimate",
    reference: bool | float = True,
    scale: float = 100.0,
    ax: Axes | None = None,
) -> Axes:
    """Domain indices with their confidence intervals, sorted, with the reference line.

    Parameters
    ----------
    estimate : IndexEstimate
        Result with ``by=`` domains.
    level : {"overall", "element", "item"}, default="overall"
        Index to draw; for ``"element"``/``"item"`` choose one with ``key``.
    key : str or None, default=None
        Element code or item name (required at those levels).
    by_order : {"estimate", "label", "table"}, default="estimate"
        Order of the domains from top to bottom: highest estimate first, alphabetical, or
        the order of the result table.
    reference : bool or float, default=True
        True draws the unweighted mean of the domain estimates (SIPAS national average);
        a float draws that value (on the 0-1 scale of the estimate); False draws nothing.
    scale : float, default=100
        Multiplier for display (100 = percent).
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Domains on the y axis (top = first in ``by_order``); the estimate markers are the
        line labelled ``"estimate"`` (x = ``scale * estimate``) and the interval bars span
        ``scale * ci_low`` to ``scale * ci_high``.
    """
    check_choice(by_order, name="by_order", allowed=("estimate", "label", "table"))
    tab, _ = _level_data(estimate, level)
    if level != "overall":
        col = "element" if level == "element" else "item"
        if key is None:
            raise SatsampleError(f"level={level!r} needs key= (one {col} to draw)")
        tab = tab[tab[col].astype(str) == str(key)]
        if tab.empty:
            raise SatsampleError(f"{col} {key!r} is not in the estimate")
    tab = tab[np.isfinite(tab["estimate"].to_numpy(dtype=float))]
    if by_order == "estimate":
        tab = tab.sort_values(["estimate", "domain"], ascending=[False, True], kind="stable")
    elif by_order == "label":
        tab = tab.sort_values("domain", kind="stable")
    n = len(tab)
    ax = _axes(ax, (7.0, _height(n)))
    y = np.arange(n)[::-1].astype(float)  # first row on top
    x = scale * tab["estimate"].to_numpy(dtype=float)
    has_ci = {"ci_low", "ci_high"} <= set(tab.columns)
    if has_ci:
        lo = scale * tab["ci_low"].to_numpy(dtype=float)
        hi = scale * tab["ci_high"].to_numpy(dtype=float)
        ax.hlines(y, lo, hi, color="0.45", linewidth=1.6, label="interval")
    ax.plot(x, y, "o", color="C0", markersize=5, label="estimate")
    if reference is not False and n:
        ref = float(tab["estimate"].mean()) if reference is True else float(reference)
        ax.axvline(scale * ref, color="C3", linestyle="--", linewidth=1.2,
                   label=f"reference {scale * ref:.2f}")
    ax.set_yticks(y)
    ax.set_yticklabels(tab["domain"].astype(str).tolist())
    ax.set_ylim(-0.7, n - 0.3)
    what = "index" if level == "overall" else f"{level} {key}"
    ax.set_xlabel(f"{what} ({'%' if scale == 100 else f'x{scale:g}'})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    return ax


def plot_element_profile(
    estimate: Any,
    domains: Sequence[str] | None = None,
    *,
    reference: bool = True,
    scale: float = 100.0,
    ax: Axes | None = None,
) -> Axes:
    """Element profile: each domain's element indices, one line per domain.

    Parameters
    ----------
    estimate : IndexEstimate
    domains : sequence of str or None, default=None
        Domain labels to draw (as in ``league_table(...).table["domain"]``); None draws all.
    reference : bool, default=True
        Also draw the unweighted mean over all domains (dashed black).
    scale : float, default=100
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        x = element codes in questionnaire order, one line per domain labelled with it.
    """
    tab, _ = _level_data(estimate, "element")
    q = getattr(estimate, "questionnaire", None)
    codes = list(q.element_codes) if q is not None else list(pd.unique(tab["element"]))
    wide = tab.pivot_table(index="domain", columns="element", values="estimate",
                           aggfunc="first", sort=False)
    wide = wide.reindex(columns=codes)
    if domains is not None:
        missing = [d for d in domains if d not in wide.index]
        if missing:
            raise SatsampleError(f"domains {missing} are not in the estimate")
        shown = wide.loc[list(domains)]
    else:
        shown = wide
    ax = _axes(ax, (7.0, 4.5))
    x = np.arange(len(codes))
    for dom, row in shown.iterrows():
        ax.plot(x, scale * row.to_numpy(dtype=float), marker="o", linewidth=1.2, label=str(dom))
    if reference:
        ax.plot(x, scale * wide.mean(axis=0).to_numpy(dtype=float), "k--", linewidth=2,
                label="mean of domains")
    labels = codes
    if q is not None:
        import textwrap

        labels = [e.code + "\n" + textwrap.fill(e.label, 14) for e in q.elements]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize="x-small")
    ax.set_ylabel(f"element index ({'%' if scale == 100 else f'x{scale:g}'})")
    ax.grid(axis="y", alpha=0.3)
    if len(shown) <= 12:
        ax.legend(fontsize="small", frameon=False, ncol=2)
    return ax


def plot_ranks(league: Any, *, ax: Axes | None = None) -> Axes:
    """Rank plot: each domain's rank with its rank interval, best on top.

    Parameters
    ----------
    league : LeagueTable
        Result of :func:`satsample.ranking.league_table` at level ``"overall"``.
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        Domains on the y axis in rank order; markers (line labelled ``"rank"``) at the
        ranks, bars from ``rank_low`` to ``rank_high``.
    """
    tab = league.to_frame() if hasattr(league, "to_frame") else pd.DataFrame(league)
    if "element" in tab.columns or "item" in tab.columns:
        raise SatsampleError("plot_ranks draws an overall league table (level='overall')")
    tab = tab.sort_values(["rank", "domain"], kind="stable")
    n = len(tab)
    ax = _axes(ax, (7.0, _height(n)))
    y = np.arange(n)[::-1].astype(float)
    r = tab["rank"].to_numpy(dtype=float)
    lo = tab["rank_low"].to_numpy(dtype=float)
    hi = tab["rank_high"].to_numpy(dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.hlines(y[ok], lo[ok], hi[ok], color="0.45", linewidth=2, label="rank interval")
    ax.plot(r, y, "o", color="C0", label="rank")
    ax.set_yticks(y)
    ax.set_yticklabels(tab["domain"].astype(str).tolist())
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(0.5, max(n, np.nanmax(hi) if ok.any() else n) + 0.5)
    ax.set_xlabel("rank (1 = highest index)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    return ax


def plot_weights(
    design: Any,
    *,
    steps: Mapping[str, Any] | None = None,
    log: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Weight diagnostics: distribution before and after weighting, and each step's range.

    Parameters
    ----------
    design : SurveyDesign
        A design after weighting.  Its declared weights (``design.design_weights``) and
        final analysis weights (``design.weights``) are drawn as box plots, and each entry
        of ``design.history`` (:class:`~satsample.design.WeightStep`) as a range bar from
        ``weight_min`` to ``weight_max`` with a marker at the mean weight
        (``weight_sum / n_rows``) and its Kish design effect.
    steps : mapping of str to array-like or None, default=None
        Intermediate weights to draw as further box plots (the design keeps only the declared
        and final weights, not those of every step), e.g.
        ``{"after nonresponse": d1.weights}`` from the intermediate designs.
    log : bool, default=True
        Logarithmic weight axis.
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        One row per distribution/step, top to bottom: declared weights, the history steps,
        ``steps``, final weights.
    """
    history = tuple(getattr(design, "history", ()) or ())
    dw = getattr(design, "design_weights", None)
    fw = getattr(design, "weights", None)
    if fw is None:
        raise SatsampleError("design has no weights (expected a SurveyDesign)")
    boxes: list[tuple[str, np.ndarray]] = []
    if dw is not None:
        boxes.append(("declared weights", np.asarray(dw, dtype=float)))
    for name, w in (steps or {}).items():
        boxes.append((str(name), np.asarray(w, dtype=float)))
    boxes.append(("final weights", np.asarray(fw, dtype=float)))
    rows = len(boxes) + len(history)
    ax = _axes(ax, (7.5, _height(rows) + 0.5))
    labels: list[str] = []
    pos = rows - 1.0
    # declared weights box on top
    first = boxes[0] if dw is not None else None
    positions: list[float] = []
    data: list[np.ndarray] = []
    if first is not None:
        w = first[1][first[1] > 0]
        data.append(w)
        positions.append(pos)
        labels.append(first[0])
        pos -= 1
    for i, st in enumerate(history):
        mean = st.weight_sum / st.n_rows if st.n_rows else np.nan
        ax.hlines(pos, st.weight_min, st.weight_max, color="C1", linewidth=3)
        ax.plot([mean], [pos], "D", color="C1")
        ax.annotate(f"Kish deff {st.kish_deff:.2f}, n_eff {st.effective_n:.0f}",
                    (st.weight_max, pos), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize="x-small")
        flag = "" if st.converged in (None, True) else " (not converged)"
        labels.append(f"step {i + 1}: {st.method}{flag}")
        pos -= 1
    for name, w in boxes[(1 if dw is not None else 0):]:
        data.append(w[w > 0])
        positions.append(pos)
        labels.append(name)
        pos -= 1
    ax.boxplot(data, positions=positions, orientation="horizontal", widths=0.55,
               showmeans=True, manage_ticks=False)
    ticks = np.arange(rows - 1, -1, -1, dtype=float)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize="small")
    ax.set_ylim(-0.7, rows - 0.3)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    lo_x, hi_x = ax.get_xlim()
    ax.set_xlim(lo_x, hi_x * (2.0 if log else 1.25))  # room for the annotations
    ax.set_xlabel("weight")
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_allocation(
    allocation: Any,
    *,
    kind: Literal["sizes", "moe"] = "sizes",
    scale: float = 100.0,
    ax: Axes | None = None,
) -> Axes:
    """The design plan: sample size against stratum size, or the expected margins of error.

    Parameters
    ----------
    allocation : Allocation
        Result of :func:`satsample.allocation.allocate` or
        :func:`satsample.allocation.allocate_for_precision` (read through ``to_frame()``:
        ``N_h``, ``n_h``, ``take_all``, ``expected_moe``, ``target_moe``).
    kind : {"sizes", "moe"}, default="sizes"
        ``"sizes"``: :math:`n_h` against :math:`N_h` (log-log) with the take-all line
        :math:`n = N`; ``"moe"``: expected margin of error per stratum (sorted), with the
        targets when the allocation has them.
    scale : float, default=100
        Multiplier of the margins of error (100 = percentage points).
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    matplotlib.axes.Axes
        ``"sizes"``: the points are the line labelled ``"strata"`` (x = N_h, y = n_h).
        ``"moe"``: the line labelled ``"expected"`` (x = scale * expected_moe).
    """
    check_choice(kind, name="kind", allowed=("sizes", "moe"))
    tab = allocation.to_frame() if hasattr(allocation, "to_frame") else pd.DataFrame(allocation)
    if kind == "sizes":
        ax = _axes(ax, (6.0, 5.0))
        N = tab["N_h"].to_numpy(dtype=float)
        nh = tab["n_h"].to_numpy(dtype=float)
        ax.plot(N, nh, "o", color="C0", alpha=0.8, label="strata")
        if "take_all" in tab.columns and tab["take_all"].any():
            m = tab["take_all"].to_numpy(dtype=bool)
            ax.plot(N[m], nh[m], "s", mfc="none", color="C3", markersize=9, label="take all")
        top = float(max(N.max(), nh.max())) if N.size else 1.0
        ax.plot([1, top], [1, top], ":", color="0.5", label="n = N")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("stratum size N_h")
        ax.set_ylabel("sample size n_h")
        ax.legend(fontsize="small", frameon=False)
        ax.grid(alpha=0.3, which="both")
        return ax
    if "expected_moe" not in tab.columns:
        raise SatsampleError(
            "allocation has no expected margins of error: allocate with sd= or p= (or "
            "allocate_for_precision) to plot kind='moe'"
        )
    tab = tab.sort_values("expected_moe", ascending=False, kind="stable")
    n = len(tab)
    ax = _axes(ax, (7.0, _height(n)))
    y = np.arange(n)[::-1].astype(float)
    ax.plot(scale * tab["expected_moe"].to_numpy(dtype=float), y, "o", color="C0",
            label="expected")
    if "target_moe" in tab.columns:
        ax.plot(scale * tab["target_moe"].to_numpy(dtype=float), y, "|", color="C3",
                markersize=12, label="target")
    ax.set_yticks(y)
    ax.set_yticklabels([str(s) for s in tab.index])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"expected margin of error ({'points' if scale == 100 else f'x{scale:g}'})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    return ax
