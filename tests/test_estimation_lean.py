"""Lean estimation paths: they give the numbers of the plain (n, k) formulas.

* degrees of freedom per (domain, column) by one sort = distinct PSUs/strata by ``np.unique``;
* the design effect's SRS variance from grouped moments (closed form for 0/1 means, row
  blocks otherwise) = the two-pass weighted variance of the linearised scores;
* uint8 storage of 0/1 columns = float64 columns;
* the index's SRS variance from row blocks (replicate path) = from the full scores (Taylor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from satsample.design import WeightStep, survey_design
from satsample.estimation import engine as engine_mod
from satsample.estimation import index as index_mod
from satsample.estimation import mean, proportion, ratio, satisfaction_index, total
from satsample.estimation import statistics as est_mod
from satsample.estimation.domains import distinct_counts as _distinct_counts
from satsample.estimation.domains import domain_df as _domain_df
from satsample.questionnaire import load_questionnaire
from satsample.replicate.bootstrap import lazy_raowu_replicates


def _data(seed: int = 0, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 6, n)
    df = pd.DataFrame({
        "h": h,
        "psu": h * 10 + rng.integers(0, 4, n),
        "g": rng.choice(["x", "y", "z", "t"], n),
        "w": rng.uniform(1, 5, n),
        "y": rng.normal(3, 1, n),
        "x": rng.uniform(1, 2, n),
        "b1": rng.integers(0, 2, n),
        "b2": (rng.random(n) < 0.9).astype(np.int64),
    })
    df["b3"] = np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 2, n).astype(float))
    df["y2"] = np.where(rng.random(n) < 0.05, np.nan, df["y"])
    return df


def _design(df: pd.DataFrame, *, zero_weights: bool = True):
    d = survey_design(df, ids="psu", strata="h", weights="w")
    if zero_weights:
        w = d.weights.copy()
        w[::37] = 0.0
        d = d.with_weights(w, step=WeightStep.from_weights("test", w))
    return d


def _brute_df(design, used, codes, n_domains):
    out = np.zeros((n_domains, used.shape[1]))
    for g in range(n_domains):
        for j in range(used.shape[1]):
            m = (codes == g) & used[:, j]
            out[g, j] = np.unique(design.psu[m]).size - np.unique(design.strata[m]).size
    return out



def _srs_variance(w, z, used, codes, n_domains, deff):
    """Plain-numpy twin of the design-effect denominator: SRS variance of the weighted total
    of ``z`` per domain, in two passes (domain mean, then squared deviations).

    ``N^2 s^2 / n``, times ``(1 - n/N)`` for ``deff="srswor"`` (R's ``deff=TRUE``), with ``N``
    the weight total and ``n`` the count of the rows used and ``s^2`` the weighted variance
    of ``z`` with divisor ``n - 1``.
    """
    k = z.shape[1]
    out = np.full((n_domains, k), np.nan)
    for j in range(k):
        keep = used[:, j] & (codes >= 0)
        c, ww, zz = codes[keep], w[keep], z[keep, j]
        big_n = np.bincount(c, ww, n_domains)
        n_obs = np.bincount(c, minlength=n_domains).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            zbar = np.bincount(c, ww * zz, n_domains) / big_n
            s2 = np.bincount(c, ww * (zz - zbar[c]) ** 2, n_domains) / big_n * n_obs / (n_obs - 1)
            v = big_n**2 * s2 / n_obs
            if deff == "srswor":
                v = v * (big_n - n_obs) / big_n
        out[:, j] = v
    return out


@pytest.mark.parametrize("sort_rows", [False, True])
def test_domain_df_equals_unique_counts(sort_rows):
    df = _data(1)
    if sort_rows:
        df = df.sort_values(["g", "psu"]).reset_index(drop=True)
    d = _design(df, zero_weights=False)
    codes = pd.factorize(df["g"], sort=True)[0].astype(np.int64)
    rng = np.random.default_rng(2)
    used = rng.random((d.n, 3)) < 0.3
    used[codes == 1, 2] = False  # a column unused in a domain
    np.testing.assert_array_equal(_domain_df(d, used, codes, 4), _brute_df(d, used, codes, 4))
    same = np.repeat(used[:, :1], 3, axis=1)  # identical columns: one pass, repeated
    np.testing.assert_array_equal(_domain_df(d, same, codes, 4), _brute_df(d, same, codes, 4))
    # rows outside every domain (-1) are ignored
    c2 = np.where(codes == 3, -1, codes)
    got = _distinct_counts(d.psu, used, c2, 3)
    want = np.array([[np.unique(d.psu[(c2 == g) & used[:, j]]).size for j in range(3)]
                     for g in range(3)])
    np.testing.assert_array_equal(got, want)


def _scores(d, vals, den, used, codes, n_domains):
    """The linearised scores of the plain formula (zero outside the rows used)."""
    w = d.weights
    num0 = np.where(used, vals, 0.0)
    G = np.zeros((n_domains, d.n))
    G[codes, np.arange(d.n)] = 1.0
    tot_num = G @ (w[:, None] * num0)
    if den is None:
        return num0
    den0 = np.where(used, den, 0.0)
    tot_den = G @ (w[:, None] * den0)
    r = tot_num / tot_den
    return np.where(used, (num0 - r[codes] * den0) / tot_den[codes], 0.0)


@pytest.mark.parametrize("by", [None, "g"])
@pytest.mark.parametrize("variance", ["taylor", "replicate"])
@pytest.mark.parametrize("deff", ["srswor", "srswr"])
def test_lean_deff_equals_two_pass_srs_variance(by, variance, deff, monkeypatch):
    monkeypatch.setattr(engine_mod, "ROW_BLOCK", 101)  # several row blocks
    df = _data(3)
    d = _design(df)
    if variance == "replicate":
        d = d.with_replicates(lazy_raowu_replicates(d, n_replicates=20, rng=4))
    codes = (pd.factorize(df["g"], sort=True)[0].astype(np.int64) if by else np.zeros(d.n, np.int64))
    n_dom = int(codes.max()) + 1
    pos = (d.weights > 0)[:, None]
    cases = [
        ("total", lambda: total(d, ["y2", "b1"], by=by, na="drop", deff=deff), ["y2", "b1"], None),
        ("mean", lambda: mean(d, ["y2", "b1"], by=by, na="drop", deff=deff), ["y2", "b1"], "ones"),
        ("prop", lambda: proportion(d, ["b1", "b2"], by=by, deff=deff), ["b1", "b2"], "ones"),
        ("prop_na", lambda: proportion(d, ["b3", "b1"], by=by, na="drop", deff=deff), ["b3", "b1"], "ones"),
        ("ratio", lambda: ratio(d, ["y2", "b1"], "x", by=by, na="drop", deff=deff), ["y2", "b1"], "x"),
    ]
    for name, fn, cols, den in cases:
        vals = df[cols].to_numpy(dtype=np.float64)
        used = ~np.isnan(vals) & pos
        dv = None if den is None else (np.ones_like(vals) if den == "ones"
                                       else np.repeat(df[[den]].to_numpy(), len(cols), axis=1))
        z = _scores(d, vals, dv, used, codes, n_dom)
        vsrs = _srs_variance(d.weights, z, used, codes, n_dom, deff)
        t = fn().table
        gi = np.zeros(len(t), np.int64) if by is None else pd.factorize(t["g"], sort=True)[0]
        ki = pd.Index(cols).get_indexer(t["variable"].str.split("/").str[0])
        want = t["se"].to_numpy() ** 2 / vsrs[gi, ki]
        np.testing.assert_allclose(t["deff"].to_numpy(), want, rtol=1e-11, err_msg=name)


def test_uint8_columns_give_the_float_numbers():
    df = _data(5)
    d = _design(df)
    cols = ["b1", "b2"]
    dff = df.assign(**{c: df[c].astype(float) for c in cols})
    assert est_mod._numeric_columns(d, cols, "y").dtype == np.uint8
    df_design = _design(dff)
    assert est_mod._numeric_columns(df_design, cols, "y").dtype == np.float64
    for fn in (proportion, mean, total):
        a = fn(d, cols, by="g").table
        b = fn(df_design, cols, by="g").table
        for c in ("estimate", "se", "df", "deff", "n", "ci_low", "ci_high"):
            np.testing.assert_allclose(a[c], b[c], rtol=1e-12, err_msg=f"{fn.__name__} {c}")


@pytest.mark.reference
def test_index_srs_variance_same_on_both_paths(reference_dir):
    """Row blocks of scores (replicate path) give the SRS variance of the full scores (Taylor)."""
    q = load_questionnaire("reference_22")
    data = pd.read_csv(reference_dir / "data" / "sample_strat.csv")
    d = survey_design(data, strata="agency_id", fpc="N_h")
    w = d.weights.copy()
    w[::50] = 0.0
    d = d.with_weights(w, step=WeightStep.from_weights("test", w))
    dr = d.with_replicates(lazy_raowu_replicates(d, n_replicates=20, rng=1))
    old_block = engine_mod.ROW_BLOCK
    for by in (None, "agency_level"):
        a = satisfaction_index(d, q, by=by)
        try:
            engine_mod.ROW_BLOCK = 97  # several blocks
            b = satisfaction_index(dr, q, by=by)
        finally:
            engine_mod.ROW_BLOCK = old_block
        for lv in ("overall", "element", "item"):
            ta, tb = a.to_frame(table=lv), b.to_frame(table=lv)
            np.testing.assert_allclose(ta["se"] ** 2 / ta["deff"], tb["se"] ** 2 / tb["deff"],
                                       rtol=1e-11, err_msg=lv)
            np.testing.assert_array_equal(ta["n"], tb["n"])


@pytest.mark.reference
def test_index_invalid_codes_counted_over_all_blocks(reference_dir, monkeypatch):
    from satsample._validation import SatsampleError

    monkeypatch.setattr(index_mod, "ROW_BLOCK", 100)
    q = load_questionnaire("reference_22")
    data = pd.read_csv(reference_dir / "data" / "sample_strat.csv")
    data.loc[[5, 350, 700], "q03"] = 7  # in three different blocks
    d = survey_design(data, strata="agency_id", fpc="N_h")
    with pytest.raises(SatsampleError, match=r"'q03': 3 row\(s\) with invalid code"):
        satisfaction_index(d, q)
