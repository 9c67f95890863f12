"""Training data pipeline: resampling, tiling, targets, negatives, augmentation, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xpath.ontology import Label
from xpath.segmentation import tile_starts
from xpath.segmentation.training.augment import (
    crop_resize,
    gaussian_blur,
    normalised_distance,
    rescale_image,
    stain_jitter,
)
from xpath.segmentation.training.config import AugmentConfig
from xpath.segmentation.training.dataset import SegmentationDataset, collate_batch
from xpath.segmentation.training.records import build_records, pseudo_nuclei_triples
from xpath.segmentation.training.sampler import BalancedSampler, balance_weights


# ----------------------------------------------------------------------------- kernels
def test_crop_resize_identity_and_reflection(rng):
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    lab = rng.integers(0, 5, (2, 20, 30)).astype(np.int32)
    out, out_lab = crop_resize(img, lab, (0, 0, 20, 30), (20, 30))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(out_lab, lab)
    # a window beyond the image samples numpy's "reflect" padding
    out, out_lab = crop_resize(img, lab, (-5, -7, 25, 33), (30, 40))
    np.testing.assert_array_equal(out, np.pad(img, ((5, 5), (7, 3), (0, 0)), mode="reflect"))
    np.testing.assert_array_equal(out_lab, np.pad(lab, ((0, 0), (5, 5), (7, 3)), mode="reflect"))


def test_crop_resize_upsamples_bilinearly():
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 1] = 200
    out, _ = crop_resize(img, None, (0, 0, 1, 2), (1, 4))
    # output centres at source x = -0.25, 0.25, 0.75, 1.25 → reflected bilinear weights
    np.testing.assert_array_equal(out[0, :, 0], [50, 50, 150, 150])


def test_rescale_halves_area_of_a_disc():
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60**2).astype(np.int32)
    img = np.where(disc[..., None] > 0, 50, 230).astype(np.uint8).repeat(3, 2)
    out, lab = rescale_image(img, disc[None], 0.5)
    assert out.shape == (100, 100, 3) and lab.shape == (1, 100, 100)
    assert lab.sum() == pytest.approx(np.pi * 30**2, rel=0.02)
    with pytest.raises(ValueError, match="factor"):
        rescale_image(img, None, 0.0)


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 64), (257, 256, 64), (4096, 512, 128), (50, 64, 16)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    s = tile_starts(length, tile, overlap)  # the placement the training tiles use
    assert s[0] == 0
    if length > tile:
        assert s[-1] + tile == length
        assert np.all(np.diff(s) <= tile - overlap)
        # the fewest tiles: one fewer could not keep the overlap
        n = len(s) - 1
        assert n < 1 or (length - tile) / max(n - 1, 1) > tile - overlap or n == 1
    with pytest.raises(ValueError):
        tile_starts(100, 32, 32)


def _distance_reference(inst: np.ndarray) -> np.ndarray:
    """Per-instance loop: EDT of each instance's own interior, divided by its maximum."""
    out = np.zeros(inst.shape, np.float32)
    pad = np.pad(inst, 1, constant_values=-1)  # the tile border is a boundary
    for i in np.unique(inst[inst > 0]):
        own = pad == i
        border = own & ~ndimage.binary_erosion(own, structure=ndimage.generate_binary_structure(2, 1))
        d = ndimage.distance_transform_edt(own & ~border)[1:-1, 1:-1]
        m = d[inst == i].max()
        out[inst == i] = d[inst == i] / m if m > 0 else 1.0
    return out


def test_normalised_distance_two_touching_squares():
    inst = np.zeros((9, 16), np.int32)
    inst[1:8, 1:8] = 1
    inst[1:8, 8:15] = 2  # touches instance 1
    d = normalised_distance(inst)
    np.testing.assert_allclose(d, _distance_reference(inst), atol=1e-6)
    assert d[4, 4] == 1.0 and d[4, 11] == 1.0  # each centre is a peak
    assert d[4, 7] == 0.0 and d[4, 8] == 0.0  # the shared border separates them
    assert d[0].max() == 0.0


def test_normalised_distance_matches_reference_on_real_nuclei(shared_data):
    from xpath.datasets import load_dataset

    inst = load_dataset("consep", limit=1, root=shared_data)[0].instances
    d = normalised_distance(inst)
    ref = _distance_reference(inst)
    assert d.min() >= 0 and d.max() <= 1
    np.testing.assert_allclose(d, ref, atol=0.05)  # nearest boundary may be another object's (sub-pixel)
    ids = np.unique(inst[inst > 0])
    np.testing.assert_allclose(ndimage.maximum(d, inst, ids), 1.0)


