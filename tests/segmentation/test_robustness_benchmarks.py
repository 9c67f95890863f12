"""The robustness benchmarks' building blocks: the leave-one-source-out config and the controlled stain shift."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _leave_one_out import leave_one_out_config  # noqa: E402
from _stain_shift import stain_shift  # noqa: E402

RECIPE = ROOT / "configs" / "xpath_small_default_stage7.yaml"


def test_leave_one_out_drops_only_the_held_out_source(tmp_path):
    cfg = leave_one_out_config(RECIPE, "monuseg", steps=20, tile_size=256, out_dir=tmp_path)
    names = [s["dataset"] for s in cfg.data.sources]
    assert "monuseg" not in names and "monuseg_binary" not in names
    assert names == ["consep", "nucls", "ebhi", "glas"]
    assert cfg.init_checkpoint is None  # never the shipped weights, which saw every source
    assert cfg.train.steps == 20 and cfg.data.tile_size == 256 and cfg.out_dir == str(tmp_path)
    assert cfg.data.augment.stain_sigma == 0.2  # the recipe's augmentation is kept
    with pytest.raises(ValueError, match="no source 'pannuke'"):
        leave_one_out_config(RECIPE, "pannuke", steps=20, tile_size=256, out_dir=tmp_path)


def test_stain_shift_pales_haematoxylin_and_keeps_magnitude_zero():
    from skimage.color import rgb2hed

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal((120, 80, 160), 20, (32, 32, 3)), 0, 255).astype(np.uint8)  # purple, H-rich
    assert stain_shift(image, 0.0, "pale") is image
    pale, dark = stain_shift(image, 0.5, "pale"), stain_shift(image, 0.5, "dark")
    h = [rgb2hed(x)[..., 0].mean() for x in (image, pale, dark)]
    assert h[1] < h[0] < h[2]


def test_macenko_maps_a_stain_shifted_image_back_towards_the_original():
    from xpath.datasets import sample_he
    from xpath.segmentation.inference.stain import macenko_normalize

    image = np.asarray(sample_he().array)[:256, :256]
    pale = stain_shift(image, 0.5, "pale")
    a, b = macenko_normalize(image).astype(float), macenko_normalize(pale).astype(float)
    assert np.abs(a - b).mean() < 0.5 * np.abs(image.astype(float) - pale).mean()  # the shift mostly undone
    blank = np.full((32, 32, 3), 240, np.uint8)
    assert macenko_normalize(blank) is blank  # nothing stained: unchanged
    with pytest.raises(ValueError, match="uint8"):
        macenko_normalize(image.astype(float))
