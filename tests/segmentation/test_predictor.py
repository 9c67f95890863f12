"""Predictor and segment(): a local stand-in model for exact tiling checks, the real xpath_tiny end to end."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F

from xpath import Image
from xpath.datasets import synthetic_tissue
from xpath.segmentation import Segmentation, TextPromptPredictor, create_model, prompt_structure, segment, tile_starts
from xpath.segmentation.inference.result import classes_table


class LocalStandIn(torch.nn.Module):
    """Follows the model contract; its outputs are local functions of the pixels.

    A prompt's probability is the 3×3 mean of the blue (prompts naming "blue") or red channel, the
    distance map is the green channel, presence is the tile's mean red; a box makes the mask
    +10 inside / -10 outside it. Tiled and whole-image runs are therefore comparable.
    """

    def __init__(self, image_size: int = 64, mpp: float = 0.5) -> None:
        super().__init__()
        self.config = SimpleNamespace(name="standin", image_size=image_size, mpp=mpp, vocabulary=[])
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.n_encoded = 0

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        images = images[None] if images.ndim == 3 else images
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0

    def encode_image(self, x: torch.Tensor):
        self.n_encoded += x.shape[0]
        return SimpleNamespace(x=x)

    def decode(self, feats, prompts, boxes=None, points=None):
        x = feats.x
        b, _, h, w = x.shape
        smooth = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (B, 3, H, W)
        chan = [2 if "blue" in prompt else 0 for prompt in prompts]
        prob = smooth[:, chan]  # (B, P, H, W)
        logits = torch.logit(prob.clamp(1e-4, 1 - 1e-4))
        if boxes is not None:
            yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))  # (B, P, 1, 1)
            inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
            has = ~torch.isnan(boxes).any(-1)[..., None, None]
            logits = torch.where(has, torch.where(inside, 10.0, -10.0), logits)
        if points is not None:  # (B, P, K, 3): a disc of radius 6 around each positive point
            yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            px, py, lab = (points[..., i, None, None] for i in range(3))  # (B, P, K, 1, 1)
            near = ((xx - px) ** 2 + (yy - py) ** 2 <= 36) & (lab == 1)
            has = ~torch.isnan(points).any(-1).any(-1)[..., None, None]  # (B, P, 1, 1)
            logits = torch.where(has, torch.where(near.any(2), 10.0, -10.0), logits)
        dist = torch.logit(x[:, 1:2].clamp(1e-4, 1 - 1e-4)).expand(b, len(prompts), h, w)
        presence = torch.logit(x[:, :1].mean((2, 3)).clamp(1e-4, 1 - 1e-4)).expand(b, len(prompts))
        return SimpleNamespace(mask_logits=logits, distance_logits=dist, presence_logits=presence)


def _smooth_image(rng, shape) -> np.ndarray:
    img = ndimage.gaussian_filter(rng.random((*shape, 3)), (4, 4, 0))
    img = (img - img.min((0, 1))) / np.ptp(img, (0, 1))
    return np.rint(255 * img).astype(np.uint8)


# ---------------------------------------------------------------- stand-in: exact checks
def test_tiled_equals_whole_image_away_from_borders(rng):
    img = _smooth_image(rng, (150, 170))
    tiled = TextPromptPredictor(LocalStandIn(64), overlap=16).set_image(img)
    whole = TextPromptPredictor(LocalStandIn(256)).set_image(img)
    assert tiled.work_shape == (150, 170)
    a = tiled.predict(["red", "blue"], return_probabilities=True, instances=False)
    b = whole.predict(["red", "blue"], return_probabilities=True, instances=False)
    inner = (slice(2, -2), slice(2, -2))
    for p in ("red", "blue"):
        pa, pb = a.probabilities[p].astype(np.float32), b.probabilities[p].astype(np.float32)
        np.testing.assert_allclose(pa[inner], pb[inner], atol=0.01)
        clear = np.abs(pa - 0.5) > 2e-3  # float16 rounding aside
        np.testing.assert_array_equal(a.semantic[p][clear], pa[clear] > 0.5)


def test_object_straddling_a_tile_border_is_one_instance(gt_distance):
    h, w = 160, 140
    yy, xx = np.mgrid[:h, :w]
    lab = ((yy - 56) ** 2 + (xx - 60) ** 2 <= 18 ** 2).astype(np.int32)  # tiles start at 0, 48, 96
    lab[(yy - 120) ** 2 + (xx - 34) ** 2 <= 11 ** 2] = 2  # a touching pair across x = 48
    lab[((yy - 120) ** 2 + (xx - 55) ** 2 <= 11 ** 2) & (lab == 0)] = 3
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 255 * (lab > 0)
    img[..., 1] = np.rint(255 * gt_distance(lab))
    seg = TextPromptPredictor(LocalStandIn(64), overlap=16).set_image(img, mpp=0.5).predict(
        ["nuclei"], min_area_um2=5.0)
    inst = seg.instances["nuclei"]
    assert inst.dtype == np.int32 and inst.max() == 3
    disc = lab == 1
    assert (inst[disc] == inst[56, 60]).mean() > 0.97 and ((inst == inst[56, 60]) & ~disc).sum() < 10
    assert inst[120, 34] != inst[120, 55] and min(inst[120, 34], inst[120, 55]) > 0
    assert seg.classes.set_index("prompt").loc["nuclei", "n_instances"] == 3


def test_panels_bound_memory_without_changing_the_result(gt_distance):
    """Panels of 2 tile columns (seams re-run one column) give the single-panel maps exactly, and its instances."""
    from xpath.segmentation.metrics import instance_scores

    gt = synthetic_tissue(3, size=(150, 420), mpp=1.0, touching=0.5).instances  # nuclei ~8 px across
    img = np.zeros((*gt.shape, 3), np.uint8)
    img[..., 0] = 255 * (gt > 0)
    img[..., 1] = np.rint(255 * (gt_distance(gt) + np.random.default_rng(0).uniform(0, 1e-3, gt.shape)).clip(0, 1))
    runs = {}
    for panel_tiles in (None, 2):
        model = LocalStandIn(64)
        pred = TextPromptPredictor(model, overlap=16, max_object_um=20.0, panel_tiles=panel_tiles, cache_tiles=0)
        runs[panel_tiles] = (pred.set_image(img).predict(["nuclei"], min_area_um2=1.0, return_probabilities=True),
                             model.n_encoded)
    (one, n_one), (panels, n_panels) = runs[None], runs[2]
    assert n_panels > n_one, "the seam tile columns run twice"
    np.testing.assert_array_equal(panels.probabilities["nuclei"], one.probabilities["nuclei"])
    np.testing.assert_array_equal(panels.semantic["nuclei"], one.semantic["nuclei"])
    a, b = one.instances["nuclei"], panels.instances["nuclei"]
    assert a.max() > 200
    # Not bit-identical: the distance map comes through a uint8 channel, and the watershed breaks its exact
    # ties by flooding order, which depends on where a block's window starts (panels move the block borders).
    same = instance_scores(a, b)
    assert same["aji"] > 0.98 and same["pq"] > 0.98, same


def test_box_prompt_and_mpp_resize_map_back_to_input_pixels(rng):
    img = _smooth_image(rng, (200, 160))
    pred = TextPromptPredictor(LocalStandIn(64), overlap=8).set_image(img, mpp=0.25)  # model works at 0.5
    assert pred.work_shape == (100, 80)
    box = [30, 40, 110, 150]  # xyxy in input pixels, spans several tiles
    seg = pred.predict(["red", "blue"], boxes=[box, [np.nan] * 4], instances=False)
    assert seg.semantic["red"].shape == (200, 160) and seg.image_shape == (200, 160) and seg.mpp == 0.25
    expected = np.zeros((200, 160), bool)
    expected[40:150, 30:110] = True
    got = seg.semantic["red"]
    assert (got & expected).sum() / (got | expected).sum() > 0.97


def test_missing_mpp_warns_that_the_model_scale_is_assumed(rng):
    img = _smooth_image(rng, (64, 64))
    with pytest.warns(UserWarning, match=r"no mpp given.*0\.5 µm/px"):
        TextPromptPredictor(LocalStandIn(64)).set_image(img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TextPromptPredictor(LocalStandIn(64)).set_image(img, mpp=0.5)
        TextPromptPredictor(LocalStandIn(64)).set_image(Image(img, mpp=0.5))  # the image knows its scale


def test_point_prompt_maps_through_tiles_and_mpp(rng):
    img = _smooth_image(rng, (200, 160))
    pred = TextPromptPredictor(LocalStandIn(64), overlap=8).set_image(img, mpp=0.25)
    points = np.array([[[100.0, 130.0, 1.0], [20.0, 20.0, 0.0]]])  # (P=1, K=2, 3) in input pixels
    seg = pred.predict(["red"], points=points, instances=False)
    yy, xx = np.mgrid[:200, :160]
    expected = (((xx + 0.5) / 2 - 50.0) ** 2 + ((yy + 0.5) / 2 - 65.0) ** 2) <= 36  # radius 6 work px
    got = seg.semantic["red"]
    assert got[130, 100] and not got[20, 20]
    assert (got & expected).sum() / (got | expected).sum() > 0.9
    with pytest.raises(ValueError, match="labels"):
        pred.predict(["red"], points=np.array([[[10.0, 10.0, 2.0]]]))


def test_features_cached_once_and_reused(rng):
    img = _smooth_image(rng, (100, 120))
    model = LocalStandIn(64)
    pred = TextPromptPredictor(model, overlap=16, batch_size=2).set_image(img)
    n_tiles = model.n_encoded
    assert n_tiles == len(tile_starts(100, 64, 16)) * len(tile_starts(120, 64, 16)) == 6
    first = pred.predict(["red"], instances=False)
    second = pred.predict(["blue", "red"], instances=False)
    assert model.n_encoded == n_tiles, "predict() must not re-encode a cached image"
    np.testing.assert_array_equal(first.semantic["red"], second.semantic["red"])
    model.n_encoded = 0
    segment(img, ["red", "blue", "x nuclei"], model=model, progress=False)
    default_grid = len(tile_starts(100, 64, 64 // 8)) * len(tile_starts(120, 64, 64 // 8))
    assert model.n_encoded == default_grid, "segment() encodes each tile once for all prompts"


class _RampStandIn(LocalStandIn):
    """Not mirror-symmetric: every prompt's probability is the tile's column ramp ``(x + 0.5) / w``."""

    def decode(self, feats, prompts, boxes=None, points=None):
        out = super().decode(feats, prompts)
        b, p, h, w = out.mask_logits.shape
        ramp = ((torch.arange(w) + 0.5) / w).expand(b, p, h, w)
        return SimpleNamespace(mask_logits=torch.logit(ramp), distance_logits=out.distance_logits,
                               presence_logits=out.presence_logits)


def test_test_time_flips_leave_a_mirror_symmetric_model_unchanged_boxes_and_points_included(rng):
    """The stand-in's maps are local (mirror-equivariant), so the mean of the four mirrored views is the plain
    answer, wherever the box or the point is; a box or point mirrored wrongly would land elsewhere in 3 views."""
    img = _smooth_image(rng, (200, 160))
    plain_model, flip_model = LocalStandIn(64), LocalStandIn(64)
    plain = TextPromptPredictor(plain_model, overlap=8).set_image(img, mpp=0.25)
    flipped = TextPromptPredictor(flip_model, overlap=8, test_time_flips=True).set_image(img, mpp=0.25)
    assert flip_model.n_encoded == 4 * plain_model.n_encoded  # every view cached by set_image
    n_encoded = flip_model.n_encoded
    box = [[30, 40, 110, 150], [np.nan] * 4]
    points = np.array([[[np.nan] * 3], [[100.0, 130.0, 1.0]]])
    for kwargs in ({}, {"boxes": box}, {"points": points}):
        a = plain.predict(["red", "blue"], return_probabilities=True, **kwargs)
        b = flipped.predict(["red", "blue"], return_probabilities=True, **kwargs)
        for prompt in ("red", "blue"):
            np.testing.assert_allclose(b.probabilities[prompt], a.probabilities[prompt], atol=2e-3)
            assert (a.semantic[prompt] != b.semantic[prompt]).mean() < 1e-3
        assert b.presence == pytest.approx(a.presence)
    assert flip_model.n_encoded == n_encoded, "predict() reuses the cached mirrored features"
    with pytest.warns(UserWarning, match="no mpp"):
        seg = segment(img, ["red"], model=LocalStandIn(64), progress=False, test_time_flips=True)
    assert seg.semantic["red"].shape == img.shape[:2]


def test_test_time_flips_average_the_mirrored_answers(rng):
    """A left–right ramp averaged with its mirror image is 0.5 everywhere: the views are really averaged."""
    img = _smooth_image(rng, (64, 64))
    plain = TextPromptPredictor(_RampStandIn(64)).set_image(img, mpp=0.5)
    flipped = TextPromptPredictor(_RampStandIn(64), test_time_flips=True).set_image(img, mpp=0.5)
    ramp = plain.predict(["red"], return_probabilities=True, instances=False).probabilities["red"]
    mean = flipped.predict(["red"], return_probabilities=True, instances=False).probabilities["red"]
    assert ramp[:, 0].max() < 0.05 and ramp[:, -1].min() > 0.95
    np.testing.assert_allclose(mean.astype(np.float32), 0.5, atol=2e-3)


class _Source:
    def __init__(self, image):
        self.image, self.shape = image, image.shape

    def tiles(self, origins, tile):
        from xpath.segmentation.inference.tiling import extract_tile

        return np.stack([extract_tile(self.image, y, x, tile) for y, x in origins])


def test_predict_source_writes_into_given_arrays_as_predict_would(rng):
    """A tile source read on demand gives predict()'s masks and instances; features cached by an earlier
    set_image are not mistaken for the source's tiles; wrong output arrays are named."""
    img = _smooth_image(rng, (150, 170))
    model = LocalStandIn(64)
    pred = TextPromptPredictor(model, overlap=16, batch_size=2)
    want = pred.set_image(img, mpp=0.5).predict(["red", "x nuclei"])
    other = _smooth_image(rng, (150, 170))
    pred.set_image(other, mpp=0.5)  # its features are cached under the same tile origins
    assert pred.instance_prompts(["red", "x nuclei"]) == ["x nuclei"]
    out = {"red": np.zeros((150, 170), np.uint8), "x nuclei": np.zeros((150, 170), np.int32)}
    before = pred.tiles_encoded
    presence = pred.predict_source(_Source(img), ["red", "x nuclei"], out=out)
    assert pred.tiles_encoded - before == len(tile_starts(150, 64, 16)) * len(tile_starts(170, 64, 16))
    np.testing.assert_array_equal(out["red"] > 0, want.semantic["red"])
    np.testing.assert_array_equal(out["x nuclei"], want.instances["x nuclei"])
    assert presence["red"] == pytest.approx(want.presence["red"])
    with pytest.raises(ValueError, match=r"out\['x nuclei'\] must be a \(150, 170\) int32"):
        pred.predict_source(_Source(img), ["x nuclei"], out={"x nuclei": np.zeros((150, 170), np.uint8)})
    with pytest.raises(ValueError, match="threshold"):
        pred.predict_source(_Source(img), ["red"], out=out, threshold=1.5)


