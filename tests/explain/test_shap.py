"""shap_values: additivity on the model-output scale, WDBC ranking, exact linear Cox SHAP."""

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_gbsg2
from numpy.testing import assert_allclose
from sklearn.datasets import load_breast_cancer, load_iris

from xpath.explain import shap_values
from xpath.models import CoxModel, DiagnosticModel

# Street, Wolberg & Mangasarian 1993 / Wolberg et al. 1995: the most discriminative WDBC features
PUBLISHED = {
    "worst concave points",
    "mean concave points",
    "worst perimeter",
    "worst radius",
    "worst area",
    "worst texture",
}


@pytest.fixture(scope="module")
def wdbc():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y.to_numpy()


def _base_plus_sum(e):
    return np.asarray(e.base_values) + e.values.sum(axis=1)


def test_wdbc_hgb_top5_and_additivity(wdbc):
    X, y = wdbc
    m = DiagnosticModel("hgb", cv=None).fit(X, y)
    e = shap_values(m, X)
    assert e.values.shape == (569, 30) and list(e.feature_names) == list(X.columns)
    assert_allclose(_base_plus_sum(e), m.decision_function(X), atol=1e-6)  # log-odds scale
    top5 = pd.Series(np.abs(e.values).mean(0), index=X.columns).nlargest(5).index
    print("WDBC HGB SHAP top-5:", list(top5))
    assert len(set(top5) & PUBLISHED) >= 3
    assert_allclose(e.data, X.to_numpy())  # the original values, for colouring plots


def test_logistic_is_linear_shap_on_log_odds(wdbc):
    X, y = wdbc
    m = DiagnosticModel("logistic", cv=None).fit(X, y)
    e = shap_values(m, X, background=569)
    assert_allclose(_base_plus_sum(e), m.decision_function(X), atol=1e-6)
    # exact linear SHAP with the full data as background: coef_j * (z_ij - mean_j(z))
    pipe = m.pipeline_
    z = pipe[:-1].transform(X)
    ref = pipe[-1].coef_[0] * (z - z.mean(0))
    assert_allclose(e.values, ref, atol=1e-8)


def test_random_forest_on_probability_scale(wdbc):
    from sklearn.ensemble import RandomForestClassifier

    X, y = wdbc
    m = DiagnosticModel(RandomForestClassifier(n_estimators=50, random_state=0), cv=None).fit(X, y)
    e = shap_values(m, X.iloc[:100])
    assert_allclose(_base_plus_sum(e), m.predict_proba(X.iloc[:100])[:, 1], atol=1e-6)


def test_model_agnostic_fallback(wdbc):
    from sklearn.naive_bayes import GaussianNB

    X, y = wdbc
    cols = list(X.columns[:4])
    m = DiagnosticModel(GaussianNB(), cv=None).fit(X[cols], y)
    e = shap_values(m, X[cols].iloc[:5], background=10)
    assert_allclose(_base_plus_sum(e), m.predict_proba(X[cols].iloc[:5])[:, 1], atol=1e-6)


def test_multiclass_returns_one_explanation_per_class():
    X, y = load_iris(return_X_y=True, as_frame=True)
    m = DiagnosticModel("hgb", cv=None).fit(X, y.to_numpy())
    e = shap_values(m, X)
    assert e.values.shape == (150, 4, 3)
    assert_allclose(np.asarray(e.base_values) + e.values.sum(1), m.decision_function(X), atol=1e-6)


def test_cox_shap_is_exact_and_adds_up_to_the_risk():
    d = load_gbsg2()
    X = pd.get_dummies(d.drop(columns=["time", "cens"]), drop_first=True, dtype=float)
    m = CoxModel(cv=None).fit(X, d["time"], d["cens"])
    e = shap_values(m, X, background=len(X))
    assert_allclose(_base_plus_sum(e), m.predict_risk(X), atol=1e-6)
    z = (X - X.mean()) / X.std(ddof=1)
    assert_allclose(e.values, (z - z.mean()).to_numpy() * m.coef_[X.columns].to_numpy(), atol=1e-10)


def test_max_rows_subsamples_and_additivity_violation_raises(wdbc):
    X, y = wdbc
    m = DiagnosticModel("logistic", cv=None).fit(X, y)
    assert shap_values(m, X, max_rows=50).values.shape == (50, 30)
    with pytest.raises(RuntimeError, match="additivity failed"):
        shap_values(m, X, atol=-1.0)  # no tolerance can be met: the check is real
    with pytest.raises(ValueError, match="missing the columns"):
        shap_values(m, X.drop(columns=["mean area"]))


@pytest.mark.parametrize(("name", "output"), [
    ("HistGradientBoostingClassifier", "raw"), ("GradientBoostingClassifier", "raw"),
    ("HistGradientBoostingRegressor", "raw"), ("GradientBoostingRegressor", "raw"),
    ("RandomForestClassifier", "probability"), ("ExtraTreesClassifier", "probability"),
    ("DecisionTreeClassifier", "probability"), ("RandomForestRegressor", "probability"),
    ("ExtraTreesRegressor", "probability"), ("DecisionTreeRegressor", "probability"),
])
def test_tree_explainer_is_chosen_by_class_not_by_name(name, output):
    from sklearn import ensemble, tree

    from xpath.explain._shap import _tree_output

    cls = getattr(ensemble, name, None) or getattr(tree, name)
    assert _tree_output(cls()) == output
    renamed = type("Custom", (cls,), {})  # a subclass may change what predict returns: model-agnostic
    assert _tree_output(renamed()) is None
    impostor = type(name, (), {})  # a class that only borrows the name is not a tree model
    assert _tree_output(impostor()) is None


def test_tree_regressor_adds_up_to_its_prediction(wdbc):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = wdbc
    m = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X, y.astype(float))
    e = shap_values(m, X.iloc[:50])
    assert_allclose(_base_plus_sum(e), m.predict(X.iloc[:50]), atol=1e-6)
