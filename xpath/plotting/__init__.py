"""Plots of models and explanations. Every function takes ``ax=`` and returns the Axes; nothing
calls ``show()``.

- survival: :func:`plot_km` (Kaplan–Meier + at-risk table + log-rank p), :func:`plot_survival_calibration`
- effects: :func:`plot_forest` (hazard / odds ratios with 95% CI)
- SHAP: :func:`plot_shap_bar`, :func:`plot_shap_beeswarm`, :func:`plot_shap_waterfall`
- diagnosis: :func:`plot_calibration` (reliability curve), :func:`plot_roc`
- importance: :func:`plot_stability`; graphs: :func:`plot_node_attributions`
- overlays: :func:`plot_overlay` (masks/instances by prompt), :func:`plot_instances` (objects by value or class), :func:`plot_graph`
"""

from ._calibration import plot_calibration, plot_roc
from ._forest import plot_forest
from ._overlay import plot_graph, plot_instances, plot_overlay
from ._shap import plot_shap_bar, plot_shap_beeswarm, plot_shap_waterfall
from ._stability import plot_node_attributions, plot_stability
from ._survival import plot_km, plot_survival_calibration

__all__ = [
    "plot_calibration",
    "plot_forest",
    "plot_graph",
    "plot_instances",
    "plot_km",
    "plot_node_attributions",
    "plot_overlay",
    "plot_roc",
    "plot_shap_bar",
    "plot_shap_beeswarm",
    "plot_shap_waterfall",
    "plot_stability",
    "plot_survival_calibration",
]
