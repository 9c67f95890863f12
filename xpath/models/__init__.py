"""Diagnostic and survival models with patient-grouped validation.

- :class:`DiagnosticModel`: scikit-learn classifiers (HGB, logistic, RF, any) with grouped CV,
  out-of-fold AUROC with bootstrap CI, F1, confusion matrix, calibration.
- :class:`GraphDiagnosticModel`: torch-geometric graph classifier on cell graphs with node
  attributions.
- :class:`CoxModel`: lifelines Cox model with pre-flight checks, Harrell/Uno C-index, time-dependent
  AUC, integrated Brier score, risk groups and Kaplan–Meier.
- metrics: :func:`concordance_harrell`, :func:`concordance_uno`, :func:`time_dependent_auc`,
  :func:`brier_score`, :func:`integrated_brier_score`, :func:`bootstrap_ci`.

Risk scores are **higher = worse** everywhere. Nothing here imports torch at module level.
"""

from ._cv import grouped_splits
from ._diagnostic import DiagnosticModel
from ._graph import GraphDiagnosticModel
from ._metrics import (
    auroc,
    bootstrap_ci,
    brier_score,
    concordance_harrell,
    concordance_uno,
    integrated_brier_score,
    kaplan_meier,
    time_dependent_auc,
)
from ._survival import CoxModel

__all__ = [
    "CoxModel",
    "DiagnosticModel",
    "GraphDiagnosticModel",
    "auroc",
    "bootstrap_ci",
    "brier_score",
    "concordance_harrell",
    "concordance_uno",
    "grouped_splits",
    "integrated_brier_score",
    "kaplan_meier",
    "time_dependent_auc",
]
