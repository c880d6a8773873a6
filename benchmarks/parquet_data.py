"""The benchmark sample written as Parquet partitions, one agency at a time (issue 13).

    python benchmarks/parquet_data.py --n 10000000,50000000 [--data-dir ../bench-data] [--seed 7]

Writes ``<data-dir>/n<n>_s<seed>/part-<h>.parquet`` (``h`` = 000..099, one file and one row
group per agency, so every Dask partition holds whole strata), ``_margins.json`` (the frame
totals of the rake: sex and age group, plus the agencies' N_h) and ``_meta.json`` (n, seed,
rows per file, bytes, seconds; Parquet readers skip names that start with ``_``).  A set that exists (``_meta.json`` present) is reused; it is
written to a temporary directory renamed at the end, so an interrupted run leaves no
half-written set.  Memory: one agency at a time (at 50,000,000 responses the largest agency
has about 2.3 M rows, about 0.3 GiB while it is generated), never the whole frame.

The data have the distribution of :func:`workloads.make_data` (same population N_h, same
compromise allocation, same sex and age-group probabilities, same latent-level model of the
22 five-point items, same response model of ``responded``) but are drawn from per-agency
streams, ``SeedSequence(seed).spawn(1 + H)`` (the first child draws the agency effects and
the item shifts), so any agency can be generated alone.  They are therefore *not* the rows of
``make_data(n)`` (one stream over all n, which cannot be written in pieces).
:func:`make_frame` builds the same rows in memory (the concatenation of :func:`agency_frame`
over the agencies), which is what the in-memory T7 of ``run.py --data-dir`` compares with;
``benchmarks/test_parquet_data.py`` checks that a set read back with pandas and with Dask
equals :func:`make_frame`.

Columns: ``agency_id`` (str, ``A000``..``A099``; the strata and the domains), ``N_h`` (int64,
agency population, the fpc), ``psu`` (int64, 5 variance PSUs per agency, ``5 h + 0..4``),
``sex`` (str, ``F``/``M``), ``age`` (str, 6 groups), ``design_weight`` (float64, N_h / n_h),
``responded`` (bool, about 70 %), ``q01``..``q22`` (uint8, 1..5).  The raked analysis weight
``w`` of ``make_data`` is not written (it needs a pass over the whole sample; T7 starts from
the design weight).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workloads import AGE, ITEMS, SEX, H, K, allocation, population  # noqa: E402

DEFAULT_DIR = HERE.parent.parent / "bench-data"
COLUMNS = ["agency_id", "N_h", "psu", "sex", "age", "design_weight", "responded", *ITEMS]
VERSION = 1  # bump when the rows change, so that old sets are not reused


def plan(n: int, seed: int = 7) -> dict:
    """Population, allocation and the agency-level draws shared by every agency."""
    pop = population()
    n_h = allocation(n, pop["N_h"])
    root = np.random.SeedSequence(seed)
    children = root.spawn(1 + H)
    g = np.random.default_rng(children[0])
    level_h = g.normal(0.6, 0.5, H)  # agency mean of the latent satisfaction
    shift_j = g.normal(0.0, 0.2, K)  # item shift
    resp_h = g.normal(0.0, 0.4, H)  # agency effect on the response propensity
    return {"pop": pop, "n_h": n_h, "n": int(n_h.sum()), "level_h": level_h, "shift_j": shift_j,
            "resp_h": resp_h, "streams": children[1:], "seed": seed}


def agency_frame(p: dict, h: int) -> pd.DataFrame:
    """The rows of agency ``h`` (a pure function of the plan and ``h``)."""
    m = int(p["n_h"][h])
    N_h = int(p["pop"]["N_h"][h])
    rng = np.random.default_rng(p["streams"][h])
    sex = rng.choice(2, m, p=[0.55, 0.45]).astype(np.int8)
    age = rng.choice(6, m, p=[0.10, 0.20, 0.22, 0.20, 0.16, 0.12]).astype(np.int8)
    psu5 = rng.permutation(np.arange(m) % 5)
    level = p["level_h"][h] + rng.normal(0.0, 0.8, m)
    cols: dict[str, object] = {
        "agency_id": pd.array([f"A{h:03d}"] * m, dtype="str") if m else pd.array([], dtype="str"),
        "N_h": np.full(m, N_h, dtype=np.int64),
        "psu": (5 * h + psu5).astype(np.int64),
        "sex": pd.array(np.array(SEX, dtype=object)[sex], dtype="str"),
        "age": pd.array(np.array(AGE, dtype=object)[age], dtype="str"),
        "design_weight": np.full(m, N_h / m),
    }
    eta = 0.85 + 0.2 * (age - 2.5) + p["resp_h"][h]
    cols["responded"] = rng.random(m) < 1.0 / (1.0 + np.exp(-eta))
    buf = np.empty(m)
    for j, c in enumerate(ITEMS):
        rng.standard_normal(m, out=buf)
        buf += level
        buf += 3.1 + p["shift_j"][j]
        np.rint(buf, out=buf)
        np.clip(buf, 1, 5, out=buf)
        cols[c] = buf.astype(np.uint8)
    return pd.DataFrame(cols)


def make_frame(n: int, seed: int = 7) -> tuple[pd.DataFrame, dict]:
    """The whole sample in memory: the rows the Parquet set holds, in the same order."""
    p = plan(n, seed)
    df = pd.concat([agency_frame(p, h) for h in range(H)], ignore_index=True)
    return df, margins(p)


def margins(p: dict) -> dict:
    """Frame totals of the rake (sex, age group) and the agencies' N_h, as plain lists."""
    pop = p["pop"]
    return {"sex": dict(zip(SEX, map(float, pop["sex_tot"]))),
            "age": dict(zip(AGE, map(float, pop["age_tot"]))),
            "agency_id": {f"A{h:03d}": int(pop["N_h"][h]) for h in range(H)}}


