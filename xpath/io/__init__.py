"""Reading images and whole-slide images.

``read_image`` reads PNG/JPEG/TIFF (and an overview of slides); ``open_slide`` and
``read_region`` read parts of whole-slide images (SVS, NDPI, MRXS, ...) on demand.
"""

from ._read import SLIDE_SUFFIXES, Slide, open_slide, read_image, read_region

__all__ = ["SLIDE_SUFFIXES", "Slide", "open_slide", "read_image", "read_region"]
