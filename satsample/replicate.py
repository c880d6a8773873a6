"""Replicate-weight designs: jackknife (JK1, JKn), BRR and Fay, bootstraps, producer weights.

Every function returns a new :class:`~satsample.design.SurveyDesign` carrying
:class:`~satsample.design.ReplicateWeights` (R's ``as.svrepdesign`` and
``svrepdesign``); the input design is unchanged.  The replicate weights are
the analysis weights times per-PSU multipliers, stored as a C-contiguous
``(R, n)`` array (or generated on the fly for a large Rao-Wu bootstrap).

Create replicates on the *design* weights, before nonresponse adjustment and
calibration: weighting steps then replay on every replicate, so the replicate
SEs include them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.linalg import hadamard

from ._random import RNGLike, as_generator
from ._validation import (
    DesignError,
    SatsampleError,
    SatsampleWarning,
    as_numbers,
    check_choice,
    check_columns,
    check_positive_int,
    plain,
)
from .design import ReplicateWeights, SurveyDesign

__all__ = ["bootstrap", "brr", "declare_replicates", "jackknife"]

REPLICATE_KINDS: tuple[str, ...] = ("JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other")


# ----------------------------------------------------------------------------- helpers
def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _psu_structure(design: SurveyDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PSU code -> stratum code, PSUs per stratum code, stage-1 population per stratum code."""
    psu, strata = design.psu, design.strata
    n_psu = int(psu.max()) + 1
    psu_stratum = np.empty(n_psu, dtype=np.int64)
    psu_stratum[psu] = strata
    n_h = np.bincount(psu_stratum, minlength=design.n_strata).astype(np.float64)
    stage = design.stages[0]
    pop = np.full(design.n_strata, np.inf)
    if stage.popsize is not None:
        pop[strata] = stage.popsize
    return psu_stratum, n_h, pop


def _stratum_name(design: SurveyDesign, code: int) -> str:
    return repr(design.strata_labels[code])


def _warn_if_weighted(design: SurveyDesign) -> None:
    if len(design.history) > 1:
        warnings.warn(
            f"replicates created after {len(design.history) - 1} weighting step(s) "
            f"({', '.join(s.method for s in design.history[1:])}): those steps are not replayed "
            "on the replicates, so the replicate SEs ignore them; create replicates first",
            SatsampleWarning,
            stacklevel=3,
        )


def _matrix_rank(m: np.ndarray) -> int:
    """Rank of a replicate multiplier matrix (R's ``qr(.., tol = 1e-5)$rank``)."""
    if m.size == 0:
        return 0
    if m.shape[1] > 4 * m.shape[0]:
        ev = np.linalg.eigvalsh(m @ m.T)
        return int(np.sum(ev > ev.max() * 1e-10))
    s = np.linalg.svd(m, compute_uv=False)
    return int(np.sum(s > s.max() * 1e-5))


def _attach(design: SurveyDesign, mult: np.ndarray, **kwargs) -> SurveyDesign:
    """Replicate weights = analysis weights x PSU multipliers ``mult`` (R, n_psu)."""
    weights = mult[:, design.psu] * design.weights[None, :]
    rw = ReplicateWeights(weights=_readonly(weights), n_replicates=int(mult.shape[0]), **kwargs)
    return design.with_replicates(rw)


