"""Shared helpers of the segmentation tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def _gt_distance(instances: np.ndarray) -> np.ndarray:
    """Ground-truth-like distance map: per-instance EDT to the border (shared borders included), max 1."""
    edge = np.zeros(instances.shape, bool)
    dy = instances[1:] != instances[:-1]
    dx = instances[:, 1:] != instances[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    dist = ndimage.distance_transform_edt((instances > 0) & ~edge)
    peak = np.maximum(np.asarray(ndimage.maximum(dist, instances, np.arange(instances.max() + 1))), 1.0)
    return np.where(instances > 0, dist / peak[instances], 0.0).astype(np.float32)


@pytest.fixture(scope="session")
def gt_distance():
    """The function ``instances (H, W) int → distance map (H, W) float32`` that a perfect model would output."""
    return _gt_distance


@pytest.fixture
def one_torch_thread():
    """Small tensors: one intra-op thread is faster than two fighting other processes for 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
