"""Shape features: known geometry, scikit-image equality, mpp scaling, WDBC definitions, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops_table

from xpath.biomarkers import PROPERTY_FAMILIES, cell_table, feature_catalog
from xpath.biomarkers._shape import N_ANGLES, wdbc_from_radial

S = "nucleus.shape."
THETA = -math.pi + (np.arange(N_ANGLES) + 0.5) * 2 * math.pi / N_ANGLES

# regionprops_table property -> our column; every property both compute. Tolerance: EXACT up to
# floating-point round-off (rtol 1e-9, atol 1e-12), including convex area, solidity and Feret max,
# which follow scikit-image's convex-image construction.
SKIMAGE_PAIRS = {
    "area": S + "area_um2", "perimeter": S + "perimeter_um", "eccentricity": S + "eccentricity",
    "orientation": S + "orientation_rad", "axis_major_length": S + "major_axis_um",
    "axis_minor_length": S + "minor_axis_um", "solidity": S + "solidity", "extent": S + "extent",
    "equivalent_diameter_area": S + "equivalent_diameter_um", "feret_diameter_max": S + "feret_max_um",
    "area_convex": S + "convex_area_um2", "centroid-0": "y_px", "centroid-1": "x_px",
    **{f"moments_hu-{i}": f"nucleus.moments.hu_{i + 1}" for i in range(7)},
}


def test_square_known_answers():
    lab = np.zeros((40, 40), np.int32)
    n = 10
    lab[5 : 5 + n, 7 : 7 + n] = 3
    t = cell_table(lab, mpp=1.0, properties=("shape",)).iloc[0]
    assert t["id"] == 3
    assert t[S + "area_um2"] == n * n
    assert t[S + "perimeter_um"] == pytest.approx(4 * (n - 1))  # centre-to-centre border, skimage's definition
    assert t[S + "solidity"] == 1.0
    assert t[S + "extent"] == 1.0
    assert t[S + "convex_area_um2"] == n * n
    assert t[S + "feret_min_um"] == pytest.approx(n)
    assert t[S + "feret_max_um"] == pytest.approx(math.hypot(n, n - 1))  # corners cut by the 0.5 contour
    assert t[S + "eccentricity"] == pytest.approx(0.0, abs=1e-12)
    assert t[S + "major_axis_um"] == pytest.approx(t[S + "minor_axis_um"])
    # second moment of n pixels in a row: (n² − 1)/12 -> axis = 4 sqrt((n² − 1)/12)
    assert t[S + "major_axis_um"] == pytest.approx(4 * math.sqrt((n * n - 1) / 12))
    assert (t["x_px"], t["y_px"]) == (7 + (n - 1) / 2, 5 + (n - 1) / 2)


@pytest.mark.parametrize("radius", [6, 15, 30])
def test_disc_known_answers(disc, radius):
    lab = disc((2 * radius + 10,) * 2, (radius + 5, radius + 5), radius)
    t = cell_table(lab, mpp=0.25, properties=("shape", "wdbc", "fourier")).iloc[0]
    area = t[S + "area_um2"] / 0.25**2
    assert area == pytest.approx(math.pi * radius**2, rel=0.02)
    # The 4-connected border perimeter of a digital disc is within 5% of 2πr (documented tolerance).
    assert t[S + "perimeter_um"] / 0.25 == pytest.approx(2 * math.pi * radius, rel=0.05)
    assert t[S + "circularity"] == pytest.approx(1.0, abs=0.1)
    assert t[S + "solidity"] > 0.93  # digital discs: 0.93 (r = 6) .. 0.98 (r = 30), as scikit-image
    assert t[S + "eccentricity"] < 0.1
    assert t["nucleus.wdbc.radius_um"] / 0.25 == pytest.approx(radius, abs=0.3)
    assert t["nucleus.wdbc.compactness"] == pytest.approx(0.0, abs=0.02)
    assert t["nucleus.wdbc.smoothness"] < 0.01
    assert t["nucleus.wdbc.symmetry"] < 0.03
    assert t["nucleus.wdbc.concave_points"] == 0
    assert t["nucleus.fourier.fourier_2"] < 0.02


def test_equal_to_regionprops_table(tile):
    lab = tile.instances
    ours = cell_table(lab, mpp=1.0, properties=("shape", "moments"))
    ref = pd.DataFrame(regionprops_table(lab, properties=["label", *{k.split("-")[0] for k in SKIMAGE_PAIRS}]))
    np.testing.assert_array_equal(ref["label"], ours["id"])
    for a, b in SKIMAGE_PAIRS.items():
        np.testing.assert_allclose(ours[b], ref[a], rtol=1e-9, atol=1e-12, err_msg=f"{a} vs {b}")


def test_degenerate_shapes_equal_regionprops(rng):
    """Single pixels, 1-px lines (straight and diagonal), split objects and random blobs: still identical."""
    from skimage.measure import label

    lab = np.zeros((200, 200), np.int32)
    lab[5, 5] = 1
    lab[10, 10:30] = 2
    lab[20:40, 50] = 3
    lab[60, 60] = lab[61, 61] = 4  # two diagonal pixels
    lab[np.arange(100, 120), np.arange(100, 120)] = 5
    lab[70:72, 80:82] = 6  # isotropic 2 x 2 square: skimage's orientation convention -pi/4
    noise = rng.random((60, 200)) > 0.6
    lab[140:] = np.where(noise, label(noise) + 10, 0)
    ours = cell_table(lab, mpp=1.0, properties=("shape", "moments"))
    ref = pd.DataFrame(regionprops_table(lab, properties=["label", *{k.split("-")[0] for k in SKIMAGE_PAIRS}]))
    np.testing.assert_array_equal(ref["label"], ours["id"])
    for a, b in SKIMAGE_PAIRS.items():
        if a.startswith("moments_hu"):  # Hu moments of 1-2 pixel objects are 0/0-limited round-off
            np.testing.assert_allclose(ours[b], ref[a], rtol=1e-6, atol=1e-12, err_msg=a)
        else:
            np.testing.assert_allclose(ours[b], ref[a], rtol=1e-9, atol=1e-12, err_msg=f"{a} vs {b}")


def test_mpp_scaling_is_exact(tile):
    a = cell_table(tile.instances, mpp=1.0, properties=("shape", "wdbc"))
    b = cell_table(tile.instances, mpp=0.25, properties=("shape", "wdbc"))
    for col in a.columns:
        if col.endswith("_um2"):
            np.testing.assert_allclose(b[col], a[col] * 0.0625, rtol=1e-12)
        elif col.endswith("_um"):
            np.testing.assert_allclose(b[col], a[col] * 0.25, rtol=1e-12)
        elif col.startswith("nucleus.") and col != S + "area_px":
            np.testing.assert_allclose(b[col], a[col], rtol=1e-12, err_msg=col)


def test_shape_effects_planted_in_synthetic_tissue():
    """Tumour nuclei planted 1.5x larger have ~1.5² the area; stromal nuclei (aspect 3.2) are the most elongated."""
    from xpath.datasets import NUCLEUS_TYPES, synthetic_tissue

    names = dict(enumerate(NUCLEUS_TYPES, 1))
    med = {}
    for scale in (1.0, 1.5):
        tile = synthetic_tissue(5, size=320, nuclear_size_scale=scale, touching=0.0)
        t = cell_table(tile.instances, mpp=tile.mpp, classes=tile.nucleus_types, class_names=names,
                       properties=("shape",))
        med[scale] = t.groupby("class", observed=True)[S + "area_um2"].median()
        ecc = t.groupby("class", observed=True)[S + "eccentricity"].median()
        assert ecc["stromal"] > 0.85 > ecc["lymphocyte"]
    assert med[1.5]["tumour"] / med[1.0]["tumour"] == pytest.approx(1.5**2, rel=0.15)
    assert med[1.5]["lymphocyte"] / med[1.0]["lymphocyte"] == pytest.approx(1.0, rel=0.1)


def test_hand_derived_wdbc_on_profiles():
    k = N_ANGLES
    circle = np.full((1, k), 10.0)
    f = wdbc_from_radial(circle, THETA)
    assert f["radius"][0] == pytest.approx(10.0)
    assert f["smoothness"][0] == pytest.approx(0.0, abs=1e-12)
    dth = 2 * math.pi / k
    poly_p = 2 * k * 10 * math.sin(dth / 2)  # regular 64-gon inscribed in the circle
    assert f["perimeter"][0] == pytest.approx(poly_p)
    assert f["area"][0] == pytest.approx(0.5 * k * 100 * math.sin(dth))
    assert f["compactness"][0] == pytest.approx(poly_p**2 / (4 * math.pi * 0.5 * k * 100 * math.sin(dth)) - 1)
    assert f["concavity"][0] == pytest.approx(0.0, abs=1e-12) and f["concave_points"][0] == 0
    assert f["symmetry"][0] == pytest.approx(0.0, abs=1e-12)
    # Coastline: n-gons of n = 64, 32, 16, 8 vertices: P = 2 n R sin(π/n), ruler = 2 R sin(π/n).
    ns = np.array([64, 32, 16, 8])
    slope = np.polyfit(np.log(20 * np.sin(np.pi / ns)), np.log(2 * ns * 10 * np.sin(np.pi / ns)), 1)[0]
    assert f["fractal_dimension"][0] == pytest.approx(-slope, rel=1e-9)

    # Alternating radii R ± d: |r_k − mean(neighbours)| = 2d everywhere -> smoothness 2d/R.
    zig = (10.0 + 0.5 * (-1.0) ** np.arange(k))[None]
    assert wdbc_from_radial(zig, THETA)["smoothness"][0] == pytest.approx(2 * 0.5 / 10)

    # One vertex pulled in by d: its depth below the hull chord of its neighbours is R cos(Δ) − (R − d).
    notch = np.full((1, k), 10.0)
    notch[0, 5] = 7.0
    f = wdbc_from_radial(notch, THETA)
    depth = 10 * math.cos(dth) - 7.0
    assert f["concavity"][0] == pytest.approx(depth / k / notch.mean(), rel=1e-9)
    assert f["concave_points"][0] == 1
    two = notch.copy()
    two[0, 40] = 7.0
    assert wdbc_from_radial(two, THETA)["concave_points"][0] == 2

    # An ellipse is symmetric about its major axis (here the x axis).
    ell = 1 / np.sqrt((np.cos(THETA) / 12) ** 2 + (np.sin(THETA) / 6) ** 2)
    assert wdbc_from_radial(ell[None], THETA)["symmetry"][0] == pytest.approx(0.0, abs=1e-9)
    # One side of the major axis 20% farther out: symmetry = Σ 0.2 r w / Σ 2.2 r w = 1/11.
    lop = np.where(THETA > 0, 1.2 * ell, ell)
    assert wdbc_from_radial(lop[None], THETA)["symmetry"][0] == pytest.approx(0.2 / 2.2, rel=1e-9)


def test_wdbc_compactness_scale_matches_published_table():
    """WDBC's published compactness (0.02–0.35) is perimeter²/(4π area) − 1, not perimeter²/area − 1 (≥ 11.6).

    Check that our definition lands in the published range for shapes like benign/malignant
    nuclei: a disc (~0), an ellipse of aspect 1.5 (~0.04) and a lobulated nucleus.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame
    lo, hi = data["mean compactness"].min(), data["mean compactness"].max()
    assert lo > 0 and hi < 1  # impossible for perimeter²/area − 1
    ell = 1 / np.sqrt((np.cos(THETA) / 15) ** 2 + (np.sin(THETA) / 10) ** 2)
    lobed = 12 * (1 + 0.12 * np.cos(5 * THETA))
    comp = wdbc_from_radial(np.stack([ell, lobed]), THETA)["compactness"]
    assert np.all((comp > 0) & (comp < hi))
    # Smoothness and symmetry of such shapes also lie in the published ranges.
    f = wdbc_from_radial(lobed[None], THETA)
    assert data["mean smoothness"].min() / 10 < f["smoothness"][0] < data["worst smoothness"].max()


