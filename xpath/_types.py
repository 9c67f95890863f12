"""Conventions shared by every layer of xpath, written down once, and their validators.

Conventions
-----------
- **Images** are ``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB.
  :func:`check_image` converts the few other forms it accepts with documented rules
  (see there) and refuses everything else.
- **Label images** are ``(H, W)`` ``int32`` arrays; ``0`` is background and each positive
  integer is one object. Ids need not be consecutive and are carried into tables unchanged.
- **Coordinates**: arrays are indexed ``(row, col)``. Tables carry ``x_px, y_px``
  (``x`` = column, ``y`` = row, full-resolution pixels) and ``x_um, y_um`` (micrometres).
- **Boxes** are ``xyxy`` = ``(x_min, y_min, x_max, y_max)`` in full-resolution pixels,
  half-open on the max side.
- **mpp** is the pixel size in micrometres per pixel (µm/px): 0.25 at 40×, 0.5 at 20×.
- **Tables** given to models are numeric ``pandas.DataFrame`` (or 2-D arrays), one row per
  sample; survival outcomes are ``durations`` (>= 0) and ``events`` (1 = event, 0 = censored);
  ``groups`` are patient ids that cross-validation keeps together (:func:`check_table`,
  :func:`check_survival`, :func:`check_labels_1d`, :func:`check_groups`).

pandas is imported inside the table validators, not here: ``import xpath`` imports this module
and stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BOX_FORMAT",
    "Image",
    "as_label_image",
    "check_boxes",
    "check_groups",
    "check_image",
    "check_labels",
    "check_labels_1d",
    "check_mpp",
    "check_survival",
    "check_table",
]

BOX_FORMAT = "xyxy"
LABEL_DTYPE = np.int32


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if type(value).__name__ in ("Series", "DataFrame") and hasattr(value, "shape"):
        return f"{type(value).__name__} of shape {value.shape}"  # pandas, without importing it
    return f"{type(value).__name__} {value!r}"[:120]


def check_image(image: Any, *, name: str = "image", allow_grayscale: bool = False) -> np.ndarray:
    """Validate an image and return it as ``(H, W, 3)`` ``uint8`` RGB.

    Rules
    -----
    - ``(H, W, 3)`` ``uint8``: returned as it is (no copy).
    - ``(H, W, 4)`` RGBA ``uint8``: composited over a **white** background (the colour of
      an empty glass slide), ``rgb = rgb * a + 255 * (1 - a)``.
    - float images with every value in ``[0, 1]``: scaled by 255 and rounded to ``uint8``.
      NaN or values outside ``[0, 1]`` are an error (nothing is clipped silently).
    - ``(H, W)`` or ``(H, W, 1)`` grayscale: refused unless ``allow_grayscale=True``, then
      replicated to three channels.
    - anything else (other dtypes, other shapes, zero-size images): ``TypeError`` or
      ``ValueError`` naming ``name``, what was expected and what was received.

    Parameters
    ----------
    image : array-like
        The image to check.
    name : str
        Argument name used in error messages.
    allow_grayscale : bool
        Accept single-channel images and replicate them to RGB.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8`` array.

    Examples
    --------
    >>> check_image(np.zeros((4, 5, 3), np.uint8)).shape
    (4, 5, 3)
    >>> check_image(np.ones((2, 2, 3))).max()
    np.uint8(255)
    """
    if not isinstance(image, np.ndarray):
        if hasattr(image, "array") and isinstance(getattr(image, "array"), np.ndarray):
            image = image.array  # an xpath Image
        else:
            raise TypeError(
                f"{name} must be a numpy array of shape (H, W, 3) and dtype uint8, got {_describe(image)}"
            )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        if not allow_grayscale:
            raise ValueError(
                f"{name} must be RGB of shape (H, W, 3), got grayscale of shape {image.shape}; "
                "pass allow_grayscale=True to replicate it to three channels"
            )
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name} must have shape (H, W, 3) (RGB) or (H, W, 4) (RGBA), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {image.shape}")

    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"{name} contains NaN or infinite values; expected floats in [0, 1]")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} is a float image with values in [{lo:.3g}, {hi:.3g}]; expected [0, 1] "
                "(or pass a uint8 image with values in [0, 255])"
            )
        image = np.rint(image * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(
            f"{name} must have dtype uint8 (or float in [0, 1]), got dtype {image.dtype}"
        )

    if image.shape[2] == 4:
        if (image[..., 3] == 255).all():  # opaque (a slide read inside the scan): compositing changes nothing
            return np.ascontiguousarray(image[..., :3])
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        image = np.rint(rgb).astype(np.uint8)
    return image


def check_labels(
    labels: Any, *, name: str = "labels", shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Validate a label image and return it as ``(H, W)`` ``int32``.

    Integer and boolean arrays are accepted (booleans become one object with id 1);
    negative values, float dtypes, other dimensionalities and ids beyond the ``int32``
    range are errors. If ``shape`` is given the label image must have that ``(H, W)``.

    Examples
    --------
    >>> check_labels(np.array([[0, 2], [2, 5]], np.uint16)).dtype
    dtype('int32')
    """
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name} must be a numpy integer array of shape (H, W), got {_describe(labels)}")
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(LABEL_DTYPE)
    elif not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{name} must have an integer dtype (0 = background, 1..N = objects), got dtype {labels.dtype}"
        )
    if shape is not None and tuple(labels.shape) != tuple(shape[:2]):
        raise ValueError(f"{name} has shape {labels.shape} but the image has shape {tuple(shape[:2])}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise ValueError(f"{name} must be >= 0 (0 = background), got minimum {lo}")
        if hi > np.iinfo(LABEL_DTYPE).max:
            raise ValueError(f"{name} ids must fit int32, got maximum {hi}")
    return labels.astype(LABEL_DTYPE, copy=False)


def as_label_image(labels: Any, *, name: str = "labels") -> np.ndarray:
    """Alias of :func:`check_labels` for readability at call sites that convert."""
    return check_labels(labels, name=name)


def check_mpp(mpp: Any, *, name: str = "mpp", required: bool = True) -> float | None:
    """Validate a pixel size in µm/px; returns it as ``float`` (or ``None`` if allowed).

    Examples
    --------
    >>> check_mpp(0.25)
    0.25
    """
    if mpp is None:
        if required:
            raise ValueError(f"{name} (µm per pixel) is required, e.g. {name}=0.25 for 40x or 0.5 for 20x")
        return None
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number of µm per pixel, got {_describe(mpp)}")
    mpp = float(mpp)
    if not math.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"{name} must be a positive finite number of µm per pixel, got {mpp}")
    if mpp > 1000:
        raise ValueError(f"{name}={mpp} µm per pixel is implausible; expected e.g. 0.25 (40x) or 0.5 (20x)")
    return mpp


