"""GeoJSON that QuPath imports as editable objects, written in chunks; and its reader.

The layout follows QuPath's own GeoJSON (``qupath.lib.io.PathObjectTypeAdapters``, v0.4+):
a ``FeatureCollection`` of ``Feature`` objects whose ``properties`` hold ``objectType``
(``"annotation"`` for tissue regions, ``"detection"`` or ``"cell"`` for nuclei),
``classification`` ``{"name", "color": [r, g, b]}`` (plus the packed ``colorRGB`` integer
that QuPath ≤ 0.3 reads), and ``measurements`` ``{name: number}``; a cell also carries
``nucleusGeometry``. Coordinates are full-resolution (level-0) slide pixels:
``local pixel × downsample + origin``.

Polygons are the exact pixel-edge outlines of the objects (:mod:`xpath.io._polygons`),
so reading a file back and filling its polygons gives the label image again.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from .._types import check_labels
from ..ontology import load_vocabulary
from ._polygons import Rings, trace_rings
from ._tables import atomic_path

__all__ = ["OBJECT_TYPES", "GeoJSONWriter", "class_colour", "write_geojson"]

OBJECT_TYPES = ("annotation", "detection", "cell", "tile")

# Colours of common classes, by the vocabulary object whose stems a class name holds (checked in this order);
# other tissue classes share one colour, the rest get a stable colour from a palette by name.
_OBJECT_COLOURS = {
    "tumor": (200, 0, 0), "epithelial": (255, 127, 14), "inflammatory": (31, 119, 180), "stroma": (44, 160, 44),
    "connective": (44, 160, 44), "necrosis": (80, 80, 80), "gland": (148, 103, 189),
}
_TISSUE_COLOUR = (150, 200, 150)
_PALETTE = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def class_colour(name: str) -> tuple[int, int, int]:
    """A stable RGB colour for a class name (known pathology words get conventional colours).

    The words are the stems of the label vocabulary (:meth:`xpath.ontology.Vocabulary.stems`):
    "tumour nuclei" and "carcinoma" are tumour red, "lymphocytes" and "TILs" immune blue.
    """
    key = str(name).lower()
    voc = load_vocabulary()
    for obj, colour in _OBJECT_COLOURS.items():
        if any(stem in key for stem in voc.stems(obj)):
            return colour
    if "tissue" in key:
        return _TISSUE_COLOUR
    return _PALETTE[zlib.crc32(key.encode()) % len(_PALETTE)]


def _packed_rgb(colour: tuple[int, int, int]) -> int:
    """QuPath's packed ARGB as a signed 32-bit integer (``ColorTools.packRGB``)."""
    r, g, b = (int(v) for v in colour)
    value = (255 << 24) | (r << 16) | (g << 8) | b
    return value - (1 << 32)


@numba.njit(cache=True)
def _put_int(buf, pos, value):
    if value < 0:
        buf[pos] = 45  # '-'
        pos += 1
        value = -value
    if value == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    tmp = value
    while tmp > 0:
        tmp //= 10
        n += 1
    for k in range(n - 1, -1, -1):
        buf[pos + k] = 48 + value % 10
        value //= 10
    return pos + n


