"""The estimation engine: one path from per-row inputs to estimates, SEs, df and design effects.

A statistic is described by

* its per-row inputs, :class:`Inputs`: numerators ``y`` (n, K), and a
  denominator per column (none for totals, the count of usable rows for means
  and shares, or a column for ratios), with the rows usable for each column;
  the engine forms the domain totals :math:`N_{gk} = \\sum_i w_i y_{ik}`,
  :math:`D_{gk}` and the ratios :math:`r_{gk} = N_{gk}/D_{gk}` (or the totals);
* a :class:`Combination` of those ratios, the point function
  :math:`\\theta_g = h(r_g)` with its gradient :math:`\\partial h/\\partial r`
  (the identity for total/mean/ratio/proportion; the questionnaire's
  aggregation rule for the satisfaction index).

The variance is a backend chosen by the design: Taylor linearisation
(:func:`satsample.variance.taylor.taylor_variance` of the scores
:math:`z_i = \\sum_k \\partial h/\\partial r_k \\, (y_{ik} - r_k d_{ik})/D_k`),
or replicate weights (:mod:`satsample.variance.replicate`: :math:`h` recomputed
from the replicate totals, or in closed form for a jackknife whose replicates
are not stored when :math:`h` is linear).

The reduction seam.  :func:`fit_source` and :func:`vcov_source` are passes
over :class:`Rows` (the per-row values of one in-memory design) whose results
are additive arrays (sums over the design's strata), reached through a
*source*: pass 1 gives the domain totals :math:`N, D`, counts, df pieces and
replicate totals; small algebra gives the ratios, estimates and the
linearisation; pass 2 gives the Taylor pieces, the closed-form jackknife sums
or the SRS moments of the scores.  In memory (:class:`MemorySource`) the
sample is one partition and ``reduce(fn) = fn(rows)``; on Dask
(:class:`satsample.distributed.estimators.DaskSource`) every partition is an
in-memory design with the global codes of the sample and the partitions'
results are added.  :func:`fit` and :func:`vcov` are the in-memory entry points;
:func:`scores` and :func:`moments` are the linearisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .._validation import SatsampleError, check_choice
from ..variance import replicate as rep_backend
from ..variance.taylor import taylor_finish, taylor_pieces, taylor_vcov_finish, taylor_vcov_pieces
from .domains import ROW_BLOCK, Domains, Groups, domain_df

__all__ = ["Combination", "Fit", "Identity", "Inputs", "fit", "resolve_variance"]


# ------------------------------------------------------------------ inputs
@dataclass(frozen=True, kw_only=True, eq=False)
class Inputs:
    """Per-row inputs of a statistic.

    Attributes
    ----------
    num : ndarray of shape (n, K)
        Numerator values: uint8 (small non-negative integers) or float64 (NaN
        allowed where not ``ok``).
    den : None, "used" or ndarray of shape (n, K)
        ``None``: totals (no denominator); ``"used"``: the count of rows used
        (means and shares); an array: ratio denominators (float64).
    ok : ndarray of bool of shape (n, K) or None
        Usable values (``None``: all).  A row is used for a column when it is
        usable and has a positive weight.
    """

    num: np.ndarray
    den: Any = "used"
    ok: np.ndarray | None = None


# ------------------------------------------------------------ combinations
class Combination:
    """The point function of the ratios, :math:`\\theta = h(r)`, and its gradient.

    Subclasses set ``n_out`` (L), ``keeps_ratios`` (the first K outputs are
    the ratios themselves), ``linear`` (the gradient depends only on which
    ratios are defined, as for averages: the closed-form jackknife applies)
    and implement :meth:`value`, :meth:`gradient` and :meth:`depends`.
    """

    n_out: int
    keeps_ratios: bool = True
    linear: bool = True

    def value(self, r: np.ndarray) -> np.ndarray:
        """Outputs (..., G, L) from ratios (..., G, K) (NaN where undefined)."""
        raise NotImplementedError

    def gradient(self, r: np.ndarray) -> np.ndarray:
        """Derivatives (G, L', K) of the outputs after the kept ratios (L' = L - K if kept)."""
        raise NotImplementedError

    def depends(self) -> np.ndarray:
        """(K, L) bool: output l uses ratio k (its rows count in n and df)."""
        raise NotImplementedError


class Identity(Combination):
    """The ratios (or totals) themselves: total, mean, ratio, proportion."""

    def __init__(self, k: int) -> None:
        self.n_out = k

    def value(self, r: np.ndarray) -> np.ndarray:
        return r

    def gradient(self, r: np.ndarray) -> np.ndarray:
        return np.zeros((r.shape[-2], 0, r.shape[-1]))

    def depends(self) -> np.ndarray:
        return np.eye(self.n_out, dtype=bool)


def coefficients(combo: Combination, r: np.ndarray) -> np.ndarray:
    """Full gradient (G, L, K) of a combination, the kept ratios included."""
    grad = combo.gradient(r)
    if not combo.keeps_ratios:
        return grad
    g, k = r.shape
    eye = np.broadcast_to(np.eye(k), (g, k, k))
    return np.concatenate([eye, grad], axis=1)


_MATMUL_ROWS = 1024  # rows per BLAS call in apply_gradient


def _rows_matmul(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``u @ m`` in slices of rows: small products that BLAS runs on one thread.

    A thin (rows x K) @ (K x L) product gains nothing from BLAS threads and, on
    a busy machine, loses much to their synchronisation; each row's result is
    the same whatever the slice.
    """
    out = np.empty((u.shape[0], m.shape[1]))
    for r0 in range(0, u.shape[0], _MATMUL_ROWS):
        np.matmul(u[r0:r0 + _MATMUL_ROWS], m, out=out[r0:r0 + _MATMUL_ROWS])
    return out


