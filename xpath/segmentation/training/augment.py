"""Array kernels of the training data pipeline: resampling, stain jitter, targets.

Tile placement is :func:`xpath.segmentation.inference.tiling.tile_starts`, shared with inference.

Everything here is numpy/scipy, vectorised over pixels, and deterministic given its
arguments (random draws come from a ``numpy.random.Generator`` passed in).

Geometry convention: a crop ``window`` is ``(y0, x0, y1, x1)`` in source pixels
(floats, half-open, may extend beyond the image); output pixel ``i`` samples the source
at ``y0 + (i + 0.5) * (y1 - y0) / out - 0.5`` (pixel centres, the convention of PIL and
OpenCV). Samples outside the image are reflected (numpy's ``"reflect"`` mode, no edge
repeat), for the image and its masks alike, so mirrored objects stay labelled.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "colour_jitter",
    "crop_resize",
    "flip_rotate",
    "gaussian_blur",
    "gaussian_noise",
    "haematoxylin_only",
    "jpeg_roundtrip",
    "normalised_distance",
    "rescale_image",
    "stain_jitter",
    "to_grey",
]


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Reflect integer indices into ``[0, n)`` (``"reflect"``: ... 2 1 | 0 1 2 | 1 0 ...)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    j = np.mod(index, period)
    return np.where(j >= n, period - j, j)


def _source_coords(start: float, stop: float, out: int) -> np.ndarray:
    return start + (np.arange(out, dtype=np.float64) + 0.5) * ((stop - start) / out) - 0.5


def crop_resize(
    image: np.ndarray,
    labels: np.ndarray | None,
    window: tuple[float, float, float, float],
    out_size: int | tuple[int, int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut ``window`` out of an image and its label arrays and resample it to ``out_size``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8``; resampled bilinearly (use :func:`rescale_image` first
        for shrink factors beyond ~1.5, which this function does not antialias).
    labels : numpy.ndarray or None
        ``(L, H, W)`` integer or bool arrays (masks, instance maps) resampled by nearest
        neighbour with the same geometry.
    window : (y0, x0, y1, x1)
        Source window in pixels (floats; may extend beyond the image: reflected).
    out_size : int or (int, int)
        Output ``(h, w)``.

    Returns
    -------
    image : numpy.ndarray
        ``(h, w, 3)`` ``uint8``.
    labels : numpy.ndarray or None
        ``(L, h, w)``, same dtype as given.
    """
    oh, ow = (out_size, out_size) if np.isscalar(out_size) else out_size
    h, w = image.shape[:2]
    y0, x0, y1, x1 = window
    ys, xs = _source_coords(y0, y1, oh), _source_coords(x0, x1, ow)

    fy, fx = np.floor(ys), np.floor(xs)
    wy, wx = (ys - fy).astype(np.float32), (xs - fx).astype(np.float32)
    r0, r1 = _reflect(fy.astype(np.int64), h), _reflect(fy.astype(np.int64) + 1, h)
    c0, c1 = _reflect(fx.astype(np.int64), w), _reflect(fx.astype(np.int64) + 1, w)
    img = image.astype(np.float32)
    top = img[r0] * (1 - wy)[:, None, None] + img[r1] * wy[:, None, None]  # (oh, W, 3)
    out = top[:, c0] * (1 - wx)[None, :, None] + top[:, c1] * wx[None, :, None]  # (oh, ow, 3)
    out_image = np.clip(np.rint(out), 0, 255).astype(np.uint8)

    out_labels = None if labels is None else _nearest(labels, window, (oh, ow))
    return out_image, out_labels