def test_stain_jitter_scales_stain_concentrations(rng):
    from skimage.color import rgb2hed

    from xpath.datasets import sample_he

    img = np.ascontiguousarray(sample_he().array[:64, :64])
    same = stain_jitter(img, np.random.default_rng(0), sigma=0, bias=0, brightness=0)
    err = np.abs(same.astype(int) - img)
    assert err.max() <= 4 and err.mean() < 0.5  # Beer–Lambert round trip (skimage adds a small epsilon)
    out = stain_jitter(img, np.random.default_rng(1), sigma=0.2, bias=0, brightness=0)
    alpha = np.random.default_rng(1).uniform(0.8, 1.2, 3)
    h_in, h_out = rgb2hed(img)[..., 0], rgb2hed(out)[..., 0]
    fit = np.polyfit(h_in.ravel(), h_out.ravel(), 1)[0]
    assert fit == pytest.approx(alpha[0], rel=0.1)


def test_gaussian_blur_removes_fine_detail_but_keeps_the_mean(rng):
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    img[:, :, 2] = 200  # a flat channel stays flat: channels are blurred apart
    out = gaussian_blur(img, 1.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out[..., :2].astype(float) - img[..., :2].mean()).mean() < 0.3 * np.abs(
        img[..., :2].astype(float) - img[..., :2].mean()).mean()
    assert (out[..., 2] == 200).all()
    assert abs(out.mean() - img.mean()) < 1.0


def test_blur_augmentation_applies_with_its_probability(rng):
    from xpath.datasets import ImageMaskLabel

    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    sem = np.zeros((64, 64), bool)
    sem[20:40, 20:40] = True
    recs = build_records([ImageMaskLabel(img, sem, None, Label("colon", "tissue", "gland"), 0.5, "t", "x", "train")],
                         mpp=0.5)
    plain = {"scale": (1.0, 1.0), "shift": 0.0, "flips": False, "stain_sigma": 0, "stain_bias": 0, "brightness": 0}
    sharp = SegmentationDataset(recs, tile_size=64, prompts_per_image=1, max_negatives=0,
                                augment=AugmentConfig(**plain))
    half = SegmentationDataset(recs, tile_size=64, prompts_per_image=1, max_negatives=0,
                               augment=AugmentConfig(**plain, blur_prob=0.5, blur_sigma=(1.0, 2.0)))
    detail = [np.abs(np.diff(ds[(0, k)]["image"].numpy().astype(float), axis=0)).mean()
              for ds in (sharp, half) for k in range(40)]
    sharp_detail, half_detail = np.array(detail[:40]), np.array(detail[40:])
    assert np.allclose(sharp_detail, sharp_detail[0])  # no blur configured: every draw as sharp
    blurred = half_detail < 0.5 * sharp_detail[0]
    assert 10 <= blurred.sum() <= 30  # about half of the draws
    assert np.array_equal(half[(0, 3)]["masks"].numpy(), sharp[(0, 3)]["masks"].numpy())  # masks untouched


# ----------------------------------------------------------------------------- records and items
def _toy_records():
    """Two 'colon' images with typed nuclei and one 'breast' image, built from triples."""
    from xpath.datasets import ImageMaskLabel

    out = []
    for k, (region, src) in enumerate([("colon", "a"), ("colon", "a"), ("breast", "b")]):
        img = np.full((64, 64, 3), 230, np.uint8)
        inst = np.zeros((64, 64), np.int32)
        inst[10:20, 10:20] = 1
        inst[40:50, 30:44] = 2
        img[inst > 0] = (90, 40, 140)
        kinds = ["epithelial", "inflammatory"] if k < 2 else ["tumor", "tumor"]
        for obj, i in zip(kinds, (1, 2)):
            sem = inst == i
            if k == 1 and obj == "inflammatory":
                continue  # the second image has no inflammatory nuclei
            out.append(ImageMaskLabel(img, sem, np.where(sem, inst, 0), Label(region, "nuclei", obj), 0.5, src,
                                      f"img{k}", "train"))
    return build_records(out, mpp=0.5)


