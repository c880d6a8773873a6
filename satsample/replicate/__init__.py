"""Replicate-weight designs: one module per scheme, one interface (:mod:`.base`).

* :mod:`.jackknife` -- :class:`Jackknife` (JKn, JK1), stored or in closed form;
* :mod:`.brr` -- :class:`BRR` (BRR and Fay);
* :mod:`.bootstrap` -- :class:`RaoWu` (counter-based stream, stored or on the
  fly) and :class:`CantyDavison`;
* :mod:`.declared` -- :class:`Declared`, a producer's weights.

Every function returns a new :class:`~satsample.design.SurveyDesign` carrying
:class:`~satsample.design.ReplicateWeights` (R's ``as.svrepdesign`` and
``svrepdesign``); the input design is unchanged.  Create replicates on the
*design* weights, before nonresponse adjustment and calibration: weighting
steps then replay on every replicate, so the replicate SEs include them.
"""

from .base import ReplicateScheme
from .bootstrap import CantyDavison, RaoWu, bootstrap
from .brr import BRR, brr
from .declared import REPLICATE_KINDS, Declared, declare_replicates
from .jackknife import Jackknife, jackknife

__all__ = [
    "BRR",
    "REPLICATE_KINDS",
    "CantyDavison",
    "Declared",
    "Jackknife",
    "RaoWu",
    "ReplicateScheme",
    "bootstrap",
    "brr",
    "declare_replicates",
    "jackknife",
]
