"""Benchmarks of satsample against its peers on the workloads of performance.md.

    python benchmarks/run.py [--sizes 50000,200000] [--tasks T1,...,T6e]
                             [--peers svy,samplics,weightipy,balance,numpy]
                             [--replicates 500] [--runs 3] [--timeout 300]
                             [--max-rss-gib 12] [--out benchmarks/out] [--quick]

satsample is always run: it is the reference every peer's answer is checked
against (numpy's when satsample's own cell failed).  Every (peer, task, n) cell
runs in its own subprocess (``--child``): the data are rebuilt there
(untimed), the peer's input objects are built (untimed), then one warm-up and
up to ``--runs`` timed calls, as many as fit in the cell's time budget (none
when the warm-up took > ``--warmup-only-after`` = 100 s: the cell is then marked
† and its time is the warm-up's).  Peak memory is the child's high-water RSS (``ru_maxrss``).  A cell
is killed after ``--timeout`` seconds or when its RSS exceeds ``--max-rss-gib``
(12 GiB: the 23 GiB machine is shared); a larger n is not started when a smaller
n of the same (peer, task) timed out, or when linear scaling of its median
predicts more than ``--timeout`` seconds (or of its peak RSS more than
``--max-rss-gib``).  ``--quick`` is a smoke run: n = 20,000, 1 timed run,
R = 50, timeout 60 s, warm-up only after 5 s.  Results go to ``results.md`` and ``results.json`` in
``--out``; see benchmarks/README.md for how to read them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = ROOT.parent / "bench-data"  # outside the repository
TASKS = {
    "T1": "rake, 3 margins",
    "T2": "post-strat sex x age",
    "T3": "22 props, Taylor",
    "T4": "22 props x 100 domains, Taylor",
    "T5": "Rao-Wu bootstrap, 22 props",
    "T5d": "Rao-Wu bootstrap, 22 props x 100 domains",
    "T6": "JKn (500 grouped PSUs), 22 props",
    "T6e": "JKn, element PSUs (R = n)",
    "T7": "design + Rao-Wu + NR adj. + rake replayed, 22 props x 100 domains",
    "T7d": "T7 on Dask: Parquet read lazily, LocalCluster",
}
# tasks that read the Parquet set of parquet_data.py (T7 too when T7d runs, so that both
# see the same rows and their answers can be compared)
PARQUET_TASKS = {"T7d"}
T7_COLUMNS = ["agency_id", "design_weight", "sex", "age", "responded"]
WARM_N = 20_000  # the small set on which the Dask workers compile their kernels
PEERS = ["svy", "samplics", "weightipy", "balance", "numpy", "R"]
SUPPORT = {
    "satsample": set(TASKS),
    "numpy": set(TASKS) - {"T7d"},
    "svy": {"T1", "T2", "T3", "T4", "T5", "T5d", "T6", "T7"},
    "samplics": {"T1", "T2", "T3", "T4", "T5", "T5d", "T6"},
    "weightipy": {"T1", "T2"},
    "balance": {"T1", "T2"},
    "R": {"T7"},
}
# T6e needs R = n replicates: samplics and svy build the n x R replicate matrix (n x n)
INFEASIBLE = {("svy", "T6e"), ("samplics", "T6e")}
MODULES = {"satsample": "satsample_peer", "numpy": "numpy_peer", "svy": "svy_peer",
           "samplics": "samplics_peer", "weightipy": "weightipy_peer",
           "balance": "balance_peer", "R": "r_peer"}
# the import name of each peer's package in the main environment
PACKAGES = {"satsample": "satsample", "numpy": "numpy", "svy": "svy", "samplics": "samplics",
            "weightipy": "weightipy"}
NOTES = {("weightipy", "T2"): "emulated: one-margin rim on the sex x age cell from unit "
                              "weights (weights differ from post-stratified design weights "
                              "by construction)"}
WARMUP_ONLY_S = 100.0


# ---------------------------------------------------------------------------- child


def margin_error(w: np.ndarray, task: str, meta: dict) -> float:
    """Largest relative gap between the weighted margins and their controls."""
    if task == "T1":
        pairs = zip(meta["codes"], meta["totals"])
    else:
        pairs = [(meta["cell"], meta["cell_tot"])]
    return max(float(np.max(np.abs(np.bincount(c, weights=w, minlength=t.size) - t) / t))
               for c, t in pairs)


def _parquet_data(task: str, n: int, opts: dict) -> tuple:
    """(frame, meta) of a cell that reads the Parquet set (T7 in memory, T7d lazily)."""
    import pandas as pd
    from parquet_data import margin_series, read_meta, set_dir
    from workloads import ITEMS, population

    path = set_dir(opts["data_dir"], n)
    margins = json.loads((path / "_margins.json").read_text())
    meta = {"pop": population(), "path": path, "n_rows": read_meta(path)["n"]}
    if task == "T7d":
        meta.update(warm_path=set_dir(opts["data_dir"], WARM_N), dask=opts["dask"],
                    margins=margin_series(margins))
        return None, meta
    t0 = time.perf_counter()
    df = pd.read_parquet(path, columns=[*T7_COLUMNS, *ITEMS])
    meta["load_s"] = time.perf_counter() - t0
    return df, meta


def child(peer: str, task: str, n: int, reps: int, runs: int, budget: float, warm_only: float,
          out: str, opts: dict | None = None) -> None:
    start = time.perf_counter()
    sys.path[:0] = [str(HERE), str(ROOT)]
    from workloads import make_data

    opts = opts or {}
    if task == "T7d" or (task == "T7" and opts.get("t7_parquet")):
        df, meta = _parquet_data(task, n, opts)
    else:
        df, meta = make_data(n)
    mod = importlib.import_module(f"peers.{MODULES[peer]}")
    fn = mod.prepare(task, df, meta, reps)
    t0 = time.perf_counter()
    res = fn()
    warm = time.perf_counter() - t0
    extra = res.pop("_info", None)
    subs = [res.pop("_sub")] if "_sub" in res else []
    # timed runs that fit in the budget (90 % of the cell timeout)
    left = 0.9 * budget - (time.perf_counter() - start)
    k = 0 if warm > warm_only else min(runs, max(0, int(left // max(warm, 1e-9))))
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
        extra = res.pop("_info", extra)
        if "_sub" in res:
            subs.append(res.pop("_sub"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    info = {"warm": warm, "times": times, "rss_gib": rss,
            "n_rows": len(df) if df is not None else meta["n_rows"]}
    if extra is not None:  # T7d: the workers' memory during the last call, the pipeline run
        info["dask"] = extra
    if "load_s" in meta:  # T7 from Parquet: pandas.read_parquet (untimed)
        info["load_s"] = meta["load_s"]
    if subs:  # median sub-times of the timed runs (of the warm-up if none)
        use = subs[1:] or subs
        info["sub"] = {key: float(np.median([s[key] for s in use])) for key in use[0]}
    if "w" in res:
        info["margin_err"] = margin_error(np.asarray(res["w"], dtype=np.float64), task, meta)
    np.savez(out, **{key: np.asarray(v, dtype=np.float64) for key, v in res.items()})
    Path(out + ".json").write_text(json.dumps(info))
    if "_close" in meta:  # T7d: the client and the LocalCluster
        for obj in meta["_close"]:
            obj.close()


# --------------------------------------------------------------------------- parent


def _adapter(peer: str):
    sys.path[:0] = [p for p in (str(HERE), str(ROOT)) if p not in sys.path]
    return importlib.import_module(f"peers.{MODULES[peer]}")


def availability(peer: str) -> str | None:
    """None if the peer can be run, else the status to print in its cells."""
    if peer not in MODULES:
        return "no adapter"
    if peer in PACKAGES:
        if importlib.util.find_spec(PACKAGES[peer]) is None:
            return "not installed"
        return None
    mod = _adapter(peer)  # balance: its own interpreter
    return mod.available()


def interpreter(peer: str) -> str:
    if peer in PACKAGES:
        return sys.executable
    return _adapter(peer).interpreter()


def _rss_now(pid: int) -> float:
    """Current resident set of a process in GiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _watch(cmd: list[str], env: dict, timeout: float, max_rss: float, errfile: str):
    """Run a cell's child; kill it after ``timeout`` s or when its RSS exceeds ``max_rss`` GiB.

    Returns None on success, "timeout", "rss", or the exit status."""
    with open(errfile, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        t_end = time.perf_counter() + timeout
        while True:
            try:
                rc = p.wait(timeout=0.25)
                return None if rc == 0 else rc
            except subprocess.TimeoutExpired:
                pass
            why = ("timeout" if time.perf_counter() > t_end
                   else "rss" if _rss_now(p.pid) > max_rss else None)
            if why:
                p.kill()
                p.wait()
                return why


def run_cell(peer: str, task: str, n: int, args) -> dict:
    out = str(Path(args.out) / f"{peer}_{task}_{n}")
    for suffix in (".npz", ".json", ".stderr"):
        Path(out + suffix).unlink(missing_ok=True)
    cmd = [interpreter(peer), str(Path(__file__).resolve()), "--child", peer, task, str(n),
           str(args.replicates), str(args.runs), str(args.timeout), str(args.warmup_only_after), out,
           json.dumps(child_options(args))]
    env = dict(os.environ)
    if peer == "numpy":
        # performance.md: OpenBLAS threads make the per-stratum matmuls 3-4x slower on 2 cores
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
    t0 = time.perf_counter()
    killed = _watch(cmd, env, args.timeout, args.max_rss_gib, out + ".stderr")
    stderr = Path(out + ".stderr").read_text(errors="replace")
    if killed == "timeout":
        return {"status": f"timeout > {args.timeout:g} s", "timeout": True}
    if killed == "rss":
        return {"status": f"killed: RSS > {args.max_rss_gib:g} GiB", "timeout": True}
    if killed is not None:  # exit status
        last = (stderr.strip().splitlines() or ["?"])[-1][:200]
        return {"status": "error: " + last}
    info = json.loads(Path(out + ".json").read_text())
    info["status"] = "ok"
    info["wall"] = time.perf_counter() - t0
    info["median"] = float(np.median(info["times"] or [info["warm"]]))
    info["result"] = dict(np.load(out + ".npz"))
    return info


def child_options(args) -> dict:
    """What a cell's child needs beyond (peer, task, n): the Parquet set and the cluster."""
    tasks = set(getattr(args, "tasks_list", ()))
    return {"data_dir": str(getattr(args, "data_dir", "")),
            "t7_parquet": bool(tasks & PARQUET_TASKS),
            "dask": {"workers": getattr(args, "dask_workers", 2),
                     "threads": getattr(args, "dask_threads", 1),
                     "memory_gib": getattr(args, "dask_memory_gib", 6.0)}}


def ensure_data(args, sizes: list[int]) -> dict:
    """Write the Parquet sets the tasks need (and the small warm-up set); their _meta.json."""
    from parquet_data import read_meta, write

    out = {}
    for n in sorted({*sizes, WARM_N}):
        t0 = time.perf_counter()
        path = write(n, args.data_dir)
        meta = read_meta(path)
        meta["this_run_s"] = time.perf_counter() - t0
        print(f"data n={n:,}: {path} ({meta['bytes'] / 2**20:.0f} MiB, written in "
              f"{meta['seconds']:.1f} s{'' if meta['this_run_s'] > 1 else ', reused'})",
              flush=True)
        out[n] = {k: meta[k] for k in ("n", "seed", "files", "max_rows_per_file", "bytes",
                                       "seconds", "generate_s", "write_s")} | {"dir": str(path)}
    return out


def compare_dask(c: dict, mem: dict) -> tuple[str, bool, dict]:
    """T7d against the in-memory T7 on the same rows: time ratio, largest relative differences."""
    res, rr = c["result"], mem["result"]
    diffs = {}
    for k in ("est", "se", "index_est", "index_se"):
        a, b = np.asarray(res[k]), np.asarray(rr[k])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(a - b) / np.abs(b)
        diffs[k] = float(np.nanmax(np.where(b == a, 0.0, rel)))
    same = bool(all(np.array_equal(np.isnan(res[k]), np.isnan(rr[k])) for k in diffs))
    ok = same and max(diffs.values()) < 1e-10
    ratio = c["median"] / mem["median"]
    text = (f"vs T7 in memory: time x{ratio:.2f}; max rel diff estimates {diffs['est']:.1e}, "
            f"SEs {diffs['se']:.1e} (index {diffs['index_est']:.1e} / {diffs['index_se']:.1e})")
    return text, ok, {"ratio_to_memory": ratio, "max_rel_diff": diffs}


def _mc_sd(reps: int) -> float:
    """Relative SD of the ratio of two independent bootstrap SEs with R replicates."""
    return math.sqrt(1.0 / (reps - 1))


def check(peer: str, task: str, c: dict, ref: dict, ref_name: str, reps: int) -> tuple[str, bool]:
    """Compare one cell's answer with the reference's; returns (text, passed)."""
    res, rr = c["result"], ref["result"]
    if task in ("T1", "T2"):
        merr = c["margin_err"]
        dw = float(np.max(np.abs(res["w"] / rr["w"] - 1)))
        text = f"margin err {merr:.1e}; w vs {ref_name} {dw:.1e}"
        tol = 1e-3 if task == "T1" else 1e-9  # T1: balance stops at ~5e-4 by default
        ok = merr < tol and (dw < 2 * tol or (peer, task) in NOTES)
        if (peer, task) in NOTES:
            text += " (emulated)"
        return text, ok
    dp = float(np.nanmax(np.abs(res["est"] - rr["est"])))
    r = res["se"] / rr["se"]
    text = (f"max|dp| {dp:.1e}; SE/{ref_name} med {np.nanmedian(r):.4f} "
            f"[{np.nanmin(r):.3f}, {np.nanmax(r):.3f}]")
    ok = dp < 1e-9 and bool(np.all(np.isfinite(r)))
    if task in ("T5", "T5d", "T7"):  # different random streams: Monte-Carlo agreement only
        s = _mc_sd(reps)
        ok = ok and abs(np.median(r) - 1) < 3 * s and bool(np.all(np.abs(r - 1) < 6 * s))
        text += " (MC)"
    else:
        ok = ok and bool(np.all(np.abs(r - 1) < 1e-6))
    return text, ok


def skip_reason(history: list, n: int, args) -> str | None:
    """Predicted-time/memory skip from the smaller sizes already run for this (peer, task)."""
    for m, c in history:
        if m < n and c.get("timeout"):
            why = "timed out" if c["status"].startswith("timeout") else "RSS limit"
            return f"skip ({why} at n={m:,})"
        if m < n and c.get("skipped"):
            return "skip"
    done = [(m, c) for m, c in history if m < n and c["status"] == "ok"]
    if not done:
        return None
    m, c = max(done, key=lambda mc: mc[0])
    pred = c["median"] * n / m
    if pred > args.timeout:
        return f"skip (>{pred:.0f} s pred.)"
    rss = c["rss_gib"] * n / m
    if rss > args.max_rss_gib:
        return f"skip (>{rss:.1f} GiB pred.)"
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated n (default 50000,200000)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="comma-separated, among " + ",".join(PEERS) + " (satsample always runs)")
    ap.add_argument("--replicates", type=int, default=None, help="bootstrap R (default 500)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs after the warm-up (3)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per cell (300)")
    ap.add_argument("--warmup-only-after", type=float, default=None,
                    help="no timed runs when the warm-up took longer (100 s; --quick: 5 s)")
    ap.add_argument("--max-rss-gib", type=float, default=12.0,
                    help="kill a cell whose RSS exceeds this (GiB; the machine has 23 and is "
                         "shared), and skip a larger n whose linearly predicted peak exceeds it")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--data-dir", default=str(DATA_DIR),
                    help="where the Parquet sets of T7d are written and read (default: "
                         "../bench-data next to the repository); with T7d, T7 reads them too")
    ap.add_argument("--dask-workers", type=int, default=2, help="T7d: LocalCluster worker processes")
    ap.add_argument("--dask-threads", type=int, default=1, help="T7d: threads per worker")
    ap.add_argument("--dask-memory-gib", type=float, default=6.0,
                    help="T7d: memory_limit per worker (GiB)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: n=20,000, 1 timed run, R=50, timeout 60 s, warm-up only after 5 s")
    args = ap.parse_args(argv)
    quick = {"sizes": "20000", "runs": 1, "replicates": 50, "timeout": 60.0,
             "warmup_only_after": 5.0}
    full = {"sizes": "50000,200000", "runs": 3, "replicates": 500, "timeout": 300.0,
            "warmup_only_after": WARMUP_ONLY_S}
    for key, val in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; choose among {list(TASKS)}")
    if "T7" in tasks and "T5d" not in tasks:  # the T7 targets are ratios to T5d in the same run
        tasks.insert(tasks.index("T7"), "T5d")
    args.tasks_list = tasks
    data = ensure_data(args, sizes) if set(tasks) & PARQUET_TASKS else {}
    peers = [p for p in args.peers.split(",") if p and p != "satsample"]
    avail = {p: availability(p) for p in ["satsample", *peers]}
    t_start = time.perf_counter()
    rows, history = [], {}
    for n in sizes:
        for task in tasks:
            cells = {}
            for peer in ["satsample", *peers]:
                hist = history.setdefault((peer, task), [])
                if avail[peer] is not None:
                    c = {"status": avail[peer]}
                elif (peer, task) in INFEASIBLE:
                    c = {"status": "infeasible (n×n)"}
                elif task not in SUPPORT.get(peer, ()):
                    c = {"status": "n/s"}
                elif (why := skip_reason(hist, n, args)) is not None:
                    c = {"status": why, "skipped": True}
                else:
                    c = run_cell(peer, task, n, args)
                hist.append((n, c))
                cells[peer] = c
            if task == "T7d" and cells["satsample"]["status"] == "ok":
                mem = dict(history.get(("satsample", "T7"), [])).get(n, {})
                dask_row(cells["satsample"], mem, n, args)
            ref_name = "satsample" if cells["satsample"]["status"] == "ok" else "numpy"
            ref = cells.get(ref_name, {"status": "absent"})
            for peer, c in cells.items():
                line = {"task": task, "n": n, "peer": peer, "status": c["status"]}
                if c["status"] == "ok":
                    line.update(median=c["median"], warm=c["warm"], runs=len(c["times"]),
                                rss=c["rss_gib"], sub=c.get("sub"), n_rows=c["n_rows"])
                    if peer == ref_name and "margin_err" in c:
                        line["check"] = f"margin err {c['margin_err']:.1e}"
                    for key in ("dask", "load_s", "vs_memory"):
                        if key in c:
                            line[key] = c[key]
                    if "vs_memory_check" in c:
                        line["check"], line["pass"] = c["vs_memory_check"]
                    if ref["status"] == "ok" and peer != ref_name:
                        line["check"], line["pass"] = check(peer, task, c, ref, ref_name,
                                                            args.replicates)
                    if cells["satsample"]["status"] == "ok":
                        line["ratio"] = c["median"] / cells["satsample"]["median"]
                rows.append(line)
                print(_fmt(line), flush=True)
    elapsed = time.perf_counter() - t_start
    md = _table(rows, args, peers, sizes, tasks, elapsed)
    if "T7" in tasks:
        md += _t7_targets(rows, sizes)
    if "T7d" in tasks:
        md += _dask_table(rows, args, data)
    (Path(args.out) / "results.md").write_text(md)
    (Path(args.out) / "results.json").write_text(json.dumps(
        {"args": vars(args), "elapsed_s": elapsed, "data": data, "rows": rows}, indent=1))
    print(md)
    failed = [r for r in rows if r.get("pass") is False]
    if failed:
        print(f"{len(failed)} answer check(s) FAILED", file=sys.stderr)
        sys.exit(1)


