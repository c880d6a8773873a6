"""Benchmarks of satsample against its peers on the workloads of performance.md.

    python benchmarks/run.py [--sizes 50000,200000] [--tasks T1,...]
                             [--peers satsample,svy,samplics,weightipy,balance,numpy]
                             [--replicates 500] [--runs 3] [--timeout 300]
                             [--out benchmarks/out]

Every (peer, task, n) cell runs in its own subprocess (``--child``): the data
are rebuilt there (untimed), the peer's set-up is done (untimed), then one
warm-up and ``--runs`` timed calls; peak memory is the child's high-water RSS
(``ru_maxrss``).  The parent checks every answer against satsample's and
writes ``results.md`` / ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TASKS = {
    "T1": "rake, 3 margins",
    "T2": "post-strat sex x age",
    "T3": "22 props, Taylor",
    "T4": "22 props x 100 domains, Taylor",
    "T5": "Rao-Wu bootstrap, 22 props",
    "T5d": "Rao-Wu bootstrap, 22 props x 100 domains",
    "T6": "JKn (500 grouped PSUs), 22 props",
    "T6e": "JKn, element PSUs (R = n)",
}
SUPPORT = {
    "satsample": set(TASKS),
    "numpy": set(TASKS),
    "svy": {"T1", "T2", "T3", "T4", "T5", "T5d", "T6"},
    "samplics": {"T3", "T4", "T5", "T6"},
}
MODULES = {"satsample": "satsample_peer", "numpy": "numpy_peer", "svy": "svy_peer",
           "samplics": "samplics_peer"}


def child(peer: str, task: str, n: int, reps: int, runs: int, out: str) -> None:
    sys.path[:0] = [str(HERE), str(ROOT)]
    from workloads import make_data

    df, meta = make_data(n)
    mod = importlib.import_module(f"peers.{MODULES[peer]}")
    fn = mod.prepare(task, df, meta, reps)
    t0 = time.perf_counter()
    res = fn()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(runs if warm < 100 else 0):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    np.savez(out, **{k: np.asarray(v, dtype=np.float64) for k, v in res.items()})
    Path(out + ".json").write_text(json.dumps({"warm": warm, "times": times, "rss_gib": rss}))


def run_cell(peer, task, n, args) -> dict:
    out = str(Path(args.out) / f"{peer}_{task}_{n}")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", peer, task, str(n),
           str(args.replicates), str(args.runs), out]
    env = dict(os.environ)
    if peer == "numpy":
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # see performance.md: faster here
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {args.timeout} s"}
    if p.returncode != 0:
        return {"status": "error: " + (p.stderr.strip().splitlines() or ["?"])[-1][:160]}
    info = json.loads(Path(out + ".json").read_text())
    info["status"] = "ok"
    info["median"] = float(np.median(info["times"] or [info["warm"]]))
    info["result"] = dict(np.load(out + ".npz"))
    return info


def check(res: dict, ref: dict, task: str, meta_w=None) -> str:
    if task in ("T1", "T2"):
        d = np.abs(res["w"] / ref["w"] - 1)
        return f"max rel |dw| vs satsample {d.max():.1e}"
    dp = np.nanmax(np.abs(res["est"] - ref["est"]))
    r = res["se"] / ref["se"]
    return (f"max|dp| {dp:.1e}; SE/satsample med {np.nanmedian(r):.4f} "
            f"[{np.nanmin(r):.3f}, {np.nanmax(r):.3f}]")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000,200000")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--peers", default="satsample,svy,samplics,weightipy,balance,numpy")
    ap.add_argument("--replicates", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    tasks = args.tasks.split(",")
    peers = [p for p in args.peers.split(",") if p != "satsample"]
    rows = []
    for n in sizes:
        for task in tasks:
            ref = run_cell("satsample", task, n, args)
            cells = {"satsample": ref}
            for peer in peers:
                if peer not in MODULES:
                    cells[peer] = {"status": "not installed/adapted"}
                    continue
                if task not in SUPPORT[peer]:
                    cells[peer] = {"status": "n/s"}
                    continue
                try:
                    importlib.import_module(peer if peer != "numpy" else "numpy")
                except ImportError:
                    cells[peer] = {"status": "not installed"}
                    continue
                cells[peer] = run_cell(peer, task, n, args)
            for peer, c in cells.items():
                line = {"task": task, "n": n, "peer": peer, "status": c["status"]}
                if c["status"] == "ok":
                    line.update(median=c["median"], warm=c["warm"], runs=len(c["times"]),
                                rss=c["rss_gib"])
                    if ref["status"] == "ok":
                        line["check"] = check(c["result"], ref["result"], task)
                        line["ratio"] = c["median"] / ref["median"]
                rows.append(line)
                print(_fmt(line), flush=True)
    md = _table(rows, args)
    (Path(args.out) / "results.md").write_text(md)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))
    print(md)


def _fmt(r):
    if r["status"] != "ok":
        return f"{r['task']:4} {r['n']:>9,} {r['peer']:10} {r['status']}"
    return (f"{r['task']:4} {r['n']:>9,} {r['peer']:10} {r['median']:.4g} s  {r['rss']:.2f} GiB  "
            f"x{r.get('ratio', float('nan')):.1f}  {r.get('check', '')}")


def _table(rows, args) -> str:
    out = [f"Replicates R = {args.replicates}; medians of {args.runs} timed runs after one "
           "warm-up; ratio = peer median / satsample median (> 1: satsample faster).", "",
           "| task | n | peer | median s | peak RSS GiB | peer / satsample | check vs satsample |",
           "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['task']} | {r['n']:,} | {r['peer']} | {r['status']} | | | |")
        else:
            out.append(f"| {r['task']} | {r['n']:,} | {r['peer']} | {r['median']:.4g} | "
                       f"{r['rss']:.2f} | {r.get('ratio', float('nan')):.1f}x | {r.get('check', '')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
              sys.argv[7])
    else:
        main()
