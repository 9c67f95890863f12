import numpy as np

from xpath.datasets import synthetic_tissue
from xpath.segmentation.classical import classical_nuclei


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_classical_baseline_finds_synthetic_nuclei():
    tile = synthetic_tissue(7, size=256, mpp=0.5, touching=0.0)
    labels = classical_nuclei(tile.image, mpp=0.5)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == set(range(labels.max() + 1))  # ids 1..N
    assert _dice(labels > 0, tile.instances > 0) > 0.8
    assert 0.6 < labels.max() / tile.instances.max() < 1.6


def test_blank_image_gives_no_objects():
    assert classical_nuclei(np.full((64, 64, 3), 240, np.uint8), mpp=0.5).max() == 0
