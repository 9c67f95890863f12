"""Tissue-level masks as regions: specks removed, enclosed holes filled, in µm², window by window as in one pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xpath.segmentation import TextPromptPredictor, segment
from xpath.segmentation.inference.regions import clean_regions

from .test_objects import AnswerStandIn
from .test_predictor import LocalStandIn, _Source


def _gland(shape=(120, 120)) -> np.ndarray:
    """A 60 × 60 px block with a 10 × 10 lumen, a 4 × 4 speck beside it and a notch open to the border."""
    mask = np.zeros(shape, bool)
    mask[20:80, 20:80] = True
    mask[45:55, 45:55] = False  # the lumen: enclosed
    mask[100:104, 100:104] = True  # a speck
    mask[0:30, 90:120] = True
    mask[0:10, 100:110] = False  # a notch open to the top border: not a hole
    return mask


def test_speck_removed_lumen_filled_open_notch_kept():
    cleaned = clean_regions(_gland(), mpp=1.0, min_area_um2=50, max_hole_um2=200)
    assert not cleaned[100:104, 100:104].any(), "a 16 µm² speck is below 50 µm²"
    assert cleaned[45:55, 45:55].all(), "a 100 µm² enclosed hole is below 200 µm²"
    assert not cleaned[0:10, 100:110].any(), "background open to the border is not a hole"
    assert cleaned[20:80, 20:45].all() and cleaned[0:30, 90:100].all(), "large components stay"


def test_sizes_are_physical_and_zero_turns_each_off():
    at_half = clean_regions(_gland(), mpp=0.5, min_area_um2=50, max_hole_um2=200)  # speck 4 µm², lumen 25 µm²
    assert not at_half[100:104, 100:104].any() and at_half[45:55, 45:55].all()
    at_two = clean_regions(_gland(), mpp=2.0, min_area_um2=50, max_hole_um2=200)  # speck 64 µm², lumen 400 µm²
    assert at_two[100:104, 100:104].all() and not at_two[45:55, 45:55].any(), "above both sizes at 2 µm/px"
    no_fill = clean_regions(_gland(), mpp=1.0, min_area_um2=50, max_hole_um2=0)
    assert not no_fill[45:55, 45:55].any() and not no_fill[100:104, 100:104].any()
    untouched = clean_regions(_gland(), mpp=1.0, min_area_um2=0, max_hole_um2=0)
    np.testing.assert_array_equal(untouched, _gland())


def test_in_place_on_uint8_store_and_bad_sizes_named():
    store = _gland().astype(np.uint8)
    assert clean_regions(store, mpp=1.0, min_area_um2=50, max_hole_um2=200) is store
    assert store.dtype == np.uint8 and store[50, 50] == 1 and store[101, 101] == 0
    with pytest.raises(ValueError, match="max_hole_um2 must be a finite area"):
        clean_regions(_gland(), mpp=1.0, max_hole_um2=float("nan"))
    with pytest.raises(ValueError, match="min_area_um2 must be a finite area"):
        clean_regions(_gland(), mpp=1.0, min_area_um2=-1)
    with pytest.raises(ValueError, match="mpp must be a positive"):
        clean_regions(_gland(), mpp=0.0)
    with pytest.raises(ValueError, match="2-D"):
        clean_regions(np.zeros((4, 4, 3), bool), mpp=1.0)


def test_window_by_window_equals_one_pass(rng):
    """Blobs and holes smaller than the windows' overlap are cleaned wherever the window edges cut them."""
    noise = ndimage.gaussian_filter(rng.standard_normal((700, 900)), 3.0)
    mask = noise > 0.02
    one_pass = clean_regions(mask.copy(), mpp=1.0, min_area_um2=60, max_hole_um2=300, window=10_000)
    assert (one_pass != mask).sum() > 500, "the mask has specks and holes to clean"
    windowed = clean_regions(mask.copy(), mpp=1.0, min_area_um2=60, max_hole_um2=300, window=160)
    np.testing.assert_array_equal(windowed, one_pass)


def _image_with_gland() -> np.ndarray:
    """Red where the stand-in's "red ..." prompts answer: a 60 × 60 px gland with a 10 × 10 px lumen, and a speck."""
    img = np.zeros((150, 170, 3), np.uint8)
    img[..., 0] = 255 * _gland((150, 170))
    return img


def test_predict_cleans_tissue_level_masks_and_fills_glands_only():
    pred = TextPromptPredictor(LocalStandIn(64), overlap=16).set_image(_image_with_gland(), mpp=0.5)
    result = pred.predict(["red glands", "red stroma", "red"], instances=False)  # 0.5 µm/px: lumen 25 µm², speck 4 µm²
    glands, stroma, plain = (result.semantic[p] for p in ("red glands", "red stroma", "red"))
    assert glands[45:55, 45:55].all() and not glands[100:104, 100:104].any(), "glands: speck removed, lumen filled"
    assert not stroma[47:53, 47:53].any() and not stroma[100:104, 100:104].any(), "stroma: its holes are kept"
    assert not plain[47:53, 47:53].any() and plain[101:103, 101:103].all(), "a prompt of no tissue structure: as decoded"
    raw = pred.predict(["red glands"], instances=False, region_min_um2=0, region_hole_um2=0).semantic["red glands"]
    np.testing.assert_array_equal(raw, plain)
    with pytest.raises(ValueError, match="region_hole_um2 must be a finite area"):
        pred.predict(["red glands"], region_hole_um2=-5)


def test_predict_source_cleans_as_predict():
    img = _image_with_gland()
    pred = TextPromptPredictor(LocalStandIn(64), overlap=16)
    want = pred.set_image(img, mpp=0.5).predict(["red glands"]).semantic["red glands"]
    out = {"red glands": np.zeros(img.shape[:2], np.uint8)}
    pred.predict_source(_Source(img), ["red glands"], out=out)
    np.testing.assert_array_equal(out["red glands"] > 0, want)
    assert want[50, 50]


def test_segment_passes_region_sizes_and_names_bad_ones():
    img = _image_with_gland()
    kept = segment(img, ["red glands"], model=LocalStandIn(64), mpp=0.5, progress=False, region_hole_um2=0)
    assert not kept.semantic["red glands"][47:53, 47:53].any() and not kept.semantic["red glands"][101, 101]
    with pytest.raises(ValueError, match="region_min_um2 must be a finite area"):
        segment(img, ["red glands"], model=LocalStandIn(64), mpp=0.5, progress=False, region_min_um2=float("inf"))


def test_a_box_answered_with_glands_gets_its_lumen():
    """A gland box answered from the text answer (an untrained box path) is the gland with its lumen, with or
    without the text; the stand-in's "glands" is its green channel."""
    model = AnswerStandIn(128)
    image = np.zeros((150, 170, 3), np.uint8)
    image[..., 1] = 255 * _gland((150, 170))
    pred = TextPromptPredictor(model, overlap=16).set_image(image, mpp=0.5)
    box = [[18, 18, 82, 82]]  # 32 µm across: read as tissue without text
    for prompt in (None, "glands"):
        mask = pred.predict_objects(boxes=box, prompt=prompt).masks[0]
        assert mask[45:55, 45:55].all() and mask[25:75, 25:40].all(), prompt
        assert not mask[100:104, 100:104].any(), "outside the box"
    assert not pred.predict(["glands"], region_hole_um2=0).semantic["glands"][47:53, 47:53].any(), "a real lumen"
