"""Survival and classification metrics against reference implementations and hand derivations."""

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score

from xpath.models import (
    bootstrap_ci,
    brier_score,
    concordance_harrell,
    concordance_uno,
    integrated_brier_score,
    kaplan_meier,
    time_dependent_auc,
)
from xpath.models._metrics import censoring_km


def _data(rng, n=300, ties=True):
    t = rng.exponential(10, n)
    r = rng.normal(size=n)
    if ties:
        t, r = np.round(t), np.round(r, 1)
    e = rng.integers(0, 2, n)
    return r, t, e


def test_harrell_equals_lifelines_with_ties(rng):
    r, t, e = _data(rng)
    # lifelines expects "higher = longer survival": the xpath risk is its negative
    assert concordance_harrell(r, t, e) == pytest.approx(concordance_index(t, -r, e), abs=1e-12)


def test_harrell_sign_convention():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    e = np.ones(4)
    assert concordance_harrell(-t, t, e) == 1.0  # earlier death ↔ higher risk: perfect
    assert concordance_harrell(t, t, e) == 0.0


def test_uno_equals_bruteforce_ipcw(rng):
    r, t, e = _data(rng)
    G = censoring_km(t, e)
    tau = np.quantile(t, 0.9)
    num = den = 0.0
    for i in range(t.size):
        if e[i] == 1 and t[i] < tau:
            w = 1.0 / G(np.array([t[i]]), left=True)[0] ** 2
            comparable = (t > t[i]) | ((t == t[i]) & (e == 0))
            den += w * comparable.sum()
            num += w * ((r[comparable] < r[i]).sum() + 0.5 * (r[comparable] == r[i]).sum())
    assert concordance_uno(r, t, e, tau=tau) == pytest.approx(num / den, abs=1e-12)


def test_uno_equals_harrell_without_censoring(rng):
    r, t, _ = _data(rng, ties=False)
    e = np.ones_like(t, dtype=int)
    assert concordance_uno(r, t, e, tau=t.max() + 1) == pytest.approx(
        concordance_harrell(r, t, e), abs=1e-12
    )


def test_kaplan_meier_equals_lifelines(rng):
    _, t, e = _data(rng)
    times, surv = kaplan_meier(t, e)
    ref = KaplanMeierFitter().fit(t, e).survival_function_at_times(times).to_numpy()
    np.testing.assert_allclose(surv, ref, atol=1e-12)


def test_time_dependent_auc_without_censoring_is_plain_auc(rng):
    r, t, _ = _data(rng, ties=False)
    e = np.ones(t.size, int)
    times = np.quantile(t, [0.25, 0.5, 0.75])
    auc, _ = time_dependent_auc(r, t, e, times)
    ref = [roc_auc_score(t <= tk, r) for tk in times]
    np.testing.assert_allclose(auc, ref, atol=1e-12)


def test_brier_without_censoring_and_ibs_known_values(rng):
    _, t, _ = _data(rng, ties=False)
    e = np.ones(t.size, int)
    times = np.quantile(t, [0.2, 0.4, 0.6])
    S = rng.uniform(size=(t.size, times.size))
    ref = ((t[:, None] > times[None]).astype(float) - S) ** 2
    np.testing.assert_allclose(brier_score(S, t, e, times), ref.mean(0), atol=1e-12)
    perfect = (t[:, None] > times[None]).astype(float)
    assert integrated_brier_score(perfect, t, e, times) == pytest.approx(0.0, abs=1e-12)
    assert integrated_brier_score(np.full_like(S, 0.5), t, e, times) == pytest.approx(0.25)


def test_bootstrap_ci_of_a_mean_has_the_normal_width(rng):
    x = rng.normal(size=400)
    lo, hi = bootstrap_ci(np.mean, x, n_bootstrap=400, seed=1)
    assert lo < x.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.2)


def test_bootstrap_ci_resamples_whole_patients():
    # 10 patients × 5 identical rows: resampling patients keeps each patient's 5 rows together
    groups = np.repeat(np.arange(10), 5)
    x = np.repeat(np.arange(10.0), 5)
    seen = []
    lo, hi = bootstrap_ci(
        lambda v: seen.append(np.bincount(v.astype(int), minlength=10)) or v.mean(),
        x,
        n_bootstrap=20,
        seed=0,
        groups=groups,
    )
    assert all((c % 5 == 0).all() for c in seen)  # every patient drawn with all of its 5 rows
    assert lo <= hi
