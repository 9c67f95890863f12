"""``shap_values``: SHAP values of xpath models and scikit-learn estimators, additivity checked.

The explainer is chosen from the model:

- ``CoxModel``: exact linear SHAP of the log partial hazard (higher = worse), interventional with
  the background rows: ``phi_ij = beta_j * (z_ij - mean_background(z_j))``.
- tree ensembles (HistGradientBoosting, GradientBoosting, RandomForest, ExtraTrees, DecisionTree,
  classifiers and regressors; those classes exactly, not their subclasses):
  ``shap.TreeExplainer`` (path-dependent) on the raw output (log-odds for boosting, probability
  for forests).
- linear models (``coef_``, e.g. LogisticRegression): ``shap.LinearExplainer`` on the log-odds.
- anything else: ``shap.PermutationExplainer`` on the positive-class probability (binary) with a
  background sample.

Preprocessing steps of a Pipeline (imputation, scaling) are applied first; attributions stay on the
original features because those steps act column by column. ``base + values.sum(1)`` is compared
with the model output itself and a ``RuntimeError`` is raised beyond ``atol``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

__all__ = ["shap_values"]

logger = logging.getLogger(__name__)



def _tree_output(estimator) -> str | None:
    """Which output TreeSHAP explains for ``estimator``: ``"raw"``, ``"probability"`` or ``None`` (not a tree model).

    ``"raw"``: gradient boosting (``HistGradientBoosting*``, ``GradientBoosting*``), explained
    on its raw output (log-odds for classifiers); ``"probability"``: forests and single trees
    (``RandomForest*``, ``ExtraTrees*``, ``DecisionTree*``), on the probability (classifiers)
    or the prediction. The classes are matched exactly, not with ``isinstance``: a subclass
    may change the output that TreeSHAP would explain, so it is explained model-agnostically.

    Examples
    --------
    >>> from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
    >>> from sklearn.linear_model import LogisticRegression
    >>> [_tree_output(m) for m in (HistGradientBoostingClassifier(), RandomForestRegressor(), LogisticRegression())]
    ['raw', 'probability', None]
    """
    from sklearn import ensemble, tree

    raw = (ensemble.HistGradientBoostingClassifier, ensemble.GradientBoostingClassifier,
           ensemble.HistGradientBoostingRegressor, ensemble.GradientBoostingRegressor)
    probability = (ensemble.RandomForestClassifier, ensemble.ExtraTreesClassifier, tree.DecisionTreeClassifier,
                   ensemble.RandomForestRegressor, ensemble.ExtraTreesRegressor, tree.DecisionTreeRegressor)
    if type(estimator) in raw:
        return "raw"
    if type(estimator) in probability:
        return "probability"
    return None


def _split_pipeline(model):
    """``(preprocess, final_estimator)``; ``preprocess`` is None when there is none."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        pre = model[:-1] if len(model.steps) > 1 else None
        return pre, model.steps[-1][1]
    return None, model


def _chunks(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _as_frame(X, model) -> pd.DataFrame:
    from .._types import check_table

    df = check_table(X)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(c) for c in names]
        if isinstance(X, np.ndarray) and df.shape[1] == len(names):
            df.columns = names
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ValueError(f"X is missing the columns {missing[:10]} the model was fitted on")
        df = df[names]
    return df


