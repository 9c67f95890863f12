"""Shared fixtures of the biomarker tests: one synthetic tile (exact ground truth) per session."""

from __future__ import annotations

import numpy as np
import pytest

from xpath.datasets import NUCLEUS_TYPES, REGION_TYPES, synthetic_tissue

CLASS_NAMES = dict(enumerate(NUCLEUS_TYPES, 1))
REGION_NAMES = dict(enumerate(REGION_TYPES))


@pytest.fixture(scope="session")
def tile():
    return synthetic_tissue(3, size=384, mpp=0.5)


@pytest.fixture(scope="session")
def tile_table(tile):
    from xpath.biomarkers import cell_table

    return cell_table(tile.instances, tile.image, mpp=tile.mpp, classes=tile.nucleus_types, class_names=CLASS_NAMES)


def _disc(shape, center, radius, value=1, out=None):
    out = np.zeros(shape, np.int32) if out is None else out
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    out[(rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius**2] = value
    return out


@pytest.fixture
def disc():
    """``disc(shape, center, radius, value=1, out=None)``: label image with a digital disc."""
    return _disc
