"""Weight trimming with redistribution (R's ``trimWeights``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import SatsampleError, check_choice, check_positive_int
from ..design import SurveyDesign
from ._common import (
    StepResult,
    check_block,
    check_design,
    check_on,
    finish_result,
    nonconvergence,
    replicate_labels,
)

__all__ = ["TrimStep", "trim"]


def trim_local(w: np.ndarray, fixed: np.ndarray, lo: float, hi: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The row-wise part of a trimming pass on (R, n) weights.

    Returns the clipped weights, the new ``fixed`` flags, the rows that
    receive the excess, and the sums (R, 4) of the pass: weights trimmed,
    excess, rows receiving, weight of the rows receiving.  The sums add up
    over any split of the rows (the Dask backend sums them over partitions).
    """
    pos = w > 0
    outside = pos & ~fixed & ((w < lo) | (w > hi))
    new = np.where(outside, np.clip(w, lo, hi), w)
    fixed = fixed | outside
    receive = pos & ~fixed
    sums = np.stack([outside.sum(axis=1).astype(np.float64), (w - new).sum(axis=1),
                     receive.sum(axis=1).astype(np.float64),
                     np.where(receive, w, 0.0).sum(axis=1)], axis=1)
    return new, fixed, receive, sums


def trim_shares(sums: np.ndarray, lo: float, hi: float, redistribute: str) -> np.ndarray:
    """Per replicate (R, 1): the amount added to (``"equal"``) or the factor of the receivers."""
    excess = sums[:, 1:2]
    if np.any((sums[:, 0] > 0) & (sums[:, 2] == 0)):
        raise SatsampleError(
            f"trim: every positive weight lies outside the bounds ({lo:g}, {hi:g}); nothing "
            "is left to receive the trimmed excess"
        )
    share = sums[:, 2:3] if redistribute == "equal" else sums[:, 3:4]
    return np.divide(excess, share, out=np.zeros_like(excess), where=share > 0)


def trim_apply(w: np.ndarray, new: np.ndarray, receive: np.ndarray, share: np.ndarray,
               redistribute: str) -> np.ndarray:
    """The redistribution of a pass: the row-wise part after :func:`trim_shares`."""
    if redistribute == "equal":
        return np.where(receive, new + share, new)
    return np.where(receive, new * (1.0 + share), new)


def _trim_pass(w: np.ndarray, fixed: np.ndarray, lo: float, hi: float, redistribute: str
               ) -> tuple[np.ndarray, int, np.ndarray]:
    """One trimming pass on (R, n) weights; zero weights and ``fixed`` units are left alone."""
    new, fixed2, receive, sums = trim_local(w, fixed, lo, hi)
    n_out = int(sums[:, 0].sum())
    if not n_out:
        return w, 0, fixed
    share = trim_shares(sums, lo, hi, redistribute)
    return trim_apply(w, new, receive, share, redistribute), n_out, fixed2


def _run(w: np.ndarray, lo: float, hi: float, redistribute: str, strict: bool, max_iter: int
         ) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Trim (R, n) weights; returns weights, passes, units trimmed, settled flag per row."""
    passes, trimmed = 0, 0
    fixed = np.zeros(w.shape, dtype=bool)
    while True:
        w, n_out, fixed = _trim_pass(w, fixed, lo, hi, redistribute)
        if n_out == 0:
            return w, passes, trimmed, np.ones(w.shape[0], dtype=bool)
        passes += 1
        trimmed += n_out
        if not strict:
            return w, passes, trimmed, np.ones(w.shape[0], dtype=bool)
        if passes >= max_iter:
            return w, passes, trimmed, ~unsettled(w, fixed, lo, hi)


def unsettled(w: np.ndarray, fixed: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per replicate: a free positive weight still outside the bounds."""
    free = (w > 0) & ~fixed
    return np.any(free & ((w < lo) | (w > hi)), axis=1)