def test_records_group_triples_and_rescale(shared_data):
    from xpath.datasets import load_dataset

    recs = _toy_records()
    assert [len(r.labels) for r in recs] == [2, 1, 1]  # breast: two tumour nuclei, one label
    items = load_dataset("monuseg", split="test", limit=1, root=shared_data) + load_dataset("ebhi", limit=1,
                                                                                            root=shared_data)
    mon, ebhi = build_records(items, mpp=0.5)
    assert mon.image.shape[0] == pytest.approx(1000 * items[0].mpp / 0.5, abs=1)
    assert mon.instances.max() > 200 and mon.masks[0].mean() == pytest.approx((mon.instances > 0).mean())
    assert ebhi.scale == 1.0 and ebhi.image.shape == (224, 224, 3)  # no mpp: native scale
    (ebhi2,) = build_records(items[1:], mpp=0.5, assume_mpp={"ebhi": 0.25})
    assert ebhi2.image.shape == (112, 112, 3)


def test_pseudo_nuclei_add_a_nucleus_mask_to_tissue_only_images(shared_data):
    from xpath.datasets import load_dataset

    ebhi = load_dataset("ebhi", limit=1, root=shared_data)[0]
    triples = pseudo_nuclei_triples(ebhi, mpp=1.0)
    gland, nuclei = triples
    assert gland.label == Label("colon", "tissue", "gland")
    assert np.array_equal(gland.semantic, ebhi.triples()[0].semantic)
    assert nuclei.label == Label("colon", "nuclei", "nucleus") and nuclei.instances is None
    assert (nuclei.source, nuclei.image_id, nuclei.split) == (ebhi.source, ebhi.image_id, ebhi.split)
    # haematoxylin-dark pixels: the pseudo-nuclei are darker than the rest, and not the gland mask
    gray = ebhi.image.mean(-1)
    assert gray[nuclei.semantic].mean() < gray[~nuclei.semantic].mean() - 30
    assert 0.05 < nuclei.semantic.mean() < 0.5
    overlap = (nuclei.semantic & gland.semantic).sum() / (nuclei.semantic | gland.semantic).sum()
    assert overlap < 0.5
    monuseg = load_dataset("monuseg", limit=1, root=shared_data)[0]
    with pytest.raises(ValueError, match="already has nucleus labels"):
        pseudo_nuclei_triples(monuseg, mpp=0.25)


def test_item_targets_and_negatives():
    recs = _toy_records()
    ds = SegmentationDataset(recs, tile_size=64, prompts_per_image=3, max_negatives=2, augment=None)
    item = ds[1]  # img1: epithelial only; own-source 'inflammatory' and region 'breast' labels are negatives
    assert item["prompts"][0] == "nuclei-level epithelial in colon pathology"
    assert item["present"].tolist() == [1.0, 0.0, 0.0] and item["prompt_valid"].all()
    assert set(item["prompts"][1:]) == {"nuclei-level inflammatory in colon pathology",
                                        "nuclei-level tumor in breast pathology"}
    np.testing.assert_array_equal(item["masks"][0].numpy(), recs[1].masks[0])
    d = item["distance"][0].float().numpy()
    assert item["has_instances"][0] and d.max() == 1.0 and (d[~recs[1].masks[0]] == 0).all()
    # breast image: only the colon labels are known absent (other region); no padding needed
    item = ds[2]
    assert item["prompts"][0] == "nuclei-level tumor in breast pathology"
    assert all("colon" in p for p in item["prompts"][1:])
    batch = collate_batch([ds[0], ds[1]])
    assert batch["image"].shape == (2, 64, 64, 3) and batch["masks"].shape == (2, 3, 64, 64)


def test_no_cross_dataset_negatives_in_same_region(shared_data):
    """An EBHI gland tile (colon) never gets a CoNSeP colon nucleus prompt as 'absent'."""
    from xpath.datasets import load_dataset

    items = load_dataset("ebhi", limit=2, root=shared_data) + load_dataset("consep", limit=2, root=shared_data) + \
        load_dataset("nucls", limit=1, root=shared_data)
    ds = SegmentationDataset(build_records(items, mpp=0.5), tile_size=128, prompts_per_image=6, max_negatives=5,
                             augment=AugmentConfig(), seed=3)
    for i in range(len(ds)):
        item = ds[i]
        for prompt, present, valid in zip(item["prompts"], item["present"], item["prompt_valid"]):
            if valid and present == 0 and item["source"] == "ebhi":
                assert "breast" in prompt or prompt.startswith("tissue-level gland"), prompt
            if valid and present == 0 and item["source"] == "consep":
                assert "breast" in prompt or "colon" in prompt and "nuclei-level" in prompt, prompt


