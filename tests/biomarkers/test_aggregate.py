"""Aggregation to one row per group, the scikit-learn transformer, real annotated images, docstring examples."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xpath.biomarkers import (
    AGGREGATE_STATS,
    MorphologyFeaturizer,
    aggregate,
    cell_table,
    image_spatial_features,
)


def _two_images(tile_table):
    a = tile_table.assign(image="a", patient="p1")
    b = tile_table.iloc[::2].assign(image="b", patient="p1")
    return pd.concat([a, b], ignore_index=True)


def test_aggregate_values_equal_pandas(tile_table):
    t = _two_images(tile_table)
    agg = aggregate(t, "image", stats=("mean", "q10", "q90", "iqr"))
    assert list(agg.index) == ["a", "b"]
    col = "nucleus.shape.area_um2"
    sub = t[t.image == "b"][col]
    assert agg.loc["b", f"{col}.mean"] == pytest.approx(sub.mean())
    assert agg.loc["b", f"{col}.q10"] == pytest.approx(sub.quantile(0.1))
    assert agg.loc["b", f"{col}.iqr"] == pytest.approx(sub.quantile(0.75) - sub.quantile(0.25))
    tum = t[(t.image == "a") & (t["class"] == "tumour")][col]
    assert agg.loc["a", f"tumour:{col}.q90"] == pytest.approx(tum.quantile(0.9))
    assert agg.loc["a", "count"] == len(tile_table)
    assert agg.loc["a", "count.tumour"] == (tile_table["class"] == "tumour").sum()
    fr = [agg.loc["a", f"fraction.{c}"] for c in ("lymphocyte", "stromal", "tumour")]
    assert sum(fr) == pytest.approx(1.0)
    assert not any(c.startswith(("id.", "x_um.", "x_px.")) for c in agg.columns)


def test_aggregate_by_patient_with_density_and_extra(tile_table, tile):
    t = _two_images(tile_table)
    area = tile.instances.size * tile.mpp**2 / 1e6
    agg = aggregate(t, ["patient"], stats=("median",), area_mm2={"p1": 2 * area},
                    extra=pd.DataFrame({"image.spatial.x": [3.0]}, index=pd.Index(["p1"], name="patient")))
    assert agg.shape[0] == 1
    assert agg.loc["p1", "density_per_mm2"] == pytest.approx(len(t) / (2 * area))
    assert agg.loc["p1", "image.spatial.x"] == 3.0


def test_density_is_nan_not_infinite_without_analysed_area(tile_table):
    """A region prompt that found nothing leaves no area: the densities are undefined (NaN, imputed by the
    diagnostic models), never infinite."""
    agg = aggregate(tile_table.assign(image="a"), "image", stats=("mean",), area_mm2={"a": 0.0})
    densities = agg.filter(like="density_per_mm2")
    assert densities.shape[1] >= 2 and densities.isna().all().all()


def test_aggregate_bad_input(tile_table):
    with pytest.raises(ValueError, match="stats"):
        aggregate(tile_table.assign(image="a"), "image", stats=("mode",))
    with pytest.raises(ValueError, match="by"):
        aggregate(tile_table, "slide")
    assert "q90" in AGGREGATE_STATS


def test_image_spatial_features_names_are_stable(tile_table):
    s = image_spatial_features(tile_table, n_perms=50)
    assert "image.spatial.enrichment_z.tumour__tumour" in s.index
    assert "image.spatial.ripley_l_um.tumour.r25" in s.index
    assert s["image.spatial.enrichment_z.tumour__tumour"] > 2  # tumour nuclei cluster in nests
    again = image_spatial_features(tile_table, n_perms=50)
    pd.testing.assert_series_equal(s, again)


def test_featurizer_in_a_pipeline_separates_planted_size_effect():
    from xpath.datasets import synthetic_tissue

    X, y = [], []
    for i in range(6):
        big = i % 2
        t = synthetic_tissue(100 + i, size=160, nuclear_size_scale=1.5 if big else 1.0)
        X.append((t.instances, t.image))
        y.append(big)
    feat = MorphologyFeaturizer(mpp=0.5, properties=("shape",), stats=("mean", "q90"))
    pipe = make_pipeline(feat, StandardScaler(), LogisticRegression()).fit(X, y)
    assert (pipe.predict(X) == np.array(y)).all()
    names = feat.get_feature_names_out()
    assert "nucleus.shape.area_um2.mean" in names and len(names) == feat.transform(X[:2]).shape[1]
    empty = feat.transform([np.zeros((20, 20), np.int32)])
    assert empty[0, list(names).index("count")] == 0


def test_real_monuseg_image_against_regionprops(shared_data):
    """A real annotated H&E image (MoNuSeg, 40x): areas/perimeters equal scikit-image, sane nuclear sizes."""
    from skimage.color import rgb2hed
    from skimage.measure import regionprops_table

    from xpath.datasets import iter_dataset

    rec = next(iter_dataset("monuseg", limit=1))
    t = cell_table(rec.instances, rec.image, mpp=rec.mpp)
    ref = regionprops_table(rec.instances, properties=("label", "area", "perimeter", "solidity"))
    np.testing.assert_array_equal(t["id"], ref["label"])
    np.testing.assert_allclose(t["nucleus.shape.area_um2"], ref["area"] * rec.mpp**2, rtol=1e-12)
    np.testing.assert_allclose(t["nucleus.shape.perimeter_um"], ref["perimeter"] * rec.mpp, rtol=1e-9)
    np.testing.assert_allclose(t["nucleus.shape.solidity"], ref["solidity"], rtol=1e-9)
    big = t["nucleus.shape.area_um2"] > 10
    med = t.loc[big, "nucleus.shape.equivalent_diameter_um"].median()
    assert 4 < med < 12  # human nuclei are ~5-10 µm across
    # Nuclei are the haematoxylin-rich structures of the image.
    background_h = np.maximum(rgb2hed(rec.image)[..., 0], 0)[rec.instances == 0]
    assert t["nucleus.stain.hematoxylin.median"].median() > np.median(background_h)


def test_real_consep_classes_and_nuclear_sizes(shared_data):
    """CoNSeP (colorectal, typed nuclei): majority-vote classes equal a pandas mode per object, and
    inflammatory nuclei (lymphocytes) are smaller and rounder than epithelial ones, as in tissue."""
    from xpath.datasets import iter_dataset

    tables = []
    for i, rec in enumerate(iter_dataset("consep", limit=120)):  # loop over images
        names = {k: v.object for k, v in rec.classes.items()}
        t = cell_table(rec.instances, mpp=rec.mpp, classes=rec.class_map, class_names=names, properties=("shape",))
        m = rec.instances > 0
        pix = pd.DataFrame({"id": rec.instances[m], "cls": rec.class_map[m]})
        pix = pix[pix.cls > 0]
        n = pix.groupby(["id", "cls"]).size().reset_index(name="n")
        mode = n.sort_values(["id", "n", "cls"], ascending=[True, False, True]).drop_duplicates("id").set_index("id")["cls"]
        got = t.set_index("id")["class"].astype(str)
        assert (got.loc[mode.index] == mode.map(names)).all()
        tables.append(t.assign(image=i))
    allc = pd.concat(tables, ignore_index=True)
    med = allc.groupby("class", observed=True)[[f"nucleus.shape.{f}" for f in ("area_um2", "eccentricity",
                                                                                "solidity")]].median()
    med.columns = ["area", "eccentricity", "solidity"]
    assert med.loc["inflammatory", "area"] < 0.8 * med.loc["epithelial", "area"]
    assert med.loc["inflammatory", "eccentricity"] < med.loc["spindle-shaped", "eccentricity"] - 0.1
    assert med.loc["inflammatory", "solidity"] > med.loc["epithelial", "solidity"]
