"""End-to-end workflows: one image, one whole slide, a cohort on a cluster.

``analyze`` joins segmentation → cell table → graph → spatial statistics → one feature
row and keeps every intermediate in an :class:`Analysis`; ``analyze_slide`` runs the
same over a whole slide in tiles with bounded memory; ``analyze_cohort`` runs a per-slide
function over many slides, resumably, serially or on joblib / Dask.
"""

from ._analysis import Analysis, analyze, analyze_features, combine_instances
from ._cohort import BACKENDS, CohortResult, analyze_cohort, read_slide_table
from ._slide import ArraySlide, SlideResult, segment_slide, tile_grid
from ._slide_analysis import SlideAnalysis, analyze_slide
from ._tissue import image_summary, tissue_mask

__all__ = [
    "BACKENDS",
    "Analysis",
    "ArraySlide",
    "CohortResult",
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
    "tile_grid",
    "tissue_mask",
]
