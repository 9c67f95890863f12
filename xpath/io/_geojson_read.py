"""Read QuPath GeoJSON: a ``FeatureCollection`` into a table, and polygons back into a label image.

The writing side (:class:`~xpath.io.GeoJSONWriter`, :func:`~xpath.io.write_geojson`) is in
``_geojson.py``; :func:`geojson_to_labels` is its inverse.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ._polygons import fill_rings

__all__ = ["geojson_to_labels", "read_geojson"]


def read_geojson(path: str | os.PathLike) -> pd.DataFrame:
    """Read a GeoJSON ``FeatureCollection`` (ours or QuPath's) into a table, one row per feature.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_id``, ``object_type``, ``class``, ``color`` (``(r, g, b)`` or
        None), ``geometry`` and ``nucleus_geometry`` (GeoJSON dicts), ``object_id``
        (from the ``object_id`` measurement, else ``-1``), then one column per measurement.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"path: {path} is not valid JSON ({err})") from err
    if isinstance(data, list):  # QuPath may also export a bare list of features
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        raise ValueError(f"path: {path} holds no GeoJSON FeatureCollection")
    rows, measures = [], []
    for feat in features:
        props = feat.get("properties") or {}
        cls = props.get("classification") or {}
        colour = cls.get("color")
        if colour is None and "colorRGB" in cls:
            packed = int(cls["colorRGB"]) & 0xFFFFFF
            colour = [(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]
        meas = props.get("measurements") or {}
        if isinstance(meas, list):  # QuPath < 0.4: [{"name": ..., "value": ...}]
            meas = {m["name"]: m["value"] for m in meas}
        rows.append({
            "feature_id": feat.get("id"),
            "object_type": props.get("objectType", props.get("object_type", "annotation")),
            "class": cls.get("name"),
            "color": tuple(colour) if colour is not None else None,
            "geometry": feat.get("geometry"),
            "nucleus_geometry": feat.get("nucleusGeometry"),
            "object_id": int(meas["object_id"]) if "object_id" in meas else -1,
        })
        measures.append({k: v for k, v in meas.items() if k != "object_id"})
    table = pd.DataFrame(rows, columns=["feature_id", "object_type", "class", "color", "geometry",
                                        "nucleus_geometry", "object_id"])
    if measures and any(measures):
        table = pd.concat([table, pd.DataFrame.from_records(measures)], axis=1)
    return table


def _geometry_rings(geometry: dict) -> list[list[np.ndarray]]:
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = coords
    else:
        raise ValueError(f"only Polygon and MultiPolygon geometries can be filled, got {kind!r}")
    return [[np.asarray(ring, np.float64)[:-1] for ring in poly] for poly in polygons]


def geojson_to_labels(
    features: pd.DataFrame | str | os.PathLike,
    shape: tuple[int, int],
    *,
    origin: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
    object_types: Iterable[str] | None = None,
    geometry: str = "geometry",
) -> np.ndarray:
    """Fill GeoJSON polygons into a label image (the inverse of :func:`write_geojson`).

    Parameters
    ----------
    features : pandas.DataFrame or path
        A table from :func:`read_geojson`, or a GeoJSON file.
    shape : (int, int)
        ``(H, W)`` of the label image to make.
    origin, downsample
        Map level-0 coordinates back to label pixels: ``(x - origin) / downsample``.
    object_types : iterable of str, optional
        Keep only these object types (e.g. ``["detection", "cell"]``).
    geometry : {"geometry", "nucleus_geometry"}
        Which geometry to fill (cells: the cell or the nucleus).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32; each feature's pixels hold its ``object_id`` (or ``1..N`` in file
        order where the file has none). A pixel is inside when its centre is.
    """
    if not isinstance(features, pd.DataFrame):
        features = read_geojson(features)
    if geometry not in ("geometry", "nucleus_geometry"):
        raise ValueError(f"geometry must be 'geometry' or 'nucleus_geometry', got {geometry!r}")
    if object_types is not None:
        features = features[features["object_type"].isin(list(object_types))]
    ids = features["object_id"].to_numpy(np.int64)
    if (ids < 0).any():
        ids = np.arange(1, len(features) + 1)
    # One group per polygon (its exterior and holes, filled even-odd), then group → object id.
    owner, lengths, parts, poly_id = [0], [], [], []
    for oid, geom in zip(ids, features[geometry]):
        if geom is None:
            continue
        for poly in _geometry_rings(geom):
            owner.append(int(oid))
            for ring in poly:
                poly_id.append(len(owner) - 1)
                lengths.append(len(ring))
                parts.append(ring)
    if not parts:
        return np.zeros(tuple(shape[:2]), np.int32)
    xy = (np.concatenate(parts) - np.asarray(origin, np.float64)) / float(downsample)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    filled = fill_rings(shape, np.asarray(poly_id, np.int64), offsets, xy)
    return np.asarray(owner, np.int64)[filled].astype(np.int32)
