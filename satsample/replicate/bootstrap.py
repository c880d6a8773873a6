"""Bootstrap replicates: Rao-Wu rescaling (R's "subbootstrap") and Canty-Davison (R's "bootstrap").

Rao-Wu counts are drawn from a counter-based stream keyed by (key, stratum,
replicate, draw) (:mod:`satsample._kernels._rng`): any block of replicates
can be generated on demand, in any process, so the weights need not be stored
(``materialize=False``), and storing them (``materialize=True``) stores
exactly the same numbers.  Canty-Davison replicates come from a
``numpy.random.Generator`` and are always stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .._compat import renamed_keywords
from .._random import RNGLike, as_generator, stream_key
from .._validation import (
    DesignError,
    SatsampleError,
    check_choice,
    check_positive_int,
    plain,
)
from ..design import ReplicateWeights
from ._common import (
    Layout,
    as_values,
    compact,
    design_layout,
    expand,
    layout_from_codes,
    matrix_rank,
    psu_structure,
    readonly,
    task_block,
    warn_if_weighted,
    wide_rank,
)
from .base import ReplicateScheme

__all__ = ["CantyDavison", "RaoWu", "bootstrap", "lazy_raowu_replicates", "raowu_degf",
           "raowu_replicates"]

_RANK_LIMIT = 50_000_000  # R x PSUs above which degf is taken as R - 1 without a rank
_RANK_BLOCK = 1_000_000  # R x PSUs of a block of strata when the Gram matrix is summed (8 MB)


def raowu_totals(key: int, w: np.ndarray, values: np.ndarray, domain: np.ndarray,
                 n_domains: int, lay: Layout, r0: int, n_rep: int, *,
                 fcell: np.ndarray | None = None, factor: np.ndarray | None = None
                 ) -> np.ndarray:
    """Rao-Wu replicate totals (n_rep, G, k) of rows laid out by ``lay`` (whole strata).

    The one call of the on-the-fly kernel: a design in memory and a Dask
    partition both come here, with the same key and global stratum codes.
    With ``fcell`` (n,) and ``factor`` (F, n_rep), row *i*'s multiplier in
    replicate *r* is scaled by ``factor[fcell_i, r]`` (the cell factors of
    weighting steps replayed on cells).
    """
    from .._kernels.bootstrap import _raowu_totals

    vc, where = compact(as_values(values, w.shape[0]))
    out = _raowu_totals(np.uint64(key), np.ascontiguousarray(w, dtype=np.float64), vc, domain,
                        lay.order, lay.psu_local, lay.strat_start, lay.strat_code,
                        lay.strat_npsu, r0, n_rep, n_domains, task_block(n_rep),
                        fcell=fcell, factor=factor)
    return expand(out, where)


def check_raowu_strata(npsu: np.ndarray, label_of: Any, lonely_psu: str) -> None:
    """A stratum with one PSU is an error for the Rao-Wu bootstrap unless the rule keeps it fixed.

    ``npsu`` holds the PSUs per stratum, ``label_of(position)`` the stratum label.
    """
    lonely = np.flatnonzero(np.asarray(npsu) < 2)
    if lonely.size and lonely_psu not in ("remove", "certainty"):
        raise DesignError(
            f"stratum {plain(label_of(int(lonely[0])))!r} has a single PSU: the Rao-Wu bootstrap needs "
            f"n_h >= 2 (lonely_psu={lonely_psu!r}; use 'remove' or 'certainty' to keep it "
            "fixed with multiplier 1)"
        )


@dataclass(frozen=True, eq=False)
class RaoWu(ReplicateScheme):
    """Rao-Wu rescaling bootstrap (R's ``"subbootstrap"``) from a counter-based stream.

    Notes
    -----
    In replicate *r* and stratum *h* with :math:`n_h` PSUs, :math:`n_h - 1`
    PSUs are drawn with replacement; PSU *i*, drawn :math:`c_{hri}` times,
    gets the multiplier :math:`c_{hri}\\, n_h/(n_h - 1)`; a stratum with one
    PSU keeps multiplier 1.  Scale :math:`1/(R-1)`, rscales 1.  The counts are
    a pure function of (``seed``, stratum code, replicate, draw).
    """

    seed: int
    kind: str = "subbootstrap"
    generates = True

    def multipliers(self, design: Any, r0: int, nb: int) -> np.ndarray:
        from .._kernels.bootstrap import _raowu_multipliers

        lay = design_layout(design)
        return _raowu_multipliers(np.uint64(self.seed), lay.order, lay.psu_local,
                                  lay.strat_start, lay.strat_code, lay.strat_npsu, r0, nb,
                                  design.n)

    def totals(self, design: Any, values: np.ndarray, domain: np.ndarray,
               n_domains: int) -> np.ndarray:
        return raowu_totals(self.seed, design.weights, values, domain, n_domains,
                            design_layout(design), 0, design.replicates.n_replicates)

    def __repr__(self) -> str:
        return f"RaoWu(seed={self.seed})"


@dataclass(frozen=True, eq=False)
class CantyDavison(ReplicateScheme):
    """Canty & Davison's with-fpc bootstrap as R's ``bootweights`` (stored replicates only).

    Notes
    -----
    In each stratum the PSUs (shuffled once) are repeated cyclically to length
    :math:`\\lfloor N_h \\rfloor` and :math:`n_h` of those slots are drawn without
    replacement (with replacement from the :math:`n_h` PSUs without fpc);
    multiplier = times drawn; scale :math:`\\bar n/((\\bar n - 1)(R - 1))` with
    :math:`\\bar n` the harmonic mean of the :math:`n_h`.
    """

    kind: str = "bootstrap"

    @staticmethod
    def draw(design: Any, n_rep: int, gen: np.random.Generator) -> tuple[np.ndarray, float]:
        """PSU multipliers (R, P) and the scale."""
        psu_stratum, n_h, pop = psu_structure(design)
        order = np.argsort(psu_stratum, kind="stable")  # PSUs grouped by stratum
        start = np.r_[0, np.cumsum(n_h.astype(np.int64))]
        mult = np.zeros((n_rep, psu_stratum.size))
        for h in range(design.n_strata):
            nh = int(n_h[h])
            if nh == 0:
                continue
            members = order[start[h]:start[h + 1]]
            shuffled = members[gen.permutation(nh)]
            if np.isfinite(pop[h]):
                slots = int(np.floor(pop[h] + 1e-9))
                copies = np.full(nh, slots // nh, dtype=np.int64)
                copies[: slots % nh] += 1
                counts = gen.multivariate_hypergeometric(copies, nh, size=n_rep)
            else:
                counts = gen.multinomial(nh, np.full(nh, 1.0 / nh), size=n_rep)
            mult[:, shuffled] = counts
        nbar = 1.0 / np.mean(1.0 / n_h[n_h > 0])
        return mult, float(nbar / ((nbar - 1.0) * (n_rep - 1)))


def lazy_raowu_replicates(
    design: Any,
    *,
    n_replicates: int = 500,
    rng: RNGLike = None,
    mse: bool = False,
) -> ReplicateWeights:
    """Rao-Wu replicates generated on the fly (``bootstrap(materialize=False)``), not attached."""
    n_replicates = check_positive_int(n_replicates, name="n_replicates", minimum=2)
    return _raowu(design, n_replicates, RaoWu(seed=int(stream_key(rng))), mse, materialize=False)


def raowu_degf(seed: int, strat_code: np.ndarray, strat_npsu: np.ndarray, n_rep: int) -> int:
    """``degf`` of Rao-Wu replicates: R's rank of the (R, P) PSU multipliers, minus one.

    From the strata alone (codes and PSUs: a PSU's multipliers depend on its
    stratum's code and size and on its rank in the stratum), so a design in
    memory and a Dask design give the same number.  With at most 4 PSUs per
    replicate the (R, P) matrix is ranked (:func:`matrix_rank`); otherwise
    :func:`wide_rank` reads it by blocks of whole strata of about
    ``_RANK_BLOCK / R`` PSUs, generated when needed (memory O(R^2 +
    _RANK_BLOCK) and the largest stratum, not O(R P)).  Above ``_RANK_LIMIT``
    multipliers the rank is not computed: ``R - 1``.
    """
    from .._kernels.bootstrap import _raowu_multipliers

    codes = np.asarray(strat_code, dtype=np.int64)
    npsu = np.asarray(strat_npsu, dtype=np.int64)
    n_psu = int(npsu.sum())
    if n_rep * n_psu > _RANK_LIMIT:
        return n_rep - 1

    def block(a: int, b: int) -> np.ndarray:  # multipliers (R, PSUs of strata a..b-1)
        strata = np.repeat(codes[a:b], npsu[a:b])
        lay = layout_from_codes(strata, np.arange(strata.size, dtype=np.int64))
        return _raowu_multipliers(np.uint64(seed), lay.order, lay.psu_local, lay.strat_start,
                                  lay.strat_code, lay.strat_npsu, 0, n_rep, strata.size)

    if n_psu <= 4 * n_rep:
        return matrix_rank(block(0, codes.size)) - 1
    end = np.cumsum(npsu)
    per = max(1, _RANK_BLOCK // n_rep)

    def blocks() -> Iterator[np.ndarray]:  # whole strata, about `per` PSUs a block
        a = 0
        while a < codes.size:
            b = max(a + 1, int(np.searchsorted(end, end[a] - npsu[a] + per, side="right")))
            yield block(a, b)
            a = b

    return wide_rank(blocks, n_rep, n_psu) - 1


def raowu_replicates(scheme: RaoWu, strat_code: np.ndarray, strat_npsu: np.ndarray, *,
                     strata_labels: np.ndarray, lonely_psu: str, n_replicates: int,
                     mse: bool) -> ReplicateWeights:
    """Lazy Rao-Wu replicates (not attached) from the strata: codes, PSUs, labels (by code).

    The checks and ``degf`` of :func:`bootstrap` ``(kind="subbootstrap")``,
    shared by a design in memory (its layout) and a Dask design (its level tables).
    """
    check_raowu_strata(strat_npsu, lambda h: strata_labels[strat_code[h]], lonely_psu)
    # degf: R's rank of the replicate weights minus one, the same for both storages
    degf = raowu_degf(scheme.seed, strat_code, strat_npsu, n_replicates)
    return ReplicateWeights(kind=scheme.kind, weights=None, scale=1.0 / (n_replicates - 1),
                            rscales=np.ones(n_replicates), mse=bool(mse), degf=int(degf),
                            seed=scheme.seed, n_replicates=n_replicates, scheme=scheme)


def _raowu(design: Any, n_rep: int, scheme: RaoWu, mse: bool, *,
           materialize: bool) -> ReplicateWeights:
    lay = design_layout(design)
    reps = raowu_replicates(scheme, lay.strat_code, lay.strat_npsu,
                            strata_labels=design.strata_labels, lonely_psu=design.lonely_psu,
                            n_replicates=n_rep, mse=mse)
    if not materialize:
        return reps
    weights = readonly(scheme.multipliers(design, 0, n_rep) * design.weights[None, :])
    return replace(reps, weights=weights, origin=design.weights)


@renamed_keywords(replicates="n_replicates")
def bootstrap(
    design: Any,
    *,
    n_replicates: int = 500,
    kind: Literal["subbootstrap", "bootstrap"] = "subbootstrap",
    rng: RNGLike = None,
    mse: bool = False,
    materialize: bool = True,
) -> Any:
    """Bootstrap replicate weights: Rao-Wu (R's "subbootstrap") or R's "bootstrap".

    Parameters
    ----------
    design : SurveyDesign
    n_replicates : int, default=500
        Number of replicates ``R`` (formerly ``replicates=``).
    kind : {"subbootstrap", "bootstrap"}, default="subbootstrap"
        ``"subbootstrap"``: Rao-Wu rescaling bootstrap, :math:`n_h - 1` PSUs
        drawn with replacement in every stratum, no fpc (:class:`RaoWu`).
        ``"bootstrap"``: Canty & Davison's with-fpc bootstrap as R's
        ``bootweights`` (:class:`CantyDavison`).
    rng : int, Generator or SeedSequence
        Source of randomness (pass an int for reproducible replicates).
    mse : bool, default=False
    materialize : bool, default=True
        Store the ``(R, n)`` weights.  ``False`` (``"subbootstrap"`` only)
        generates them on the fly, in O(n) memory.  Storage only: for the same
        ``rng`` the replicate weights, estimates and SEs are identical (bit for
        bit) either way.  A Dask design never stores them (``"subbootstrap"``
        only; the option is ignored).

    Returns
    -------
    SurveyDesign

    Raises
    ------
    DesignError
        A stratum with a single PSU (``"subbootstrap"``: R gives NaN weights)
        unless ``lonely_psu`` is "remove" or "certainty" (multiplier 1).

    Notes
    -----
    See :class:`RaoWu` and :class:`CantyDavison`; rscales are 1; ``degf`` =
    rank of the replicate weights minus one (R), usually :math:`R - 1`.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=2_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.survey_design(answers, strata="agency_id", weights="design_weight")
    >>> a = ss.bootstrap(d, n_replicates=50, rng=11)
    >>> b = ss.bootstrap(d, n_replicates=50, rng=11, materialize=False)
    >>> sa = ss.mean(a, "q01", na="drop").table["se"]
    >>> sb = ss.mean(b, "q01", na="drop").table["se"]
    >>> bool((sa == sb).all())
    True
    """
    replicates = check_positive_int(n_replicates, name="n_replicates", minimum=2)
    check_choice(kind, name="kind", allowed=("subbootstrap", "bootstrap"))
    if type(design).__name__ == "DaskSurveyDesign":  # generated on the fly in every partition
        from ..distributed.replicates import dask_bootstrap

        return dask_bootstrap(design, n_replicates=replicates, kind=kind, rng=rng, mse=mse)
    warn_if_weighted(design)
    if kind == "subbootstrap":
        scheme = RaoWu(seed=int(stream_key(rng)))
        return design.with_replicates(_raowu(design, replicates, scheme, mse,
                                             materialize=materialize))
    if not materialize:
        raise SatsampleError("materialize=False is available for kind='subbootstrap' only")
    mult, scale = CantyDavison.draw(design, replicates, as_generator(rng))
    weights = readonly(mult[:, design.psu] * design.weights[None, :])
    return design.with_replicates(ReplicateWeights(
        kind="bootstrap", weights=weights, scale=scale, rscales=np.ones(replicates),
        mse=bool(mse), degf=int(matrix_rank(mult) - 1), n_replicates=replicates,
        scheme=CantyDavison()))