@pytest.mark.parametrize("prompts", [["lymphocytes", "blue epithelial nuclei"],
                                     ["nuclei", "lymphocytes", "blue epithelial nuclei"]])
def test_type_prompts_share_one_watershed_on_sources_as_in_predict(rng, gt_distance, monkeypatch, prompts):
    """Nucleus types read on demand (a slide) split the all-nuclei map as predict() does (a hidden one when
    'nuclei' is not asked): the same instances, disjoint, for one prompt's watershed; the per-nucleus vote
    taken while stitching equals assign_types on the whole image's probabilities."""
    from xpath.segmentation.inference import stitching
    from xpath.segmentation.inference.nucleus_types import assign_types

    gt = synthetic_tissue(3, size=(150, 230), mpp=1.0, touching=0.5).instances  # nuclei ~8 px across
    img = np.zeros((*gt.shape, 3), np.uint8)
    odd, even = gt % 2 == 1, (gt % 2 == 0) & (gt > 0)
    img[..., 0] = np.where(odd, 255, np.where(even, 160, 0))  # all nuclei red enough to be nuclei
    img[..., 2] = np.where(even, 230, 0)  # even ones bluer than red: the epithelial type ("blue") wins them
    img[..., 1] = np.rint(255 * (gt_distance(gt) + rng.uniform(0, 1e-3, gt.shape)).clip(0, 1))
    pred = TextPromptPredictor(LocalStandIn(64), overlap=16, max_object_um=20.0, panel_tiles=2, cache_tiles=0)
    want = pred.set_image(img, mpp=0.5).predict(prompts, min_area_um2=1.0, return_probabilities=True)
    blocks = []
    watershed = stitching.instances_from_maps
    monkeypatch.setattr(stitching, "instances_from_maps", lambda *a, **k: blocks.append(1) or watershed(*a, **k))
    out = {p: np.zeros(gt.shape, np.int32) for p in prompts}
    pred.predict_source(_Source(img), prompts, out=out, min_area_um2=1.0)
    for p in prompts:
        np.testing.assert_array_equal(out[p], want.instances[p])
    types = ["lymphocytes", "blue epithelial nuclei"]
    assert pred.nucleus_type_prompts(prompts) == dict.fromkeys(types, "nuclei" if "nuclei" in prompts else None)
    a, b = (want.instances[p] for p in types)
    assert a.max() > 0 and b.max() > 0 and not ((a > 0) & (b > 0)).any()
    ids = a + b if "nuclei" not in prompts else want.instances["nuclei"]
    assert set(np.unique(a)) | set(np.unique(b)) <= set(np.unique(ids))
    present = np.unique(ids)[1:]
    expect, mean = assign_types(ids, {p: want.probabilities[p] for p in types}, threshold=0.5)
    table = want.nucleus_types.set_index("instance")
    assert table.loc[present, "type"].tolist() == [types[t] if t >= 0 else None for t in expect[present]]
    for k, p in enumerate(types):
        np.testing.assert_allclose(table.loc[present, f"p_{p}"], mean[present, k], rtol=0, atol=1e-12)
    n_blocks = len(blocks)
    pred.predict_source(_Source(img), ["nuclei"], out={"nuclei": np.zeros(gt.shape, np.int32)}, min_area_um2=1.0)
    assert n_blocks == len(blocks) - n_blocks > 0, "all the prompts cost one prompt's watershed"


