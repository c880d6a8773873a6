"""balance 0.23.0 (Meta): ``weighting_methods.rake.rake`` and ``poststratify.poststratify``.

balance pins numpy < 2 on Python < 3.12, which conflicts with samplics and svy
(numpy >= 2), so it lives in its own virtualenv.  run.py starts this adapter's
cells with the interpreter given by the environment variable
``SATSAMPLE_BALANCE_PYTHON`` (default ``/tmp/venv-balance/bin/python``); when
that interpreter is missing or cannot ``import balance`` the cells are reported
as "not installed".  The workload data are rebuilt there from the same seeds
(numpy's Generator streams are the same under numpy 1.26 and 2.x; the answer
check against satsample would show it if they were not).

How balance is driven (see ../../shared/docs/performance.md, "Pitfalls met on the way"):

* ``transformations=None``: the default ``"default"`` transformations would lump
  or bucket the 100 agencies.
* An exact aggregated target frame is passed (``target_df`` + ``target_weights``):
  for T1 the 2 x 6 x 100 cross of sex, age group and agency with weight
  p_sex * p_age * N_h, whose three margins are exactly the controls; for T2 the
  12 sex x age cells with their population counts.  ``target_margins=`` would
  round the controls onto a 10,000-row synthetic target.
* balance's own convergence defaults are kept (``convergence_rate=5e-4``): it
  stops raking after a couple of iterations with margins ~4e-4 off, which the
  margins check reports.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from workloads import AGE, SEX, H

ENV_VAR = "SATSAMPLE_BALANCE_PYTHON"
DEFAULT_PYTHON = "/tmp/venv-balance/bin/python"


def interpreter() -> str:
    """The Python interpreter of balance's virtualenv (``$SATSAMPLE_BALANCE_PYTHON``)."""
    return os.environ.get(ENV_VAR) or DEFAULT_PYTHON


def available() -> str | None:
    """None if balance can be run, else the reason (for the "not installed" cell)."""
    py = interpreter()
    if not Path(py).exists():
        return f"not installed ({ENV_VAR}={py} not found)"
    try:
        p = subprocess.run([py, "-c", "import balance, numpy, pandas"], capture_output=True,
                           text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not installed ({py}: {type(e).__name__})"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1][:100]
        return f"not installed ({py}: {last})"
    return None


def prepare(task: str, df, meta, reps: int):
    from balance.weighting_methods.poststratify import poststratify
    from balance.weighting_methods.rake import rake

    # balance logs INFO lines (the levels of every variable) on every call
    for name in ("balance", "balance.weighting_methods"):
        logging.getLogger(name).setLevel(logging.WARNING)

    pop = meta["pop"]
    dw = pd.Series(df["design_weight"].to_numpy(), index=df.index)
    if task == "T1":
        N = float(pop["N_h"].sum())
        s, a, g = np.meshgrid(np.arange(2), np.arange(6), np.arange(H), indexing="ij")
        s, a, g = s.ravel(), a.ravel(), g.ravel()
        target = pd.DataFrame({"sex": np.array(SEX)[s], "age": np.array(AGE)[a],
                               "agency_id": [f"A{h:03d}" for h in g]})
        tw = pd.Series(pop["sex_tot"][s] / N * pop["age_tot"][a] / N * pop["N_h"][g])
        sample = df[["sex", "age", "agency_id"]].copy()

        def run():
            out = rake(sample, dw, target, tw, variables=["sex", "age", "agency_id"],
                       transformations=None)
            return {"w": out["weight"].reindex(dw.index).to_numpy()}
        return run
    if task == "T2":
        cells = list(meta["cell_totals"])
        target = pd.DataFrame({"sex": [c.split("_", 1)[0] for c in cells],
                               "age": [c.split("_", 1)[1] for c in cells]})
        tw = pd.Series([meta["cell_totals"][c] for c in cells])
        sample = df[["sex", "age"]].copy()

        def run():
            out = poststratify(sample, dw, target, tw, variables=["sex", "age"],
                               transformations=None)
            return {"w": out["weight"].reindex(dw.index).to_numpy()}
        return run
    raise NotImplementedError(task)
