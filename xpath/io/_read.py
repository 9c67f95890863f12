"""Read plain images (PNG/JPEG/TIFF) and whole-slide images (SVS, NDPI, MRXS, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._types import Image, check_mpp

__all__ = ["SLIDE_SUFFIXES", "Slide", "open_slide", "read_image", "read_region"]

SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".vms", ".vmu", ".scn", ".bif", ".svslide")
_PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: no such file: {path}")
    if not path.is_file():
        raise IsADirectoryError(f"path: expected a file, got a directory: {path}")
    return path


def _read_plain(path: Path) -> tuple[np.ndarray, float | None]:
    """Pixels of a PNG/JPEG/TIFF as (H, W, C) plus the mpp the file records, if any."""
    mpp = None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                array = page.asarray()
                mpp = _tiff_mpp(page)
                if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
                    array = np.moveaxis(array, 0, -1)  # planar (C, H, W) → (H, W, C)
        else:
            from PIL import Image as PILImage

            with PILImage.open(path) as im:
                if im.mode not in ("RGB", "RGBA", "L"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                array = np.asarray(im)
                dpi = im.info.get("dpi")
                if dpi and dpi[0] and float(dpi[0]) > 1000:  # only scanner-like resolutions
                    mpp = 25400.0 / float(dpi[0])
    except (OSError, ValueError, SyntaxError) as err:  # PIL and tifffile raise these for broken files
        raise ValueError(f"path: cannot read {path} as an image ({type(err).__name__}: {err})") from err
    if array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    return array, mpp


def _tiff_mpp(page) -> float | None:
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    unit = int(tags["ResolutionUnit"].value)
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)
    if um_per_unit is None or pixels_per_unit <= 1:
        return None
    return um_per_unit / pixels_per_unit


def read_image(path: str | os.PathLike, *, mpp: float | None = None, allow_grayscale: bool = False) -> Image:
    """Read an image file into an :class:`~xpath.Image`.

    Plain formats (PNG, JPEG, TIFF) are read whole. Whole-slide formats (SVS, NDPI,
    MRXS, ...) are read through OpenSlide at their lowest-resolution level that is at
    most 4096 pixels on its long side: use :func:`read_region` or :func:`open_slide`
    for full-resolution pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    mpp : float, optional
        µm per pixel; overrides what the file records. ``Image.mpp`` is ``None`` when
        neither says.
    allow_grayscale : bool
        Accept single-channel images (replicated to RGB).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a readable image.
    """
    path = _existing_file(path)
    mpp = check_mpp(mpp, required=False)
    if path.suffix.lower() in SLIDE_SUFFIXES:
        with open_slide(path) as slide:
            level = slide.level_for_max_size(4096)
            region = slide.read_region((0, 0), level=level, size=slide.level_dimensions[level])
        if mpp is not None:
            return Image(region.array, mpp=mpp, path=str(path))
        return region
    array, file_mpp = _read_plain(path)
    from .._types import check_image

    array = check_image(array, name=f"image in {path}", allow_grayscale=allow_grayscale)
    return Image(array, mpp=mpp if mpp is not None else file_mpp, path=str(path))


class Slide:
    """A whole-slide image opened with OpenSlide; regions are read on demand.

    Use as a context manager, or call :meth:`close`.

    Attributes
    ----------
    path : pathlib.Path
    dimensions : tuple of int
        ``(width, height)`` at level 0.
    level_dimensions : tuple of (int, int)
    level_downsamples : tuple of float
    mpp : float or None
        µm per pixel at level 0 (from the slide's ``openslide.mpp-x``).
    """

    def __init__(self, path: str | os.PathLike, *, mpp: float | None = None):
        self.path = _existing_file(path)
        import openslide  # a dependency (openslide-python + openslide-bin); imported on first use
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError) as err:
            raise ValueError(f"path: cannot open {self.path} as a whole-slide image ({err})") from err
        self.dimensions = tuple(self._slide.dimensions)
        self.level_dimensions = tuple(tuple(d) for d in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        file_mpp = self._slide.properties.get("openslide.mpp-x")
        self.mpp = check_mpp(mpp if mpp is not None else (float(file_mpp) if file_mpp else None), required=False)

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._slide.close()

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, dimensions={self.dimensions}, levels={len(self.level_dimensions)}, mpp={self.mpp})"

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def level_for_max_size(self, max_size: int) -> int:
        """The highest-resolution level whose long side is at most ``max_size`` (else the last)."""
        for level, (w, h) in enumerate(self.level_dimensions):
            if max(w, h) <= max_size:
                return level
        return self.level_count - 1

    def level_for_mpp(self, mpp: float) -> int:
        """The level with the largest pixel size that is still at most ``mpp`` (finer or equal)."""
        mpp = check_mpp(mpp)
        if self.mpp is None:
            raise ValueError(f"the slide {self.path} records no mpp; pass mpp= when opening it")
        best = 0
        for level, down in enumerate(self.level_downsamples):
            if self.mpp * down <= mpp * 1.001:
                best = level
        return best

    def read_region(
        self,
        location: tuple[int, int],
        size: tuple[int, int],
        *,
        level: int = 0,
    ) -> Image:
        """Read ``size=(width, height)`` pixels at ``level``, top-left at ``location=(x, y)`` in level-0 pixels.

        Pixels outside the slide are white. Returns an :class:`~xpath.Image` whose
        ``mpp`` is the level's pixel size and whose ``origin`` is ``location``.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"level must be in [0, {self.level_count - 1}], got {level}")
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        x, y = (int(v) for v in location)
        rgba = np.asarray(self._slide.read_region((x, y), level, (w, h)))
        mpp = None if self.mpp is None else self.mpp * self.level_downsamples[level]
        return Image(rgba, mpp=mpp, origin=(x, y), path=str(self.path), metadata={"level": level})

    def read_at_mpp(self, location: tuple[int, int], size: tuple[int, int], *, mpp: float) -> Image:
        """Read ``size`` output pixels at pixel size ``mpp``; top-left ``location`` in level-0 pixels.

        Reads from the nearest finer level and resizes, so only the requested area is
        decoded.
        """
        level = self.level_for_mpp(mpp)
        level_mpp = self.mpp * self.level_downsamples[level]
        scale = mpp / level_mpp
        w, h = (int(v) for v in size)
        src = self.read_region(location, (max(1, round(w * scale)), max(1, round(h * scale))), level=level)
        if src.array.shape[:2] == (h, w):
            return Image(src.array, mpp=mpp, origin=src.origin, path=src.path)
        from PIL import Image as PILImage

        resized = np.asarray(PILImage.fromarray(src.array).resize((w, h), PILImage.BILINEAR))
        return Image(resized, mpp=mpp, origin=src.origin, path=src.path)

    def thumbnail(self, max_size: int = 1024) -> Image:
        """A whole-slide overview whose long side is at most ``max_size`` pixels."""
        w0, h0 = self.dimensions
        scale = max(w0, h0) / max_size
        level = self._slide.get_best_level_for_downsample(max(scale, 1.0))
        lw, lh = self.level_dimensions[level]
        region = self.read_region((0, 0), (lw, lh), level=level)
        from PIL import Image as PILImage

        size = (max(1, round(w0 / max(scale, 1.0))), max(1, round(h0 / max(scale, 1.0))))
        array = np.asarray(PILImage.fromarray(region.array).resize(size, PILImage.BILINEAR))
        mpp = None if self.mpp is None else self.mpp * w0 / size[0]
        return Image(array, mpp=mpp, path=str(self.path), metadata={"downsample": w0 / size[0]})


def open_slide(path: str | os.PathLike, *, mpp: float | None = None) -> Slide:
    """Open a whole-slide image (SVS, NDPI, MRXS, ...) without reading its pixels."""
    return Slide(path, mpp=mpp)


def read_region(
    path: str | os.PathLike,
    location: tuple[int, int],
    size: tuple[int, int],
    *,
    level: int | None = None,
    mpp: float | None = None,
) -> Image:
    """Read one region of a slide without loading the whole slide.

    Give either ``level`` (an OpenSlide pyramid level) or ``mpp`` (output pixel size,
    read from the nearest finer level and resized); with neither, level 0.
    ``location=(x, y)`` is in level-0 pixels; ``size=(width, height)`` in output pixels.
    """
    if level is not None and mpp is not None:
        raise ValueError("give level or mpp, not both")
    with open_slide(path) as slide:
        if mpp is not None:
            return slide.read_at_mpp(location, size, mpp=mpp)
        return slide.read_region(location, size, level=level or 0)