# ----------------------------------------------------------------------------- jackknife
def jackknife(
    design: SurveyDesign,
    *,
    kind: Literal["JKn", "JK1"] = "JKn",
    mse: bool = False,
    materialize: bool = True,
) -> SurveyDesign:
    """Delete-one-PSU jackknife replicates (R's ``as.svrepdesign(type = "JKn" | "JK1")``).

    Parameters
    ----------
    design : SurveyDesign
    kind : {"JKn", "JK1"}, default="JKn"
        ``"JKn"``: stratified, one replicate per PSU of every stratum that is
        not sampled with certainty.  ``"JK1"``: unstratified designs only.
    mse : bool, default=False
        Centre the variance at the full-sample estimate instead of the mean
        of the replicates.
    materialize : bool, default=True
        Store the ``(R, n)`` replicate weights.  ``False`` stores nothing:
        the replicates are implied by the design
        (:func:`satsample.variance.replicate.lazy_jackknife_replicates`), and
        :func:`~satsample.estimation.mean`, :func:`~satsample.estimation.proportion`,
        :func:`~satsample.estimation.ratio` and
        :func:`~satsample.index.satisfaction_index` compute the jackknife
        variance in closed form from PSU totals, in O(n) memory even with one
        PSU per response (R = n); their ``replicate_estimates`` is then
        ``None`` (``options["replicate_estimates"]`` says so).

    Returns
    -------
    SurveyDesign
        With ``replicates`` set (``degf`` = replicates minus strata with
        replicates, R's rank of the replicate weights minus one).

    Raises
    ------
    DesignError
        ``JK1`` on a stratified design; a lonely PSU with ``lonely_psu="fail"``;
        every stratum sampled with certainty.
    SatsampleError
        ``materialize=False`` with a lonely PSU under ``lonely_psu="adjust"``
        or ``"average"``, or with a stratum sampled with certainty
        (:math:`f_h = 1`): those replicates are only available materialised.

    Warns
    -----
    SatsampleWarning
        When the design has an fpc after the first stage: as R, only the
        stage-1 fpc is kept.

    Notes
    -----
    Replicate *r* deletes PSU *j* of stratum *h*: multiplier 0 for *j*,
    :math:`n_h/(n_h - 1)` for the other PSUs of *h*, 1 elsewhere;
    :math:`\\text{rscales}_r = (1 - f_h)(n_h - 1)/n_h`, scale 1 (JKn).  JK1:
    scale :math:`(1 - f)(n - 1)/n`, rscales 1.  Strata with :math:`f_h = 1` get
    no replicate.  Lonely PSUs follow ``design.lonely_psu`` as R's
    ``jknweights``: "remove", "certainty" and "average" give no replicate
    ("average" multiplies the scale by PSUs / replicates); "adjust" gives one
    replicate with multiplier 0 in the stratum and :math:`H/(H-1)` elsewhere,
    rscale :math:`(H-1)/H`.
    """
    check_choice(kind, name="kind", allowed=("JKn", "JK1"))
    _warn_if_weighted(design)
    if len(design.stages) > 1:
        warnings.warn(
            "jackknife: finite population corrections after the first stage are dropped "
            "(as R's as.svrepdesign); the replicate variance uses the stage-1 fpc only",
            SatsampleWarning,
            stacklevel=2,
        )
    psu_stratum, n_h, pop = _psu_structure(design)
    n_psu = psu_stratum.size
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(np.isfinite(pop), (pop - n_h) / pop, 1.0)  # 1 - f_h
    if kind == "JK1":
        if design.n_strata > 1:
            raise DesignError(
                f"jackknife(kind='JK1') is for unstratified designs; this design has "
                f"{design.n_strata} strata: use kind='JKn'"
            )
        n = float(n_psu)
        if corr[0] <= 0:
            raise DesignError("jackknife: every PSU was sampled (f = 1): no variance to estimate")
        if n_psu < 2:
            raise DesignError("jackknife(kind='JK1') needs at least 2 PSUs")
        if not materialize:
            return _lazy_jackknife(design, "JK1", mse)
        mult = np.full((n_psu, n_psu), n / (n - 1))
        np.fill_diagonal(mult, 0.0)
        return _attach(design, mult, kind="JK1", scale=float(corr[0] * (n - 1) / n),
                       rscales=np.ones(n_psu), mse=bool(mse), degf=n_psu - 1)

    n_strata = design.n_strata
    ok = (n_h >= 2) & (corr > 1e-12)
    lonely = (n_h == 1) & (corr > 1e-12)
    if lonely.any() and design.lonely_psu == "fail":
        raise DesignError(
            f"Stratum ({design.strata_labels[int(np.flatnonzero(lonely)[0])]}) has only one PSU "
            "at stage 1; choose lonely_psu='remove', 'certainty', 'adjust' or 'average'"
        )
    if not materialize:
        if not ok.any():
            raise DesignError("jackknife: all strata were sampled exhaustively (f_h = 1): no replicate")
        if lonely.any() and design.lonely_psu in ("adjust", "average"):
            raise SatsampleError(
                f"jackknife(materialize=False) does not support lonely_psu={design.lonely_psu!r} "
                f"(stratum {plain(design.strata_labels[int(np.flatnonzero(lonely)[0])])!r} has one PSU); "
                "use materialize=True, or lonely_psu='remove' or 'certainty'"
            )
        certain = (n_h >= 2) & ~(corr > 1e-12)
        if certain.any():
            raise SatsampleError(
                f"jackknife(materialize=False): stratum "
                f"{plain(design.strata_labels[int(np.flatnonzero(certain)[0])])!r} was sampled with "
                "certainty (f_h = 1), which the closed-form jackknife does not leave out; "
                "use materialize=True"
            )
        return _lazy_jackknife(design, "JKn", mse)
    # one replicate per PSU of the strata with replicates, in stratum then PSU order
    order = np.lexsort((np.arange(n_psu), psu_stratum))
    rep_psu = order[ok[psu_stratum[order]]]
    rep_stratum = psu_stratum[rep_psu]
    mult = np.ones((rep_psu.size, n_psu))
    same = psu_stratum[None, :] == rep_stratum[:, None]
    factor = (n_h / np.maximum(n_h - 1, 1))[rep_stratum]
    mult = np.where(same, factor[:, None], mult)
    mult[np.arange(rep_psu.size), rep_psu] = 0.0
    rscales = corr[rep_stratum] * (n_h[rep_stratum] - 1) / n_h[rep_stratum]
    n_jk_strata = int(ok.sum())
    if lonely.any() and design.lonely_psu == "adjust":
        codes = np.flatnonzero(lonely)
        extra = np.where(psu_stratum[None, :] == codes[:, None], 0.0, n_strata / (n_strata - 1))
        mult = np.vstack([mult, extra])
        rscales = np.r_[rscales, np.full(codes.size, (n_strata - 1) / n_strata)]
    if mult.shape[0] == 0:
        raise DesignError("jackknife: all strata were sampled exhaustively (f_h = 1): no replicate")
    scale = 1.0
    if mult.shape[0] < n_psu and design.lonely_psu == "average":
        scale = n_psu / mult.shape[0]
    return _attach(design, mult, kind="JKn", scale=scale, rscales=np.asarray(rscales, float),
                   mse=bool(mse), degf=int(mult.shape[0] - n_jk_strata))


