"""R ``survey`` (T7 only), driven through ``Rscript`` on ``peers/r_t7.R``.

``prepare()`` writes the T7 columns and the margins to CSV files (untimed); the timed call
runs ``Rscript r_t7.R`` and reads its answer.  The cell's time therefore includes starting R,
loading ``survey`` and reading the CSV; the R-side sub-times (``read``, ``replicates``,
``weighting``, ``estimates``, from ``proc.time()``) show the computation alone.  The
nonresponse adjustment is written on the weight matrices (R ``survey`` has no class
adjustment for replicate designs), then ``svrepdesign(type = "other")`` carries R's
subbootstrap scale; ``rake(..., control = list(maxit = 100, epsilon = 1e-10))``;
``svyby(~s01 + ... + s22, ~agency_id, svymean)``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from workloads import AGE, SC, SEX

HERE = Path(__file__).resolve().parent


def available() -> str | None:
    """None when Rscript and the survey package can be run, else the cell status."""
    if shutil.which("Rscript") is None:
        return "not installed (Rscript)"
    r = subprocess.run(["Rscript", "-e", "suppressMessages(library(survey))"],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else "not installed (R package survey)"


def interpreter() -> str:
    return sys.executable


def prepare(task: str, df, meta, reps: int):
    if task != "T7":
        raise NotImplementedError(task)
    tmp = Path(tempfile.mkdtemp(prefix="satsample-r-"))
    data = df[["agency_id", "design_weight", "sex", "age", *SC]].assign(
        responded=df["responded"].astype(int))
    data.to_csv(tmp / "data.csv", index=False)
    pop = meta["pop"]
    pd.DataFrame({"variable": ["sex"] * len(SEX) + ["age"] * len(AGE),
                  "level": SEX + AGE,
                  "Freq": np.r_[pop["sex_tot"], pop["age_tot"]]}).to_csv(tmp / "margins.csv",
                                                                          index=False)
    out = tmp / "out.csv"

    def run():
        subprocess.run(["Rscript", str(HERE / "r_t7.R"), str(tmp / "data.csv"),
                        str(tmp / "margins.csv"), str(reps), str(out)], check=True,
                       capture_output=True)
        res = pd.read_csv(out)
        times = [float(x) for x in Path(str(out) + ".times").read_text().split()]
        return {"est": res[SC].to_numpy(), "se": res[[f"se.{c}" for c in SC]].to_numpy(),
                "_sub": dict(zip(["read", "replicates", "weighting", "estimates"], times,
                                 strict=True))}
    return run