@numba.njit(cache=True)
def _put_fixed(buf, pos, scaled, decimals):
    """Write ``scaled / 10**decimals`` with trailing zeros of the fraction dropped."""
    if scaled < 0:
        buf[pos] = 45
        pos += 1
        scaled = -scaled
    unit = 10 ** decimals
    pos = _put_int(buf, pos, scaled // unit)
    frac = scaled % unit
    if frac != 0:
        buf[pos] = 46  # '.'
        pos += 1
        width = decimals
        while frac % 10 == 0:
            frac //= 10
            width -= 1
        for k in range(width - 1, -1, -1):
            buf[pos + k] = 48 + frac % 10
            frac //= 10
        pos += width
    return pos


@numba.njit(cache=True)
def _format_rings(scaled, offsets, decimals):
    """Text ``[[x,y],...,[x0,y0]]`` of each ring (closed), into one byte buffer with offsets."""
    n_rings = len(offsets) - 1
    # Each number: sign + 19 digits + '.' + decimals; each position adds '[', ',', ']', ','.
    per_vertex = 2 * (21 + decimals) + 4
    n_vert = offsets[-1] + n_rings
    buf = np.empty(n_vert * per_vertex + 2 * n_rings + 16, np.uint8)
    text_offsets = np.zeros(n_rings + 1, np.int64)
    pos = 0
    for i in range(n_rings):
        a, b = offsets[i], offsets[i + 1]
        buf[pos] = 91  # '['
        pos += 1
        for k in range(a, b + 1):
            kk = k if k < b else a  # close the ring on its first vertex
            if k > a:
                buf[pos] = 44
                pos += 1
            buf[pos] = 91
            pos += 1
            pos = _put_fixed(buf, pos, scaled[kk, 0], decimals)
            buf[pos] = 44
            pos += 1
            pos = _put_fixed(buf, pos, scaled[kk, 1], decimals)
            buf[pos] = 93  # ']'
            pos += 1
        buf[pos] = 93
        pos += 1
        text_offsets[i + 1] = pos
    return buf[:pos], text_offsets


_NULL_MEASUREMENT = re.compile(r',?"(?:[^"\\]|\\.)*":null')


class GeoJSONWriter:
    """Write a QuPath-compatible GeoJSON ``FeatureCollection`` incrementally and atomically.

    Objects are added per label image (a whole image, or one tile of a slide at a time) and
    written in chunks of ``chunk_size`` features, so a million nuclei never need a million
    polygons in memory. The file appears at ``path`` only when the writer closes without
    error (temporary file + ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Destination (``.geojson``).
    image_name : str, optional
        Used to derive stable feature UUIDs (feature ``id`` = UUID-5 prefix of the image
        name + the object id in hex), so re-exporting gives the same ids.
    chunk_size : int
        Features formatted and written per chunk.
    metadata : mapping, optional
        JSON-serialisable facts about the objects, written as the collection's ``"xpath"``
        member (e.g. each prompt's resolved label and support status); QuPath ignores it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> lab = np.zeros((8, 8), np.int32); lab[1:4, 1:4] = 1; lab[5:7, 2:8] = 2
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "nuclei.geojson"
    >>> with GeoJSONWriter(out) as w:
    ...     _ = w.add_labels(lab, classes={1: "tumour", 2: "lymphocyte"}, origin=(100, 200))
    >>> from xpath.io import read_geojson
    >>> table = read_geojson(out)
    >>> table["class"].tolist(), table["object_id"].tolist()
    (['tumour', 'lymphocyte'], [1, 2])
    """

    def __init__(self, path: str | os.PathLike, *, image_name: str | None = None, chunk_size: int = 20_000,
                 metadata: Mapping | None = None):
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        self.metadata = None if metadata is None else json.loads(json.dumps(dict(metadata)))  # JSON-able, copied
        self.path = Path(path)
        self.chunk_size = int(chunk_size)
        self.n_features = 0
        name = image_name if image_name is not None else self.path.stem
        self._uuid_prefix = str(uuid.uuid5(uuid.NAMESPACE_URL, f"xpath:{name}"))[:23]
        self._ctx = atomic_path(self.path, suffix=".geojson.part")
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._fh.write('{"type":"FeatureCollection","features":[\n')
        self._closed = False

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> GeoJSONWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(_error=exc)

    def close(self, _error: BaseException | None = None) -> Path:
        """Finish the file and move it into place (discard it if an error is passed)."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            if _error is None:
                tail = "" if self.metadata is None else f',"xpath":{json.dumps(self.metadata)}'
                self._fh.write(f"\n]{tail}}}\n")
        finally:
            self._fh.close()
        if _error is None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(type(_error), _error, _error.__traceback__)
        return self.path

    def _write_features(self, texts: Iterable[str]) -> None:
        for text in texts:
            if self.n_features:
                self._fh.write(",\n")
            self._fh.write(text)
            self.n_features += 1

    # -- adding objects ----------------------------------------------------------------
    def add_labels(
        self,
        labels: np.ndarray,
        *,
        object_type: str = "detection",
        classes=None,
        measurements: pd.DataFrame | None = None,
        ids: np.ndarray | None = None,
        cell_labels: np.ndarray | None = None,
        origin: tuple[float, float] = (0, 0),
        downsample: float = 1.0,
        colors: Mapping[str, tuple[int, int, int]] | None = None,
        decimals: int = 2,
        rings: Rings | None = None,
    ) -> int:
        """Add one feature per object of a label image.

        Parameters
        ----------
        labels : numpy.ndarray
            ``(H, W)`` integer label image, 0 = background (nuclei, or regions).
        object_type : {"detection", "cell", "annotation", "tile"}
            QuPath object type. ``"cell"`` writes ``nucleusGeometry`` (the object in
            ``labels``) and a cell ``geometry`` from ``cell_labels`` (default: the nucleus).
        classes : str, mapping or pandas.Series, optional
            Class name per object id (``{id: name}`` or a Series indexed by id), or one name
            for all. Default: the ``class`` column of ``measurements`` if there is one.
        measurements : pandas.DataFrame, optional
            One row per object, indexed by object id or with an ``id`` column; its numeric
            columns become ``properties.measurements`` (NaN values are left out).
        ids : numpy.ndarray, optional
            Write only these object ids (e.g. the objects a slide tile owns).
        cell_labels : numpy.ndarray, optional
            ``(H, W)`` cell label image with the same ids (for ``object_type="cell"``).
        origin : (float, float)
            ``(x, y)`` of ``labels[0, 0]``'s top-left corner in level-0 slide pixels.
        downsample : float
            Level-0 pixels per label pixel (2.0 when labels are at 0.5 µm/px on a 0.25 µm/px slide).
        colors : mapping, optional
            Class name → ``(r, g, b)``; default :func:`class_colour`.
        decimals : int
            Decimals kept in coordinates (integers are written without a fraction).
        rings : xpath.io.Rings, optional
            ``trace_rings(labels)``, when one tracing serves several calls (e.g. the same nuclei
            written under two classes, with different ``ids``): the outlines are not traced again.

        Returns
        -------
        int
            Number of features written.
        """
        if self._closed:
            raise ValueError("the GeoJSONWriter is closed")
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
        labels = check_labels(labels)
        if cell_labels is not None:
            cell_labels = check_labels(cell_labels, name="cell_labels", shape=labels.shape)
            if object_type != "cell":
                raise ValueError("cell_labels is only used with object_type='cell'")
        downsample = float(downsample)
        if not np.isfinite(downsample) or downsample <= 0:
            raise ValueError(f"downsample must be a positive number, got {downsample}")
        if not 0 <= int(decimals) <= 6:
            raise ValueError(f"decimals must be in [0, 6], got {decimals}")
        ox, oy = (float(v) for v in origin)

        table = _measurement_table(measurements)
        names = _class_lookup(classes, table)
        keep = None if ids is None else np.unique(np.asarray(ids, np.int64))

        if rings is not None and not isinstance(rings, Rings):
            raise TypeError(f"rings must be trace_rings(labels) (xpath.io.Rings), got {type(rings).__name__}")
        polys = _polygons_of(labels, keep, rings)
        cells = _polygons_of(cell_labels, keep) if cell_labels is not None else None
        object_ids = polys["ids"]
        if cells is not None:
            missing = np.setdiff1d(object_ids, cells["ids"])
            if missing.size:
                raise ValueError(f"cell_labels lacks objects present in labels, e.g. id {int(missing[0])}")
        written = 0
        for start in range(0, len(object_ids), self.chunk_size):
            chunk = object_ids[start : start + self.chunk_size]
            geom = _geometry_texts(polys, chunk, ox, oy, downsample, int(decimals))
            nucleus = None
            if object_type == "cell":
                nucleus = geom
                geom = _geometry_texts(cells, chunk, ox, oy, downsample, int(decimals)) if cells is not None else geom
            props = _properties_texts(chunk, object_type, names, table, colors)
            texts = []
            for k, oid in enumerate(chunk):
                fid = f"{self._uuid_prefix}-{int(oid) & 0xFFFFFFFFFFFF:012x}"
                extra = f',"nucleusGeometry":{nucleus[k]}' if nucleus is not None else ""
                texts.append(f'{{"type":"Feature","id":"{fid}","geometry":{geom[k]}{extra},"properties":{props[k]}}}')
            self._write_features(texts)
            written += len(chunk)
        return written

    def add_mask(
        self,
        mask: np.ndarray,
        name: str,
        *,
        object_type: str = "annotation",
        origin: tuple[float, float] = (0, 0),
        downsample: float = 1.0,
        color: tuple[int, int, int] | None = None,
        measurements: Mapping[str, float] | None = None,
        decimals: int = 2,
    ) -> int:
        """Add a boolean mask (a tissue region) as one feature: a (Multi)Polygon with holes.

        Returns 1, or 0 when the mask is empty.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
        if mask.dtype != bool:
            raise TypeError(f"mask must be boolean, got dtype {mask.dtype}")
        if not mask.any():
            return 0
        polys = _polygons_of(mask.astype(np.int32), None)
        ox, oy = (float(v) for v in origin)
        # All components of the mask are one object: re-key every polygon to object 1.
        polys = dict(polys)
        polys["ids"] = np.array([1])
        polys["poly_of_object"] = np.array([0, len(polys["poly_offsets"]) - 1])
        geom = _geometry_texts(polys, np.array([1]), ox, oy, float(downsample), int(decimals))[0]
        colour = tuple(color) if color is not None else class_colour(name)
        props = {"objectType": object_type, "name": str(name), "classification": _classification(name, colour)}
        if measurements:
            props["measurements"] = {str(k): float(v) for k, v in measurements.items() if np.isfinite(v)}
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self._uuid_prefix}:{object_type}:{name}:{self.n_features}"))
        self._write_features([f'{{"type":"Feature","id":"{fid}","geometry":{geom},"properties":{json.dumps(props)}}}'])
        return 1