def shap_values(
    model,
    X,
    *,
    background: int = 100,
    max_rows: int = 10_000,
    seed: int = 0,
    atol: float = 1e-6,
    progress: bool = False,
    chunk_size: int = 512,
):
    """SHAP values of ``model`` on the rows of ``X`` as one ``shap.Explanation``.

    Parameters
    ----------
    model : CoxModel, DiagnosticModel, scikit-learn Pipeline or estimator
        A fitted model.
    X : pandas.DataFrame of shape (n, p)
        Rows to explain (the fitted feature columns; extra columns are ignored).
    background : int
        Rows sampled from ``X`` as the background (masker) distribution, where one is used.
    max_rows : int
        Explain at most this many rows (a seeded random subset beyond it, in original order).
    seed : int
        Seed of the background and row subsampling.
    atol : float
        Additivity tolerance: ``|base + values.sum(1) - f(X)| <= atol`` on the model-output scale.
    progress : bool
        Progress bar over row chunks.
    chunk_size : int
        Rows per explainer call.

    Returns
    -------
    shap.Explanation
        ``values`` ``(n, p)`` (``(n, p, K)`` for multi-class models), ``base_values``, ``data`` (the
        original feature values) and ``feature_names``. ``explanation.output`` is not set; the
        output scale is logged and described in the module docstring.

    Raises
    ------
    RuntimeError
        When the attributions do not add up to the model output within ``atol``.
    """
    import shap
    from tqdm.auto import tqdm

    from ..models import CoxModel

    if background < 1 or max_rows < 1:
        raise ValueError(f"background and max_rows must be >= 1, got {background} and {max_rows}")
    rng = np.random.default_rng(seed)  # draws the rows to explain, then the background rows
    fitted, df = _rows_to_explain(model, X, max_rows=max_rows, rng=rng)
    names = [str(c) for c in df.columns]
    bg_rows = rng.choice(df.shape[0], min(background, df.shape[0]), replace=False)
    slices = _chunks(df.shape[0], chunk_size)
    bar = tqdm(slices, desc="SHAP", disable=not progress)

    if isinstance(model, CoxModel):
        values, base, fx = _cox(model, df, bg_rows)
        kind = "log partial hazard (linear, exact)"
    else:
        values, base, fx, kind = _explain_estimator(shap, fitted, df, bg_rows, bar)
    base_rows = _check_additivity(values, base, fx, kind=kind, atol=atol)
    logger.info("SHAP values on the %s scale for %d rows", kind, values.shape[0])
    return shap.Explanation(
        values=values,
        base_values=base_rows,
        data=df.to_numpy(float),
        feature_names=names,
    )


def _rows_to_explain(model, X, *, max_rows: int, rng: np.random.Generator):
    """``(fitted estimator, rows of X to explain)``: the fitted columns, at most ``max_rows`` rows."""
    from ..models import CoxModel, DiagnosticModel

    fitted = model.pipeline_ if isinstance(model, DiagnosticModel) else model
    if isinstance(model, DiagnosticModel) and not hasattr(model, "pipeline_"):
        raise RuntimeError("the DiagnosticModel is not fitted; call fit first")
    df = _as_frame(X, model if isinstance(model, (CoxModel, DiagnosticModel)) else fitted)
    if isinstance(model, CoxModel):
        df = df[model.feature_names_in_] if hasattr(model, "feature_names_in_") else df
    if df.shape[0] > max_rows:
        keep = np.sort(rng.choice(df.shape[0], max_rows, replace=False))
        logger.info("explaining %d of %d rows (max_rows)", max_rows, df.shape[0])
        df = df.iloc[keep]
    return fitted, df


def _explain_estimator(shap, fitted, df: pd.DataFrame, bg_rows: np.ndarray, bar):
    """``(values, base, f(X), output scale)`` of a scikit-learn estimator or Pipeline."""
    pre, final = _split_pipeline(fitted)
    Xt = np.asarray(pre.transform(df) if pre is not None else df.to_numpy(float), float)
    if Xt.shape[1] != df.shape[1]:
        raise ValueError(
            "the pipeline's preprocessing changes the number of columns "
            f"({df.shape[1]} → {Xt.shape[1]}); "
            "SHAP values on the original features need column-wise preprocessing"
        )
    fitted_names = getattr(final, "feature_names_in_", None)

    def frame(Z):  # the estimator was fitted on a DataFrame: give it one (no feature-name warning)
        return pd.DataFrame(Z, columns=fitted_names) if fitted_names is not None else Z

    output = _tree_output(final)
    if output is not None:
        return _explain_trees(shap, final, output, Xt, frame, bar)
    if hasattr(final, "coef_") and hasattr(final, "decision_function"):
        masker = shap.maskers.Independent(Xt[bg_rows], max_samples=len(bg_rows))
        explainer = shap.LinearExplainer(final, masker)
        values = np.concatenate([np.asarray(explainer.shap_values(Xt[s])) for s in bar], axis=0)
        base = np.asarray(explainer.expected_value, float)
        fx = np.asarray(final.decision_function(frame(Xt)), float)
        return (*_binary_reduce(values, base, fx), "decision function (log-odds)")
    f, kind = _agnostic_output(final, frame)
    masker = shap.maskers.Independent(Xt[bg_rows], max_samples=len(bg_rows))
    explainer = shap.PermutationExplainer(f, masker)
    parts = [explainer(Xt[s], silent=True, max_evals=max(500, 2 * Xt.shape[1] + 1)) for s in bar]
    values = np.concatenate([p.values for p in parts], axis=0)
    base = np.concatenate([np.asarray(p.base_values, float).reshape(-1) for p in parts])
    return values, base, f(Xt), kind


