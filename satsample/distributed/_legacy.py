"""Satisfaction indices of samples larger than one machine: the Rao-Wu bootstrap on Dask.

Optional extra: ``pip install "satsample[dask]"``.  :func:`satisfaction_index_dask`
gives the same :class:`~satsample.results.IndexEstimate` as

.. code-block:: python

    design = survey_design(ddf.compute(), strata=..., ids=psu, weights=...)
    satisfaction_index(bootstrap(design, n_replicates=R, rng=rng, materialize=False),
                       questionnaire, by=by)

without ever holding the sample (nor anything of size ``n x R``) in one
process.  It relies on two properties of the lazy Rao-Wu kernel
(:mod:`satsample._kernels.bootstrap`):

* the multinomial counts of stratum *h* in replicate *r* are a pure function of
  ``(key, global stratum code, r, draw)`` (counter-based stream,
  :mod:`satsample._kernels._rng`), so any process can draw them;
* replicate totals are sums over strata, so totals computed on partitions that
  each hold whole strata add up to the totals of the whole sample.

Passes over the data (each a Dask graph with a tree reduction):

1. labels: stratum and domain labels, row counts per partition, and whether
   every stratum lies in one partition (if not, the frame is shuffled by
   stratum, see :func:`satisfaction_index_dask`);
2. totals: per partition, the weighted item totals ``(G, 2K)``, the Rao-Wu
   replicate totals ``(R, G, 2K)`` (same kernel, same stream key, global
   stratum codes, same PSU order as in memory), the counts of rows used;
3. design-effect moments (skipped with ``deff=None``): the sums of the
   linearised scores and their squares, which need the estimates of pass 2.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._compat import renamed_keywords
from .._random import RNGLike, stream_key
from .._validation import (
    DesignError,
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    check_positive_int,
    check_weights,
)
from ..design import LONELY_PSU_RULES, ReplicateWeights, check_design_weights, nested_codes
from ..estimation import engine
from ..estimation.domains import Domains, Groups, column_codes, combine_codes, levels_frame, lookup
from ..estimation.index import IndexCombination, check_index_options, index_estimate, indicators
from ..questionnaire import Questionnaire
from ..replicate._common import Layout, layout_from_codes
from ..replicate.bootstrap import check_raowu_strata, raowu_totals
from ..results import IndexEstimate

if TYPE_CHECKING:  # pragma: no cover
    import dask.dataframe as dd

__all__ = ["satisfaction_index_dask"]

_POS = "__satsample_row__"  # global row position, added before a shuffle
# the Rao-Wu kernel is itself parallel (Numba prange); with the "workqueue"
# threading layer two concurrent calls from one process abort, so the threads
# of a process take turns (each call already uses every core)
_KERNEL_LOCK = threading.Lock()


def _require_dask() -> Any:
    try:
        import dask
        import dask.dataframe
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise ImportError(
            "satisfaction_index_dask needs dask: pip install 'satsample[dask]' "
            "(dask[dataframe] >= 2024.1)"
        ) from exc
    return dask


# ------------------------------------------------------------------- layout
def _partition_layout(strata: np.ndarray, psu: np.ndarray) -> Layout:
    """Layout of a partition's rows: grouped by stratum, PSUs ranked by code within their stratum.

    :func:`satsample.replicate._common.layout_from_codes`, the construction the
    in-memory path uses: with the global stratum codes and PSU codes ordered as
    the in-memory design orders them, every row gets the PSU rank, hence the
    Rao-Wu counts, it gets in memory.
    """
    return layout_from_codes(strata, psu)


# ------------------------------------------------------------ labels (pass 1)
def _scan(pdf: pd.DataFrame, strata: str, by: tuple[str, ...], psu: str | None) -> dict[str, Any]:
    """Pass 1 on one partition: row count, distinct strata, distinct domains, missing values."""
    out: dict[str, Any] = {
        "n": len(pdf),
        "strata": pd.Series(pdf[strata].dropna().unique()),
        "missing": {c: int(pdf[c].isna().sum()) for c in (strata, *by, *([psu] if psu else []))},
    }
    out["by"] = pdf[list(by)].dropna().drop_duplicates() if by else None
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class _Plan:
    """Everything a partition needs to compute its totals (small, shipped to workers)."""

    strata: str
    weights: str
    psu: str | None
    by: tuple[str, ...]
    strata_levels: pd.Index  # sorted as pandas.factorize(sort=True)
    by_levels: tuple[pd.Index, ...]
    by_shape: tuple[int, ...]
    present: np.ndarray  # flat codes of the domains present, sorted
    questionnaire: Questionnaire
    measure: str
    key: int
    replicates: int
    sort_rows: bool  # rows carry _POS (shuffled frame): restore the global order


def _factorized(values: pd.Series) -> tuple[pd.Index, int]:
    """Levels as the in-memory domain coding orders them, and the number of possible levels."""
    levels = pd.Index(column_codes(values)[1], dtype=object)
    return levels, len(levels)


def _domain_codes(pdf: pd.DataFrame, plan: _Plan) -> np.ndarray:
    if not plan.by:
        return np.zeros(len(pdf), dtype=np.int64)
    per = [lookup(pdf[c], lev) for c, lev in zip(plan.by, plan.by_levels)]
    return combine_codes(per, plan.by_shape, plan.present)[0]


# ------------------------------------------------------------ totals (pass 2)
def _prepare(pdf: pd.DataFrame, plan: _Plan) -> pd.DataFrame:
    if plan.sort_rows:
        pdf = pdf.sort_values(_POS, kind="stable")
    return pdf


def _totals(pdf: pd.DataFrame, plan: _Plan, part: int) -> dict[str, Any]:
    """Pass 2 on one partition (whole strata): point and Rao-Wu replicate totals, counts."""
    q = plan.questionnaire
    combo = IndexCombination(q)
    K = q.n_items
    G = int(plan.present.size)
    R = plan.replicates
    out: dict[str, Any] = {
        "num": np.zeros((G, K)), "den": np.zeros((G, K)),
        "n_obs": np.zeros((G, combo.n_out)), "big_n": np.zeros((G, combo.n_out)),
        "rep": np.zeros((R, G, 2 * K)),
        "npsu": pd.Series(dtype=np.int64), "psu_labels": [],
    }
    if len(pdf) == 0:
        return out
    pdf = _prepare(pdf, plan)
    try:
        w = check_design_weights(pdf[plan.weights], name=plan.weights)
        y, d = indicators(pdf, q, plan.measure)
        s_codes = lookup(pdf[plan.strata], plan.strata_levels)
        if plan.psu is None:
            psu_codes = np.arange(len(pdf), dtype=np.int64)  # every row its own PSU, in row order
        else:
            psu_codes, psu_uniques = pd.factorize(pdf[plan.psu], sort=True)
            psu_codes = psu_codes.astype(np.int64)
            nested_codes(s_codes, psu_codes, nest=False, column=plan.psu,
                         label_of=lambda c: psu_uniques[c])
            out["psu_labels"] = [pd.Series(psu_uniques)]
    except SatsampleError as exc:
        raise type(exc)(f"partition {part}: {exc}") from exc
    codes = _domain_codes(pdf, plan)
    grp = Groups(codes, G, w)
    out["num"], out["den"] = grp.sum(y), grp.sum(d)
    used = engine.used_outputs(d, combo)
    out["n_obs"], out["big_n"] = grp.sum(used, weighted=False), grp.sum(used)
    lay = _partition_layout(s_codes, psu_codes)
    out["npsu"] = pd.Series(lay.strat_npsu, index=lay.strat_code)
    vals = np.concatenate([y, d.astype(y.dtype)], axis=1)
    del y, d, used
    with _KERNEL_LOCK:
        out["rep"] = raowu_totals(plan.key, w, vals, codes, G, lay, 0, R)
    return out


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial results: arrays add, strata PSU counts and labels concatenate."""
    out: dict[str, Any] = {}
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            out[k] = v + b[k]
        elif isinstance(v, pd.Series):
            full = [x for x in (v, b[k]) if len(x)]  # no concat of empty Series (pandas warns)
            out[k] = pd.concat(full) if len(full) == 2 else (full[0] if full else v)
        else:
            out[k] = list(v) + list(b[k])
    return out


