"""Replicate variance backend: replicate totals by domain, weight blocks, closed forms.

Everything here works through the design's replicate scheme
(:class:`satsample.replicate.base.ReplicateScheme`), never on the name of
the method:

* replicates that replay weighting steps (generated on the fly) -> when every
  step is defined on categorical cells, the steps replayed on replicate cell
  tables (:mod:`satsample.weighting._cell_replay`: the replicate cell table,
  the steps' own algebra per replicate giving cell factors, then the totals
  by domain of the rows' multipliers times their cell's factor -- or the totals
  by (domain x cell) times the factors -- no replicate weights); otherwise
  blocks of 50 replicate weights from the
  scheme's multipliers and the declared design weights, every step replayed,
  then the stored-weights kernel on the block (memory O(50 x n));
  :func:`replay_path` says which;
* a scheme that computes its totals without forming the weights (Rao-Wu:
  the on-the-fly kernel; jackknife: PSU totals) -> that;
* stored weights ``(R, n)`` -> one-pass Numba kernel
  (:func:`satsample._kernels.totals._dense_replicate_totals`).

:func:`replicate_ratio_variance` goes one step further for linear
combinations of ratios: the scheme's closed form when it has one (the
jackknife), in O(n) memory even with one replicate per response.

``replicate_totals_numpy`` is the plain-numpy twin used in tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from .._validation import DesignError, SatsampleError, check_positive_int
from ..design import SurveyDesign
from ..replicate._common import as_values, compact, expand

__all__ = [
    "closed_form",
    "iter_replicate_weight_blocks",
    "linear_ratios",
    "replay_path",
    "replicate_ratio_variance",
    "replicate_totals",
    "replicate_totals_numpy",
]

_CHUNK = 4096  # rows per cache chunk (stored weights)
_STEP_BLOCK = 50  # replicates per block when weighting steps are replayed (fixed)


def replicate_totals_numpy(
    rep_weights: np.ndarray, values: np.ndarray, domain: np.ndarray, n_domains: int
) -> np.ndarray:
    """Plain numpy: ``out[r, g, j] = sum_i W[r, i] * values[i, j] * 1{domain_i = g}``.

    Parameters
    ----------
    rep_weights : ndarray of shape (R, n)
    values : ndarray of shape (n, k)
    domain : ndarray of int64 of shape (n,)
        Domain codes in ``0..n_domains-1``; ``-1`` excludes the row.
    n_domains : int

    Returns
    -------
    ndarray of shape (R, n_domains, k)
    """
    keep = domain >= 0
    order = np.argsort(domain[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    g_sorted = domain[rows]
    out = np.zeros((rep_weights.shape[0], n_domains, values.shape[1]))
    if rows.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    present = g_sorted[starts]
    v = values[rows]
    for r in range(rep_weights.shape[0]):
        out[r, present] = np.add.reduceat(rep_weights[r, rows][:, None] * v, starts, axis=0)
    return out


def _as_domain(design: SurveyDesign, domain: np.ndarray | None, n_domains: int) -> tuple[np.ndarray, int]:
    if domain is None:
        return np.zeros(design.n, dtype=np.int64), 1
    d = np.ascontiguousarray(domain, dtype=np.int64)
    if d.shape != (design.n,):
        raise SatsampleError(f"domain has shape {d.shape}; expected ({design.n},)")
    if d.size and (d.max() >= n_domains or d.min() < -1):
        raise SatsampleError(f"domain codes must lie in -1..{n_domains - 1} (n_domains={n_domains})")
    return d, int(n_domains)


def _step_base_weights(design: SurveyDesign) -> np.ndarray:
    """Weights the lazy replicates start from when they replay weighting steps."""
    reps = design.replicates
    n_hist = len(design.history) - 1
    if n_hist != len(reps.steps):
        raise DesignError(
            f"the {reps.kind} replicates generated on the fly replay {len(reps.steps)} weighting "
            f"step(s) but the design went through {n_hist} "
            f"({', '.join(st.method for st in design.history[1:]) or 'none'}): replaying starts "
            "from the declared design weights, so create the replicates before any weighting "
            "step and attach every later step"
        )
    return np.asarray(design.design_weights, dtype=np.float64)


def _apply_steps(design: SurveyDesign, wb: np.ndarray, r0: int) -> np.ndarray:
    """Replay ``design.replicates.steps`` in order on a block of replicate weights."""
    index = np.arange(r0, r0 + wb.shape[0], dtype=np.int64)
    for st in design.replicates.steps:
        out = np.asarray(st.apply(wb, index.copy()), dtype=np.float64)
        if out.shape != wb.shape:
            raise SatsampleError(
                f"weighting step {type(st).__name__} returned replicate weights of shape "
                f"{out.shape}; expected {wb.shape}"
            )
        wb = out
    return wb


def iter_replicate_weight_blocks(
    design: SurveyDesign, block: int = 50, *, multipliers: bool = False
) -> Iterator[np.ndarray]:
    """Yield the replicate weights of a design in blocks of replicates.

    Parameters
    ----------
    design : SurveyDesign
        A design with replicates: materialised (sliced), lazy Rao-Wu
        (:func:`lazy_raowu_replicates`) or lazy jackknife
        (:func:`lazy_jackknife_replicates`).
    block : int, default=50
        Replicates per block (the last block may be smaller).
    multipliers : bool, default=False
        Yield the replicate multipliers of lazy replicates (before any
        weighting step), or ``weights / design.weights`` for materialised ones.

    Yields
    ------
    ndarray of shape (R_block, n)
        Replicate analysis weights, block after block: the same draws as
        :func:`replicate_totals` uses.

    Notes
    -----
    Lazy replicates without weighting steps are :math:`w_i m_{ri}` with the
    analysis weights :math:`w_i`.  With ``replicates.steps`` they start from
    the declared design weights, :math:`d_i m_{ri}`, and every step's
    ``apply(block, replicate_index)`` is replayed in order on the block
    (memory O(block x n)).  A step must treat each row of the block on its
    own, so that a replicate does not depend on the block it falls in.
    """
    reps = design.replicates
    if reps is None:
        raise SatsampleError("the design has no replicate weights")
    block = check_positive_int(block, name="block")
    R = reps.n_replicates
    if reps.weights is not None:
        for r0 in range(0, R, block):
            wb = np.array(reps.weights[r0:r0 + block])
            yield wb / design.weights if multipliers else wb
        return
    scheme = reps.scheme
    if scheme is None or not scheme.generates:
        raise SatsampleError(f"lazy replicates of kind {reps.kind!r} cannot be iterated in blocks")
    base = _step_base_weights(design) if (reps.steps and not multipliers) else design.weights
    for r0 in range(0, R, block):
        m = scheme.multipliers(design, r0, min(block, R - r0))
        if multipliers:
            yield m
            continue
        m *= base
        yield _apply_steps(design, m, r0) if reps.steps else m


def _stepped_totals(design: SurveyDesign, v: np.ndarray, domain: np.ndarray,
                    n_domains: int) -> np.ndarray:
    """Totals of lazy replicates that replay weighting steps, one block of weights at a time."""
    from .._kernels.totals import _dense_replicate_totals

    vc, where = compact(v)
    out = np.empty((design.replicates.n_replicates, n_domains, vc.shape[1]))
    r0 = 0
    for wb in iter_replicate_weight_blocks(design, _STEP_BLOCK):
        out[r0:r0 + wb.shape[0]] = _dense_replicate_totals(
            np.ascontiguousarray(wb), vc, domain, n_domains, 8, _CHUNK)
        r0 += wb.shape[0]
    return expand(out, where)


def replay_path(design: SurveyDesign) -> str | None:
    """How :func:`replicate_totals` replays the weighting steps of replicates generated on the fly.

    Returns
    -------
    {"cells", "blocks"} or None
        ``"cells"``: on replicate cell tables (every step defined on
        categorical cells, see :mod:`satsample.weighting._cell_replay`);
        ``"blocks"``: on blocks of 50 replicate weights; ``None``: no
        weighting step is replayed (Taylor, stored replicates, or replicates
        without steps).
    """
    reps = design.replicates
    if reps is None or reps.weights is not None or not reps.steps:
        return None
    from ..weighting._cell_replay import replay_path as _path

    return _path(design)


def replicate_totals(
    design: SurveyDesign,
    values: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
) -> np.ndarray:
    """Replicate totals of ``values`` by domain (the replicate weights are applied here).

    Parameters
    ----------
    design : SurveyDesign
        A design with ``replicates`` (materialised, lazy Rao-Wu or lazy jackknife).
    values : ndarray of shape (n,) or (n, k)
        Unweighted values (any real or boolean dtype; small integer dtypes are
        kept as they are, which saves memory on large samples).
    domain : ndarray of int of shape (n,), optional
        Domain code of each row in ``0..n_domains-1``; ``-1`` puts the row in
        no domain.  ``None``: one domain holding every row.
    n_domains : int, default=1

    Returns
    -------
    ndarray of shape (R, n_domains, k)

    Notes
    -----
    .. math:: T_{rgj} = \\sum_i W_{ri} \\, v_{ij} \\, 1\\{g_i = g\\}

    with :math:`W_{ri}` the replicate weights (for lazy replicates,
    the analysis weight times the replicate multiplier; with weighting steps,
    the design weight times the multiplier, then every step replayed, see
    :func:`iter_replicate_weight_blocks`; steps on categorical cells are
    replayed on replicate cell tables instead, with the same result, see
    :func:`replay_path`).  Results do not depend on the
    number of Numba threads.
    """
    reps = design.replicates
    if reps is None:
        raise SatsampleError("the design has no replicate weights")
    v = as_values(values, design.n)
    domain, n_domains = _as_domain(design, domain, n_domains)
    if reps.weights is None and reps.steps:
        # weighting steps on replicates generated on the fly: replayed on replicate cell tables
        # when every step is defined on categorical cells, else on blocks of replicate weights
        from ..weighting._cell_replay import cell_replay_totals

        out = cell_replay_totals(design, v, domain, n_domains)
        return out if out is not None else _stepped_totals(design, v, domain, n_domains)
    if reps.steps:
        return _stepped_totals(design, v, domain, n_domains)
    if reps.regenerates(design.weights):
        # the scheme's own totals: the same numbers whether or not the weights are stored
        out = reps.scheme.totals(design, v, domain, n_domains)
        if out is not None:
            return out
    if reps.weights is None:
        raise SatsampleError(f"replicates of kind {reps.kind!r} without weights are not supported")
    from .._kernels.totals import _dense_replicate_totals

    vc, where = compact(v)
    out = _dense_replicate_totals(np.ascontiguousarray(reps.weights, dtype=np.float64),
                                  vc, domain, n_domains, 8, _CHUNK)
    return expand(out, where)


def closed_form(design: SurveyDesign) -> bool:
    """True when the replicate variance of ratios is computed in closed form.

    A jackknife whose replicates are not stored and replay no weighting step:
    its replicate estimates follow from PSU totals, so linear combinations of
    ratios get their variance without forming any replicate.
    """
    reps = design.replicates
    return (reps is not None and reps.weights is None and not reps.steps
            and reps.scheme is not None and reps.scheme.closed_form)


# --------------------------------------------------- ratio variances
def linear_ratios(num_t: np.ndarray, den_t: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``theta[..., g, l] = sum_k coef[g, l, k] num/den`` skipping zero coefficients."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num_t / den_t
    used = coef != 0.0  # (G, L, K)
    bad = ~np.isfinite(ratio)  # (..., G, K)
    r0 = np.where(bad, 0.0, ratio)
    theta = np.einsum("glk,...gk->...gl", coef, r0)
    nan = np.einsum("glk,...gk->...gl", used.astype(np.float64), bad.astype(np.float64)) > 0
    return np.where(nan, np.nan, theta)


def replicate_ratio_variance(
    design: SurveyDesign,
    num: np.ndarray,
    den: np.ndarray,
    coef: np.ndarray,
    *,
    domain: np.ndarray | None = None,
    n_domains: int = 1,
    mse: bool | None = None,
) -> np.ndarray:
    """Replicate variance of linear combinations of domain ratios.

    Parameters
    ----------
    design : SurveyDesign
    num : ndarray of shape (n, K)
        Numerator values (e.g. ``n_k = 1{satisfied}``, unweighted).
    den : ndarray of shape (n, K) or (n, 1)
        Denominator values (e.g. ``d_k = 1{usable answer}``); one column is
        shared by every ratio.
    coef : ndarray of shape (L, K) or (G, L, K)
        Coefficients of the ratios in each estimate (items: the identity;
        satisfaction index: the element/overall averaging weights, possibly
        per domain when criteria are missing in a domain).
    domain : ndarray of int of shape (n,), optional
        Domain codes (``-1`` = no domain); ``None``: one domain.
    n_domains : int, default=1
    mse : bool, optional
        Centre at the full-sample estimate; default: ``design.replicates.mse``.

    Returns
    -------
    ndarray of shape (G, L)
        Variance of :math:`\\theta_{gl}`.

    Notes
    -----
    .. math:: \\theta_{gl} = \\sum_k c_{glk} N_{gk} / D_{gk},
              \\quad v = \\text{scale} \\sum_r \\text{rscales}_r (\\theta_{r,gl} - c)^2.

    Replicates that are not stored and replay no weighting step use the
    scheme's closed form when it has one (the jackknife,
    :meth:`satsample.replicate.Jackknife.ratio_variance`); otherwise the
    replicate totals of ``num`` and ``den`` give :math:`\\theta_r`.
    """
    reps = design.replicates
    if reps is None:
        raise SatsampleError("the design has no replicate weights")
    if mse is None:
        mse = bool(reps.mse)
    n = design.n
    num = np.asarray(num, dtype=np.float64).reshape(n, -1)
    den = np.asarray(den, dtype=np.float64).reshape(n, -1)
    K = num.shape[1]
    if den.shape[1] not in (1, K):
        raise SatsampleError(f"den has {den.shape[1]} columns; expected 1 or {K} (as num)")
    domain, n_domains = _as_domain(design, domain, n_domains)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim == 2:
        coef = np.broadcast_to(coef, (n_domains, *coef.shape))
    if coef.shape[0] != n_domains or coef.shape[2] != K:
        raise SatsampleError(f"coef has shape {coef.shape}; expected (L, {K}) or ({n_domains}, L, {K})")
    coef = np.ascontiguousarray(coef)
    if closed_form(design):
        return reps.scheme.ratio_variance(design, num, den, coef, domain, n_domains, mse)
    vals = np.hstack([num, den])
    tot = replicate_totals(design, vals, domain=domain, n_domains=n_domains)
    full_t = np.zeros((n_domains, vals.shape[1]))
    keep = domain >= 0
    np.add.at(full_t, domain[keep], vals[keep] * design.weights[keep, None])
    den_r = tot[..., K:] if den.shape[1] == K else np.broadcast_to(tot[..., K:], tot[..., :K].shape)
    den_f = full_t[:, K:] if den.shape[1] == K else np.broadcast_to(full_t[:, K:], (n_domains, K))
    theta_r = linear_ratios(tot[..., :K], den_r, coef)
    theta = linear_ratios(full_t[:, :K], den_f, coef)
    return replace(reps, mse=mse).variance(theta_r, theta)


