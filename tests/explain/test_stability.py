"""importance_stability on a planted cohort."""

import numpy as np
import pandas as pd
import pytest

from xpath.datasets import synthetic_cohort
from xpath.explain import importance_stability
from xpath.models import CoxModel, DiagnosticModel


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort(500, n_null=20, seed=1)


def test_planted_features_are_stable_nulls_are_not(cohort):
    c = cohort
    s = importance_stability(CoxModel(), c.X, c.durations, c.events, n_resamples=10, top_k=5)
    assert set(s.index[:5]) == set(c.informative)
    assert (
        s.loc[c.informative, "top_k_frequency"].min() >= 0.8
        and s.loc[c.informative, "stable"].all()
    )
    assert not s.loc[c.null_features, "stable"].any()
    once = s["top_k_count"] == 1
    assert (s.loc[once, "flag"] == "top-k in one resample only").all()
    assert s.attrs["n_resamples"] == 10


def test_outcome_given_as_column_names_is_not_a_covariate(cohort):
    c = cohort
    X = c.X.assign(t=c.durations, e=c.events)
    by_name = importance_stability(CoxModel(), X, "t", "e", n_resamples=3, top_k=5)
    by_array = importance_stability(CoxModel(), c.X, c.durations, c.events, n_resamples=3, top_k=5)
    pd.testing.assert_frame_equal(by_name, by_array)


def test_cv_mode_with_patient_groups(cohort):
    c = synthetic_cohort(100, n_null=5, images_per_patient=2, seed=2)
    s = importance_stability(
        DiagnosticModel("logistic"), c.X, c.y, groups=c.groups, method="cv", n_resamples=4, top_k=3
    )
    assert s.shape[0] == 10 and s["top_k_frequency"].between(0, 1).all()
    assert np.isclose(s["top_k_count"].sum(), 4 * 3)  # exactly k features per resample (no ties)


def test_bad_input(cohort):
    c = cohort
    with pytest.raises(TypeError, match="durations, events"):
        importance_stability(CoxModel(), c.X, c.y)
    with pytest.raises(ValueError, match="method must be"):
        importance_stability(CoxModel(), c.X, c.durations, c.events, method="jackknife")