def _nearest(labels: np.ndarray, window, out_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of ``(L, H, W)`` arrays (the geometry of :func:`crop_resize`)."""
    h, w = labels.shape[-2:]
    y0, x0, y1, x1 = window
    rn = _reflect(np.rint(_source_coords(y0, y1, out_size[0])).astype(np.int64), h)
    cn = _reflect(np.rint(_source_coords(x0, x1, out_size[1])).astype(np.int64), w)
    return labels[:, rn[:, None], cn[None, :]]  # (L, oh, ow)


def rescale_image(
    image: np.ndarray, labels: np.ndarray | None, factor: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rescale an image (antialiased) and its label arrays (nearest) by ``factor``.

    ``factor`` < 1 shrinks. The output size is ``round(H * factor), round(W * factor)``;
    a factor within 1e-3 of 1 returns the inputs unchanged.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8``.
    labels : numpy.ndarray or None
        ``(L, H, W)`` label arrays.
    factor : float
        Scale factor (> 0).
    """
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    if abs(factor - 1.0) < 1e-3:
        return image, labels
    from PIL import Image as PILImage

    h, w = image.shape[:2]
    oh, ow = max(1, round(h * factor)), max(1, round(w * factor))
    # PIL's BILINEAR widens its kernel when shrinking, i.e. it antialiases.
    out = np.asarray(PILImage.fromarray(image).resize((ow, oh), PILImage.Resampling.BILINEAR))
    if labels is None:
        return out, None
    return out, _nearest(labels, (0.0, 0.0, float(h), float(w)), (oh, ow))


def flip_rotate(
    image: np.ndarray, labels: np.ndarray | None, *, k: int, flip: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate an ``(H, W, 3)`` image and its ``(L, H, W)`` labels by ``k`` × 90°, then
    optionally flip them left–right (the 8 symmetries of the square)."""
    image = np.rot90(image, k, axes=(0, 1))
    if flip:
        image = image[:, ::-1]
    if labels is not None:
        labels = np.rot90(labels, k, axes=(1, 2))
        if flip:
            labels = labels[:, :, ::-1]
        labels = np.ascontiguousarray(labels)
    return np.ascontiguousarray(image), labels


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur an ``(H, W, 3)`` ``uint8`` image with a Gaussian of ``sigma`` pixels (channels apart).

    Simulates out-of-focus scanning and images upsampled from a coarser pixel size, so that
    sharpness does not tell one training source from another.
    """
    out = ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def stain_jitter(
    image: np.ndarray, rng: np.random.Generator, *, sigma: float = 0.05, bias: float = 0.02,
    brightness: float = 0.0,
) -> np.ndarray:
    """Perturb H&E staining in optical-density space (Tellez et al. 2018 style).

    The image is unmixed into haematoxylin, eosin and DAB concentrations
    (``skimage.color.rgb2hed``, Beer–Lambert), each concentration ``c`` becomes
    ``c * U(1 - sigma, 1 + sigma) + U(-bias, bias)``, and the result is mixed back
    (``hed2rgb``). ``brightness`` adds ``U(-b, b)`` to all channels in [0, 1] units.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8``.
    rng : numpy.random.Generator
    sigma, bias, brightness : float
        Jitter strengths (0 disables that part).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8``.
    """
    from skimage.color import hed2rgb, rgb2hed

    alpha = rng.uniform(1.0 - sigma, 1.0 + sigma, 3)
    beta = rng.uniform(-bias, bias, 3)
    shift = rng.uniform(-brightness, brightness) if brightness > 0 else 0.0
    hed = rgb2hed(image)
    rgb = hed2rgb(hed * alpha + beta) + shift
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, *, hue: float = 0.0, saturation: float = 0.0,
                  contrast: float = 0.0, gamma: float = 0.0) -> np.ndarray:
    """HSV, contrast and gamma jitter of an ``(H, W, 3)`` ``uint8`` image (scanner and stain-protocol drift).

    The hue turns by ``U(-hue, hue)`` of the colour circle, the saturation scales by
    ``U(1 - saturation, 1 + saturation)``, the contrast about the image mean by
    ``U(1 - contrast, 1 + contrast)``, and intensities ``v`` in [0, 1] become ``v ** g`` with
    ``g = U(1 - gamma, 1 + gamma)``. A strength of 0 skips that part.
    """
    x = image.astype(np.float32) / 255.0
    if hue > 0 or saturation > 0:
        from skimage.color import hsv2rgb, rgb2hsv

        hsv = rgb2hsv(x)
        hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-hue, hue), 1.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - saturation, 1 + saturation), 0, 1)
        x = hsv2rgb(hsv).astype(np.float32)
    if contrast > 0:
        x = (x - x.mean()) * rng.uniform(1 - contrast, 1 + contrast) + x.mean()
    if gamma > 0:
        x = np.clip(x, 0, 1) ** rng.uniform(1 - gamma, 1 + gamma)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R 601) of an ``(H, W, 3)`` ``uint8`` image, repeated on the 3 channels."""
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, -1)


def haematoxylin_only(image: np.ndarray) -> np.ndarray:
    """The haematoxylin channel of an H&E image alone, as RGB (eosin and DAB removed by colour deconvolution)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(image)
    hed[..., 1:] = 0.0
    return np.clip(np.rint(hed2rgb(hed) * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian noise of ``sigma`` (in [0, 1] units) to an ``(H, W, 3)`` ``uint8`` image."""
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma * 255.0, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an ``(H, W, 3)`` ``uint8`` image as JPEG at ``quality`` and decode it (compression artefacts)."""
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with PILImage.open(buffer) as im:
        return np.array(im.convert("RGB"))  # a writable copy


def normalised_distance(instances: np.ndarray) -> np.ndarray:
    """Per-instance normalised distance to the object boundary, in ``[0, 1]``.

    Pixels on an instance's border (4-neighbour of background or of another instance)
    are 0, the deepest pixel of each instance is 1; background is 0. Instances with no
    interior pixel (1–2 px wide) are 1 everywhere, so every instance has a peak.
    Vectorised: one Euclidean distance transform for all instances, then division by
    each instance's maximum (``ndimage.maximum`` over the labels + a lookup).

    Parameters
    ----------
    instances : numpy.ndarray
        ``(H, W)`` integer instance map (0 = background).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` ``float32``.

    Examples
    --------
    >>> inst = np.zeros((1, 7), int); inst[0, 1:6] = 1
    >>> normalised_distance(np.repeat(inst, 7, 0))[3].round(2).tolist()
    [0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    inst = np.asarray(instances)
    fg = inst > 0
    if not fg.any():
        return np.zeros(inst.shape, np.float32)
    edge = np.zeros(inst.shape, bool)
    dy = inst[1:, :] != inst[:-1, :]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    dx = inst[:, 1:] != inst[:, :-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[0, :] = edge[-1, :] = True  # the tile border counts as a boundary
    edge[:, 0] = edge[:, -1] = True
    dist = ndimage.distance_transform_edt(fg & ~edge).astype(np.float32)
    ids, inverse = np.unique(inst, return_inverse=True)
    peak = np.asarray(ndimage.maximum(dist, inverse.reshape(inst.shape), np.arange(ids.size)), np.float32)
    per_pixel = peak[inverse.reshape(inst.shape)]
    out = np.where(per_pixel > 0, dist / np.maximum(per_pixel, 1e-6), 1.0).astype(np.float32)
    out[~fg] = 0.0
    return out
