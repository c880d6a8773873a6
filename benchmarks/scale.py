"""Large-n checks through satsample's public API: memory, element JKn, thread-count bit identity.

    python benchmarks/scale.py t5d --n 1000000 --reps 500 --api proportion
    python benchmarks/scale.py t5d --n 1000000 --reps 500 --api index
    python benchmarks/scale.py t6e --n 250000,1000000,2000000
    python benchmarks/scale.py big --n 10000000 --reps 1000 --api proportion
    python benchmarks/scale.py threads --n 200000 --reps 500
    python benchmarks/scale.py construct --n 200000,1000000

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
``construct``: ``survey_design`` on the full benchmark frame (``make_data(n)``: 54
columns, strings included): seconds (median of 3), traced peak and retained memory
(``tracemalloc``, which numpy reports to) and resident-set growth, over the frame's own
memory; then T3 and T4 *including the design construction* (``survey_design`` +
``proportion``, public API) against the plain-numpy Taylor baseline of
``peers/numpy_peer.py`` on the same frame (medians of 3 after a warm-up).
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

    dl = replicate.bootstrap(d, n_replicates=reps, kind="subbootstrap", rng=11, materialize=False)
    if api == "proportion":
        from satsample.estimation import proportion

        e = proportion(dl, SC, by="agency", variance="replicate", deff="srswr")
        return [_numeric(e.table)], float(np.median(e.table["se"]))
    if api == "index":
        from satsample import load_questionnaire
        from satsample.estimation import satisfaction_index

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


def _statm_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def construct(n: int) -> dict:
    import statistics
    import tracemalloc

    from peers import numpy_peer
    from workloads import SC, make_data

    import satsample as ss

    df, meta = make_data(n)
    frame_gib = df.memory_usage(deep=True).sum() / 2**30

    def design():
        return ss.survey_design(df, strata="agency_id", weights="w", fpc="N_h")

    design()  # warm-up (imports, first-call costs)
    rss0 = _statm_gib()
    tracemalloc.start()
    d = design()
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = _statm_gib() - rss0
    del d
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        design()
        times.append(time.perf_counter() - t0)
    out = {"mode": "construct", "n": n, "frame_gib": round(frame_gib, 3),
           "design_seconds": round(statistics.median(times), 3),
           "design_traced_peak_gib": round(peak / 2**30, 3),
           "design_retained_gib": round(cur / 2**30, 3),
           "design_rss_growth_gib": round(rss_growth, 3)}
    for task in ("T3", "T4"):
        by = "agency_id" if task == "T4" else None

        def api(by=by):
            d = ss.survey_design(df, strata="agency_id", weights="w", fpc="N_h")
            return ss.proportion(d, SC, by=by, variance="taylor", deff="srswr")

        base = numpy_peer.prepare(task, df, meta, 0)
        res = {}
        for name, fn in (("satsample", api), ("numpy", base)):
            fn()  # warm-up
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            res[name] = statistics.median(ts)
        out[f"{task}_with_design_seconds"] = round(res["satsample"], 3)
        out[f"{task}_numpy_seconds"] = round(res["numpy"], 3)
        out[f"{task}_ratio"] = round(res["satsample"] / res["numpy"], 2)
    return out


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
    ap.add_argument("mode", choices=["t5d", "t6e", "big", "threads", "construct"])
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
    elif a.mode == "construct":
        for m in sizes:
            print(json.dumps(construct(m) if len(sizes) == 1 else
                             _child(["construct", "--n", str(m)])), flush=True)
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