# ---------------------------------------------------------------- real model end to end
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("xpath_tiny", device="cpu")


@pytest.fixture(scope="module")
def tissue():
    return synthetic_tissue(1, size=(300, 280), mpp=0.5)


def test_segment_real_tiny_model(tiny, tissue):
    prompts = ["nuclei", "stroma", "nuclei-level epithelial in colon pathology"]
    # the masks as thresholded (test_regions checks how tissue-level masks are cleaned)
    seg = segment(tissue.image, prompts, model=tiny, mpp=0.5, progress=False, return_probabilities=True,
                  region_min_um2=0)
    assert isinstance(seg, Segmentation) and seg.prompts == tuple(prompts)
    assert set(seg.semantic) == set(prompts) and set(seg.presence) == set(prompts)
    assert set(seg.instances) == {"nuclei", "nuclei-level epithelial in colon pathology"}
    for p in prompts:
        assert seg.semantic[p].shape == (300, 280) and seg.semantic[p].dtype == bool
        assert isinstance(seg.presence[p], float) and 0.0 <= seg.presence[p] <= 1.0
        assert seg.probabilities[p].dtype == np.float16
        if p == prompts[2]:  # a nucleus type: its mask is its nuclei of the shared map, voted per nucleus
            assert (seg.semantic[p] == (seg.instances[p] > 0)).all()
            assert set(np.unique(seg.instances[p])) <= set(np.unique(seg.instances["nuclei"]))
            continue
        prob = seg.probabilities[p].astype(np.float32)
        clear = np.abs(prob - 0.5) > 2e-3  # float16 rounding aside
        np.testing.assert_array_equal(seg.semantic[p][clear], prob[clear] > 0.5)
    inst = seg.instances["nuclei"]
    assert inst.dtype == np.int32 and inst.shape == (300, 280)
    assert not ((inst > 0) & ~seg.semantic["nuclei"]).any(), "instances lie inside the semantic mask"
    table = seg.classes.set_index("prompt")
    assert list(seg.classes.columns) == ["prompt", "label", "structure", "status", "presence", "n_instances",
                                         "area_fraction"]
    assert set(seg.classes.status) == {"unchecked"}  # an untrained model records no trained labels
    assert table.loc["stroma", "structure"] == "tissue" and pd.isna(table.loc["stroma", "n_instances"])
    assert table.loc["nuclei", "n_instances"] == len(np.unique(inst)) - 1
    assert table.loc["nuclei", "area_fraction"] == pytest.approx(seg.semantic["nuclei"].mean())
    lab = seg.to_label_image("stroma")
    assert lab.dtype == np.int32 and ((lab > 0) == seg.semantic["stroma"]).all()
    ax = seg.plot()
    assert ax.__class__.__name__ == "Axes"


