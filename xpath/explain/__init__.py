"""Explanations of biomarker models: SHAP, hazard-ratio screens, stability, and the report.

- :func:`shap_values`: one ``shap.Explanation`` for xpath models and scikit-learn estimators,
  additivity checked against the model output.
- :func:`univariable_screen`: per-feature HR / OR per SD, CI, p, Benjamini–Hochberg q.
- :func:`multivariable_cox`: per-feature HR adjusted for chosen covariates.
- :func:`importance_stability`: top-k frequency of each feature across resamples.
- :class:`BiomarkerReport`: all of the above rendered to Markdown/HTML + figures.
"""

from ._report import BiomarkerReport, catalog_entries
from ._screen import multivariable_cox, univariable_screen
from ._shap import shap_values
from ._stability import feature_importance, importance_stability

__all__ = [
    "BiomarkerReport",
    "catalog_entries",
    "feature_importance",
    "importance_stability",
    "multivariable_cox",
    "shap_values",
    "univariable_screen",
]
