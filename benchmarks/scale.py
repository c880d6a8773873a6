"""Large-n checks through satsample's public API: memory, element JKn, thread-count bit identity.

    python benchmarks/scale.py t5d --n 1000000 --reps 500 --api proportion
    python benchmarks/scale.py t5d --n 1000000 --reps 500 --api index
    python benchmarks/scale.py t6e --n 250000,1000000,2000000
    python benchmarks/scale.py big --n 10000000 --reps 1000 --api proportion
    python benchmarks/scale.py threads --n 200000 --reps 500

``t5d``: T5d (22 items x 100 agencies, lazy Rao-Wu bootstrap with ``--reps``
replicates) through ``replicate.bootstrap(materialize=False)`` then
``estimation.proportion(by="agency", variance="replicate")`` (``--api
proportion``, on 22 uint8 0/1 columns) or ``index.satisfaction_index(by="agency",
variance="replicate")`` (``--api index``, the 22 five-point items of the
``reference_22`` questionnaire: index, 5 elements and 22 criteria per agency).
``--api kernel`` is the internal path for comparison (``satsample.variance.replicate.replicate_totals``
on the lazy design, no estimation layer).  ``big`` is ``t5d`` at 10M x 1,000.
``t6e``: element JKn (every response its own PSU, R = n) through
``replicate.jackknife(materialize=False)`` + ``proportion`` (closed form); with
several sizes each runs in its own process, to show that memory grows linearly.
``threads``: ``t5d`` (both APIs) and ``t6e`` in child processes with
``NUMBA_NUM_THREADS=1`` and ``=2``; compares SHA-256 hashes of the public
results (estimates, SEs, dfs, deffs of every table).

Data: ``workloads.make_data(n, lean=True)`` (agency codes, the raked weight,
22 uint8 items), so that 10M rows fit; the frame is dropped once the design
(which holds its own copy) is built.  Numba kernels are compiled by a warm-up on
n = 5,000 before the timed call.  Each mode prints one JSON line per check:
seconds of the timed call (replicate creation + estimation), peak RSS of the
process (``ru_maxrss``: imports, data, design, everything), and the peak
before the timed call (``rss_before_gib``).  Nothing here asserts a time.
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


def _sha(*arrays) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _numeric(t):
    """Float64 matrix of the numeric columns of a result table (estimate, se, df, deff...)."""
    import numpy as np

    return t.select_dtypes("number").to_numpy(dtype=np.float64)


def _design(n: int, api: str):
    """Lean sample -> SurveyDesign (strata = agency, element PSUs); the frame is dropped."""
    import numpy as np
    from workloads import ITEMS, SC, make_data

    from satsample import survey_design

    df, _ = make_data(n, lean=True)
    if api == "proportion":  # 0/1 satisfied indicators as uint8, items dropped
        for q, s in zip(ITEMS, SC):
            df[s] = (df[q].to_numpy() >= 4).astype(np.uint8)
        df = df.drop(columns=ITEMS)
    d = survey_design(df, strata="agency", weights="w")
    del df
    return d


def _t5d_call(d, reps: int, api: str):
    """The timed public call; returns (arrays to hash, median SE)."""
    import numpy as np
    from workloads import ITEMS, SC

    from satsample import replicate

    dl = replicate.bootstrap(d, replicates=reps, kind="subbootstrap", rng=11, materialize=False)
    if api == "proportion":
        from satsample.estimation import proportion

        e = proportion(dl, SC, by="agency", variance="replicate", deff="srswr")
        return [_numeric(e.table)], float(np.median(e.table["se"]))
    if api == "index":
        from satsample import load_questionnaire
        from satsample.index import satisfaction_index

        q = load_questionnaire("reference_22")
        e = satisfaction_index(dl, q, by="agency", variance="replicate", deff="srswr")
        tabs = [_numeric(e.overall), _numeric(e.elements), _numeric(e.items)]
        return tabs, float(np.median(e.items["se"]))
    # internal kernel path (no estimation layer), for comparison only
    from satsample.variance import replicate as rt

    vals = np.empty((d.n, len(ITEMS) + 1), dtype=np.uint8)
    vals[:, :-1] = d.data[ITEMS].to_numpy() >= 4
    vals[:, -1] = 1
    tot = rt.replicate_totals(dl, vals, domain=d.strata, n_domains=d.n_strata)
    p_r = tot[..., :-1] / tot[..., -1:]
    var = dl.replicates.variance(p_r, p_r.mean(axis=0))
    return [tot], float(np.median(np.sqrt(var)))


def t5d(n: int, reps: int, api: str, mode: str = "t5d") -> dict:
    _t5d_call(_design(5_000, api), 20, api)  # compile the kernels (untimed)
    d = _design(n, api)
    rss_before = _rss()
    t0 = time.perf_counter()
    arrays, se_med = _t5d_call(d, reps, api)
    sec = time.perf_counter() - t0
    return {"mode": mode, "api": api, "n": d.n, "reps": reps, "seconds": round(sec, 3),
            "rss_gib": round(_rss(), 3), "rss_before_gib": round(rss_before, 3),
            "sha": _sha(*arrays), "se_median": se_med,
            "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default")}


def _t6e_call(d):
    import numpy as np
    from workloads import SC

    from satsample import replicate
    from satsample.estimation import proportion

    dj = replicate.jackknife(d, kind="JKn", materialize=False)  # R = n, closed form
    e = proportion(dj, SC, variance="replicate", deff="srswr")
    return [_numeric(e.table)], float(np.median(e.table["se"]))


def t6e(n: int) -> dict:
    _t6e_call(_design(5_000, "proportion"))
    d = _design(n, "proportion")
    rss_before = _rss()
    t0 = time.perf_counter()
    arrays, se_med = _t6e_call(d)
    sec = time.perf_counter() - t0
    return {"mode": "t6e", "api": "proportion", "n": d.n, "reps": d.n, "seconds": round(sec, 3),
            "rss_gib": round(_rss(), 3), "rss_before_gib": round(rss_before, 3),
            "sha": _sha(*arrays), "se_median": se_med,
            "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default")}


def _child(args: list[str], env=None) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       env=env, timeout=1800, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def threads(n: int, reps: int) -> dict:
    runs = [["t5d", "--n", str(n), "--reps", str(reps), "--api", "proportion"],
            ["t5d", "--n", str(n), "--reps", str(reps), "--api", "index"],
            ["t6e", "--n", str(n)]]
    out = {}
    for t in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(t))
        out[t] = [_child(a, env) for a in runs]
    names = [f"{r['mode']}-{r['api']}" for r in out[1]]
    return {"mode": "threads", "n": n, "reps": reps,
            "bit_identical": all(a["sha"] == b["sha"] for a, b in zip(out[1], out[2])),
            "checks": names,
            "sha_1_thread": [r["sha"] for r in out[1]],
            "sha_2_threads": [r["sha"] for r in out[2]],
            "seconds_1_thread": [r["seconds"] for r in out[1]],
            "seconds_2_threads": [r["seconds"] for r in out[2]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["t5d", "t6e", "big", "threads"])
    ap.add_argument("--n", default=None,
                    help="responses (t6e: comma-separated sizes allowed); default 1,000,000 "
                         "(big: 10,000,000; threads: 200,000)")
    ap.add_argument("--reps", type=int, default=None,
                    help="bootstrap replicates (default 500; big: 1,000)")
    ap.add_argument("--api", choices=["proportion", "index", "kernel"], default="proportion")
    a = ap.parse_args()
    default_n = {"big": "10000000", "threads": "200000"}.get(a.mode, "1000000")
    sizes = [int(s.replace("_", "")) for s in (a.n or default_n).split(",")]
    reps = a.reps or (1000 if a.mode == "big" else 500)
    if a.mode in ("t5d", "big"):
        print(json.dumps(t5d(sizes[0], reps, a.api, a.mode)))
    elif a.mode == "t6e":
        if len(sizes) == 1:
            print(json.dumps(t6e(sizes[0])))
        else:
            for m in sizes:
                print(json.dumps(_child(["t6e", "--n", str(m)])), flush=True)
    else:
        print(json.dumps(threads(sizes[0], reps)))


if __name__ == "__main__":
    main()