def _classification(name: str, colour: tuple[int, int, int]) -> dict:
    return {"name": str(name), "color": [int(c) for c in colour], "colorRGB": _packed_rgb(colour)}


def _measurement_table(measurements) -> pd.DataFrame | None:
    if measurements is None:
        return None
    if not isinstance(measurements, pd.DataFrame):
        raise TypeError(f"measurements must be a pandas DataFrame, got {type(measurements).__name__}")
    table = measurements
    if "id" in table.columns:
        table = table.set_index("id")
    if not pd.api.types.is_integer_dtype(table.index):
        raise ValueError("measurements must be indexed by integer object id or have an integer 'id' column")
    if not table.index.is_unique:
        raise ValueError("measurements has duplicate object ids")
    return table


def _class_lookup(classes, table: pd.DataFrame | None):
    """Return a function ids → array of class names (or None)."""
    if classes is None and table is not None and "class" in table.columns:
        classes = table["class"]
    if classes is None:
        return None
    if isinstance(classes, str):
        return lambda ids: np.full(len(ids), classes, dtype=object)
    if isinstance(classes, Mapping):
        classes = pd.Series(classes)
    if not isinstance(classes, pd.Series):
        raise TypeError(f"classes must be a str, a mapping id → name or a pandas Series, got {type(classes).__name__}")
    series = classes.astype(object)
    return lambda ids: series.reindex(ids).to_numpy(object)


