"""Running a function of a partition design on every partition and adding up the results.

:func:`reduce` is the one way the Dask backend touches the data: each task
turns one partition into an in-memory :class:`~satsample.design.SurveyDesign`
(:func:`satsample.distributed.partition_design`), calls ``fn`` on it and
returns a small additive result; the results are combined by a binary tree of
``dask.delayed`` calls and only the combined result reaches the client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import SatsampleError

__all__ = ["add_results", "reduce", "require_dask"]

# the Numba kernels are themselves parallel (prange); with the "workqueue" threading layer two
# concurrent calls from one process abort, so the tasks of one process take turns
_KERNEL_LOCK = threading.Lock()


def require_dask() -> Any:
    """Import dask (and dask.dataframe), or raise an ImportError naming the extra."""
    try:
        import dask
        import dask.dataframe
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise ImportError(
            "the Dask backend needs dask: pip install 'satsample[dask]' "
            "(dask[dataframe] >= 2024.1, distributed)"
        ) from exc
    return dask


def add_results(a: Any, b: Any) -> Any:
    """The default combination of partition results: element-wise sums.

    Arrays and numbers add; dicts add key by key (a key missing on one side
    counts as ``None``); tuples and lists add
    position by position; ``None`` (an empty partition) is the identity.
    """
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict):
        return {k: add_results(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, (tuple, list)):
        return type(a)(add_results(x, y) for x, y in zip(a, b))
    return np.add(a, b) if isinstance(a, np.ndarray) else a + b


def _tree(dask: Any, items: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Pairwise (binary tree) reduction of delayed objects, in partition order."""
    combine_d = dask.delayed(combine, pure=True)
    while len(items) > 1:
        items = [combine_d(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def _run(pdf: Any, design: Any, fn: Callable[[Any], Any], part: int) -> Any:
    """One task: the partition's design, then ``fn`` of it (``None`` for an empty partition)."""
    from .design import partition_design

    if len(pdf) == 0:
        return None
    try:
        with _KERNEL_LOCK:
            out = fn(partition_design(pdf, design))
    except SatsampleError as exc:
        if str(exc).startswith("partition "):
            raise
        raise type(exc)(f"partition {part}: {exc}") from exc
    if out is None:
        raise SatsampleError("a partition function returned None (None marks an empty partition)")
    return out


def light(design: Any) -> Any:
    """The design without its frame: what is shipped to the workers with every task."""
    return replace(design, frame=None)


def reduce(design: Any, fn: Callable[[Any], Any], *,
           combine: Callable[[Any, Any], Any] | None = None) -> Any:
    """Compute ``fn(partition_design(p))`` on every partition ``p`` and combine the results.

    Parameters
    ----------
    design : DaskSurveyDesign
    fn : callable
        ``fn(part: SurveyDesign) -> result``, run on the workers, once per
        non-empty partition; ``part`` is the in-memory design of the partition
        with global codes (see :func:`satsample.distributed.partition_design`).
        ``fn`` must be picklable (a module-level function, a
        ``functools.partial`` of one, or a closure over picklable values) and
        must not return ``None``.
    combine : callable, optional
        ``combine(a, b) -> result``, associative; default :func:`add_results`
        (element-wise sums of arrays, dicts, tuples).

    Returns
    -------
    object
        The combined result, computed (on the active ``dask.distributed``
        client if there is one, else on dask's default scheduler).

    Raises
    ------
    SatsampleError
        What ``fn`` raised, its message prefixed with ``"partition i: "``.

    Notes
    -----
    Partition results are combined by a binary tree in partition order, so the
    result does not depend on the scheduler or on which worker ran what.
    Memory per task: one partition plus its result.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import numpy as np
    >>> import satsample as ss
    >>> from satsample.distributed import reduce
    >>> pop = ss.make_population(n_users=2_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.survey_design(dd.from_pandas(answers, npartitions=3), strata="agency_id",
    ...                      weights="design_weight")
    >>> int(reduce(d, lambda part: np.array(part.n)))  # rows, partition by partition
    160
    >>> round(float(reduce(d, lambda part: part.weights.sum())))  # the weighted total
    2000
    """
    dask = require_dask()
    combine = add_results if combine is None else combine
    parts = design.frame.to_delayed()
    d = dask.delayed(light(design), pure=True, traverse=False)
    f = dask.delayed(fn, pure=True, traverse=False)
    run = dask.delayed(_run, pure=True)
    items = [run(p, d, f, i) for i, p in enumerate(parts)]
    (out,) = dask.compute(_tree(dask, items, combine))
    if out is None:
        raise SatsampleError("the Dask frame has no rows")
    return out
