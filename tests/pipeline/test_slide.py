"""Whole slides: tissue-only windows, instances merged across windows, streamed outputs."""

from types import SimpleNamespace

import numpy as np
import pytest

from xpath.datasets import sample_slide, synthetic_tissue
from xpath.io import geojson_to_labels, read_geojson
from xpath.pipeline import ArraySlide, segment_slide


def _pairs(a, b):
    """(id in a, id in b) pairs over pixels where a > 0."""
    p = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return p[p[:, 0] > 0]


@pytest.fixture(scope="module")
def planted():
    tile = synthetic_tissue(5, size=(700, 1100), lumen=0.0)
    image = tile.image.copy()
    image[:, 850:] = 245  # blank glass: no windows there
    inst = tile.instances.copy()
    inst[:, 850:] = 0
    return image, inst


def _oracle(inst, downsample=1):
    """A 'segmenter' that returns the exact planted nuclei of the window it is given."""
    def run(window):
        x0, y0 = (v // downsample for v in window.origin)  # origin is in level-0 pixels
        h, w = window.array.shape[:2]
        lab = np.zeros((h, w), np.int32)
        part = inst[y0:y0 + h, x0:x0 + w]
        lab[: part.shape[0], : part.shape[1]] = part
        return SimpleNamespace(semantic={"nuclei": lab > 0, "stroma": window.array[..., 0] > 200},
                               instances={"nuclei": lab}, presence={"nuclei": 0.9, "stroma": 0.4})
    return run


def test_instances_crossing_windows_are_kept_once_and_whole(tmp_path, planted):
    image, inst = planted
    res = segment_slide(ArraySlide(image, mpp=0.5, path="planted.png"), ["nuclei", "stroma"],
                        segmenter=_oracle(inst), out_dir=tmp_path, tile=192, overlap=64, progress=False)
    masks = res.masks()
    lab = masks["nuclei"]
    pairs = _pairs(inst, lab)
    n_true = len(np.unique(inst)) - 1
    # a bijection between planted and stitched objects, with identical pixels
    assert len(pairs) == n_true == res.n_objects["nuclei"] == len(np.unique(pairs[:, 1]))
    assert np.array_equal(lab > 0, inst > 0)
    assert res.presence == {"nuclei": 0.9, "stroma": 0.4}
    assert masks["stroma"].dtype == np.int32 or masks["stroma"].max() == 1
    # windows over blank glass were skipped
    blank = res.tiles["x"] >= 850
    assert not res.tiles.loc[blank, "processed"].any() and res.tiles.loc[~blank, "processed"].any()
    # the GeoJSON (level-0 coordinates) fills back into the same objects, plus a tissue annotation
    table = read_geojson(res.files["geojson"])
    assert (table["object_type"] == "annotation").sum() == 1
    assert np.array_equal(geojson_to_labels(table, lab.shape, object_types=["detection"]), lab)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planted.geojson", "planted.masks.ome.tif"]


def test_working_resolution_coarser_than_the_slide(tmp_path, planted):
    image, inst = planted
    coarse = inst[::2, ::2]
    res = segment_slide(ArraySlide(image, mpp=0.5, path="p.png"), ["nuclei"], segmenter=_oracle(coarse, 2),
                        out_dir=tmp_path, mpp=1.0, tile=128, overlap=48, progress=False)
    assert res.downsample == 2.0 and res.shape == (350, 550)
    lab = res.masks()["nuclei"]
    assert len(_pairs(coarse, lab)) == len(np.unique(coarse)) - 1
    table = read_geojson(res.files["geojson"])
    # GeoJSON is in level-0 (0.5 µm) pixels: scale back by the downsample
    assert np.array_equal(geojson_to_labels(table, lab.shape, downsample=2.0, object_types=["detection"]), lab)


def test_measure_rows_are_streamed_in_slide_coordinates(tmp_path, planted):
    import pandas as pd

    image, inst = planted

    def measure(labels, window, *, mpp, ids):
        from scipy import ndimage

        cy, cx = np.array(ndimage.center_of_mass(labels > 0, labels, ids)).reshape(-1, 2).T
        return pd.DataFrame({"id": ids, "x_px": cx, "y_px": cy, "x_um": cx * mpp, "y_um": cy * mpp})

    res = segment_slide(ArraySlide(image, mpp=0.5), ["nuclei"], segmenter=_oracle(inst), measure=measure,
                        out_dir=tmp_path, tile=192, overlap=64, progress=False)
    cells = res.cells()
    assert len(cells) == res.n_objects["nuclei"] and cells["id"].is_unique
    lab = res.masks()["nuclei"]
    from scipy import ndimage

    expected = np.array(ndimage.center_of_mass(lab > 0, lab, cells["id"].to_numpy())).reshape(-1, 2)
    np.testing.assert_allclose(cells[["y_px", "x_px"]].to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(cells["x_um"], cells["x_px"] * 0.5)


def test_failure_leaves_no_partial_outputs(tmp_path, planted):
    image, inst = planted
    calls = []

    def failing(window):
        calls.append(window.origin)
        if len(calls) == 3:
            raise RuntimeError("GPU fell off the bus")
        return _oracle(inst)(window)

    with pytest.raises(RuntimeError, match="bus"):
        segment_slide(ArraySlide(image, mpp=0.5), ["nuclei"], segmenter=failing, out_dir=tmp_path,
                      tile=192, overlap=64, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_sample_slide_end_to_end_with_classical_nuclei(tmp_path):
    """analyze_slide on the real sample slide: tiled nuclei → streamed cell table → graph → feature row;
    the GeoJSON loads back into the same objects as the OME-TIFF label map."""
    from xpath.pipeline import analyze_slide
    from xpath.segmentation.classical import classical_nuclei

    def classical(window):
        lab = classical_nuclei(window.array, mpp=window.mpp)
        return SimpleNamespace(semantic={"nuclei": lab > 0}, instances={"nuclei": lab}, presence={"nuclei": 1.0})

    with sample_slide() as slide:
        res = analyze_slide(slide, ["nuclei"], segmenter=classical, out_dir=tmp_path, mpp=1.0, tile=512,
                            overlap=64, properties=("shape",), n_perms=10, progress=False)
    seg = res.segmentation
    lab = seg.masks()["nuclei"]
    assert seg.n_objects["nuclei"] > 1000 and len(np.unique(lab)) - 1 == seg.n_objects["nuclei"]
    assert 0.3 < seg.tiles["tissue_fraction"].mean() <= 1.0
    assert len(res.cells) == seg.n_objects["nuclei"] and res.cells["id"].is_unique
    ids, area = np.unique(lab[lab > 0], return_counts=True)
    got = res.cells.set_index("id").loc[ids, "nucleus.shape.area_um2"].to_numpy()
    np.testing.assert_allclose(got, area * 1.0**2)  # measured on the merged objects, in µm² at 1 µm/px
    assert res.features.shape[0] == 1 and res.features["count"].iloc[0] == len(res.cells)
    table = read_geojson(res.files["geojson"])
    det = table[table.object_type == "detection"]
    assert len(det) == seg.n_objects["nuclei"] and set(det["class"]) == {"nuclei"}
    assert np.array_equal(geojson_to_labels(det, lab.shape, downsample=seg.downsample), lab)


def test_tissue_saturation_is_skimage_hsv_saturation():
    """tissue_mask reads the saturation from a (max, min) table: the values of skimage's rgb2hsv, bit for bit."""
    from skimage.color import rgb2hsv

    from xpath.pipeline._tissue import _saturation_lut

    img = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    img[:4] = 0
    img[4:8] = 37  # grey: no saturation
    np.testing.assert_array_equal(_saturation_lut()[img.max(2), img.min(2)], rgb2hsv(img)[..., 1].astype(np.float32))


# ---------------------------------------------------------------- the model's path (one grid over the tissue)
@pytest.fixture(scope="module")
def small_slide():
    """A 0.25 µm/px slide: 2 × 5 model tiles (512 px, at x = 0, 347, 694, 1041, 1388), tissue up to x = 1240."""
    tile = synthetic_tissue(11, size=(860, 1240), mpp=0.25, lumen=0.0)
    image = np.full((860, 1900, 3), 242, np.uint8)
    image[:, :1240] = tile.image
    return image


@pytest.fixture(scope="module")
def model_run(small_slide, tmp_path_factory):
    from xpath.biomarkers import cell_table
    from xpath.segmentation import TextPromptPredictor, load_model

    out = tmp_path_factory.mktemp("model_slide")

    def measure(labels, image, *, mpp, ids):
        return cell_table(labels, image, mpp=mpp)

    prompts = ["nuclei", "lymphocytes", "tumor nuclei", "glands"]
    res = segment_slide(ArraySlide(small_slide, mpp=0.25, path="small.png"), prompts, measure=measure,
                        out_dir=out, tile=640, progress=False)
    predictor = TextPromptPredictor(load_model("xpath_small"), cache_tiles=0, panel_tiles=16)
    ref = predictor.set_image(small_slide, mpp=0.25).predict(prompts)  # every tile, glass too
    return res, ref


def test_model_path_runs_each_tissue_tile_once_and_skips_glass(model_run):
    res, _ = model_run
    tiles = res.tiles
    assert len(tiles) == 2 * 5 and res.mpp == 0.25 and res.shape == (860, 1900)
    assert res.tiles_encoded == int(tiles["processed"].sum()) == 8  # each needed tile encoded once: no halos, seams
    glass = tiles["x"] >= 1240
    assert glass.sum() == 2 and not tiles.loc[glass, "processed"].any() and tiles.loc[~glass, "processed"].all()
    masks = res.masks()
    assert not masks["nuclei"][:, 1553:].any() and not masks["glands"][:, 1553:].any()  # only skipped tiles there


def test_model_path_equals_the_predictor_on_the_whole_image(model_run, small_slide):
    """Same tile grid → the same objects as TextPromptPredictor.predict on the image, with ids 1..N, the
    same semantic masks, and per-object features equal to cell_table on the whole label map."""
    from xpath.biomarkers import cell_table
    from xpath.segmentation.metrics import aji

    res, ref = model_run
    masks = res.masks()
    lab, want = masks["nuclei"].astype(np.int32), ref.instances["nuclei"]
    assert aji(want, lab) == 1.0 and np.array_equal(lab > 0, want > 0)
    assert res.n_objects["nuclei"] == len(np.unique(lab)) - 1 == int(lab.max()) > 20
    # the ownership windows (640 px) cut the slide: every object is measured once, whole
    assert np.array_equal(masks["glands"][:, :1388] > 0, ref.semantic["glands"][:, :1388])  # blends differ on glass
    cells = res.cells()
    cells = cells[cells["prompt"] == "nuclei"].set_index("id")
    assert len(cells) == res.n_objects["nuclei"]
    expected = cell_table(lab, small_slide, mpp=0.25).set_index("id")
    cols = [c for c in expected.columns if c.startswith("nucleus.")]
    got = cells.loc[expected.index, cols].to_numpy(float)
    np.testing.assert_allclose(got, expected[cols].to_numpy(float), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cells.loc[expected.index, "x_um"], expected["x_um"], atol=1e-6)
    assert res.presence["nuclei"] == pytest.approx(ref.presence["nuclei"], abs=1e-6)


def test_model_path_nucleus_types_split_the_nuclei_as_predict_does(model_run, small_slide):
    """One nucleus, one type on the slide path too: each type prompt's objects are predict()'s (on the whole
    image), disjoint nuclei of the 'nuclei' map with its ids, and their rows are those nuclei's rows."""
    from xpath.biomarkers import cell_table
    from xpath.segmentation.metrics import aji

    res, ref = model_run
    masks = res.masks()
    nuclei = masks["nuclei"].astype(np.int32)
    types = [masks[p].astype(np.int32) for p in ("lymphocytes", "tumor nuclei")]
    assert min(int((t > 0).sum()) for t in types) > 0
    assert not ((types[0] > 0) & (types[1] > 0)).any()
    cells = res.cells()
    for p, lab in zip(("lymphocytes", "tumor nuclei"), types):
        assert aji(ref.instances[p], lab) == 1.0 and np.array_equal(lab > 0, ref.instances[p] > 0)
        assert np.array_equal(lab[lab > 0], nuclei[lab > 0])  # the nuclei's own ids and pixels
        ids = np.unique(lab)[1:]
        assert res.n_objects[p] == len(ids) and ((nuclei == ids[:, None, None]).sum((1, 2)) ==
                                                 (lab == ids[:, None, None]).sum((1, 2))).all()
        rows = cells[cells["prompt"] == p].set_index("id").sort_index()
        assert rows.index.tolist() == ids.tolist()
        expected = cell_table(lab, small_slide, mpp=0.25).set_index("id")
        cols = [c for c in expected.columns if c.startswith("nucleus.")]
        np.testing.assert_allclose(rows.loc[expected.index, cols].to_numpy(float), expected[cols].to_numpy(float),
                                   rtol=0, atol=1e-6)
        assert res.presence[p] == pytest.approx(ref.presence[p], abs=1e-6)


def test_model_path_geojson_is_the_label_map(model_run):
    res, _ = model_run
    masks = res.masks()
    table = read_geojson(res.files["geojson"])
    for p in ("nuclei", "lymphocytes", "tumor nuclei"):  # a nucleus and its type: one outline, two features
        det = table[(table.object_type == "detection") & (table["class"] == p)]
        assert len(det) == res.n_objects[p] > 0
        assert np.array_equal(geojson_to_labels(det, masks[p].shape, object_types=["detection"]), masks[p])


def test_model_path_decodes_with_test_time_flips_as_the_predictor_does(small_slide, tmp_path):
    """``test_time_flips`` reaches the slide's predictor: four encodings per tissue tile, and the objects of
    TextPromptPredictor.predict with flips on the same image."""
    from xpath.segmentation import TextPromptPredictor, load_model
    from xpath.segmentation.metrics import aji

    image = np.ascontiguousarray(small_slide[:512, :860])  # 1 × 2 model tiles, all tissue
    res = segment_slide(ArraySlide(image, mpp=0.25, path="flips.png"), ["nuclei"], out_dir=tmp_path, progress=False,
                        test_time_flips=True)
    assert res.tiles_encoded == 4 * int(res.tiles["processed"].sum()) == 8
    predictor = TextPromptPredictor(load_model("xpath_small"), cache_tiles=0, panel_tiles=16, test_time_flips=True)
    ref = predictor.set_image(image, mpp=0.25).predict(["nuclei"])
    assert aji(ref.instances["nuclei"], res.masks()["nuclei"].astype(np.int32)) == 1.0
