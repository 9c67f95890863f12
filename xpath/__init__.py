"""xpath: explainable AI for pathology images.

Text-prompted segmentation (``xpath.segmentation``) → quantitative biomarkers
(``xpath.biomarkers``) → diagnostic and survival models (``xpath.models``) →
explanations (``xpath.explain``), with plots in ``xpath.plotting``.

Subpackages load on first use: ``import xpath`` is fast and never imports torch.
"""

from __future__ import annotations

import importlib

from ._allocator import keep_freed_memory
from ._types import Image, check_image, check_labels, check_mpp

__version__ = "0.1.0"

_SUBPACKAGES = (
    "biomarkers", "datasets", "explain", "io", "models", "ontology", "plotting", "segmentation", "pipeline", "cli",
)

__all__ = ["Image", "__version__", "check_image", "check_labels", "check_mpp", "keep_freed_memory", *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'xpath' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES))
