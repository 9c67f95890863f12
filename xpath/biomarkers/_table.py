"""``cell_table``: one row per object of a label image, with morphology, stain and texture columns."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._types import check_image, check_labels, check_mpp
from . import _intensity, _shape
from ._pixels import ObjectPixels, object_pixels

__all__ = ["DEFAULT_PROPERTIES", "PROPERTY_FAMILIES", "cell_table"]

logger = logging.getLogger(__name__)

PROPERTY_FAMILIES = ("shape", "moments", "fourier", "wdbc", "stain", "texture")
# What properties=None measures when the image is given; without it, the families that need none.
DEFAULT_PROPERTIES = PROPERTY_FAMILIES
_NEEDS_IMAGE = ("stain", "texture")


def _check_properties(properties: Any, has_image: bool) -> tuple:
    """The families to measure: ``None`` is every family the input allows; named ones are checked."""
    if properties is None:
        return DEFAULT_PROPERTIES if has_image else tuple(p for p in DEFAULT_PROPERTIES if p not in _NEEDS_IMAGE)
    if isinstance(properties, str):
        properties = (properties,)
    if not isinstance(properties, Sequence):
        raise TypeError(f"properties must be a sequence of family names from {PROPERTY_FAMILIES}, "
                        f"got {type(properties).__name__}")
    unknown = [p for p in properties if p not in PROPERTY_FAMILIES]
    if unknown:
        raise ValueError(f"properties has unknown name(s) {unknown}; known families: {PROPERTY_FAMILIES}")
    if not has_image and any(p in _NEEDS_IMAGE for p in properties):
        raise ValueError(f"properties {[p for p in properties if p in _NEEDS_IMAGE]} need the image; "
                         "pass image=(H, W, 3) uint8 RGB")
    return tuple(dict.fromkeys(properties))


def _assign_classes(classes: Any, px: ObjectPixels, labels: np.ndarray, class_names: Mapping | None):
    """One class per object from a mapping, a Series or a per-pixel class map (majority vote)."""
    n = px.n
    if classes is None:
        return pd.Categorical([None] * n, categories=pd.Index([], dtype=object))
    if isinstance(classes, np.ndarray):
        if classes.shape != labels.shape:
            raise ValueError(f"classes as a class map must have the label image's shape {labels.shape}, "
                             f"got shape {classes.shape}")
        if not (np.issubdtype(classes.dtype, np.integer) or classes.dtype == bool):
            raise TypeError(f"classes as a class map must have an integer dtype, got dtype {classes.dtype}")
        cm = classes[px.rows, px.cols].astype(np.int64)
        if cm.size and cm.min() < 0:
            raise ValueError(f"classes as a class map must be >= 0 (0 = no class), got minimum {cm.min()}")
        # Votes over the class values present (not 0..max: a uint16 map must not make N x 65536 votes).
        values, inv = np.unique(np.concatenate([[0], cm]), return_inverse=True)
        inv = inv[1:]
        k = values.size
        votes = np.bincount(px.group * k + inv, minlength=n * k).reshape(n, k)
        votes[:, 0] = 0  # values[0] == 0 = no class; an object with no classed pixel gets no class
        best = votes.argmax(1)
        has = votes.max(1) > 0
        used = np.unique(best[has])
        names = [class_names.get(int(v), int(v)) if class_names else int(v) for v in values[used]]  # per class
        lut = np.full(k, -1, np.int64)
        lut[used] = np.arange(used.size)
        return pd.Categorical.from_codes(np.where(has, lut[best], -1), categories=pd.Index(names))
    if isinstance(classes, pd.Series):
        mapped = classes.reindex(px.ids)
    elif isinstance(classes, Mapping):
        mapped = pd.Series(dict(classes), dtype=object).reindex(px.ids)
    else:
        raise TypeError("classes must be None, a mapping id -> class, a pandas Series indexed by id or an "
                        f"(H, W) integer class map, got {type(classes).__name__}")
    mapped = pd.Series(np.asarray(mapped), dtype=object)
    if class_names:
        mapped = mapped.replace(dict(class_names))
    return pd.Categorical(mapped)


def cell_table(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    mpp: float,
    classes: Any = None,
    class_names: Mapping | None = None,
    properties: Sequence[str] | None = None,
    compartment: str = "nucleus",
    cytoplasm_um: float | None = None,
) -> pd.DataFrame:
    """Per-object morphology, stain intensity and texture as a tidy table.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` integer instance label image, ``0`` = background; ids need not be
        consecutive and are carried into the ``id`` column. An object with an
        ``instances`` or ``labels`` array attribute (e.g. ``SyntheticTissue``) is accepted.
    image : numpy.ndarray, optional
        ``(H, W, 3)`` ``uint8`` RGB H&E image; needed for the ``stain`` and ``texture``
        families and ``wdbc.texture``.
    mpp : float
        µm per pixel (required); lengths are reported in µm, areas in µm².
    classes : mapping, pandas.Series or numpy.ndarray, optional
        Class of each object: a mapping ``id -> class``, a Series indexed by id, or an
        ``(H, W)`` integer class map (each object takes the majority non-zero class of its
        pixels; 0 = no class).
    class_names : mapping, optional
        ``class value -> name`` applied to the values found through ``classes``.
    properties : sequence of str, optional
        Feature families from ``PROPERTY_FAMILIES``: ``shape`` (size, perimeter, axes,
        convex hull, Feret, circularity...), ``moments`` (Hu), ``fourier`` (radial-profile
        harmonics), ``wdbc`` (Street et al. 1993 nuclear features), ``stain`` (H&E
        deconvolution statistics), ``texture`` (GLCM/Haralick). ``None`` (default): every
        family the input allows, ``DEFAULT_PROPERTIES`` with an image and those that need
        none without it; naming an image family without an image is an error.
    compartment : str
        Prefix of the feature columns (``"nucleus"``, ``"cell"``, ``"gland"``...).
    cytoplasm_um : float, optional
        If given (and an image), also measure ``cytoplasm.stain.*`` and
        ``cytoplasm.shape.area_um2`` in a ring of this width around each object that
        grows only into background (never into a neighbouring object).

    Returns
    -------
    pandas.DataFrame
        One row per object: ``id`` (int32), ``x_px, y_px`` (centroid, column/row,
        pixels), ``x_um, y_um``, ``class`` (categorical), then columns
        ``{compartment}.{family}.{feature}`` (see :func:`feature_catalog`). No objects
        gives the same columns and dtypes with zero rows.

    Examples
    --------
    >>> lab = np.zeros((20, 20), np.int32); lab[2:8, 2:8] = 4
    >>> t = cell_table(lab, mpp=0.5, properties=("shape",))
    >>> t[["id", "nucleus.shape.area_um2", "nucleus.shape.solidity"]].to_numpy().tolist()
    [[4.0, 9.0, 1.0]]
    """
    if not isinstance(labels, np.ndarray):
        for attr in ("instances", "labels"):
            if isinstance(getattr(labels, attr, None), np.ndarray):
                labels = getattr(labels, attr)
                break
    labels = check_labels(labels, name="labels")
    mpp = check_mpp(mpp, name="mpp")
    if image is not None:
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[:2] != labels.shape:
            raise ValueError(f"image has shape {image.shape} but labels has shape {labels.shape}; "
                             "they must cover the same pixels")
        image = check_image(image, name="image")
        if image.shape[:2] != labels.shape:
            raise ValueError(f"image has shape {image.shape} but labels has shape {labels.shape}")
    if not isinstance(compartment, str) or not compartment or "." in compartment:
        raise ValueError(f"compartment must be a non-empty name without '.', got {compartment!r}")
    families = _check_properties(properties, image is not None)
    labels = np.ascontiguousarray(labels)
    px = object_pixels(labels)
    mom = _shape.central_moments(px)
    logger.debug("cell_table: %d objects, families %s", px.n, families)

    cols: dict[str, Any] = {
        "id": px.ids.astype(np.int32),
        "x_px": mom["cx"],
        "y_px": mom["cy"],
        "x_um": mom["cx"] * mpp,
        "y_um": mom["cy"] * mpp,
        "class": _assign_classes(classes, px, labels, class_names),
    }
    pre = compartment + "."

    def put(family: str, values: dict) -> None:
        for k, v in values.items():
            cols[f"{pre}{family}.{k}"] = v

    if "shape" in families:
        put("shape", _shape.shape_features(labels, px, mom, mpp=mpp))
    if "moments" in families:
        put("moments", _shape.hu_features(mom))
    if "fourier" in families or "wdbc" in families:
        prof, theta = _shape.radial_profile(labels, px, mom)
        if "fourier" in families:
            put("fourier", _shape.fourier_features(prof))
        if "wdbc" in families:
            wd = _shape.wdbc_features(prof, theta, mpp=mpp)
            if image is not None:
                wd["texture"] = _intensity.grey_std(image, px)
            put("wdbc", wd)
    if "stain" in families:
        for k, v in _intensity.intensity_features(image, px).items():
            cols[pre + k] = v
    if "texture" in families:
        for k, v in _intensity.texture_features(image, labels, px).items():
            cols[pre + k] = v
    if cytoplasm_um is not None:
        if image is None:
            raise ValueError("cytoplasm_um needs the image; pass image=(H, W, 3) uint8 RGB")
        cols.update(_cytoplasm(labels, image, px, float(cytoplasm_um), mpp))

    table = pd.DataFrame(cols)
    num = [c for c in table.columns if c not in ("id", "class", f"{pre}shape.area_px")]
    table[num] = table[num].astype(np.float64)
    return table


def _cytoplasm(labels, image, px: ObjectPixels, width_um: float, mpp: float) -> dict:
    """``cytoplasm.*`` columns: stain statistics in a ring grown into background only."""
    from skimage.segmentation import expand_labels

    if not np.isfinite(width_um) or width_um <= 0:
        raise ValueError(f"cytoplasm_um must be a positive width in µm, got {width_um}")
    grown = expand_labels(labels, distance=width_um / mpp)
    ring = np.where(labels == 0, grown, 0).astype(np.int32)
    rpx = object_pixels(ring)
    feats = _intensity.intensity_features(image, rpx)
    feats["shape.area_um2"] = rpx.counts * mpp * mpp
    # Align ring objects (those with a non-empty ring) to the nucleus ids.
    pos = np.searchsorted(rpx.ids, px.ids)
    pos = np.clip(pos, 0, max(rpx.n - 1, 0))
    found = (rpx.n > 0) & (rpx.ids[pos] == px.ids) if rpx.n else np.zeros(px.n, bool)
    out = {}
    for k, v in feats.items():
        col = np.full(px.n, np.nan)
        if rpx.n:
            col[found] = np.asarray(v, np.float64)[pos[found]]
        if k == "shape.area_um2":
            col[~found] = 0.0
        out[f"cytoplasm.{k}"] = col
    return out