def margin_series(m: dict) -> list[tuple[str, pd.Series]]:
    """The rake's margins for ``weighting.rake`` (sex, then age)."""
    return [("sex", pd.Series(m["sex"])), ("age", pd.Series(m["age"]))]


def set_dir(data_dir: str | os.PathLike, n: int, seed: int = 7) -> Path:
    return Path(data_dir) / f"n{n}_s{seed}"


def read_meta(path: Path) -> dict | None:
    f = path / "_meta.json"
    if not f.exists():
        return None
    meta = json.loads(f.read_text())
    return meta if meta.get("version") == VERSION else None


def write(n: int, data_dir: str | os.PathLike = DEFAULT_DIR, seed: int = 7, *,
          compression: str = "zstd", verbose: bool = False) -> Path:
    """Write the set of ``n`` responses (if absent) and return its directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = set_dir(data_dir, n, seed)
    if read_meta(out) is not None:
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    p = plan(n, seed)
    t_gen = t_write = 0.0
    for h in range(H):
        a = time.perf_counter()
        df = agency_frame(p, h)
        b = time.perf_counter()
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp / f"part-{h:03d}.parquet", compression=compression,
                       row_group_size=max(len(df), 1))
        t_gen += b - a
        t_write += time.perf_counter() - b
        del df, table
        if verbose and h % 10 == 9:
            print(f"  n={n:,}: {h + 1} agencies, {time.perf_counter() - t0:.0f} s", flush=True)
    (tmp / "_margins.json").write_text(json.dumps(margins(p), indent=1))
    nbytes = sum(f.stat().st_size for f in tmp.glob("*.parquet"))
    meta = {"version": VERSION, "n": p["n"], "n_requested": n, "seed": seed, "agencies": H,
            "files": H, "rows_per_file": [int(x) for x in p["n_h"]],
            "max_rows_per_file": int(p["n_h"].max()), "bytes": nbytes,
            "compression": compression, "columns": COLUMNS,
            "seconds": round(time.perf_counter() - t0, 2), "generate_s": round(t_gen, 2),
            "write_s": round(t_write, 2), "numpy": np.__version__, "pandas": pd.__version__,
            "pyarrow": pa.__version__}
    (tmp / "_meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="10000000", help="comma-separated numbers of responses")
    ap.add_argument("--data-dir", default=str(DEFAULT_DIR))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    for n in (int(s.replace("_", "")) for s in args.n.split(",")):
        out = write(n, args.data_dir, args.seed, verbose=True)
        meta = read_meta(out)
        print(json.dumps({"dir": str(out), **{k: meta[k] for k in
                          ("n", "files", "max_rows_per_file", "bytes", "seconds", "generate_s",
                           "write_s")}}), flush=True)


if __name__ == "__main__":
    main()