def test_augmentation_keeps_masks_on_their_pixels(rng):
    """The image is painted from its mask, so after any flip/rotation/zoom/crop they must still agree."""
    from xpath.datasets import ImageMaskLabel

    blobs = ndimage.gaussian_filter(rng.standard_normal((150, 170)), 6)
    inst, _ = ndimage.label(blobs > 0.02)
    img = np.where(inst[..., None] > 0, (220, 30, 60), (40, 200, 90)).astype(np.uint8)
    lab = Label("colon", "nuclei", "epithelial")
    recs = build_records([ImageMaskLabel(img, inst > 0, inst.astype(np.int32), lab, 0.5, "t", "x", "train")], mpp=0.5)
    ds = SegmentationDataset(recs, tile_size=96, prompts_per_image=1, max_negatives=0,
                             augment=AugmentConfig(stain_sigma=0, stain_bias=0, brightness=0))
    images = []
    for key in [(i, s) for i in range(len(ds)) for s in range(4)]:
        it = ds[key]
        red = it["image"].numpy()[..., 0] > 127
        mask = it["masks"][0].numpy() > 0
        assert (red == mask).mean() > 0.97, key
        images.append(it["image"].numpy())
    assert len({im.tobytes() for im in images}) == len(images)  # every draw differs
    a, b = ds[(0, 5)], ds[(0, 5)]
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())  # seeded per key


# ----------------------------------------------------------------------------- sampling
def test_balance_weights_known_answer():
    a, b, c = (Label("colon", "nuclei", x) for x in ("a", "b", "c"))
    w = balance_weights([(a,), (a,), (a,), (b,), (a, c)])
    np.testing.assert_allclose(w, [0.25, 0.25, 0.25, 1.0, (0.25 + 1.0) / 2])
    np.testing.assert_allclose(balance_weights([(a,)] * 3, by="source", sources=["x", "x", "y"]), [0.5, 0.5, 1.0])


def test_sampler_is_deterministic_resumable_and_split_across_ranks():
    w = np.array([1.0, 2.0, 0.0, 5.0])
    single = BalancedSampler(w, seed=7, epoch_size=10)
    it = iter(single)
    stream = [next(it) for _ in range(40)]
    r0, r1 = BalancedSampler(w, seed=7, num_replicas=2, rank=0, epoch_size=10), \
        BalancedSampler(w, seed=7, num_replicas=2, rank=1, epoch_size=10)
    i0, i1 = iter(r0), iter(r1)
    interleaved = [x for pair in zip([next(i0) for _ in range(20)], [next(i1) for _ in range(20)]) for x in pair]
    assert interleaved == stream  # the ranks partition one global stream
    later = iter(BalancedSampler(w, seed=7, start=25, epoch_size=10))
    assert [next(later) for _ in range(15)] == stream[25:]
    draws = np.array([single.draw(j)[0] for j in range(6000)])
    assert (draws == 2).sum() == 0
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 6000, w / w.sum(), atol=0.02)
    with pytest.raises(ValueError):
        BalancedSampler(np.array([0.0, 0.0]))


def test_synonym_paraphrases_keep_the_region_of_negatives():
    from xpath.segmentation.training.dataset import prompt_variants

    recs = _toy_records()
    aug = AugmentConfig(stain_sigma=0, stain_bias=0, brightness=0, synonym_prob=1.0)
    ds = SegmentationDataset(recs, tile_size=64, prompts_per_image=3, max_negatives=2, augment=aug)
    seen_regionless = False
    for key in [(1, s) for s in range(20)]:
        item = ds[key]
        for text, lab, present in zip(item["prompts"], item["labels"], item["present"]):
            every, regional = prompt_variants(lab)
            assert text != lab.prompt and text in every
            if present == 0:
                assert text in regional, text  # "lymphocytes" alone could be in a breast tile
            seen_regionless |= text not in regional
    assert seen_regionless  # positives also get free-text forms without a region
    assert set(ds.prompts) >= {"lymphocytes", "lymphocytes in colon", "nuclei-level epithelial in colon pathology"}