def _lazy_jackknife(design: SurveyDesign, kind: str, mse: bool) -> SurveyDesign:
    """Attach jackknife replicates that are not stored (see ``jackknife(materialize=False)``)."""
    from .variance.replicate import lazy_jackknife_replicates

    return design.with_replicates(
        lazy_jackknife_replicates(design, kind=kind, mse=mse)  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------- BRR / Fay
def brr(design: SurveyDesign, *, fay_rho: float = 0.0, mse: bool = False) -> SurveyDesign:
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
    _warn_if_weighted(design)
    psu_stratum, n_h, pop = _psu_structure(design)
    bad = np.flatnonzero(n_h != 2)
    if bad.size:
        raise DesignError(
            f"brr needs exactly 2 PSUs per stratum; {bad.size} stratum/strata do not "
            f"(first: {_stratum_name(design, int(bad[0]))} with {int(n_h[bad[0]])} PSU(s)); "
            "use jackknife() or bootstrap() instead"
        )
    if np.isfinite(pop).any():
        warnings.warn("brr: the finite population correction is dropped (as R's BRR/Fay)",
                      SatsampleWarning, stacklevel=2)
    n_strata = design.n_strata
    order = 1
    while order < n_strata + 1:
        order *= 2
    had = hadamard(order)  # +-1, first row all ones
    n_psu = psu_stratum.size
    # first / second PSU of each stratum in PSU-code order (first appearance in the data)
    first = np.full(n_strata, -1)
    is_first = np.zeros(n_psu, dtype=bool)
    for j in np.argsort(psu_stratum, kind="stable"):
        h = psu_stratum[j]
        if first[h] < 0:
            first[h] = j
            is_first[j] = True
    sign = had[1 + psu_stratum, :].T  # (m, n_psu)
    sign = np.where(is_first[None, :], sign, -sign)
    mult = np.where(sign > 0, 2.0 - rho, rho)
    kind = "BRR" if rho == 0 else "Fay"
    return _attach(design, mult, kind=kind, scale=1.0 / (order * (1 - rho) ** 2),
                   rscales=np.ones(order), mse=bool(mse), degf=n_strata,
                   fay_rho=rho if rho else None)


# ----------------------------------------------------------------------------- bootstrap
def bootstrap(
    design: SurveyDesign,
    *,
    replicates: int = 500,
    kind: Literal["subbootstrap", "bootstrap"] = "subbootstrap",
    rng: RNGLike = None,
    mse: bool = False,
    materialize: bool = True,
) -> SurveyDesign:
    """Bootstrap replicate weights: Rao-Wu (R's "subbootstrap") or R's "bootstrap".

    Parameters
    ----------
    design : SurveyDesign
    replicates : int, default=500
        Number of replicates ``R``.
    kind : {"subbootstrap", "bootstrap"}, default="subbootstrap"
        ``"subbootstrap"``: Rao-Wu rescaling bootstrap, :math:`n_h - 1` PSUs
        drawn with replacement in every stratum, no fpc.  ``"bootstrap"``:
        Canty & Davison's with-fpc bootstrap as R's ``bootweights``.
    rng : int, Generator or SeedSequence
        Source of randomness (pass an int for reproducible replicates).
    mse : bool, default=False
    materialize : bool, default=True
        Store the ``(R, n)`` weights.  ``False`` (``"subbootstrap"`` only)
        generates them on the fly from a counter-based stream, in O(n) memory.

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
    Rao-Wu: PSU *j* of stratum *h* drawn :math:`c_{rj}` times gets the
    multiplier :math:`c_{rj}\\, n_h/(n_h - 1)`; scale :math:`1/(R - 1)`.
    R's "bootstrap": in each stratum the PSUs (shuffled once) are repeated
    cyclically to length :math:`\\lfloor N_h \\rfloor` and :math:`n_h` of those
    slots are drawn without replacement (with replacement from the
    :math:`n_h` PSUs without fpc); multiplier = times drawn; scale
    :math:`\\bar n/((\\bar n - 1)(R - 1))` with :math:`\\bar n` the harmonic mean
    of the :math:`n_h`.  rscales are 1.  ``degf`` = rank of the replicate
    weights minus one (R), usually :math:`R - 1`.
    """
    replicates = check_positive_int(replicates, name="replicates", minimum=2)
    check_choice(kind, name="kind", allowed=("subbootstrap", "bootstrap"))
    _warn_if_weighted(design)
    if not materialize:
        if kind != "subbootstrap":
            raise SatsampleError("materialize=False is available for kind='subbootstrap' only")
        from .variance.replicate import lazy_raowu_replicates

        return design.with_replicates(
            lazy_raowu_replicates(design, replicates=replicates, rng=rng, mse=mse)
        )
    gen = as_generator(rng)
    psu_stratum, n_h, pop = _psu_structure(design)
    n_psu = psu_stratum.size
    lonely = n_h < 2
    if kind == "subbootstrap" and lonely.any() and design.lonely_psu not in ("remove", "certainty"):
        code = int(np.flatnonzero(lonely)[0])
        raise DesignError(
            f"stratum {_stratum_name(design, code)} has a single PSU: the Rao-Wu bootstrap "
            f"needs n_h >= 2 (lonely_psu={design.lonely_psu!r}; 'remove' or 'certainty' keep it "
            "fixed with multiplier 1)"
        )
    order = np.argsort(psu_stratum, kind="stable")  # PSUs grouped by stratum
    start = np.r_[0, np.cumsum(n_h.astype(np.int64))]
    if kind == "subbootstrap":
        n_draw = np.where(lonely, 0, n_h - 1).astype(np.int64)
        draw_stratum = np.repeat(np.arange(design.n_strata), n_draw)
        local = gen.integers(0, n_h[draw_stratum].astype(np.int64), size=(replicates, draw_stratum.size))
        drawn = order[start[draw_stratum][None, :] + local]
        counts = np.bincount((np.arange(replicates)[:, None] * n_psu + drawn).ravel(),
                             minlength=replicates * n_psu).reshape(replicates, n_psu)
        factor = np.where(lonely, 1.0, n_h / np.maximum(n_h - 1, 1))[psu_stratum]
        mult = np.where(lonely[psu_stratum][None, :], 1.0, counts * factor[None, :])
        scale = 1.0 / (replicates - 1)
    else:
        mult = np.zeros((replicates, n_psu))
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
                counts = gen.multivariate_hypergeometric(copies, nh, size=replicates)
            else:
                counts = gen.multinomial(nh, np.full(nh, 1.0 / nh), size=replicates)
            mult[:, shuffled] = counts
        nbar = 1.0 / np.mean(1.0 / n_h[n_h > 0])
        scale = nbar / ((nbar - 1.0) * (replicates - 1))
    degf = _matrix_rank(mult) - 1
    return _attach(design, mult, kind=kind, scale=float(scale), rscales=np.ones(replicates),
                   mse=bool(mse), degf=int(degf))


# ----------------------------------------------------------------------------- declared
def _replicate_columns(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(n, R) float64 matrix of replicate-weight columns; booleans and text raise, named."""
    if all(pd.api.types.is_float_dtype(t) or pd.api.types.is_integer_dtype(t)
           for t in frame.dtypes):
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.column_stack([as_numbers(frame.iloc[:, j], name=names[j], role="replicate weights")
                            for j in range(frame.shape[1])])


def declare_replicates(
    design: SurveyDesign,
    weights: Sequence[str] | np.ndarray | pd.DataFrame,
    *,
    kind: Literal["JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other"] = "other",
    scale: float | None = None,
    rscales: Sequence[float] | np.ndarray | None = None,
    mse: bool = False,
    degf: int | None = None,
    combined_weights: bool = True,
    fay_rho: float | None = None,
) -> SurveyDesign:
    """Attach replicate weights supplied by a data producer (R's ``svrepdesign``).

    Parameters
    ----------
    design : SurveyDesign
    weights : list of str, DataFrame or array of shape (n, R)
        Column names of ``design.data``, or one column per replicate with the
        rows of the design (the layout of a producer's file).
    kind : {"JK1", "JKn", "BRR", "Fay", "bootstrap", "subbootstrap", "other"}, default="other"
        Used for the default ``scale`` and recorded in results.
    scale : float, optional
        Overall multiplier.  Defaults: BRR ``1/R``; Fay ``1/(R (1 - rho)^2)``;
        bootstraps ``1/(R - 1)``; required for the other kinds.
    rscales : array-like of shape (R,), optional
        Per-replicate multipliers (default ones; required for ``"JKn"``).
    mse : bool, default=False
        Centre at the full-sample estimate (many producers, e.g. the ACS, use True).
    degf : int, optional
        Degrees of freedom; default the rank of the replicate weights minus
        one, as R.  Give it to skip the rank computation on large files.
    combined_weights : bool, default=True
        ``True``: the columns are replicate *analysis* weights (R's
        ``combined.weights = TRUE``).  ``False``: they are multipliers of the
        design's analysis weights.
    fay_rho : float, optional
        Fay's coefficient (required for ``kind="Fay"`` without ``scale``).

    Returns
    -------
    SurveyDesign

    Notes
    -----
    :math:`v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_r - c)^2`.
    """
    check_choice(kind, name="kind", allowed=REPLICATE_KINDS)
    if isinstance(weights, pd.DataFrame):
        names = [str(c) for c in weights.columns]
        mat = _replicate_columns(weights, names)
    elif isinstance(weights, np.ndarray):
        mat = np.asarray(weights, dtype=np.float64)
        if mat.ndim != 2:
            raise SatsampleError(f"replicate weights must be 2-D (n, R), got shape {mat.shape}")
        names = [f"replicate {r + 1}" for r in range(mat.shape[1])]
    else:
        names = [weights] if isinstance(weights, str) else list(weights)
        check_columns(design.data, names, role="replicate weights")
        mat = _replicate_columns(design.data[names], names)
    if mat.shape[0] != design.n:
        raise SatsampleError(
            f"replicate weights have {mat.shape[0]} rows, the design has {design.n} "
            "(give one column per replicate, one row per respondent)"
        )
    n_rep = mat.shape[1]
    if n_rep < 2:
        raise SatsampleError(f"{n_rep} replicate weight column(s): need at least 2")
    bad = ~np.isfinite(mat)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise SatsampleError(
            f"replicate weights {names[j]!r}: {int(bad[:, j].sum())} value(s) are missing or "
            f"infinite ({int(bad.sum())} in all columns)"
        )
    neg = mat < 0
    if neg.any():
        j = int(np.flatnonzero(neg.any(axis=0))[0])
        raise SatsampleError(
            f"replicate weights {names[j]!r}: {int(neg[:, j].sum())} value(s) are negative"
        )
    if not combined_weights:
        mat = mat * design.weights[:, None]
    if scale is None:
        if kind == "BRR":
            scale = 1.0 / n_rep
        elif kind == "Fay":
            if fay_rho is None:
                raise SatsampleError("kind='Fay' needs fay_rho= (or scale=)")
            scale = 1.0 / (n_rep * (1.0 - float(fay_rho)) ** 2)
        elif kind in ("bootstrap", "subbootstrap"):
            scale = 1.0 / (n_rep - 1)
        elif kind == "JKn":
            scale = 1.0
        else:
            raise SatsampleError(
                f"scale= is required for kind={kind!r} (JK1: (1 - f)(n - 1)/n; a producer's "
                "documentation gives it)"
            )
    if rscales is None:
        if kind == "JKn":
            raise SatsampleError("kind='JKn' needs rscales= (one (1 - f_h)(n_h - 1)/n_h per replicate)")
        rs = np.ones(n_rep)
    else:
        rs = np.asarray(rscales, dtype=np.float64).reshape(-1)
        if rs.size != n_rep:
            raise SatsampleError(f"rscales has {rs.size} values for {n_rep} replicates")
    if not np.isfinite(scale) or scale <= 0:
        raise SatsampleError(f"scale={scale!r} must be a positive number")
    if degf is None:
        degf = _matrix_rank(mat.T) - 1
    rw = ReplicateWeights(
        kind=kind,
        weights=_readonly(mat.T),
        scale=float(scale),
        rscales=rs,
        mse=bool(mse),
        degf=int(degf),
        n_replicates=n_rep,
        fay_rho=None if fay_rho is None else float(fay_rho),
    )
    return design.with_replicates(rw)
