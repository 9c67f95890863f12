"""QuPath annotations in: GeoJSON features as spatial prompts, and as image–mask–label training records.

A pathologist draws in QuPath and exports GeoJSON (``File → Export objects as GeoJSON``);
:func:`~xpath.io.read_geojson` reads it into a table. From that table:

- :func:`prompts_from_geojson` makes prompts for
  :meth:`~xpath.segmentation.TextPromptPredictor.predict_objects`: every rectangle or polygon
  becomes a box (its bounding box), every point a one-point prompt; each keeps its QuPath
  classification as its text (``None`` where it has none);
- :func:`triples_from_geojson` makes training records: the polygons (rectangles included) of
  each classification, filled, become one mask and instance map per label.

Coordinates: QuPath writes level-0 pixels of the whole image; ``origin`` (the ``(x, y)`` of the
array's top-left pixel in those coordinates) and ``downsample`` map them onto ``image``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["GeoJSONPrompts", "prompts_from_geojson", "triples_from_geojson"]

_AREA_TYPES = ("Polygon", "MultiPolygon")
_POINT_TYPES = ("Point", "MultiPoint")


@dataclass(frozen=True)
class GeoJSONPrompts:
    """Spatial prompts read from GeoJSON, in the pixels of the image they were mapped onto.

    Attributes
    ----------
    boxes : numpy.ndarray
        ``(N, 4)`` xyxy: the bounding box of each rectangle or polygon.
    box_texts : tuple of (str or None)
        ``N`` classifications of the boxes.
    points : numpy.ndarray
        ``(M, 1, 2)`` ``(x, y)``: one prompt per point.
    point_texts : tuple of (str or None)
        ``M`` classifications of the points.
    """

    boxes: np.ndarray
    box_texts: tuple
    points: np.ndarray
    point_texts: tuple


def _table(features: Any) -> pd.DataFrame:
    from ..io import read_geojson

    if isinstance(features, pd.DataFrame):
        if "geometry" not in features:
            raise ValueError("features must be a table from xpath.io.read_geojson (a 'geometry' column)")
        return features
    if isinstance(features, (str, os.PathLike)):
        return read_geojson(features)
    raise TypeError(f"features must be a read_geojson table or a GeoJSON path, got {type(features).__name__}")


def _shape(image: Any) -> tuple[int, int]:
    shape = np.shape(getattr(image, "array", image)) if not isinstance(image, tuple) else image
    if len(shape) < 2 or min(shape[:2]) < 1:
        raise ValueError(f"image must be an (H, W[, 3]) array or an (H, W) shape, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _to_pixels(xy: np.ndarray, origin, downsample: float) -> np.ndarray:
    return (np.asarray(xy, np.float64)[..., :2] - np.asarray(origin, np.float64)) / float(downsample)


def prompts_from_geojson(features: Any, image: Any, *, origin: tuple[float, float] = (0, 0),
                         downsample: float = 1.0) -> GeoJSONPrompts:
    """Rectangles, polygons and points of a QuPath export → boxes and points for ``predict_objects``.

    Parameters
    ----------
    features : pandas.DataFrame or path
        A table from :func:`xpath.io.read_geojson`, or a GeoJSON file.
    image : numpy.ndarray, xpath.Image or (int, int)
        The image the prompts are for (its ``(H, W)`` bounds the prompts).
    origin, downsample
        Level-0 coordinates → image pixels: ``(xy - origin) / downsample``.

    Returns
    -------
    GeoJSONPrompts

    Raises
    ------
    ValueError
        A box or point outside the image (naming the feature), or a table without geometry.

    Examples
    --------
    >>> found = prompts_from_geojson("annotations.geojson", image)  # doctest: +SKIP
    >>> objects = predictor.predict_objects(boxes=found.boxes)  # doctest: +SKIP
    """
    table = _table(features)
    h, w = _shape(image)
    boxes, box_texts, points, point_texts = [], [], [], []
    for i, (geom, cls) in enumerate(zip(table["geometry"], table["class"])):
        if not geom:
            continue
        kind, coords = geom.get("type"), geom.get("coordinates")
        text = cls if isinstance(cls, str) and cls else None
        if kind in _AREA_TYPES:
            polygons = [coords] if kind == "Polygon" else coords
            xy = _to_pixels(np.concatenate([np.asarray(p[0], np.float64) for p in polygons]), origin, downsample)
            box = np.concatenate([xy.min(0), xy.max(0)])
            if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
                raise ValueError(f"features: feature {i} ({kind}) lies outside the image (width {w}, height {h})")
            boxes.append(box)
            box_texts.append(text)
        elif kind in _POINT_TYPES:
            xy = _to_pixels(np.asarray([coords] if kind == "Point" else coords, np.float64), origin, downsample)
            if ((xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)).any():
                raise ValueError(f"features: feature {i} ({kind}) has points outside the image (width {w}, height {h})")
            points += [p[None] for p in xy]
            point_texts += [text] * len(xy)
    return GeoJSONPrompts(np.asarray(boxes, np.float64).reshape(-1, 4), tuple(box_texts),
                          np.asarray(points, np.float64).reshape(-1, 1, 2), tuple(point_texts))


def triples_from_geojson(image: np.ndarray, features: Any, *, mpp: float | None, prompt: str | None = None,
                         origin: tuple[float, float] = (0, 0), downsample: float = 1.0, source: str = "qupath",
                         image_id: str = "image", instances: bool = True) -> list:
    """Polygons of a QuPath export → image–mask–label records (one per classification), for training.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8, the annotated image.
    features : pandas.DataFrame or path
        A table from :func:`xpath.io.read_geojson`, or a GeoJSON file.
    mpp : float or None
        µm per pixel of ``image``.
    prompt : str, optional
        Label every polygon with this prompt (parsed into the label standard) instead of its
        classification.
    origin, downsample
        Level-0 coordinates → image pixels.
    source, image_id : str
        Recorded on each triple.
    instances : bool
        Keep each polygon as an instance (nuclei, glands); ``False`` gives semantic masks only.

    Returns
    -------
    list of xpath.datasets.ImageMaskLabel
        Sorted by label; points and lines are not masks and are left out.

    Raises
    ------
    ValueError
        No polygon, a polygon without classification and no ``prompt``, or a classification or
        ``prompt`` that the label standard cannot read (naming it).
    """
    from ..datasets import ImageMaskLabel
    from ..io import geojson_to_labels
    from ..ontology import load_vocabulary

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    table = _table(features)
    areas = table[[bool(g) and g.get("type") in _AREA_TYPES for g in table["geometry"]]]
    if areas.empty:
        raise ValueError("features holds no polygon or rectangle to make a mask from")
    names = [prompt] * len(areas) if prompt is not None else list(areas["class"])
    missing = [i for i, n in enumerate(names) if not isinstance(n, str) or not n.strip()]
    if missing:
        raise ValueError(f"features: {len(missing)} polygon(s) have no classification; pass prompt= to label them")
    vocab = load_vocabulary()
    out = []
    for name in sorted(set(names)):
        label = vocab.read(name).label
        if label is None:
            raise ValueError(f"prompt/classification {name!r} cannot be read as a label of the standard "
                             "(e.g. 'nuclei', 'glands in colon', 'tissue-level stroma in breast pathology')")
        part = areas[[n == name for n in names]].copy()
        part["object_id"] = np.arange(1, len(part) + 1)
        filled = geojson_to_labels(part, image.shape[:2], origin=origin, downsample=downsample)
        out.append(ImageMaskLabel(image, filled > 0, filled if instances else None, label, mpp, source, image_id,
                                  "train"))
    return out
