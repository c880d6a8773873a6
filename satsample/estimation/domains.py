"""Domains: the one place where ``by=`` columns become domain codes, and grouped sums by domain.

A domain is a cell of the cross-classification of the ``by`` columns.  Every
row gets a code ``0..G-1`` (``-1``: in no domain); the design is never cut:
rows outside a domain score zero, and strata, ``n_h`` and the fpc stay those
of the whole sample.  The in-memory estimators and the Dask path both code
domains here: :func:`column_codes` (levels of one column), :func:`lookup`
(codes of a column against known levels) and :func:`combine_codes` (the
cross-classification).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from .._validation import SatsampleError, as_column_list, check_columns, check_grouping

__all__ = ["DomainCoding", "Domains", "Groups", "check_domain_columns", "column_codes",
           "combine_codes", "domain_coding", "domain_df", "domains", "lookup"]

ROW_BLOCK = 65536  # rows per block: scores, moments, casts of small-int matrices


@dataclass(frozen=True)
class Domains:
    """Domain code of every row and the label of every domain.

    Attributes
    ----------
    codes : ndarray of int64, shape (n,)
        ``0..n_domains-1``.
    n_domains : int
    levels : pandas.DataFrame
        One row per domain, one column per ``by`` column (no column without ``by``).
    n_possible : int
        Size of the full cross-classification of the ``by`` levels.
    by : tuple of str
    """

    codes: np.ndarray
    n_domains: int
    levels: pd.DataFrame
    n_possible: int
    by: tuple[str, ...]


def column_codes(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int64) and sorted levels (object) of a domain column.

    A categorical column keeps its categories (their order, unused ones
    included); any other column is factorised with its levels sorted.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(dtype=np.int64), np.asarray(s.cat.categories, dtype=object)
    codes, uniques = pd.factorize(s, sort=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


def lookup(s: pd.Series, levels: pd.Index) -> np.ndarray:
    """Position of every value of ``s`` in ``levels`` (-1 when absent), int64."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        pos = np.append(levels.get_indexer(s.cat.categories), -1)
        return pos[s.cat.codes.to_numpy(dtype=np.int64)].astype(np.int64)
    return np.asarray(levels.get_indexer(s), dtype=np.int64)


