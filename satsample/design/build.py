"""``survey_design``: validate the design columns once and build the :class:`SurveyDesign`.

The frame is not copied column by column: with pandas' Copy-on-Write the
design keeps a shallow copy (later edits of the caller's frame do not reach
it), and only the design's own arrays (codes of strata and clusters per
stage, sampled counts, population sizes, weights) are built.  The nesting and
weight checks here are shared with the Dask path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._tables import _copy_on_write
from .._validation import (
    DesignError,
    SatsampleError,
    SatsampleWarning,
    as_column_list,
    check_choice,
    check_columns,
    check_grouping,
    check_no_missing,
    check_weights,
    plain,
)
from .objects import LONELY_PSU_RULES, LonelyPSU, Stage, SurveyDesign, WeightStep, _readonly

__all__ = ["check_design_weights", "nested_codes", "stage_popsize", "survey_design"]


# ------------------------------------------------------------------ builder
def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def survey_design(
    data: pd.DataFrame,
    *,
    ids: str | Sequence[str] | None = None,
    strata: str | None = None,
    weights: str | None = None,
    probs: str | None = None,
    fpc: str | Sequence[str] | None = None,
    nest: bool = False,
    lonely_psu: LonelyPSU = "fail",
) -> SurveyDesign:
    """Declare a stratified multistage design (R's ``svydesign``).

    Parameters
    ----------
    data : pandas.DataFrame or dask.dataframe.DataFrame
        One row per responding (or sampled) unit.  It is copied; the caller's
        frame is never modified.  A Dask DataFrame gives a
        :class:`~satsample.distributed.DaskSurveyDesign` (``pip install
        "satsample[dask]"``): the same checks in one pass over the partitions,
        and the frame shuffled once by stratum when a stratum spans several
        partitions (see :mod:`satsample.distributed`).
    ids : str or sequence of str, optional
        Cluster column for each stage (stage 1 first).  ``None`` means every
        row is its own PSU (element sampling).
    strata : str, optional
        Stage-1 strata column.  ``None`` means one stratum.  Later stages are
        stratified by the cluster of the previous stage.
    weights : str, optional
        Column of sampling (design) weights.
    probs : str, optional
        Column of inclusion probabilities (weights are their inverse).  Give
        ``weights`` or ``probs``, not both.  Without either, weights are
        computed from ``fpc`` as the product over stages of population over
        sample counts, as R does; without ``fpc`` either, all weights are 1
        (with a warning).
    fpc : str or sequence of str, optional
        Finite population correction per stage: population counts of
        clusters in the stratum (values > 1), or sampling fractions (all
        values <= 1), constant within each stratum.  ``None``: sampling with
        replacement.  When fewer fpc columns than stages are given, the
        variance stops at the last stage with an fpc (ultimate cluster).
    nest : bool, default=False
        Relabel clusters within strata (R's ``nest=TRUE``).  Without it a
        cluster label found in two strata is an error.
    lonely_psu : {"fail", "remove", "certainty", "adjust", "average"}, default="fail"
        Rule for a stratum with a single sampled PSU, as R's
        ``options(survey.lonely.psu)``: ``"fail"`` raises; ``"remove"`` and
        ``"certainty"`` make the stratum contribute nothing at that stage;
        ``"adjust"`` centres the PSU total at zero (the grand mean of the
        scores); ``"average"`` replaces the stratum's contribution by the
        average of the other strata.

    Returns
    -------
    SurveyDesign
        (:class:`~satsample.distributed.DaskSurveyDesign` for a Dask DataFrame.)

    Raises
    ------
    SatsampleError
        A missing column, missing values in a design column, bad weights.
    DesignError
        Clusters not nested in strata, an fpc that varies within a stratum or
        is smaller than the sample, a lonely PSU with ``lonely_psu="fail"``.

    Notes
    -----
    The Taylor variance of a total with weighted scores :math:`x_i = w_i z_i`
    is computed stage by stage (R's ``svyrecvar``):

    .. math::

        V = \\sum_h (1 - f_h) \\frac{n_h}{n_h - 1} \\sum_{i \\in h}
            (t_{hi} - \\bar t_h)^2 + \\sum_{h,i} f_h V_{2,hi},

    with :math:`t_{hi}` the PSU totals, :math:`f_h = n_h / N_h`, and
    :math:`V_{2,hi}` the same formula applied to the units of PSU *hi*
    (only when a stage-2 fpc is given).
    """
    if not isinstance(data, pd.DataFrame):
        from ..distributed.design import dask_survey_design, is_dask_frame

        if is_dask_frame(data):
            return dask_survey_design(data, ids=ids, strata=strata, weights=weights, probs=probs,
                                      fpc=fpc, nest=nest, lonely_psu=lonely_psu)
        raise SatsampleError(
            f"data must be a pandas or Dask DataFrame, got {type(data).__name__}")
    if data.shape[0] == 0:
        raise SatsampleError("data has no rows")
    lonely_psu = check_choice(lonely_psu, name="lonely_psu", allowed=LONELY_PSU_RULES)
    id_cols = as_column_list(ids)
    fpc_cols = as_column_list(fpc)
    _check_design_columns(data, id_cols, strata, weights, probs, fpc_cols)

    # with Copy-on-Write (pandas 3) a shallow copy shares the columns and no later edit of the
    # caller's frame reaches it: no column is copied (pandas 2 without CoW: a deep copy)
    df = data.copy(deep=not _copy_on_write())
    df.index = pd.RangeIndex(len(df)) if not isinstance(df.index, pd.RangeIndex) else df.index

    if strata is None:
        s_codes = np.zeros(len(df), dtype=np.int64)
        s_labels = np.array(["(all)"], dtype=object)
    else:
        s_codes, s_labels = _codes(df[strata])
    stage_names, stage_strata, nested_clusters, n_sampled_list = _nested_stages(
        df, s_codes, id_cols, nest)
    popsizes = _stage_popsizes(df, fpc_cols, stage_strata, n_sampled_list, s_labels,
                               stage_names)
    w = _initial_weights(df, weights, probs, fpc_cols, popsizes, n_sampled_list)
    stages = _variance_stages(stage_strata, nested_clusters, n_sampled_list, popsizes)
    _check_lonely(stages, lonely_psu, s_labels, df, stage_names)

    w = _readonly(np.asarray(w, dtype=np.float64))
    step = WeightStep.from_weights(
        "design",
        w,
        params=(("ids", tuple(id_cols)), ("strata", strata), ("weights", weights),
                ("probs", probs), ("fpc", tuple(fpc_cols)), ("lonely_psu", lonely_psu)),
    )
    return SurveyDesign(
        data=df,
        weights=w,
        design_weights=w,
        stages=stages,
        strata_labels=_readonly(np.asarray(s_labels, dtype=object)),
        lonely_psu=lonely_psu,
        history=(step,),
        columns={"ids": tuple(id_cols), "strata": strata, "weights": weights, "probs": probs,
                 "fpc": tuple(fpc_cols), "nest": nest},
    )


def _check_design_columns(data: pd.DataFrame, id_cols: list[str], strata: str | None,
                          weights: str | None, probs: str | None, fpc_cols: list[str]) -> None:
    """Check that the design columns exist, agree with each other and have no missing values."""
    check_columns(data, id_cols, role="ids")
    check_columns(data, strata, role="strata")
    check_columns(data, weights, role="weights")
    check_columns(data, probs, role="probs")
    check_columns(data, fpc_cols, role="fpc")
    if weights is not None and probs is not None:
        raise SatsampleError("give weights= or probs=, not both")
    if len(fpc_cols) > max(len(id_cols), 1):
        raise SatsampleError(
            f"{len(fpc_cols)} fpc columns for {max(len(id_cols), 1)} stage(s); give at most one per stage"
        )
    for col, role in [(c, "ids") for c in id_cols] + [(c, "fpc") for c in fpc_cols] + (
        [(strata, "strata")] if strata else []
    ):
        check_no_missing(data, col, role=role)
        if role != "fpc":
            check_grouping(data[col], name=col, role=role)


def _nested_stages(
    df: pd.DataFrame, s_codes: np.ndarray, id_cols: list[str], nest: bool
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per stage: name, stratum codes, cluster codes nested in them, and sampled counts."""
    n = len(df)
    if not id_cols:
        stage_clusters = [np.arange(n, dtype=np.int64)]
        stage_names = ["(row)"]
    else:
        stage_clusters = []
        stage_names = list(id_cols)
        for col in id_cols:
            stage_clusters.append(_codes(df[col])[0])
        # a last stage of units is implied when the last id is not unique per row
    # nesting: stage-1 clusters within strata; stage-k clusters within stage-(k-1) clusters
    parents = s_codes
    nested_clusters: list[np.ndarray] = []
    stage_strata: list[np.ndarray] = []
    n_sampled_list = []
    for k, cl in enumerate(stage_clusters):
        col = stage_names[k]

        def label_of(code: int, cl: np.ndarray = cl, col: str = col) -> Any:
            return df[col].iloc[int(np.flatnonzero(cl == code)[0])] if col != "(row)" else code

        pair_codes, n_sampled = nested_codes(
            parents, cl, nest=nest, column=col, label_of=label_of,
            parent_role="strata" if k == 0 else f"stage-{k} clusters")
        nested_clusters.append(pair_codes)
        stage_strata.append(parents)
        n_sampled_list.append(n_sampled)
        parents = pair_codes
    return stage_names, stage_strata, nested_clusters, n_sampled_list


def _stage_popsizes(df: pd.DataFrame, fpc_cols: list[str], stage_strata: list[np.ndarray],
                    n_sampled_list: list[np.ndarray], s_labels: np.ndarray,
                    stage_names: list[str]) -> list[np.ndarray | None]:
    """Population count of clusters per row at every stage with an fpc column (else None)."""
    popsizes: list[np.ndarray | None] = []
    for k in range(len(stage_strata)):
        if k >= len(fpc_cols):
            popsizes.append(None)
            continue
        popsizes.append(stage_popsize(
            fpc_cols[k], df[fpc_cols[k]], stage_strata[k], n_sampled_list[k], stage=k + 1,
            where=lambda code, k=k: _stratum_label(k, code, s_labels, stage_strata, df,
                                                   stage_names)))
    return popsizes


def _initial_weights(df: pd.DataFrame, weights: str | None, probs: str | None,
                     fpc_cols: list[str], popsizes: list[np.ndarray | None],
                     n_sampled_list: list[np.ndarray]) -> np.ndarray:
    """Design weights from ``weights``, ``probs`` or the fpc counts (else 1, with a warning)."""
    n = len(df)
    if weights is not None:
        w = check_design_weights(df[weights], name=weights)
    elif probs is not None:
        p = check_weights(df[probs], name=probs, allow_zero=False)
        if (p > 1).any():
            raise SatsampleError(f"probs {probs!r}: {int((p > 1).sum())} value(s) exceed 1")
        w = 1.0 / p
    elif fpc_cols:
        w = np.ones(n)
        for k, pop in enumerate(popsizes):
            if pop is not None:
                w = w * pop / n_sampled_list[k]
    else:
        warnings.warn(
            "no weights, probs or fpc given: assuming equal probability (all weights 1)",
            SatsampleWarning,
            stacklevel=3,  # the caller of survey_design
        )
        w = np.ones(n)
    return w


def _variance_stages(stage_strata: list[np.ndarray], nested_clusters: list[np.ndarray],
                     n_sampled_list: list[np.ndarray],
                     popsizes: list[np.ndarray | None]) -> tuple[Stage, ...]:
    """The read-only stages the variance recursion uses (deeper only below a stage with fpc)."""
    stages = tuple(
        Stage(
            stratum=_readonly(stage_strata[k]),
            cluster=_readonly(nested_clusters[k]),
            n_sampled=_readonly(n_sampled_list[k]),
            popsize=None if popsizes[k] is None else _readonly(popsizes[k]),
        )
        for k in range(len(nested_clusters))
    )
    # the variance recursion goes one stage deeper only when the stage has an fpc
    used = 1
    while used < len(stages) and stages[used - 1].popsize is not None:
        used += 1
    return stages[:used]


def stage_popsize(col: str, values: Any, strata: np.ndarray, n_sampled: np.ndarray, *,
                  stage: int, where: Callable[[int], str]) -> np.ndarray:
    """Population of clusters per row from an fpc column, checked (the one fpc check).

    ``values`` are the fpc of each row (population counts > 1, or sampling
    fractions <= 1), ``strata`` the row's stratum code at this stage,
    ``n_sampled`` its sampled clusters; ``where(code)`` names a stratum.
    Raises :class:`DesignError` for values that are not positive numbers, an
    fpc varying within a stratum, fractions mixed with counts, and a
    population smaller than the sample.
    """
    vals = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(vals).any() or (vals <= 0).any():
        bad = int((np.isnan(vals) | (vals <= 0)).sum())
        raise DesignError(f"fpc column {col!r}: {bad} value(s) are not positive numbers")
    ref = np.empty(int(strata.max()) + 1)
    ref[strata] = vals  # one value of each stratum (the last row's)
    varies = np.abs(vals - ref[strata]) > 1e-9 * ref[strata]
    if varies.any():
        raise DesignError(f"fpc column {col!r} varies within stratum "
                          f"{where(int(strata[np.flatnonzero(varies)[0]]))} at stage {stage}")
    nsamp = np.asarray(n_sampled, dtype=np.float64)
    if (vals <= 1).all():
        pop = nsamp / vals  # sampling fractions
    elif (vals < 1).any():
        raise DesignError(
            f"fpc column {col!r} mixes sampling fractions (<= 1) and population counts (> 1)"
        )
    else:
        pop = vals
    too_small = pop < nsamp - 1e-9
    if too_small.any():
        i = int(np.flatnonzero(too_small)[0])
        raise DesignError(
            f"fpc column {col!r}: stratum {where(int(strata[i]))} has {int(nsamp[i])} sampled "
            f"clusters at stage {stage} but a population of only {pop[i]:g}"
        )
    return pop


def check_design_weights(values: Any, *, name: str) -> np.ndarray:
    """Design weights as float64: finite and positive (a weight is 1/probability, never 0)."""
    w = check_weights(values, name=name)
    if (w == 0).any():
        raise SatsampleError(
            f"weights {name!r}: {int((w == 0).sum())} value(s) are zero; a design weight "
            "is 1/probability and cannot be 0 (drop those rows and report them, or use a domain)"
        )
    return w


def nested_codes(parents: np.ndarray, clusters: np.ndarray, *, nest: bool, column: str,
                 label_of: Callable[[int], Any], parent_role: str = "strata"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the (parent, cluster) pairs and, per row, the clusters sampled in its parent.

    Parameters
    ----------
    parents, clusters : ndarray of int64, shape (n,)
        Dense codes (``0..P-1``, ``0..C-1``) of the stratum (or earlier-stage
        cluster) and of the cluster of every row.
    nest : bool
        Relabel clusters within parents (R's ``nest = TRUE``); otherwise a
        cluster found in two parents raises.
    column : str
        Name of the cluster column, for the message.
    label_of : callable
        Cluster code -> label shown in the message.
    parent_role : str, default="strata"

    Returns
    -------
    pair_codes : (n,) int64
        Codes of the pairs, sorted by (parent, cluster).
    n_sampled : (n,) int64
        Distinct clusters in the row's parent.

    Raises
    ------
    DesignError
        A cluster in several parents with ``nest=False``.
    """
    parents = np.asarray(parents, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    m = int(clusters.max()) + 1 if clusters.size else 1
    n_parents = int(parents.max()) + 1 if parents.size else 1
    if m == clusters.size:  # one row per cluster (element sampling): nested, no sort of pairs
        if bool(np.all(clusters[1:] > clusters[:-1])):
            order = np.argsort(parents, kind="stable")
        else:
            order = np.lexsort((clusters, parents))
        pair_codes = np.empty(m, dtype=np.int64)
        pair_codes[order] = np.arange(m, dtype=np.int64)
        counts = np.bincount(parents, minlength=n_parents)
        return pair_codes, counts[parents].astype(np.int64)
    key = parents * m + clusters
    ukey, pair_codes = np.unique(key, return_inverse=True)
    pair_codes = pair_codes.reshape(-1).astype(np.int64)
    u_parent, u_cluster = ukey // m, ukey % m
    if ukey.size != m and not nest:
        per_cluster = np.bincount(u_cluster, minlength=m)
        c_code = int(np.flatnonzero(per_cluster > 1)[0])
        raise DesignError(
            f"cluster {plain(label_of(c_code))!r} of column {column!r} appears in "
            f"{int(per_cluster[c_code])} different {parent_role}: clusters are not nested; pass "
            "nest=True to relabel them within each stratum"
        )
    counts = np.bincount(u_parent, minlength=n_parents)
    return pair_codes, counts[parents].astype(np.int64)


def _stratum_label(k: int, code: int, s_labels: np.ndarray, stage_strata: list[np.ndarray],
                   df: pd.DataFrame, stage_names: list[str]) -> str:
    if k == 0:
        return repr(s_labels[code])
    rows = np.flatnonzero(stage_strata[k] == code)
    col = stage_names[k - 1]
    return f"{col}={plain(df[col].iloc[rows[0]])!r}" if col in df.columns else str(code)


def _check_lonely(stages: tuple[Stage, ...], rule: str, s_labels: np.ndarray, df: pd.DataFrame,
                  stage_names: list[str]) -> None:
    for k, st in enumerate(stages):
        lonely = st.n_sampled == 1
        if st.popsize is not None:
            lonely &= st.popsize > 1  # a stratum with one PSU out of one is a certainty
        if lonely.any() and rule == "fail":
            code = int(st.stratum[np.flatnonzero(lonely)[0]])
            if k == 0:
                label = str(s_labels[code])
            else:
                row = int(np.flatnonzero(st.stratum == code)[0])
                col = stage_names[k - 1]
                label = f"{col}={df[col].iloc[row]}" if col in df.columns else str(code)
            n_lonely = np.unique(st.stratum[lonely]).size
            raise DesignError(
                f"Stratum ({label}) has only one PSU at stage {k + 1} "
                f"({n_lonely} such stratum/strata); choose lonely_psu='remove', 'certainty', "
                "'adjust' or 'average'"
            )