def _polygons_of(labels: np.ndarray | None, keep: np.ndarray | None, rings: Rings | None = None) -> dict:
    """Trace ``labels`` (unless its ``rings`` are given) and arrange rings object → polygons (exterior first) → rings."""
    rings = trace_rings(labels) if rings is None else rings
    sel = np.ones(len(rings), bool) if keep is None else np.isin(rings.label, keep)
    lab, comp, ext = rings.label[sel], rings.component[sel], rings.exterior[sel]
    ring_idx = np.flatnonzero(sel)
    # Order rings by object id, then component (one polygon each), exterior first.
    order = np.lexsort((~ext, comp, lab))
    lab, comp, ring_idx = lab[order], comp[order], ring_idx[order]
    lengths = np.diff(rings.offsets)[ring_idx]
    starts = rings.offsets[ring_idx]
    gather = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    xy = rings.xy[gather]
    ring_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    new_poly = np.ones(len(comp), bool)
    new_poly[1:] = comp[1:] != comp[:-1]
    poly_offsets = np.append(np.flatnonzero(new_poly), len(comp)).astype(np.int64)  # rings per polygon
    poly_label = lab[new_poly]
    new_obj = np.ones(len(poly_label), bool)
    new_obj[1:] = poly_label[1:] != poly_label[:-1]
    ids = poly_label[new_obj].astype(np.int64)
    poly_of_object = np.append(np.flatnonzero(new_obj), len(poly_label)).astype(np.int64)
    return {"ids": ids, "poly_of_object": poly_of_object, "poly_offsets": poly_offsets,
            "ring_offsets": ring_offsets, "xy": xy}


