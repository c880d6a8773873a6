"""The design object: how the sample was drawn, bound to its data (frozen, never modified).

A :class:`SurveyDesign` is built once by :func:`satsample.design.survey_design`,
validated there, and never modified.  Weighting steps return a new design with
new weights (and, for calibration, the information the Taylor variance needs
to replace scores by calibration residuals); replication returns a new design
carrying :class:`ReplicateWeights`.  Every estimator is a free function taking
a design.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from .._tables import TableField
from .._validation import DesignError, check_columns, check_weights

__all__ = [
    "LONELY_PSU_RULES",
    "LonelyPSU",
    "ReplicateWeights",
    "Residualizer",
    "Stage",
    "SurveyDesign",
    "WeightStep",
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
        # codes are dense (0..m-1) by construction
        n_strata = int(self.stratum.max()) + 1 if self.stratum.size else 0
        n_clusters = int(self.cluster.max()) + 1 if self.cluster.size else 0
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
        """Number of stage-1 PSUs (their codes are dense, ``0..P-1``: no sort needed)."""
        return int(self.psu.max()) + 1 if self.psu.size else 0

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