def dask_row(c: dict, mem: dict, n: int, args) -> None:
    """Attach to a T7d cell its comparison with the in-memory T7 of the same n (if run)."""
    if mem.get("status") != "ok":
        return
    if c.get("dask", {}).get("pipeline") != "pipeline":  # fallback: no weighting on Dask
        c["vs_memory"] = {"ratio_to_memory": c["median"] / mem["median"]}
        c["vs_memory_check"] = (f"vs T7 in memory: time x{c['median'] / mem['median']:.2f}; "
                                "answers not comparable (Dask ran the index without weighting)",
                                None)
        return
    text, ok, info = compare_dask(c, mem)
    c["vs_memory"] = info
    c["vs_memory_check"] = (text, ok)


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _dask_table(rows, args, data) -> str:
    out = ["", "### T7d on Dask", "",
           f"LocalCluster: {args.dask_workers} worker processes x {args.dask_threads} thread(s), "
           f"memory_limit {args.dask_memory_gib:g} GiB per worker.  Worker peak = the worker "
           "process's VmHWM over the timed call (sampled maximum in brackets); client = the "
           "benchmark process's peak RSS.", "",
           "| n | pipeline | median s | timed runs | warm-up s | sub-times (s) | worker peak GiB "
           "(sampled) | limit GiB | client GiB | T7 in memory s (read s) | Dask / memory | "
           "max rel diff est / SE | data |",
           "|---:|---|---:|---:|---:|---|---|---:|---:|---|---:|---|---|"]
    by = {(r["task"], r["n"], r["peer"]): r for r in rows}
    for r in rows:
        if r["task"] != "T7d" or r["peer"] != "satsample" or r["status"] != "ok":
            continue
        d = r.get("dask", {})
        peaks = ", ".join(f"{v:.2f} ({d.get('sampled_gib', {}).get(w, float('nan')):.2f})"
                          for w, v in d.get("peak_gib", {}).items())
        lim = max(d.get("limit_gib", {0: float("nan")}).values())
        mem = by.get(("T7", r["n"], "satsample"), {})
        mem_s = (f"{_secs(mem['median'])} ({mem.get('load_s', float('nan')):.2g})"
                 if mem.get("status") == "ok" else mem.get("status", "not run"))
        vs = r.get("vs_memory", {})
        ratio = f"{vs['ratio_to_memory']:.2f}x" if "ratio_to_memory" in vs else ""
        diff = vs.get("max_rel_diff")
        diff = f"{diff['est']:.1e} / {diff['se']:.1e}" if diff else ""
        sub = ", ".join(f"{k} {_secs(v)}" for k, v in (r.get("sub") or {}).items())
        dm = data.get(r["n"], {})
        dtxt = (f"{dm.get('files', '?')} files, {dm.get('bytes', 0) / 2**20:.0f} MiB, "
                f"written in {dm.get('seconds', float('nan')):.0f} s") if dm else ""
        out.append(f"| {r['n']:,} | {d.get('pipeline', '?')} | {_secs(r['median'])} | {r['runs']} | "
                   f"{_secs(r['warm'])} | {sub} | {peaks} | {lim:g} | {r['rss']:.2f} | {mem_s} | "
                   f"{ratio} | {diff} | {dtxt} |")
        if "fallback_reason" in d:
            out.append(f"\n(n = {r['n']:,}: the Dask pipeline could not run: "
                       f"{d['fallback_reason']}; the Dask index without weighting was timed.)\n")
    return "\n".join(out) + "\n"


