"""Lazy (on-the-fly) Rao-Wu replicates with weighting replayed in blocks give exactly the
standard errors of the same replicates materialised up front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import satsample as ss
from satsample.variance.replicate import iter_replicate_weight_blocks


@pytest.fixture(scope="module")
def fielded():
    pop = ss.make_population(n_users=12_000, n_agencies=12, rng=3)
    drawn = ss.select(pop.frame, ids="user_id", strata="agency_id", n=60, method="srswor", rng=4)
    answers = ss.simulate_responses(pop, drawn.sample, rng=5)
    margins = pd.concat([
        pop.frame[v].value_counts().rename_axis("level").reset_index(name="Freq").assign(variable=v)
        for v in ("sex", "age_group")
    ])
    return pop, answers, margins


def _weight(design, margins):
    design = ss.adjust_nonresponse(design, "responded", classes="agency_id")
    return ss.rake(design, margins, max_iter=50, epsilon=1e-10)


def test_lazy_weighted_equals_materialised(fielded):
    pop, answers, margins = fielded
    base = ss.survey_design(answers, strata="agency_id", weights="design_weight", fpc="fpc")
    lazy = ss.bootstrap(base, n_replicates=40, rng=11, materialize=False)
    mult = np.concatenate(list(iter_replicate_weight_blocks(lazy, block=16, multipliers=True)))
    assert mult.shape == (40, base.n)
    eager = ss.declare_replicates(base, mult.T, kind="subbootstrap", combined_weights=False,
                                  degf=lazy.replicates.degf)
    np.testing.assert_allclose(eager.replicates.weights, mult * base.weights, rtol=0, atol=0)

    lazy_w, eager_w = _weight(lazy, margins), _weight(eager, margins)
    assert lazy_w.replicates.weights is None  # never materialised
    np.testing.assert_array_equal(lazy_w.weights, eager_w.weights)
    a = ss.satisfaction_index(lazy_w, pop.questionnaire, by="agency_id")
    b = ss.satisfaction_index(eager_w, pop.questionnaire, by="agency_id")
    for level in ("overall", "elements", "items"):
        ta, tb = getattr(a, level), getattr(b, level)
        np.testing.assert_allclose(ta["estimate"], tb["estimate"], rtol=1e-12)
        np.testing.assert_allclose(ta["se"], tb["se"], rtol=1e-10)
    # the weighting changed the replicate SEs (it is really replayed)
    unweighted = ss.satisfaction_index(lazy, pop.questionnaire, by="agency_id")
    assert not np.allclose(unweighted.overall["se"], a.overall["se"], rtol=1e-3)
