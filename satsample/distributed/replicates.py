"""Replicates of a Dask design: the in-memory schemes, from the design's stratum tables.

A replicate scheme needs only the stage-1 structure per stratum (PSUs,
population size, code and label), which the Dask design holds as level
tables: :func:`dask_bootstrap` and :func:`dask_jackknife` give those tables
to the functions the in-memory :func:`satsample.bootstrap` and
:func:`satsample.jackknife` use (same checks, same ``degf``, ``scale``,
``rscales``), so the client's memory does not grow with the number of rows
or PSUs (apart from a jackknife's ``rscales``, one per replicate).  The
replicates are never stored: each partition generates its share (the Rao-Wu
stream is keyed by global stratum codes; the jackknife's replicates are
numbered as in memory, see :class:`PartitionJackknife`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from .._validation import SatsampleWarning
from ..design import ReplicateWeights
from ..design.objects import _readonly
from ..replicate.declared import Declared
from ..replicate.jackknife import Jackknife

__all__ = ["ColumnReplicates", "PartitionJackknife", "dask_bootstrap", "dask_declare",
           "dask_jackknife"]


def _stratum_codes(design: Any) -> np.ndarray:
    return np.arange(design.n_strata, dtype=np.int64)


def dask_bootstrap(design: Any, *, n_replicates: int, kind: str, rng: Any, mse: bool) -> Any:
    """:func:`satsample.bootstrap` of a Dask design: lazy Rao-Wu replicates."""
    from .._random import stream_key
    from .._validation import SatsampleError
    from ..replicate._common import warn_if_weighted
    from ..replicate.bootstrap import RaoWu, raowu_replicates

    if kind != "subbootstrap":
        raise SatsampleError(
            f"bootstrap(kind={kind!r}) stores its replicate weights; a Dask design takes "
            "kind='subbootstrap' (Rao-Wu, generated on the fly in every partition)")
    warn_if_weighted(design)
    scheme = RaoWu(seed=int(stream_key(rng)))
    reps = raowu_replicates(scheme, _stratum_codes(design), design.stratum_npsu,
                            strata_labels=design.strata_labels, lonely_psu=design.lonely_psu,
                            n_replicates=n_replicates, mse=mse)
    return design.with_replicates(reps)


def _plan(scheme: Jackknife, design: Any) -> Any:
    """The jackknife's plan of a Dask design, from its level tables."""
    from ..replicate.jackknife import stratum_fraction, stratum_plan

    npsu = np.asarray(design.stratum_npsu, dtype=np.int64)
    frac = stratum_fraction(npsu, design.stratum_popsize, scheme.single)
    if scheme.single:  # one stratum holding every PSU (as the in-memory layout of JK1)
        return stratum_plan(scheme.kind, np.zeros(1, dtype=np.int64),
                            np.array([npsu.sum()], dtype=np.int64), frac,
                            n_strata=design.n_strata, lonely_psu=design.lonely_psu)
    return stratum_plan(scheme.kind, _stratum_codes(design), npsu, frac,
                        n_strata=design.n_strata, lonely_psu=design.lonely_psu)


def dask_jackknife(design: Any, *, kind: str, mse: bool) -> Any:
    """:func:`satsample.jackknife` of a Dask design: lazy (closed form for ratios)."""
    from ..replicate._common import warn_if_weighted
    from ..replicate.jackknife import jackknife_replicates

    if len(design.columns.get("fpc", ())) > 1:
        warnings.warn(
            "jackknife: finite population corrections after the first stage are dropped "
            "(as R's as.svrepdesign); the replicate variance uses the stage-1 fpc only",
            SatsampleWarning, stacklevel=3)
    warn_if_weighted(design)
    scheme = Jackknife(kind=kind)
    reps = jackknife_replicates(scheme, _plan(scheme, design), n_strata=design.n_strata,
                                strata_labels=design.strata_labels,
                                lonely_psu=design.lonely_psu, mse=mse)
    return design.with_replicates(reps)


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
    plan = _plan(reps.scheme, design)
    h = design.n_strata
    first = np.full(h, -1, dtype=np.int64)
    first[plan.strat_code] = plan.first_rep
    adjust = np.full(h, -1, dtype=np.int64)
    adjust[plan.strat_code[plan.adjust]] = plan.n_regular + np.arange(plan.adjust.size)
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
    from ..replicate._common import gram_rank, matrix_rank
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
            degf = gram_rank(got["gram"]) - 1
    reps = ReplicateWeights(kind=kind, weights=None, scale=scale, rscales=rs, mse=bool(mse),
                            degf=int(degf), n_replicates=n_rep,
                            fay_rho=None if fay_rho is None else float(fay_rho), scheme=scheme)
    return design.with_replicates(reps)
