"""The interface every replicate scheme implements.

A scheme is one class per replication method (:mod:`.jackknife`,
:mod:`.brr`, :mod:`.bootstrap`, :mod:`.declared`).  It answers, for a
design:

* :meth:`ReplicateScheme.multipliers` -- replicate multipliers of a block of
  replicates (the replicate weights before any weighting step are the
  multipliers times the design weights); schemes whose replicates are a pure
  function of the design (and a stream key) can generate any block on demand,
  so the replicates need not be stored;
* :meth:`ReplicateScheme.totals` -- replicate totals by domain computed
  without forming the weights (the Rao-Wu kernel, the jackknife from PSU
  totals), or ``None`` to let the backend go through weight blocks;
* :meth:`ReplicateScheme.ratio_variance` -- a closed form for linear
  combinations of ratios, or ``None``.

The variance itself, :math:`v = \\text{scale} \\sum_r \\text{rscales}_r
(\\theta_r - c)^2`, is the same formula for every scheme
(:meth:`satsample.design.ReplicateWeights.variance`); a scheme sets
``scale``, ``rscales`` and ``degf`` when it builds its
:class:`~satsample.design.ReplicateWeights`.  Whether the weights are stored
(``materialize=True``) is a storage choice: the same scheme gives the same
replicates either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import SatsampleError

__all__ = ["ReplicateScheme"]


class ReplicateScheme:
    """Base class of the replicate schemes (see the module docstring)."""

    kind: str = "other"
    #: True when :meth:`multipliers` can generate any block of replicates on demand
    generates: bool = False
    #: True when :meth:`ratio_variance` has a closed form (used for replicates not stored)
    closed_form: bool = False

    def multipliers(self, design: Any, r0: int, nb: int) -> np.ndarray:
        """Multipliers (nb, n) of replicates ``r0 .. r0 + nb - 1``."""
        raise SatsampleError(
            f"{self.kind} replicates cannot be generated on the fly: they are stored "
            "(materialize=True) or declared"
        )

    def totals(self, design: Any, values: np.ndarray, domain: np.ndarray,
               n_domains: int) -> np.ndarray | None:
        """Replicate totals (R, G, k) without forming the weights, or ``None``."""
        return None

    def ratio_variance(self, design: Any, num: np.ndarray, den: np.ndarray, coef: np.ndarray,
                       domain: np.ndarray, n_domains: int, mse: bool) -> np.ndarray | None:
        """Closed-form variance (G, L) of ``sum_k coef[g, l, k] N_gk / D_gk``, or ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
