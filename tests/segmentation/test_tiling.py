"""Tiling: grid, blending weights, streamed blending equals whole-image maps, strip-wise instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from xpath.datasets import synthetic_tissue
from xpath.segmentation.inference.postprocess import instances_from_maps
from xpath.segmentation.inference.stitching import InstanceStitcher
from xpath.segmentation.inference.tiling import (
    RowBlender,
    axis_weights,
    extract_tile,
    plan_panels,
    predict_tiled,
    tile_batches,
    tile_cores,
    tile_starts,
)
from xpath.segmentation.metrics import contingency


@pytest.mark.parametrize("length", [1, 50, 64, 65, 200, 1000, 1031])
def test_tile_starts_cover_with_overlap(length):
    tile, overlap = 64, 16
    s = tile_starts(length, tile, overlap)
    assert s[0] == 0 and (s[-1] + tile >= length)
    if length > tile:
        assert s[-1] + tile == length
        assert (np.diff(s) <= tile - overlap).all() and (np.diff(s) > 0).all()


@pytest.mark.parametrize(("length", "tile", "overlap"), [(1000, 512, 64), (300, 256, 32), (2049, 256, 100), (40, 64, 16)])
def test_tile_cores_partition_the_axis_half_an_overlap_inside_each_tile(length, tile, overlap):
    s = tile_starts(length, tile, overlap)
    a, b = tile_cores(s, tile, length)
    assert a[0] == 0 and b[-1] == length and (a[1:] == b[:-1]).all() and (b > a).all()
    inner = np.minimum(s + tile, length)
    assert (a[1:] - s[1:] >= overlap // 2).all()  # a core starts half an overlap into its tile
    assert (inner[:-1] - b[:-1] >= overlap // 2).all()  # and ends half an overlap before the tile does


def test_axis_weights_partition_of_unity():
    length, tile = 300, 64
    s = tile_starts(length, tile, 20)
    total = np.zeros(length)
    for start, w in zip(s, axis_weights(s, tile, length)):
        assert (w > 0).all()
        total[start: start + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_extract_tile_pads_small_images():
    img = np.arange(30, dtype=np.uint8).reshape(5, 6, 1).repeat(3, 2)
    t = extract_tile(img, 0, 0, 8)
    assert t.shape == (8, 8, 3)
    np.testing.assert_array_equal(t[:5, :6], img)


def _pointwise(tiles, origins):
    return tiles[..., :1].transpose(0, 3, 1, 2).astype(np.float32) / 255.0, tiles[:, 0, 0, :2].astype(np.float32)


def _local(tiles, origins):
    """A 5×5 mean filter of the red channel computed on each tile alone (edge effects at tile borders)."""
    x = tiles[..., 0].astype(np.float32) / 255.0
    out = ndimage.uniform_filter(x, size=(1, 5, 5), mode="reflect")
    return out[:, None], None


@pytest.mark.parametrize("panel_width", [None, 100, 130])
def test_pointwise_tiled_equals_whole_image_and_streams(rng, panel_width):
    img = rng.integers(0, 256, (331, 207, 3), dtype=np.uint8)
    out = np.full((1, 331, 207), np.nan, np.float32)
    bands = []

    def on_band(band):
        rows, cols = slice(band.y, band.y + band.data.shape[1]), slice(*band.core)
        assert np.isnan(out[:, rows, cols]).all(), "each pixel is delivered once"
        out[:, rows, cols] = band.core_data()
        bands.append(band.data.shape[1:])

    scal = predict_tiled(img, _pointwise, tile=64, overlap=16, n_maps=1, on_band=on_band, batch_size=3,
                         panel_width=panel_width)
    np.testing.assert_allclose(out[0], img[..., 0] / 255.0, atol=1e-5)
    most_rows = 64 if panel_width is None else 2 * 64  # a batch of 3 spans two tile rows of a 2-column panel
    assert len(bands) > 3 and max(h for h, _ in bands) <= most_rows, "rows are streamed as tiles finish"
    if panel_width is not None:
        assert max(w for _, w in bands) <= panel_width, "a band spans one panel, not the image"
    corners = img[tile_starts(331, 64, 16)][:, tile_starts(207, 64, 16)]  # pixel (0, 0) of every tile
    assert scal.shape == (2,) and scal[0] == corners[..., 0].max() and scal[1] == corners[..., 1].max()


def test_local_model_tiled_equals_whole_away_from_borders(rng):
    img = ndimage.gaussian_filter(rng.random((260, 300)), 3)
    img = np.rint(255 * (img - img.min()) / np.ptp(img)).astype(np.uint8)[..., None].repeat(3, 2)
    whole = _local(img[None], [(0, 0)])[0][0, 0]
    outs = {}
    for panel_width in (None, 150):
        out = outs[panel_width] = np.zeros((260, 300), np.float32)

        def on_band(band, out=out):
            out[band.y: band.y + band.data.shape[1], slice(*band.core)] = band.core_data()[0]

        predict_tiled(img, _local, tile=96, overlap=24, n_maps=1, on_band=on_band, batch_size=2,
                      panel_width=panel_width)
    inner = (slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(outs[None][inner], whole[inner], atol=0.01)
    assert np.abs(outs[None][inner] - whole[inner]).max() > 0, "the local model must differ at tile borders"
    # panels run every tile touching their columns with the global weights: the blend is the same, bit for bit
    np.testing.assert_array_equal(outs[150], outs[None])


@pytest.mark.parametrize("width", [64, 150, 700, 1031])
@pytest.mark.parametrize("halo", [0, 10])  # within a tile column's own 32 px
def test_plan_panels_partition_columns_and_cover_their_halo(width, halo):
    tile, overlap, panel_width = 64, 16, 160
    xs = tile_starts(width, tile, overlap)
    panels = plan_panels(width, tile, overlap, panel_width=panel_width, halo=halo)
    assert panels[0].core[0] == 0 and panels[-1].core[1] == width
    assert all(p.core[1] == q.core[0] for p, q in itertools.pairwise(panels)), "cores tile [0, W) without gaps"
    for p in panels:
        assert p.emit == (max(p.core[0] - halo, 0), min(p.core[1] + halo, width))
        touching = xs[(xs < p.emit[1]) & (xs + tile > p.emit[0])]
        np.testing.assert_array_equal(p.xs, touching)  # every tile that touches its columns, no other
        assert p.xs[-1] + tile - p.xs[0] <= panel_width
    if width > panel_width:
        assert len(panels) > 1
        extra = sum(len(p.xs) for p in panels) - len(xs)
        assert extra == len(panels) - 1, "one tile column is run twice per seam"
    assert plan_panels(width, tile, overlap, panel_width=None)[0].core == (0, width)
    batches = tile_batches((100, width), tile, overlap, 4, panel_width=panel_width, halo=halo)
    assert sum(map(len, batches)) == sum(len(p.xs) for p in panels) * len(tile_starts(100, tile, overlap))


def test_row_blender_bounds_rows_held():
    b = RowBlender(2, 64)
    w = np.ones((32, 32), np.float32)
    b.add(0, 0, np.ones((2, 32, 32), np.float32), w)
    b.add(0, 32, np.ones((2, 32, 32), np.float32), w)
    b.add(16, 32, 3 * np.ones((2, 32, 32), np.float32), w)
    assert b.rows_held == 48
    y, band = b.pop(16)
    assert y == 0 and band.shape == (2, 16, 64) and b.rows_held == 32
    y, band = b.pop(32)
    assert y == 16 and band[0, 0, 0] == 1.0 and band[0, 0, 40] == 2.0  # (1 + 3) / 2
    with pytest.raises(RuntimeError, match="no tile"):
        b.pop(48)  # rows 32..47, columns 0..31 were never covered
    with pytest.raises(ValueError, match="already returned"):
        b.add(0, 0, np.ones((2, 32, 32), np.float32), w)


def _stitch(prob, dist, *, strip, margin, band, block=None, **kw):
    out = np.zeros(prob.shape, np.int32)
    st = InstanceStitcher(out, strip=strip, margin=margin, block=block, **kw)
    for y in range(0, prob.shape[0], band):
        st.push(y, prob[y: y + band], dist[y: y + band])
    st.finish()
    return out


@pytest.mark.parametrize("block", [None, 50])
def test_strip_instances_equal_whole_image_instances(block, gt_distance):
    tile = synthetic_tissue(7, size=(300, 180), mpp=0.5, touching=0.5)
    gt = tile.instances
    prob = (gt > 0).astype(np.float32)
    # A model's maps are continuous: jitter breaks the exact ties of the Euclidean distance transform,
    # on which the watershed's flooding order (and so the result) depends on the window's offset.
    dist = gt_distance(gt) + np.random.default_rng(0).uniform(0, 1e-3, gt.shape).astype(np.float32)
    whole = instances_from_maps(prob, dist, mpp=0.5, min_area_um2=5.0)
    stitched = _stitch(prob, dist, strip=48, margin=40, band=37, block=block, mpp=0.5, min_area_um2=5.0)
    t = contingency(whole, stitched)
    assert len(t.gt_ids) == len(t.pred_ids) == len(t.intersection), "one-to-one objects"
    assert (t.iou == 1.0).all()


def test_stitcher_sums_are_the_whole_map_bincount_across_strips_and_blocks(gt_distance):
    """Per-object sums of extra maps, taken while each object's rows are buffered, equal a bincount over
    the finished map (the whole-image vote of nucleus_types.assign_types), bit for bit."""
    from xpath.segmentation.inference.nucleus_types import assign_types, types_from_sums

    gt = synthetic_tissue(7, size=(300, 180), mpp=0.5, touching=0.5).instances
    prob = (gt > 0).astype(np.float32)
    dist = gt_distance(gt) + np.random.default_rng(0).uniform(0, 1e-3, gt.shape).astype(np.float32)
    extra = np.random.default_rng(1).random((2, *gt.shape)).astype(np.float32)
    out = np.zeros(gt.shape, np.int32)
    st = InstanceStitcher(out, strip=48, margin=40, block=50, n_sums=2, sum_dtype=np.float16, mpp=0.5,
                          min_area_um2=5.0)
    for y in range(0, gt.shape[0], 37):
        st.push(y, prob[y: y + 37], dist[y: y + 37], sums=extra[:, y: y + 37])
    st.finish()
    n = int(out.max())
    assert n == st.n_objects > 40 and len(st.area) == n + 1
    np.testing.assert_array_equal(st.area, np.bincount(out.ravel(), minlength=n + 1) * (np.arange(n + 1) > 0))
    extra = extra.astype(np.float16)  # the sums are of the values rounded to sum_dtype
    for k in range(2):
        want = np.bincount(out.ravel(), weights=extra[k].ravel().astype(np.float64), minlength=n + 1)
        np.testing.assert_array_equal(st.sums[1:, k], want[1:])
    types, mean = types_from_sums(st.area, st.sums, threshold=0.5)
    want_types, want_mean = assign_types(out, {"a": extra[0], "b": extra[1]}, threshold=0.5)
    np.testing.assert_array_equal(types, want_types)
    np.testing.assert_array_equal(mean[1:], want_mean[1:])
    with pytest.raises(ValueError, match="sums must have shape"):
        InstanceStitcher(np.zeros((4, 4), np.int32), strip=2, margin=1, n_sums=1).push(0, prob[:4, :4], dist[:4, :4])


def test_object_straddling_strip_and_tile_borders_is_one_instance(gt_distance):
    h, w = 200, 160
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 96) ** 2 + (xx - 80) ** 2 <= 20 ** 2  # crosses the tile border at 64/96 and strips of 48
    lab = disc.astype(np.int32)
    # a touching pair straddling another border
    lab[(yy - 160) ** 2 + (xx - 40) ** 2 <= 12 ** 2] = 2
    lab[((yy - 160) ** 2 + (xx - 63) ** 2 <= 12 ** 2) & (lab == 0)] = 3
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 255 * (lab > 0)
    img[..., 1] = np.rint(255 * gt_distance(lab))

    def fn(tiles, origins):
        return tiles[..., :2].transpose(0, 3, 1, 2).astype(np.float32) / 255.0, None

    for panel_width in (None, 100):  # two panels, the seam at x = 80 (the disc's centre)
        out = np.zeros((h, w), np.int32)
        st = InstanceStitcher(out, strip=48, margin=30, block=40)  # blocks split x at 40, 80, 120
        predict_tiled(img, fn, tile=64, overlap=16, n_maps=2, panel_width=panel_width, halo=30,
                      on_band=lambda b, st=st: st.push(b.y, b.data[0], b.data[1], x=b.x, core=b.core))
        st.finish()
        assert len(np.unique(out[disc])) == 1 and out[96, 80] > 0
        assert (out[disc] == out[96, 80]).all() and ((out == out[96, 80]) == disc).all()
        assert out[160, 40] != out[160, 63] and out[160, 40] > 0 and out[160, 63] > 0
        assert out.max() == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 64, 64)
    with pytest.raises(ValueError, match="in order"):
        st = InstanceStitcher(np.zeros((10, 10), np.int32), strip=4, margin=2)
        st.push(3, np.zeros((2, 10)), np.zeros((2, 10)))
    with pytest.raises(ValueError, match="all 10 rows"):
        InstanceStitcher(np.zeros((10, 10), np.int32), strip=4, margin=2).finish()
    with pytest.raises(ValueError, match="new panel started before"):
        st = InstanceStitcher(np.zeros((10, 10), np.int32), strip=4, margin=2)
        st.push(0, np.zeros((5, 6)), np.zeros((5, 6)), x=0, core=(0, 5))
        st.push(0, np.zeros((5, 6)), np.zeros((5, 6)), x=4, core=(5, 10))
    with pytest.raises(ValueError, match="panel_width"):
        plan_panels(1000, 64, 16, panel_width=32)


def test_real_monuseg_nuclei_recovered_and_block_stitching_matches_whole(shared_data, gt_distance):
    from xpath.datasets import iter_dataset
    from xpath.segmentation.metrics import instance_scores

    rec = next(iter_dataset("monuseg", limit=1, root=shared_data))
    gt = rec.instances
    assert gt.max() > 100, "a MoNuSeg tile has hundreds of nuclei, many touching"
    prob = (gt > 0).astype(np.float32)
    dist = gt_distance(gt) + np.random.default_rng(0).uniform(0, 1e-3, gt.shape).astype(np.float32)
    whole = instances_from_maps(prob, dist, mpp=rec.mpp, min_area_um2=2.0)
    s = instance_scores(gt, whole)
    assert s["aji"] > 0.97 and s["pq"] > 0.93, s
    stitched = _stitch(prob, dist, strip=200, margin=60, band=150, block=256, mpp=rec.mpp, min_area_um2=2.0)
    same = instance_scores(whole, stitched)
    assert same["pq"] > 0.99 and same["aji"] > 0.99, same


class _ArraySource:
    """A tile source over an array that records the tiles it was asked for."""

    def __init__(self, image):
        self.image, self.shape, self.asked = image, image.shape, []

    def tiles(self, origins, tile):
        self.asked += list(origins)
        return np.stack([extract_tile(self.image, y, x, tile) for y, x in origins])


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_skipped_tiles_are_never_read_and_their_pixels_are_empty(rng, read_ahead):
    """keep= runs only the accepted tiles of the same grid: kept pixels equal the full run, uncovered ones are 0,
    every pixel is still delivered once (in bands of at most one tile of rows), reads ahead change nothing."""
    img = rng.integers(1, 256, (400, 300, 3), dtype=np.uint8)
    ys, xs = tile_starts(400, 64, 16), tile_starts(300, 64, 16)
    kept = {(int(y), int(x)) for y in ys for x in xs if (y < 150 and x < 120) or (y > 300 and x > 200)}
    source = _ArraySource(img)
    out = np.full((1, 400, 300), np.nan, np.float32)
    heights = []

    def on_band(band):
        rows, cols = slice(band.y, band.y + band.data.shape[1]), slice(*band.core)
        assert np.isnan(out[:, rows, cols]).all(), "each pixel is delivered once"
        out[:, rows, cols] = band.core_data()
        heights.append(band.data.shape[1])

    predict_tiled(source, _pointwise, tile=64, overlap=16, n_maps=1, on_band=on_band, batch_size=3,
                  panel_width=130, keep=lambda y, x: (y, x) in kept, read_ahead=read_ahead)
    assert not np.isnan(out).any() and max(heights) <= 64
    covered = np.zeros((400, 300), bool)
    for y, x in kept:
        covered[y:y + 64, x:x + 64] = True
    assert set(source.asked) <= kept and set(source.asked) == kept  # panels may ask a seam tile twice
    np.testing.assert_allclose(out[0][covered], img[..., 0][covered] / 255.0, atol=1e-5)
    assert (out[0][~covered] == 0).all()
