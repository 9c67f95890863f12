"""The main job run by ``make demo``: every layer of the library on the built-in sample data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]


def _save_png_atomic(array: np.ndarray, path: Path) -> Path:
    from PIL import Image as PILImage

    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    PILImage.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def run_demo(out_dir: Path) -> list[Path]:
    """Run the demo and return the paths it wrote."""
    from .datasets import sample_he, sample_slide, synthetic_tissue

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    he = sample_he()
    written.append(_save_png_atomic(he.array, out_dir / "sample_he.png"))
    with sample_slide() as slide:
        written.append(_save_png_atomic(slide.thumbnail(512).array, out_dir / "sample_slide_thumbnail.png"))
    tile = synthetic_tissue(0, size=512)
    written.append(_save_png_atomic(tile.image, out_dir / "synthetic_tissue.png"))
    return written