def test_predictor_cache_matches_streaming_on_real_model(tiny, tissue):
    pred = TextPromptPredictor(tiny).set_image(tissue.image, mpp=0.5)
    cached = pred.predict(["nuclei", "stroma"], return_probabilities=True)
    streamed = segment(tissue.image, ["nuclei", "stroma"], model=tiny, mpp=0.5, progress=False,
                       return_probabilities=True)
    for p in ("nuclei", "stroma"):
        np.testing.assert_allclose(cached.probabilities[p].astype(np.float32),
                                   streamed.probabilities[p].astype(np.float32), atol=2e-3)
    np.testing.assert_array_equal(cached.instances["nuclei"] > 0, streamed.instances["nuclei"] > 0)


def test_named_model_warns_that_decoder_is_untrained(caplog, tissue):
    from xpath.segmentation import api

    api._named_model.cache_clear()  # the warning comes when the model is built, not when a cached one is reused
    with caplog.at_level(logging.WARNING, logger="xpath.segmentation.api"):
        seg = segment(tissue.image[:64, :64], ["stroma"], model="xpath_tiny", device="cpu", progress=False)
    assert "untrained" in caplog.text
    assert seg.model == "xpath_tiny"


def test_checkpoint_path_and_default_checkpoint_hook(tiny, tissue, tmp_path, monkeypatch, caplog):
    from xpath.segmentation import api, save_checkpoint
    from xpath.segmentation.modeling import checkpoint

    path = save_checkpoint(tiny, tmp_path / "tiny.pt")
    img = tissue.image[:96, :112]
    a = segment(img, ["nuclei"], model=tiny, progress=False, return_probabilities=True)
    b = segment(img, ["nuclei"], model=str(path), device="cpu", progress=False, return_probabilities=True)
    np.testing.assert_allclose(a.probabilities["nuclei"].astype(np.float32),
                               b.probabilities["nuclei"].astype(np.float32), atol=2e-3)
    assert a.presence["nuclei"] == pytest.approx(b.presence["nuclei"], abs=1e-5)
    # A registry that names a shipped checkpoint for the model: loaded by name, no warning.
    monkeypatch.setattr(checkpoint, "default_checkpoint", lambda name: path if name == "xpath_tiny" else None)
    api._named_model.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="xpath.segmentation.api"):
            c = segment(img, ["nuclei"], model="xpath_tiny", device="cpu", progress=False,
                        return_probabilities=True)
    finally:
        api._named_model.cache_clear()
    assert "untrained" not in caplog.text
    np.testing.assert_allclose(c.probabilities["nuclei"].astype(np.float32),
                               a.probabilities["nuclei"].astype(np.float32), atol=2e-3)


