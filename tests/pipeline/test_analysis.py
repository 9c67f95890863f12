"""analyze(): segmentation → cell table → graph → spatial statistics → one feature row."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from xpath.datasets import synthetic_tissue
from xpath.io import geojson_to_labels, read_geojson, read_parquet
from xpath.pipeline import analyze, combine_instances

PROMPTS = ["tumour nuclei", "lymphocytes", "stromal nuclei", "stroma", "tumour region"]


def _oracle(tile):
    """The exact planted truth of a synthetic tile, shaped like a Segmentation."""
    inst = {p: tile.instances * (tile.nucleus_types == k + 1) for p, k in zip(PROMPTS[:3], range(3))}
    semantic = {**{p: m > 0 for p, m in inst.items()}, "stroma": tile.region("stroma"),
                "tumour region": tile.region("tumour")}
    return SimpleNamespace(semantic=semantic, instances=inst, presence={p: 1.0 for p in PROMPTS})


@pytest.fixture(scope="module")
def tile():
    return synthetic_tissue(0, size=384)


@pytest.fixture(scope="module")
def result(tile):
    return analyze(tile.image, PROMPTS, mpp=tile.mpp, segmentation=_oracle(tile), n_perms=50,
                   classes={"tumour nuclei": "tumour", "lymphocytes": "lymphocyte", "stromal nuclei": "stromal"})


def test_cells_match_the_planted_nuclei(tile, result):
    planted = tile.cells["class"].astype(str).value_counts().sort_index()
    found = result.cells["class"].astype(str).value_counts().sort_index()
    pd.testing.assert_series_equal(found, planted, check_names=False)
    ids, area = np.unique(result.labels[result.labels > 0], return_counts=True)
    got = result.cells.set_index("id").loc[ids, "nucleus.shape.area_um2"].to_numpy()
    np.testing.assert_allclose(got, area * tile.mpp**2)
    assert {"cell.spatial.degree", "x_um", "y_um"} <= set(result.cells.columns)


def test_feature_row(tile, result):
    f = result.features
    assert f.shape[0] == 1 and f.index.tolist() == ["image"]
    assert f.loc["image", "count"] == len(tile.cells)
    assert f.loc["image", "count.lymphocyte"] == (tile.cells["class"] == "lymphocyte").sum()
    tumour_px, stroma_px = tile.region("tumour").sum(), tile.region("stroma").sum()
    assert f.loc["image", "region.tumour_stroma_ratio"] == pytest.approx(tumour_px / stroma_px)
    assert f.loc["image", "presence.tumour"] == 1.0
    assert any(c.startswith("image.spatial.enrichment_z.") for c in f.columns)


def test_planted_infiltration_is_measured():
    """Lymphocytes planted inside tumour nests raise the measured intratumoural lymphocyte density."""
    values = []
    for infiltration in (0.0, 1.0):
        t = synthetic_tissue(4, size=384, infiltration=infiltration, lymphocyte_density=3000)
        a = analyze(t.image, PROMPTS, mpp=t.mpp, segmentation=_oracle(t), n_perms=20,
                    classes={"lymphocytes": "lymphocyte", "tumour nuclei": "tumour"})
        values.append(a.features.loc["image", "region.density_per_mm2.lymphocyte.tumour region"])
    assert values[0] == 0.0 and values[1] > 1000


def test_exports_round_trip(tmp_path, result):
    out = result.to_geojson(tmp_path / "a.geojson")
    table = read_geojson(out)
    assert set(table.loc[table.object_type == "annotation", "class"]) == {"stroma", "tumour region"}
    back = geojson_to_labels(table, result.labels.shape, object_types=["detection"])
    assert np.array_equal(back, result.labels)
    det = table[table.object_type == "detection"].set_index("object_id")
    np.testing.assert_allclose(det["nucleus.shape.area_um2"], result.cells.set_index("id")["nucleus.shape.area_um2"])
    files = result.to_parquet(tmp_path / "tables")
    cells, meta = read_parquet(files["cells"], with_metadata=True)
    assert len(cells) == len(result.cells) and meta["mpp"] == "0.5"
    assert read_parquet(files["features"]).shape[0] == 1


@pytest.mark.parametrize("kind", ["overlay", "cells", "graph"])
def test_plots_return_axes(result, kind):
    fig, ax = plt.subplots()
    assert result.plot(ax=ax, kind=kind) is ax
    assert ax.images  # the image is drawn
    plt.close(fig)


def test_combine_instances_earlier_prompt_wins():
    a = np.zeros((6, 6), np.int32)
    a[0:3, 0:3] = 1
    b = np.zeros((6, 6), np.int32)
    b[0:3, 0:3] = 2  # the same nucleus seen by the generic prompt: dropped
    b[4:6, 4:6] = 3
    labels, classes = combine_instances({"lymphocytes": a, "nuclei": b})
    assert classes.to_dict() == {1: "lymphocytes", 2: "nuclei"}
    assert (labels == 1).sum() == 9 and (labels == 2).sum() == 4


def test_bad_inputs(tile):
    seg = _oracle(tile)
    with pytest.raises(ValueError, match="mpp"):
        analyze(tile.image, PROMPTS, segmentation=seg)
    with pytest.raises(ValueError, match="graph"):
        analyze(tile.image, PROMPTS, mpp=0.5, segmentation=seg, graph="gabriel")
    with pytest.raises(ValueError, match="no result for prompts"):
        analyze(tile.image, ["glands"], mpp=0.5, segmentation=seg)


@pytest.mark.parametrize(("prompts", "error", "match"), [
    ([], ValueError, "non-empty"), (["nuclei", " "], ValueError, "empty string"),
    (["nuclei", "nuclei"], ValueError, "unique"), (["nuclei", 3], TypeError, "must be a str"),
])
def test_every_entry_point_checks_prompts_as_segment_does(tmp_path, tile, prompts, error, match):
    from xpath.pipeline import ArraySlide, analyze_cohort, segment_slide
    from xpath.segmentation import check_prompts

    with pytest.raises(error, match=match):
        check_prompts(prompts)
    with pytest.raises(error, match=match):
        analyze(tile.image, prompts, mpp=0.5, segmentation=_oracle(tile))
    with pytest.raises(error, match=match):
        segment_slide(ArraySlide(tile.image, mpp=0.5), prompts, out_dir=tmp_path, segmenter=lambda w: None)
    if prompts:  # an empty list with the default per-slide analysis says that prompts are required
        with pytest.raises(error, match=match):
            analyze_cohort(["a.png"], prompts, out_dir=tmp_path)
