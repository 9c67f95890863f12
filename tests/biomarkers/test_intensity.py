"""Stain intensity and texture: equality with scikit-image/scipy/numpy, planted stain effects, cytoplasm ring."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from skimage.color import rgb2hed
from skimage.feature import graycomatrix, graycoprops

from xpath.biomarkers import cell_table
from xpath.biomarkers._intensity import GLCM_PROPS, deconvolve, glcm_offsets, group_stats, quantise
from xpath.biomarkers._pixels import object_pixels


def test_deconvolution_equals_rgb2hed(rng):
    rgb = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    np.testing.assert_allclose(deconvolve(rgb), np.maximum(rgb2hed(rgb), 0), rtol=1e-12, atol=1e-15)


def test_group_stats_equal_numpy_scipy(rng):
    sizes = np.array([1, 2, 5, 50, 333])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    values = rng.gamma(2.0, 1.0, offsets[-1])
    got = group_stats(values, offsets)
    for i in range(len(sizes)):
        v = values[offsets[i] : offsets[i + 1]]
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        want = [v.mean(), v.std(), v.min(), v.max(), q50, q75 - q25]
        np.testing.assert_allclose(got[i, :6], want, rtol=1e-12)
        if v.std() > 0:
            np.testing.assert_allclose(got[i, 6:], [sps.skew(v), sps.kurtosis(v)], rtol=1e-9)


def test_stain_columns_equal_rgb2hed_per_object(tile, tile_table):
    hed = np.maximum(rgb2hed(tile.image), 0)
    for row in tile_table.sample(5, random_state=0).itertuples():
        m = tile.instances == row.id
        for ci, ch in enumerate(("hematoxylin", "eosin", "residual")):
            v = hed[..., ci][m]
            assert tile_table.loc[row.Index, f"nucleus.stain.{ch}.mean"] == pytest.approx(v.mean(), rel=1e-12)
            assert tile_table.loc[row.Index, f"nucleus.stain.{ch}.median"] == pytest.approx(np.median(v), rel=1e-12)


def test_planted_stain_amounts_are_recovered(tile_table):
    """Synthetic nuclei carry haematoxylin 2.0 (lymphocyte) > 1.45 (tumour) > 1.35 (stromal)."""
    h = tile_table.groupby("class", observed=True)["nucleus.stain.hematoxylin.median"].median()
    assert h["lymphocyte"] > h["tumour"] > h["stromal"]
    assert h["lymphocyte"] / h["tumour"] == pytest.approx(2.0 / 1.45, rel=0.2)
    # Nuclei hold far more haematoxylin than eosin.
    assert (tile_table["nucleus.stain.hematoxylin.mean"] > tile_table["nucleus.stain.eosin.mean"]).mean() > 0.95


def test_glcm_equals_skimage_graycoprops(tile):
    """Per-object GLCM restricted to in-object pixel pairs equals skimage's on the masked crop.

    The crop's outside pixels get an extra grey level (32) whose row and column are dropped,
    so scikit-image counts exactly the pairs with both pixels in the object. Tolerance 1e-10.
    """
    levels = quantise(tile.image)
    px = object_pixels(tile.instances)
    t = cell_table(tile.instances, tile.image, mpp=tile.mpp, properties=("texture",))
    offs = glcm_offsets()
    dists, angles = (1, 2), (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
    for i in (0, 7, 19, 40):
        r0, c0, r1, c1 = px.bbox[i]
        crop = np.where(tile.instances[r0:r1, c0:c1] == px.ids[i], levels[r0:r1, c0:c1], 32).astype(np.uint8)
        p = graycomatrix(crop, dists, angles, levels=33, symmetric=True, normed=False)[:32, :32].astype(float)
        p /= p.sum(axis=(0, 1), keepdims=True)
        feats = {}
        for prop in GLCM_PROPS:
            name = "ASM" if prop == "asm" else prop
            feats[prop] = graycoprops(p, name).ravel()  # (2 distances x 4 angles), distance-major like offs
        assert len(offs) == 8
        for prop, v in feats.items():
            assert t.iloc[i][f"nucleus.texture.glcm_{prop}.mean"] == pytest.approx(v.mean(), rel=1e-10, abs=1e-12)
            assert t.iloc[i][f"nucleus.texture.glcm_{prop}.range"] == pytest.approx(np.ptp(v), rel=1e-9, abs=1e-12)


def test_texture_separates_flat_from_noisy_objects(rng):
    lab = np.zeros((40, 80), np.int32)
    lab[5:35, 5:35] = 1
    lab[5:35, 45:75] = 2
    img = np.full((40, 80, 3), 120, np.uint8)
    img[5:35, 45:75] = rng.integers(0, 256, (30, 30, 1), dtype=np.uint8)
    t = cell_table(lab, img, mpp=0.5, properties=("texture", "wdbc"))
    assert t.loc[0, "nucleus.texture.glcm_contrast.mean"] == 0
    assert t.loc[0, "nucleus.texture.glcm_energy.mean"] == pytest.approx(1.0)
    assert t.loc[0, "nucleus.texture.glcm_correlation.mean"] == 1.0  # constant image: skimage's convention
    assert t.loc[1, "nucleus.texture.glcm_contrast.mean"] > 50
    assert t.loc[1, "nucleus.texture.glcm_entropy.mean"] > 5  # ln(1024) = 6.9 at most
    assert t.loc[0, "nucleus.wdbc.texture"] == 0 and t.loc[1, "nucleus.wdbc.texture"] > 50


def test_cytoplasm_ring_grows_into_background_only(disc):
    lab = disc((40, 60), (20, 15), 6, value=1)
    disc((40, 60), (20, 31), 6, value=2, out=lab)  # 4 px gap between the two nuclei
    img = np.full((40, 60, 3), 230, np.uint8)
    img[lab == 2] = (40, 40, 160)  # nucleus 2 dark: if a ring entered it, its stain would show
    t = cell_table(lab, img, mpp=0.5, cytoplasm_um=3.0, properties=("shape", "stain"))
    # Ring of 6 px around an isolated disc of radius 6: area of the annulus, minus what the neighbour's ring takes.
    assert 0 < t.loc[0, "cytoplasm.shape.area_um2"] < np.pi * (12**2 - 6**2) * 0.25
    assert t.loc[0, "cytoplasm.stain.hematoxylin.max"] == pytest.approx(deconvolve(np.array([230, 230, 230], np.uint8))[0])
    total_ring = t["cytoplasm.shape.area_um2"].sum() / 0.25
    grown = np.pi * 12**2 * 2 - np.pi * 6**2 * 2
    assert total_ring < grown  # the two rings share the gap instead of overlapping


def test_image_families_dropped_without_image(tile):
    t = cell_table(tile.instances, mpp=tile.mpp)
    assert not any(".stain." in c or ".texture." in c for c in t.columns)
    assert "nucleus.wdbc.texture" not in t.columns


def test_intensity_equals_regionprops_table(tile, tile_table):
    """regionprops_table's intensity_mean/min/max/std on each rgb2hed channel: equal to round-off (rtol 1e-9)."""
    from skimage.measure import regionprops_table

    hed = np.maximum(rgb2hed(tile.image), 0)
    for ci, ch in enumerate(("hematoxylin", "eosin", "residual")):
        ref = regionprops_table(tile.instances, intensity_image=hed[..., ci],
                                properties=("label", "intensity_mean", "intensity_min", "intensity_max",
                                            "intensity_std"))
        np.testing.assert_array_equal(ref["label"], tile_table["id"])
        for stat in ("mean", "min", "max", "std"):
            np.testing.assert_allclose(tile_table[f"nucleus.stain.{ch}.{stat}"], ref[f"intensity_{stat}"],
                                       rtol=1e-9, atol=1e-12, err_msg=f"{ch} {stat}")
