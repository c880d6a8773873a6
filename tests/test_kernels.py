"""Numba replicate kernels vs their numpy twins, and the replicate-variance helpers.

The twins live in ``tests/reference_numpy.py``.  JIT compilation is cached
(``cache=True``), so only the first run of the file pays for it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numba
import numpy as np
import numpy.testing as npt
import pandas as pd
import pytest
import reference_numpy as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satsample._kernels._rng import _draw_index, _stream
from satsample._kernels.bootstrap import _raowu_multipliers, _raowu_totals
from satsample._kernels.totals import _dense_replicate_totals
from satsample._validation import SatsampleError
from satsample.design import ReplicateWeights, survey_design
from satsample.replicate._common import compact, design_layout
from satsample.replicate.bootstrap import lazy_raowu_replicates
from satsample.replicate.jackknife import lazy_jackknife_replicates
from satsample.variance import replicate as rt
from satsample.variance.taylor import taylor_variance

REF = Path(__file__).resolve().parent / "reference"
HYP = settings(deadline=None, max_examples=25,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ data
@st.composite
def designs(draw):
    """A small stratified (element or cluster) design, with zero weights and domains."""
    n_strata = draw(st.integers(1, 4))
    rows = []
    for h in range(n_strata):
        n_psu = draw(st.integers(2, 4))  # strata with exactly 2 PSUs included
        for p in range(n_psu):
            for _ in range(draw(st.integers(1, 3))):
                rows.append((h, h * 10 + p))
    n = len(rows)
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    h, psu = np.array(rows).T
    w = rng.uniform(0.5, 4.0, n)
    w[rng.random(n) < 0.15] = 0.0  # zero weights (e.g. trimmed out)
    n_domains = draw(st.integers(1, 4))
    dom = rng.integers(-1, n_domains, n)  # -1 = no domain; high codes may be empty
    dom[0] = 0
    k = draw(st.integers(1, 3))
    y = rng.integers(0, 5, (n, k)).astype(np.float64)
    return h, psu, w, dom, n_domains, y, seed


def _design(h, psu, w, *, fpc=None):
    df = pd.DataFrame({"h": h, "psu": psu, "w": np.where(w > 0, w, 1.0)})
    if fpc is not None:
        df["N"] = fpc
    d = survey_design(df, ids="psu", strata="h", weights="w", fpc="N" if fpc is not None else None)
    if (w == 0).any():  # zero analysis weights, e.g. after a trimming step
        from satsample.design import WeightStep

        d = d.with_weights(w, step=WeightStep.from_weights("test", w))
    return d


# -------------------------------------------------------------- the stream
def test_stream_matches_documented_definition():
    key = 123456789
    st_ = _stream(np.uint64(key), 4, 17)
    got = np.array([_draw_index(st_, d, 7) for d in range(6)])
    cnt = ref.raowu_counts(key, 4, 7, 17, 1)[0]
    npt.assert_array_equal(np.bincount(got, minlength=7), cnt)


def test_count_distribution_is_multinomial():
    """Counts of n_h - 1 draws among n_h PSUs: Binomial(n_h - 1, 1/n_h) margins."""
    nh, R = 5, 20000
    cnt = ref.raowu_counts(99, 0, nh, 0, R)
    assert (cnt.sum(axis=1) == nh - 1).all()
    mean_expected = (nh - 1) / nh
    var_expected = (nh - 1) * (1 / nh) * (1 - 1 / nh)
    se_mean = np.sqrt(var_expected / R)
    assert np.all(np.abs(cnt.mean(axis=0) - mean_expected) < 5 * se_mean)
    # variance of a sample variance ~ 2 var^2 / R (approximately, for these counts)
    assert np.all(np.abs(cnt.var(axis=0) - var_expected) < 5 * np.sqrt(2 / R) * var_expected)
    # negative covariance of two cells of a multinomial: -(n_h - 1)/n_h^2
    cov = np.cov(cnt[:, 0], cnt[:, 1])[0, 1]
    assert abs(cov + (nh - 1) / nh**2) < 5 * var_expected / np.sqrt(R)
    # multipliers average 1
    assert abs((cnt * nh / (nh - 1)).mean() - 1) < 0.01


def _jk(d, kind="JKn", mse=False):
    """The design with jackknife replicates that are not stored (closed-form variance)."""
    return d.with_replicates(lazy_jackknife_replicates(d, kind=kind, mse=mse))


# ------------------------------------------------------ kernels vs twins
@HYP
@given(case=designs())
def test_raowu_kernel_matches_twin(case):
    h, psu, w, dom, G, y, seed = case
    d = _design(h, psu, w)
    lay = design_layout(d)
    key = np.uint64(seed)
    for r0, nrep in ((0, 7), (5, 3)):
        got = _raowu_totals(key, d.weights.copy(), y, dom, lay.order, lay.psu_local,
                            lay.strat_start, lay.strat_code, lay.strat_npsu, r0, nrep, G, 3)
        exp = ref.raowu_totals(int(seed), d.weights, y, dom, lay.order, lay.psu_local,
                               lay.strat_start, lay.strat_code, lay.strat_npsu, r0, nrep, G)
        npt.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)
        m = _raowu_multipliers(key, lay.order, lay.psu_local, lay.strat_start, lay.strat_code,
                               lay.strat_npsu, r0, nrep, d.n)
        npt.assert_array_equal(m, ref.raowu_multipliers(int(seed), lay.order, lay.psu_local,
                                                        lay.strat_start, lay.strat_code,
                                                        lay.strat_npsu, r0, nrep, d.n))
    # every PSU carries one multiplier, and they sum to n_h per stratum
    m = _raowu_multipliers(key, lay.order, lay.psu_local, lay.strat_start, lay.strat_code,
                           lay.strat_npsu, 0, 4, d.n)
    for r in range(4):
        per_psu = pd.Series(m[r]).groupby(psu).agg(["min", "max"])
        npt.assert_array_equal(per_psu["min"], per_psu["max"])
        s = pd.Series(per_psu["min"].to_numpy()).groupby(pd.Series(h).groupby(psu).first().to_numpy()).sum()
        nh = pd.Series(psu).groupby(h).nunique()
        npt.assert_allclose(s.to_numpy(), nh.to_numpy(), rtol=1e-13)


@HYP
@given(case=designs(), R=st.integers(1, 11))
def test_dense_kernel_matches_twins(case, R):
    h, _psu, _w, dom, G, y, seed = case
    rng = np.random.default_rng(seed + 1)
    W = rng.uniform(0, 3, (R, h.size)) * (rng.random((R, h.size)) > 0.3)
    got = _dense_replicate_totals(W, y, dom, G, 3, 5)
    npt.assert_allclose(got, ref.dense_replicate_totals(W, y, dom, G), rtol=1e-12, atol=1e-12)
    npt.assert_allclose(got, rt.replicate_totals_numpy(W, y, dom, G), rtol=1e-12, atol=1e-12)


@HYP
@given(case=designs())
def test_replicate_totals_dispatch(case):
    """Materialised, lazy Rao-Wu and lazy JKn give the same totals as the materialised twin."""
    h, psu, w, dom, G, y, seed = case
    d = _design(h, psu, w)
    # lazy Rao-Wu == its own blocks of weights, materialised
    dl = d.with_replicates(lazy_raowu_replicates(d, n_replicates=9, rng=seed))
    W = np.vstack(list(rt.iter_replicate_weight_blocks(dl, block=4)))
    npt.assert_allclose(rt.replicate_totals(dl, y, domain=dom, n_domains=G),
                        rt.replicate_totals_numpy(W, y, dom, G), rtol=1e-12, atol=1e-12)
    dm = d.with_replicates(ReplicateWeights(kind="subbootstrap", weights=W, scale=1 / 8,
                                            rscales=np.ones(9), n_replicates=9, degf=8))
    npt.assert_allclose(rt.replicate_totals(dm, y, domain=dom, n_domains=G),
                        rt.replicate_totals(dl, y, domain=dom, n_domains=G), rtol=1e-12, atol=1e-12)
    # lazy JKn == materialised JKn multipliers
    dj = d.with_replicates(lazy_jackknife_replicates(d))
    mult, _ = ref.jkn_multipliers(h, psu)
    npt.assert_allclose(rt.replicate_totals(dj, y, domain=dom, n_domains=G),
                        ref.dense_replicate_totals(mult * d.weights, y, dom, G),
                        rtol=1e-12, atol=1e-10)


@HYP
@given(case=designs(), mse=st.booleans())
def test_closed_form_jkn_matches_materialised(case, mse):
    h, psu, w, dom, G, y, _seed = case
    N_h = pd.Series(psu).groupby(h).nunique().to_numpy() * 3
    d = _design(h, psu, w, fpc=N_h[h])
    K = y.shape[1]
    num = (y >= 3).astype(float)
    den = (y >= 1).astype(float)
    coef = np.vstack([np.eye(K), np.full((1, K), 1.0 / K)])
    got = rt.replicate_ratio_variance(_jk(d, "JKn", mse), num, den, coef, domain=dom, n_domains=G)
    reps = lazy_jackknife_replicates(d, mse=mse)
    mult, _ = ref.jkn_multipliers(h, psu)
    W = mult * d.weights
    theta_r = ref.ratio_estimates(W, num, den, coef, dom, G)
    theta = ref.ratio_estimates(d.weights[None, :], num, den, coef, dom, G)[0]
    exp = reps.variance(theta_r, theta)
    npt.assert_allclose(got, exp, rtol=1e-9, atol=1e-14)
    # the same through a materialised replicate design (kernel b + ratios)
    dm = d.with_replicates(ReplicateWeights(kind="JKn", weights=W, scale=1.0, rscales=reps.rscales,
                                            mse=mse, n_replicates=reps.n_replicates))
    npt.assert_allclose(rt.replicate_ratio_variance(dm, num, den, coef, domain=dom, n_domains=G),
                        exp, rtol=1e-9, atol=1e-14)


def test_bit_identical_across_thread_counts():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    rng = np.random.default_rng(5)
    n, H = 3000, 12
    h = np.sort(rng.integers(0, H, n))
    d = _design(h, np.arange(n), rng.uniform(1, 5, n))
    y = rng.integers(0, 2, (n, 4)).astype(np.uint8)
    dom = rng.integers(-1, 6, n)
    dl = d.with_replicates(lazy_raowu_replicates(d, n_replicates=123, rng=8))
    W = np.vstack(list(rt.iter_replicate_weight_blocks(dl, block=50)))
    dm = dl.with_replicates(ReplicateWeights(kind="subbootstrap", weights=W, scale=1 / 122,
                                             rscales=np.ones(123), n_replicates=123, degf=122))
    coef = np.eye(4)
    old = numba.get_num_threads()
    res = {}
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            res[t] = (rt.replicate_totals(dl, y, domain=dom, n_domains=6),
                      rt.replicate_totals(dm, y, domain=dom, n_domains=6),
                      rt.replicate_ratio_variance(_jk(d), y, np.ones((n, 1)), coef, domain=dom,
                                                  n_domains=6),
                      np.vstack(list(rt.iter_replicate_weight_blocks(dl, block=50))))
    finally:
        numba.set_num_threads(old)
    for a, b in zip(res[1], res[2]):
        assert a.tobytes() == b.tobytes()


def test_partitioned_strata_give_the_same_replicates():
    """Streams are keyed by stratum code: a sub-sample of whole strata reproduces its totals."""
    rng = np.random.default_rng(2)
    n = 400
    h = np.sort(rng.integers(0, 6, n))
    w = rng.uniform(1, 5, n)
    y = rng.integers(0, 2, (n, 2)).astype(float)
    d = _design(h, np.arange(n), w)
    dl = d.with_replicates(lazy_raowu_replicates(d, n_replicates=30, rng=4))
    key = np.uint64(dl.replicates.seed)
    lay = design_layout(d)
    full = _raowu_totals(key, d.weights.copy(), y, h.astype(np.int64), lay.order, lay.psu_local,
                         lay.strat_start, lay.strat_code, lay.strat_npsu, 0, 30, 6, 50)
    # strata 3..5 alone, same stratum codes
    sel = h >= 3
    sub = _raowu_totals(key, d.weights[sel].copy(), y[sel], h[sel].astype(np.int64),
                        np.arange(sel.sum()), lay.psu_local[sel],
                        lay.strat_start[3:] - lay.strat_start[3], lay.strat_code[3:],
                        lay.strat_npsu[3:], 0, 30, 6, 50)
    npt.assert_array_equal(full[:, 3:], sub[:, 3:])


# --------------------------------------------------------- statistics
def test_raowu_se_of_stratified_mean_near_textbook():
    """Rao-Wu SE of a stratified mean vs the with-replacement (no fpc) Taylor SE."""
    rng = np.random.default_rng(11)
    nh = np.array([8, 12, 20, 30, 15])
    h = np.repeat(np.arange(nh.size), nh)
    n = h.size
    w = np.repeat(rng.uniform(5, 50, nh.size), nh)
    y = rng.normal(10 + h, 3, n)
    d = _design(h, np.arange(n), w)
    R = 4000
    dl = d.with_replicates(lazy_raowu_replicates(d, n_replicates=R, rng=17))
    var_boot = rt.replicate_ratio_variance(dl, y, np.ones(n), np.eye(1))[0, 0]
    mean = np.sum(w * y) / np.sum(w)
    var_taylor = taylor_variance(d, w * (y - mean) / np.sum(w))[0]
    ratio = np.sqrt(var_boot / var_taylor)
    assert abs(ratio - 1) < 4 / np.sqrt(2 * (R - 1)) + 0.02  # MC + ratio-linearisation slack


# ------------------------------------------------------- reference case D
def _case_d():
    case = json.loads((REF / "cases" / "D_replicate_weights.json").read_text())
    data = pd.read_csv(REF / "data" / "sample_strat.csv")
    items = [f"q{j:02d}" for j in range(1, 23)]
    a = data[items].to_numpy(dtype=float)
    num = np.isin(a, (4, 5)).astype(float)
    den = np.isin(a, (1, 2, 3, 4, 5)).astype(float)
    return case["results"], data, items, num, den


def _index_coef():
    sizes = [5, 5, 4, 4, 4]
    elem = np.zeros((5, 22))
    j = 0
    for e, s in enumerate(sizes):
        elem[e, j:j + s] = 1.0 / s
        j += s
    return np.vstack([elem.mean(axis=0, keepdims=True), elem])


@pytest.mark.reference
@pytest.mark.parametrize("mse", [False, True])
def test_case_d_jkn_closed_form(mse):
    res, data, items, num, den = _case_d()
    d = survey_design(data, strata="agency_id", weights="design_weight", fpc="N_h")
    key = "JKn_mse" if mse else "JKn"
    coef = np.vstack([np.eye(22), _index_coef()])
    v = rt.replicate_ratio_variance(_jk(d, "JKn", mse), num, den, coef)[0]
    se_items = np.array([r["se"] for r in res[key]["items"]])
    npt.assert_allclose(np.sqrt(v[:22]), se_items, rtol=1e-10)
    idx = res[key]["index"]
    exp = [idx["index_se"]] + [idx[f"E{e}_se"] for e in range(1, 6)]
    npt.assert_allclose(np.sqrt(v[22:]), exp, rtol=1e-10)
    if not mse:
        # domains (agency level), keeping the full design
        levels = ["province", "district", "commune"]
        dom = pd.Categorical(data["agency_level"], categories=levels).codes.astype(np.int64)
        vd = rt.replicate_ratio_variance(_jk(d), num, den, np.eye(22), domain=dom,
                                         n_domains=3)
        exp_d = {(r["domain"], r["item"]): r["se"] for r in res["JKn"]["by_agency_level"]}
        got_d = np.array([[np.sqrt(vd[g, j]) for j in range(22)] for g in range(3)])
        want = np.array([[exp_d[(levels[g], items[j])] for j in range(22)] for g in range(3)])
        npt.assert_allclose(got_d, want, rtol=1e-10)
        # lazy JKn design object: auto dispatch to the closed form, same numbers
        dj = d.with_replicates(lazy_jackknife_replicates(d))
        assert dj.replicates.n_replicates == 717
        npt.assert_allclose(rt.replicate_ratio_variance(dj, num, den, np.eye(22))[0], v[:22],
                            rtol=1e-12)


@pytest.mark.reference
def test_case_d_jk1_closed_form():
    res, data, _items, num, den = _case_d()
    sel = (data["agency_id"] == "PRV02").to_numpy()
    d = survey_design(data[sel], fpc="N_h")
    v = rt.replicate_ratio_variance(_jk(d, "JK1"), num[sel], den[sel], np.eye(22))[0]
    se = np.array([r["se"] for r in res["JK1"]["items"]])
    npt.assert_allclose(np.sqrt(v), se, rtol=1e-10)


@pytest.mark.reference
def test_case_d_raowu_within_monte_carlo_tolerance():
    res, data, _items, num, den = _case_d()
    d = survey_design(data, strata="agency_id", weights="design_weight")
    R = 500
    dl = d.with_replicates(lazy_raowu_replicates(d, n_replicates=R, rng=20240612))
    se = np.sqrt(rt.replicate_ratio_variance(dl, num, den, np.eye(22))[0])
    mc = np.array([r["se"] for r in res["subbootstrap"]["mc_reference"]["items"]])
    assert np.all(np.abs(se / mc - 1) < 4 / np.sqrt(2 * (R - 1)))


def test_lazy_raowu_rejects_lonely_psu():
    from satsample._validation import DesignError

    df = pd.DataFrame({"h": [0, 0, 1], "w": [1.0, 1.0, 1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = survey_design(df, strata="h", weights="w", lonely_psu="adjust")
    with pytest.raises(DesignError, match="stratum 1 has a single PSU"):
        lazy_raowu_replicates(d, n_replicates=10, rng=1)
    d2 = survey_design(df, strata="h", weights="w", lonely_psu="certainty")
    dl = d2.with_replicates(lazy_raowu_replicates(d2, n_replicates=10, rng=1))
    W = np.vstack(list(rt.iter_replicate_weight_blocks(dl)))
    npt.assert_array_equal(W[:, 2], 1.0)  # the lonely stratum keeps its weight


# ------------------------------------------- bucket path, blocks, compaction
def _long_run_case(seed=3):
    """Strata of a few hundred rows, domains interleaved within strata, 0/1 and other columns."""
    rng = np.random.default_rng(seed)
    n = 1500
    h = np.sort(rng.integers(0, 4, n))
    h[h == 3] = 3  # stratum 3: element PSUs as the others
    w = rng.uniform(0.5, 4.0, n)
    w[rng.random(n) < 0.05] = 0.0
    dom = rng.integers(-1, 3, n)  # 3 domains crossing the strata, some rows in none
    binary = (rng.random((n, 13)) < 0.55).astype(np.uint8)
    ones = np.ones((n, 1), np.uint8)
    scores = rng.integers(0, 6, (n, 2)).astype(np.uint8)  # not 0/1: added directly
    y = np.hstack([binary, ones, scores])
    return h, w, dom, y


def test_raowu_bucket_path_matches_twin_and_is_block_independent():
    h, w, dom, y = _long_run_case()
    psu = np.arange(h.size)
    psu[h == 2] = 10_000 + np.arange((h == 2).sum()) // 3  # a clustered stratum (3 rows per PSU)
    d = _design(h, psu, w)
    lay = design_layout(d)
    key = np.uint64(77)
    args = (key, d.weights.copy(), y, dom, lay.order, lay.psu_local, lay.strat_start,
            lay.strat_code, lay.strat_npsu)
    exp = ref.raowu_totals(77, d.weights, y, dom, lay.order, lay.psu_local, lay.strat_start,
                           lay.strat_code, lay.strat_npsu, 4, 30, 3)
    got = _raowu_totals(*args, 4, 30, 3, 48)
    npt.assert_allclose(got, exp, rtol=1e-12, atol=1e-9)
    # the block size only shares work out: bit-identical totals
    for block in (1, 7, 13):
        assert _raowu_totals(*args, 4, 30, 3, block).tobytes() == got.tobytes()
    # without buckets (every column added directly) and with other group widths: same totals
    for gb in (0, 2, 8):
        npt.assert_allclose(_raowu_totals(*args, 4, 30, 3, 48, group_bits=gb), exp, rtol=1e-12,
                            atol=1e-9)
    # float values with the same 0/1 content give the same totals
    npt.assert_allclose(_raowu_totals(key, d.weights.copy(), y.astype(float), *args[3:], 4, 30, 3,
                                      16), got, rtol=1e-13)


def test_compact_is_exact():
    from satsample._kernels.totals import _column_summary

    rng = np.random.default_rng(9)
    n = 500
    a = (rng.random((n, 3)) < 0.5).astype(float)
    v = np.hstack([a, a[:, :1], np.ones((n, 2)), rng.integers(0, 256, (n, 1)), a[:, 1:2]])
    vc, where = compact(v)
    assert vc.dtype == np.uint8 and vc.shape[1] == 5
    npt.assert_array_equal(where, [0, 1, 2, 0, 3, 3, 4, 1])
    npt.assert_array_equal(vc[:, where], v)
    for bad in (0.5, -1.0, 256.0, np.nan, np.inf):  # no lossless uint8 cast
        vb = v.copy()
        vb[17, 2] = bad
        vc, where = compact(vb)
        assert vc.dtype == np.float64
        npt.assert_array_equal(vc[:, where], vb)
    # one pass gives signature (equal columns, equal signatures), range and fraction flags
    sig, lo, hi, frac = _column_summary(np.c_[v[:, :2], v[:, :1] + 0.25])
    assert sig[0] != sig[1] and lo[2] == 0.25 and hi[2] == 1.25
    npt.assert_array_equal(frac, [False, False, True])


# ------------------------------------------------ weighting steps on lazy replicates
class _PostStratifyStep:
    """Test step: scale each replicate row so that its cell totals equal ``totals`` (vectorised)."""

    def __init__(self, cell, totals):
        self.cell = cell
        self.totals = np.asarray(totals, dtype=float)
        self.calls = []

    def apply(self, block, replicate_index):
        self.calls.append(np.array(replicate_index))
        b, _n = block.shape
        G = self.totals.size
        flat = (np.arange(b)[:, None] * G + self.cell[None, :]).ravel()
        cur = np.bincount(flat, weights=block.ravel(), minlength=b * G).reshape(b, G)
        return block * (self.totals[None, :] / cur)[:, self.cell]

    def apply_row(self, row):
        cur = np.bincount(self.cell, weights=row, minlength=self.totals.size)
        return row * (self.totals / cur)[self.cell]


class _TrimStep:
    """Second test step: cap each replicate weight at ``cap`` (rowwise, no redistribution)."""

    def __init__(self, cap):
        self.cap = cap

    def apply(self, block, replicate_index):
        return np.minimum(block, self.cap)

    def apply_row(self, row):
        return np.minimum(row, self.cap)


def _stepped_design(kind, seed=4):
    from dataclasses import replace

    from satsample.design import WeightStep

    rng = np.random.default_rng(seed)
    n = 240
    h = np.sort(rng.integers(0, 4, n))
    psu = np.arange(n) // 2 if kind != "JK1" else np.arange(n) // 8  # 2 rows per PSU
    df = pd.DataFrame({"h": h, "psu": psu, "w": rng.uniform(5, 20, n)})
    d0 = survey_design(df, ids="psu", strata="h" if kind != "JK1" else None, weights="w")
    cell = rng.integers(0, 3, n)
    totals = np.array([1500.0, 900.0, 1100.0])
    steps = (_PostStratifyStep(cell, totals), _TrimStep(40.0))
    if kind == "subbootstrap":
        reps0 = lazy_raowu_replicates(d0, n_replicates=23, rng=seed)
    else:
        reps0 = lazy_jackknife_replicates(d0, kind=kind)
    # final analysis weights: the same steps on the full sample
    w = d0.weights
    d = d0
    for step in steps:
        w = step.apply_row(w)
        d = d.with_weights(w, step=WeightStep.from_weights(type(step).__name__, w))
    lazy = d.with_replicates(replace(reps0, steps=steps))
    # materialised: every replicate row of the base design, then each step row by row
    W0 = np.vstack(list(rt.iter_replicate_weight_blocks(d0.with_replicates(reps0), block=7)))
    W = W0.copy()
    for r in range(W.shape[0]):
        for step in steps:
            W[r] = step.apply_row(W[r])
    mat = d.with_replicates(replace(reps0, weights=W))
    return lazy, mat, W, steps, rng


@pytest.mark.parametrize("kind", ["subbootstrap", "JKn", "JK1"])
def test_lazy_replicates_replay_weighting_steps(kind):
    lazy, mat, W, steps, rng = _stepped_design(kind)
    n = lazy.n
    R = lazy.replicates.n_replicates
    # blocks of weights: the steps replayed on each block, every replicate index passed once
    steps[0].calls.clear()
    Wl = np.vstack(list(rt.iter_replicate_weight_blocks(lazy, block=5)))
    npt.assert_allclose(Wl, W, rtol=1e-14)
    npt.assert_array_equal(np.concatenate(steps[0].calls), np.arange(R))
    assert max(c.size for c in steps[0].calls) == 5
    # the cell totals of every replicate are the post-stratification totals before trimming
    assert np.all(Wl <= 40.0)
    # totals and ratio variances: lazy == materialised == numpy twin
    y = (rng.random((n, 3)) < 0.5).astype(float)
    y[:, 2] = rng.integers(0, 5, n)
    dom = rng.integers(-1, 3, n)
    got = rt.replicate_totals(lazy, y, domain=dom, n_domains=3)
    npt.assert_allclose(got, ref.dense_replicate_totals(W, y, dom, 3), rtol=1e-12, atol=1e-10)
    npt.assert_allclose(got, rt.replicate_totals(mat, y, domain=dom, n_domains=3), rtol=1e-12,
                        atol=1e-10)
    num, den = y[:, :2], np.ones((n, 1))
    coef = np.vstack([np.eye(2), [[0.5, 0.5]]])
    v_lazy = rt.replicate_ratio_variance(lazy, num, den, coef, domain=dom, n_domains=3)
    v_mat = rt.replicate_ratio_variance(mat, num, den, coef, domain=dom, n_domains=3)
    theta_r = ref.ratio_estimates(W, num, den, coef, dom, 3)
    theta = ref.ratio_estimates(lazy.weights[None, :], num, den, coef, dom, 3)[0]
    npt.assert_allclose(v_lazy, lazy.replicates.variance(theta_r, theta), rtol=1e-9)
    npt.assert_allclose(v_lazy, v_mat, rtol=1e-10)
    # replayed steps matter: the variance differs from the unweighted replicates'
    if kind == "subbootstrap":
        from dataclasses import replace

        plain = lazy.with_replicates(replace(lazy.replicates, steps=()))
        v_plain = rt.replicate_ratio_variance(plain, num, den, coef, domain=dom, n_domains=3)
        assert not np.allclose(v_plain, v_lazy, rtol=1e-3)


def test_replayed_steps_must_cover_the_weighting_history():
    from dataclasses import replace

    from satsample._validation import DesignError

    lazy, _mat, _W, steps, _rng = _stepped_design("subbootstrap")
    short = lazy.with_replicates(replace(lazy.replicates, steps=steps[:1]))
    with pytest.raises(DesignError, match=r"replay 1 weighting step\(s\) but the design went "
                                          r"through 2 \(_PostStratifyStep, _TrimStep\)"):
        rt.replicate_totals(short, np.ones(lazy.n))

    class _Bad:
        def apply(self, block, replicate_index):
            return block[:, :-1]

    bad = lazy.with_replicates(replace(lazy.replicates, steps=(steps[0], _Bad())))
    with pytest.raises(SatsampleError, match=r"_Bad returned replicate weights of shape"):
        list(rt.iter_replicate_weight_blocks(bad))


def test_pattern_helpers_match_numpy():
    from satsample._kernels.bootstrap import _binary_flags, _patterns

    rng = np.random.default_rng(12)
    v = (rng.random((300, 9)) < 0.4).astype(float)
    v[3, 4] = 2.0
    v[5, 7] = np.nan
    flags = _binary_flags(v)
    npt.assert_array_equal(flags, np.all((v == 0) | (v == 1), axis=0))
    binary = np.flatnonzero(flags)
    pat, grp_col = _patterns(v, binary, 3)
    npt.assert_array_equal(grp_col.ravel()[:binary.size], binary)
    assert (grp_col.ravel()[binary.size:] == -1).all()
    for t in range(grp_col.shape[0]):
        exp = sum((v[:, j] != 0).astype(int) << b for b, j in enumerate(grp_col[t]) if j >= 0)
        npt.assert_array_equal(pat[:, t], exp)
