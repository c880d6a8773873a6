"""The survey design object: how the sample was drawn, bound to its data.

A :class:`SurveyDesign` is built once by :func:`survey_design`, validated
there, and never modified.  Weighting steps return a new design with new
weights (and, for calibration, the information the Taylor variance needs to
replace scores by calibration residuals); replication returns a new design
carrying replicate weights.  Every estimator is a free function taking a
design.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ._tables import TableField, _copy_on_write
from ._validation import (
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

__all__ = [
    "LONELY_PSU_RULES",
    "LonelyPSU",
    "ReplicateWeights",
    "Stage",
    "SurveyDesign",
    "WeightStep",
    "survey_design",
]

LonelyPSU = Literal["fail", "remove", "certainty", "adjust", "average"]
LONELY_PSU_RULES: tuple[str, ...] = ("fail", "remove", "certainty", "adjust", "average")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.flags.writeable and a.base is not None:
        a = a.copy()
    a.setflags(write=False)
    return a


@dataclass(frozen=True, kw_only=True, eq=False)
class Stage:
    """One sampling stage, as arrays aligned with the rows of the data.

    Attributes
    ----------
    stratum : ndarray of int64, shape (n,)
        Stratum code of each row at this stage (stage 1: the declared strata;
        later stages: the cluster of the previous stage).
    cluster : ndarray of int64, shape (n,)
        Cluster (PSU at stage 1, SSU at stage 2, ...) code of each row, unique
        across the whole sample (nested in ``stratum``).
    n_sampled : ndarray of int64, shape (n,)
        Number of distinct sampled clusters in the row's stratum.
    popsize : ndarray of float64, shape (n,) or None
        Number of clusters in the population of the row's stratum (the
        finite population correction); ``None`` when sampled with replacement.
    """

    stratum: np.ndarray
    cluster: np.ndarray
    n_sampled: np.ndarray
    popsize: np.ndarray | None

    def __repr__(self) -> str:
        n_strata = int(np.unique(self.stratum).size) if self.stratum.size else 0
        n_clusters = int(np.unique(self.cluster).size) if self.cluster.size else 0
        fpc = "with fpc" if self.popsize is not None else "with replacement"
        return f"Stage(rows={self.stratum.size}, strata={n_strata}, clusters={n_clusters}, {fpc})"

    @property
    def sampling_fraction(self) -> np.ndarray:
        """``n_sampled / popsize`` per row (0 when sampled with replacement)."""
        if self.popsize is None:
            return np.zeros(self.n_sampled.shape, dtype=np.float64)
        return self.n_sampled / self.popsize


class Residualizer(Protocol):
    """Replaces score columns by their residuals after a weighting step.

    A calibration (post-stratification, raking, GREG) changes the variance of
    every estimator: the Taylor variance is computed on the residuals of the
    weighted scores.  Each weighting step that needs it stores one object with
    this method in :attr:`SurveyDesign.calibrations`.
    """

    def residualize(self, x: np.ndarray) -> np.ndarray:
        """Return the residuals of the weighted score matrix ``x`` (n, k)."""
        ...


@dataclass(frozen=True, kw_only=True)
class WeightStep:
    """One entry of a design's weighting history.

    Attributes
    ----------
    method : str
        ``"design"``, ``"nonresponse"``, ``"poststratify"``, ``"rake"``,
        ``"calibrate"``, ``"trim"``...
    params : tuple of (str, object)
        The options of the step, as (name, value) pairs.
    converged : bool or None
        For iterative steps; ``None`` otherwise.
    n_iter : int or None
        Iterations (passes) used by an iterative step.
    kish_deff : float
        Kish's design effect of unequal weights after the step,
        ``n sum(w^2) / (sum w)^2``.
    effective_n : float
        ``(sum w)^2 / sum(w^2)``.
    weight_min, weight_max, weight_sum : float
        Range and sum of the weights after the step.
    n_rows : int
        Rows that carry a positive weight after the step.
    message : str
        Free text (warnings that were accepted, notes).
    """

    method: str
    params: tuple[tuple[str, Any], ...] = ()
    converged: bool | None = None
    n_iter: int | None = None
    kish_deff: float = float("nan")
    effective_n: float = float("nan")
    weight_min: float = float("nan")
    weight_max: float = float("nan")
    weight_sum: float = float("nan")
    n_rows: int = 0
    message: str = ""

    @classmethod
    def from_weights(cls, method: str, weights: np.ndarray, **kwargs: Any) -> WeightStep:
        """Build a step record with the diagnostics of ``weights``."""
        w = np.asarray(weights, dtype=np.float64)
        pos = w[w > 0]
        s1 = float(pos.sum())
        s2 = float(np.dot(pos, pos))
        n = pos.size
        params = kwargs.pop("params", ())
        if isinstance(params, dict):
            params = tuple(params.items())
        return cls(
            method=method,
            params=tuple(params),
            kish_deff=n * s2 / s1**2 if n else float("nan"),
            effective_n=s1**2 / s2 if n else float("nan"),
            weight_min=float(pos.min()) if n else float("nan"),
            weight_max=float(pos.max()) if n else float("nan"),
            weight_sum=s1,
            n_rows=n,
            **kwargs,
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class ReplicateWeights:
    """Replicate weights of a design and how to turn them into a variance.

    The variance of an estimator with replicate estimates ``theta_r`` is

    .. math:: v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_r - c)^2,

    with ``c`` the mean of the replicate estimates (``mse=False``, R's
    default) or the full-sample estimate (``mse=True``).

    Attributes
    ----------
    kind : str
        ``"JK1"``, ``"JKn"``, ``"BRR"``, ``"Fay"``, ``"subbootstrap"``
        (Rao-Wu rescaling bootstrap), ``"bootstrap"`` (Canty-Davison) or
        ``"declared"`` (supplied by a data producer).
    weights : ndarray of float64, shape (R, n)
        Replicate analysis weights, one row per replicate (C-contiguous), or
        ``None`` when the replicates are generated on the fly from ``seed``
        by a kernel (large bootstrap designs).
    scale : float
        Overall multiplier.
    rscales : ndarray of float64, shape (R,)
        Per-replicate multipliers.
    mse : bool
        Centre at the full-sample estimate instead of the replicate mean.
    degf : int
        Degrees of freedom for intervals (R: rank of the replicate weights
        minus one for bootstrap; PSUs minus strata for jackknife and BRR).
    seed : int or None
        Key of the counter-based stream, for replicates generated on the fly.
    n_replicates : int
        Number of replicates ``R``.
    fay_rho : float or None
        Fay's coefficient for ``kind="Fay"``.
    steps : tuple
        Weighting steps to replay on replicates generated on the fly
        (``weights is None``): objects with a method
        ``apply(block: ndarray (b, n), replicate_index: ndarray (b,)) -> ndarray (b, n)``
        that turn a block of replicate weights before the step into the block
        after it.  Materialised replicate weights already include every step.
    scheme : ReplicateScheme or None
        The replication method (:mod:`satsample.replicate`): how to generate
        the replicates, their totals and a closed-form variance, whether or
        not the weights are stored.
    origin : ndarray or None
        The analysis weights stored replicates were generated from (see
        :meth:`regenerates`).
    base_weights : ndarray of float64, shape (n,) or None
        For replicates generated on the fly with ``steps``: the analysis
        weights the replicate multipliers apply to (the full-sample weights
        before the first replayed step), so the replicate weights before the
        steps are ``multipliers * base_weights``.  ``None`` when ``steps`` is
        empty (the design's current weights).
    """

    kind: str
    weights: np.ndarray | None
    scale: float
    rscales: np.ndarray
    mse: bool = False
    degf: int = 0
    seed: int | None = None
    n_replicates: int = 0
    fay_rho: float | None = None
    steps: tuple[Any, ...] = ()
    base_weights: np.ndarray | None = None
    scheme: Any = None
    origin: np.ndarray | None = None

    def __repr__(self) -> str:
        stored = "stored" if self.weights is not None else "generated on the fly"
        steps = f", {len(self.steps)} weighting step(s) replayed" if self.steps else ""
        return (f"ReplicateWeights(kind={self.kind!r}, n_replicates={self.n_replicates}, "
                f"{stored}, scale={self.scale:.6g}, mse={self.mse}, degf={self.degf}{steps})")

    def regenerates(self, weights: np.ndarray) -> bool:
        """True when the scheme can recompute these replicates for a design with ``weights``.

        Replicates that are not stored, or stored replicates the scheme
        generated from exactly these analysis weights (no weighting step
        since): their totals then come from the scheme, so storing them changes
        nothing in the numbers.
        """
        if self.scheme is None or self.steps:
            return False
        return self.weights is None or (self.scheme.generates and self.origin is weights)

    def variance(self, theta_r: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Replicate variance of estimates.

        Parameters
        ----------
        theta_r : ndarray of shape (R, ...)
            Replicate estimates.
        theta : ndarray of shape (...)
            Full-sample estimates (used as centre when ``mse=True``).

        Returns
        -------
        ndarray of shape (...)
        """
        theta_r = np.asarray(theta_r, dtype=np.float64)
        centre = np.asarray(theta, dtype=np.float64) if self.mse else theta_r.mean(axis=0)
        dev = theta_r - centre
        rs = self.rscales.reshape((-1,) + (1,) * (theta_r.ndim - 1))
        return self.scale * np.sum(rs * dev * dev, axis=0)

    def covariance(self, theta_r: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Replicate covariance matrix of a vector of estimates.

        Parameters
        ----------
        theta_r : ndarray of shape (R, m)
        theta : ndarray of shape (m,)

        Returns
        -------
        ndarray of shape (m, m)
            :math:`\\text{scale} \\sum_r \\text{rscales}_r (\\theta_r - c)(\\theta_r - c)^T`.
        """
        theta_r = np.asarray(theta_r, dtype=np.float64)
        centre = np.asarray(theta, dtype=np.float64) if self.mse else theta_r.mean(axis=0)
        dev = theta_r - centre
        out = self.scale * (dev.T * self.rscales[None, :]) @ dev
        return (out + out.T) / 2.0  # exactly symmetric


@dataclass(frozen=True, kw_only=True, eq=False)
class SurveyDesign:
    """A validated survey design bound to its data.  Build with :func:`survey_design`.

    Attributes
    ----------
    data : pandas.DataFrame
        A private copy of the data (rows in the order given), handed out as a new
        (Copy-on-Write) copy on every access: editing it does not change the design.
    weights : ndarray of float64, shape (n,)
        Analysis weights (read-only).
    design_weights : ndarray of float64, shape (n,)
        The weights declared with the design, before any weighting step.
    stages : tuple of Stage
        One entry per sampling stage used by the Taylor variance.
    strata_labels : ndarray
        Label of each stage-1 stratum code.
    lonely_psu : {"fail", "remove", "certainty", "adjust", "average"}
        What to do with a stratum that has a single PSU (R's
        ``survey.lonely.psu``; see :func:`survey_design`).
    calibrations : tuple
        Residualizers of the weighting steps that change the Taylor variance.
    replicates : ReplicateWeights or None
        Replicate weights, when the design is a replicate design.
    history : tuple of WeightStep
        The weighting history, the declared design first.
    columns : dict
        The column names used to declare the design (for records and reports).
    """

    data: pd.DataFrame = TableField()
    weights: np.ndarray
    design_weights: np.ndarray
    stages: tuple[Stage, ...]
    strata_labels: np.ndarray
    lonely_psu: LonelyPSU = "fail"
    calibrations: tuple[Any, ...] = ()
    replicates: ReplicateWeights | None = None
    history: tuple[WeightStep, ...] = ()
    columns: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.weights.shape[0])

    @property
    def strata(self) -> np.ndarray:
        """Stage-1 stratum code of each row (int64)."""
        return self.stages[0].stratum

    @property
    def psu(self) -> np.ndarray:
        """Stage-1 cluster (PSU) code of each row (int64)."""
        return self.stages[0].cluster

    @property
    def n_strata(self) -> int:
        """Number of stage-1 strata."""
        return int(self.strata_labels.shape[0])

    @property
    def n_psu(self) -> int:
        """Number of stage-1 PSUs."""
        return int(np.unique(self.psu).shape[0])

    @property
    def degf(self) -> int:
        """Design degrees of freedom: PSUs minus strata (or the replicate df)."""
        if self.replicates is not None:
            return int(self.replicates.degf)
        return self.n_psu - self.n_strata

    def domain_degf(self, in_domain: np.ndarray) -> int:
        """Degrees of freedom of a domain: its PSUs minus its strata (as R counts them)."""
        mask = np.asarray(in_domain, dtype=bool)
        if self.replicates is not None:
            return int(self.replicates.degf)
        if not mask.any():
            return 0
        return int(np.unique(self.psu[mask]).size - np.unique(self.strata[mask]).size)

    def __repr__(self) -> str:
        rep = "" if self.replicates is None else (
            f", {self.replicates.n_replicates} {self.replicates.kind} replicates"
        )
        return (
            f"SurveyDesign(n={self.n}, strata={self.n_strata}, psu={self.n_psu}, "
            f"stages={len(self.stages)}, weighting_steps={len(self.history) - 1}{rep})"
        )

    # -------------------------------------------------------------- changes
    def with_weights(
        self,
        weights: np.ndarray,
        *,
        step: WeightStep,
        calibration: Any | None = None,
        replicate_weights: np.ndarray | None = None,
        replicate_step: Any | None = None,
    ) -> SurveyDesign:
        """Return a new design with new analysis weights (the old one is unchanged).

        Parameters
        ----------
        weights : array-like of shape (n,)
            The new analysis weights (finite, non-negative).
        step : WeightStep
            The history record of the step that produced them.
        calibration : Residualizer, optional
            Stored when the step changes the Taylor variance of estimators.
        replicate_weights : ndarray of shape (R, n), optional
            The same step applied to every replicate; required when the design
            carries materialised replicate weights.
        replicate_step : object, optional
            For replicates generated on the fly (``replicates.weights is None``,
            then required instead of ``replicate_weights``): the step to replay
            on blocks of replicate weights (see :attr:`ReplicateWeights.steps`);
            it is appended to ``replicates.steps``, and the first one records
            the current weights as ``replicates.base_weights``.
        """
        w = _readonly(check_weights(weights, name=step.method).copy())
        if w.shape != self.weights.shape:
            raise DesignError(f"new weights have shape {w.shape}, expected {self.weights.shape}")
        reps = self.replicates
        if reps is not None and reps.weights is None:
            if replicate_step is None or replicate_weights is not None:
                raise DesignError(
                    f"the design's {reps.n_replicates} {reps.kind} replicates are generated on "
                    f"the fly; weighting step {step.method!r} must give replicate_step= (the "
                    "step replayed on blocks of replicate weights), not replicate_weights="
                )
            base = self.weights if not reps.steps else reps.base_weights
            reps = replace(reps, steps=(*reps.steps, replicate_step), base_weights=base)
        elif reps is not None:
            if replicate_weights is None:
                raise DesignError(
                    f"the design has {reps.n_replicates} {reps.kind} replicate weights; "
                    f"weighting step {step.method!r} must also be applied to them"
                )
            rw = np.ascontiguousarray(replicate_weights, dtype=np.float64)
            if rw.shape != (reps.n_replicates, self.n):
                raise DesignError(
                    f"replicate weights have shape {rw.shape}, expected {(reps.n_replicates, self.n)}"
                )
            reps = replace(reps, weights=_readonly(rw))
        cal = self.calibrations + ((calibration,) if calibration is not None else ())
        return replace(self, weights=w, calibrations=cal, replicates=reps,
                       history=(*self.history, step))

    def with_replicates(self, replicates: ReplicateWeights) -> SurveyDesign:
        """Return a new design carrying ``replicates``."""
        return replace(self, replicates=replicates)

    def column(self, name: str) -> pd.Series:
        """Return a column of the design's data (raises a clear error if absent)."""
        check_columns(self.data, name, role="variable")
        return self.data[name]


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
    data : pandas.DataFrame
        One row per responding (or sampled) unit.  It is copied; the caller's
        frame is never modified.
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
        raise SatsampleError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.shape[0] == 0:
        raise SatsampleError("data has no rows")
    lonely_psu = check_choice(lonely_psu, name="lonely_psu", allowed=LONELY_PSU_RULES)
    id_cols = as_column_list(ids)
    fpc_cols = as_column_list(fpc)
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

    # with Copy-on-Write (pandas 3) a shallow copy shares the columns and no later edit of the
    # caller's frame reaches it: no column is copied (pandas 2 without CoW: a deep copy)
    df = data.copy(deep=not _copy_on_write())
    df.index = pd.RangeIndex(len(df)) if not isinstance(df.index, pd.RangeIndex) else df.index
    n = len(df)

    if strata is None:
        s_codes = np.zeros(n, dtype=np.int64)
        s_labels = np.array(["(all)"], dtype=object)
    else:
        s_codes, s_labels = _codes(df[strata])

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

    # fpc per stage
    popsizes: list[np.ndarray | None] = []
    for k in range(len(nested_clusters)):
        if k >= len(fpc_cols):
            popsizes.append(None)
            continue
        col = fpc_cols[k]
        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(vals).any() or (vals <= 0).any():
            bad = int((np.isnan(vals) | (vals <= 0)).sum())
            raise DesignError(f"fpc column {col!r}: {bad} value(s) are not positive numbers")
        st = stage_strata[k]
        ref = np.empty(int(st.max()) + 1)
        ref[st] = vals  # one value of each stratum (the last row's)
        varies = np.abs(vals - ref[st]) > 1e-9 * ref[st]
        if varies.any():
            bad_s = int(st[np.flatnonzero(varies)[0]])
            where = _stratum_label(k, bad_s, s_labels, stage_strata, df, stage_names)
            raise DesignError(f"fpc column {col!r} varies within stratum {where} at stage {k + 1}")
        nsamp = n_sampled_list[k].astype(np.float64)
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
            where = _stratum_label(k, int(stage_strata[k][i]), s_labels, stage_strata, df, stage_names)
            raise DesignError(
                f"fpc column {col!r}: stratum {where} has {int(nsamp[i])} sampled clusters at stage "
                f"{k + 1} but a population of only {pop[i]:g}"
            )
        popsizes.append(pop)

    # weights
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
            stacklevel=2,
        )
        w = np.ones(n)

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
    stages = stages[:used]

    # lonely PSUs
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
            f"cluster {label_of(c_code)!r} of column {column!r} appears in "
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


Residualize = Callable[[np.ndarray], np.ndarray]