def test_device_none_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from xpath._device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu"
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert resolve_device(None).type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None).type == "cuda"
    assert resolve_device("cpu").type == "cpu"


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "image, prompts, kwargs, error, match",
    [
        (np.zeros((8, 8, 3), np.uint8), [], {}, ValueError, "non-empty"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei", " "], {}, ValueError, r"prompts\[1\] is an empty string"),
        (np.zeros((8, 8, 3), np.uint8), ["a", "a"], {}, ValueError, "unique"),
        (np.zeros((8, 8, 3), np.uint8), [3], {}, TypeError, r"prompts\[0\] must be a str"),
        (np.zeros((8, 8), np.uint8), ["nuclei"], {}, ValueError, "allow_grayscale"),
        (np.zeros((0, 8, 3), np.uint8), ["nuclei"], {}, ValueError, "non-empty"),
        (np.full((8, 8, 3), np.nan), ["nuclei"], {}, ValueError, "NaN"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"mpp": 0.0}, ValueError, "mpp must be a positive"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"mpp": -0.5}, ValueError, "mpp must be a positive"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"threshold": 1.0}, ValueError, "threshold"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"instances": "yes"}, ValueError, "instances"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"model": 3}, TypeError, "model must be"),
        (np.zeros((8, 8, 3), np.uint8), ["nuclei"], {"model": "/no/such.pt"}, FileNotFoundError, "does not exist"),
    ],
)
def test_bad_input_raises_documented_error(image, prompts, kwargs, error, match):
    kwargs = {"model": LocalStandIn(), "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        segment(image, prompts, **kwargs)


def test_grayscale_with_opt_in_and_bad_boxes(rng):
    gray = _smooth_image(rng, (40, 40))[..., 0]
    seg = segment(gray, ["red"], model=LocalStandIn(), allow_grayscale=True, progress=False)
    assert seg.semantic["red"].shape == (40, 40)
    pred = TextPromptPredictor(LocalStandIn()).set_image(_smooth_image(rng, (40, 40)))
    with pytest.raises(ValueError, match="boxes must have shape"):
        pred.predict(["red", "blue"], boxes=[[0, 0, 5, 5]])
    with pytest.raises(ValueError, match="inside the image"):
        pred.predict(["red"], boxes=[[0, 0, 50, 5]])
    with pytest.raises(RuntimeError, match="set_image"):
        TextPromptPredictor(LocalStandIn()).predict(["red"])


def test_prompt_structure():
    assert prompt_structure("cell-level lymphocyte in breast pathology") == (
        "cell-level lymphocyte in breast pathology", "cell")
    assert prompt_structure("tissue-level gland in colon pathology")[1] == "tissue"
    assert prompt_structure("inflammatory nuclei")[1] == "nuclei"
    assert prompt_structure("lymphocytes")[1] in ("cell", "nuclei")
    assert prompt_structure("glands")[1] == "tissue"


def test_segmentation_result_plot_and_label_image():
    sem = np.zeros((300, 200), bool)
    sem[10:50, 10:50] = True
    sem[100:120, 150:190] = True
    inst = np.zeros((300, 200), np.int32)
    inst[200:220, 20:40] = 1
    rows = [{"prompt": "stroma", "label": None, "structure": "tissue", "presence": 0.9, "n_instances": pd.NA,
                 "area_fraction": float(sem.mean())},
            {"prompt": "nuclei", "label": None, "structure": "nuclei", "presence": 0.2, "n_instances": 1,
                 "area_fraction": float((inst > 0).mean())}]
    seg = Segmentation(prompts=("stroma", "nuclei"), semantic={"stroma": sem, "nuclei": inst > 0},
                       instances={"nuclei": inst}, presence={"stroma": 0.9, "nuclei": 0.2},
                       classes=classes_table(rows), image_shape=(300, 200),
                       image=np.full((300, 200, 3), 200, np.uint8))
    assert seg.classes["n_instances"].dtype == "Int64"
    lab = seg.to_label_image("stroma")
    assert lab.max() == 2 and (lab > 0).sum() == sem.sum()
    assert seg.to_label_image("nuclei") is inst
    ax = seg.plot(max_side=100)
    drawn = ax.images[0].get_array()
    assert drawn.shape[:2] == (100, 67) and ax.get_xlim() == (0.0, 200.0)
    assert len(ax.get_legend().get_texts()) == 2
    with pytest.raises(KeyError, match="not in this result"):
        seg.to_label_image("glands")


def test_presence_threshold_empties_masks_of_absent_prompts(tiny, tissue):
    img = tissue.image[:96, :112]
    kept = segment(img, ["nuclei", "stroma"], model=tiny, progress=False, presence_threshold=None,
                   return_probabilities=True)
    gated = segment(img, ["nuclei", "stroma"], model=tiny, progress=False, presence_threshold=1.0,
                    return_probabilities=True)
    assert any(m.any() for m in kept.semantic.values())  # the untrained model does draw masks ...
    assert not any(m.any() for m in gated.semantic.values())  # ... that a presence of < 1 removes
    assert not gated.instances["nuclei"].any()
    np.testing.assert_array_equal(gated.probabilities["nuclei"], kept.probabilities["nuclei"])
    assert gated.presence == kept.presence
    with pytest.raises(ValueError, match="presence_threshold"):
        segment(img, ["nuclei"], model=tiny, progress=False, presence_threshold=1.5)
