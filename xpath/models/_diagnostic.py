"""``DiagnosticModel``: a scikit-learn classifier with patient-grouped cross-validation.

``fit`` produces out-of-fold (OOF) probabilities from folds in which no patient is in both
training and test data, and from them AUROC (binary or macro one-vs-rest) with a bootstrap 95% CI
(patients resampled), per-class F1, the confusion matrix, the Brier score and a reliability
curve; then it fits the final pipeline on every row.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .._types import check_groups, check_labels_1d, check_table
from ._cv import grouped_splits
from ._metrics import auroc, bootstrap_ci

__all__ = ["DiagnosticModel"]

logger = logging.getLogger(__name__)

ESTIMATORS = ("hgb", "logistic", "rf")


def build_pipeline(estimator, *, seed: int = 0):
    """The preprocessing + classifier pipeline for a named or given estimator.

    ``"hgb"``: ``HistGradientBoostingClassifier`` (handles NaN itself, no scaling needed).
    ``"logistic"``: median imputation, standardisation, ``LogisticRegression``.
    ``"rf"``: median imputation, ``RandomForestClassifier`` (500 trees).
    A scikit-learn classifier: median imputation, then a clone of it.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    impute = ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
    if isinstance(estimator, str):
        if estimator == "hgb":
            return Pipeline([("model", HistGradientBoostingClassifier(random_state=seed))])
        if estimator == "logistic":
            return Pipeline(
                [impute, ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))]
            )
        if estimator == "rf":
            return Pipeline(
                [impute, ("model", RandomForestClassifier(n_estimators=500, random_state=seed))]
            )
        raise ValueError(
            f"estimator must be one of {ESTIMATORS} or a scikit-learn classifier, got {estimator!r}"
        )
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
        raise TypeError(
            "estimator must be one of "
            f"{ESTIMATORS} or a scikit-learn classifier with predict_proba, "
            f"got {type(estimator).__name__}"
        )
    return Pipeline([impute, ("model", clone(estimator))])