def _tree(dask: Any, items: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Pairwise (binary tree) reduction of delayed objects."""
    combine_d = dask.delayed(combine)
    while len(items) > 1:
        items = [combine_d(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


# ----------------------------------------------------- design effect (pass 3)
def _moments(pdf: pd.DataFrame, plan: _Plan, lin: engine.Linearization,
             part: int) -> dict[str, Any]:
    """Pass 3 on one partition: ``sum w z`` and ``sum w z^2`` of the linearised scores."""
    q = plan.questionnaire
    G = int(plan.present.size)
    L = IndexCombination(q).n_out
    out = {"s1": np.zeros((G, L)), "s2": np.zeros((G, L))}
    if len(pdf) == 0:
        return out
    pdf = _prepare(pdf, plan)
    w = check_weights(pdf[plan.weights], name=plan.weights)
    codes = _domain_codes(pdf, plan)

    def score_fn(rows: slice) -> np.ndarray:
        try:
            y, d = indicators(pdf.iloc[rows], q, plan.measure)
        except SatsampleError as exc:  # pragma: no cover - pass 2 raised it first
            raise SatsampleError(f"partition {part}: {exc}") from exc
        return engine.scores(lin, y, "used", d, codes[rows])

    out["s1"], out["s2"] = engine.moments(score_fn, codes, G, w, (G, L))
    return out


# ------------------------------------------------------------------ public
@renamed_keywords(replicates="n_replicates")
def satisfaction_index_dask(
    ddf: dd.DataFrame,
    questionnaire: Questionnaire,
    *,
    strata: str,
    weights: str,
    by: str | Sequence[str] | None = None,
    psu: str | None = None,
    n_replicates: int = 500,
    rng: RNGLike = None,
    mse: bool = False,
    measure: Literal["satisfied", "mean_score", "top_two_box"] = "satisfied",
    level: float = 0.95,
    ci_method: Literal["mean", "logit", "likelihood", "asin", "beta", "xlogit", "wilson"] = "mean",
    deff: Literal["srswor", "srswr"] | None = "srswor",
    lonely_psu: Literal["fail", "remove", "certainty", "adjust", "average"] = "fail",
) -> IndexEstimate:
    """Satisfaction index with Rao-Wu bootstrap standard errors, computed on a Dask DataFrame.

    Equals ``satisfaction_index(bootstrap(survey_design(ddf.compute(), strata=strata,
    ids=psu, weights=weights), n_replicates=n_replicates, rng=rng, materialize=False),
    questionnaire, by=by)`` (same estimates, replicate estimates, standard errors,
    intervals, design effects and counts, up to the order of floating-point
    additions across partitions), without collecting the data in one process.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        One row per respondent (or sampled unit): the strata, weights and item
        columns, and the ``by`` and ``psu`` columns if given.  Not modified.
    questionnaire : Questionnaire
        Elements, items and answer codes.
    strata : str
        Stage-1 strata column (no missing values).
    weights : str
        Design-weight column (finite, positive).
    by : str or list of str, optional
        Domain column(s); the full design is kept in every domain.
    psu : str, optional
        Stage-1 cluster column, nested in the strata.  ``None``: every row is
        its own PSU (element sampling, the SIPAS design).
    n_replicates : int, default=500
        Number of bootstrap replicates ``R`` (at least 2; formerly ``replicates=``).
    rng : int, Generator or SeedSequence, optional
        Source of the key of the counter-based stream, drawn once on the
        client exactly as :func:`satsample.replicate.bootstrap` draws it.
    mse : bool, default=False
        Centre the replicate variance at the full-sample estimate.
    measure : {"satisfied", "mean_score", "top_two_box"}, default="satisfied"
    level : float, default=0.95
    ci_method : str, default="mean"
        As in :func:`satsample.estimation.index.satisfaction_index`.
    deff : {"srswor", "srswr"} or None, default="srswor"
        Reference variance of the design effect; ``None`` skips the third
        pass over the data and leaves ``deff`` NaN.
    lonely_psu : {"fail", "remove", "certainty", "adjust", "average"}, default="fail"
        A stratum with one PSU raises unless ``"remove"`` or ``"certainty"``
        (it then keeps multiplier 1 and contributes no variance).

    Returns
    -------
    IndexEstimate
        ``options["engine"] = "dask"``, ``options["shuffled"]`` tells whether
        the frame had to be shuffled by stratum; ``replicate_estimates`` holds
        the ``(R, G)``, ``(R, G, E)``, ``(R, G, K)`` replicate indices.

    Raises
    ------
    SatsampleError
        A missing column (named), missing values in the strata, PSU or
        domain columns, bad weights or answer codes (with the partition).
    DesignError
        A stratum with a single PSU (see ``lonely_psu``), clusters not
        nested in strata.

    Notes
    -----
    In replicate *r*, stratum *h* with :math:`n_h` PSUs, PSU *i* drawn
    :math:`c_{hri}` times gets :math:`m_{hri} = c_{hri} n_h/(n_h - 1)`, and

    .. math:: T_{rgj} = \\sum_{\\text{partitions}} \\sum_{h \\in \\text{partition}}
              \\sum_{i \\in h} w_i m_{hri} v_{ij} 1\\{g_i = g\\}

    for :math:`v = (y_1..y_K, d_1..d_K)`.  The counts depend only on
    ``(key, h, r, draw)``; :math:`h` is the global stratum code (strata
    sorted as ``pandas.factorize(sort=True)`` sorts them) and PSUs are
    ranked within their stratum by label (by row order when ``psu=None``), as
    the in-memory design ranks them.  The composite is recomputed in every
    replicate from :math:`T_r` and
    :math:`v = \\frac{1}{R-1}\\sum_r (\\theta_r - \\bar\\theta)^2`.

    Every stratum must lie in one partition.  When it does not, the frame is
    shuffled with ``ddf.shuffle(on=strata)`` after a column of global row
    positions is added; each partition is sorted by that position before its
    totals are computed, so rows of a stratum keep the order of
    ``ddf.compute()`` (which fixes the PSU ranks when ``psu=None``).  Memory
    per task: one partition plus :math:`O(R G K)`.
    """
    dask = _require_dask()
    import dask.dataframe as dd

    if not isinstance(ddf, dd.DataFrame):
        raise SatsampleError(f"ddf must be a dask.dataframe.DataFrame, got {type(ddf).__name__}")
    check_index_options(questionnaire, measure=measure, level=level, ci_method=ci_method,
                        deff=deff)
    check_choice(lonely_psu, name="lonely_psu", allowed=LONELY_PSU_RULES)
    replicates = check_positive_int(n_replicates, name="n_replicates")
    if replicates < 2:
        raise SatsampleError(f"n_replicates={replicates}: need at least 2")
    by_cols = tuple(as_column_list(by))
    if len(set(by_cols)) != len(by_cols):
        raise SatsampleError(f"by={list(by_cols)!r} lists a column more than once")
    meta = ddf._meta
    check_columns(meta, strata, role="strata")
    check_columns(meta, weights, role="weights")
    check_columns(meta, psu, role="psu (ids)")
    check_columns(meta, list(by_cols), role="domain (by)")
    check_columns(meta, list(questionnaire.items), role="item")
    if _POS in meta.columns:
        raise SatsampleError(f"column name {_POS!r} is reserved by satisfaction_index_dask")
    key = int(stream_key(rng))  # drawn first, as bootstrap(materialize=False) draws it

    # pass 1: labels, partition sizes, is every stratum in one partition?
    parts = ddf.to_delayed()
    scan = dask.delayed(_scan)
    scans = dask.compute(*[scan(p, strata, by_cols, psu) for p in parts])
    for col in (strata, *([psu] if psu else []), *by_cols):
        miss = sum(s["missing"][col] for s in scans)
        if miss:
            role = "strata" if col == strata else ("psu (ids)" if col == psu else "domain (by)")
            raise SatsampleError(
                f"{role} column {col!r} has {miss} missing value(s); recode them or drop those "
                "rows before the estimation"
            )
    n_total = int(sum(s["n"] for s in scans))
    if n_total == 0:
        raise SatsampleError("ddf has no rows")
    all_strata = pd.concat([s["strata"] for s in scans if len(s["strata"])], ignore_index=True)
    # strata codes as survey_design codes them: the levels present, sorted
    strata_levels = pd.Index(np.asarray(pd.factorize(all_strata, sort=True)[1], dtype=object),
                             dtype=object)
    n_parts_per_stratum = pd.Series(lookup(all_strata, strata_levels)).value_counts()
    shuffled = bool((n_parts_per_stratum > 1).any())
    if by_cols:
        combos = pd.concat([s["by"] for s in scans if len(s["by"])], ignore_index=True)
        lv = [_factorized(combos[c]) for c in by_cols]
        by_levels = tuple(x[0] for x in lv)
        by_shape = tuple(x[1] for x in lv)
        per = [lookup(combos[c], lev) for c, lev in zip(by_cols, by_levels)]
        present = np.unique(combine_codes(per, by_shape)[1]).astype(np.int64)
        levels = levels_frame(by_cols, by_levels, by_shape, present)
        n_possible = int(np.prod(by_shape))
    else:
        by_levels, by_shape, present = (), (), np.zeros(1, dtype=np.int64)
        levels, n_possible = pd.DataFrame(index=range(1)), 1

    if shuffled:
        offsets = np.r_[0, np.cumsum([s["n"] for s in scans])[:-1]]
        add_pos = dask.delayed(_with_positions)
        pos_meta = meta.assign(**{_POS: np.zeros(0, dtype=np.int64)})
        positioned = dd.from_delayed([add_pos(p, int(o)) for p, o in zip(parts, offsets)],
                                     meta=pos_meta, verify_meta=False)
        parts = positioned.shuffle(on=strata).to_delayed()

    plan = _Plan(strata=strata, weights=weights, psu=psu, by=by_cols,
                 strata_levels=strata_levels, by_levels=by_levels, by_shape=by_shape,
                 present=present, questionnaire=questionnaire, measure=measure, key=key,
                 replicates=replicates, sort_rows=shuffled)

    # pass 2: point and replicate totals, tree-summed
    tot_d = dask.delayed(_totals)
    (tot,) = dask.compute(_tree(dask, [tot_d(p, plan, i) for i, p in enumerate(parts)], _add))
    npsu = tot["npsu"]
    if npsu.index.duplicated().any():  # cannot happen after the shuffle
        raise DesignError(f"stratum {strata_levels[int(npsu.index[npsu.index.duplicated()][0])]!r}"
                          " is split across partitions")
    if tot["psu_labels"]:
        labels = pd.concat(tot["psu_labels"], ignore_index=True)
        if labels.duplicated().any():
            raise DesignError(
                f"cluster {labels[labels.duplicated()].iloc[0]!r} of column {psu!r} appears in "
                "more than one stratum: clusters are not nested in strata"
            )
    check_raowu_strata(npsu.to_numpy(), lambda h: strata_levels[int(npsu.index[h])], lonely_psu)
    reps = ReplicateWeights(
        kind="subbootstrap", weights=None, scale=1.0 / (replicates - 1),
        rscales=np.ones(replicates), mse=bool(mse), degf=replicates - 1, seed=key,
        n_replicates=replicates,
    )
    q = questionnaire
    combo = IndexCombination(q)
    K = q.n_items
    g = int(present.size)
    r, lin = engine.linearization(combo, tot["num"], tot["den"], tot["big_n"][:, :K])
    est = combo.value(r)
    theta_r = combo.value(engine.ratios_of(tot["rep"][..., :K], tot["rep"][..., K:]))
    with np.errstate(invalid="ignore"):
        var = reps.variance(theta_r, est)
    n_obs, big_n = tot["n_obs"], tot["big_n"]

    # pass 3: design effects
    if deff is None:
        deff_v = np.full(est.shape, np.nan)
    else:
        mom_d = dask.delayed(_moments)
        (mom,) = dask.compute(_tree(dask, [mom_d(pt, plan, lin, i) for i, pt in enumerate(parts)],
                                    _add))
        deff_v = engine.deff_ratio(var, engine.srs_variance(big_n, n_obs, mom["s1"], mom["s2"],
                                                            deff))
    fitted = engine.Fit(estimate=est, se=np.sqrt(var), df=np.full(est.shape, float(reps.degf)),
                        deff=deff_v, n=n_obs, big_n=big_n, replicates=theta_r,
                        variance="replicate", closed_form=False)
    dom = Domains(codes=np.zeros(0, dtype=np.int64), n_domains=g, levels=levels,
                  n_possible=n_possible, by=by_cols)
    opts = engine.options(fitted, replicates=reps, lonely_psu=lonely_psu, calibrated=False,
                          measure=measure, level=level, ci_method=ci_method, deff=deff,
                          aggregation=q.aggregation)
    opts.update(engine="dask", partitions=len(parts), shuffled=shuffled)
    return index_estimate(
        q, dom, fitted, level=level, ci_method=ci_method, options=opts, excluded={},
        n_design=None,
        design_summary={"n": n_total, "strata": len(strata_levels), "psu": int(npsu.sum()),
                        "degf": reps.degf, "replicates": replicates},
        vcov_fn=lambda outputs: reps.covariance(
            theta_r[..., outputs].reshape(replicates, -1), est[:, outputs].reshape(-1)))


def _with_positions(pdf: pd.DataFrame, offset: int) -> pd.DataFrame:
    """A copy of the partition with its global row positions (the caller's frame is untouched)."""
    return pdf.assign(**{_POS: np.arange(offset, offset + len(pdf), dtype=np.int64)})