def _explain_trees(shap, final, output: str, Xt: np.ndarray, frame, bar):
    """Path-dependent TreeSHAP on the ``output`` of :func:`_tree_output`: raw (boosting) or probability."""
    explainer = shap.TreeExplainer(final, feature_perturbation="tree_path_dependent")
    parts = [np.asarray(explainer.shap_values(Xt[s], check_additivity=False)) for s in bar]
    values = np.concatenate(parts, axis=0)
    base = np.asarray(explainer.expected_value, float)
    if output == "raw":
        out = final.decision_function if hasattr(final, "decision_function") else final.predict
        fx = out(frame(Xt))
        kind = "raw output (log-odds for classifiers)"
    elif hasattr(final, "predict_proba"):
        fx = final.predict_proba(frame(Xt))
        kind = "probability"
    else:
        fx = final.predict(frame(Xt))
        kind = "prediction"
    return (*_binary_reduce(values, base, np.asarray(fx, float)), kind)


def _check_additivity(values: np.ndarray, base, fx: np.ndarray, *, kind: str, atol: float) -> np.ndarray:
    """Base value per row; raises ``RuntimeError`` unless ``base + values.sum(1)`` is ``f(X)`` within ``atol``."""
    base_rows = np.broadcast_to(base, (values.shape[0],) + values.shape[2:]).astype(float)
    total = base_rows + values.sum(axis=1)
    try:
        np.testing.assert_allclose(total, fx, atol=atol, rtol=0)
    except AssertionError as err:
        raise RuntimeError(
            "SHAP additivity failed: base + sum(values) differs from the model output "
            f"({kind}) by up to "
            f"{np.max(np.abs(total - fx)):.3g} > atol={atol}\n{err}"
        ) from None
    return base_rows


def _binary_reduce(values, base, fx):
    """Collapse the two outputs of a binary classifier to the positive class."""
    values = np.asarray(values, float)
    base = np.asarray(base, float)
    if values.ndim == 3 and values.shape[2] == 2:
        # (n, p, 2) → positive class
        values, base = values[:, :, 1], base.reshape(-1)[1]
        if fx.ndim == 2:
            fx = fx[:, 1]
    elif values.ndim == 3 and values.shape[0] == 2 and fx.ndim == 2 and fx.shape[1] == 2:
        values, base, fx = values[1], base.reshape(-1)[1], fx[:, 1]
    elif values.ndim == 2 and fx.ndim == 2 and fx.shape[1] == 2:
        fx = fx[:, 1]
        base = base.reshape(-1)[-1]
    elif values.ndim == 2:
        base = base.reshape(-1)[0] if base.ndim else base
    return values, base, fx


def _agnostic_output(final, frame):
    if hasattr(final, "predict_proba"):
        classes = getattr(final, "classes_", None)
        if classes is not None and len(classes) == 2:
            return (lambda Z: final.predict_proba(frame(Z))[:, 1]), "positive-class probability"
        return (lambda Z: final.predict_proba(frame(Z))), "class probabilities"
    if hasattr(final, "predict"):
        return (lambda Z: final.predict(frame(Z))), "prediction"
    if callable(final):
        return final, "callable output"
    raise TypeError(f"model must be a fitted estimator or a callable, got {type(final).__name__}")


def _cox(model, df: pd.DataFrame, bg_rows: np.ndarray):
    if not hasattr(model, "lifelines_"):
        raise RuntimeError("the CoxModel is not fitted; call fit first")
    # strata shift the baseline hazard only; the linear predictor (explained here) ignores them
    z = ((df[model.feature_names_in_] - model.means_) / model.scales_).to_numpy(float)  # (n, p)
    beta = model.coef_.reindex(model.feature_names_in_).to_numpy(float)
    ref = np.asarray(model.lifelines_._norm_mean.reindex(model.feature_names_in_), float)
    mu = z[bg_rows].mean(axis=0)
    values = (z - mu) * beta
    base = float((mu - ref) @ beta)
    fx = np.asarray(
        model.lifelines_.predict_log_partial_hazard(
            pd.DataFrame(z, columns=model.feature_names_in_)
        ),
        float,
    ).ravel()
    return values, base, fx
