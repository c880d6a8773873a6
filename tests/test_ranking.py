"""League tables: ranks, rank intervals, top/bottom-k probabilities, tests vs the reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from satsample._validation import SatsampleError
from satsample.outputs.ranking import LeagueTable, league_table, rank_intervals
from satsample.questionnaire import Element, Questionnaire
from satsample.results import IndexEstimate

# ---------------------------------------------------------------------------- constructed results
# Real IndexEstimate objects built from arrays, so that these tests pin the numbers
# independently of the estimation engine.

TINY_Q = Questionnaire(
    name="tiny",
    elements=(Element(code="E1", label="Access", items=("a1", "a2")),
              Element(code="E2", label="Staff", items=("b1",))),
)


def make_standin(domains: list[str], item_est: np.ndarray, item_se: np.ndarray, *,
                 item_reps: np.ndarray | None = None, by: str = "agency", n: Any = 100,
                 df: Any = 40, q: Questionnaire = TINY_Q,
                 se_from_reps: bool = True) -> IndexEstimate:
    """Index result from item shares (G, K), SEs (G, K) and replicate shares (R, G, K).

    Elements are means of their items and the overall the mean of elements (mean of means);
    SEs of elements/overall assume independent items (only for the stand-in), or, with
    replicates and ``se_from_reps``, are bootstrap SEs (multiplier 1/(R-1)) of the replicates.
    """
    G = item_est.shape[0]
    el_idx = [[q.items.index(i) for i in el.items] for el in q.elements]

    def agg(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.stack([x[..., ix].mean(axis=-1) for ix in el_idx], axis=-1)
        return e, e.mean(axis=-1)

    el, ov = agg(item_est)
    el_var = np.stack([(item_se[:, ix] ** 2).sum(axis=1) / len(ix) ** 2 for ix in el_idx], 1)
    ov_se = np.sqrt(el_var.sum(axis=1) / el_var.shape[1] ** 2)
    nn = np.broadcast_to(np.asarray(n), (G,))
    dd = np.broadcast_to(np.asarray(df, dtype=float), (G,))

    def frame(est: np.ndarray, se: np.ndarray, key: str | None, keys: list[str]) -> pd.DataFrame:
        rows = []
        for g, d in enumerate(domains):
            for j, k in enumerate(keys):
                e = est[g, j] if key else est[g]
                s = se[g, j] if key else se[g]
                row = {by: d} | ({"element": q.item_element[k]} if key == "item" else {}) | (
                    {key: k} if key else {}) | {
                    "estimate": e, "se": s, "ci_low": e - 2 * s, "ci_high": e + 2 * s,
                    "df": dd[g], "deff": 1.0, "n": nn[g]}
                rows.append(row)
        return pd.DataFrame(rows)

    reps = None
    if item_reps is not None:
        el_r, ov_r = agg(item_reps)
        reps = {"overall": ov_r, "elements": el_r, "items": item_reps}
        if se_from_reps:
            R = item_reps.shape[0]

            def bse(x: np.ndarray) -> np.ndarray:
                return np.sqrt(((x - x.mean(0)) ** 2).sum(0) / (R - 1))

            item_se, el_var, ov_se = bse(item_reps), bse(el_r) ** 2, bse(ov_r)
    return IndexEstimate(
        overall=frame(ov, ov_se, None, ["x"]),
        elements=frame(el, np.sqrt(el_var), "element", list(q.element_codes)),
        items=frame(item_est, item_se, "item", list(q.items)),
        by=(by,), questionnaire=q, replicate_estimates=reps,
    )


def simple_standin(est: np.ndarray, reps: np.ndarray | None, se: np.ndarray | None = None,
                   domains: list[str] | None = None, **kw: Any) -> IndexEstimate:
    """Stand-in whose overall index equals ``est`` (every item equal to it)."""
    G = est.size
    domains = domains or [f"A{g:02d}" for g in range(G)]
    se = np.full(G, 0.02) if se is None else se
    item_est = np.repeat(est[:, None], 3, axis=1)
    # element SEs: E1 has 2 items -> se^2/2, E2 -> se^2; overall var = (se^2/2+se^2)/4
    item_se = np.repeat((se / np.sqrt(0.375))[:, None], 3, axis=1)
    item_reps = None if reps is None else np.repeat(reps[:, :, None], 3, axis=2)
    return make_standin(domains, item_est, item_se, item_reps=item_reps, **kw)


# ---------------------------------------------------------------------------- rank_intervals
def test_well_separated_domains_have_rank_intervals_of_width_zero():
    rng = np.random.default_rng(1)
    est = np.array([0.9, 0.6, 0.8, 0.7])
    reps = est + rng.uniform(-0.01, 0.01, size=(200, 4))
    out = rank_intervals(est, reps, top_k=2, bottom_k=1)
    np.testing.assert_array_equal(out["rank"], [1, 4, 2, 3])
    np.testing.assert_array_equal(out["rank_low"], out["rank"])
    np.testing.assert_array_equal(out["rank_high"], out["rank"])
    np.testing.assert_array_equal(out["p_top"], [1, 0, 1, 0])
    np.testing.assert_array_equal(out["p_bottom"], [0, 1, 0, 0])
    assert out.attrs == {"n_replicates_used": 200, "n_replicates_excluded": 0}


def test_identical_domains_share_their_ranks():
    rng = np.random.default_rng(2)
    est = np.array([0.9, 0.8, 0.8, 0.6])
    base = est + rng.uniform(-0.01, 0.01, size=(100, 4))
    base[:, 2] = base[:, 1]  # domains 1 and 2 are identical in every replicate
    out = rank_intervals(est, base, top_k=2, bottom_k=2)
    np.testing.assert_array_equal(out["rank"], [1, 2, 2, 4])
    np.testing.assert_array_equal(out["rank_low"], [1, 2, 2, 4])
    np.testing.assert_array_equal(out["rank_high"], [1, 2, 2, 4])
    # the tie straddles place 2 (places 2-3): one place left, shared equally
    np.testing.assert_allclose(out["p_top"], [1, 0.5, 0.5, 0])
    np.testing.assert_allclose(out["p_bottom"], [0, 0.5, 0.5, 1])
    avg = rank_intervals(est, base, ties="average")
    np.testing.assert_array_equal(avg["rank"], [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(avg["rank_low"], [1, 2.5, 2.5, 4])


def test_rank_interval_quantiles_by_hand():
    est = np.array([0.6, 0.5])
    reps = np.tile([0.6, 0.5], (40, 1))
    reps[:4] = [0.5, 0.6]  # 4 of 40 replicates swap the order
    out = rank_intervals(est, reps, top_k=1, bottom_k=1)
    # ranks of domain 0: 36 x 1 and 4 x 2; CDF(1) = 0.9 < 0.975 -> upper bound 2
    assert out["rank_low"].tolist() == [1, 1]
    assert out["rank_high"].tolist() == [2, 2]
    np.testing.assert_allclose(out["p_top"], [0.9, 0.1])
    np.testing.assert_allclose(out["p_bottom"], [0.1, 0.9])
    wide = rank_intervals(est, reps, level=0.75)  # quantile 0.875 <= 0.9 -> 1
    assert wide["rank_high"].tolist() == [1, 2]
    assert wide["rank_low"].tolist() == [1, 2]  # Q_0.125 of domain 1: CDF(1)=0.1 < 0.125
    asc = rank_intervals(est, reps, descending=False)
    assert asc["rank"].tolist() == [2, 1]


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_top_and_bottom_probabilities_sum_to_k(k):
    rng = np.random.default_rng(3)
    est = rng.uniform(0.6, 0.9, 10)
    reps = est + rng.normal(0, 0.05, size=(300, 10))
    reps[:50, 3] = reps[:50, 4]  # some ties as well
    reps = np.round(reps, 2)  # many ties
    out = rank_intervals(est, reps, top_k=k, bottom_k=k)
    assert out["p_top"].sum() == pytest.approx(min(k, 10), abs=1e-12)
    assert out["p_bottom"].sum() == pytest.approx(min(k, 10), abs=1e-12)
    assert ((out["rank_low"] <= out["rank"] + 10) & (out["rank_low"] <= out["rank_high"])).all()
    # numpy twin of the top-k probability without ties handling on the unrounded case
    cont = est + rng.normal(0, 0.05, size=(300, 10))
    out2 = rank_intervals(est, cont, top_k=k)
    order = np.argsort(-cont, axis=1)
    member = np.zeros_like(cont)
    np.put_along_axis(member, order[:, :k], 1.0, axis=1)
    np.testing.assert_allclose(out2["p_top"], member.mean(axis=0), atol=1e-15)


def test_rank_intervals_nan_replicates_are_counted_not_silent():
    est = np.array([0.9, 0.5, 0.1])
    reps = np.tile(est, (10, 1))
    reps[2, 1] = np.nan
    out = rank_intervals(est, reps)
    assert out.attrs == {"n_replicates_used": 9, "n_replicates_excluded": 1}


def test_rank_intervals_bad_input():
    with pytest.raises(SatsampleError, match="shape"):
        rank_intervals([0.1, 0.2], np.zeros((5, 3)))
    with pytest.raises(SatsampleError, match="ties"):
        rank_intervals([0.1, 0.2], np.zeros((5, 2)), ties="random")
    with pytest.raises(SatsampleError, match="NaN"):
        rank_intervals([0.1, np.nan], np.zeros((5, 2)))


# ---------------------------------------------------------------------------- league_table
def test_league_table_without_replicates_says_how_to_build_them():
    res = simple_standin(np.array([0.8, 0.7, 0.9]), None)
    with pytest.raises(SatsampleError, match=r"bootstrap\(design, n_replicates=500"):
        league_table(res)
    lt = league_table(res, rank_intervals=False)
    assert lt.table["rank_low"].isna().all()
    assert lt.table["domain"].tolist() == ["A02", "A00", "A01"]


def test_league_table_taylor_contrast_by_hand():
    est = np.array([0.80, 0.70, 0.90, 0.75])
    se = np.array([0.02, 0.03, 0.01, 0.04])
    res = simple_standin(est, None, se=se, df=[30, 20, 10, 40])
    lt = league_table(res, rank_intervals=False, adjust="none")
    t = lt.table.set_index("domain").loc[["A00", "A01", "A02", "A03"]]
    np.testing.assert_allclose(t["se"], se, rtol=1e-12)  # stand-in sanity
    G = 4
    ref = est.mean()
    v = (1 - 1 / G) ** 2 * se**2 + (np.sum(se**2) - se**2) / G**2
    np.testing.assert_allclose(t["reference"], ref)
    np.testing.assert_allclose(t["diff"], est - ref)
    np.testing.assert_allclose(t["diff_se"], np.sqrt(v), rtol=1e-12)
    p = 2 * stats.t.sf(np.abs(est - ref) / np.sqrt(v), [30, 20, 10, 40])
    np.testing.assert_allclose(t["p_value"], p, rtol=1e-10)
    np.testing.assert_array_equal(t["rank"], [2, 4, 1, 3])
    assert lt.options["contrast_variance"].startswith("taylor")
    # holm by hand
    lt_h = league_table(res, rank_intervals=False)
    th = lt_h.table.set_index("domain").loc[["A00", "A01", "A02", "A03"]]
    order = np.argsort(p)
    adj = np.empty(4)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1, (4 - i) * p[j]))
        adj[j] = running
    np.testing.assert_allclose(th["p_adjusted"], adj, rtol=1e-10)
    expect = np.where(adj < 0.05, np.where(est > ref, "above", "below"), "")
    assert th["significant"].tolist() == expect.tolist()
    # fixed reference: variance of the domain only
    lt_f = league_table(res, rank_intervals=False, reference=0.8, adjust="none")
    tf = lt_f.table.set_index("domain").loc[["A00", "A01", "A02", "A03"]]
    np.testing.assert_allclose(tf["diff_se"], se, rtol=1e-12)


def test_league_table_with_bootstrap_replicates():
    rng = np.random.default_rng(5)
    est = np.array([0.80, 0.70, 0.90, 0.75, 0.81])
    R = 400
    reps = est + rng.normal(0, 0.02, size=(R, 5))
    se = np.sqrt(((reps - reps.mean(0)) ** 2).sum(0) / (R - 1))  # bootstrap scale 1/(R-1)
    res = simple_standin(est, reps, se=se)
    lt = league_table(res, top_k=2, bottom_k=2, adjust="none")
    assert isinstance(lt, LeagueTable)
    t = lt.table.set_index("domain").loc[[f"A0{g}" for g in range(5)]]
    ri = rank_intervals(est, reps, top_k=2, bottom_k=2)
    for c in ("rank", "rank_low", "rank_high", "p_top", "p_bottom"):
        np.testing.assert_allclose(t[c], ri[c].to_numpy())
    d_r = reps - reps.mean(axis=1, keepdims=True)
    v = ((d_r - d_r.mean(0)) ** 2).sum(0) / (R - 1)
    np.testing.assert_allclose(t["diff_se"], np.sqrt(v), rtol=1e-8)
    assert "inferred" in lt.options["contrast_variance"]
    assert lt.table["rank"].tolist() == sorted(lt.table["rank"])
    assert set(lt.top["domain"]) == {"A02", "A04"}
    assert set(lt.bottom["domain"]) == {"A01", "A03"}
    # pooled reference from a one-domain result on the same replicates
    pooled_r = reps.mean(axis=1)
    pooled = simple_standin(np.array([est.mean()]), pooled_r[:, None],
                            se=np.array([np.sqrt(((pooled_r - pooled_r.mean()) ** 2).sum()
                                                 / (R - 1))]), domains=["all"])
    lp = league_table(res, reference=pooled, adjust="none")
    tp = lp.table.set_index("domain").loc[[f"A0{g}" for g in range(5)]]
    np.testing.assert_allclose(tp["diff_se"], np.sqrt(v), rtol=1e-8)
    with pytest.raises(SatsampleError, match="replicate"):
        league_table(simple_standin(est, None), reference=pooled, rank_intervals=False)


def test_league_table_jkn_multipliers_need_the_design():
    rng = np.random.default_rng(6)
    est = np.array([0.8, 0.7, 0.9])
    reps = est + rng.normal(0, 0.02, size=(6, 3))
    rscales = np.array([0.5, 0.5, 0.9, 0.9, 0.2, 0.2])
    se = np.sqrt((rscales[:, None] * (reps - reps.mean(0)) ** 2).sum(0))
    res = simple_standin(est, reps, se=se, se_from_reps=False)
    with pytest.raises(SatsampleError, match="replicates=design"):
        league_table(res)

    @dataclass
    class RW:
        kind: str = "JKn"
        n_replicates: int = 6

        def variance(self, theta_r, theta):
            return (rscales[:, None] * (theta_r - theta_r.mean(0)) ** 2).sum(0)

    lt = league_table(res, replicates=RW(), adjust="none")
    d_r = reps - reps.mean(axis=1, keepdims=True)
    v = (rscales[:, None] * (d_r - d_r.mean(0)) ** 2).sum(0)
    t = lt.table.set_index("domain").loc[["A00", "A01", "A02"]]
    np.testing.assert_allclose(t["diff_se"], np.sqrt(v), rtol=1e-12)


def test_league_table_element_level_ranks_within_elements():
    rng = np.random.default_rng(7)
    item_est = np.array([[0.9, 0.9, 0.1], [0.5, 0.5, 0.5], [0.1, 0.1, 0.9]])
    item_reps = item_est + rng.uniform(-0.01, 0.01, size=(50, 3, 3))
    item_se = np.full((3, 3), 0.006)
    res = make_standin(["X", "Y", "Z"], item_est, item_se, item_reps=item_reps)
    lt = league_table(res, table="element", top_k=1, bottom_k=1, rank_intervals=True)
    t = lt.table
    assert t["element"].tolist() == ["E1"] * 3 + ["E2"] * 3
    assert t["domain"].tolist() == ["X", "Y", "Z", "Z", "Y", "X"]
    np.testing.assert_array_equal(t["rank"], [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(t["rank_high"] - t["rank_low"], 0)
    np.testing.assert_array_equal(t["p_top"], [1, 0, 0, 1, 0, 0])
    li = league_table(res, table="item", rank_intervals=True)
    assert li.table.groupby("item")["rank"].apply(sorted).tolist() == [[1, 2, 3]] * 3
    assert sorted(lt.bottom["domain"]) == ["X", "Z"]


def test_suppressed_domains_are_not_ranked_nor_counted_in_top_k():
    from outputs_data import SMALL, agencies_estimate

    from satsample.outputs.flags import flag_estimate

    est = flag_estimate(agencies_estimate(3, n_agencies=40))
    lt = league_table(est, top_k=5, bottom_k=5)
    sup = sorted(a for a in SMALL if a in set(est.overall["agency_id"]))
    assert sorted(lt.suppressed["domain"]) == sup
    assert set(lt.suppressed.columns) == {"domain", "n", "reason"}
    t = lt.table
    assert not set(t["domain"]) & set(sup)
    G = 40 - len(sup)
    assert sorted(t["rank"]) == list(range(1, G + 1))
    assert t["p_top"].sum() == pytest.approx(5) and t["p_bottom"].sum() == pytest.approx(5)
    # same numbers as ranking only the published domains
    keep = ~est.overall["agency_id"].isin(sup).to_numpy()
    ref = rank_intervals(est.overall["estimate"].to_numpy()[keep],
                         est.replicate_estimates["overall"][:, keep],
                         labels=est.overall["agency_id"][keep])
    got = t.set_index("domain")
    for c in ("rank", "rank_low", "rank_high", "p_top", "p_bottom"):
        np.testing.assert_allclose(got.loc[ref.index, c], ref[c])
    # the mean of domains is that of the ranked domains
    assert t["reference"].iloc[0] == pytest.approx(est.overall["estimate"][keep].mean())
    assert set(t["status"]) <= {"publish", "review"}
    plain = league_table(agencies_estimate(3, n_agencies=40))
    assert len(plain.table) == 40 and plain.suppressed.empty
