"""CoxModel on GBSG2 (real breast-cancer survival) against lifelines, and its pre-flight checks."""

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_gbsg2
from lifelines.utils import concordance_index

from xpath.models import CoxModel, concordance_harrell


@pytest.fixture(scope="module")
def gbsg2():
    d = load_gbsg2()
    X = pd.get_dummies(d.drop(columns=["time", "cens"]), drop_first=True, dtype=float)
    return X, d["time"].to_numpy(float), d["cens"].to_numpy(int)


@pytest.fixture(scope="module")
def fitted(gbsg2):
    X, t, e = gbsg2
    return CoxModel(n_bootstrap=100, seed=0).fit(X, t, e)


def test_coefficients_equal_a_direct_lifelines_fit(gbsg2, fitted):
    X, t, e = gbsg2
    direct = CoxPHFitter().fit(X.assign(T=t, E=e), "T", "E")
    per_unit = fitted.summary["coef_per_unit"]
    np.testing.assert_allclose(
        per_unit.to_numpy(), direct.params_[per_unit.index].to_numpy(), atol=1e-6
    )
    z = (X - X.mean()) / X.std(ddof=1)
    direct_sd = CoxPHFitter().fit(z.assign(T=t, E=e), "T", "E")
    np.testing.assert_allclose(
        fitted.coef_.to_numpy(), direct_sd.params_[fitted.coef_.index].to_numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        fitted.summary["p"], direct.summary.loc[per_unit.index, "p"], rtol=1e-5
    )


def test_cv_c_index_in_the_published_range_with_ci(fitted):
    r = fitted.cv_results_
    lo, hi = r["harrell_c_ci"]
    print(
        f"GBSG2 CoxModel 5-fold CV Harrell C = {r['harrell_c']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
        f"Uno C = {r['uno_c']:.3f} {tuple(round(v, 3) for v in r['uno_c_ci'])}, "
        f"IBS = {r['integrated_brier_score']:.3f}, mean AUC(t) = {r['mean_auc']:.3f}"
    )
    assert 0.64 <= r["harrell_c"] <= 0.71
    assert lo < r["harrell_c"] < hi and hi - lo < 0.1
    assert 0.62 <= r["uno_c"] <= 0.72
    assert 0.6 < r["mean_auc"] < 0.8
    assert (
        0.1 < r["integrated_brier_score"] < 0.25
    )  # below the 0.25 of an uninformative 0.5 prediction
    assert r["logrank_p"] < 1e-6  # out-of-fold high/low risk groups separate


def test_known_risk_factors(fitted):
    s = fitted.summary
    assert s.loc["pnodes", "hr"] > 1 and s.loc["pnodes", "p"] < 1e-4
    assert (
        s.loc["progrec", "hr"] < 1 and s.loc["progrec", "p"] < 0.01
    )  # low progesterone receptor = risk


def test_predict_risk_higher_is_worse(gbsg2, fitted):
    X, t, e = gbsg2
    risk = fitted.predict_risk(X)
    c = concordance_harrell(risk, t, e)
    assert c > 0.65
    assert c == pytest.approx(1 - concordance_index(t, risk, e), abs=1e-9)
    assert fitted.concordance_train_ == pytest.approx(c)


def test_proportional_hazards_check_runs(fitted):
    ph = fitted.check_proportional_hazards()
    assert set(ph.index) == set(fitted.feature_names_in_)
    assert ph["p"].between(0, 1).all() and ph["test_statistic"].ge(0).all()
    assert ph["violated"].dtype == bool


def test_risk_group_cutpoints_come_from_training_folds_only(gbsg2, fitted):
    X, t, e = gbsg2
    for k in range(fitted.cv):
        test = fitted.oof_fold_ == k
        m = CoxModel(cv=None).fit(X[~test], t[~test], e[~test])
        cuts = np.quantile(m.predict_risk(X[~test]), [0.5])
        np.testing.assert_allclose(fitted.oof_risk_[test], m.predict_risk(X[test]), atol=1e-9)
        np.testing.assert_array_equal(
            fitted.oof_group_[test], np.searchsorted(cuts, fitted.oof_risk_[test], side="right")
        )