@dataclass(frozen=True, kw_only=True, eq=False)
class TrimStep:
    """Trimming, replayed on blocks of replicate weights.

    Attributes
    ----------
    lower, upper : float
        Absolute bounds of the full-sample step (``-inf``/``inf``: none).
    redistribute : {"equal", "proportional"}
        How the trimmed excess is shared.
    strict : bool
        Repeat passes until no weight is outside the bounds.
    max_iter : int
        Maximum passes when ``strict``.
    on_nonconvergence : {"error", "warn"}
        What a replicate still outside the bounds triggers.
    n : int
        Number of rows (the width of a block).

    Notes
    -----
    Every replicate is trimmed on its own with the same absolute bounds, by
    the passes of :func:`trim` (its total is kept).
    """

    lower: float
    upper: float
    redistribute: str
    strict: bool
    max_iter: int
    on_nonconvergence: str
    n: int

    def apply(self, block: np.ndarray, replicate_index: np.ndarray) -> np.ndarray:
        """Trim a block (b, n) of replicate weights (the input itself when nothing is trimmed)."""
        w, idx = check_block(block, replicate_index, self.n, "trim")
        out, _, _, done = _run(w, self.lower, self.upper, self.redistribute, self.strict,
                               self.max_iter)
        if not done.all():
            nonconvergence(
                self.on_nonconvergence,
                f"trim: replicate weights still outside ({self.lower:g}, {self.upper:g}) after "
                f"{self.max_iter} passes (replicate(s) {replicate_labels(idx[~done])})")
        return out


def trim(design: SurveyDesign, *, lower: float | None = None, upper: float | None = None,
         relative: bool = False, redistribute: str = "equal", strict: bool = False,
         max_iter: int = 20, on_nonconvergence: str = "error") -> SurveyDesign:
    """Trim extreme weights and redistribute the excess (R's ``trimWeights``).

    Parameters
    ----------
    design : SurveyDesign
        The design; it is not modified.
    lower, upper : float, optional
        Bounds on the weights (``None``: no bound on that side).
    relative : bool, default=False
        Read ``lower`` and ``upper`` as multiples of the mean positive weight
        (e.g. ``upper=3.5``: 3.5 times the mean) instead of absolute weights.
    redistribute : {"equal", "proportional"}, default="equal"
        How the trimmed amount goes to the untrimmed units: the same amount
        each (R's rule) or in proportion to their weights.
    strict : bool, default=False
        Repeat until no weight lies outside the bounds (the redistribution
        can push a weight over a bound); R's ``strict=TRUE``.
    max_iter : int, default=20
        Maximum passes when ``strict``.
    on_nonconvergence : {"error", "warn"}, default="error"
        What to do when ``strict`` passes do not settle within ``max_iter``.

    Returns
    -------
    SurveyDesign
        A new design with trimmed weights (same total) and a ``"trim"``
        history step (weights trimmed, passes).  No residualizer: trimming is
        treated as fixed, as R does.  Replicate weights, if any, are trimmed
        with the same (absolute) bounds; replicates generated on the fly get a
        :class:`TrimStep` in ``replicates.steps``.

    Notes
    -----
    One pass, with :math:`O = \\{i: w_i < L \\text{ or } w_i > U\\}`:

    .. math:: w_i' = \\min(\\max(w_i, L), U) \\ (i \\in O), \\qquad
              w_i' = w_i + \\frac{\\sum_{j \\in O}(w_j - w_j')}{\\#\\{i \\notin O\\}}
              \\ (i \\notin O)

    (``redistribute="proportional"``: :math:`w_i' = w_i (1 + E / \\sum_{j
    \\notin O} w_j)`).  The total of the weights is kept.  Rows with weight 0
    (nonrespondents, deleted replicate units) are neither trimmed nor
    receive any excess.  With ``strict``, units trimmed in an earlier pass
    stay at their bound and receive nothing more (R lets them receive and
    re-trims them, which only converges geometrically), so the passes end
    after at most one per unit.

    On a Dask design every pass is one reduction of its sums over the
    partitions (:mod:`satsample.weighting._dask`).
    """
    from ._dask import dispatch

    if (out := dispatch(design, "trim", lower=lower, upper=upper, relative=relative,
                        redistribute=redistribute, strict=strict, max_iter=max_iter,
                        on_nonconvergence=on_nonconvergence)) is not None:
        return out
    design = check_design(design, "trim")
    opt = trim_options(lower=lower, upper=upper, relative=relative, redistribute=redistribute,
                       strict=strict, max_iter=max_iter, on_nonconvergence=on_nonconvergence)
    w0 = np.array(design.weights, dtype=np.float64)
    pos = w0 > 0
    lo, hi = trim_bounds(opt, float(w0[pos].mean()) if pos.any() else None)
    w, passes, trimmed, done = _run(w0[None, :], lo, hi, redistribute, strict, opt["max_iter"])
    return finish_result(design, trim_result(w[0], opt, lo, hi, passes, trimmed,
                                             bool(done[0]), design.n))


