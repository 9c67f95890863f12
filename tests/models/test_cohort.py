"""synthetic_cohort: the planted effects are what it says they are."""

import numpy as np
import pytest

from xpath.datasets import synthetic_cohort
from xpath.models import CoxModel


def test_planted_hazard_ratios_are_recovered():
    c = synthetic_cohort(3000, n_null=3, seed=7)
    m = CoxModel(cv=None).fit(c.X, c.durations, c.events)
    truth = c.log_hazard_ratios[m.coef_.index]
    np.testing.assert_allclose(m.coef_, truth, atol=0.08)


def test_censoring_prevalence_and_determinism():
    c = synthetic_cohort(1000, n_null=5, censoring=0.4, prevalence=0.25, seed=3)
    assert 1 - c.events.mean() == pytest.approx(0.4, abs=0.01)
    assert c.y.mean() == pytest.approx(0.25, abs=0.05)
    d = synthetic_cohort(1000, n_null=5, censoring=0.4, prevalence=0.25, seed=3)
    np.testing.assert_array_equal(c.X.to_numpy(), d.X.to_numpy())
    assert c.null_features == [f"null.random.f{i:02d}" for i in range(5)]
    assert len(c.informative) == 5


def test_images_per_patient_share_outcomes():
    c = synthetic_cohort(50, n_null=2, images_per_patient=3, seed=0)
    assert c.X.shape[0] == 150 and np.bincount(c.groups).tolist() == [3] * 50
    for arr in (c.durations, c.events, c.y):
        assert (arr.reshape(50, 3) == arr.reshape(50, 3)[:, :1]).all()
    assert set(c.frame().columns) >= {"duration", "event", "diagnosis", "patient"}


def test_null_correlation():
    c = synthetic_cohort(4000, n_null=10, null_correlation=0.5, seed=0)
    r = np.corrcoef(c.X[c.null_features].to_numpy().T)
    assert np.mean(r[np.triu_indices(10, 1)]) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "kw",
    [
        {"n_patients": 5},
        {"censoring": 1.0},
        {"prevalence": 0.0},
        {"images_per_patient": 0},
        {"null_correlation": 1.0},
    ],
)
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        synthetic_cohort(**kw)