def combine_codes(per_codes: Sequence[np.ndarray], shape: tuple[int, ...],
                  present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Domain codes of the cross-classification of per-column codes.

    Parameters
    ----------
    per_codes : list of (n,) int64
        Codes of each ``by`` column in ``0..shape[j]-1``.
    shape : tuple of int
        Number of levels of each column.
    present : ndarray of int64, optional
        Sorted flat codes of the domains to number (e.g. those present in any
        partition of a Dask frame).  ``None``: the combinations present in
        these rows.

    Returns
    -------
    codes : (n,) int64 in ``0..len(present)-1``
    present : sorted flat codes of the domains
    """
    n = per_codes[0].shape[0]
    n_possible = int(np.prod(shape))
    flat = np.ravel_multi_index(tuple(per_codes), shape) if len(per_codes) > 1 else per_codes[0]
    if present is not None:
        return np.searchsorted(present, flat).astype(np.int64), present
    if n_possible <= 4 * n + 1024:
        # present combinations and their ranks without a sort (codes are small integers)
        seen = np.bincount(flat, minlength=n_possible) > 0
        present = np.flatnonzero(seen)
        codes = flat if present.size == n_possible else (np.cumsum(seen) - 1)[flat]
    else:
        present, codes = np.unique(flat, return_inverse=True)
    return np.asarray(codes, dtype=np.int64).reshape(-1), present.astype(np.int64)


def levels_frame(cols: Sequence[str], per_levels: Sequence[np.ndarray], shape: tuple[int, ...],
                 present: np.ndarray) -> pd.DataFrame:
    """One row per present domain, one column per ``by`` column."""
    idx = np.unravel_index(present, shape)
    return pd.DataFrame({c: np.asarray(per_levels[j], dtype=object)[idx[j]]
                         for j, c in enumerate(cols)})


def check_domain_columns(data: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The ``by`` columns as a list, checked: present, listed once, no missing value, one kind."""
    cols = as_column_list(by)
    if not cols:
        return cols
    check_columns(data, cols, role="domain (by)")
    if len(set(cols)) != len(cols):
        raise SatsampleError(f"by={cols!r} lists a column more than once")
    for c in cols:
        s = data[c]
        miss = int(s.isna().sum())
        if miss:
            raise SatsampleError(
                f"domain column {c!r} has {miss} missing value(s); recode them as a level "
                "(e.g. 'unknown') or drop those rows before declaring the design"
            )
        check_grouping(s, name=c, role="domain (by)")  # one kind of value (no mixed types)
    return cols


@dataclass(frozen=True)
class DomainCoding:
    """How to code the domains of any rows: levels of each ``by`` column, domains present.

    Built from rows holding every combination (e.g. the distinct combinations
    of the partitions of a Dask frame); :meth:`codes` codes other rows the
    same way (``-1`` for a combination not present).
    """

    by: tuple[str, ...]
    levels: tuple[pd.Index, ...]
    shape: tuple[int, ...]
    present: np.ndarray

    def codes(self, data: pd.DataFrame) -> np.ndarray:
        if not self.by:
            return np.zeros(len(data), dtype=np.int64)
        per = [lookup(data[c], lev) for c, lev in zip(self.by, self.levels)]
        return combine_codes(per, self.shape, self.present)[0]

    def domains(self, codes: np.ndarray) -> Domains:
        if not self.by:
            return Domains(codes, 1, pd.DataFrame(index=range(1)), 1, ())
        return Domains(codes, int(self.present.size),
                       levels_frame(self.by, self.levels, self.shape, self.present),
                       int(np.prod(self.shape)), self.by)


def domain_coding(data: pd.DataFrame, by: str | Sequence[str] | None
                  ) -> tuple[DomainCoding, np.ndarray]:
    """The :class:`DomainCoding` of ``data`` and the domain code of each of its rows."""
    cols = check_domain_columns(data, by)
    if not cols:
        return (DomainCoding((), (), (), np.zeros(1, dtype=np.int64)),
                np.zeros(len(data), dtype=np.int64))
    per_codes, per_levels = [], []
    for c in cols:
        codes, uniques = column_codes(data[c])
        per_codes.append(codes)
        per_levels.append(pd.Index(uniques, dtype=object))
    shape = tuple(len(u) for u in per_levels)
    codes, present = combine_codes(per_codes, shape)
    return DomainCoding(tuple(cols), tuple(per_levels), shape, present), codes


def domains(data: pd.DataFrame, by: str | Sequence[str] | None) -> Domains:
    """Domain codes of every row of ``data`` for the cross-classification of ``by``."""
    coding, codes = domain_coding(data, by)
    return coding.domains(codes)


class Groups:
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
        step = self.n if self.n <= ROW_BLOCK else ROW_BLOCK
        for r0 in range(0, self.n, max(step, 1)):
            r1 = min(self.n, r0 + step)
            out += self._block(weighted, r0, r1) @ x[r0:r1].astype(np.float64)
        return out


def distinct_counts(unit: np.ndarray, used: np.ndarray, codes: np.ndarray,
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


def domain_df(design, used: np.ndarray, codes: np.ndarray, n_domains: int) -> np.ndarray:
    """PSUs minus strata among the rows used, per domain and column (R's degf of the subset).

    ``used`` is (n, k) boolean, or (n,) when every column uses the same rows.
    Returns (G, k) float64 ((G, 1) for a 1-D ``used``); the replicate degrees
    of freedom for a replicate design.
    """
    used = np.asarray(used, dtype=bool)
    k = used.shape[1] if used.ndim == 2 else 1
    if design.replicates is not None:
        return np.full((n_domains, k), float(design.replicates.degf))
    if used.ndim == 2 and k > 1:
        first = used[:, 0]
        if bool(np.all(used == first[:, None])):
            return np.repeat(domain_df(design, first, codes, n_domains), k, axis=1)
    psu = distinct_counts(design.psu, used, codes, n_domains)
    strata = distinct_counts(design.strata, used, codes, n_domains)
    return (psu - strata).reshape(n_domains, k).astype(np.float64)
