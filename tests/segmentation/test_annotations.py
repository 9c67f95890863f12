"""QuPath annotations in: GeoJSON rectangles/polygons/points → prompts and training triples, and back out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xpath.io import read_geojson
from xpath.segmentation import TextPromptPredictor
from xpath.segmentation.annotations import prompts_from_geojson, triples_from_geojson

from .test_objects import DISCS, ObjectStandIn, _discs


def _rectangle(x0, y0, x1, y1, cls=None):
    props = {"objectType": "annotation"}
    if cls:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_rectangles_round_trip_to_masks_and_back_to_detections(tmp_path):
    image, truth = _discs()
    # QuPath level-0 coordinates of a 2× downsampled export region starting at (100, 50)
    rects = [_rectangle(100 + 2 * (x - r - 2), 50 + 2 * (y - r - 2), 100 + 2 * (x + r + 2), 50 + 2 * (y + r + 2),
                        "Nucleus") for y, x, r in DISCS]
    found = prompts_from_geojson(_write(tmp_path / "in.geojson", rects), image, origin=(100, 50), downsample=2)
    assert found.boxes.shape == (4, 4) and found.box_texts == ("Nucleus",) * 4 and found.points.shape == (0, 1, 2)
    y, x, r = DISCS[0]
    np.testing.assert_allclose(found.boxes[0], [x - r - 2, y - r - 2, x + r + 2, y + r + 2])
    pred = TextPromptPredictor(ObjectStandIn(), overlap=32, progress=False).set_image(image, mpp=0.5)
    objects = pred.predict_objects(boxes=found.boxes)
    out = objects.to_geojson(tmp_path / "out.geojson", classification="Nucleus", origin=(100, 50), downsample=2)
    back = read_geojson(out)
    assert len(back) == 4 and set(back["class"]) == {"Nucleus"} and set(back["object_type"]) == {"detection"}
    assert "score" in back and (back["score"] > 0.5).all()
    for (_, row), (y, x, r) in zip(back.iterrows(), DISCS):
        ring = np.asarray(row["geometry"]["coordinates"][0])
        cx, cy = (ring[:, 0].mean() - 100) / 2, (ring[:, 1].mean() - 50) / 2
        assert abs(cx - x) < 2 and abs(cy - y) < 2  # each detection is the disc of its rectangle


def test_points_and_unclassified_features(tmp_path):
    feats = [{"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[10, 12], [30, 40]]},
              "properties": {"objectType": "annotation", "classification": {"name": "Lymphocyte"}}},
             {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]}, "properties": {}},
             _rectangle(1, 2, 20, 30)]
    found = prompts_from_geojson(_write(tmp_path / "p.geojson", feats), (64, 64))
    np.testing.assert_allclose(found.points[:, 0], [[10, 12], [30, 40], [5, 6]])
    assert found.point_texts == ("Lymphocyte", "Lymphocyte", None) and found.box_texts == (None,)
    with pytest.raises(ValueError, match="feature 0 .* outside the image"):
        prompts_from_geojson(_write(tmp_path / "o.geojson", feats), (20, 20))


def test_triples_fill_polygons_per_classification(tmp_path):
    image = np.full((60, 80, 3), 200, np.uint8)
    feats = [_rectangle(10, 10, 30, 20, "Gland"), _rectangle(40, 30, 70, 50, "Gland"), _rectangle(0, 40, 10, 60, "Stroma")]
    triples = triples_from_geojson(image, _write(tmp_path / "t.geojson", feats), mpp=0.5, image_id="img1")
    by = {t.label.object: t for t in triples}
    assert set(by) == {"gland", "stroma"} and by["gland"].label.structure == "tissue"
    gland = by["gland"]
    assert gland.semantic.sum() == 20 * 10 + 30 * 20 and gland.instances.max() == 2 and gland.mpp == 0.5
    assert gland.image_id == "img1" and gland.image is image
    relabelled = triples_from_geojson(image, feats and read_geojson(tmp_path / "t.geojson"), mpp=0.5, prompt="glands")
    assert len(relabelled) == 1 and relabelled[0].semantic.sum() == 20 * 10 + 30 * 20 + 10 * 20


def test_triples_bad_input(tmp_path):
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="no classification"):
        triples_from_geojson(image, _write(tmp_path / "a.geojson", [_rectangle(1, 1, 5, 5)]), mpp=0.5)
    with pytest.raises(ValueError, match="cannot be read as a label"):
        triples_from_geojson(image, _write(tmp_path / "b.geojson", [_rectangle(1, 1, 5, 5, "zzqx")]), mpp=0.5)
    points = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}}]
    with pytest.raises(ValueError, match="no polygon"):
        triples_from_geojson(image, _write(tmp_path / "c.geojson", points), mpp=0.5)
    with pytest.raises(ValueError, match="uint8"):
        triples_from_geojson(image.astype(float), _write(tmp_path / "d.geojson", [_rectangle(1, 1, 5, 5, "Gland")]),
                             mpp=0.5)
