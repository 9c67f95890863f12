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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BOX_FORMAT",
    "Image",
    "as_label_image",
    "check_boxes",
    "check_image",
    "check_labels",
    "check_mpp",
]

BOX_FORMAT = "xyxy"
LABEL_DTYPE = np.int32


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
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
