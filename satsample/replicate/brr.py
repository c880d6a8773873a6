"""Balanced repeated replication and Fay's method (R's ``"BRR"`` and ``"Fay"``).

The replicates are a pure function of the design (a Sylvester Hadamard
matrix and the PSU order), so any block can be generated on demand.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import hadamard

from .._validation import DesignError, SatsampleError, SatsampleWarning, plain
from ..design import ReplicateWeights
from ._common import psu_structure, readonly, warn_if_weighted
from .base import ReplicateScheme

__all__ = ["BRR", "brr"]


@dataclass(frozen=True, eq=False)
class BRR(ReplicateScheme):
    """Balanced repeated replication; Fay's method when ``rho > 0`` (``kind="Fay"``).

    Notes
    -----
    Stratum *h* (in stratum order) takes row :math:`h + 1` of a Sylvester
    Hadamard matrix of order :math:`m`, the smallest power of 2 above the number
    of strata; replicate *r* gives the first PSU the multiplier :math:`2 - \\rho`
    and the second :math:`\\rho` when the entry is +1, and the reverse otherwise.
    Scale :math:`1/(m (1 - \\rho)^2)`, rscales 1.
    """

    rho: float = 0.0
    generates = True

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "BRR" if self.rho == 0 else "Fay"

    @staticmethod
    def order(n_strata: int) -> int:
        order = 1
        while order < n_strata + 1:
            order *= 2
        return order

    def psu_multipliers(self, design: Any) -> np.ndarray:
        """Multipliers (m, P) of the PSUs in PSU code order."""
        psu_stratum, _, _ = psu_structure(design)
        had = hadamard(self.order(design.n_strata))  # +-1, first row all ones
        n_psu = psu_stratum.size
        # first / second PSU of each stratum in PSU-code order (first appearance in the data)
        is_first = np.zeros(n_psu, dtype=bool)
        seen = np.zeros(design.n_strata, dtype=bool)
        for j in np.argsort(psu_stratum, kind="stable"):
            h = psu_stratum[j]
            if not seen[h]:
                seen[h] = True
                is_first[j] = True
        sign = had[1 + psu_stratum, :].T  # (m, n_psu)
        sign = np.where(is_first[None, :], sign, -sign)
        return np.where(sign > 0, 2.0 - self.rho, self.rho)

    def multipliers(self, design: Any, r0: int, nb: int) -> np.ndarray:
        return self.psu_multipliers(design)[r0:r0 + nb][:, design.psu]

    def __repr__(self) -> str:
        return f"BRR(rho={self.rho:g})"


def brr(design: Any, *, fay_rho: float = 0.0, mse: bool = False) -> Any:
    """Balanced repeated replication, or Fay's method when ``fay_rho > 0`` (R's BRR / Fay).

    Parameters
    ----------
    design : SurveyDesign
        Every stratum must have exactly 2 PSUs.
    fay_rho : float, default=0.0
        Fay's coefficient in [0, 1).
    mse : bool, default=False

    Returns
    -------
    SurveyDesign

    Notes
    -----
    Stratum *h* (in stratum order) takes row :math:`h + 1` of a Sylvester
    Hadamard matrix of order :math:`m`, the smallest power of 2 above the number
    of strata :math:`H` (``scipy.linalg.hadamard``); replicate *r* gives the first
    PSU the multiplier :math:`2 - \\rho` and the second :math:`\\rho` when the
    entry is +1, and the reverse otherwise.  Scale :math:`1/(m (1 - \\rho)^2)`,
    rscales 1, ``degf = H``.  R may use a smaller Hadamard matrix (orders that
    are multiples of 4); both are fully orthogonal, so the variance of a
    linear statistic is the same.  As in R, the fpc is not used (a warning
    says so when the design has one).
    """
    rho = float(fay_rho)
    if not (0.0 <= rho < 1.0):
        raise SatsampleError(f"fay_rho={fay_rho!r} must lie in [0, 1)")
    if type(design).__name__ == "DaskSurveyDesign":
        raise SatsampleError(
            "brr() is not available on a Dask design; use bootstrap() (lazy Rao-Wu) or "
            "jackknife(), or Taylor variance")
    warn_if_weighted(design)
    _, n_h, pop = psu_structure(design)
    bad = np.flatnonzero(n_h != 2)
    if bad.size:
        raise DesignError(
            f"brr needs exactly 2 PSUs per stratum; {bad.size} stratum/strata do not "
            f"(first: {plain(design.strata_labels[int(bad[0])])!r} with {int(n_h[bad[0]])} PSU(s)); "
            "use jackknife() or bootstrap() instead"
        )
    if np.isfinite(pop).any():
        warnings.warn("brr: the finite population correction is dropped (as R's BRR/Fay)",
                      SatsampleWarning, stacklevel=2)
    scheme = BRR(rho=rho)
    order = scheme.order(design.n_strata)
    weights = readonly(scheme.multipliers(design, 0, order) * design.weights[None, :])
    return design.with_replicates(ReplicateWeights(
        kind=scheme.kind, weights=weights, scale=1.0 / (order * (1 - rho) ** 2),
        rscales=np.ones(order), mse=bool(mse), degf=design.n_strata, n_replicates=order,
        fay_rho=rho if rho else None, scheme=scheme))
