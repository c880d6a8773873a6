"""Totals, means, ratios and proportions, overall and by domain (R's svytotal/svymean/svyratio/svyby).

Every estimator is a free function of a :class:`~satsample.design.SurveyDesign`
returning a frozen :class:`~satsample.results.Estimate`.  Domains keep the full
design: rows outside a domain score zero, and strata, ``n_h`` and the fpc stay
those of the whole sample.  All variables and all domains are computed with one
call of the variance engine (no Python loop over domains or variables).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ._replicate_totals import replicate_ratio_variance, replicate_totals
from ._validation import (
    ConvergenceWarning,
    SatsampleError,
    as_column_list,
    check_choice,
    check_columns,
    check_grouping,
    check_probability,
)
from ._variance import taylor_variance
from .design import SurveyDesign
from .intervals import CI_METHODS, _glm_likelihood_bounds, confidence_interval, t_quantile
from .results import Estimate

__all__ = ["mean", "proportion", "ratio", "total"]

Variance = Literal["auto", "taylor", "replicate"]
NaPolicy = Literal["error", "drop"]
_ROW_BLOCK = 65536  # rows per block: scores for the design effect, casts of small-int matrices
Deff = Literal["srswor", "srswr"]


# ----------------------------------------------------------------------------- domains
@dataclass(frozen=True)
class _Domains:
    codes: np.ndarray  # (n,) int64, 0..G-1
    n_domains: int
    levels: pd.DataFrame  # G rows, one column per by column
    n_possible: int
    by: tuple[str, ...]


def _domains(design: SurveyDesign, by: str | Sequence[str] | None) -> _Domains:
    """Domain codes of every row for the cross-classification of the ``by`` columns."""
    cols = as_column_list(by)
    n = design.n
    if not cols:
        return _Domains(np.zeros(n, dtype=np.int64), 1, pd.DataFrame(index=range(1)), 1, ())
    check_columns(design.data, cols, role="domain (by)")
    if len(set(cols)) != len(cols):
        raise SatsampleError(f"by={cols!r} lists a column more than once")
    per_codes = []
    per_levels = []
    for c in cols:
        s = design.data[c]
        miss = int(s.isna().sum())
        if miss:
            raise SatsampleError(
                f"domain column {c!r} has {miss} missing value(s); recode them as a level "
                "(e.g. 'unknown') or drop those rows before declaring the design"
            )
        check_grouping(s, name=c, role="domain (by)")
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy(dtype=np.int64)
            uniques = np.asarray(s.cat.categories, dtype=object)
        else:
            codes, uniques = pd.factorize(s, sort=True)
            codes = codes.astype(np.int64)
            uniques = np.asarray(uniques, dtype=object)
        per_codes.append(codes)
        per_levels.append(uniques)
    shape = tuple(len(u) for u in per_levels)
    n_possible = int(np.prod(shape))
    flat = np.ravel_multi_index(tuple(per_codes), shape) if len(cols) > 1 else per_codes[0]
    if n_possible <= 4 * n + 1024:
        # present combinations and their ranks without a sort (codes are small integers)
        seen = np.bincount(flat, minlength=n_possible) > 0
        present = np.flatnonzero(seen)
        rank = np.cumsum(seen) - 1
        codes = flat if present.size == n_possible else rank[flat]
    else:
        present, codes = np.unique(flat, return_inverse=True)
    idx = np.unravel_index(present, shape)
    levels = pd.DataFrame({c: per_levels[j][idx[j]] for j, c in enumerate(cols)})
    return _Domains(np.asarray(codes, dtype=np.int64).reshape(-1), int(present.size), levels,
                    n_possible, tuple(cols))


class _Groups:
    """Rows grouped by domain code, summed with sparse indicator matrices.

    ``sum(x)`` returns ``out[g, j] = sum_i v_i x[i, j] 1{codes_i = g}`` with
    ``v`` the analysis weights (``weighted=True``) or ones.  A float64 ``x``
    is multiplied in one call; a small integer or boolean ``x`` goes through
    blocks of rows, so that no float64 copy of the whole of it is made
    (scipy would cast it).  Rows with code -1 are ignored.
    """

    def __init__(self, codes: np.ndarray, n_domains: int, weights: np.ndarray) -> None:
        self.codes = codes
        self.n_domains = int(n_domains)
        self.n = codes.shape[0]
        self._weights = weights
        self._mats: dict[tuple[bool, int, int], sparse.csr_matrix] = {}

    def _block(self, weighted: bool, r0: int, r1: int) -> sparse.csr_matrix:
        key = (weighted, r0, r1)
        if key not in self._mats:
            c = self.codes[r0:r1]
            keep = c >= 0
            if keep.all():
                sorted_ = c.size < 2 or bool(np.all(c[1:] >= c[:-1]))
                order = np.arange(c.size, dtype=np.int64) if sorted_ else np.argsort(c, kind="stable")
            else:
                rows = np.flatnonzero(keep)
                order = rows[np.argsort(c[rows], kind="stable")]
            indptr = np.r_[0, np.cumsum(np.bincount(c[order], minlength=self.n_domains))]
            data = self._weights[r0:r1][order] if weighted else np.ones(order.size)
            self._mats[key] = sparse.csr_matrix((data, order, indptr.astype(np.int64)),
                                                shape=(self.n_domains, r1 - r0))
        return self._mats[key]

    def sum(self, x: np.ndarray, *, weighted: bool = True) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            return self.sum(x[:, None], weighted=weighted)[:, 0]
        if x.dtype == np.float64:
            return np.asarray(self._block(weighted, 0, self.n) @ x)
        if x.dtype == np.bool_:
            x = x.view(np.uint8)
        out = np.zeros((self.n_domains, x.shape[1]))
        step = self.n if self.n <= _ROW_BLOCK else _ROW_BLOCK
        for r0 in range(0, self.n, max(step, 1)):
            r1 = min(self.n, r0 + step)
            out += self._block(weighted, r0, r1) @ x[r0:r1].astype(np.float64)
        return out


def _distinct_counts(unit: np.ndarray, used: np.ndarray, codes: np.ndarray,
                     n_domains: int) -> np.ndarray:
    """Distinct values of ``unit`` among the rows used, per domain (and per column of ``used``).

    ``used`` is (n,) or (n, k) boolean; returns (G,) or (G, k) int64.  One sort
    of the rows by (domain, unit) -- skipped when they are already in that
    order -- then an "any row used" per (domain, unit) cell with
    ``logical_or.reduceat`` and a count of those cells per domain.
    """
    shape = (n_domains, *used.shape[1:])
    out = np.zeros(shape, dtype=np.int64)
    keep = codes >= 0
    unit = np.asarray(unit, dtype=np.int64)
    if not keep.all():
        rows = np.flatnonzero(keep)
        unit, codes, used = unit[rows], codes[rows], used[rows]
    if unit.size == 0:
        return out
    n_units = int(unit.max()) + 1
    key = codes * n_units + unit
    if key.size > 1 and not bool(np.all(key[1:] >= key[:-1])):
        o = np.argsort(key, kind="stable")
        key = key[o]
        used = used[o]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    any_used = np.logical_or.reduceat(used, starts, axis=0)
    cell_dom = key[starts] // n_units
    dstarts = np.flatnonzero(np.r_[True, cell_dom[1:] != cell_dom[:-1]])
    out[cell_dom[dstarts]] = np.add.reduceat(any_used, dstarts, axis=0, dtype=np.int64)
    return out


def _domain_df(design: SurveyDesign, used: np.ndarray, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """PSUs minus strata among the rows used, per domain and column (R's degf of the subset).

    ``used`` is (n, k) boolean, or (n,) when every column uses the same rows.
    Returns (G, k) float64 ((G, 1) for a 1-D ``used``).
    """
    used = np.asarray(used, dtype=bool)
    k = used.shape[1] if used.ndim == 2 else 1
    if design.replicates is not None:
        return np.full((n_domains, k), float(design.replicates.degf))
    if used.ndim == 2 and k > 1:
        first = used[:, 0]
        if bool(np.all(used == first[:, None])):
            return np.repeat(_domain_df(design, first, codes, n_domains), k, axis=1)
    psu = _distinct_counts(design.psu, used, codes, n_domains)
    strata = _distinct_counts(design.strata, used, codes, n_domains)
    return (psu - strata).reshape(n_domains, k).astype(np.float64)


def _resolve_variance(design: SurveyDesign, variance: str) -> str:
    check_choice(variance, name="variance", allowed=("auto", "taylor", "replicate"))
    if variance == "auto":
        return "replicate" if design.replicates is not None else "taylor"
    if variance == "replicate" and design.replicates is None:
        raise SatsampleError(
            "variance='replicate' but the design has no replicate weights; create them with "
            "jackknife(), brr(), bootstrap() or declare_replicates()"
        )
    return variance


def _lazy_jackknife(design: SurveyDesign) -> bool:
    """True for a jackknife design whose replicates are not stored (closed-form variance)."""
    reps = design.replicates
    return reps is not None and reps.weights is None and reps.kind in ("JKn", "JK1")


def _srs_from_moments(big_n: np.ndarray, n_obs: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                      deff: str) -> np.ndarray:
    """SRS variance of a weighted total from ``N = sum w``, ``n``, ``sum w z`` and ``sum w z^2``.

    ``N^2 s^2 / n`` times ``(1 - n/N)`` for ``deff="srswor"``, with
    ``s^2 = (sum w z^2 - (sum w z)^2 / N) / N * n / (n - 1)``.  Exact (no
    cancellation) when ``z`` is centred, i.e. ``sum w z`` is 0 up to rounding:
    callers pass linearised ratio scores, or totals' values minus the domain mean.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = s2 - s1 * s1 / big_n
        s2v = ss / big_n * n_obs / (n_obs - 1)
        v = big_n**2 * s2v / n_obs
        if deff == "srswor":
            v = v * (1.0 - n_obs / big_n)  # not (N - n) / N: no overflow for huge N
    return v


def _blockwise_moments(scores: Callable[..., np.ndarray], codes: np.ndarray, n_domains: int,
                       w: np.ndarray, shape: tuple[int, int], **kwargs: Any
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain weighted sums of ``z`` and ``z^2``, with ``z = scores(rows, **kwargs)`` built
    in row blocks (memory O(block x k), never n x k)."""
    s1 = np.zeros(shape)
    s2 = np.zeros(shape)
    n = codes.shape[0]
    for r0 in range(0, n, _ROW_BLOCK):
        rows = slice(r0, min(n, r0 + _ROW_BLOCK))
        zb = scores(rows, **kwargs)
        bgrp = _Groups(codes[rows], n_domains, w[rows])
        s1 += bgrp.sum(zb)
        zb *= zb
        s2 += bgrp.sum(zb)
    return s1, s2


def _deff_ratio(var: np.ndarray, vsrs: np.ndarray) -> np.ndarray:
    """Design effect ``var / vsrs``; NaN where the SRS variance is 0 or undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(vsrs > 0, var / np.where(vsrs > 0, vsrs, 1.0), np.nan)


# ----------------------------------------------------------------------------- core
@dataclass(frozen=True)
class _Core:
    estimate: np.ndarray  # (G, k)
    se: np.ndarray
    df: np.ndarray
    deff: np.ndarray
    n: np.ndarray
    replicates: np.ndarray | None  # (R, G, k)


def _linear_core(
    design: SurveyDesign,
    num: np.ndarray,
    den: np.ndarray | str | None,
    ok: np.ndarray | None,
    dom: _Domains,
    variance: str,
    deff: str,
) -> _Core:
    """Totals (``den is None``) or ratios ``sum w num / sum w den`` for every column and domain.

    ``num`` is (n, k), uint8 (small non-negative integers) or float64 (NaN
    allowed where not ``ok``).  ``den`` is ``None`` (totals), ``"ones"``
    (means: the denominator is the indicator of the rows used) or an (n, k)
    float64 array (ratios).  ``ok`` (n, k) marks usable values (``None``: all
    usable); a row is used for a column when it is usable and has a positive
    weight.  The domain is ``dom.codes``.

    Nothing of size (n, k) in float64 is built unless the Taylor variance
    needs the linearised scores; the design effect's SRS variance comes from
    grouped sums (closed form for 0/1 means) or row blocks of scores.
    """
    w = design.weights
    codes, g = dom.codes, dom.n_domains
    k = num.shape[1]
    pos = w > 0
    all_pos = bool(pos.all())
    grp = _Groups(codes, g, w)
    # rows used: `used` (n, k) or, when every column uses the same rows, `pos`
    used = None if ok is None else ok & pos[:, None]
    if used is None:
        num0 = num if all_pos else num * pos[:, None]
    else:
        num0 = np.where(used, num, 0)
    ratio = den is not None
    ones = isinstance(den, str)
    if ratio and not ones:
        den0 = np.where(used if used is not None else pos[:, None], den, 0.0)
    tot_num = grp.sum(num0)
    if used is None:
        big_n = np.repeat(grp.sum(pos[:, None]), k, axis=1)
        n_obs = np.repeat(grp.sum(pos[:, None], weighted=False), k, axis=1)
    else:
        big_n = grp.sum(used)
        n_obs = grp.sum(used, weighted=False)
    if not ratio:
        est = tot_num
        tot_den = None
    else:
        tot_den = big_n if ones else grp.sum(den0)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.where(tot_den != 0, tot_num / np.where(tot_den != 0, tot_den, 1.0), np.nan)
    r_safe = np.nan_to_num(est) if ratio else None
    d_safe = np.where(tot_den != 0, tot_den, 1.0) if ratio else None
    centre = np.where(big_n > 0, tot_num / np.where(big_n > 0, big_n, 1.0), 0.0) if not ratio else None

    den_ok = tot_den != 0 if ratio else None
    # a mask is needed unless every row is used for every column (and no ratio is undefined)
    masked = used is not None or not all_pos or (ratio and not bool(den_ok.all()))

    def per_row(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return a[0] if g == 1 else a[c]  # one domain: broadcast, no gather

    def scores(rows: slice, *, centred: bool) -> np.ndarray:
        """Linearised scores z (rows, k), zero where a row is not used (totals: y, or y - mean)."""
        c = codes[rows]
        z = np.array(num0[rows], dtype=np.float64)
        if ratio:
            if ones:
                z -= per_row(r_safe, c)
            else:
                z -= per_row(r_safe, c) * den0[rows]
            z /= per_row(d_safe, c)
            if masked:
                mask = np.broadcast_to(per_row(den_ok, c), z.shape)
                mask = mask & (used[rows] if used is not None else pos[rows, None])
                z = np.where(mask, z, 0.0)
        else:
            if centred:
                z -= per_row(centre, c)
            if masked:
                z = np.where(used[rows] if used is not None else pos[rows, None], z, 0.0)
        return z

    # 0/1 values with the usable-row denominator (proportions): the SRS moments in
    # closed form, sum w (y - p)^2 = Y (1 - p)^2 + (N - Y) p^2
    if ones and num0.dtype == np.uint8 and (num0.size == 0 or int(num0.max()) <= 1):
        p = r_safe
        with np.errstate(invalid="ignore", divide="ignore"):
            s1 = (tot_num - p * big_n) / d_safe
            s2 = (tot_num * (1 - p) ** 2 + (big_n - tot_num) * p * p) / (d_safe * d_safe)
    else:
        s1 = s2 = None
    reps = None
    if variance == "taylor":
        z = scores(slice(None), centred=False)
        if ratio and s1 is None:
            s2 = grp.sum(z * z)
            s1 = grp.sum(z)
        z *= w[:, None]
        var = taylor_variance(design, z, domain=codes, n_domains=g)
        del z
    else:
        assert design.replicates is not None
        if ratio and _lazy_jackknife(design):
            if ones:
                d_vals = (pos[:, None] if used is None else used).astype(np.float64)
            else:
                d_vals = den0
            var = replicate_ratio_variance(design, num0, d_vals, np.eye(k), domain=codes,
                                           n_domains=g)
        else:
            if not ratio:
                vals = num0
            elif ones:
                d_vals = pos[:, None] if used is None else used
                vals = np.concatenate([num0, d_vals.astype(num0.dtype)], axis=1)
            else:
                vals = np.concatenate([np.asarray(num0, dtype=np.float64), den0], axis=1)
            rt = replicate_totals(design, vals, domain=codes, n_domains=g)
            del vals
            if not ratio:
                reps = rt
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    reps = rt[..., :k] / rt[..., k:]
            var = design.replicates.variance(reps, est)
    df = _domain_df(design, pos if used is None else used, codes, g)
    if df.shape[1] != k:
        df = np.repeat(df, k, axis=1)
    if s1 is None:
        s1, s2 = _blockwise_moments(scores, codes, g, w, (g, k), centred=True)
    deff_v = _deff_ratio(var, _srs_from_moments(big_n, n_obs, s1, s2, deff))
    return _Core(est, np.sqrt(var), df, deff_v, n_obs, reps)


def _small_int_columns(design: SurveyDesign, cols: list[str]) -> np.ndarray | None:
    """The columns as a uint8 (n, k) matrix when all are bool/integer with values in 0..255."""
    data = design.data
    arrays = []
    for c in cols:
        s = data[c]
        if not (isinstance(s.dtype, np.dtype) and s.dtype.kind in "biu"):
            return None
        a = s.to_numpy()
        if a.size and s.dtype.kind != "b" and (int(a.min()) < 0 or int(a.max()) > 255):
            return None
        arrays.append(a)
    out = np.empty((design.n, len(cols)), dtype=np.uint8)
    for j, a in enumerate(arrays):
        out[:, j] = a
    return out


def _numeric_columns(design: SurveyDesign, cols: list[str], role: str) -> np.ndarray:
    check_columns(design.data, cols, role=role)
    small = _small_int_columns(design, cols)
    if small is not None:
        return small
    out = np.empty((design.n, len(cols)))
    for j, c in enumerate(cols):
        s = design.data[c]
        if pd.api.types.is_bool_dtype(s.dtype):
            out[:, j] = s.to_numpy(dtype=np.float64)
            continue
        if not pd.api.types.is_numeric_dtype(s.dtype):
            conv = pd.to_numeric(s, errors="coerce")
            bad = int((conv.isna() & s.notna()).sum())
            if bad:
                raise SatsampleError(f"{role} column {c!r} has {bad} non-numeric value(s)")
            s = conv
        out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(out)
    if inf.any():
        j = int(np.flatnonzero(inf.any(axis=0))[0])
        raise SatsampleError(f"{role} column {cols[j]!r} has {int(inf[:, j].sum())} infinite value(s)")
    return out


def _missing(values: np.ndarray, cols: list[str], na: str, excluded: dict[str, int],
             what: str) -> np.ndarray | None:
    """Usable mask (``None``: every value usable); raise (``na="error"``) or count (``na="drop"``)."""
    if values.dtype.kind != "f":
        return None
    miss = np.isnan(values)
    counts = miss.sum(axis=0)
    if not counts.any():
        return None
    if na == "error":
        detail = ", ".join(f"{c!r}: {int(m)}" for c, m in zip(cols, counts) if m)
        raise SatsampleError(
            f"{what} column(s) with missing values ({detail} row(s)); pass na='drop' to "
            "exclude them from the estimate of that variable (a domain restriction, as R's "
            "na.rm=TRUE), or impute them"
        )
    for c, m in zip(cols, counts):
        if m:
            excluded[f"{c!r} missing (na='drop')"] = excluded.get(f"{c!r} missing (na='drop')", 0) + int(m)
    return ~miss


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a & b


def _design_summary(design: SurveyDesign) -> dict[str, Any]:
    # PSU codes are 0..P-1: count them without a sort
    psu = design.psu
    n_psu = int(np.count_nonzero(np.bincount(psu))) if psu.size else 0
    degf = int(design.replicates.degf) if design.replicates is not None else n_psu - design.n_strata
    out: dict[str, Any] = {"n": design.n, "strata": design.n_strata, "psu": n_psu, "degf": degf}
    if design.replicates is not None:
        out["replicates"] = design.replicates.n_replicates
    return out


def _options(design: SurveyDesign, variance: str, level: float, ci_method: str, na: str,
             deff: str, *, ratio: bool = True) -> dict[str, Any]:
    reps = design.replicates
    return {
        "variance": variance,
        "level": level,
        "ci_method": ci_method,
        "df": "replicate" if variance == "replicate" else "PSUs - strata in the domain",
        "lonely_psu": design.lonely_psu,
        "replicate_kind": None if reps is None or variance == "taylor" else reps.kind,
        "mse": None if reps is None or variance == "taylor" else reps.mse,
        "na": na,
        "deff": deff,
        "calibrated": bool(design.calibrations),
        "replicate_estimates": _replicate_storage(design, variance, ratio=ratio),
    }


def _replicate_storage(design: SurveyDesign, variance: str, *, ratio: bool = True) -> str | None:
    """What ``replicate_estimates`` holds: ``None`` for Taylor variance, else a description."""
    if variance != "replicate":
        return None
    if ratio and _lazy_jackknife(design):
        return "not stored (closed-form jackknife of lazy replicates)"
    return "stored"


def _build(
    statistic: str,
    design: SurveyDesign,
    core: _Core,
    dom: _Domains,
    labels: list[str],
    *,
    level: float,
    ci_method: str,
    variance: str,
    na: str,
    deff: str,
    excluded: dict[str, int],
    ci_override: tuple[np.ndarray, np.ndarray] | None = None,
) -> Estimate:
    k = core.estimate.shape[1]
    keep = core.n > 0  # (G, k)
    # rows: domain-major, variable-minor
    gi, ki = np.nonzero(keep)
    est = core.estimate[gi, ki]
    se = core.se[gi, ki]
    df = core.df[gi, ki]
    n_obs = core.n[gi, ki]
    if statistic == "proportion":
        n_design = n_obs if not design.calibrations else np.full(n_obs.shape, float(np.count_nonzero(design.weights)))
        low, high = confidence_interval(est, se, df, level=level, method=ci_method,  # type: ignore[arg-type]
                                        n_design=n_design, n_obs=n_obs)
        if ci_override is not None:
            # cells the override covers (finite limits) replace the approximation
            o_low, o_high = ci_override[0][gi, ki], ci_override[1][gi, ki]
            has = np.isfinite(o_low) & np.isfinite(o_high)
            low = np.where(has, o_low, low)
            high = np.where(has, o_high, high)
    else:
        low, high = confidence_interval(est, se, df, level=level, method="mean")
    table = dom.levels.iloc[gi].reset_index(drop=True) if dom.by else pd.DataFrame(index=range(gi.size))
    table = table.assign(
        variable=np.asarray(labels, dtype=object)[ki],
        estimate=est,
        se=se,
        ci_low=low,
        ci_high=high,
        df=df,
        deff=core.deff[gi, ki],
        n=n_obs.astype(np.int64),
    )
    reps = None if core.replicates is None else np.ascontiguousarray(core.replicates[:, gi, ki])
    return Estimate(
        statistic=statistic,
        table=table,
        by=dom.by,
        variables=tuple(labels),
        options=_options(design, variance, level, ci_method, na, deff, ratio=statistic != "total"),
        excluded=excluded,
        empty_cells=int(dom.n_possible * k - gi.size),
        n_cells_possible=int(dom.n_possible * k),
        replicate_estimates=reps,
        design_summary=_design_summary(design),
    )


def _prepare(design: SurveyDesign, level: float, variance: str, na: str, deff: str) -> str:
    if not isinstance(design, SurveyDesign):
        raise SatsampleError(f"design must be a SurveyDesign, got {type(design).__name__}")
    check_probability(level, name="level")
    check_choice(na, name="na", allowed=("error", "drop"))
    check_choice(deff, name="deff", allowed=("srswor", "srswr"))
    return _resolve_variance(design, variance)


# ----------------------------------------------------------------------------- public
def total(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate population totals (R's ``svytotal``, ``svyby(..., svytotal)``).

    Parameters
    ----------
    design : SurveyDesign
    y : str or list of str
        Numeric column(s) of ``design.data``.
    by : str or list of str, optional
        Domain column(s); the estimate is computed for every observed
        combination of their values, with the full design kept.
    level : float, default=0.95
        Confidence level of the t interval.
    variance : {"auto", "taylor", "replicate"}, default="auto"
        ``"auto"`` uses the replicate weights when the design has them.
    na : {"error", "drop"}, default="error"
        Missing values in ``y`` raise, or (``"drop"``) exclude the row from
        that variable's estimate as a domain restriction (R's ``na.rm=TRUE``);
        dropped rows are counted in ``Estimate.excluded``.
    deff : {"srswor", "srswr"}, default="srswor"
        Reference variance of the design effect: simple random sampling
        without replacement (R's ``deff=TRUE``) or with replacement (R's
        ``deff="replace"``).

    Returns
    -------
    Estimate

    Notes
    -----
    :math:`\\hat Y_d = \\sum_i w_i y_i 1\\{i \\in d\\}`; Taylor variance of the
    weighted total of :math:`z_i = y_i 1\\{i \\in d\\}` (zero outside the domain),
    stratum by stratum, stage by stage.  The design effect is
    :math:`V / (\\hat N_d^2 s^2_d / n_d \\cdot (1 - n_d/\\hat N_d))`, with
    :math:`s^2_d` the weighted variance of :math:`y` in the domain (divisor
    :math:`n_d - 1`).  Degrees of freedom: PSUs minus strata among the rows of the
    domain with a usable value.
    """
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    ok = _missing(vals, cols, na, excluded, "y")
    core = _linear_core(design, vals, None, ok, dom, variance, deff)
    return _build("total", design, core, dom, cols, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def mean(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate population means (R's ``svymean``, ``svyby(..., svymean)``).

    Parameters are those of :func:`total`.

    Returns
    -------
    Estimate

    Notes
    -----
    The mean of a domain is the ratio :math:`\\hat{\\bar Y}_d = \\sum_{i \\in d} w_i y_i
    / \\sum_{i \\in d} w_i`, linearised as
    :math:`z_i = 1\\{i \\in d\\} (y_i - \\hat{\\bar Y}_d)/\\hat N_d`; its Taylor variance is
    that of the weighted total of :math:`z` over the full design.  With
    ``na="drop"`` the domain is restricted to rows with a value, variable by
    variable.
    """
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    ok = _missing(vals, cols, na, excluded, "y")
    core = _linear_core(design, vals, "ones", ok, dom, variance, deff)
    return _build("mean", design, core, dom, cols, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def ratio(
    design: SurveyDesign,
    numerator: str | Sequence[str],
    denominator: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate ratios of totals :math:`R = Y/X` (R's ``svyratio``).

    Parameters
    ----------
    design : SurveyDesign
    numerator, denominator : str or list of str
        Numeric columns.  One denominator for several numerators, or as many
        denominators as numerators (paired).
    by, level, variance, na, deff
        As in :func:`total`; with ``na="drop"`` a row is dropped for a pair
        when either value is missing.

    Returns
    -------
    Estimate
        ``variable`` is ``"<numerator>/<denominator>"``.

    Notes
    -----
    :math:`\\hat R_d = \\hat Y_d / \\hat X_d`, linearised as
    :math:`z_i = 1\\{i \\in d\\}(y_i - \\hat R_d x_i)/\\hat X_d`.  A domain with
    :math:`\\hat X_d = 0` gets NaN.
    """
    variance = _prepare(design, level, variance, na, deff)
    nums = as_column_list(numerator)
    dens = as_column_list(denominator)
    if not nums or not dens:
        raise SatsampleError("ratio needs at least one numerator and one denominator column")
    if len(dens) == 1:
        dens = dens * len(nums)
    if len(dens) != len(nums):
        raise SatsampleError(
            f"ratio: {len(nums)} numerators and {len(dens)} denominators; give one denominator "
            "or one per numerator"
        )
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    y = _numeric_columns(design, nums, "numerator")
    x = _numeric_columns(design, dens, "denominator")
    ok_y = _missing(y, nums, na, excluded, "numerator")
    ok_x = _missing(x, dens, na, excluded, "denominator")
    x = np.asarray(x, dtype=np.float64)
    core = _linear_core(design, y, x, _both(ok_y, ok_x), dom, variance, deff)
    labels = [f"{a}/{b}" for a, b in zip(nums, dens)]
    return _build("ratio", design, core, dom, labels, level=level, ci_method="mean",
                  variance=variance, na=na, deff=deff, excluded=excluded)


def proportion(
    design: SurveyDesign,
    y: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    ci_method: Literal["logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson"] = "logit",
    variance: Variance = "auto",
    na: NaPolicy = "error",
    deff: Deff = "srswor",
) -> Estimate:
    """Estimate the share of 1s of 0/1 variables, with proportion intervals (R's ``svyciprop``).

    Parameters
    ----------
    design : SurveyDesign
    y : str or list of str
        Columns holding 0/1 (or boolean) values; missing values as in :func:`total`.
    by, level, variance, na, deff
        As in :func:`total`.
    ci_method : {"logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson"}, default="logit"
        Interval method; see :func:`satsample.intervals.confidence_interval`.
        All use the t quantile with the domain's degrees of freedom.

    Returns
    -------
    Estimate

    Notes
    -----
    The estimate and SE are those of :func:`mean`.  For ``"beta"`` the design's
    row count ``nrow`` is the domain's respondents for an uncalibrated design
    and the whole sample (rows with nonzero weight) for a calibrated one, as R
    counts ``nrow(design)`` after ``subset``.

    For ``"likelihood"`` with a Taylor variance, the Rao-Scott scale
    :math:`\\lambda` and the dispersion :math:`\\phi` are those of R's
    ``svyglm(y ~ 1, family = quasibinomial)`` fitted as ``glm.fit`` fits it
    (IRLS from R's starting values, stopped at a relative deviance change of
    1e-8), so the limits are R's exact profile roots, not only their
    converged-fit approximation :math:`\\lambda\\phi = se^2 n^2/(p(1-p)(n-1))`
    used by :func:`satsample.intervals.confidence_interval` (the two differ by
    ~1e-6 relative).  Replicate-weight designs keep that approximation.
    """
    check_choice(ci_method, name="ci_method", allowed=CI_METHODS)
    variance = _prepare(design, level, variance, na, deff)
    cols = as_column_list(y)
    if not cols:
        raise SatsampleError("y: give at least one column")
    dom = _domains(design, by)
    excluded: dict[str, int] = {}
    vals = _numeric_columns(design, cols, "y")
    ok = _missing(vals, cols, na, excluded, "y")
    if vals.dtype == np.uint8:
        bad = vals > 1
    else:
        bad = (vals != 0) & (vals != 1)
        if ok is not None:
            bad &= ok
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        shown = ", ".join(f"{v:g}" for v in np.unique(vals[bad[:, j], j])[:5])
        raise SatsampleError(
            f"proportion: column {cols[j]!r} has {int(bad[:, j].sum())} value(s) other than 0/1 "
            f"({shown}); recode it to 0/1 (or use mean())"
        )
    core = _linear_core(design, vals, "ones", ok, dom, variance, deff)
    override = None
    if ci_method == "likelihood" and variance == "taylor":
        override = _glm_likelihood_ci(design, vals, ok, dom, core, level)
    return _build("proportion", design, core, dom, cols, level=level, ci_method=ci_method,
                  variance=variance, na=na, deff=deff, excluded=excluded, ci_override=override)


_GLM_EPSILON = 1e-8  # R's glm.control(): relative deviance change
_GLM_MAXIT = 25


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    """d mu / d eta of the logit link as R computes it, ``exp(eta) / (1 + exp(eta))^2``."""
    e = np.exp(np.clip(eta, -30.0, 30.0))
    return e / (1.0 + e) ** 2


def _glm_likelihood_ci(
    design: SurveyDesign,
    vals: np.ndarray,
    ok: np.ndarray | None,
    dom: _Domains,
    core: _Core,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """R's ``svyciprop(method = "likelihood")`` limits, replaying its quasibinomial ``svyglm``.

    Returns (G, k) arrays of limits, NaN in the cells it does not cover (share
    0 or 1, SE 0, fewer than 2 respondents, ``df < 1``); those keep
    :func:`confidence_interval`'s limits.

    Notes
    -----
    R fits ``svyglm(y ~ 1, design, family = quasibinomial)`` on the design
    restricted to the domain's respondents: prior weights
    :math:`a_i = w_i W / \\sum w` with :math:`W` = ``nrow(design)`` (the
    domain's respondents; the whole sample for a calibrated design, whose
    subset keeps every row).  ``glm.fit`` starts from
    :math:`\\mu_i^{(0)} = (a_i y_i + 1/2)/(a_i + 1)` and iterates weighted
    least squares on the working response until
    :math:`|D - D_{old}|/(|D| + 0.1) < 10^{-8}` (at most 25 iterations),
    returning the last :math:`\\mu` and the working weights
    :math:`v_i = a_i\\,\\mu'(\\eta)^2/V(\\mu)` *of the last iteration* (computed
    from the previous :math:`\\mu`).  Then, as ``svy.varcoef`` and
    ``confint.svyglm`` do,

    .. math::

        A^{-1} = 1/\\sum_i v_i, \\quad
        \\lambda = A^{-1}\\,\\widehat V\\Big(\\sum_i v_i \\frac{y_i - \\mu}{\\mu'(\\eta)}\\Big),
        \\quad \\phi = \\frac{p(1-p)}{\\mu(1-\\mu)} \\frac{n}{n-1},

    :math:`\\widehat V` the Taylor variance of the total over the full design
    (rows outside the domain score 0), :math:`\\phi` = ``svyvar`` of the
    Pearson residuals, and the limits solve
    :math:`(D(\\pi) - D(\\mu))/\\phi = t^2\\lambda` (see
    :func:`satsample.intervals._glm_likelihood_bounds`).  Because the glm stops
    short of the exact fit, :math:`\\lambda` differs from
    :math:`se^2 n/(p(1-p))` by up to ~1e-4 relative.
    """
    w = design.weights
    codes, g = dom.codes, dom.n_domains
    k = vals.shape[1]
    pos = w > 0
    n_obs = core.n.astype(np.float64)
    if design.calibrations:
        w_total = np.full((g, k), float(np.count_nonzero(w)))
    else:
        w_total = n_obs
    est = np.zeros((g, k))
    mu_fit = np.full((g, k), np.nan)
    inv_a = np.full((g, k), np.nan)
    scores = np.zeros((vals.shape[0], k))
    not_converged = 0
    for j in range(k):
        u = pos if ok is None else pos & ok[:, j]
        rows = np.flatnonzero(u & (codes >= 0))
        c = codes[rows]
        y = np.asarray(vals[rows, j], dtype=np.float64)
        wj = w[rows]
        sw = np.bincount(c, weights=wj, minlength=g)
        scale = np.divide(w_total[:, j], sw, out=np.zeros(g), where=sw > 0)
        a = wj * scale[c]  # prior weights, summing to W in each domain
        s1 = np.bincount(c, weights=a * y, minlength=g)
        sa = np.bincount(c, weights=a, minlength=g)
        p = np.divide(s1, sa, out=np.zeros(g), where=sa > 0)
        est[:, j] = p
        fit = (sa > 0) & (p > 0) & (p < 1)
        # iteration 1 from the per-row starting values
        m0 = (a * y + 0.5) / (a + 1.0)
        eta0 = np.log(m0 / (1.0 - m0))
        me0 = _logit_mu_eta(eta0)
        v0 = a * me0**2 / (m0 * (1.0 - m0))  # working weights of iteration 1
        dev_old = -2.0 * np.bincount(c, weights=a * (y * np.log(m0) + (1 - y) * np.log(1 - m0)),
                                     minlength=g)
        num = np.bincount(c, weights=v0 * (eta0 + (y - m0) / me0), minlength=g)
        den = np.bincount(c, weights=v0, minlength=g)
        b = np.divide(num, den, out=np.zeros(g), where=den > 0)
        first = np.ones(g, dtype=bool)  # stopped at iteration 1: per-row working weights
        wfac = np.zeros(g)  # working weight per unit prior weight, iterations >= 2
        active = fit.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            for it in range(1, _GLM_MAXIT + 1):
                mu = 1.0 / (1.0 + np.exp(-b))
                dev = -2.0 * (s1 * np.log(mu) + (sa - s1) * np.log(1.0 - mu))
                done = np.abs(dev - dev_old) / (np.abs(dev) + 0.1) < _GLM_EPSILON
                active &= ~done
                if not active.any():
                    break
                if it == _GLM_MAXIT:
                    not_converged += int(active.sum())
                    break
                # next iteration from the constant fit
                me = _logit_mu_eta(b)
                first = np.where(active, False, first)
                wfac = np.where(active, me**2 / (mu * (1.0 - mu)), wfac)
                b = np.where(active, b + (p - mu) / me, b)
                dev_old = np.where(active, dev, dev_old)
        mu = 1.0 / (1.0 + np.exp(-b))
        me = _logit_mu_eta(b)
        v = np.where(first[c], v0, a * wfac[c])
        inv_a[:, j] = np.divide(1.0, np.bincount(c, weights=v, minlength=g), out=np.full(g, np.nan),
                                where=fit)
        mu_fit[:, j] = np.where(fit, mu, np.nan)
        scores[rows, j] = np.where(fit[c], v * (y - mu[c]) / me[c], 0.0)
    if not_converged:
        warnings.warn(
            f"likelihood interval: the quasibinomial glm did not converge in {_GLM_MAXIT} "
            f"iterations for {not_converged} cell(s); their limits use the last iteration",
            ConvergenceWarning,
            stacklevel=3,
        )
    var = taylor_variance(design, scores, domain=codes, n_domains=g)
    lam = var * inv_a
    crit = t_quantile(level, core.df)
    low = np.full((g, k), np.nan)
    high = np.full((g, k), np.nan)
    good = (np.isfinite(mu_fit) & np.isfinite(crit) & (n_obs > 1) & (core.se > 0)
            & np.isfinite(lam) & (lam > 0))
    if good.any():
        pg, mg, ng = est[good], mu_fit[good], n_obs[good]
        phi = pg * (1 - pg) / (mg * (1 - mg)) * ng / (ng - 1)
        lo, hi = _glm_likelihood_bounds(pg, crit[good], rao_scott=lam[good], dispersion=phi,
                                        weight_total=w_total[good], fitted=mg)
        low[good] = lo
        high[good] = hi
    return low, high
