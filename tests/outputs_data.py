"""Constructed results for the output tests: 100 agencies in three tiers, some suppressed.

The estimates are real :class:`~satsample.results.IndexEstimate` objects built from arrays
(``test_ranking.make_standin``), so the figures, the report and the flags are tested on
known numbers, independently of the estimation engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from test_ranking import make_standin

from satsample.outputs.flags import flag_estimate
from satsample.questionnaire import load_questionnaire

Q17 = load_questionnaire("sipas_2017")
#: Agencies with fewer than 30 respondents (suppressed by the default rule) and one with
#: few degrees of freedom (marked for review).
SMALL = {"PRV07": 26, "DIS03": 19, "COM23": 26, "COM37": 11}
REVIEW = "COM05"


def agency_frame(n_agencies: int = 100) -> pd.DataFrame:
    """Ids, names and tiers laid out as the synthetic data does (20 % / 15 % / rest)."""
    n_prov = round(0.2 * n_agencies)
    n_dist = round(0.15 * n_agencies)
    n_comm = n_agencies - n_prov - n_dist
    ids = ([f"PRV{i + 1:02d}" for i in range(n_prov)] + [f"DIS{i + 1:02d}" for i in range(n_dist)]
           + [f"COM{i + 1:02d}" for i in range(n_comm)])
    names = ([f"Department no. {i + 1} of the province" for i in range(n_prov)]
             + [f"One-stop shop of district DIS{i + 1:02d}" for i in range(n_dist)]
             + [f"One-stop shop of commune COM{i + 1:02d} (DIS{i % n_dist + 1:02d})"
                for i in range(n_comm)])
    tier = ["province"] * n_prov + ["district"] * n_dist + ["commune"] * n_comm
    return pd.DataFrame({"agency": ids, "name": names, "tier": tier}).set_index("agency")


def agencies_estimate(seed: int = 0, *, n_agencies: int = 100, shift: float = 0.0,
                      n_replicates: int = 60) -> Any:
    """Index by agency (not flagged) with replicate estimates, on sipas_2017."""
    rng = np.random.default_rng(seed)
    ag = agency_frame(n_agencies)
    G, K = n_agencies, len(Q17.items)
    level = rng.normal(0.8, 0.06, size=G) + shift
    item = np.clip(level[:, None] + rng.normal(0, 0.05, size=(G, K)), 0.0513, 0.9787)
    n = rng.integers(40, 160, size=G)
    for a, v in SMALL.items():
        if a in ag.index:
            n[ag.index.get_loc(a)] = v
    item_se = np.sqrt(item * (1 - item) / n[:, None]) * 1.2
    reps = item[None] + rng.normal(0, 1, size=(n_replicates, G, K)) * item_se[None]
    df = np.full(G, 40.0)
    if REVIEW in ag.index:
        df[ag.index.get_loc(REVIEW)] = 5.0
    return make_standin(list(ag.index), item, item_se, item_reps=reps, by="agency_id",
                        n=n, df=df, q=Q17)


def national_estimate(seed: int = 0) -> Any:
    """A one-domain estimate standing for the pooled national index."""
    rng = np.random.default_rng(seed + 1000)
    item = np.clip(0.8 + rng.normal(0, 0.03, size=(1, len(Q17.items))), 0.05, 0.98)
    return make_standin(["all"], item, np.full_like(item, 0.01), by="country", n=6000,
                        df=99, q=Q17)


def flagged_agencies(seed: int = 0, **kw: Any) -> Any:
    return flag_estimate(agencies_estimate(seed, **kw))


def suppressed_values(est: Any, scale: float = 100.0) -> np.ndarray:
    """Every value (estimate and interval bounds, all levels) of a suppressed row x scale."""
    out = []
    for tab in (est.overall, est.elements, est.items):
        sup = tab[tab["status"] == "suppress"]
        for c in ("estimate", "ci_low", "ci_high"):
            out.append(scale * sup[c].to_numpy(dtype=float))
    v = np.concatenate(out)
    return v[np.isfinite(v)]


def plotted_numbers(fig: Any) -> np.ndarray:
    """Every number a figure plots: line data, collection segments/offsets, image arrays."""
    vals: list[np.ndarray] = []
    for ax in fig.axes:
        for ln in ax.get_lines():
            vals.append(np.asarray(ln.get_xdata(), dtype=float).ravel())
            vals.append(np.asarray(ln.get_ydata(), dtype=float).ravel())
        for c in ax.collections:
            if hasattr(c, "get_segments"):
                for s in c.get_segments():
                    vals.append(np.asarray(s, dtype=float).ravel())
            off = np.asarray(c.get_offsets(), dtype=float).ravel()
            vals.append(off)
        for im in ax.images:
            arr = im.get_array()
            arr = np.ma.asarray(arr)
            vals.append(np.asarray(arr.compressed(), dtype=float))
    return np.concatenate(vals) if vals else np.array([])


def assert_no_suppressed_plotted(fig: Any, est: Any, scale: float = 100.0) -> None:
    """No suppressed value is in the figure's plotted data (to 1e-9)."""
    plotted = plotted_numbers(fig)
    for v in suppressed_values(est, scale):
        assert not np.any(np.abs(plotted - v) < 1e-9), f"suppressed value {v} is plotted"