def check_boxes(boxes: Any, *, name: str = "boxes", shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate boxes in ``xyxy`` pixel format; returns ``(N, 4)`` ``float64``."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) in xyxy format, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (arr[:, 2] <= arr[:, 0]).any() or (arr[:, 3] <= arr[:, 1]).any():
        raise ValueError(f"{name} must satisfy x_max > x_min and y_max > y_min (xyxy format)")
    if shape is not None:
        h, w = shape[:2]
        if (arr[:, :2] < 0).any() or (arr[:, 2] > w).any() or (arr[:, 3] > h).any():
            raise ValueError(f"{name} must lie inside the image (width {w}, height {h})")
    return arr


def check_table(X: Any, *, name: str = "X", allow_nan: bool = True) -> pd.DataFrame:
    """Return ``X`` as a numeric ``DataFrame`` (a copy is never made when it already is one).

    numpy arrays get columns ``x0, x1, ...``. Non-numeric columns raise ``TypeError`` naming
    them (encode categories first, e.g. with ``pandas.get_dummies``).

    Examples
    --------
    >>> check_table(np.zeros((2, 3))).columns.tolist()
    ['x0', 'x1', 'x2']
    """
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        df = X
    elif isinstance(X, np.ndarray) and X.ndim == 2:
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    else:
        raise TypeError(
            f"{name} must be a pandas DataFrame or a 2-D numpy array, got {_describe(X)}"
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {df.shape}")
    if df.columns.duplicated().any():
        dup = list(df.columns[df.columns.duplicated()])
        raise ValueError(f"{name} has duplicated column names {dup}")
    bad = [
        c
        for c in df.columns
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if bad:
        kinds = {c: str(df[c].dtype) for c in bad[:5]}
        raise TypeError(
            f"{name} must hold numeric columns only; non-numeric columns {kinds} "
            "(encode them first, e.g. pandas.get_dummies(X, drop_first=True, dtype=float))"
        )
    values = df.to_numpy(dtype=float)
    if np.isinf(values).any():
        cols = list(df.columns[np.isinf(values).any(axis=0)])
        raise ValueError(f"{name} contains infinite values in columns {cols}")
    if not allow_nan and np.isnan(values).any():
        counts = pd.Series(np.isnan(values).sum(axis=0), index=df.columns)
        counts = counts[counts > 0]
        raise ValueError(
            f"{name} contains NaN in columns {dict(counts.head(10))} (column: number of NaN rows); "
            "impute or drop them before fitting"
        )
    return df


def _as_1d(
    values: Any, *, name: str, n: int | None, frame: pd.DataFrame | None = None
) -> np.ndarray:
    if isinstance(values, str):
        if frame is None or values not in frame.columns:
            raise ValueError(f"{name}={values!r} is not a column of X")
        values = frame[values]
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {_describe(arr)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n} rows; they must match")
    return arr


def check_survival(
    durations: Any, events: Any, *, n: int | None = None, frame: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a survival outcome.

    Parameters
    ----------
    durations : array-like of shape (n,) or str
        Follow-up times (any unit, >= 0, no NaN). A string names a column of ``frame``.
    events : array-like of shape (n,) or str
        1 = event observed, 0 = censored (booleans accepted).
    n : int, optional
        Expected length (rows of ``X``).

    Returns
    -------
    durations : (n,) float64, events : (n,) int64
    """
    t = _as_1d(durations, name="durations", n=n, frame=frame)
    e = _as_1d(events, name="events", n=None if n is None else n, frame=frame)
    if e.shape[0] != t.shape[0]:
        raise ValueError(
            f"events has {e.shape[0]} entries but durations has {t.shape[0]}; they must match"
        )
    if not (np.issubdtype(t.dtype, np.number) and not np.issubdtype(t.dtype, np.complexfloating)):
        raise TypeError(f"durations must be numeric, got dtype {t.dtype}")
    t = t.astype(float)
    if np.isnan(t).any():
        rows = np.flatnonzero(np.isnan(t))
        raise ValueError(
            f"durations contains NaN at {rows.size} rows (first positions {rows[:5].tolist()})"
        )
    if np.isinf(t).any():
        raise ValueError("durations contains infinite values")
    if (t < 0).any():
        rows = np.flatnonzero(t < 0)
        raise ValueError(
            f"durations must be >= 0, got {rows.size} negative values (minimum {t.min():g}, "
            f"first positions {rows[:5].tolist()})"
        )
    if e.dtype == bool:
        e = e.astype(np.int64)
    if not np.issubdtype(e.dtype, np.number):
        raise TypeError(f"events must be 0/1 (or boolean), got dtype {e.dtype}")
    ef = e.astype(float)
    if np.isnan(ef).any():
        raise ValueError("events contains NaN; expected 0 (censored) or 1 (event)")
    bad = ~np.isin(ef, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            "events must be 0 (censored) or 1 (event), got values "
            f"{np.unique(ef[bad])[:5].tolist()}"
        )
    e = ef.astype(np.int64)
    if e.sum() == 0:
        raise ValueError(
            f"events contains no events (all {e.size} observations are censored); "
            "a survival model cannot be fitted"
        )
    return t, e


def check_labels_1d(y: Any, *, n: int | None = None) -> np.ndarray:
    """Validate class labels: 1-D, no missing values, at least two classes."""
    import pandas as pd

    arr = _as_1d(y, name="y", n=n)
    if pd.isna(arr).any():
        raise ValueError(f"y contains {int(pd.isna(arr).sum())} missing labels")
    classes = np.unique(arr)
    if classes.size < 2:
        raise ValueError(
            f"y must contain at least two classes, got a single class {classes.tolist()}"
        )
    return arr


def check_groups(groups: Any, *, n: int, n_splits: int | None = None) -> np.ndarray | None:
    """Validate patient ids for grouped cross-validation (``None`` passes through)."""
    import pandas as pd

    if groups is None:
        return None
    g = _as_1d(groups, name="groups", n=n)
    if pd.isna(g).any():
        raise ValueError("groups contains missing patient ids")
    n_groups = np.unique(g).size
    if n_groups < 2:
        raise ValueError(
            f"groups must contain at least 2 distinct patients for grouped CV, got {n_groups}"
        )
    if n_splits is not None and n_groups < n_splits:
        raise ValueError(f"groups has {n_groups} distinct patients, fewer than cv={n_splits} folds")
    return g


@dataclass(frozen=True)
class Image:
    """An RGB image with its physical pixel size and its place in a larger slide.

    Attributes
    ----------
    array : numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB pixels.
    mpp : float or None
        µm per pixel of ``array``; ``None`` when the file does not say and the caller
        did not either.
    origin : tuple of int
        ``(x, y)`` of the top-left pixel in full-resolution (level 0) slide pixels;
        ``(0, 0)`` for a plain image file.
    path : str or None
        File the pixels came from.
    """

    array: np.ndarray = field(repr=False)
    mpp: float | None = None
    origin: tuple[int, int] = (0, 0)
    path: str | None = None
    metadata: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "array", check_image(self.array, name="array"))
        object.__setattr__(self, "mpp", check_mpp(self.mpp, required=False))

    def __repr__(self) -> str:
        return f"Image(shape={self.array.shape}, mpp={self.mpp}, origin={self.origin}, path={self.path!r})"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)
