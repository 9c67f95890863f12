"""QuPath GeoJSON: exact polygons, QuPath's schema, round trips on synthetic and real slides."""

import json
import uuid

import numpy as np
import pandas as pd
import pytest
from skimage.measure import label as connected_components

from xpath.datasets import sample_slide, synthetic_tissue
from xpath.io import (
    GeoJSONWriter,
    class_colour,
    fill_rings,
    geojson_to_labels,
    read_geojson,
    trace_rings,
    write_geojson,
)


def _fill_components(rings, shape):
    order = np.lexsort((~rings.exterior, rings.component))
    lengths = np.diff(rings.offsets)[order]
    xy = np.concatenate([rings.ring(i) for i in order])
    return fill_rings(shape, rings.component[order], np.concatenate([[0], np.cumsum(lengths)]), xy)


def test_square_ring_is_its_four_corners():
    lab = np.zeros((6, 7), np.int32)
    lab[1:4, 2:6] = 9  # rows 1..3, cols 2..5
    rings = trace_rings(lab)
    assert rings.label.tolist() == [9]
    assert rings.ring(0).tolist() == [[2, 1], [6, 1], [6, 4], [2, 4]]  # (x, y) pixel corners
    assert rings.exterior.tolist() == [True]


def test_hole_and_diagonal_contact():
    lab = np.zeros((7, 7), np.int32)
    lab[1:6, 1:6] = 3
    lab[3, 3] = 0  # a one-pixel hole
    lab[6, 6] = 3  # touches the square only diagonally: a separate polygon (4-connectivity)
    rings = trace_rings(lab)
    assert sorted(rings.exterior.tolist()) == [False, True, True]
    hole = rings.ring(int(np.flatnonzero(~rings.exterior)[0]))
    assert sorted(map(tuple, hole.tolist())) == [(3, 3), (3, 4), (4, 3), (4, 4)]
    assert len(np.unique(rings.component)) == 2


def test_rings_without_holes_bound_one_component_each():
    """Without holes the components are not labelled (each ring is one): the same partition as skimage's."""
    lab = synthetic_tissue(1, size=200, mpp=0.25).instances.astype(np.int32)
    lab[:12, :12] = 0
    lab[2:5, 2:5] = lab[5:8, 5:8] = 9999  # one object, two components touching at a corner
    rings = trace_rings(lab)
    assert rings.exterior.all() and len(rings) > int(lab.max() > 0)
    filled = _fill_components(rings, lab.shape)
    want = connected_components(lab, connectivity=1)
    pairs = np.unique(np.stack([filled.ravel(), want.ravel()], 1), axis=0)
    assert len(pairs) == len(np.unique(filled)) == len(np.unique(want))  # one-to-one
    assert len(rings) == int(want.max()) and (filled[3, 3] != filled[6, 6])


@pytest.mark.parametrize("n_labels", [2, 5])
def test_fill_inverts_trace_on_random_labels(rng, n_labels):
    lab = rng.integers(0, n_labels, (50, 61)).astype(np.int32)  # holes, pinches, islands everywhere
    rings = trace_rings(lab)
    filled = _fill_components(rings, lab.shape)
    assert np.array_equal(filled, connected_components(lab, connectivity=1))
    # shoelace area of exteriors minus holes = pixel count
    x, y = rings.xy[:, 0].astype(float), rings.xy[:, 1].astype(float)
    total = 0.0
    for i in range(len(rings)):
        r = rings.ring(i).astype(float)
        total += 0.5 * np.sum(r[:, 0] * np.roll(r[:, 1], -1) - np.roll(r[:, 0], -1) * r[:, 1])
    assert total == pytest.approx((lab > 0).sum())
    assert x.size == y.size


def _check_qupath_schema(doc):
    """The subset of QuPath's GeoJSON (PathObjectTypeAdapters, v0.4+) that its importer reads."""
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    for feat in doc["features"]:
        assert feat["type"] == "Feature"
        uuid.UUID(feat["id"])  # QuPath keeps UUID ids
        props = feat["properties"]
        assert props["objectType"] in ("annotation", "detection", "cell", "tile")
        geoms = [feat["geometry"]] + ([feat["nucleusGeometry"]] if "nucleusGeometry" in feat else [])
        if "nucleusGeometry" in feat:
            assert props["objectType"] == "cell"
        for geom in geoms:
            assert geom["type"] in ("Polygon", "MultiPolygon")
            polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            for poly in polys:
                for ring in poly:
                    assert len(ring) >= 4 and ring[0] == ring[-1]
                    assert all(len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in ring)
        if "classification" in props:
            cls = props["classification"]
            assert isinstance(cls["name"], str)
            assert len(cls["color"]) == 3 and all(0 <= c <= 255 for c in cls["color"])
            r, g, b = cls["color"]
            assert cls["colorRGB"] == ((255 << 24) | (r << 16) | (g << 8) | b) - (1 << 32)
        meas = props.get("measurements", {})
        assert isinstance(meas, dict)
        assert all(isinstance(k, str) and isinstance(v, (int, float)) and np.isfinite(v) for k, v in meas.items())


