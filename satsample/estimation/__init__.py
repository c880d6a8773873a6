"""Estimation: every statistic on one engine.

* :mod:`.engine` -- per-row inputs -> domain totals -> ratios -> a smooth
  combination with its gradient; variance by the Taylor or replicate backend.
* :mod:`.domains` -- ``by=`` columns to domain codes (the one place).
* :mod:`.statistics` -- :func:`total`, :func:`mean`, :func:`ratio`,
  :func:`proportion` (adapters on the engine).
* :mod:`.index` -- :func:`satisfaction_index` (adapter; the aggregation rule is
  the combination).
"""

from .index import satisfaction_index
from .statistics import mean, proportion, ratio, total

__all__ = ["mean", "proportion", "ratio", "satisfaction_index", "total"]