def test_empty_label_image_gives_typed_empty_table():
    full = cell_table(np.pad(np.ones((4, 4), np.int32), 2), np.full((8, 8, 3), 200, np.uint8), mpp=0.5)
    empty = cell_table(np.zeros((8, 8), np.int32), np.full((8, 8, 3), 200, np.uint8), mpp=0.5)
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    assert (empty.dtypes == full.dtypes).all()
    assert empty["id"].dtype == np.int32 and empty["nucleus.shape.area_um2"].dtype == np.float64


def test_ids_carried_and_classes(disc):
    lab = disc((60, 60), (15, 15), 6, value=7)
    disc((60, 60), (40, 40), 8, value=42, out=lab)
    cmap = np.zeros_like(lab)
    cmap[lab == 7] = 2
    cmap[lab == 42] = 1
    cmap[40, 40:44] = 2  # a minority of class-2 pixels in object 42
    t = cell_table(lab, mpp=0.5, classes=cmap, class_names={1: "tumour", 2: "lymphocyte"}, properties=("shape",))
    assert t["id"].tolist() == [7, 42]
    assert t["class"].astype(str).tolist() == ["lymphocyte", "tumour"]
    t2 = cell_table(lab, mpp=0.5, classes={42: "a", 7: "b"}, properties=("shape",))
    assert t2["class"].astype(str).tolist() == ["b", "a"]
    t3 = cell_table(lab, mpp=0.5, classes=pd.Series(["x"], index=[42]), properties=("shape",))
    assert t3["class"].isna().tolist() == [True, False]