def _fmt(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['task']:4} {r['n']:>10,} {r['peer']:10} {r['status']}"
    verdict = {True: "ok", False: "FAIL", None: ""}[r.get("pass")]
    return (f"{r['task']:4} {r['n']:>10,} {r['peer']:10} {r['median']:.4g} s  {r['rss']:.2f} GiB  "
            f"x{r.get('ratio', float('nan')):.2f}  {r.get('check', '')} {verdict}")


def _cell(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    dagger = "†" if r["runs"] == 0 else ""
    return f"{r['median']:.3g} s{dagger} / {r['rss']:.2f} GiB"


def _t7_targets(rows, sizes) -> str:
    """Issue 12's targets read off this run (recorded, never asserted)."""
    by = {(r["task"], r["n"], r["peer"]): r for r in rows if r["status"] == "ok"}
    out = ["", "### T7 targets (issue 12), this run", "",
           "| n | T7 s | T5d s | T7 / T5d (target <= 3 at 200k) | svy / T7 (target >= 30 at 200k) "
           "| T7 peak GiB (target < 1.5 at 1M) | T7 under 4 s (1M) |",
           "|---:|---:|---:|---:|---:|---:|---|"]
    for n in sizes:
        t7, t5 = by.get(("T7", n, "satsample")), by.get(("T5d", n, "satsample"))
        if t7 is None:
            continue
        svy = by.get(("T7", n, "svy"))
        ratio = f"{t7['median'] / t5['median']:.2f}x" if t5 else ""
        vs_svy = f"{svy['median'] / t7['median']:.1f}x" if svy else ""
        under4 = ("yes" if t7["median"] < 4.0 else "no") if n >= 1_000_000 else ""
        out.append(f"| {n:,} | {t7['median']:.3g} | {t5['median'] if t5 else float('nan'):.3g} "
                   f"| {ratio} | {vs_svy} | {t7['rss']:.2f} | {under4} |")
    return "\n".join(out) + "\n"


def _table(rows, args, peers, sizes, tasks, elapsed) -> str:
    cols = ["satsample", *peers]
    out = [f"R = {args.replicates} bootstrap replicates; medians of up to {args.runs} timed runs "
           f"after one warm-up († = warm-up only); timeout {args.timeout:g} s per cell; "
           f"whole run {elapsed:.0f} s.", "",
           "Cells: median seconds / peak RSS (GiB).  n/s = no documented API; infeasible (n×n) "
           "= the peer would need an n x n replicate matrix; skip = not started (a smaller n "
           "timed out, or linear scaling predicted more than the timeout).", "",
           "| task | n | " + " | ".join(cols) + " |",
           "|---|---:|" + "---|" * len(cols)]
    by = {(r["task"], r["n"], r["peer"]): r for r in rows}
    for n in sizes:
        for t in tasks:
            out.append(f"| {t} {TASKS[t]} | {n:,} | "
                       + " | ".join(_cell(by[(t, n, p)]) for p in cols) + " |")
    out += ["", "### Peer / satsample (median time ratio; > 1: satsample faster)", "",
            "| task | n | " + " | ".join(peers) + " |", "|---|---:|" + "---:|" * len(peers)]
    for n in sizes:
        for t in tasks:
            vals = []
            for p in peers:
                r = by[(t, n, p)]
                vals.append(f"{r['ratio']:.2f}x" if "ratio" in r else "")
            out.append(f"| {t} | {n:,} | " + " | ".join(vals) + " |")
    out += ["", "### Every cell, with the answer check", "",
            "| peer | task | n | timed runs | warm-up s | median s | sub-times (s) | peak RSS GiB "
            "| check (vs reference) | verdict |",
            "|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            continue
        sub = ", ".join(f"{k} {v:.3g}" for k, v in (r.get("sub") or {}).items())
        verdict = {True: "pass", False: "**FAIL**", None: "reference"}[r.get("pass")]
        if r.get("pass") is None and r["task"] == "T7d" and r.get("check"):
            verdict = "n/a"
        out.append(f"| {r['peer']} | {r['task']} | {r['n']:,} | {r['runs']} | {r['warm']:.3g} | "
                   f"{r['median']:.3g} | {sub} | {r['rss']:.2f} | {r.get('check', '')} | "
                   f"{verdict} |")
    notes = [f"* {p} {t}: {txt}" for (p, t), txt in NOTES.items() if p in peers and t in tasks]
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        child(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]), float(a[6]), a[7],
              json.loads(a[8]) if len(a) > 8 else None)
    else:
        main()
