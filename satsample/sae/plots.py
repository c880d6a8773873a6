"""Diagnostic figures of a Fay-Herriot fit (matplotlib, imported inside the functions).

Each function draws on ``ax`` (a new figure when None) and returns the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .._validation import SatsampleError
from ..outputs.plotting import _axes
from .area_level import FayHerriotEstimate

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_residuals_qq", "plot_shrinkage", "plot_small_area"]


def _check(result: Any) -> FayHerriotEstimate:
    if not isinstance(result, FayHerriotEstimate):
        raise SatsampleError(f"result must be a FayHerriotEstimate, got {type(result).__name__}")
    return result


def plot_residuals_qq(result: FayHerriotEstimate, *, label: int = 3,
                      ax: Axes | None = None) -> Axes:
    """Normal Q-Q plot of the standardised residuals of the sampled areas.

    Parameters
    ----------
    result : FayHerriotEstimate
    label : int, default=3
        Label the ``label`` areas with the largest absolute residuals.
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Residual :math:`r_d = (y_d - x_d'\\hat\\beta)/\\sqrt{\\hat\\sigma^2_v + \\psi_d}`; under the
    model they are approximately N(0, 1), so the points should follow the line (Blom plotting
    positions :math:`(i - 3/8)/(D + 1/4)`).
    """
    res = _check(result)
    t = res.table[res.table["in_sample"]]
    r = t["residual"].to_numpy()
    order = np.argsort(r)
    d = r.size
    q = stats.norm.ppf((np.arange(1, d + 1) - 0.375) / (d + 0.25))
    ax = _axes(ax, (5.0, 5.0))
    ax.scatter(q, r[order], s=18, color="C0", zorder=3)
    lim = float(max(np.abs(q).max(), np.abs(r).max()) * 1.05)
    ax.plot([-lim, lim], [-lim, lim], color="0.4", lw=1, ls="--")
    labels = t[res.area].to_numpy()[order]
    for i in np.argsort(-np.abs(r[order]))[:max(0, label)]:
        ax.annotate(str(labels[i]), (q[i], r[order][i]), fontsize=8, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("standardised residual")
    ax.set_title(f"Fay-Herriot residuals ({res.method.upper()}, D = {d})")
    return ax


def plot_shrinkage(result: FayHerriotEstimate, *, scale: float = 100.0,
                   ax: Axes | None = None) -> Axes:
    """Direct against model-based estimates: how far each area is pulled to its synthetic value.

    Parameters
    ----------
    result : FayHerriotEstimate
    scale : float, default=100.0
        Multiplier of the estimates for display (100 for percentages of 0-1 shares).
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Points on the diagonal are not shrunk (:math:`\\gamma_d = 1`); the colour shows
    :math:`\\gamma_d`, the weight of the direct estimate.  Vertical segments join each model
    estimate to its synthetic estimate :math:`x_d'\\hat\\beta`.
    """
    res = _check(result)
    t = res.table[res.table["in_sample"]]
    x = t["direct"].to_numpy() * scale
    y = t["estimate"].to_numpy() * scale
    syn = t["synthetic"].to_numpy() * scale
    ax = _axes(ax, (5.5, 5.0))
    ax.vlines(x, np.minimum(y, syn), np.maximum(y, syn), color="0.75", lw=0.8, zorder=1)
    sc = ax.scatter(x, y, c=t["gamma"].to_numpy(), cmap="viridis", vmin=0, vmax=1, s=22,
                    zorder=3)
    lo = float(np.nanmin(np.concatenate([x, y, syn])))
    hi = float(np.nanmax(np.concatenate([x, y, syn])))
    pad = 0.03 * (hi - lo if hi > lo else 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=1, ls="--")
    ax.figure.colorbar(sc, ax=ax, label="gamma (weight of the direct estimate)")
    ax.set_xlabel("direct estimate")
    ax.set_ylabel("model-based estimate (EBLUP)")
    ax.set_title("Shrinkage of the direct estimates")
    return ax


def plot_small_area(result: FayHerriotEstimate, *, areas: Sequence[Any] | None = None,
                    scale: float = 100.0, sort: bool = True, ax: Axes | None = None) -> Axes:
    """Direct and model-based estimates per area with their intervals, labelled by source.

    Parameters
    ----------
    result : FayHerriotEstimate
    areas : sequence or None, default=None
        The areas to show (all when None).
    scale : float, default=100.0
    sort : bool, default=True
        Sort the areas by the model-based estimate.
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Direct intervals are :math:`y_d \\pm z\\,se_d`, model-based ones
    :math:`\\hat\\theta_d \\pm z\\sqrt{\\text{mse}_d}` at ``result.level``; the legend says
    which is which, so a figure never shows a model-based value unlabelled.
    """
    res = _check(result)
    t = res.table.copy()
    if areas is not None:
        wanted = list(areas)
        unknown = [a for a in wanted if a not in set(t[res.area])]
        if unknown:
            raise SatsampleError(f"areas not in the result: {', '.join(map(str, unknown[:5]))}")
        t = t[t[res.area].isin(wanted)]
    if sort:
        t = t.sort_values("estimate", kind="stable")
    z = stats.norm.ppf(0.5 + res.level / 2)
    pos = np.arange(len(t))
    ax = _axes(ax, (7.0, float(min(max(2.5, 0.22 * len(t) + 1.2), 30.0))))
    d = t["direct"].to_numpy() * scale
    dse = t["direct_se"].to_numpy() * scale
    ax.errorbar(d, pos - 0.15, xerr=z * dse, fmt="o", ms=3, color="0.55", lw=0.8,
                label="direct")
    m = t["estimate"].to_numpy() * scale
    lo = t["ci_low"].to_numpy() * scale
    hi = t["ci_high"].to_numpy() * scale
    ax.errorbar(m, pos + 0.15, xerr=[m - lo, hi - m], fmt="D", ms=3, color="C1", lw=1.0,
                label=f"model-based ({res.method.upper()} EBLUP)")
    ax.set_yticks(pos)
    ax.set_yticklabels([str(a) + ("" if s else " (no sample)") for a, s in
                        zip(t[res.area], t["in_sample"])], fontsize=7)
    ax.set_xlabel(f"estimate (x{scale:g}), {res.level:.0%} intervals")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Direct and model-based estimates")
    return ax
