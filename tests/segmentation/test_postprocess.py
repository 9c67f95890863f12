"""Instances from (probability, distance) maps: touching nuclei split, small objects removed in µm²."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xpath.datasets import synthetic_tissue
from xpath.segmentation.inference.postprocess import instances_from_maps, remove_small_instances
from xpath.segmentation.metrics import contingency, panoptic_quality


@pytest.fixture(scope="module")
def touching_tile():
    return synthetic_tissue(3, size=256, mpp=0.5, touching=0.5)


def test_touching_synthetic_nuclei_are_split(touching_tile, gt_distance):
    gt = touching_tile.instances
    prob = (gt > 0).astype(np.float32)
    pred = instances_from_maps(prob, gt_distance(gt), mpp=0.5, min_area_um2=5.0)
    assert pred.dtype == np.int32 and pred.shape == gt.shape
    # The semantic watershed alone would merge the pairs; the distance markers split them.
    n_blobs = ndimage.label(gt > 0)[1]
    n_gt = len(np.unique(gt)) - 1
    assert n_blobs < n_gt - 10, "the tile must contain many touching nuclei for this test to mean anything"
    r = panoptic_quality(gt, pred)
    assert r["dq"] > 0.95 and r["sq"] > 0.95, r
    # Every planted touching pair: its two nuclei land in different predicted objects.
    cells = touching_tile.cells
    touching_ids = cells.loc[cells["touching"], "id"].to_numpy()
    t = contingency(gt, pred)
    best = np.zeros(t.gt_ids.max() + 1, np.int64)
    order = np.argsort(t.intersection)  # ascending: the largest overlap is written last
    best[t.gt_ids[t.pair_gt[order]]] = t.pred_ids[t.pair_pred[order]]
    owners = best[touching_ids]
    assert np.unique(owners).size >= 0.97 * touching_ids.size


def test_marker_h_option_also_splits(touching_tile, gt_distance):
    gt = touching_tile.instances
    pred = instances_from_maps((gt > 0).astype(np.float32), gt_distance(gt), marker_h=0.1)
    assert panoptic_quality(gt, pred)["dq"] > 0.94


def test_small_objects_removed_by_area_in_um2():
    prob = np.zeros((40, 40), np.float32)
    prob[2:6, 2:7] = 1  # 20 px = 5 µm² at 0.5 µm/px
    prob[20:30, 20:30] = 1  # 100 px = 25 µm²
    dist = ndimage.distance_transform_edt(prob > 0).astype(np.float32)
    dist /= dist.max()
    dist[2:6, 2:7] = 0.9  # a marker for the small one
    kept = instances_from_maps(prob, dist, mpp=0.5, min_area_um2=10.0)
    assert kept.max() == 1 and kept[25, 25] == 1 and kept[3, 3] == 0
    both = instances_from_maps(prob, dist, mpp=0.5, min_area_um2=4.0)
    assert both.max() == 2
    # same objects at 0.25 µm/px are 4x smaller physically: the 100 px one (6.25 µm²) goes too
    assert instances_from_maps(prob, dist, mpp=0.25, min_area_um2=10.0).max() == 0


def test_foreground_without_marker_is_kept():
    prob = np.zeros((10, 10), np.float32)
    prob[2:5, 2:5] = 1
    dist = np.full((10, 10), 0.1, np.float32)  # below marker_threshold everywhere
    out = instances_from_maps(prob, dist)
    assert out.max() == 1 and (out > 0).sum() == 9


def test_remove_small_instances_renumbers():
    lab = np.array([[3, 3, 0, 8, 5, 5, 5]])
    assert remove_small_instances(lab, 2).tolist() == [[1, 1, 0, 0, 2, 2, 2]]


def test_bad_input():
    p = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="mpp"):
        instances_from_maps(p, p, min_area_um2=5.0)
    with pytest.raises(ValueError, match="distance must have shape"):
        instances_from_maps(p, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="float"):
        instances_from_maps(p.astype(int), p)
    with pytest.raises(ValueError, match="threshold"):
        instances_from_maps(p, p, threshold=1.5)