def _geometry_texts(polys: dict, chunk_ids: np.ndarray, ox, oy, downsample, decimals) -> list[str]:
    """GeoJSON geometry text of each object in ``chunk_ids`` (all must be in ``polys``)."""
    obj = np.searchsorted(polys["ids"], chunk_ids)
    p0, p1 = polys["poly_of_object"][obj], polys["poly_of_object"][obj + 1]
    r0 = polys["poly_offsets"][p0[0]] if len(obj) else 0
    r1 = polys["poly_offsets"][p1[-1]] if len(obj) else 0
    ring_offsets = polys["ring_offsets"][r0 : r1 + 1]
    v0, v1 = ring_offsets[0], ring_offsets[-1]
    xy = polys["xy"][v0:v1].astype(np.float64)
    unit = 10.0 ** decimals
    scaled = np.empty(xy.shape, np.int64)
    scaled[:, 0] = np.rint((xy[:, 0] * downsample + ox) * unit)
    scaled[:, 1] = np.rint((xy[:, 1] * downsample + oy) * unit)
    buf, text_offsets = _format_rings(scaled, ring_offsets - v0, decimals)
    text = buf.tobytes().decode("ascii")
    ring_text = [text[text_offsets[i] : text_offsets[i + 1]] for i in range(len(text_offsets) - 1)]
    out = []
    poly_offsets = polys["poly_offsets"]
    for a, b in zip(p0, p1):
        polygons = ["[" + ",".join(ring_text[poly_offsets[p] - r0 : poly_offsets[p + 1] - r0]) + "]" for p in range(a, b)]
        if len(polygons) == 1:
            out.append('{"type":"Polygon","coordinates":' + polygons[0] + "}")
        else:
            out.append('{"type":"MultiPolygon","coordinates":[' + ",".join(polygons) + "]}")
    return out


def _properties_texts(chunk_ids, object_type, names, table, colors) -> list[str]:
    n = len(chunk_ids)
    class_names = names(chunk_ids) if names is not None else np.full(n, None, dtype=object)
    # One classification text per distinct class, not per object.
    cls_text = {}
    for name in pd.unique(class_names):
        if name is None or (isinstance(name, float) and np.isnan(name)):
            continue
        colour = colors[name] if colors is not None and name in colors else class_colour(name)
        cls_text[name] = json.dumps(_classification(name, colour))
    if table is not None:
        numeric = table.reindex(chunk_ids).select_dtypes(include=[np.number, "bool"])
        numeric = numeric.drop(columns=[c for c in ("object_id",) if c in numeric.columns])
        numeric.insert(0, "object_id", np.asarray(chunk_ids, np.int64))
    else:
        numeric = pd.DataFrame({"object_id": np.asarray(chunk_ids, np.int64)})
    lines = numeric.to_json(orient="records", lines=True, double_precision=10).splitlines()
    lines = [_NULL_MEASUREMENT.sub("", line).replace("{,", "{") for line in lines]
    head = f'{{"objectType":"{object_type}"'
    out = []
    for name, meas in zip(class_names, lines):
        cls = cls_text.get(name) if name is not None and not (isinstance(name, float)) else None
        cls_part = f',"classification":{cls}' if cls is not None else ""
        out.append(f'{head}{cls_part},"measurements":{meas}}}')
    return out


def write_geojson(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    object_type: str = "detection",
    classes=None,
    measurements: pd.DataFrame | None = None,
    regions: Mapping[str, np.ndarray] | None = None,
    origin: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
    image_name: str | None = None,
    chunk_size: int = 20_000,
) -> Path:
    """Write the objects of a label image (and optional region masks) as QuPath GeoJSON.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file, written atomically.
    labels : numpy.ndarray
        ``(H, W)`` instance label image (nuclei).
    object_type, classes, measurements, origin, downsample
        See :meth:`GeoJSONWriter.add_labels`.
    regions : mapping of str to numpy.ndarray, optional
        Region name → ``(H, W)`` bool mask, written first as ``"annotation"`` objects.

    Returns
    -------
    pathlib.Path
    """
    with GeoJSONWriter(path, image_name=image_name, chunk_size=chunk_size) as writer:
        for name, mask in (regions or {}).items():
            writer.add_mask(np.asarray(mask, bool), name, origin=origin, downsample=downsample)
        writer.add_labels(labels, object_type=object_type, classes=classes, measurements=measurements,
                          origin=origin, downsample=downsample)
    return Path(path)
