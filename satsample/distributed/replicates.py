"""Replicates of a Dask design: the in-memory schemes, on a design of the PSUs.

A replicate scheme needs only the stage-1 structure (strata, PSUs per
stratum, their order and fpc), which the Dask design holds as level tables.
:func:`psu_design` turns those tables into a small in-memory design with one
row per PSU, on which :func:`satsample.bootstrap` and
:func:`satsample.jackknife` run unchanged (same checks, same ``degf``,
``scale``, ``rscales``).  The replicates are never stored: each partition
generates its share (the Rao-Wu stream is keyed by global stratum codes;
the jackknife's replicates are numbered as in memory, see
:class:`PartitionJackknife`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from .._validation import SatsampleWarning
from ..design import ReplicateWeights, Stage, SurveyDesign
from ..design.objects import _readonly
from ..replicate.declared import Declared
from ..replicate.jackknife import Jackknife

__all__ = ["ColumnReplicates", "PartitionJackknife", "dask_bootstrap", "dask_declare",
           "dask_jackknife", "psu_design"]


def psu_design(design: Any) -> SurveyDesign:
    """An in-memory design with one row per stage-1 PSU of a Dask design (its level tables).

    PSU codes run by stratum (as the partitions' global codes), so a scheme's
    replicate numbering, ranks and checks are those of the whole sample.
    """
    npsu = np.asarray(design.stratum_npsu, dtype=np.int64)
    strata = np.repeat(np.arange(npsu.size, dtype=np.int64), npsu)
    n = int(npsu.sum())
    pop = None
    if design.stratum_popsize is not None:
        pop = _readonly(np.asarray(design.stratum_popsize, dtype=np.float64)[strata])
    stage = Stage(stratum=_readonly(strata), cluster=_readonly(np.arange(n, dtype=np.int64)),
                  n_sampled=_readonly(npsu[strata]), popsize=pop)
    w = _readonly(np.ones(n))
    return SurveyDesign(data=_psu_frame(n), weights=w, design_weights=w, stages=(stage,),
                        strata_labels=design.strata_labels, lonely_psu=design.lonely_psu,
                        history=design.history, columns=dict(design.columns))


def _psu_frame(n: int) -> Any:
    import pandas as pd

    return pd.DataFrame(index=pd.RangeIndex(n))


def dask_bootstrap(design: Any, *, n_replicates: int, kind: str, rng: Any, mse: bool) -> Any:
    """:func:`satsample.bootstrap` of a Dask design: lazy Rao-Wu replicates."""
    from .._validation import SatsampleError
    from ..replicate.bootstrap import bootstrap

    if kind != "subbootstrap":
        raise SatsampleError(
            f"bootstrap(kind={kind!r}) stores its replicate weights; a Dask design takes "
            "kind='subbootstrap' (Rao-Wu, generated on the fly in every partition)")
    skel = bootstrap(psu_design(design), n_replicates=n_replicates, kind=kind, rng=rng,
                     mse=mse, materialize=False)
    return design.with_replicates(replace(skel.replicates, origin=None))


def dask_jackknife(design: Any, *, kind: str, mse: bool) -> Any:
    """:func:`satsample.jackknife` of a Dask design: lazy (closed form for ratios)."""
    from ..replicate.jackknife import jackknife

    if len(design.columns.get("fpc", ())) > 1:
        warnings.warn(
            "jackknife: finite population corrections after the first stage are dropped "
            "(as R's as.svrepdesign); the replicate variance uses the stage-1 fpc only",
            SatsampleWarning, stacklevel=3)
    skel = jackknife(psu_design(design), kind=kind, mse=mse, materialize=False)
    return design.with_replicates(skel.replicates)


@dataclass(frozen=True, eq=False)
class PartitionJackknife(Jackknife):
    """The jackknife of a Dask partition: its strata's replicates at their global numbers.

    ``first_rep[h]`` is the global number of the first replicate of stratum
    code ``h`` (strata with replicates), ``adjust_rep[h]`` that of the
    "adjust" replicate of a lonely stratum (-1: none), ``n_total`` the
    number of replicates of the sample.  A replicate of a stratum outside the
    partition leaves the partition's rows at multiplier 1 (``H/(H-1)`` for an
    "adjust" replicate), so every partition adds its totals of all replicates.
    """

    first_rep: np.ndarray = None  # type: ignore[assignment]
    adjust_rep: np.ndarray = None  # type: ignore[assignment]
    n_total: int = 0

    def totals(self, design: Any, values: np.ndarray, domain: np.ndarray,
               n_domains: int) -> np.ndarray:
        local = Jackknife.totals(self, design, values, domain, n_domains)
        plan = self.plan(design)
        lay = plan.lay
        wv = np.asarray(values, dtype=np.float64) * design.weights[:, None]
        full = np.zeros((n_domains, wv.shape[1]))
        keep = domain >= 0
        np.add.at(full, domain[keep], wv[keep])
        out = np.broadcast_to(full, (self.n_total, *full.shape)).copy()
        adj = np.flatnonzero(self.adjust_rep >= 0)
        if adj.size:
            out[self.adjust_rep[adj]] = plan.adjust_factor * full
        reg = []
        for p in np.flatnonzero(plan.has_rep):
            h = lay.strat_code[p]
            reg.append(self.first_rep[h] + np.arange(lay.strat_npsu[p]))
        if reg:
            out[np.concatenate(reg)] = local[:plan.n_regular]
        if plan.adjust.size:
            out[self.adjust_rep[lay.strat_code[plan.adjust]]] = local[plan.n_regular:]
        return out


def partition_replicates(design: Any) -> ReplicateWeights | None:
    """The replicates a partition's design carries (the jackknife renumbered globally)."""
    reps = design.replicates
    if reps is None or not isinstance(reps.scheme, Jackknife) or isinstance(
            reps.scheme, PartitionJackknife):
        return reps
    plan = reps.scheme.plan(psu_design(design))
    lay = plan.lay
    h = design.n_strata
    first = np.full(h, -1, dtype=np.int64)
    starts = np.r_[0, np.cumsum(np.where(plan.has_rep, lay.strat_npsu, 0))[:-1]]
    first[lay.strat_code] = np.where(plan.has_rep, starts, -1)
    adjust = np.full(h, -1, dtype=np.int64)
    adjust[lay.strat_code[plan.adjust]] = plan.n_regular + np.arange(plan.adjust.size)
    scheme = PartitionJackknife(kind=reps.scheme.kind, first_rep=first, adjust_rep=adjust,
                                n_total=plan.n_replicates)
    return replace(reps, scheme=scheme)


