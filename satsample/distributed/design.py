"""The Dask survey design: partitions are designs.

:func:`dask_survey_design` (reached through :func:`satsample.survey_design`
with a Dask DataFrame) validates the design columns in one pass over the
partitions and returns a frozen :class:`DaskSurveyDesign`: the frame, the
global level tables of stage 1 (strata, PSUs per stratum, population sizes)
and the same weighting history and replicate objects as in memory.  Every
computation then goes through :func:`partition_design`, which turns one
partition (whole strata) into an in-memory :class:`~satsample.design.SurveyDesign`
with *global* codes, so that the in-memory code runs unchanged on it, and
:func:`satsample.distributed.reduce`, which adds up the partitions' results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

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
from ..design import LONELY_PSU_RULES, ReplicateWeights, Stage, SurveyDesign, WeightStep
from ..design.build import _check_lonely, check_design_weights, stage_popsize, survey_design
from ..design.objects import _readonly
from ._reduce import light, reduce, require_dask

__all__ = [
    "ROW",
    "WEIGHT",
    "DaskSurveyDesign",
    "dask_survey_design",
    "is_dask_frame",
    "partition_design",
    "with_weight_factors",
]

ROW = "__satsample_row__"  # global row position: the order of ddf.compute()
WEIGHT = "__satsample_weight__"  # analysis weights after weighting steps


def is_dask_frame(data: Any) -> bool:
    """True for a ``dask.dataframe.DataFrame`` (without importing dask when it is not one)."""
    mod = type(data).__module__
    if not (mod.startswith("dask.") or mod.startswith("dask_expr")):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


@dataclass(frozen=True, kw_only=True, eq=False)
class DaskSurveyDesign:
    """A validated survey design bound to a Dask DataFrame.  Build with :func:`satsample.survey_design`.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
        The data with a private column of global row positions (``ROW``) and,
        after a weighting step, of analysis weights (``WEIGHT``).  Every
        stratum lies in one partition (the frame was shuffled by stratum when
        it did not, see ``shuffled``); within a partition rows are in global
        row order.  Partitions may be empty and hold several strata.
    n : int
        Number of rows.
    strata_labels : ndarray
        Label of each global stratum code (sorted, as in memory).
    stratum_npsu : ndarray of int64, shape (H,)
        Stage-1 PSUs sampled in each stratum.
    stratum_popsize : ndarray of float64, shape (H,) or None
        Stage-1 population of PSUs of each stratum (the fpc), ``None`` without fpc.
    lonely_psu : str
        The lonely-PSU rule (as :func:`satsample.survey_design`).
    columns : dict
        The declaration: ``ids``, ``strata``, ``weights``, ``probs``, ``fpc``, ``nest``.
    history : tuple of WeightStep
        The weighting history, the declared design first.
    calibrations : tuple
        Residualizers of calibration steps, in the Dask form (see
        :mod:`satsample.estimation.engine`: ``cross(part, x)`` and
        ``residualize(part, x, cross_total)``).
    replicates : ReplicateWeights or None
        Lazy replicates (the same objects as in memory, never stored).
    shuffled : bool
        Whether the caller's frame was shuffled by stratum (``ddf.shuffle(on=strata)``).
    n_partitions : int
    partition_replicates : ReplicateWeights or None
        What each partition's design carries: ``replicates``, with a jackknife
        renumbered to the global replicate numbers
        (:class:`satsample.distributed.replicates.PartitionJackknife`).
    """

    frame: Any
    n: int
    strata_labels: np.ndarray
    stratum_npsu: np.ndarray
    stratum_popsize: np.ndarray | None
    lonely_psu: str = "fail"
    columns: dict[str, Any] = field(default_factory=dict)
    history: tuple[WeightStep, ...] = ()
    calibrations: tuple[Any, ...] = ()
    replicates: ReplicateWeights | None = None
    shuffled: bool = False
    n_partitions: int = 1
    partition_replicates: ReplicateWeights | None = field(default=None, repr=False)

    @property
    def n_strata(self) -> int:
        """Number of stage-1 strata."""
        return int(self.strata_labels.shape[0])

    @property
    def n_psu(self) -> int:
        """Number of stage-1 PSUs."""
        return int(self.stratum_npsu.sum())

    @property
    def psu_offset(self) -> np.ndarray:
        """Global code of the first PSU of each stratum (PSU codes run by stratum)."""
        return np.r_[0, np.cumsum(self.stratum_npsu)[:-1]].astype(np.int64)

    @property
    def degf(self) -> int:
        """Design degrees of freedom: PSUs minus strata (or the replicate df)."""
        if self.replicates is not None:
            return int(self.replicates.degf)
        return self.n_psu - self.n_strata

    @property
    def weighted(self) -> bool:
        """Whether the frame carries analysis weights of a weighting step (``WEIGHT``)."""
        return len(self.history) > 1

    def with_replicates(self, replicates: ReplicateWeights) -> DaskSurveyDesign:
        """Return a new design carrying ``replicates`` (lazy: ``replicates.weights is None``)."""
        from .replicates import partition_replicates

        if replicates.weights is not None:
            raise DesignError("a Dask design carries replicates generated on the fly only")
        out = replace(self, replicates=replicates, partition_replicates=None)
        return replace(out, partition_replicates=partition_replicates(out))

    def __repr__(self) -> str:
        rep = "" if self.replicates is None else (
            f", {self.replicates.n_replicates} {self.replicates.kind} replicates")
        return (f"DaskSurveyDesign(n={self.n}, strata={self.n_strata}, psu={self.n_psu}, "
                f"partitions={self.n_partitions}, shuffled={self.shuffled}, "
                f"weighting_steps={len(self.history) - 1}{rep})")


# ----------------------------------------------------------------- partitions
def partition_design(pdf: pd.DataFrame, design: DaskSurveyDesign) -> SurveyDesign:
    """The in-memory design of one partition, with the global codes of the whole sample.

    Contract (private, used by the engine's passes and the Dask weighting steps):

    * ``pdf`` is a non-empty partition of ``design.frame`` (whole strata, rows
      in global row order);
    * the result is what :func:`satsample.survey_design` gives on these rows,
      with stage-1 stratum codes and ``strata_labels`` those of the whole
      sample (so ``n_strata`` is global and the Rao-Wu stream key of a stratum
      is the same as in memory), stage-1 PSU codes the global ones (PSUs
      sorted by stratum, then label; by row order without ``ids``) and later
      stages coded within the partition;
    * ``weights`` are the current analysis weights (``WEIGHT`` after a
      weighting step), ``design_weights`` the declared ones; ``history`` is
      the global one, ``replicates`` too (the same object; a jackknife's scheme
      renumbers the partition's replicates globally; declared replicate-weight
      columns become the stored weights of the partition's rows); ``calibrations``
      is empty (the engine applies ``design.calibrations`` with their global
      cross-products);
    * ``data`` holds the partition's rows (private columns included).

    Per-stratum quantities (PSU counts, fpc, lonely PSUs, Rao-Wu counts, PSU
    ranks) are therefore those of the whole sample, and a sum over strata
    computed on the partition is the partition's share of the global sum.
    """
    cols = design.columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SatsampleWarning)
        d = survey_design(pdf, ids=list(cols["ids"]) or None, strata=cols["strata"],
                          weights=cols["weights"], probs=cols["probs"],
                          fpc=list(cols["fpc"]) or None, nest=cols["nest"],
                          lonely_psu=design.lonely_psu)
    s0 = d.stages[0]
    to_global = pd.Index(design.strata_labels).get_indexer(pd.Index(d.strata_labels))
    if (to_global < 0).any():  # pragma: no cover - the labels come from the validation pass
        raise SatsampleError("a partition holds a stratum the validation pass did not see")
    s_glob = to_global[s0.stratum]
    n_local = int(s0.cluster.max()) + 1
    cl_stratum = np.empty(n_local, dtype=np.int64)
    cl_stratum[s0.cluster] = s0.stratum  # local PSU codes run by local stratum
    first = np.searchsorted(cl_stratum, np.arange(d.n_strata))
    local_npsu = np.bincount(cl_stratum, minlength=d.n_strata)
    if not np.array_equal(local_npsu, design.stratum_npsu[to_global]):
        raise SatsampleError(
            "a partition does not hold whole strata (internal error: the frame should have "
            "been shuffled by stratum)")
    c_glob = design.psu_offset[s_glob] + (s0.cluster - first[s0.stratum])
    stages = [Stage(stratum=_readonly(s_glob), cluster=_readonly(c_glob),
                    n_sampled=s0.n_sampled, popsize=s0.popsize)]
    if len(d.stages) > 1:
        stages.append(replace(d.stages[1], stratum=stages[0].cluster))
        stages.extend(d.stages[2:])
    w = d.weights
    if design.weighted:
        w = _readonly(pdf[WEIGHT].to_numpy(dtype=np.float64))
    out = replace(d, weights=w, design_weights=d.weights, stages=tuple(stages),
                  strata_labels=_readonly(np.asarray(design.strata_labels, dtype=object)),
                  calibrations=(), replicates=design.partition_replicates,
                  history=design.history, columns=dict(design.columns))
    reps = out.replicates
    if reps is not None and hasattr(reps.scheme, "bind"):  # declared columns: this partition's
        out = replace(out, replicates=reps.scheme.bind(reps, out))
    return out


# ------------------------------------------------------------- weight columns
def _reweight(pdf: pd.DataFrame, design: DaskSurveyDesign, fn: Callable[[SurveyDesign], Any],
              mode: str, name: str, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    if len(pdf) == 0:
        return pdf.assign(**{WEIGHT: np.zeros(0, dtype=np.float64)})
    where = "" if partition_info is None else f"partition {partition_info['number']}: "
    try:
        part = partition_design(pdf, design)
        out = np.asarray(fn(part), dtype=np.float64)
        if out.shape != (part.n,):
            raise SatsampleError(f"weighting step {name!r} returned {out.shape} values for "
                                 f"{part.n} rows")
        w = part.weights * out if mode == "factors" else out
        check_weights(w, name=name)
    except SatsampleError as exc:
        raise type(exc)(f"{where}{exc}") from exc
    return pdf.assign(**{WEIGHT: w})


def _weight_moments(part: SurveyDesign) -> dict[str, Any]:
    return _moments_of(part.weights)


def _moments_of(w: np.ndarray) -> dict[str, Any]:
    pos = w[w > 0]
    return {"n": np.int64(pos.size), "s1": float(pos.sum()), "s2": float(np.dot(pos, pos)),
            "min": float(pos.min()) if pos.size else np.inf,
            "max": float(pos.max()) if pos.size else -np.inf}


def _combine_moments(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a if b is None else b
    return {"n": a["n"] + b["n"], "s1": a["s1"] + b["s1"], "s2": a["s2"] + b["s2"],
            "min": min(a["min"], b["min"]), "max": max(a["max"], b["max"])}


def with_weight_factors(
    design: DaskSurveyDesign,
    fn: Callable[[SurveyDesign], np.ndarray],
    *,
    step: WeightStep,
    calibration: Any | None = None,
    replicate_step: Any | None = None,
    mode: Literal["factors", "weights"] = "factors",
) -> DaskSurveyDesign:
    """A new Dask design whose analysis weights are computed partition by partition.

    Contract (used by the Dask weighting steps):

    * ``fn(part)`` runs on the workers on every non-empty partition's design
      (:func:`partition_design`: current weights in ``part.weights``) and
      returns an array of ``part.n`` values: the factors the current weights
      are multiplied by (``mode="factors"``), or the new weights themselves
      (``mode="weights"``).  Global quantities (cell totals, calibration
      coefficients) are computed beforehand with :func:`reduce` and captured
      by ``fn``; ``fn`` must be picklable;
    * the new weights go to the private ``WEIGHT`` column (``map_partitions``);
      one pass checks them (finite, non-negative; the error names the
      partition) and fills the step's diagnostics (``kish_deff``,
      ``effective_n``, ``weight_min``/``max``/``sum``, ``n_rows``), which
      replace those of ``step``;
    * ``calibration`` (a Dask residualizer) is appended to ``calibrations``;
      ``replicate_step`` to ``replicates.steps`` (required when the design has
      replicates, as :meth:`SurveyDesign.with_weights` requires it).

    Returns
    -------
    DaskSurveyDesign
        The input design is unchanged.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import numpy as np
    >>> import satsample as ss
    >>> from satsample.design import WeightStep
    >>> from satsample.distributed import with_weight_factors
    >>> pop = ss.make_population(n_users=2_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.survey_design(dd.from_pandas(answers, npartitions=3), strata="agency_id",
    ...                      weights="design_weight")
    >>> d2 = with_weight_factors(d, lambda part: np.full(part.n, 1.5),
    ...                          step=WeightStep(method="scale"))
    >>> [step.method for step in d2.history], round(d2.history[-1].weight_sum)
    (['design', 'scale'], 3000)
    """
    if not isinstance(step, WeightStep):
        raise SatsampleError(f"step must be a WeightStep, got {type(step).__name__}")
    check_choice(mode, name="mode", allowed=("factors", "weights"))
    reps = design.replicates
    if reps is not None:
        if replicate_step is None:
            raise DesignError(
                f"the design's {reps.n_replicates} {reps.kind} replicates are generated on the "
                f"fly; weighting step {step.method!r} must give replicate_step= (the step "
                "replayed on the replicates)")
        reps = replace(reps, steps=(*reps.steps, replicate_step))
        part_reps = replace(design.partition_replicates, steps=reps.steps)
    meta = design.frame._meta
    if WEIGHT not in meta.columns:
        meta = meta.assign(**{WEIGHT: np.zeros(0, dtype=np.float64)})
    frame = design.frame.map_partitions(_reweight, light(design), fn, mode, step.method,
                                        meta=meta, enforce_metadata=False)
    cal = design.calibrations + ((calibration,) if calibration is not None else ())
    out = replace(design, frame=frame, calibrations=cal, replicates=reps,
                  partition_replicates=part_reps if reps is not None else None,
                  history=(*design.history, step))
    mom = reduce(out, _weight_moments, combine=_combine_moments)
    n, s1, s2 = int(mom["n"]), mom["s1"], mom["s2"]
    diag = WeightStep(
        method=step.method, params=step.params, converged=step.converged, n_iter=step.n_iter,
        kish_deff=n * s2 / s1**2 if n else float("nan"),
        effective_n=s1**2 / s2 if n else float("nan"),
        weight_min=mom["min"] if n else float("nan"), weight_max=mom["max"] if n else float("nan"),
        weight_sum=s1, n_rows=n, message=step.message)
    return replace(out, history=(*design.history, diag))


# ------------------------------------------------------------------ validation
@dataclass(frozen=True, kw_only=True, eq=False)
class _Spec:
    ids: tuple[str, ...]
    strata: str | None
    weights: str | None
    probs: str | None
    fpc: tuple[str, ...]


def _scan(pdf: pd.DataFrame, spec: _Spec) -> dict[str, Any]:
    """The validation pass on one partition: checks, strata present, the level table."""
    out: dict[str, Any] = {"n": len(pdf), "error": None, "strata": None, "table": None,
                           "moments": None}
    if len(pdf) == 0:
        return out
    try:
        for col, role in ([(c, "ids") for c in spec.ids] + [(c, "fpc") for c in spec.fpc]
                          + ([(spec.strata, "strata")] if spec.strata else [])):
            check_no_missing(pdf, col, role=role)
            if role != "fpc":
                check_grouping(pdf[col], name=col, role=role)
        for col in spec.fpc:
            vals = pd.to_numeric(pdf[col], errors="coerce").to_numpy(dtype=np.float64)
            bad = np.isnan(vals) | (vals <= 0)
            if bad.any():
                raise DesignError(f"fpc column {col!r}: {int(bad.sum())} value(s) are not "
                                  "positive numbers")
        w = None
        if spec.weights is not None:
            w = check_design_weights(pdf[spec.weights], name=spec.weights)
        elif spec.probs is not None:
            p = check_weights(pdf[spec.probs], name=spec.probs, allow_zero=False)
            if (p > 1).any():
                raise SatsampleError(f"probs {spec.probs!r}: {int((p > 1).sum())} value(s) "
                                     "exceed 1")
            w = 1.0 / p
        elif not spec.fpc:
            w = np.ones(len(pdf))
        if w is not None:  # weights that do not depend on the whole strata: moments here
            out["moments"] = _moments_of(w)
    except SatsampleError as exc:
        out["error"] = exc
        return out
    if spec.strata is not None:
        out["strata"] = pd.Series(pdf[spec.strata].unique())
    keys = [*([spec.strata] if spec.strata else []), *spec.ids, *spec.fpc]
    if spec.ids:
        out["table"] = pdf[keys].drop_duplicates(ignore_index=True)
    else:  # element sampling: rows per (stratum, fpc value)
        grp = pdf.assign(_one=1)
        out["table"] = (grp.groupby(keys, sort=False, dropna=False)["_one"].sum().reset_index()
                        if keys else pd.DataFrame({"_one": [len(pdf)]}))
    return out


def _levels_clustered(table: pd.DataFrame, spec: _Spec, nest: bool, lonely_psu: str
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Stage-1 level tables from the distinct (strata, ids, fpc) rows, with the in-memory checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SatsampleWarning)
        lev = survey_design(table, ids=list(spec.ids), strata=spec.strata,
                            fpc=list(spec.fpc) or None, nest=nest, lonely_psu=lonely_psu)
    st = lev.stages[0]
    npsu = np.zeros(lev.n_strata, dtype=np.int64)
    npsu[st.stratum] = st.n_sampled
    pop = None
    if st.popsize is not None:
        pop = np.zeros(lev.n_strata)
        pop[st.stratum] = st.popsize
    return np.asarray(lev.strata_labels, dtype=object), npsu, pop


def _levels_elements(table: pd.DataFrame, spec: _Spec, labels: np.ndarray, lonely_psu: str
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Stage-1 level tables of element sampling (every row its own PSU), with the in-memory checks."""
    if spec.strata is None:
        codes = np.zeros(len(table), dtype=np.int64)
    else:
        codes = pd.Index(labels).get_indexer(table[spec.strata])
    h = labels.shape[0]
    npsu = np.bincount(codes, weights=table["_one"].to_numpy(), minlength=h).astype(np.int64)
    pop = None
    if spec.fpc:  # one row per (stratum, fpc value): the in-memory fpc checks on those rows
        row_pop = stage_popsize(spec.fpc[0], table[spec.fpc[0]], codes, npsu[codes], stage=1,
                                where=lambda c: repr(plain(labels[c])))
        pop = np.zeros(h)
        pop[codes] = row_pop
    stage = Stage(stratum=np.arange(h, dtype=np.int64), cluster=np.arange(h, dtype=np.int64),
                  n_sampled=npsu, popsize=pop)
    _check_lonely((stage,), lonely_psu, labels, pd.DataFrame(), ["(row)"])
    return npsu, pop


def _with_positions(pdf: pd.DataFrame, offset: int) -> pd.DataFrame:
    """A copy of the partition with its global row positions (the caller's frame is untouched)."""
    return pdf.assign(**{ROW: np.arange(offset, offset + len(pdf), dtype=np.int64)})


def _in_row_order(pdf: pd.DataFrame) -> pd.DataFrame:
    return pdf.sort_values(ROW, kind="stable")


def dask_survey_design(
    ddf: Any,
    *,
    ids: str | Sequence[str] | None = None,
    strata: str | None = None,
    weights: str | None = None,
    probs: str | None = None,
    fpc: str | Sequence[str] | None = None,
    nest: bool = False,
    lonely_psu: str = "fail",
) -> DaskSurveyDesign:
    """:func:`satsample.survey_design` of a Dask DataFrame (same arguments, same checks).

    One pass over the partitions checks the design columns (missing values,
    weights, fpc values; errors name the partition) and collects the distinct
    (strata, ids, fpc) rows, on which the in-memory nesting, fpc and
    lonely-PSU checks run unchanged (same errors as in memory).  When a
    stratum spans several partitions, the frame is shuffled once by stratum
    (``ddf.shuffle(on=strata)``; all rows go to one partition without
    ``strata``), each partition is put back in global row order, and the
    result is persisted (held in the workers' memory) for the later passes.
    A frame whose partitions already hold whole strata (e.g. Parquet files
    written by stratum) is neither shuffled nor persisted: every pass reads it.
    """
    require_dask()
    import dask
    import dask.dataframe as dd

    lonely_psu = check_choice(lonely_psu, name="lonely_psu", allowed=LONELY_PSU_RULES)
    id_cols = tuple(as_column_list(ids))
    fpc_cols = tuple(as_column_list(fpc))
    meta = ddf._meta
    check_columns(meta, list(id_cols), role="ids")
    check_columns(meta, strata, role="strata")
    check_columns(meta, weights, role="weights")
    check_columns(meta, probs, role="probs")
    check_columns(meta, list(fpc_cols), role="fpc")
    for reserved in (ROW, WEIGHT):
        if reserved in meta.columns:
            raise SatsampleError(f"column name {reserved!r} is reserved by the Dask backend")
    if weights is not None and probs is not None:
        raise SatsampleError("give weights= or probs=, not both")
    if len(fpc_cols) > max(len(id_cols), 1):
        raise SatsampleError(
            f"{len(fpc_cols)} fpc columns for {max(len(id_cols), 1)} stage(s); give at most one "
            "per stage")
    spec = _Spec(ids=id_cols, strata=strata, weights=weights, probs=probs, fpc=fpc_cols)

    # the one validation pass
    parts = ddf.to_delayed()
    scans = dask.compute(*[dask.delayed(_scan)(p, spec) for p in parts])
    for i, s in enumerate(scans):
        if s["error"] is not None:
            exc = s["error"]
            raise type(exc)(f"partition {i}: {exc}") from exc
    n = int(sum(s["n"] for s in scans))
    if n == 0:
        raise SatsampleError("data has no rows")
    if strata is None:
        labels = np.array(["(all)"], dtype=object)
        spread = np.array([sum(1 for s in scans if s["n"])])
    else:
        present = [s["strata"] for s in scans if s["strata"] is not None]
        labels = np.asarray(pd.factorize(pd.concat(present, ignore_index=True), sort=True)[1],
                            dtype=object)
        spread = np.bincount(np.concatenate(
            [pd.Index(labels).get_indexer(p) for p in present]), minlength=labels.size)
    table = pd.concat([s["table"] for s in scans if s["table"] is not None], ignore_index=True)
    if id_cols:
        table = table.drop_duplicates(ignore_index=True)
        lev_labels, npsu, pop = _levels_clustered(table, spec, nest, lonely_psu)
        if not np.array_equal(lev_labels, labels):  # pragma: no cover - same rows, same sort
            raise SatsampleError("internal error: strata of the level table differ")
    else:
        npsu, pop = _levels_elements(table, spec, labels, lonely_psu)
    if weights is None and probs is None and not fpc_cols:
        warnings.warn(
            "no weights, probs or fpc given: assuming equal probability (all weights 1)",
            SatsampleWarning, stacklevel=3)

    # global row positions, and whole strata per partition
    offsets = np.r_[0, np.cumsum([s["n"] for s in scans])[:-1]]
    pos_meta = meta.assign(**{ROW: np.zeros(0, dtype=np.int64)})
    frame = dd.from_delayed([dask.delayed(_with_positions)(p, int(o))
                             for p, o in zip(parts, offsets)], meta=pos_meta, verify_meta=False)
    shuffled = bool((spread > 1).any())
    if shuffled:
        frame = (frame.shuffle(on=strata) if strata is not None
                 else frame.repartition(npartitions=1))
        # shuffled once: the shuffled partitions are kept by the workers (dask's persist),
        # so that the later passes read them instead of shuffling again
        frame = frame.map_partitions(_in_row_order, meta=pos_meta).persist()
    step = WeightStep(method="design", params=(
        ("ids", id_cols), ("strata", strata), ("weights", weights), ("probs", probs),
        ("fpc", fpc_cols), ("lonely_psu", lonely_psu)))
    out = DaskSurveyDesign(
        frame=frame, n=n, strata_labels=_readonly(labels), stratum_npsu=_readonly(npsu),
        stratum_popsize=None if pop is None else _readonly(np.asarray(pop, dtype=np.float64)),
        lonely_psu=lonely_psu,
        columns={"ids": id_cols, "strata": strata, "weights": weights, "probs": probs,
                 "fpc": fpc_cols, "nest": nest},
        history=(step,), shuffled=shuffled, n_partitions=int(frame.npartitions))
    if weights is not None or probs is not None or not fpc_cols:
        mom = None
        for s in scans:
            mom = _combine_moments(mom, s["moments"])
    else:  # weights from the fpc need whole strata: a pass over the partitions' designs
        mom = reduce(out, _weight_moments, combine=_combine_moments)
    s1, s2, n_pos = mom["s1"], mom["s2"], int(mom["n"])
    diag = replace(step, kish_deff=n_pos * s2 / s1**2, effective_n=s1**2 / s2,
                   weight_min=mom["min"], weight_max=mom["max"], weight_sum=s1, n_rows=n_pos)
    return replace(out, history=(diag,))