class DiagnosticModel(ClassifierMixin, BaseEstimator):
    """Diagnostic classifier with patient-grouped cross-validation and calibrated reporting.

    Parameters
    ----------
    estimator : {"hgb", "logistic", "rf"} or scikit-learn classifier
        See :func:`build_pipeline`.
    cv : int or None
        Folds of the grouped cross-validation run by ``fit`` (``None``: no validation).
    n_bootstrap : int
        Bootstrap resamples of patients for the AUROC confidence interval.
    calibration_bins : int
        Quantile bins of the reliability curve.
    seed : int
    progress : bool
        Progress bar over folds.

    Attributes
    ----------
    classes_ : ndarray
    feature_names_in_ : list of str
    pipeline_ : sklearn.pipeline.Pipeline
        Fitted on every row.
    cross_validated_ : bool
        Whether ``fit`` ran the cross-validation (``cv`` set), so that the out-of-fold
        attributes below describe this fit.
    oof_proba_ : (n, n_classes) ndarray
        Out-of-fold class probabilities (columns in ``classes_`` order).
    oof_fold_ : (n,) ndarray
        The fold in which each row was a test row.
    auroc_, auroc_ci_ : float, (float, float)
        Out-of-fold AUROC (macro one-vs-rest when multi-class) and its bootstrap 95% CI.
    per_class_auroc_, f1_ : pandas.Series
        One-vs-rest AUROC and F1 per class.
    confusion_matrix_ : pandas.DataFrame
        Rows = true class, columns = predicted class.
    brier_ : float
        Brier score (binary) or multi-class Brier (sum over classes, mean over rows).
    calibration_ : pandas.DataFrame
        Reliability curve: ``class, bin, mean_predicted, fraction_positive, n``.
    """

    def __init__(
        self,
        estimator="hgb",
        *,
        cv: int | None = 5,
        n_bootstrap: int = 1000,
        calibration_bins: int = 10,
        seed: int = 0,
        progress: bool = False,
    ):
        self.estimator = estimator
        self.cv = cv
        self.n_bootstrap = n_bootstrap
        self.calibration_bins = calibration_bins
        self.seed = seed
        self.progress = progress

    def fit(self, X, y, *, groups=None) -> DiagnosticModel:
        """Cross-validate (if ``cv``) and fit on all rows.

        Parameters
        ----------
        X : pandas.DataFrame or ndarray of shape (n, p)
            Numeric features; NaN is imputed inside the pipeline (never across folds).
        y : (n,) array-like
            Class labels (at least two classes).
        groups : (n,) array-like, optional
            Patient ids (several images of one patient stay in the same fold).

        Returns
        -------
        self
        """
        df = check_table(X)
        y = check_labels_1d(y, n=df.shape[0])
        g = check_groups(groups, n=df.shape[0], n_splits=self.cv)
        build_pipeline(self.estimator, seed=self.seed)  # validate the estimator before any work
        self.feature_names_in_ = [str(c) for c in df.columns]
        self.classes_ = np.unique(y)
        self.n_features_in_ = df.shape[1]
        self._y = y
        if self.cv is not None:
            self._cross_validate(df, y, g)
        self.cross_validated_ = self.cv is not None
        self.pipeline_ = build_pipeline(self.estimator, seed=self.seed).fit(df, y)
        return self

    def _cross_validate(self, df: pd.DataFrame, y: np.ndarray, g) -> None:
        from sklearn.metrics import confusion_matrix, f1_score
        from tqdm.auto import tqdm

        splits = grouped_splits(y, g, n_splits=self.cv, seed=self.seed)
        k = self.classes_.size
        proba = np.full((y.size, k), np.nan)
        fold = np.full(y.size, -1)
        for i, (tr, te) in enumerate(tqdm(splits, desc="CV", disable=not self.progress)):
            if np.unique(y[tr]).size < k:
                raise ValueError(
                    f"fold {i} has a training part without every class; use fewer folds"
                )
            pipe = build_pipeline(self.estimator, seed=self.seed).fit(df.iloc[tr], y[tr])
            proba[te] = pipe.predict_proba(df.iloc[te])
            fold[te] = i
        self.oof_proba_, self.oof_fold_ = proba, fold
        classes = self.classes_
        score = proba[:, 1] if k == 2 else proba
        self.auroc_ = auroc(y, score, classes)
        self.auroc_ci_ = bootstrap_ci(
            lambda yy, pp: auroc(yy, pp, classes),
            y,
            score,
            n_bootstrap=self.n_bootstrap,
            seed=self.seed,
            groups=g,
        )
        self.per_class_auroc_ = pd.Series(
            [auroc(y == c, proba[:, j]) for j, c in enumerate(classes)], index=classes, name="auroc"
        )
        pred = classes[np.argmax(proba, axis=1)]
        self.oof_pred_ = pred
        self.f1_ = pd.Series(
            f1_score(y, pred, labels=classes, average=None), index=classes, name="f1"
        )
        self.confusion_matrix_ = pd.DataFrame(
            confusion_matrix(y, pred, labels=classes),
            index=pd.Index(classes, name="true"),
            columns=pd.Index(classes, name="predicted"),
        )
        onehot = (y[:, None] == classes[None, :]).astype(float)
        self.brier_ = (
            float(np.mean((proba[:, 1] - onehot[:, 1]) ** 2))
            if k == 2
            else float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
        )
        self.accuracy_ = float(np.mean(pred == y))
        self.calibration_ = self._reliability(onehot, proba)
        logger.info("CV AUROC %.3f (95%% CI %.3f-%.3f)", self.auroc_, *self.auroc_ci_)

    def _reliability(self, onehot: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
        rows = []
        cols = [1] if proba.shape[1] == 2 else range(proba.shape[1])
        for j in cols:
            p = proba[:, j]
            edges = np.unique(np.quantile(p, np.linspace(0, 1, self.calibration_bins + 1)))
            b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
            for k in np.unique(b):
                m = b == k
                rows.append(
                    (
                        self.classes_[j],
                        int(k),
                        float(p[m].mean()),
                        float(onehot[m, j].mean()),
                        int(m.sum()),
                    )
                )
        return pd.DataFrame(
            rows, columns=["class", "bin", "mean_predicted", "fraction_positive", "n"]
        )

    # ---------------------------------------------------------------------- prediction
    def _frame(self, X) -> pd.DataFrame:
        if not hasattr(self, "pipeline_"):
            raise RuntimeError("this DiagnosticModel is not fitted yet; call fit(X, y) first")
        df = check_table(X)
        if isinstance(X, np.ndarray):
            if df.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {df.shape[1]} columns, the model was fitted on {self.n_features_in_}"
                )
            df.columns = self.feature_names_in_
        missing = [c for c in self.feature_names_in_ if c not in df.columns]
        if missing:
            raise ValueError(f"X is missing the columns {missing[:10]} the model was fitted on")
        return df[self.feature_names_in_]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)`` in ``classes_`` order."""
        return self.pipeline_.predict_proba(self._frame(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels, shape ``(n,)``."""
        return self.pipeline_.predict(self._frame(X))

    def decision_function(self, X) -> np.ndarray:
        """The model's raw output (log-odds for HGB and logistic).

        Shape ``(n,)`` for binary, ``(n, K)`` for multi-class models.
        """
        return self.pipeline_.decision_function(self._frame(X))

    # ---------------------------------------------------------------------- reporting
    @property
    def summary(self) -> pd.DataFrame:
        """Out-of-fold metrics: ``estimate, ci_lower, ci_upper`` per metric."""
        if not hasattr(self, "auroc_"):
            raise RuntimeError("summary needs cross-validation results: fit with cv set")
        rows = [
            ("auroc", self.auroc_, *self.auroc_ci_),
            ("accuracy", self.accuracy_, np.nan, np.nan),
            ("brier", self.brier_, np.nan, np.nan),
        ]
        rows += [(f"auroc[{c}]", v, np.nan, np.nan) for c, v in self.per_class_auroc_.items()]
        rows += [(f"f1[{c}]", v, np.nan, np.nan) for c, v in self.f1_.items()]
        return pd.DataFrame(rows, columns=["metric", "estimate", "ci_lower", "ci_upper"]).set_index(
            "metric"
        )

    def _binary_oof(self):
        if not hasattr(self, "oof_proba_"):
            raise RuntimeError("plots need out-of-fold predictions: fit with cv set")
        if self.classes_.size != 2:
            raise ValueError(
                "this plot is for binary models; plot one class against the rest yourself"
            )
        return self._y, self.oof_proba_[:, 1]

    def plot(self, ax=None):
        """Out-of-fold ROC curve (binary); returns the Axes."""
        from ..plotting import plot_roc

        y, p = self._binary_oof()
        return plot_roc(y, p, positive=self.classes_[1], ax=ax)

    def plot_calibration(self, ax=None):
        """Out-of-fold reliability curve (binary); returns the Axes."""
        from ..plotting import plot_calibration

        y, p = self._binary_oof()
        return plot_calibration(
            y, p, positive=self.classes_[1], n_bins=self.calibration_bins, ax=ax
        )