# ------------------------------------------------------------ declared columns
@dataclass(frozen=True, eq=False)
class ColumnReplicates(Declared):
    """Replicate weights declared as columns of a Dask frame, read by each partition.

    ``bind`` gives a partition's design the stored replicates of its rows
    (a :class:`~satsample.replicate.Declared` scheme with weights (R, n_part)),
    so their totals are the in-memory stored-weight totals of those rows.
    """

    columns: tuple[str, ...] = ()
    combined: bool = True

    def weights_of(self, part: Any) -> np.ndarray:
        """The (n_part, R) replicate analysis weights of a partition's design, checked."""
        from ..replicate.declared import _replicate_columns, check_replicate_matrix

        names = list(self.columns)
        mat = _replicate_columns(part.data[names], names)
        check_replicate_matrix(mat, names)
        return mat if self.combined else mat * part.weights[:, None]

    def bind(self, reps: ReplicateWeights, part: Any) -> ReplicateWeights:
        return replace(reps, weights=_readonly(np.ascontiguousarray(self.weights_of(part).T)),
                       scheme=Declared(kind=self.kind))


def _declared_pass(scheme: ColumnReplicates, small: bool, part: Any) -> dict[str, Any]:
    from .design import ROW

    mat = scheme.weights_of(part)
    out: dict[str, Any] = {"gram": mat.T @ mat}
    out["rows"] = [(part.data[ROW].to_numpy(), mat)] if small else []
    return out


def _combine_declared(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a if b is None else b
    return {"gram": a["gram"] + b["gram"], "rows": a["rows"] + b["rows"]}


def dask_declare(design: Any, weights: Any, *, kind: str, scale: float | None, rscales: Any,
                 mse: bool, degf: int | None, combined_weights: bool,
                 fay_rho: float | None) -> Any:
    """:func:`satsample.declare_replicates` of a Dask design: replicate-weight columns of its frame.

    One pass checks every column (finite, non-negative; the error names the
    partition) and, without ``degf``, gives the rank of the replicate weights
    as memory computes it: from the (R, R) Gram matrix (a sum over partitions)
    when there are more than 4 R rows, else from the rows themselves.
    """
    from .._validation import SatsampleError, check_columns
    from ..replicate._common import matrix_rank
    from ..replicate.declared import replicate_scales
    from ._reduce import reduce

    if not (isinstance(weights, str) or (isinstance(weights, (list, tuple))
                                         and all(isinstance(c, str) for c in weights))):
        raise SatsampleError(
            "a Dask design takes replicate weights as column names of its frame (join a "
            "producer's file to the data first)")
    names = [weights] if isinstance(weights, str) else list(weights)
    check_columns(design.frame._meta, names, role="replicate weights")
    n_rep = len(names)
    if n_rep < 2:
        raise SatsampleError(f"{n_rep} replicate weight column(s): need at least 2")
    scale, rs = replicate_scales(kind, n_rep, scale, rscales, fay_rho)
    scheme = ColumnReplicates(kind=kind, columns=tuple(names), combined=bool(combined_weights))
    small = design.n <= 4 * n_rep
    got = reduce(design, partial(_declared_pass, scheme, small), combine=_combine_declared)
    if degf is None:
        if small:
            pos = np.concatenate([r for r, _m in got["rows"]])
            mat = np.concatenate([m for _r, m in got["rows"]])[np.argsort(pos)]
            degf = matrix_rank(mat.T) - 1
        else:
            ev = np.linalg.eigvalsh(got["gram"])
            degf = int(np.sum(ev > ev.max() * 1e-10)) - 1
    reps = ReplicateWeights(kind=kind, weights=None, scale=scale, rscales=rs, mse=bool(mse),
                            degf=int(degf), n_replicates=n_rep,
                            fay_rho=None if fay_rho is None else float(fay_rho), scheme=scheme)
    return design.with_replicates(reps)
