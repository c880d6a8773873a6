"""weightipy 0.4.2: ``scheme_from_dict`` + ``weight`` (rim weighting), documented calls only.

How weightipy is driven (see ../../shared/docs/performance.md, "Pitfalls met on the way"):

* weightipy has no input for design weights: it rakes from unit seed weights and
  returns weights with mean 1; targets are percentages.  The adapter passes the
  population shares x 100 and rescales the result by N / n (untimed glue) so that
  it can be compared with satsample's weights.
* T1: raking from 1 still equals raking the design weights here, because the
  design weights are constant within the agency margin (a margin of the rake).
* T2 is emulated: a one-margin rim on the sex x age cell.  That reproduces the
  cell totals exactly but starts from unit weights, so the weights differ from
  post-stratifying the design weights (the "vs satsample" figure is large by
  construction; the margins check is the meaningful one).
* weightipy's own convergence defaults (convcrit 0.01 on the change of the
  total absolute weight change, max 1000 iterations) are kept: they converge
  to ~1e-13 on these margins.
"""

from __future__ import annotations

import weightipy as wp
from workloads import AGE, SEX, H


def prepare(task: str, df, meta, reps: int):
    pop = meta["pop"]
    N = float(pop["N_h"].sum())
    scale = N / len(df)
    if task == "T1":
        data = df[["sex", "age", "agency_id"]].copy()
        targets = {
            "sex": {s: 100 * t / N for s, t in zip(SEX, pop["sex_tot"])},
            "age": {a: 100 * t / N for a, t in zip(AGE, pop["age_tot"])},
            "agency_id": {f"A{h:03d}": 100 * pop["N_h"][h] / N for h in range(H)},
        }
    elif task == "T2":
        data = df[["cell"]].copy()
        targets = {"cell": {k: 100 * v / N for k, v in meta["cell_totals"].items()}}
    else:
        raise NotImplementedError(task)

    def run():
        scheme = wp.scheme_from_dict(targets, name="bench")
        w = wp.weight(data, scheme).to_numpy()
        return {"w": w * scale}
    return run
