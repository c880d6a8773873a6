"""Delete-one-PSU jackknife: JKn (stratified) and JK1 (one stratum), stored or in closed form.

A replicate that deletes PSU *i* of stratum *h* changes a domain total only
through that stratum, ``T' = T + (m_h - 1) T_h - m_h t_hi`` with
``m_h = n_h/(n_h - 1)``: every replicate follows from PSU and stratum
totals, so the replicates never need to be stored (``materialize=False``),
and linear combinations of ratios get their variance in closed form
(:mod:`satsample._kernels.jackknife`), in O(n) memory even with one PSU per
response.  Lonely PSUs and certainty strata follow the design's rule as R's
``jknweights`` does, in both storages.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._validation import DesignError, SatsampleWarning, check_choice, plain
from ..design import ReplicateWeights
from ._common import Layout, design_layout, readonly, warn_if_weighted
from .base import ReplicateScheme

__all__ = ["Jackknife", "jackknife", "lazy_jackknife_replicates"]


@dataclass(frozen=True, kw_only=True, eq=False)
class _Plan:
    """The replicates of a jackknife, per stratum position (strata sorted by code).

    Built from per-stratum tables only (:func:`stratum_plan`): in memory from
    the design's layout (kept in ``lay`` for the replicate totals), on Dask
    from the design's level tables (``lay`` is None).
    """

    strat_code: np.ndarray  # (H,) stratum code of each position
    strat_npsu: np.ndarray  # (H,) PSUs of each stratum
    corr: np.ndarray  # (H,) 1 - stage-1 sampling fraction
    has_rep: np.ndarray  # (H,) a replicate per PSU (n_h >= 2, not sampled with certainty)
    rscale: np.ndarray  # (H,) rscale of those replicates
    adjust: np.ndarray  # stratum positions of lonely PSUs with an "adjust" replicate
    adjust_factor: float  # multiplier outside the lonely stratum, H / (H - 1)
    adjust_rscale: float  # (H - 1) / H
    scale: float
    n_regular: int
    degf: int
    lay: Layout | None = None

    @property
    def n_replicates(self) -> int:
        return self.n_regular + int(self.adjust.size)

    @property
    def first_rep(self) -> np.ndarray:
        """(H,) number of the first replicate of each stratum position (-1: none)."""
        nh = self.strat_npsu
        starts = np.r_[0, np.cumsum(np.where(self.has_rep, nh, 0))[:-1]].astype(np.int64)
        return np.where(self.has_rep, starts, -1)

    def rscales(self) -> np.ndarray:
        nh = self.strat_npsu
        regular = np.repeat(self.rscale[self.has_rep], nh[self.has_rep])
        return np.r_[regular, np.full(self.adjust.size, self.adjust_rscale)]


def stratum_fraction(npsu: np.ndarray, pop: np.ndarray | None, single: bool) -> np.ndarray:
    """Stage-1 sampling fraction per stratum position (as R, later-stage fpc is dropped).

    ``npsu`` and ``pop`` (None: no fpc) hold the PSUs and the population of
    PSUs of every stratum; ``single`` (JK1): one fraction, all PSUs over the
    whole population.
    """
    nh = np.asarray(npsu, dtype=np.float64)
    if pop is None:
        return np.zeros(1 if single else nh.size)
    pop = np.asarray(pop, dtype=np.float64)
    if single:
        return np.full(1, nh.sum() / pop.sum())
    return nh / pop


def _fraction(design: Any, lay: Layout, single: bool) -> np.ndarray:
    """:func:`stratum_fraction` of a design in memory (its layout and stage-1 popsize)."""
    stage = design.stages[0]
    pop = None
    if stage.popsize is not None:
        if single:
            pop = np.unique(np.c_[stage.stratum, stage.popsize], axis=0)[:, 1]
        else:
            pop = np.zeros(lay.strat_npsu.size)
            pop[np.searchsorted(lay.strat_code, stage.stratum)] = stage.popsize
    return stratum_fraction(lay.strat_npsu, pop, single)


def stratum_plan(kind: str, strat_code: np.ndarray, strat_npsu: np.ndarray,
                 fraction: np.ndarray, *, n_strata: int, lonely_psu: str,
                 lay: Layout | None = None) -> _Plan:
    """The jackknife's replicates from per-stratum tables (codes, PSUs, sampling fractions).

    The one construction of a plan: :meth:`Jackknife.plan` of a design in
    memory and the Dask backend (level tables, no row or PSU arrays) both call it.
    """
    single = kind == "JK1"
    nh = np.asarray(strat_npsu).astype(np.float64)
    corr = 1.0 - np.asarray(fraction, dtype=np.float64)
    n_psu = float(nh.sum())
    if single:
        has_rep = (nh >= 2) & (corr > 1e-12)
        rscale = np.ones(nh.size)
        scale = float(corr[0] * (nh[0] - 1) / nh[0]) if nh[0] > 1 else 1.0
        adjust = np.zeros(0, dtype=np.int64)
    else:
        has_rep = (nh >= 2) & (corr > 1e-12)
        rscale = np.where(has_rep, corr * (nh - 1.0) / np.maximum(nh, 1.0), 0.0)
        scale = 1.0
        lonely = (nh == 1) & (corr > 1e-12)
        adjust = (np.flatnonzero(lonely) if lonely_psu == "adjust"
                  else np.zeros(0, dtype=np.int64))
    n_regular = int(nh[has_rep].sum())
    n_rep = n_regular + int(adjust.size)
    if n_rep and n_rep < n_psu and lonely_psu == "average" and not single:
        scale = n_psu / n_rep
    return _Plan(strat_code=np.asarray(strat_code, dtype=np.int64),
                 strat_npsu=np.asarray(strat_npsu, dtype=np.int64), corr=corr,
                 has_rep=has_rep, rscale=rscale, adjust=adjust.astype(np.int64),
                 adjust_factor=n_strata / (n_strata - 1.0) if n_strata > 1 else 1.0,
                 adjust_rscale=(n_strata - 1.0) / n_strata, scale=scale, n_regular=n_regular,
                 degf=int(n_rep - int(has_rep.sum())), lay=lay)


@dataclass(frozen=True, eq=False)
class Jackknife(ReplicateScheme):
    """Delete-one-PSU jackknife, ``kind="JKn"`` (within strata) or ``"JK1"`` (one stratum).

    Notes
    -----
    Replicate *(h, i)* multiplies PSU *i* by 0 and the other PSUs of stratum
    *h* by :math:`n_h/(n_h-1)`; rscale :math:`(1 - f_h)(n_h - 1)/n_h`, scale 1
    (JK1: rscales 1, scale :math:`(1 - f)(n - 1)/n`).  Strata with
    :math:`f_h = 1` get no replicate.  A lonely PSU gets no replicate under
    "remove", "certainty" and "average" ("average" multiplies the scale by
    PSUs / replicates); under "adjust" it gets one replicate with multiplier
    0 in its stratum and :math:`H/(H-1)` elsewhere, rscale :math:`(H-1)/H`.
    """

    kind: str = "JKn"
    generates = True
    closed_form = True

    @property
    def single(self) -> bool:
        return self.kind == "JK1"

    def plan(self, design: Any) -> _Plan:
        lay = design_layout(design, single_stratum=self.single)
        return stratum_plan(self.kind, lay.strat_code, lay.strat_npsu,
                            _fraction(design, lay, self.single), n_strata=design.n_strata,
                            lonely_psu=design.lonely_psu, lay=lay)

    # ------------------------------------------------------------ generation
    def multipliers(self, design: Any, r0: int, nb: int) -> np.ndarray:
        plan = self.plan(design)
        lay = plan.lay
        rep_psu = np.flatnonzero(plan.has_rep[lay.psu_stratum])  # PSU deleted by each replicate
        m = np.ones((nb, design.n))
        for q in range(nb):
            r = r0 + q
            if r < plan.n_regular:
                p = rep_psu[r]
                h = lay.psu_stratum[p]
                nh = lay.strat_npsu[h]
                rows = lay.order[lay.strat_start[h]:lay.strat_start[h + 1]]
                m[q, rows] = np.where(lay.psu_index[rows] == p, 0.0, nh / (nh - 1.0))
            else:
                h = plan.adjust[r - plan.n_regular]
                m[q] = plan.adjust_factor
                m[q, lay.order[lay.strat_start[h]:lay.strat_start[h + 1]]] = 0.0
        return m

    def _cells(self, design: Any, wv: np.ndarray, domain: np.ndarray):
        """Group weighted values by (domain, stratum) and (domain, PSU)."""
        lay = design_layout(design, single_stratum=self.single)
        n_psu = int(lay.psu_stratum.size)
        keep = domain >= 0
        key = domain[keep] * n_psu + lay.psu_index[keep]
        o = np.argsort(key, kind="stable")
        ks = key[o]
        starts = (np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if ks.size
                  else np.zeros(0, np.int64))
        cell_tot = np.add.reduceat(wv[keep][o], starts, axis=0) if ks.size else wv[:0]
        cell_key = ks[starts]
        cell_dom = cell_key // n_psu
        cell_psu = cell_key % n_psu
        cell_strat = lay.psu_stratum[cell_psu]
        gkey = cell_dom * lay.strat_npsu.size + cell_strat
        gstarts = (np.flatnonzero(np.r_[True, gkey[1:] != gkey[:-1]]) if gkey.size
                   else np.zeros(0, np.int64))
        grp_tot = np.add.reduceat(cell_tot, gstarts, axis=0) if gkey.size else cell_tot[:0]
        return cell_tot, cell_psu, gstarts, grp_tot, cell_dom[gstarts], cell_strat[gstarts]

    @staticmethod
    def _adjust_totals(plan: _Plan, full: np.ndarray, grp_tot: np.ndarray, grp_dom: np.ndarray,
                       grp_strat: np.ndarray) -> np.ndarray:
        """Totals (A, G, k) of the "adjust" replicates: ``H/(H-1) (T - T_h)``."""
        out = np.empty((plan.adjust.size, *full.shape))
        for a, h in enumerate(plan.adjust):
            t_h = np.zeros_like(full)
            sel = grp_strat == h
            np.add.at(t_h, grp_dom[sel], grp_tot[sel])
            out[a] = plan.adjust_factor * (full - t_h)
        return out

    def totals(self, design: Any, values: np.ndarray, domain: np.ndarray,
               n_domains: int) -> np.ndarray:
        """Replicate totals (R, G, k) from PSU totals (no replicate weights formed)."""
        plan = self.plan(design)
        lay = plan.lay
        wv = np.asarray(values, dtype=np.float64) * design.weights[:, None]
        cell_tot, cell_psu, gstarts, grp_tot, grp_dom, grp_strat = self._cells(design, wv, domain)
        k = wv.shape[1]
        full = np.zeros((n_domains, k))
        np.add.at(full, grp_dom, grp_tot)
        nh = lay.strat_npsu
        has_rep = plan.has_rep
        psu_has = has_rep[lay.psu_stratum]
        rep_of_psu = np.cumsum(psu_has) - 1
        out = np.broadcast_to(full, (plan.n_regular, n_domains, k)).copy()
        mh = nh / np.maximum(nh - 1.0, 1.0)
        strat_first_rep = plan.first_rep
        for q in range(grp_dom.size):
            h = grp_strat[q]
            if not has_rep[h]:
                continue
            r0 = strat_first_rep[h]
            out[r0:r0 + nh[h], grp_dom[q]] += (mh[h] - 1.0) * grp_tot[q]
        sel = psu_has[cell_psu]
        cell_dom = np.repeat(grp_dom, np.diff(np.r_[gstarts, cell_psu.size]))
        np.add.at(out, (rep_of_psu[cell_psu[sel]], cell_dom[sel]),
                  -(mh[lay.psu_stratum[cell_psu[sel]]])[:, None] * cell_tot[sel])
        if plan.adjust.size:
            out = np.concatenate([out, self._adjust_totals(plan, full, grp_tot, grp_dom,
                                                           grp_strat)])
        return out

    # ----------------------------------------------------------- closed form
    def ratio_sums(self, design: Any, num: np.ndarray, den: np.ndarray, coef: np.ndarray,
                   domain: np.ndarray, n_domains: int,
                   full: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
        """Sums over the replicates of the design's strata, for :meth:`ratio_finish`.

        Returns ``s1``, ``s2``, ``msum`` (G, L): :math:`\\sum_r rs_r d_r`,
        :math:`\\sum_r rs_r d_r^2`, :math:`\\sum_r d_r` with
        :math:`d_r = \theta_r - \theta`, and ``s0`` = :math:`\\sum_r rs_r`.
        ``full``: the full-sample totals :math:`(N, D)` (G, K) when the design
        holds only some strata of the sample (a Dask partition: the sums of
        partitions holding disjoint whole strata then add up); default: the
        design's own totals (then returned as ``full``).
        """
        from .._kernels.jackknife import _jkn_ratio_variance
        from ..variance.replicate import linear_ratios

        plan = self.plan(design)
        lay = plan.lay
        K = num.shape[1]
        wv = np.hstack([num, den]) * design.weights[:, None]
        cell_tot, _cell_psu, gstarts, grp_tot, grp_dom, grp_strat = self._cells(design, wv,
                                                                                 domain)
        if den.shape[1] == 1:
            cell_d = np.repeat(cell_tot[:, K:], K, axis=1)
            grp_d = np.repeat(grp_tot[:, K:], K, axis=1)
        else:
            cell_d, grp_d = cell_tot[:, K:], grp_tot[:, K:]
        if full is None:
            n_full = np.zeros((n_domains, K))
            d_full = np.zeros((n_domains, K))
            np.add.at(n_full, grp_dom, grp_tot[:, :K])
            np.add.at(d_full, grp_dom, grp_d)
        else:
            n_full, d_full = (np.ascontiguousarray(a, dtype=np.float64) for a in full)
        nh = lay.strat_npsu
        grp_nh = np.where(plan.has_rep[grp_strat], nh[grp_strat], 0)  # 0: no replicate
        dom_start = np.searchsorted(grp_dom, np.arange(n_domains + 1)).astype(np.int64)
        cell_start = np.r_[gstarts, cell_tot.shape[0]].astype(np.int64)
        theta, s1, s2, msum = _jkn_ratio_variance(
            n_full, d_full, coef, dom_start, grp_nh.astype(np.int64),
            plan.rscale[grp_strat].astype(np.float64),
            np.ascontiguousarray(grp_tot[:, :K]), np.ascontiguousarray(grp_d), cell_start,
            np.ascontiguousarray(cell_tot[:, :K]), np.ascontiguousarray(cell_d))
        s0 = float((nh[plan.has_rep] * plan.rscale[plan.has_rep]).sum())
        if plan.adjust.size:
            grp_nd = np.hstack([grp_tot[:, :K], grp_d])
            t_a = self._adjust_totals(plan, np.hstack([n_full, d_full]), grp_nd, grp_dom,
                                      grp_strat)
            d_a = linear_ratios(t_a[..., :K], t_a[..., K:], coef) - theta
            rs = plan.adjust_rscale
            s1 = s1 + rs * d_a.sum(axis=0)
            s2 = s2 + rs * (d_a * d_a).sum(axis=0)
            msum = msum + d_a.sum(axis=0)
            s0 += rs * plan.adjust.size
        out = {"s1": s1, "s2": s2, "msum": msum, "s0": s0}
        if full is None:
            out["full"] = (n_full, d_full)
        return out

    @staticmethod
    def ratio_theta(n_full: np.ndarray, d_full: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """The full-sample :math:`\theta_{gl} = \\sum_k c_{glk} N_{gk}/D_{gk}` as the kernel computes it."""
        from .._kernels.jackknife import _jkn_ratio_variance

        g, _l, k = coef.shape
        empty = np.zeros((0, k))
        return _jkn_ratio_variance(
            np.ascontiguousarray(n_full, dtype=np.float64),
            np.ascontiguousarray(d_full, dtype=np.float64), coef, np.zeros(g + 1, np.int64),
            np.zeros(0, np.int64), np.zeros(0), empty, empty, np.zeros(1, np.int64), empty,
            empty)[0]

    @staticmethod
    def ratio_finish(theta: np.ndarray, sums: dict[str, Any], *, scale: float,
                     n_replicates: int, mse: bool) -> np.ndarray:
        """The variance (G, L) from the (summed) :meth:`ratio_sums`."""
        undefined = np.isnan(theta)  # e.g. an empty domain: every replicate is undefined too
        s1, s2, msum, s0 = sums["s1"], sums["s2"], sums["msum"], sums["s0"]
        if mse:
            return scale * np.where(undefined, np.nan, s2)
        cbar = msum / n_replicates
        return scale * np.where(undefined, np.nan, s2 - 2.0 * cbar * s1 + cbar * cbar * s0)

    def ratio_variance(self, design: Any, num: np.ndarray, den: np.ndarray, coef: np.ndarray,
                       domain: np.ndarray, n_domains: int, mse: bool) -> np.ndarray:
        r"""Jackknife variance of ``theta_gl = sum_k coef[g, l, k] N_gk / D_gk`` in closed form.

        Replicate *(h, i)* changes the totals by :math:`a = (m_h - 1) N_{hg} - m_h
        t_{hig}` (and *b* for *D*), so :math:`N'/D' - N/D = (a D - N b) / (D (D +
        b))` is computed without cancellation; the sums :math:`\sum r_s d`,
        :math:`\sum r_s d^2`, :math:`\sum d` give the variance about the replicate
        mean (:meth:`ratio_sums`, :meth:`ratio_finish`).  PSUs of a stratum with no
        row in the domain share one replicate value; "adjust" replicates are added
        from their totals.
        """
        plan = self.plan(design)
        sums = self.ratio_sums(design, num, den, coef, domain, n_domains)
        return self.ratio_finish(self.ratio_theta(*sums["full"], coef), sums, scale=plan.scale,
                                 n_replicates=plan.n_replicates, mse=mse)


def lazy_jackknife_replicates(
    design: Any, *, kind: Literal["JKn", "JK1"] = "JKn", mse: bool = False
) -> ReplicateWeights:
    """Jackknife replicates that are never materialised (``jackknife(materialize=False)``)."""
    kind = check_choice(kind, name="kind", allowed=("JKn", "JK1"))
    scheme = Jackknife(kind=kind)
    plan = scheme.plan(design)
    return ReplicateWeights(kind=kind, weights=None, scale=plan.scale, rscales=plan.rscales(),
                            mse=bool(mse), degf=plan.degf, n_replicates=plan.n_replicates,
                            scheme=scheme)


def jackknife_replicates(scheme: Jackknife, plan: _Plan, *, n_strata: int,
                         strata_labels: np.ndarray, lonely_psu: str,
                         mse: bool) -> ReplicateWeights:
    """The checks of :func:`jackknife` on a plan, and its lazy replicates (not attached).

    Per-stratum only: a design in memory and a Dask design (level tables) both come here.
    """
    if scheme.single:
        if n_strata > 1:
            raise DesignError(
                f"jackknife(kind='JK1') is for unstratified designs; this design has "
                f"{n_strata} strata: use kind='JKn'"
            )
        if plan.strat_npsu[0] < 2:
            raise DesignError("jackknife(kind='JK1') needs at least 2 PSUs")
        if not plan.has_rep.any():
            raise DesignError("jackknife: every PSU was sampled (f = 1): no variance to estimate")
    else:
        lonely = (plan.strat_npsu == 1) & (plan.corr > 1e-12)
        if lonely.any() and lonely_psu == "fail":
            code = plan.strat_code[int(np.flatnonzero(lonely)[0])]
            raise DesignError(
                f"Stratum ({plain(strata_labels[code])}) has only one PSU at stage 1; choose "
                "lonely_psu='remove', 'certainty', 'adjust' or 'average'"
            )
        if plan.n_replicates == 0:
            raise DesignError("jackknife: all strata were sampled exhaustively (f_h = 1): no "
                              "replicate")
    return ReplicateWeights(kind=scheme.kind, weights=None, scale=plan.scale,
                            rscales=plan.rscales(), mse=bool(mse), degf=plan.degf,
                            n_replicates=plan.n_replicates, scheme=scheme)


def jackknife(
    design: Any,
    *,
    kind: Literal["JKn", "JK1"] = "JKn",
    mse: bool = False,
    materialize: bool = True,
) -> Any:
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
        Store the ``(R, n)`` replicate weights.  ``False`` stores nothing: the
        replicates are implied by the design, and the estimators compute the
        jackknife variance of ratios (means, shares, ratios, the satisfaction
        index) in closed form from PSU totals, in O(n) memory even with one
        PSU per response (R = n); their ``replicate_estimates`` is then
        ``None`` (``options["replicate_estimates"]`` says so).  The replicates
        and the variances are the same either way (every lonely-PSU rule and
        certainty strata included).  A Dask design never stores them (the
        option is ignored).

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

    Warns
    -----
    SatsampleWarning
        When the design has an fpc after the first stage: as R, only the
        stage-1 fpc is kept.

    Notes
    -----
    See :class:`Jackknife`.  Replicates are ordered by stratum, then PSU code;
    the "adjust" replicates of lonely PSUs come last.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=2_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=40, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.survey_design(answers, strata="agency_id", weights="design_weight")
    >>> ss.jackknife(d, materialize=False).replicates.n_replicates
    160
    """
    check_choice(kind, name="kind", allowed=("JKn", "JK1"))
    if type(design).__name__ == "DaskSurveyDesign":  # implied by the design, never stored
        from ..distributed.replicates import dask_jackknife

        return dask_jackknife(design, kind=kind, mse=mse)
    warn_if_weighted(design)
    if len(design.stages) > 1:
        warnings.warn(
            "jackknife: finite population corrections after the first stage are dropped "
            "(as R's as.svrepdesign); the replicate variance uses the stage-1 fpc only",
            SatsampleWarning,
            stacklevel=2,
        )
    scheme = Jackknife(kind=kind)
    plan = scheme.plan(design)
    reps = jackknife_replicates(scheme, plan, n_strata=design.n_strata,
                                strata_labels=design.strata_labels,
                                lonely_psu=design.lonely_psu, mse=mse)
    if materialize:
        mult = scheme.multipliers(design, 0, plan.n_replicates)
        reps = ReplicateWeights(kind=kind, weights=readonly(mult * design.weights[None, :]),
                                scale=plan.scale, rscales=plan.rscales(), mse=bool(mse),
                                degf=plan.degf, n_replicates=plan.n_replicates, scheme=scheme,
                                origin=design.weights)
    return design.with_replicates(reps)
