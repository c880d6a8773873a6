"""Render run.py's results.json as one markdown table per size (the tables of RESULTS.md).

    python benchmarks/tables.py benchmarks/out/final/results.json [more results.json ...]

One row per measured or attempted cell (cells marked ``n/s`` -- no documented API -- are
left out): median seconds († = warm-up only), timed runs, peak RSS, the ratio of the peer's
median to satsample's (> 1: satsample faster), the answer check against satsample and its
verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASK_NAMES = {
    "T1": "rake, 3 margins",
    "T2": "post-strat sex x age",
    "T3": "22 props, Taylor",
    "T4": "22 props x 100 agencies, Taylor",
    "T5": "Rao-Wu bootstrap R=500, 22 props",
    "T5d": "Rao-Wu bootstrap R=500, 22 props x 100 agencies",
    "T6": "JKn, 500 grouped PSUs, 22 props",
    "T6e": "JKn, element PSUs (R = n), 22 props",
    "T7": "pipeline: design, Rao-Wu R=500, NR adj. + rake replayed, 22 props x 100 agencies",
}


def render(rows: list[dict]) -> str:
    out = []
    for n in sorted({r["n"] for r in rows}):
        out += [f"#### n = {n:,}", "",
                "| task | peer | median s | timed runs | peak RSS GiB | peer / satsample "
                "| check vs satsample | verdict |",
                "|---|---|---:|---:|---:|---:|---|---|"]
        for r in rows:
            if r["n"] != n or r["status"] == "n/s":
                continue
            task = f"{r['task']} {TASK_NAMES.get(r['task'], '')}"
            if r["status"] != "ok":
                out.append(f"| {task} | {r['peer']} | {r['status']} | | | | | |")
                continue
            dag = "†" if r["runs"] == 0 else ""
            ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
            verdict = {True: "pass", False: "**FAIL**", None: "(reference)"}[r.get("pass")]
            check = r.get("check", "").replace("|", "\\|")
            if r.get("sub"):
                check += " (" + ", ".join(f"{k} {v:.3g} s" for k, v in r["sub"].items()) + ")"
            out.append(f"| {task} | {r['peer']} | {r['median']:.3g}{dag} | {r['runs']} | "
                       f"{r['rss']:.2f} | {ratio} | {check} | {verdict} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    rows = []
    for path in sys.argv[1:]:
        rows += json.loads(Path(path).read_text())["rows"]
    print(render(rows))