def apply_gradient(u: np.ndarray, codes: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``z[i, l] = sum_k grad[codes_i, l, k] u[i, k]``, grouping rows by distinct gradients."""
    g, n_l, _ = grad.shape
    out = np.zeros((u.shape[0], n_l))
    if n_l == 0 or u.shape[0] == 0:
        return out
    flat = grad.reshape(g, -1)
    if g == 1 or bool(np.all(flat == flat[0])):
        return _rows_matmul(u, grad[0].T)
    pats, pat_of = np.unique(flat, axis=0, return_inverse=True)
    pat_of = pat_of.reshape(-1)
    row_pat = pat_of[codes]
    # rows grouped by pattern once (each group in increasing row order, as a mask would give)
    order = np.argsort(row_pat, kind="stable")
    bounds = np.searchsorted(row_pat[order], np.arange(pats.shape[0] + 1))
    for p in range(pats.shape[0]):
        if bounds[p + 1] > bounds[p]:
            rows = order[bounds[p]:bounds[p + 1]]
            out[rows] = _rows_matmul(u[rows], pats[p].reshape(n_l, -1).T)
    return out


# -------------------------------------------------------------- variance
def resolve_variance(design: Any, variance: str) -> str:
    """``"auto"`` -> ``"replicate"`` when the design has replicate weights, else ``"taylor"``."""
    check_choice(variance, name="variance", allowed=("auto", "taylor", "replicate"))
    if variance == "auto":
        return "replicate" if design.replicates is not None else "taylor"
    if variance == "replicate" and design.replicates is None:
        raise SatsampleError(
            "variance='replicate' but the design has no replicate weights; create them with "
            "jackknife(), brr(), bootstrap() or declare_replicates()"
        )
    return variance


def srs_variance(big_n: np.ndarray, n_obs: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                 deff: str) -> np.ndarray:
    """SRS variance of a weighted total from ``N = sum w``, ``n``, ``sum w z`` and ``sum w z^2``.

    ``N^2 s^2 / n`` times ``(1 - n/N)`` for ``deff="srswor"``, with
    ``s^2 = (sum w z^2 - (sum w z)^2 / N) / N * n / (n - 1)``.  Exact (no
    cancellation) when ``z`` is centred, i.e. ``sum w z`` is 0 up to rounding:
    the engine passes linearised scores, or totals' values minus the domain mean.
    Undefined (NaN) below two observations: ``s^2`` needs ``n - 1 > 0`` (otherwise a
    rounding residue of a one-unit domain would give ``inf`` or ``NaN`` by chance).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = s2 - s1 * s1 / big_n
        s2v = ss / big_n * n_obs / (n_obs - 1)
        v = big_n**2 * s2v / n_obs
        if deff == "srswor":
            v = v * (1.0 - n_obs / big_n)  # not (N - n) / N: no overflow for huge N
    return np.where(n_obs > 1, v, np.nan)


def deff_ratio(var: np.ndarray, vsrs: np.ndarray) -> np.ndarray:
    """Design effect ``var / vsrs``; NaN where the SRS variance is 0 or undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(vsrs > 0, var / np.where(vsrs > 0, vsrs, 1.0), np.nan)


# ------------------------------------------------------------ linearisation
@dataclass(frozen=True, kw_only=True, eq=False)
class Linearization:
    """What the scores of a block of rows need: ratios, denominators, gradient (small arrays)."""

    ratio: bool  # False: totals
    r_safe: np.ndarray | None  # (G, K) ratios, 0 where undefined
    d_safe: np.ndarray | None  # (G, K) denominators, 1 where 0
    defined: np.ndarray | None  # (G, K) denominator != 0
    centre: np.ndarray | None  # (G, K) domain means of totals' values (centred scores)
    grad: np.ndarray  # (G, L', K) gradient after the kept ratios
    keeps_ratios: bool


def linearization(combo: Combination, tot_num: np.ndarray, tot_den: np.ndarray | None,
                  big_n: np.ndarray) -> tuple[np.ndarray, Linearization]:
    """Ratios (G, K) (NaN where undefined) and the linearisation of ``combo`` at them."""
    if tot_den is None:
        r = tot_num
        lin = Linearization(
            ratio=False, r_safe=None, d_safe=None, defined=None,
            centre=np.where(big_n > 0, tot_num / np.where(big_n > 0, big_n, 1.0), 0.0),
            grad=combo.gradient(r), keeps_ratios=combo.keeps_ratios)
        return r, lin
    defined = tot_den != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(defined, tot_num / np.where(defined, tot_den, 1.0), np.nan)
    lin = Linearization(ratio=True, r_safe=np.where(defined, r, 0.0),
                        d_safe=np.where(defined, tot_den, 1.0), defined=defined, centre=None,
                        grad=combo.gradient(r), keeps_ratios=combo.keeps_ratios)
    return r, lin


def scores(lin: Linearization, num: np.ndarray, den: Any, used: np.ndarray | None,
           codes: np.ndarray, *, centred: bool = False) -> np.ndarray:
    """Linearised scores z (rows, L) of a block of rows (zero where a row is not used).

    ``num`` holds the numerators with zeros where unused; ``den`` is ``None``,
    ``"used"`` or the denominators (zeros where unused); ``used`` (rows, K)
    marks the rows used (``None``: every row).  For a ratio
    :math:`u_k = (y_k - r_k d_k)/D_k` (0 where :math:`D_k = 0`); for a total
    :math:`u_k = y_k` (minus the domain mean when ``centred``); then
    :math:`z = (u, u\\,\\partial h/\\partial r^T)`.
    """

    def per_row(a: np.ndarray) -> np.ndarray:
        return a[0] if a.shape[0] == 1 else a[codes]

    u = np.array(num, dtype=np.float64)
    if lin.ratio:
        if isinstance(den, str):
            u -= per_row(lin.r_safe) * (1.0 if used is None else used)
        else:
            u -= per_row(lin.r_safe) * den
        u /= per_row(lin.d_safe)
        if not bool(lin.defined.all()):
            u = np.where(per_row(lin.defined), u, 0.0)
    elif centred:
        u -= per_row(lin.centre)
        if used is not None:
            u = np.where(used, u, 0.0)
    if lin.grad.shape[1] == 0:
        return u
    extra = apply_gradient(u, codes, lin.grad)
    return np.concatenate([u, extra], axis=1) if lin.keeps_ratios else extra


def moments(score_fn: Callable[[slice], np.ndarray], codes: np.ndarray, n_domains: int,
            w: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain weighted sums of ``z`` and ``z^2``, ``z = score_fn(rows)`` built in row blocks."""
    s1 = np.zeros(shape)
    s2 = np.zeros(shape)
    n = codes.shape[0]
    for r0 in range(0, n, ROW_BLOCK):
        rows = slice(r0, min(n, r0 + ROW_BLOCK))
        zb = score_fn(rows)
        bgrp = Groups(codes[rows], n_domains, w[rows])
        s1 += bgrp.sum(zb)
        zb *= zb
        s2 += bgrp.sum(zb)
    return s1, s2


def used_outputs(used_k: np.ndarray, combo: Combination) -> np.ndarray:
    """Rows used by each output (n, L): a ratio's usable rows; an output of several, any of theirs."""
    dep = combo.depends()
    if combo.keeps_ratios and dep.shape[1] == used_k.shape[1] and bool(
            np.array_equal(dep, np.eye(dep.shape[0], dtype=bool))):
        return used_k
    out = np.empty((used_k.shape[0], dep.shape[1]), dtype=bool)
    for j in range(dep.shape[1]):
        cols = np.flatnonzero(dep[:, j])
        if cols.size == 1:
            out[:, j] = used_k[:, cols[0]]
        else:
            np.any(used_k[:, cols], axis=1, out=out[:, j])
    return out


def options(fitted: Fit, *, replicates: Any, lonely_psu: str, calibrated: bool,
            **extra: Any) -> dict[str, Any]:
    """The options dict of every result: variance backend, replicate scheme, rules, and ``extra``.

    ``extra`` holds the statistic's own options (``level``, ``ci_method``,
    ``na``, ``deff``, ``measure``...), inserted after ``variance``.
    """
    reps = replicates if fitted.variance == "replicate" else None
    out: dict[str, Any] = {"variance": fitted.variance, **extra}
    out.setdefault("df", "replicate" if reps is not None else "PSUs - strata in the domain")
    out["lonely_psu"] = lonely_psu
    out["replicate_kind"] = None if reps is None else reps.kind
    out["mse"] = None if reps is None else bool(reps.mse)
    out["calibrated"] = bool(calibrated)
    out["replicate_estimates"] = (None if reps is None else
                                  "not stored (closed-form jackknife of lazy replicates)"
                                  if fitted.closed_form else "stored")
    return out


# ------------------------------------------------------------------ fit
@dataclass(frozen=True, kw_only=True, eq=False)
class Fit:
    """Arrays (G, L) of a statistic by domain, and what its covariance needs."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    deff: np.ndarray
    n: np.ndarray
    big_n: np.ndarray
    replicates: np.ndarray | None  # (R, G, L) replicate estimates, when computed
    variance: str
    closed_form: bool  # closed-form jackknife (replicate estimates not computed)


def _values_and_used(design: Any, inputs: Inputs) -> tuple[np.ndarray, Any, np.ndarray | None,
                                                             np.ndarray]:
    """Numerators and denominators with zeros where a row is not used, and the used mask."""
    w = design.weights
    pos = w > 0
    num = inputs.num
    used = None if inputs.ok is None else inputs.ok & pos[:, None]
    if used is None:
        num0 = num if bool(pos.all()) else num * pos[:, None].astype(num.dtype)
    else:
        num0 = np.where(used, num, 0).astype(num.dtype if num.dtype == np.uint8 else np.float64,
                                              copy=False)
    den = inputs.den
    if den is not None and not isinstance(den, str):
        den = np.where(used if used is not None else pos[:, None], den, 0.0)
    return num0, den, used, pos


# ----------------------------------------------------------------- the seam
@dataclass(frozen=True, kw_only=True, eq=False)
class Rows:
    """Per-row values of a statistic on one in-memory design: the sample, or a Dask partition.

    Every pass of :func:`fit_source` and :func:`vcov_source` is a function of
    a ``Rows`` returning additive arrays (sums over the design's strata).
    ``residualize`` holds the calibration residualizers as ``f(dense, pairs)``
    (:func:`satsample.variance.taylor.taylor_pieces`).
    """

    design: Any
    num0: np.ndarray
    den0: Any  # None (totals), "used" (means, shares) or the denominators, zero where unused
    used: np.ndarray | None
    pos: np.ndarray
    codes: np.ndarray
    grp: Groups
    residualize: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = ()

    def scores(self, lin: Linearization, rows: slice = slice(None), *,
               centred: bool = True) -> np.ndarray:
        den = self.den0 if self.den0 is None or isinstance(self.den0, str) else self.den0[rows]
        return scores(lin, self.num0[rows], den,
                      None if self.used is None else self.used[rows], self.codes[rows],
                      centred=centred)

    def den_values(self) -> Any:
        """Denominator values per row for the replicate backends (None for totals)."""
        if self.den0 is None:
            return None
        if isinstance(self.den0, str):
            return self.pos[:, None] if self.used is None else self.used
        return self.den0


def make_rows(design: Any, inputs: Inputs, codes: np.ndarray, n_domains: int, *,
              residualize: Any = None) -> Rows:
    """The :class:`Rows` of ``inputs`` on ``design`` (residualizers: the design's by default)."""
    num0, den0, used, pos = _values_and_used(design, inputs)
    if residualize is None:
        residualize = tuple((lambda x, pairs, cal=cal: cal.residualize(x))
                            for cal in design.calibrations)
    return Rows(design=design, num0=num0, den0=den0, used=used, pos=pos, codes=codes,
                grp=Groups(codes, n_domains, design.weights), residualize=tuple(residualize))


class MemorySource:
    """The in-memory backend: the whole sample is one partition, ``reduce(fn) = fn(rows)``.

    A source has ``design`` (the design of the whole sample: replicates,
    lonely-PSU rule, calibrations), ``reduce(fn, combine=None)`` (``fn(rows)``
    on every partition, results added) and ``calibrated(dense_fn)`` (a source
    whose rows residualize with the global quantities the calibrations need:
    nothing to do in memory).  The Dask backend is
    :class:`satsample.distributed.estimators.DaskSource`.
    """

    def __init__(self, design: Any, inputs: Inputs, codes: np.ndarray, n_domains: int) -> None:
        self.design = design
        self.rows = make_rows(design, inputs, codes, n_domains)

    def reduce(self, fn: Callable[[Rows], Any], combine: Any = None) -> Any:
        return fn(self.rows)

    def calibrated(self, dense_fn: Callable[[Rows], Any]) -> MemorySource:
        return self


def _den_kind(den: Any) -> str | None:
    return None if den is None else ("used" if isinstance(den, str) else "ratio")


def _pass_totals(combo: Combination, g: int, replicate: bool, rows: Rows) -> dict[str, Any]:
    """Pass 1: domain totals N, D, counts, df pieces, 0/1 flag; replicate totals if asked."""
    num0, used, pos, grp = rows.num0, rows.used, rows.pos, rows.grp
    k = num0.shape[1]
    out: dict[str, Any] = {"num": grp.sum(num0)}
    if used is None:
        out["big_n"] = np.repeat(grp.sum(pos[:, None]), k, axis=1)
        out["n_obs"] = np.repeat(grp.sum(pos[:, None], weighted=False), k, axis=1)
    else:
        out["big_n"] = grp.sum(used)
        out["n_obs"] = grp.sum(used, weighted=False)
    if rows.den0 is not None and not isinstance(rows.den0, str):
        out["den"] = grp.sum(rows.den0)
    # 0/1 numerators (the SRS moments of shares in closed form): 1 where a partition has others
    out["not01"] = int(not (num0.dtype == np.uint8 and (num0.size == 0 or int(num0.max()) <= 1)))
    if combo.keeps_ratios and combo.n_out == k:
        used_l = pos if used is None else used
    else:
        used_l = used_outputs(np.broadcast_to(pos[:, None], num0.shape) if used is None
                              else used, combo)
        out["n_obs_l"] = grp.sum(used_l, weighted=False)
        out["big_n_l"] = grp.sum(used_l)
    if rows.design.replicates is None:
        out["df"] = domain_df(rows.design, used_l, rows.codes, g)
    if replicate:
        out["rep"] = _replicate_totals(rows, g)
    return out


def replicate_values(rows: Rows) -> np.ndarray:
    """The values whose replicate totals the replicate variance needs: numerators, then
    (ratios) denominators, (n, k) or (n, 2k)."""
    num0, den_vals = rows.num0, rows.den_values()
    if den_vals is None:
        return num0
    if den_vals.dtype == np.bool_:
        return np.concatenate([num0, den_vals.astype(num0.dtype)], axis=1)
    return np.concatenate([np.asarray(num0, dtype=np.float64), den_vals], axis=1)


def _replicate_totals(rows: Rows, g: int) -> np.ndarray:
    """Replicate totals (R, G, k) of the numerators, then (ratios) of the denominators."""
    return rep_backend.replicate_totals(rows.design, replicate_values(rows), domain=rows.codes,
                                        n_domains=g)


def _source_replicate_totals(src: Any, g: int) -> np.ndarray | None:
    """Replicate totals a source computes its own way (``None``: in pass 1, partition by partition).

    The hook of replicates whose totals are not sums of the partitions' own
    (weighting steps replayed on replicates generated on the fly need global
    cell tables first); a source without ``replicate_totals`` has none.
    """
    fn = getattr(src, "replicate_totals", None)
    return None if fn is None else fn(g)


def _replicate_values(combo: Combination, rt: np.ndarray, k: int, ratio: bool) -> np.ndarray:
    """Replicate estimates (R, G, L) from the replicate totals."""
    if not ratio:
        return combo.value(rt)
    return combo.value(ratios_of(rt[..., :k], rt[..., k:]))


def _weighted_scores(lin: Linearization, rows: Rows, outputs: np.ndarray | None = None
                     ) -> np.ndarray:
    z = rows.scores(lin, centred=False)
    if outputs is not None:
        z = z[:, outputs]
    z *= rows.design.weights[:, None]
    return z


def _dense_fit(lin: Linearization, g: int, rows: Rows) -> Any:
    """The dense domain columns of the weighted scores, block by block (calibrated Taylor)."""
    from ..variance.taylor import dense_blocks, dense_columns

    z = _weighted_scores(lin, rows)
    for gs, js, pairs in dense_blocks(g, z.shape[1]):
        yield pairs, dense_columns(z, rows.codes, gs, js)


def _pass_taylor(lin: Linearization, g: int, shares: bool, shape: tuple[int, int],
                 rows: Rows) -> dict[str, Any]:
    """Pass 2 (Taylor): the variance pieces and the SRS moments of the scores."""
    out: dict[str, Any] = {}
    z = rows.scores(lin, centred=False)
    if not shares and lin.ratio:
        out["s1"] = rows.grp.sum(z)
        out["s2"] = rows.grp.sum(z * z)
    z *= rows.design.weights[:, None]
    out["taylor"] = taylor_pieces(rows.design, z, domain=rows.codes, n_domains=g,
                                  residualize=rows.residualize)
    del z
    if not shares and (not lin.ratio or out["s1"].shape != shape):
        out["s1"], out["s2"] = moments(partial(rows.scores, lin), rows.codes, g,
                                       rows.design.weights, shape)
    return out


def _pass_moments(lin: Linearization, g: int, shape: tuple[int, int], rows: Rows
                  ) -> dict[str, Any]:
    """Pass 2 (replicates): the SRS moments of the scores (design effects)."""
    s1, s2 = moments(partial(rows.scores, lin), rows.codes, g, rows.design.weights, shape)
    return {"s1": s1, "s2": s2}


def _pass_closed(coef: np.ndarray, full: tuple[np.ndarray, np.ndarray], g: int,
                 moments_shape: tuple[int, int] | None, lin: Linearization, rows: Rows
                 ) -> dict[str, Any]:
    """Pass 2 (closed-form jackknife): the scheme's sums over replicates, and SRS moments."""
    num = np.asarray(rows.num0, dtype=np.float64)
    den = np.asarray(rows.den_values(), dtype=np.float64)
    out: dict[str, Any] = {"sums": rows.design.replicates.scheme.ratio_sums(
        rows.design, num, den, coef, rows.codes, g, full=full)}
    if moments_shape is not None:
        out.update(_pass_moments(lin, g, moments_shape, rows))
    return out


def fit(design: Any, inputs: Inputs, combo: Combination, dom: Domains, variance: str,
        deff: str) -> Fit:
    """Estimates, SEs, df, design effects and counts of ``combo`` by domain (in memory).

    :func:`fit_source` on the in-memory backend (the sample is one partition).
    """
    return fit_source(MemorySource(design, inputs, dom.codes, dom.n_domains), combo,
                      dom.n_domains, variance, deff, den=_den_kind(inputs.den))


def fit_source(src: Any, combo: Combination, g: int, variance: str, deff: str, *,
               den: str | None) -> Fit:
    """Estimates, SEs, df, design effects and counts of ``combo`` by domain, from a source.

    Pass 1 (:func:`reduce` of the rows): domain totals :math:`N, D`, counts,
    df pieces (PSUs minus strata among the rows used: additive over whole
    strata), replicate totals.  Small algebra: ratios, linearisation,
    estimates.  Pass 2: Taylor pieces and SRS moments of the scores, or the
    closed-form jackknife sums, or (replicates) the moments.  Calibrated
    Taylor designs on Dask add one pass per calibration (its cross-products).
    ``den``: ``None`` (totals), ``"used"`` (means, shares) or ``"ratio"``.
    """
    design = src.design
    ratio = den is not None
    closed = (variance == "replicate" and ratio and combo.linear
              and rep_backend.closed_form(design))
    own = _source_replicate_totals(src, g) if variance == "replicate" and not closed else None
    t = src.reduce(partial(_pass_totals, combo, g,
                           variance == "replicate" and not closed and own is None))
    if own is not None:
        t["rep"] = own
    tot_num, big_n, n_obs = t["num"], t["big_n"], t["n_obs"]
    k = tot_num.shape[1]
    tot_den = None if den is None else (big_n if den == "used" else t["den"])
    r, lin = linearization(combo, tot_num, tot_den, big_n)
    est = combo.value(r)
    # 0/1 shares: the SRS moments of the ratio scores in closed form,
    # sum w (y - p)^2 = Y (1 - p)^2 + (N - Y) p^2
    s1 = s2 = None
    shares = den == "used" and combo.n_out == k and combo.keeps_ratios and t["not01"] == 0
    if shares:
        p, d_safe = lin.r_safe, lin.d_safe
        with np.errstate(invalid="ignore", divide="ignore"):
            s1 = (tot_num - p * big_n) / d_safe
            s2 = (tot_num * (1 - p) ** 2 + (big_n - tot_num) * p * p) / (d_safe * d_safe)
    reps = None
    if variance == "taylor":
        src2 = src.calibrated(partial(_dense_fit, lin, g)) if design.calibrations else src
        p2 = src2.reduce(partial(_pass_taylor, lin, g, shares, est.shape))
        var = taylor_finish(p2["taylor"])
        if not shares:
            s1, s2 = p2["s1"], p2["s2"]
    elif closed:
        coef = coefficients(combo, r)
        full = (tot_num, tot_den if tot_den.shape[1] == k else np.repeat(tot_den, k, axis=1))
        p2 = src.reduce(partial(_pass_closed, coef, full, g, None if shares else est.shape, lin))
        scheme, reps_w = design.replicates.scheme, design.replicates
        theta = scheme.ratio_theta(*full, coef)
        with np.errstate(invalid="ignore"):
            var = scheme.ratio_finish(theta, p2["sums"], scale=reps_w.scale,
                                      n_replicates=reps_w.n_replicates, mse=bool(reps_w.mse))
        if not shares:
            s1, s2 = p2["s1"], p2["s2"]
    else:
        reps = _replicate_values(combo, t["rep"], k, ratio)
        with np.errstate(invalid="ignore"):
            var = design.replicates.variance(reps, est)
        if not shares:
            p2 = src.reduce(partial(_pass_moments, lin, g, est.shape))
            s1, s2 = p2["s1"], p2["s2"]
    if "n_obs_l" in t:
        n_obs, big_n = t["n_obs_l"], t["big_n_l"]
    if design.replicates is not None:
        df = np.full((g, est.shape[1]), float(design.replicates.degf))
    else:
        df = t["df"]
    if df.shape[1] != est.shape[1]:
        df = np.repeat(df, est.shape[1], axis=1)
    deff_v = deff_ratio(var, srs_variance(big_n, n_obs, s1, s2, deff))
    closed_form = bool(closed)
    return Fit(estimate=est, se=np.sqrt(var), df=df, deff=deff_v, n=n_obs, big_n=big_n,
               replicates=reps, variance=variance, closed_form=closed_form)


def ratios_of(num_t: np.ndarray, den_t: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where the denominator is 0."""
    ok = den_t != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num_t / np.where(ok, den_t, 1.0), np.nan)


def _pass_lin(rows: Rows) -> dict[str, Any]:
    """The totals the linearisation needs (pass 1 of a covariance)."""
    grp, used, pos = rows.grp, rows.used, rows.pos
    k = rows.num0.shape[1]
    out = {"num": grp.sum(rows.num0),
           "big_n": grp.sum(used) if used is not None else np.repeat(
               grp.sum(pos[:, None]), k, axis=1)}
    if rows.den0 is not None and not isinstance(rows.den0, str):
        out["den"] = grp.sum(rows.den0)
    return out


def _dense_vcov(lin: Linearization, outputs: np.ndarray | None, g: int, rows: Rows) -> Any:
    """All dense domain columns of the weighted scores at once (calibrated covariance)."""
    z = _weighted_scores(lin, rows, outputs)
    k = z.shape[1]
    dense = np.zeros((z.shape[0], g * k))
    keep = np.flatnonzero(rows.codes >= 0)
    dense[keep[:, None], rows.codes[keep][:, None] * k + np.arange(k)[None, :]] = z[keep]
    yield np.arange(g * k), dense


def _pass_vcov(lin: Linearization, outputs: np.ndarray | None, g: int, rows: Rows
               ) -> dict[str, Any]:
    return taylor_vcov_pieces(rows.design, _weighted_scores(lin, rows, outputs),
                              domain=rows.codes, n_domains=g, residualize=rows.residualize)


def vcov(design: Any, inputs: Inputs, combo: Combination, dom: Domains, variance: str,
         fitted: Fit, *, outputs: np.ndarray | None = None) -> np.ndarray:
    """Covariance matrix of the estimates of ``fitted``, ordered domain-major, output-minor.

    ``outputs`` selects outputs of the combination (default all): the matrix
    is then over (domain, selected output) pairs.

    Taylor: :func:`satsample.variance.taylor.taylor_vcov` of the scores of
    every (domain, output) pair.  Replicates: the replicate covariance of the
    replicate estimates (recomputed for a closed-form jackknife).
    """
    return vcov_source(MemorySource(design, inputs, dom.codes, dom.n_domains), combo,
                       dom.n_domains, variance, fitted, den=_den_kind(inputs.den),
                       outputs=outputs)


def vcov_source(src: Any, combo: Combination, g: int, variance: str, fitted: Fit, *,
                den: str | None, outputs: np.ndarray | None = None) -> np.ndarray:
    """:func:`vcov` from a source (see :func:`fit_source`)."""
    design = src.design
    reps = fitted.replicates
    if variance == "taylor":
        t = src.reduce(_pass_lin)
        tot_den = None if den is None else (t["big_n"] if den == "used" else t["den"])
        _r, lin = linearization(combo, t["num"], tot_den, t["big_n"])
        src2 = (src.calibrated(partial(_dense_vcov, lin, outputs, g)) if design.calibrations
                else src)
        return taylor_vcov_finish(src2.reduce(partial(_pass_vcov, lin, outputs, g)))
    if reps is None:
        rt = _source_replicate_totals(src, g)
        if rt is None:
            rt = src.reduce(partial(_pass_rep, g))
        k = rt.shape[-1] if den is None else rt.shape[-1] // 2
        reps = _replicate_values(combo, rt, k, den is not None)
    est = fitted.estimate
    if outputs is not None:
        reps, est = reps[..., outputs], est[:, outputs]
    return design.replicates.covariance(reps.reshape(reps.shape[0], -1), est.reshape(-1))


def _pass_rep(g: int, rows: Rows) -> np.ndarray:
    return _replicate_totals(rows, g)