def test_classes_from_synthetic_class_map_match_truth(tile, tile_table):
    np.testing.assert_array_equal(tile_table["class"].astype(str), tile.cells["class"].astype(str))
    np.testing.assert_allclose(tile_table["x_um"], tile.cells["x_um"], atol=1e-9)


def test_catalog_documents_every_column(tile_table):
    cat = feature_catalog()
    missing = [c for c in tile_table.columns if c.startswith("nucleus.") and c not in cat]
    assert not missing
    assert all(set(v) == {"definition", "unit", "reference"} for v in cat.values())


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"labels": np.array([[0, -1], [1, 1]])}, ValueError, ">= 0"),
        ({"labels": np.zeros((4, 4), np.float32)}, TypeError, "integer dtype"),
        ({"labels": np.zeros((4, 4), np.int32), "image": np.zeros((5, 4, 3), np.uint8)}, ValueError, "shape"),
        ({"labels": np.zeros((4, 4), np.int32), "mpp": None}, ValueError, "mpp"),
        ({"labels": np.zeros((4, 4), np.int32), "mpp": 0.0}, ValueError, "mpp"),
        ({"labels": np.zeros((4, 4), np.int32), "mpp": -1}, ValueError, "mpp"),
        ({"labels": np.zeros((4, 4), np.int32), "properties": ("shape", "colour")}, ValueError, "colour"),
        ({"labels": np.zeros((4, 4), np.int32), "properties": ("stain",)}, ValueError, "image"),
        ({"labels": np.zeros((4, 4), np.int32), "classes": np.zeros((3, 3), np.int32)}, ValueError, "shape"),
        ({"labels": np.zeros((4, 4), np.int32), "classes": [1, 2]}, TypeError, "classes"),
    ],
)
def test_bad_input(kwargs, err, match):
    kwargs = {"mpp": 0.5, **kwargs}
    with pytest.raises(err, match=match):
        cell_table(kwargs.pop("labels"), kwargs.pop("image", None), **kwargs)


