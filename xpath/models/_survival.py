"""``CoxModel``: a Cox proportional-hazards model with pre-flight checks and honest validation.

It wraps lifelines' ``CoxPHFitter``. Features are standardised, so coefficients and hazard
ratios are **per standard deviation**; ``summary`` also gives them per unit. ``fit`` runs
patient-grouped cross-validation (out-of-fold risks → Harrell and Uno C-index with bootstrap
CI, time-dependent AUC, integrated Brier score, risk groups whose cut-points are chosen inside
the training folds only, Kaplan–Meier + log-rank on the out-of-fold groups) and then fits the
final model on every row.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .._types import check_groups, check_survival, check_table
from ._checks import check_events_per_variable, check_features
from ._cv import grouped_splits
from ._metrics import (
    bootstrap_ci,
    concordance_harrell,
    concordance_uno,
    default_times,
    integrated_brier_score,
    time_dependent_auc,
)

__all__ = ["CoxModel"]

logger = logging.getLogger(__name__)

_T, _E = "__duration__", "__event__"


def _group_names(k: int) -> list[str]:
    if k == 2:
        return ["low", "high"]
    if k == 3:
        return ["low", "intermediate", "high"]
    return [f"Q{i + 1}" for i in range(k)]


class CoxModel(BaseEstimator):
    """Cox proportional-hazards model (lifelines) with standardised features and grouped CV.

    Parameters
    ----------
    penalizer : float
        Elastic-net penalty strength passed to ``lifelines.CoxPHFitter`` (0 = unpenalised).
    l1_ratio : float
        Share of the L1 part of the penalty (0 = ridge, 1 = lasso).
    strata : sequence of str, optional
        Columns of ``X`` to stratify the baseline hazard on (not standardised, no coefficient).
    standardize : bool
        Standardise features (mean 0, SD 1, ``ddof=1``) so that hazard ratios are per SD.
    cv : int or None
        Number of cross-validation folds run by ``fit`` (``None`` skips validation).
    n_bootstrap : int
        Bootstrap resamples (of patients) for the confidence intervals of the C-indices.
    risk_groups : int
        Number of risk groups (2 = split at the median, 3 = tertiles) for Kaplan–Meier curves.
    times : sequence of float, optional
        Evaluation times for the time-dependent AUC and the Brier score (default: 20 points between
        the 10th and 80th percentiles of the event times).
    tau : float, optional
        Truncation time of Uno's C-index (default: the 90th percentile of follow-up).
    min_events_per_variable : float
        For unpenalised fits, refuse designs with fewer events per feature than this.
    collinearity : float
        Largest allowed absolute correlation between two features.
    seed : int
        Seed of the fold shuffling and the bootstrap.
    progress : bool
        Show a progress bar over folds.

    Attributes
    ----------
    feature_names_in_ : list of str
        Covariates (strata excluded).
    means_, scales_ : pandas.Series
        Standardisation of each covariate (``scales_`` is 1 when ``standardize=False``).
    lifelines_ : lifelines.CoxPHFitter
        The fitted lifelines model on the standardised design.
    coef_ : pandas.Series
        Log hazard ratio per SD of each covariate.
    hazard_ratios_ : pandas.Series
        ``exp(coef_)``.
    n_events_, n_samples_ : int
    risk_cutpoints_ : (risk_groups - 1,) ndarray
        Quantile cut-points of the training risk, used by :meth:`predict_risk_group`.
    cross_validated_ : bool
        Whether ``fit`` ran the cross-validation (``cv`` set), so that the out-of-fold
        attributes below describe this fit.
    oof_risk_, oof_group_ : (n,) ndarray
        Out-of-fold risk scores (higher = worse) and risk groups (0 = lowest). Only with ``cv``.
    oof_survival_ : (n, len(times_)) ndarray
        Out-of-fold predicted survival at ``times_``.
    times_ : (m,) ndarray
    cv_results_ : dict
        Every validation number; ``cv_summary_`` has them as a table.
    """

    def __init__(
        self,
        penalizer: float = 0.0,
        l1_ratio: float = 0.0,
        strata: Sequence[str] | None = None,
        *,
        standardize: bool = True,
        cv: int | None = 5,
        n_bootstrap: int = 200,
        risk_groups: int = 2,
        times: Sequence[float] | None = None,
        tau: float | None = None,
        min_events_per_variable: float = 5.0,
        collinearity: float = 0.999,
        seed: int = 0,
        progress: bool = False,
    ):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.strata = strata
        self.standardize = standardize
        self.cv = cv
        self.n_bootstrap = n_bootstrap
        self.risk_groups = risk_groups
        self.times = times
        self.tau = tau
        self.min_events_per_variable = min_events_per_variable
        self.collinearity = collinearity
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ preparation
    def _strata(self) -> list[str]:
        if self.strata is None:
            return []
        if isinstance(self.strata, str):
            return [self.strata]
        return list(self.strata)

    def _prepare(self, X, durations, events):
        df = check_table(X)
        t, e = check_survival(durations, events, n=df.shape[0], frame=df)
        drop = [c for c in (durations, events) if isinstance(c, str)]
        df = df.drop(columns=drop)
        strata = self._strata()
        missing = [s for s in strata if s not in df.columns]
        if missing:
            raise ValueError(f"strata columns {missing} are not columns of X")
        if df.shape[1] - len(strata) < 1:
            raise ValueError(
                "X must hold at least one covariate besides durations, events and strata"
            )
        check_features(df, exclude=tuple(strata), collinearity=self.collinearity)
        if self.penalizer == 0:
            check_events_per_variable(
                int(e.sum()), df.shape[1] - len(strata), minimum=self.min_events_per_variable
            )
        return df, t, e

    def _design(self, df: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names_in_ + self._strata() if c not in df.columns]
        if missing:
            raise ValueError(f"X is missing the columns {missing} the model was fitted on")
        z = (df[self.feature_names_in_].astype(float) - self.means_) / self.scales_
        for s in self._strata():
            z[s] = df[s].to_numpy()
        return z

    # ------------------------------------------------------------------------ fitting
    def _fit_lifelines(self, df: pd.DataFrame, t: np.ndarray, e: np.ndarray) -> None:
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError

        strata = self._strata()
        self.feature_names_in_ = [c for c in df.columns if c not in strata]
        feats = df[self.feature_names_in_].astype(float)
        self.means_ = feats.mean() if self.standardize else pd.Series(0.0, index=feats.columns)
        self.scales_ = (
            feats.std(ddof=1) if self.standardize else pd.Series(1.0, index=feats.columns)
        )
        constant = list(feats.columns[(feats.std(ddof=0) == 0).to_numpy()])
        if constant:
            raise ValueError(
                f"columns {constant} are constant in the training data of a cross-validation fold "
                f"({len(feats)} rows); drop them, or use fewer folds"
            )
        data = self._design(df)
        data[_T] = t
        data[_E] = e
        cph = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, strata=strata or None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cph.fit(data, duration_col=_T, event_col=_E)
            except ConvergenceError as err:
                raise ValueError(
                    "the Cox fit did not converge even though X passed the pre-flight checks "
                    "(no NaN, no constant or collinear column); a covariate may separate events "
                    f"perfectly. Covariates: {self.feature_names_in_}. Try penalizer > 0. "
                    f"lifelines said: {err}"
                ) from None
        for w in caught:
            logger.warning("lifelines: %s", w.message)
        self.lifelines_ = cph
        self.coef_ = cph.params_.rename(None)
        self.hazard_ratios_ = np.exp(self.coef_)
        self._train = data

    def fit(self, X, durations, events, *, groups=None) -> CoxModel:
        """Validate, cross-validate (if ``cv``) and fit the model on all rows.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n, p)
            Numeric covariates (and ``strata`` columns). May also hold the outcome columns when
            ``durations``/``events`` are given as column names.
        durations : (n,) array-like or str
            Follow-up time, >= 0.
        events : (n,) array-like or str
            1 = event, 0 = censored.
        groups : (n,) array-like, optional
            Patient ids: rows of one patient never straddle a training/test split.

        Returns
        -------
        self
        """
        df, t, e = self._prepare(X, durations, events)
        g = check_groups(groups, n=df.shape[0], n_splits=self.cv)
        self.n_samples_, self.n_events_ = int(t.size), int(e.sum())
        self.times_ = (
            np.asarray(self.times, float) if self.times is not None else default_times(t, e)
        )
        if self.cv is not None:
            self._cross_validate(df, t, e, g)
        self.cross_validated_ = self.cv is not None
        self._fit_lifelines(df, t, e)
        train_risk = self.predict_risk(df)
        self.risk_cutpoints_ = self._cutpoints(train_risk)
        self.concordance_train_ = concordance_harrell(train_risk, t, e)
        return self

    def _cutpoints(self, risk: np.ndarray) -> np.ndarray:
        k = int(self.risk_groups)
        if k < 2:
            raise ValueError(f"risk_groups must be >= 2, got {self.risk_groups!r}")
        return np.quantile(risk, np.arange(1, k) / k)

    def _cross_validate(self, df, t, e, g) -> None:
        splits = grouped_splits(e, g, n_splits=self.cv, seed=self.seed)
        risk, surv, group, fold = self._out_of_fold(df, t, e, splits)
        self.oof_risk_, self.oof_survival_, self.oof_group_, self.oof_fold_ = risk, surv, group, fold
        self.cv_results_ = self._oof_metrics(risk, surv, group, t, e, g)
        self.cv_results_["n_splits"] = len(splits)
        r = self.cv_results_
        self.cv_summary_ = _cv_summary(r)
        logger.info(
            "Cox CV: Harrell C %.3f (%.3f-%.3f), Uno C %.3f", r["harrell_c"], *r["harrell_c_ci"], r["uno_c"]
        )

    def _out_of_fold(self, df, t, e, splits) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Risk, survival at ``times_``, risk group and fold of each row, from the fold that held it out."""
        from tqdm.auto import tqdm

        params = self.get_params()
        params.update(cv=None, progress=False)
        n = t.size
        risk = np.full(n, np.nan)
        surv = np.full((n, self.times_.size), np.nan)
        group = np.full(n, -1)
        fold = np.full(n, -1)
        for k, (tr, te) in enumerate(tqdm(splits, desc="Cox CV", disable=not self.progress)):
            model = CoxModel(**params)
            model._fit_lifelines(df.iloc[tr], t[tr], e[tr])
            train_risk = model.predict_risk(df.iloc[tr])
            cuts = self._cutpoints(train_risk)  # chosen inside the training fold only
            risk[te] = model.predict_risk(df.iloc[te])
            surv[te] = model.predict_survival(df.iloc[te], self.times_)
            group[te] = np.searchsorted(cuts, risk[te], side="right")
            fold[te] = k
        return risk, surv, group, fold

    def _oof_metrics(self, risk, surv, group, t, e, g) -> dict:
        """C-indices with patient-bootstrap CIs, time-dependent AUC, IBS and log-rank of the OOF predictions."""
        from lifelines.statistics import multivariate_logrank_test

        tau = self.tau if self.tau is not None else float(np.quantile(t, 0.9))
        nb, seed = self.n_bootstrap, self.seed
        harrell = concordance_harrell(risk, t, e)
        uno = concordance_uno(risk, t, e, tau=tau)
        # Uno's weights come from the censoring distribution of the whole cohort in every resample.
        G_t, G_e = t, e
        auc_t, mean_auc = time_dependent_auc(risk, t, e, self.times_)
        ibs = integrated_brier_score(surv, t, e, self.times_)
        lr = multivariate_logrank_test(t, group, e)
        return {
            "harrell_c": harrell,
            "harrell_c_ci": bootstrap_ci(
                concordance_harrell, risk, t, e, n_bootstrap=nb, seed=seed, groups=g
            ),
            "uno_c": uno,
            "uno_c_ci": bootstrap_ci(
                lambda r, tt, ee: concordance_uno(
                    r, tt, ee, tau=tau, train_durations=G_t, train_events=G_e
                ),
                risk,
                t,
                e,
                n_bootstrap=nb,
                seed=seed,
                groups=g,
            ),
            "tau": tau,
            "times": self.times_,
            "auc_t": auc_t,
            "mean_auc": mean_auc,
            "integrated_brier_score": ibs,
            "logrank_p": float(lr.p_value),
            "logrank_statistic": float(lr.test_statistic),
        }

    # ---------------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "lifelines_"):
            raise RuntimeError(
                "this CoxModel is not fitted yet; call fit(X, durations, events) first"
            )

    def predict_risk(self, X) -> np.ndarray:
        """Risk score = log partial hazard (higher = worse), shape ``(n,)``."""
        self._check_fitted()
        df = check_table(X)
        z = self._design(df)
        return np.asarray(self.lifelines_.predict_log_partial_hazard(z), float).ravel()

    def predict_survival(self, X, times: Sequence[float]) -> np.ndarray:
        """Predicted survival ``S(t | x)``, shape ``(n, len(times))``."""
        self._check_fitted()
        z = self._design(check_table(X))
        sf = self.lifelines_.predict_survival_function(z, times=np.asarray(times, float))
        return np.asarray(sf, float).T

    def predict_risk_group(self, X) -> np.ndarray:
        """Risk group (0 = lowest) from the training-cohort cut-points ``risk_cutpoints_``."""
        return np.searchsorted(self.risk_cutpoints_, self.predict_risk(X), side="right")

    @property
    def risk_group_names_(self) -> list[str]:
        return _group_names(int(self.risk_groups))

    # ---------------------------------------------------------------------- reporting
    @property
    def summary(self) -> pd.DataFrame:
        """One row per covariate: coefficient and HR per SD with 95% CI, p, and per-unit values."""
        self._check_fitted()
        s = self.lifelines_.summary
        out = pd.DataFrame(
            {
                "coef": s["coef"],
                "se": s["se(coef)"],
                "hr": s["exp(coef)"],
                "hr_lower": s["exp(coef) lower 95%"],
                "hr_upper": s["exp(coef) upper 95%"],
                "z": s["z"],
                "p": s["p"],
                "sd": self.scales_,
                "coef_per_unit": s["coef"] / self.scales_,
                "hr_per_unit": np.exp(s["coef"] / self.scales_),
            }
        )
        out.index.name = "feature"
        return out

    def check_proportional_hazards(self) -> pd.DataFrame:
        """Schoenfeld-residual test of proportional hazards (lifelines, rank time transform).

        Returns a table indexed by covariate with ``test_statistic``, ``p`` and ``violated``
        (``p < 0.05``, not corrected for multiple testing).
        """
        from lifelines.statistics import proportional_hazard_test

        self._check_fitted()
        res = proportional_hazard_test(self.lifelines_, self._train, time_transform="rank")
        table = res.summary[["test_statistic", "p"]].copy()
        table.index = [i if isinstance(i, str) else i[0] for i in table.index]
        table["violated"] = table["p"] < 0.05
        table.index.name = "feature"
        return table

    def plot(self, ax=None):
        """Forest plot of the hazard ratios per SD; returns the Axes."""
        from ..plotting import plot_forest

        return plot_forest(self.summary, ax=ax, xlabel="hazard ratio per SD")

    def plot_km(self, ax=None, *, at_risk: bool = True):
        """Kaplan–Meier curves of the out-of-fold risk groups with log-rank p; returns the Axes."""
        from ..plotting import plot_km

        if not hasattr(self, "oof_group_"):
            raise RuntimeError("plot_km needs out-of-fold risk groups: fit with cv set")
        names = np.asarray(self.risk_group_names_)[self.oof_group_]
        return plot_km(
            self._train[_T],
            self._train[_E],
            groups=names,
            ax=ax,
            at_risk=at_risk,
            order=self.risk_group_names_,
        )


def _cv_summary(r: dict) -> pd.DataFrame:
    """``cv_summary_``: one row per cross-validated metric, with its CI where there is one."""
    return pd.DataFrame(
        {
            "estimate": [r["harrell_c"], r["uno_c"], r["mean_auc"], r["integrated_brier_score"], r["logrank_p"]],
            "ci_lower": [r["harrell_c_ci"][0], r["uno_c_ci"][0], np.nan, np.nan, np.nan],
            "ci_upper": [r["harrell_c_ci"][1], r["uno_c_ci"][1], np.nan, np.nan, np.nan],
        },
        index=pd.Index(
            ["harrell_c", "uno_c", "mean_time_dependent_auc", "integrated_brier_score", "logrank_p"],
            name="metric",
        ),
    )
