"""Training of box and point prompts: drawn prompts, the dataset's spatial slots, the loss, the model's object masks,
and the strong stain/scanner augmentation kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xpath.datasets import ImageMaskLabel
from xpath.ontology import Label
from xpath.segmentation import segmentation_loss
from xpath.segmentation.modeling import SegmenterOutput
from xpath.segmentation.modeling.box_prior import box_neighbourhood, box_prior_logits
from xpath.segmentation.modeling.segmenter import OBJECT_PROMPT, spatial_prompts
from xpath.segmentation.training.augment import (
    colour_jitter,
    gaussian_noise,
    haematoxylin_only,
    jpeg_roundtrip,
    to_grey,
)
from xpath.segmentation.training.config import AugmentConfig
from xpath.segmentation.training.dataset import SegmentationDataset, collate_batch
from xpath.segmentation.training.records import build_records
from xpath.segmentation.training.spatial import MAX_POINTS, label_objects, sample_spatial_prompt


def _two_nuclei():
    inst = np.zeros((64, 64), np.int32)
    inst[10:20, 10:22] = 1
    inst[40:52, 30:44] = 2
    return inst


def test_a_box_prompt_is_one_object_with_a_jittered_box(rng):
    inst = _two_nuclei()
    for _ in range(20):
        sp = sample_spatial_prompt(inst > 0, inst, rng, points_prob=0.0)
        ids = np.unique(inst[sp.target])
        assert len(ids) == 1 and ids[0] > 0 and (sp.target == (inst == ids[0])).all() and sp.instance
        ys, xs = np.nonzero(sp.target)
        true = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        side = np.array([true[2] - true[0], true[3] - true[1]] * 2)
        assert (np.abs(sp.box - true) <= 0.1 * side + 1e-4).all()
        assert np.isnan(sp.points).all()


def test_point_prompts_lie_inside_and_negatives_outside(rng):
    inst = _two_nuclei()
    for _ in range(30):
        sp = sample_spatial_prompt(inst > 0, inst, rng, points_prob=1.0)
        assert np.isnan(sp.box).all() and sp.points.shape == (MAX_POINTS, 3)
        used = sp.points[~np.isnan(sp.points[:, 0])]
        pos, neg = used[used[:, 2] == 1], used[used[:, 2] == 0]
        assert 1 <= len(pos) <= 3 and len(neg) <= 1
        assert sp.target[(pos[:, 1] - 0.5).astype(int), (pos[:, 0] - 0.5).astype(int)].all()
        assert not sp.target[(neg[:, 1] - 0.5).astype(int), (neg[:, 0] - 0.5).astype(int)].any()


def test_objects_without_instances_are_connected_components():
    mask = _two_nuclei() > 0
    objects, ids = label_objects(mask, None, min_area=10)
    assert len(ids) == 2
    assert label_objects(mask, None, min_area=10_000)[1].size == 0
    assert sample_spatial_prompt(np.zeros((8, 8), bool), None, np.random.default_rng(0)) is None


def test_a_region_box_targets_the_objects_centred_in_it(rng):
    inst = _two_nuclei()
    found = [sample_spatial_prompt(inst > 0, inst, rng, region_prob=1.0) for _ in range(40)]
    regions = [sp for sp in found if not sp.instance]
    assert regions, "a region box should be drawn when asked for"
    for sp in regions:
        for i in np.unique(inst[sp.target]):
            cy, cx = np.argwhere(inst == i).mean(0)
            assert sp.box[0] <= cx < sp.box[2] and sp.box[1] <= cy < sp.box[3]


def test_dataset_spatial_slots_are_consistent(rng):
    inst = _two_nuclei()
    img = np.full((64, 64, 3), 230, np.uint8)
    img[inst > 0] = (90, 40, 140)
    item = ImageMaskLabel(img, inst > 0, inst, Label("colon", "nuclei", "nucleus"), 0.5, "a", "x", "train")
    aug = AugmentConfig(scale=(1.0, 1.0), shift=0.0, flips=False, stain_sigma=0, stain_bias=0, brightness=0,
                        spatial_prob=1.0, spatial_text_prob=0.0, spatial_region_prob=0.0)
    ds = SegmentationDataset(build_records([item], mpp=0.5), tile_size=64, prompts_per_image=2, max_negatives=0,
                             augment=aug)
    assert OBJECT_PROMPT in ds.prompts
    batch = collate_batch([ds[(0, s)] for s in range(6)])
    assert batch["boxes"].shape == (6, 2, 4) and batch["points"].shape == (6, 2, MAX_POINTS, 3)
    sp = batch["spatial"]
    assert sp[:, 0].all() and not sp[:, 1].any()  # the present label is spatial, the padding is not
    assert all(p[0] == OBJECT_PROMPT for p in batch["prompts"])
    for b in range(6):  # the target is one nucleus, never both
        ids = np.unique(inst[batch["masks"][b, 0].numpy().astype(bool)])
        assert len(ids) == 1 and ids[0] > 0
    none = SegmentationDataset(build_records([item], mpp=0.5), tile_size=64, augment=None)
    assert not none[0]["spatial"].any() and torch.isnan(none[0]["boxes"]).all()


def test_box_prior_and_neighbourhood():
    boxes = torch.tensor([[[16.0, 16.0, 48.0, 48.0], [float("nan")] * 4]])
    prior = box_prior_logits(boxes, (16, 16), 4)
    assert prior.shape == (1, 2, 16, 16)
    assert (prior[0, 0, 4:12, 4:12] == 0).all() and prior[0, 0, 0, 0] == pytest.approx(-12.0)
    assert (prior[0, 1] == 0).all()  # no box, no prior
    grown = box_neighbourhood(boxes[0, :1])
    assert grown.tolist() == [[8.0, 8.0, 56.0, 56.0]]  # a quarter of 32 px on every side


def test_spatial_prompts_are_those_with_a_box_or_a_point():
    nan = float("nan")
    boxes = torch.tensor([[[0.0, 0, 4, 4], [nan] * 4, [nan] * 4]])
    points = torch.full((1, 3, 2, 3), nan)
    points[0, 1, 0] = torch.tensor([1.0, 1.0, 1.0])
    assert spatial_prompts(boxes, points).tolist() == [[True, True, False]]
    assert spatial_prompts(None, None) is None


def test_loss_compares_a_spatial_prompt_with_its_own_mask():
    h = w = 16
    g = torch.Generator().manual_seed(0)
    cands = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    sim = torch.randn(1, 1, 3, generator=g).requires_grad_()
    mask_logits = torch.zeros(1, 1, h, w, requires_grad=True)
    out = SegmenterOutput(mask_logits, torch.zeros(1, 1, h, w), torch.zeros(1, 1, requires_grad=True), sim,
                          sim.argmax(-1), cands, (h, w), spatial=torch.tensor([[True]]))
    target = torch.zeros(1, 1, h, w)
    target[0, 0, 4:8, 4:8] = 1
    t = {"masks": target, "distance": target, "present": torch.ones(1, 1), "prompt_valid": torch.ones(1, 1, dtype=bool),
         "has_instances": torch.zeros(1, 1, dtype=bool), "spatial": torch.tensor([[True]])}
    loss, parts = segmentation_loss(out, t)
    assert parts["selection"] == 0.0  # a spatial prompt selects no candidate
    assert parts["mask_bce"] == pytest.approx(np.log(2), rel=1e-5)  # logits 0 everywhere
    loss.backward()
    assert mask_logits.grad.abs().sum() > 0 and cands.grad is None


def test_strong_augmentation_kernels(rng):
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey = to_grey(img)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert colour_jitter(img, rng).tolist() == img.tolist()  # all strengths 0: unchanged
    jittered = colour_jitter(img, rng, hue=0.1, saturation=0.3, contrast=0.3, gamma=0.3)
    assert jittered.dtype == np.uint8 and jittered.shape == img.shape and (jittered != img).any()
    h_only = haematoxylin_only(np.full((4, 4, 3), (200, 120, 180), np.uint8))  # pink eosin, little haematoxylin
    assert h_only.mean() > 200  # eosin removed: near white
    noisy = gaussian_noise(img, rng, 0.05)
    assert 5 < np.abs(noisy.astype(int) - img).mean() < 20
    smooth = np.tile(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 1, 3))
    assert np.abs(jpeg_roundtrip(smooth, 50).astype(int) - smooth).mean() < 4
