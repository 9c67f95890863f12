"""DiagnosticModel on WDBC (real nuclear morphology), grouped CV without leakage, bad input."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from xpath.models import DiagnosticModel


@pytest.fixture(scope="module")
def wdbc():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def wdbc_model(wdbc):
    X, y = wdbc
    return DiagnosticModel("hgb", n_bootstrap=200, seed=0).fit(X, y)


def test_wdbc_auroc_with_ci(wdbc, wdbc_model):
    _X, y = wdbc
    m = wdbc_model
    lo, hi = m.auroc_ci_
    print(
        f"WDBC HGB 5-fold CV AUROC = {m.auroc_:.4f} (95% CI {lo:.4f}-{hi:.4f}), "
        f"Brier {m.brier_:.4f}"
    )
    assert m.auroc_ >= 0.97
    assert lo < m.auroc_ < hi and lo > 0.95
    assert m.auroc_ == pytest.approx(
        roc_auc_score(y, m.oof_proba_[:, 1])
    )  # out-of-fold, not training
    assert m.brier_ == pytest.approx(brier_score_loss(y, m.oof_proba_[:, 1])) and m.brier_ < 0.05
    np.testing.assert_array_equal(m.confusion_matrix_.to_numpy(), confusion_matrix(y, m.oof_pred_))
    assert m.f1_.min() > 0.9 and list(m.f1_.index) == [0, 1]
    cal = m.calibration_
    assert cal["n"].sum() == len(y) and cal["fraction_positive"].between(0, 1).all()
    assert {"auroc", "brier", "f1[0]", "f1[1]"} <= set(m.summary.index)


def test_logistic_and_any_sklearn_classifier_also_validate(wdbc):
    from sklearn.ensemble import RandomForestClassifier

    X, y = wdbc
    for est in ("logistic", RandomForestClassifier(n_estimators=100, random_state=0)):
        m = DiagnosticModel(est, n_bootstrap=50).fit(X, y)
        assert m.auroc_ >= 0.97, est


def test_predictions_match_the_pipeline(wdbc, wdbc_model):
    X, _ = wdbc
    p = wdbc_model.predict_proba(X.to_numpy())  # numpy input gets the fitted column names
    np.testing.assert_allclose(p, wdbc_model.pipeline_.predict_proba(X))
    with pytest.raises(ValueError, match="missing the columns"):
        wdbc_model.predict(X.drop(columns=["worst area"]))


def test_grouped_cv_prevents_patient_leakage(rng):
    # 60 patients × 4 near-identical images; labels are random per patient. A 1-NN classifier
    # memorises patients: ungrouped CV leaks (AUROC near 1), grouped CV gives chance.
    n_pat, k = 60, 4
    base = rng.normal(size=(n_pat, 8))
    groups = np.repeat(np.arange(n_pat), k)
    X = pd.DataFrame(base[groups] + 0.01 * rng.normal(size=(n_pat * k, 8)))
    y = rng.integers(0, 2, n_pat)[groups]
    leaky = DiagnosticModel(KNeighborsClassifier(1), n_bootstrap=0).fit(X, y)
    honest = DiagnosticModel(KNeighborsClassifier(1), n_bootstrap=0).fit(X, y, groups=groups)
    assert leaky.auroc_ > 0.95
    assert honest.auroc_ < 0.7
    assert (pd.Series(honest.oof_fold_).groupby(groups).nunique() == 1).all()


def test_multiclass_ovr():
    X, y = load_iris(return_X_y=True, as_frame=True)
    m = DiagnosticModel("logistic", n_bootstrap=50).fit(X, y.to_numpy())
    assert m.auroc_ > 0.95
    assert m.auroc_ == pytest.approx(roc_auc_score(y, m.oof_proba_, multi_class="ovr"))
    assert m.per_class_auroc_.shape == (3,) and m.confusion_matrix_.shape == (3, 3)
    assert m.confusion_matrix_.to_numpy().sum() == 150


@pytest.mark.parametrize(
    "kwargs, fit_args, match",
    [
        ({}, {"y": np.zeros(50)}, "single class"),
        ({}, {"y": np.arange(49) % 2}, "y has 49 entries but X has 50 rows"),
        ({}, {"groups": np.zeros(50)}, "at least 2 distinct patients"),
        ({}, {"groups": np.arange(50) % 3}, "fewer than cv=5 folds"),
        ({"estimator": "svm"}, {}, "estimator must be one of"),
        ({"estimator": object()}, {}, "predict_proba"),
        ({}, {"y": np.where(np.arange(50) == 3, np.nan, np.arange(50) % 2)}, "missing labels"),
    ],
)
def test_bad_input(rng, kwargs, fit_args, match):
    X = pd.DataFrame(rng.normal(size=(50, 3)))
    args = {"y": np.arange(50) % 2}
    args.update(fit_args)
    y = args.pop("y")
    with pytest.raises((ValueError, TypeError), match=match):
        DiagnosticModel(n_bootstrap=0, **kwargs).fit(X, y, **args)


def test_named_pipelines():
    from xpath.models._diagnostic import build_pipeline

    assert [s for s, _ in build_pipeline("hgb").steps] == ["model"]  # HGB handles NaN itself
    assert [s for s, _ in build_pipeline("logistic").steps] == ["impute", "scale", "model"]
    assert [s for s, _ in build_pipeline("rf").steps] == ["impute", "model"]


def test_nan_is_imputed_inside_the_folds(wdbc):
    X, y = wdbc
    Xn = X.copy()
    Xn.iloc[::7, 3] = np.nan
    m = DiagnosticModel("logistic", n_bootstrap=0).fit(Xn, y)
    assert m.auroc_ > 0.97
