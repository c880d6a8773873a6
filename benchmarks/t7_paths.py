"""T7 through the public API with the cell replay and with the block replay, in one process.

    python benchmarks/t7_paths.py --n 200000 --reps 500

Builds the T7 pipeline of ``peers/satsample_peer.py`` (design, lazy Rao-Wu replicates,
nonresponse adjustment by agency, raking on sex and age, satisfaction index by agency) and
times ``satisfaction_index`` twice on the same design: the weighting steps replayed on
replicate cell tables (``options["replay"] == "cells"``, the default) and on blocks of 50
replicate weights (satsample 0.1's path, forced by switching the cell replay off).  Prints
one JSON line: both times, their ratio and the largest relative difference of the estimates
and SEs (they must agree to 1e-10).  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=500)
    args = ap.parse_args()
    import numpy as np
    import pandas as pd
    from workloads import AGE, ITEMS, SEX, make_data

    from satsample import replicate, weighting
    from satsample.design import survey_design
    from satsample.index import satisfaction_index
    from satsample.questionnaire import load_questionnaire
    from satsample.weighting import _cell_replay

    df, meta = make_data(args.n)
    pop = meta["pop"]
    data = df[["agency_id", "design_weight", "sex", "age", "responded", *ITEMS]]
    q = load_questionnaire("reference_22")
    margins = [("sex", pd.Series(pop["sex_tot"], index=SEX)),
               ("age", pd.Series(pop["age_tot"], index=AGE))]
    d = survey_design(data, strata="agency_id", weights="design_weight")
    d = replicate.bootstrap(d, n_replicates=args.reps, rng=11, materialize=False)
    d = weighting.adjust_nonresponse(d, "responded", classes="agency_id")
    d = weighting.rake(d, margins, max_iter=100, epsilon=1e-10)

    def timed(enabled: bool):
        _cell_replay._ENABLED = enabled
        _cell_replay._CACHE.clear()
        t0 = time.perf_counter()
        res = satisfaction_index(d, q, by="agency_id", variance="replicate")
        return time.perf_counter() - t0, res

    timed(True)  # compile the kernels
    t_cells, cells = timed(True)
    t_blocks, blocks = timed(False)
    _cell_replay._ENABLED = True
    diff = max(float(np.nanmax(np.abs(cells.items[c] - blocks.items[c]) / np.abs(blocks.items[c])))
               for c in ("estimate", "se"))
    print(json.dumps({"n": len(df), "replicates": args.reps, "cells_s": round(t_cells, 3),
                      "blocks_s": round(t_blocks, 3), "blocks_over_cells": round(t_blocks / t_cells, 1),
                      "paths": [cells.options["replay"], blocks.options["replay"]],
                      "max_rel_diff": diff}))


if __name__ == "__main__":
    main()