def trim_options(*, lower: float | None, upper: float | None, relative: bool,
                 redistribute: str, strict: bool, max_iter: int, on_nonconvergence: str
                 ) -> dict[str, object]:
    """Validate the options of :func:`trim` that do not need the weights."""
    check_choice(redistribute, name="redistribute", allowed=("equal", "proportional"))
    max_iter = check_positive_int(max_iter, name="max_iter")
    on = check_on(on_nonconvergence)
    if lower is None and upper is None:
        raise SatsampleError("trim: give lower=, upper= or both")
    return {"lower": lower, "upper": upper, "relative": relative,
            "redistribute": redistribute, "strict": bool(strict), "max_iter": max_iter,
            "on": on}


def trim_bounds(opt: dict[str, object], mean: float | None) -> tuple[float, float]:
    """Absolute bounds from the options and the mean positive weight (None: no positive weight)."""
    lower, upper = opt["lower"], opt["upper"]
    unit = mean if opt["relative"] and mean is not None else 1.0
    lo = -np.inf if lower is None else float(lower) * unit
    hi = np.inf if upper is None else float(upper) * unit
    if np.isnan(lo) or np.isnan(hi) or lo >= hi:
        raise SatsampleError(f"trim: lower={lower!r} must be below upper={upper!r}")
    if hi <= 0:
        raise SatsampleError(f"trim: upper={upper!r} must be positive")
    total_mean = mean if mean is not None else 0.0
    if not (lo <= total_mean <= hi):
        raise SatsampleError(
            f"trim: the bounds ({lo:g}, {hi:g}) exclude the mean weight {total_mean:g}; the "
            "total cannot be kept"
        )
    return lo, hi


def trim_result(w: np.ndarray | None, opt: dict[str, object], lo: float, hi: float, passes: int,
                trimmed: int, settled: bool, n: int) -> StepResult:
    """Record of the trimming (``w``: the weights, None on Dask where they stay in partitions)."""
    message = f"{trimmed} weight(s) trimmed"
    if not settled:
        message += f"; weights still outside ({lo:g}, {hi:g}) after {opt['max_iter']} passes"
        nonconvergence(opt["on"], "trim: " + message)
    replay = TrimStep(lower=lo, upper=hi, redistribute=opt["redistribute"], strict=opt["strict"],
                      max_iter=opt["max_iter"], on_nonconvergence=opt["on"], n=n)
    params = {"lower": lo if np.isfinite(lo) else None, "upper": hi if np.isfinite(hi) else None,
              "relative": opt["relative"], "redistribute": opt["redistribute"],
              "strict": opt["strict"], "n_trimmed": trimmed}
    return StepResult(weights=w, method="trim", params=params,
                      converged=settled if opt["strict"] else None, n_iter=passes,
                      message=message, replicate_step=replay)
