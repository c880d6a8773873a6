"""Large-n checks: memory of the lazy Rao-Wu path, element JKn, and thread-count bit identity.

    python benchmarks/scale.py t5d   --n 1000000 [--reps 500]    # public API path + kernel path
    python benchmarks/scale.py t6e   --n 1000000
    python benchmarks/scale.py big   --n 10000000 --reps 1000    # 22 items x 100 agencies
    python benchmarks/scale.py threads --n 200000 --reps 500     # NUMBA_NUM_THREADS=1 vs 2

Each mode prints one JSON line (seconds, peak RSS GiB, a SHA-256 of the
replicate totals or SEs).  ``threads`` re-runs ``t5d``/``t6e`` in child
processes with ``NUMBA_NUM_THREADS=1`` and ``=2`` and compares the hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _sha(a) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def t5d(n: int, reps: int) -> dict:
    """Rao-Wu replicate totals of 22 items x 100 agencies via replicate_totals (lazy design)."""
    import numpy as np
    from workloads import ITEMS, make_data

    from satsample import _replicate_totals as rt
    from satsample.design import survey_design

    df, _ = make_data(n, lean=True)
    d = survey_design(df, strata="agency", weights="w")
    del df
    rss_data = _rss()
    t0 = time.perf_counter()
    dl = d.with_replicates(rt.lazy_raowu_replicates(d, replicates=reps, rng=11))
    items = np.ascontiguousarray(d.data[ITEMS].to_numpy())
    vals = np.empty((d.n, len(ITEMS) + 1), dtype=np.uint8)
    vals[:, :-1] = items >= 4
    vals[:, -1] = 1
    del items
    tot = rt.replicate_totals(dl, vals, domain=d.strata, n_domains=d.n_strata)
    p_r = tot[..., :-1] / tot[..., -1:]
    var = dl.replicates.variance(p_r, p_r.mean(axis=0))
    sec = time.perf_counter() - t0
    return {"mode": "t5d-kernel", "n": d.n, "reps": reps, "seconds": sec, "rss_gib": _rss(),
            "rss_after_data_gib": rss_data, "sha_totals": _sha(tot),
            "se_median": float(np.median(np.sqrt(var)))}


def t6e(n: int) -> dict:
    import numpy as np
    from workloads import ITEMS, make_data

    from satsample import _replicate_totals as rt
    from satsample.design import survey_design

    df, _ = make_data(n, lean=True)
    d = survey_design(df, strata="agency", weights="w")
    del df
    y = (d.data[ITEMS].to_numpy() >= 4).astype(np.float64)
    rss_data = _rss()
    t0 = time.perf_counter()
    v = rt.replicate_ratio_variance(d, y, np.ones((d.n, 1)), np.eye(len(ITEMS)), kind="JKn")
    sec = time.perf_counter() - t0
    return {"mode": "t6e", "n": d.n, "reps": d.n, "seconds": sec, "rss_gib": _rss(),
            "rss_after_data_gib": rss_data, "sha_var": _sha(v),
            "se_median": float(np.median(np.sqrt(v)))}


def threads(n: int, reps: int) -> dict:
    out = {}
    for t in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(t))
        res = []
        for mode in ("t5d", "t6e"):
            p = subprocess.run([sys.executable, __file__, mode, "--n", str(n), "--reps", str(reps)],
                               capture_output=True, text=True, env=env, timeout=600, check=True)
            res.append(json.loads(p.stdout.strip().splitlines()[-1]))
        out[t] = res
    same = all(out[1][i].get("sha_totals", out[1][i].get("sha_var"))
               == out[2][i].get("sha_totals", out[2][i].get("sha_var")) for i in range(2))
    return {"mode": "threads", "n": n, "reps": reps, "bit_identical": same,
            "seconds_1_thread": [r["seconds"] for r in out[1]],
            "seconds_2_threads": [r["seconds"] for r in out[2]],
            "hashes_1": [r.get("sha_totals", r.get("sha_var")) for r in out[1]],
            "hashes_2": [r.get("sha_totals", r.get("sha_var")) for r in out[2]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["t5d", "t6e", "big", "threads"])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=500)
    a = ap.parse_args()
    if a.mode in ("t5d", "big"):
        r = t5d(a.n, a.reps)
    elif a.mode == "t6e":
        r = t6e(a.n)
    else:
        r = threads(a.n, a.reps)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