def test_synthetic_round_trip_schema_and_origin(tmp_path):
    tile = synthetic_tissue(3, size=384)
    meas = tile.cells[["id", "class", "radius_um", "aspect", "touching"]].copy()
    meas.loc[0, "radius_um"] = np.nan  # NaN measurements are left out, not written as NaN
    out = write_geojson(tmp_path / "t.geojson", tile.instances, measurements=meas, object_type="cell",
                        regions={"tumour": tile.region("tumour")}, origin=(5000, 7000))
    doc = json.loads(out.read_text())
    _check_qupath_schema(doc)
    assert len(doc["features"]) == 1 + len(tile.cells)
    ann = doc["features"][0]
    assert ann["properties"]["objectType"] == "annotation" and ann["properties"]["classification"]["name"] == "tumour"
    first = doc["features"][1]
    assert "radius_um" not in first["properties"]["measurements"]
    xs = np.array([p[0] for p in first["geometry"]["coordinates"][0]])
    assert xs.min() >= 5000  # full-resolution coordinates = local + origin

    table = read_geojson(out)
    cells = table[table.object_type == "cell"]
    assert cells["object_id"].tolist() == tile.cells["id"].tolist()
    assert cells["class"].tolist() == tile.cells["class"].astype(str).tolist()
    np.testing.assert_allclose(cells["aspect"].to_numpy(), tile.cells["aspect"].to_numpy(), rtol=1e-9)
    back = geojson_to_labels(table, tile.instances.shape, origin=(5000, 7000), object_types=["cell"])
    assert np.array_equal(back, tile.instances)
    nuclei = geojson_to_labels(table, tile.instances.shape, origin=(5000, 7000), object_types=["cell"],
                               geometry="nucleus_geometry")
    assert np.array_equal(nuclei, tile.instances)
    region = geojson_to_labels(table, tile.instances.shape, origin=(5000, 7000), object_types=["annotation"])
    assert np.array_equal(region > 0, tile.region("tumour"))


def test_downsample_scales_coordinates(tmp_path):
    lab = np.zeros((5, 5), np.int32)
    lab[1:3, 1:3] = 4
    out = write_geojson(tmp_path / "d.geojson", lab, origin=(10, 20), downsample=2.5)
    ring = json.loads(out.read_text())["features"][0]["geometry"]["coordinates"][0]
    assert ring[:4] == [[12.5, 22.5], [17.5, 22.5], [17.5, 27.5], [12.5, 27.5]]


def test_chunked_writing_gives_the_same_file(tmp_path):
    tile = synthetic_tissue(1, size=256)
    a = write_geojson(tmp_path / "a.geojson", tile.instances, classes=tile.cells.set_index("id")["class"],
                      chunk_size=7, image_name="x")
    b = write_geojson(tmp_path / "b.geojson", tile.instances, classes=tile.cells.set_index("id")["class"],
                      chunk_size=100_000, image_name="x")
    assert a.read_text() == b.read_text()


def test_tiles_streamed_with_ids_select_owned_objects(tmp_path):
    tile = synthetic_tissue(2, size=256)
    owned = tile.cells["id"].to_numpy()[::2]
    with GeoJSONWriter(tmp_path / "s.geojson") as writer:
        n = writer.add_labels(tile.instances, ids=owned, classes="nucleus")
        n += writer.add_labels(tile.instances, ids=tile.cells["id"].to_numpy()[1::2], classes="nucleus")
    assert n == len(tile.cells) == writer.n_features
    back = geojson_to_labels(tmp_path / "s.geojson", tile.instances.shape)
    assert np.array_equal(back, tile.instances)


def test_failed_write_leaves_no_file(tmp_path):
    lab = np.ones((4, 4), np.int32)
    with pytest.raises(RuntimeError), GeoJSONWriter(tmp_path / "x.geojson") as writer:
        writer.add_labels(lab)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="object_type"):
        write_geojson("unused.geojson", np.ones((3, 3), np.int32), object_type="nucleus")
    with pytest.raises(TypeError, match="labels"):
        write_geojson("unused.geojson", np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="downsample"):
        write_geojson("unused.geojson", np.ones((3, 3), np.int32), downsample=0)


def test_real_sample_slide_round_trip(tmp_path):
    """Nuclei of a region of the real sample slide → GeoJSON in slide pixels → the same objects."""
    from xpath.segmentation.classical import classical_nuclei

    origin = (900, 1200)
    with sample_slide() as slide:
        region = slide.read_region(origin, (512, 512))
    labels = classical_nuclei(region.array, mpp=region.mpp)
    assert labels.max() > 50  # a real region with many nuclei
    ids, area = np.unique(labels[labels > 0], return_counts=True)
    table = pd.DataFrame({"id": ids, "class": "nucleus", "nucleus.size.area_px": area})
    out = write_geojson(tmp_path / "slide.geojson", labels, measurements=table, origin=region.origin,
                        image_name="cmu_small_region")
    doc = json.loads(out.read_text())
    _check_qupath_schema(doc)
    back = read_geojson(out)
    assert back["object_id"].tolist() == ids.tolist()
    assert back["nucleus.size.area_px"].tolist() == area.tolist()
    assert np.array_equal(geojson_to_labels(back, labels.shape, origin=origin), labels)


def test_class_colours_follow_the_vocabulary_stems():
    red, blue = (200, 0, 0), (31, 119, 180)
    assert class_colour("tumour nuclei") == class_colour("Carcinoma") == red
    assert class_colour("lymphocytes") == class_colour("TILs") == blue
    assert class_colour("stromal") == class_colour("connective") == (44, 160, 44)
    assert class_colour("nuclei") == class_colour("nuclei") not in (red, blue)  # a stable palette colour