def test_missing_mpp_keyword_is_an_error():
    with pytest.raises(TypeError, match="mpp"):
        cell_table(np.zeros((4, 4), np.int32))  # type: ignore[call-arg]


def test_property_families_select_columns():
    lab = np.zeros((10, 10), np.int32)
    lab[2:6, 2:6] = 1
    for fam in ("shape", "moments", "fourier", "wdbc"):
        cols = cell_table(lab, mpp=1.0, properties=(fam,)).columns
        assert {c.split(".")[1] for c in cols if c.startswith("nucleus.")} == {fam}
    assert set(PROPERTY_FAMILIES) >= {"stain", "texture"}


def test_default_properties_are_every_family_the_input_allows():
    """``properties=None`` is decided by the image, not by which tuple object is passed."""
    from xpath.biomarkers import DEFAULT_PROPERTIES

    lab = np.zeros((16, 16), np.int32)
    lab[3:9, 3:9] = 1
    image = np.full((16, 16, 3), 180, np.uint8)
    image[lab > 0] = (90, 40, 140)

    def families(table):
        return {c.split(".")[1] for c in table.columns if c.startswith("nucleus.")}

    assert families(cell_table(lab, image, mpp=0.5)) == set(DEFAULT_PROPERTIES)
    assert families(cell_table(lab, mpp=0.5)) == set(DEFAULT_PROPERTIES) - {"stain", "texture"}
    # a copy of the default tuple names the families explicitly, as any list does: with the image it measures
    # the same columns as the default, without it naming the image families is the documented error
    explicit = tuple(list(DEFAULT_PROPERTIES))  # noqa: C414 - an equal tuple that is another object
    assert list(cell_table(lab, image, mpp=0.5, properties=explicit).columns) == list(
        cell_table(lab, image, mpp=0.5).columns)
    with pytest.raises(ValueError, match="need the image"):
        cell_table(lab, mpp=0.5, properties=list(DEFAULT_PROPERTIES))
