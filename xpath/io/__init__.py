"""Reading images and whole-slide images; writing results for other tools.

``read_image`` reads PNG/JPEG/TIFF (and an overview of slides); ``open_slide`` and
``read_region`` read parts of whole-slide images (SVS, NDPI, MRXS, ...) on demand.
Writers: QuPath GeoJSON (``write_geojson``, ``GeoJSONWriter``, ``read_geojson``,
``geojson_to_labels``), tiled OME-TIFF label masks (``write_ome_tiff``), Parquet tables
(``write_parquet``) and AnnData for squidpy (``to_anndata``). Every writer is atomic.
"""

from ._geojson import OBJECT_TYPES, GeoJSONWriter, class_colour, write_geojson
from ._geojson_read import geojson_to_labels, read_geojson
from ._ometiff import read_ome_tiff, write_ome_tiff
from ._polygons import Rings, fill_rings, trace_rings
from ._read import SLIDE_SUFFIXES, Slide, open_slide, read_image, read_region
from ._tables import atomic_path, read_parquet, to_anndata, write_parquet

__all__ = [
    "OBJECT_TYPES",
    "SLIDE_SUFFIXES",
    "GeoJSONWriter",
    "Rings",
    "Slide",
    "atomic_path",
    "class_colour",
    "fill_rings",
    "geojson_to_labels",
    "open_slide",
    "read_geojson",
    "read_image",
    "read_ome_tiff",
    "read_parquet",
    "read_region",
    "to_anndata",
    "trace_rings",
    "write_geojson",
    "write_ome_tiff",
    "write_parquet",
]
