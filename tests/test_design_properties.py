"""Hypothesis property tests of the design stage: allocations, inclusion probabilities,
multistage weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from satsample.allocation import allocate
from satsample.selection import Stage, inclusion_probabilities, select_multistage

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def allocation_cases(draw):
    H = draw(st.integers(1, 8))
    N = draw(st.lists(st.integers(1, 500), min_size=H, max_size=H))
    sd = draw(st.lists(st.floats(0.05, 3.0), min_size=H, max_size=H))
    min_n = draw(st.integers(0, 5))
    max_n = draw(st.one_of(st.none(), st.integers(max(min_n, 1), 300)))
    upper = [min(x, max_n) if max_n is not None else x for x in N]
    lower = [min(min_n, x) for x in N]
    lo, hi = sum(lower), sum(upper)
    n = draw(st.integers(max(lo, 1), max(hi, 1)))
    rule = draw(st.sampled_from(["proportional", "equal", "neyman", "power"]))
    return N, sd, min_n, max_n, n, rule


@SETTINGS
@given(allocation_cases())
def test_allocation_sums_to_n_and_respects_bounds(case):
    N, sd, min_n, max_n, n, rule = case
    idx = [f"s{h}" for h in range(len(N))]
    Ns = pd.Series(N, index=idx)
    kw = dict(rule=rule, min_n=min_n or None, max_n=max_n)
    if rule in ("neyman", "power"):
        kw["sd"] = pd.Series(sd, index=idx)
    exact = allocate(Ns, n, rounding="none", **kw)
    a = allocate(Ns, n, **kw)
    lower = np.minimum(min_n, N)
    upper = np.minimum(max_n, N) if max_n is not None else np.asarray(N)
    assert a.n_h.sum() == n
    assert np.isclose(exact.n_exact.sum(), n, rtol=1e-9)
    assert (a.n_h >= lower).all() and (a.n_h <= upper).all()
    assert (exact.n_exact >= lower - 1e-9).all() and (exact.n_exact <= upper + 1e-9).all()
    assert (np.abs(a.n_h - exact.n_exact) < 1).all()  # Hamilton moves each by less than 1
    ceil = allocate(Ns, n, rounding="ceil", **kw)
    assert (ceil.n_h <= upper).all() and ceil.n_h.sum() >= n


@st.composite
def pps_cases(draw):
    N = draw(st.integers(2, 30))
    sizes = draw(st.lists(st.floats(0.01, 1000.0), min_size=N, max_size=N))
    n = draw(st.integers(1, N))
    return np.asarray(sizes), n


@SETTINGS
@given(pps_cases())
def test_inclusion_probabilities_sum_to_n(case):
    a, n = case
    pi = inclusion_probabilities(a, n)
    assert np.isclose(pi.sum(), n, rtol=1e-10)
    assert (pi > 0).all() and (pi <= 1).all()
    free = pi < 1
    if free.sum() > 1:  # proportional to size among the non-certainty units
        ratio = pi[free] / a[free]
        assert np.allclose(ratio, ratio[0], rtol=1e-9)
    if (~free).any() and free.any():  # certainty units are the largest
        assert a[~free].min() >= a[free].max() * (1 - 1e-12)


@SETTINGS
@given(st.lists(st.integers(2, 12), min_size=2, max_size=5), st.integers(0, 2**31))
def test_stratified_inclusion_probabilities_sum_to_n_h(sizes, seed):
    gen = np.random.default_rng(seed)
    strata = np.repeat([f"h{i}" for i in range(len(sizes))], sizes)
    a = gen.uniform(0.1, 10, len(strata))
    n_h = {f"h{i}": int(gen.integers(1, s + 1)) for i, s in enumerate(sizes)}
    pi = inclusion_probabilities(a, n_h, strata=strata)
    sums = pd.Series(pi).groupby(strata).sum()
    assert np.allclose(sums.to_numpy(), [n_h[h] for h in sums.index], rtol=1e-10)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(1, 3), st.integers(0, 2**31),
       st.sampled_from(["srswor", "pps_systematic", "pps_brewer", "systematic"]))
def test_multistage_weights_are_products(n_districts, n_communes, seed, method):
    gen = np.random.default_rng(seed)
    rows = []
    uid = 0
    for d in range(6):
        for c in range(4):
            for _ in range(int(gen.integers(2, 6))):
                uid += 1
                rows.append((uid, f"d{d}", f"d{d}c{c}", float(gen.uniform(1, 5))))
    frame = pd.DataFrame(rows, columns=["uid", "district", "commune", "size"])
    ms = select_multistage(frame, stages=[
        Stage(cluster="district", n=n_districts, method=method,
              size="size" if method.startswith("pps") else None),
        Stage(cluster="commune", n=n_communes),
        Stage(unit="uid", n=2, take_all=True),
    ], rng=seed)
    s = ms.sample
    prod = s["prob_stage1"] * s["prob_stage2"] * s["prob_stage3"]
    np.testing.assert_allclose(s["design_weight"], 1 / prod, rtol=1e-12)
    np.testing.assert_allclose(s["inclusion_prob"], prod, rtol=1e-12)
    assert s["psu_stage1"].nunique() == n_districts
    assert (s.groupby("psu_stage1")["psu_stage2"].nunique() == n_communes).all()
    # conditional probabilities: stage 2 and 3 are SRSWOR within the selected parent
    np.testing.assert_allclose(s["prob_stage2"], n_communes / s["fpc_stage2"])
    np.testing.assert_allclose(s["prob_stage3"], np.minimum(2, s["fpc_stage3"]) / s["fpc_stage3"])
