"""Replicate totals of a Dask design whose lazy replicates replay weighting steps.

The engine asks :func:`replicate_totals` (through
:meth:`satsample.distributed.estimators.DaskSource.replicate_totals`) before its
first pass.  The weighting steps of a Dask design
(:mod:`satsample.weighting._dask`) prepare their replay when they are
recorded: the combined cells of all steps with global codes and their
factors in every replicate, from the replicate cell table of the whole sample
(phases (a) summed over the partitions, then (b), of
:mod:`satsample.weighting._cell_replay`).  With those factors known, the
replicate totals of each partition (the cell path of the in-memory
``replicate_totals`` on the partition's design) are its share of the
sample's, so the engine's first pass adds them up like any other totals:
nothing is computed here.
"""

from __future__ import annotations

from typing import Any

from .._validation import SatsampleError

__all__ = ["replicate_totals"]


def replicate_totals(source: Any, g: int) -> None:
    """``None``: the partitions' replicate totals add up (pass 1 computes them).

    Raises
    ------
    SatsampleError
        The replicates carry a step whose replay was not prepared on Dask (a
        step recorded other than by the weighting functions).
    """
    reps = source.design.replicates
    last = reps.steps[-1]
    if getattr(last, "replay", None) is None:
        raise SatsampleError(
            "replicate variance of a Dask design whose replicates replay weighting steps is "
            f"not available yet for a step recorded other than by satsample's weighting "
            f"functions ({type(last).__name__}): its replay on the replicates is not prepared; "
            "use variance='taylor'")
    return None
