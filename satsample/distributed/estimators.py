"""The engine's source on Dask: the passes of :func:`satsample.estimation.engine.fit_source`
run partition by partition (:func:`satsample.distributed.reduce`).

Nothing statistical lives here: the estimators build their per-row inputs
with the same functions as in memory (applied to each partition's design),
and the engine's passes are the in-memory ones.  This module only says where
the rows come from (:class:`DaskSource`), codes the domains once for all
partitions, and computes the global cross-products calibration residuals need.

Calibration residualizers of a Dask design (``DaskSurveyDesign.calibrations``)
follow a two-method protocol:

* ``cross(part, x) -> ndarray (q, m)``: the partition's additive share of the
  global quantity the residuals need (e.g. :math:`X' D^{1/2} u` of GREG), for
  the ``m`` columns of ``x`` (weighted scores of the partition ``part``);
* ``residualize(part, x, total) -> ndarray (n_part, m)``: the residuals of
  ``x`` given ``total``, the sum of ``cross`` over the partitions for the same
  columns (``total[:, j]`` goes with ``x[:, j]``).

Several calibrations are applied in order; calibration *c* sees the residuals
of the earlier ones, so each adds one pass over the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SatsampleError
from ..estimation.domains import Domains, check_domain_columns, domain_coding
from ..estimation.engine import Rows, make_rows
from ._reduce import add_results, reduce

__all__ = ["DaskSource", "dask_source"]


def _residualize_with(cal: Any, part: Any, total: np.ndarray, x: np.ndarray,
                      pairs: np.ndarray) -> np.ndarray:
    return cal.residualize(part, x, total[:, pairs])


def _rows_then(make_inputs: Callable[[Any], Any], coding: Any, g: int, cals: tuple[Any, ...],
               cal_totals: tuple[np.ndarray, ...], fn: Callable[[Rows], Any], part: Any) -> Any:
    """On a worker: the partition's rows (inputs, domain codes, bound residualizers), ``fn`` of
    them, and the partition's exclusions."""
    inputs, excluded = make_inputs(part)
    codes = coding.codes(part.data)
    resid = tuple(partial(_residualize_with, cal, part, tot)
                  for cal, tot in zip(cals, cal_totals))
    return {"out": fn(make_rows(part, inputs, codes, g, residualize=resid)),
            "excluded": dict(excluded)}


def _combine_out(combine: Callable[[Any, Any], Any] | None, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return a if b is None else b
    return {"out": (add_results if combine is None else combine)(a["out"], b["out"]),
            "excluded": add_results(a["excluded"], b["excluded"])}


def _cross_pass(dense_fn: Callable[[Rows], Any], cal: Any, rows: Rows) -> np.ndarray:
    """A calibration's cross-products of the dense score columns (after the earlier residuals)."""
    out = []
    for pairs, dense in dense_fn(rows):
        for f in rows.residualize:
            dense = f(dense, pairs)
        out.append(np.asarray(cal.cross(rows.design, dense), dtype=np.float64))
    return np.concatenate(out, axis=1)


class DaskSource:
    """The engine's rows on Dask: every pass is :func:`reduce` over the partitions' designs.

    Parameters
    ----------
    design : DaskSurveyDesign
    make_inputs : callable
        ``make_inputs(part) -> (Inputs, excluded)`` on a partition's design.
    coding : DomainCoding
        The domains of the whole sample.
    n_domains : int
    cal_totals : tuple of ndarray
        Global cross-products of the first calibrations (see the module docstring).
    """

    def __init__(self, design: Any, make_inputs: Callable[[Any], Any], coding: Any,
                 n_domains: int, cal_totals: tuple[np.ndarray, ...] = ()) -> None:
        self.design = design
        self.make_inputs = make_inputs
        self.coding = coding
        self.n_domains = int(n_domains)
        self.cal_totals = tuple(cal_totals)
        self.excluded: dict[str, int] | None = None  # rows excluded, counted by every pass

    def reduce(self, fn: Callable[[Rows], Any], combine: Any = None) -> Any:
        cals = self.design.calibrations[:len(self.cal_totals)]
        got = reduce(self.design, partial(_rows_then, self.make_inputs, self.coding,
                                          self.n_domains, cals, self.cal_totals, fn),
                     combine=partial(_combine_out, combine))
        self.excluded = {k: int(v) for k, v in got["excluded"].items() if v}
        return got["out"]

    def replicate_totals(self, g: int) -> np.ndarray | None:
        """Replicate totals (R, G, k) computed the source's own way, or ``None`` (pass 1 adds them).

        Replicates replaying weighting steps need the steps' global cell
        tables before any partition can weight its rows: they are computed by
        :func:`satsample.distributed.replay.replicate_totals` (``(source, g)``,
        using :meth:`reduce` and :func:`satsample.estimation.engine.replicate_values`)
        when that module exists.
        """
        reps = self.design.replicates
        if reps is None or not reps.steps:
            return None
        try:
            from .replay import replicate_totals
        except ImportError:
            raise SatsampleError(
                "replicate variance of a Dask design whose replicates replay weighting steps "
                "is not available yet; use variance='taylor'") from None
        return replicate_totals(self, g)

    def calibrated(self, dense_fn: Callable[[Rows], Any]) -> DaskSource:
        """The source whose rows residualize the dense columns of ``dense_fn`` (one pass each)."""
        totals: list[np.ndarray] = []
        for cal in self.design.calibrations:
            src = DaskSource(self.design, self.make_inputs, self.coding, self.n_domains,
                             tuple(totals))
            totals.append(src.reduce(partial(_cross_pass, dense_fn, cal)))
        return DaskSource(self.design, self.make_inputs, self.coding, self.n_domains,
                          tuple(totals))


def _pass_check(make_inputs: Callable[[Any], Any], by: list[str], part: Any) -> dict[str, Any]:
    """Pass 0 on a partition: domain columns and inputs checked, the domains present."""
    check_domain_columns(part.data, by)
    make_inputs(part)
    return {"combos": part.data[by].drop_duplicates(ignore_index=True)}


def _combine_check(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return a if b is None else b
    return {"combos": pd.concat([a["combos"], b["combos"]], ignore_index=True).drop_duplicates(
        ignore_index=True)}


def dask_source(design: Any, make_inputs: Callable[[Any], Any], by: str | Sequence[str] | None,
                variance: str) -> tuple[DaskSource, Domains]:
    """The :class:`DaskSource` of an estimator and its domains.

    With ``by``, pass 0 checks the domain columns and the inputs and finds the
    domains present (their levels are needed to code any partition); without,
    the estimator's first pass does the checks.  Errors are those of the
    in-memory estimator on the partition, prefixed with ``"partition i: "``
    (a count in a message is the partition's).  The rows excluded are counted
    by every pass (``DaskSource.excluded``).
    """
    from .._validation import as_column_list

    cols = as_column_list(by)
    check_domain_columns(design.frame._meta, cols)  # names only: the frame's columns
    if cols:
        chk = reduce(design, partial(_pass_check, make_inputs, cols), combine=_combine_check)
        coding, _codes = domain_coding(chk["combos"], cols)
    else:
        coding, _codes = domain_coding(pd.DataFrame(index=range(1)), None)
    dom = coding.domains(np.zeros(0, dtype=np.int64))
    return DaskSource(design, make_inputs, coding, dom.n_domains), dom
