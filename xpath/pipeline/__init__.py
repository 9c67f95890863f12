"""End-to-end workflows: one image, one whole slide, a cohort on a cluster.

``analyze`` joins segmentation → cell table → graph → spatial statistics → one feature
row and keeps every intermediate in an :class:`Analysis`; ``analyze_slide`` runs the
same over a whole slide in tiles with bounded memory; ``analyze_cohort`` runs a per-slide
function over many slides, resumably, serially or on joblib / Dask; ``ImageStudy`` is an explained
diagnostic study over a table of images (segmentation → biomarkers → model → SHAP → back onto the
tissue, beside a black-box baseline in the same folds).
"""

from ._analysis import Analysis, analyze, combine_instances
from ._cohort import BACKENDS, CohortResult, analyze_cohort, analyze_features, read_slide_table
from ._slide import ArraySlide, SlideResult, segment_slide
from ._slide_analysis import SlideAnalysis, analyze_slide
from ._study import DEFAULT_STUDY_PROMPTS, ImageStudy, select_study_features, study_image_features
from ._tissue import image_summary, tissue_mask

__all__ = [
    "BACKENDS",
    "DEFAULT_STUDY_PROMPTS",
    "Analysis",
    "ArraySlide",
    "CohortResult",
    "ImageStudy",
    "SlideAnalysis",
    "SlideResult",
    "analyze",
    "analyze_cohort",
    "analyze_features",
    "analyze_slide",
    "combine_instances",
    "image_summary",
    "read_slide_table",
    "segment_slide",
    "select_study_features",
    "study_image_features",
    "tissue_mask",
]
