"""Estimation: every statistic on one engine.

* :mod:`.engine` -- per-row inputs -> domain totals -> ratios -> a smooth
  combination with its gradient; variance by the Taylor or replicate backend.
* :mod:`.domains` -- ``by=`` columns to domain codes (the one place).
* :mod:`.statistics` -- :func:`total`, :func:`mean`, :func:`ratio`,
  :func:`proportion` (adapters on the engine).
* :mod:`.index` -- :func:`satisfaction_index` (adapter; the aggregation rule is
  the combination).
* :mod:`.contrasts` -- :func:`contrast`: linear and nonlinear contrasts of any
  result's estimates by the delta method on its :meth:`vcov`.
* :mod:`.replicates` -- :func:`with_replicates`: any statistic of the weights
  with its replicate variance.
* :mod:`.quantiles` -- :func:`quantile` (R's ``svyquantile``), the first
  statistic that is not a smooth function of totals: its own point estimate
  and Woodruff/score intervals, on the engine's domain coding and variance of
  a domain mean.
"""

from .contrasts import contrast
from .index import satisfaction_index
from .quantiles import QuantileEstimate, quantile
from .replicates import with_replicates
from .statistics import mean, proportion, ratio, total

__all__ = ["QuantileEstimate", "contrast", "mean", "proportion", "quantile", "ratio",
           "satisfaction_index", "total", "with_replicates"]