def test_grouped_cv_keeps_patients_together(gbsg2):
    X, t, e = gbsg2
    groups = np.arange(len(t)) // 2  # pretend every two rows are one patient
    m = CoxModel(n_bootstrap=10).fit(X, t, e, groups=groups)
    folds = pd.Series(m.oof_fold_).groupby(groups).nunique()
    assert (folds == 1).all()


def test_strata_match_lifelines(gbsg2):
    X, t, e = gbsg2
    Xs = X.drop(columns=["tgrade_III"]).assign(grade3=X["tgrade_III"])
    m = CoxModel(strata=["grade3"], cv=None).fit(Xs, t, e)
    direct = CoxPHFitter(strata=["grade3"]).fit(Xs.assign(T=t, E=e), "T", "E")
    np.testing.assert_allclose(
        m.summary["coef_per_unit"], direct.params_[m.summary.index], atol=1e-6
    )


def test_outcome_columns_by_name(gbsg2):
    X, t, e = gbsg2
    a = CoxModel(cv=None).fit(X.assign(time=t, cens=e), "time", "cens")
    b = CoxModel(cv=None).fit(X, t, e)
    np.testing.assert_allclose(a.coef_, b.coef_)


def _bad(rng, n=120):
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    t = rng.exponential(10, n)
    e = rng.integers(0, 2, n)
    return X, t, e


@pytest.mark.parametrize(
    "mutate, match",
    [
        (
            lambda X, t, e: (X, np.where(np.arange(len(t)) == 3, np.nan, t), e),
            "durations contains NaN",
        ),
        (
            lambda X, t, e: (X, np.where(np.arange(len(t)) == 3, -1.0, t), e),
            "durations must be >= 0",
        ),
        (
            lambda X, t, e: (X, t, np.where(np.arange(len(e)) == 0, 2, e)),
            "events must be 0 .censored. or 1",
        ),
        (lambda X, t, e: (X, t, np.zeros_like(e)), "no events"),
        (lambda X, t, e: (X, t[:-1], e[:-1]), "durations has 119 entries but X has 120 rows"),
        (
            lambda X, t, e: (X.assign(b=np.where(np.arange(len(t)) == 5, np.nan, X["b"])), t, e),
            "NaN in columns {'b': 1}",
        ),
        (lambda X, t, e: (X.assign(c=3.0), t, e), r"constant columns \['c'\]"),
        (lambda X, t, e: (X.assign(c=2 * X["a"] + 1), t, e), "'a' and 'c' are near-collinear"),
        (lambda X, t, e: (X.assign(d=X["a"] + X["b"]), t, e), "exact linear combinations"),
        (lambda X, t, e: (X.assign(s=["x"] * len(t)), t, e), "non-numeric columns {'s'"),
    ],
)
def test_bad_input_gives_clear_errors(rng, mutate, match):
    X, t, e = mutate(*_bad(rng))
    with pytest.raises((ValueError, TypeError), match=match):
        CoxModel(cv=None).fit(X, t, e)


def test_too_few_events_per_variable(rng):
    X, t, _ = _bad(rng)
    e = np.zeros(len(t), int)
    e[:8] = 1
    with pytest.raises(ValueError, match="too few events per variable: 8 events for 3 features"):
        CoxModel(cv=None).fit(X, t, e)
    CoxModel(cv=None, penalizer=0.5).fit(X, t, e)  # penalised: allowed


def test_groups_errors(rng):
    X, t, e = _bad(rng)
    with pytest.raises(ValueError, match="at least 2 distinct patients"):
        CoxModel().fit(X, t, e, groups=np.zeros(len(t)))
    with pytest.raises(ValueError, match="fewer than cv=5 folds"):
        CoxModel().fit(X, t, e, groups=np.arange(len(t)) % 3)


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        CoxModel().predict_risk(pd.DataFrame({"a": [1.0]}))
