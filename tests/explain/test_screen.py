"""Univariable screens and adjusted Cox against references; planted-truth recovery, FDR control."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter
from lifelines.datasets import load_gbsg2
from sklearn.metrics import roc_auc_score

from xpath.datasets import synthetic_cohort
from xpath.explain import multivariable_cox, shap_values, univariable_screen
from xpath.models import CoxModel, DiagnosticModel


def _bh_by_hand(p):
    m = p.size
    order = np.argsort(p)
    q = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1)
    return out


def test_survival_screen_matches_lifelines_and_bh():
    d = load_gbsg2()
    X = d[["age", "tsize", "pnodes", "progrec", "estrec"]].astype(float)
    s = univariable_screen(X, d["time"], d["cens"])
    z = (X["pnodes"] - X["pnodes"].mean()) / X["pnodes"].std(ddof=1)
    ref = (
        CoxPHFitter()
        .fit(pd.DataFrame({"z": z, "t": d["time"], "e": d["cens"]}), "t", "e")
        .summary.loc["z"]
    )
    assert s.loc["pnodes", "hr"] == pytest.approx(ref["exp(coef)"], rel=1e-6)
    assert s.loc["pnodes", "p"] == pytest.approx(ref["p"], rel=1e-6)
    assert s.loc["pnodes", "direction"] == "risk" and s.loc["progrec", "direction"] == "protective"
    np.testing.assert_allclose(s["q"], _bh_by_hand(s["p"].to_numpy()), rtol=1e-12)
    assert list(s["p"]) == sorted(s["p"])


def test_binary_screen_matches_statsmodels_and_sklearn(rng):
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-X["a"]))).astype(int)
    s = univariable_screen(X, y)
    za = (X["a"] - X["a"].mean()) / X["a"].std(ddof=1)
    fit = sm.Logit(y, sm.add_constant(za.to_numpy())).fit(disp=0)
    assert s.loc["a", "or"] == pytest.approx(np.exp(fit.params[1]), rel=1e-6)
    assert s.loc["a", "p"] == pytest.approx(fit.pvalues[1], rel=1e-6)
    assert s.loc["a", "auroc"] == pytest.approx(roc_auc_score(y, X["a"]))
    assert s.loc["a", "direction"] == "higher in 1"


def test_constant_feature_and_separation_do_not_crash(rng):
    X = pd.DataFrame(
        {
            "const": np.ones(60),
            "sep": np.r_[np.zeros(30), np.ones(30)] + 0.01 * rng.normal(size=60),
            "noise": rng.normal(size=60),
        }
    )
    y = np.r_[np.zeros(30), np.ones(30)]
    s = univariable_screen(X, y)
    assert s.loc["const", "note"] == "constant" and np.isnan(s.loc["const", "p"])
    assert s.loc["sep", "note"].startswith("separation") and s.loc["sep", "p"] < 1e-6
    s3 = univariable_screen(X, np.arange(60) % 3)  # multi-class: Kruskal–Wallis
    assert {"statistic", "p", "q"} <= set(s3.columns)


def test_multivariable_cox_removes_a_confounded_association(rng):
    n = 600
    cause = rng.normal(size=n)
    proxy = cause + 0.5 * rng.normal(size=n)  # associated with outcome only through `cause`
    t = rng.exponential(1 / np.exp(0.8 * cause))
    e = np.ones(n, int)
    X = pd.DataFrame({"cause": cause, "proxy": proxy})
    assert univariable_screen(X, t, e).loc["proxy", "p"] < 1e-6
    adj = multivariable_cox(X, t, e, adjust_for=["cause"])
    assert list(adj.index) == ["proxy"] and adj.loc["proxy", "p"] > 0.01
    direct = CoxModel(cv=None).fit(X[["proxy", "cause"]], t, e).summary.loc["proxy"]
    assert adj.loc["proxy", "hr"] == pytest.approx(direct["hr"])
    with pytest.raises(ValueError, match="adjust_for columns \\['stage'\\]"):
        multivariable_cox(X, t, e, adjust_for=["stage"])


@pytest.mark.slow
def test_planted_features_recovered_with_fdp_control():
    fdp_surv, fdp_dx = [], []
    for seed in range(5):
        c = synthetic_cohort(400, n_null=50, seed=seed)
        planted, nulls = set(c.informative), set(c.null_features)
        for outcome, fdps in (((c.durations, c.events), fdp_surv), ((c.y,), fdp_dx)):
            s = univariable_screen(c.X, *outcome)
            hits = set(s.index[s["q"] < 0.05])
            assert planted <= hits, (seed, planted - hits)
            fdps.append(len(hits & nulls) / max(len(hits), 1))
        # the planted features top the SHAP ranking of both models
        cox = CoxModel(cv=None).fit(c.X, c.durations, c.events)
        dx = DiagnosticModel("logistic", cv=None).fit(c.X, c.y)
        for m in (cox, dx):
            e = shap_values(m, c.X, seed=seed)
            top = pd.Series(np.abs(e.values).mean(0), index=e.feature_names).nlargest(5).index
            assert set(top) == planted, (seed, type(m).__name__, list(top))
    print(
        f"planted cohort FDP over 5 seeds: survival {np.mean(fdp_surv):.3f}, "
        f"diagnosis {np.mean(fdp_dx):.3f}"
    )
    assert np.mean(fdp_surv) <= 0.10 and np.mean(fdp_dx) <= 0.10


def test_bad_input():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="durations contains NaN"):
        univariable_screen(X, [1.0, np.nan, 2.0], [1, 0, 1])
    with pytest.raises(ValueError, match="single class"):
        univariable_screen(X, [1, 1, 1])
    with pytest.raises(ValueError, match="y has 2 entries but X has 3 rows"):
        univariable_screen(X, [0, 1])
