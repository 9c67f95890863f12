"""Spatial statistics: planted clustering, complete spatial randomness, brute-force checks, synthetic tissue."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from xpath.biomarkers import (
    build_graph_delaunay,
    build_graph_knn,
    cell_spatial_stats,
    clustering_coefficient,
    co_occurrence,
    graph_statistics,
    immune_proximity,
    morisita_horn,
    neighbourhood_enrichment,
    region_table,
    ripley,
    signed_region_distance,
    til_density,
)


def _clustered(rng, n_clusters=30, per=40, sd=8.0, size=1000.0):
    """Two classes in separate Gaussian clusters (a planted segregated pattern)."""
    centres = rng.uniform(50, size - 50, (n_clusters, 2))
    xy = (centres[:, None] + rng.normal(0, sd, (n_clusters, per, 2))).reshape(-1, 2)
    cls = np.repeat(np.where(np.arange(n_clusters) % 2 == 0, "a", "b"), per)
    return pd.DataFrame({"x_um": xy[:, 0], "y_um": xy[:, 1], "class": pd.Categorical(cls)})


def test_enrichment_positive_for_planted_clusters_and_null_for_random(rng, seed):
    cells = _clustered(rng)
    g = build_graph_knn(cells, k=6)
    res = neighbourhood_enrichment(g, cells, n_perms=200, seed=seed)
    z = res["zscore"]
    assert z.loc["a", "a"] > 10 and z.loc["b", "b"] > 10
    assert z.loc["a", "b"] < -10
    assert res["count"].to_numpy().sum() == g.connectivities.nnz
    shuffled = cells.assign(**{"class": pd.Categorical(rng.permutation(cells["class"].to_numpy()))})
    z0 = neighbourhood_enrichment(g, shuffled, n_perms=200, seed=seed)["zscore"]
    assert np.abs(z0.to_numpy()).max() < 3.5
    again = neighbourhood_enrichment(g, cells, n_perms=200, seed=seed)["zscore"]
    pd.testing.assert_frame_equal(z, again)  # seeded


def test_ripley_l_zero_under_csr_and_positive_for_clusters(rng):
    side = 1000.0
    csr = rng.uniform(0, side, (2000, 2))
    radii = [20.0, 50.0, 100.0]
    lr = ripley(csr, radii, window_um=(side, side))
    # L(r) sd under CSR for n = 2000 in 1 mm² is ~0.5-1 µm at these radii.
    assert np.abs(lr["L_um"]).max() < 2.5
    assert (lr["class"] == "all").all()
    cl = ripley(_clustered(rng), radii, window_um=(side, side))
    assert (cl["L_um"] > 10).all()
    # Without the edge correction K would be biased low; with it the CSR K(r) ≈ π r².
    np.testing.assert_allclose(lr["K_um2"], np.pi * np.square(radii), rtol=0.08)


def test_clustering_coefficient_equals_networkx(rng):
    xy = rng.uniform(0, 100, (120, 2))
    g = build_graph_knn(xy, k=5)
    want = nx.clustering(nx.Graph((g.connectivities + g.connectivities.T) > 0))
    np.testing.assert_allclose(clustering_coefficient(g), [want[i] for i in range(120)], rtol=1e-12)


def test_cell_spatial_stats_brute_force(rng):
    cells = _clustered(rng, n_clusters=6, per=25)
    g = build_graph_delaunay(cells)
    s = cell_spatial_stats(cells, g, density_radius_um=30.0)
    xy = cells[["x_um", "y_um"]].to_numpy()
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    a = g.connectivities.toarray() > 0
    np.testing.assert_array_equal(s["cell.spatial.degree"], a.sum(1))
    np.testing.assert_allclose(s["cell.spatial.neighbour_distance_min_um"], np.where(a, d, np.inf).min(1))
    np.testing.assert_allclose(s["cell.spatial.neighbour_distance_mean_um"], (np.where(a, d, 0)).sum(1) / a.sum(1))
    np.testing.assert_allclose(s["cell.spatial.local_density_per_mm2"],
                               (d <= 30.0).sum(1) / (math.pi * 0.03**2))
    for c in ("a", "b"):
        m = (cells["class"] == c).to_numpy()
        np.testing.assert_allclose(s[f"cell.spatial.nearest_um.{c}"], d[:, m].min(1))
        np.testing.assert_allclose(s[f"cell.spatial.neighbours_frac.{c}"], (a & m[None]).sum(1) / a.sum(1))
    assert s.index.equals(cells.index)


def test_signed_region_distance():
    reg = np.zeros((50, 50), np.int32)
    reg[:, 20:] = 1  # region 1 = columns 20..49
    rows = np.array([10, 10, 10, 10])
    cols = np.array([5, 19, 20, 30])
    d = signed_region_distance(reg, rows, cols, 1, mpp=0.5)
    np.testing.assert_allclose(d, [15 * 0.5, 1 * 0.5, -1 * 0.5, -11 * 0.5])


def test_co_occurrence_and_morisita_horn(rng):
    cells = _clustered(rng)
    co = co_occurrence(cells, [10.0, 30.0])
    aa = co[(co.a == "a") & (co.b == "a") & (co.radius_um == 10.0)]["ratio"].item()
    ab = co[(co.a == "a") & (co.b == "b") & (co.radius_um == 10.0)]["ratio"].item()
    assert aa > 1.5 and ab < 0.5
    mh = morisita_horn(cells, quadrat_um=50.0)
    assert mh.loc["a", "a"] == pytest.approx(1.0)
    assert mh.loc["a", "b"] < 0.2
    same = pd.DataFrame({"x_um": [1.0, 2, 60, 61], "y_um": [1.0, 2, 60, 61], "class": ["a", "b", "a", "b"]})
    assert morisita_horn(same, quadrat_um=50.0).loc["a", "b"] == pytest.approx(1.0)


def test_graph_statistics_on_a_grid():
    yy, xx = np.mgrid[:10, :10]
    xy = np.stack([xx.ravel(), yy.ravel()], 1) * 10.0
    st = graph_statistics(xy)
    assert st["mst_edge_um_mean"] == pytest.approx(10.0) and st["mst_edge_um_disorder"] == pytest.approx(0.0, abs=1e-9)
    assert st["voronoi_area_um2_mean"] == pytest.approx(100.0) and st["voronoi_area_um2_std"] == pytest.approx(0, abs=1e-6)
    assert st["delaunay_triangle_area_um2_mean"] == pytest.approx(50.0)
    n_side, n_diag = 2 * 10 * 9, 81
    mean_edge = (n_side * 10 + n_diag * 10 * math.sqrt(2)) / (n_side + n_diag)
    assert st["delaunay_edge_um_mean"] == pytest.approx(mean_edge)
    assert st["delaunay_edge_um_minmax_ratio"] == pytest.approx(1 / math.sqrt(2))


def test_synthetic_tissue_infiltration_is_recovered():
    """TIL density in tumour follows the planted `infiltration`; stromal TIL density does not."""
    from xpath.biomarkers import cell_table
    from xpath.datasets import NUCLEUS_TYPES, REGION_TYPES, synthetic_tissue

    dens = {}
    near = {}
    for infil in (0.05, 0.8):
        tile = synthetic_tissue(11, size=512, infiltration=infil, touching=0.0)
        t = cell_table(tile.instances, mpp=tile.mpp, classes=tile.nucleus_types,
                       class_names=dict(enumerate(NUCLEUS_TYPES, 1)), properties=("shape",))
        dens[infil] = til_density(t, tile.regions, mpp=tile.mpp, tumour_region=REGION_TYPES.index("tumour"),
                                  stroma_region=REGION_TYPES.index("stroma"))
        near[infil] = immune_proximity(t, distance_um=15.0)
        rt = region_table(tile.regions, mpp=tile.mpp, region_names=dict(enumerate(REGION_TYPES)), cells=t)
        assert rt["region.area_um2.tumour"] == pytest.approx((tile.regions == 1).sum() * tile.mpp**2)
        assert rt["region.tumour_stroma_ratio"] == pytest.approx((tile.regions == 1).sum() / (tile.regions == 2).sum())
        assert sum(v for k, v in rt.items() if k.startswith("region.fraction.")) == pytest.approx(1.0)
        assert rt["region.density_per_mm2.tumour.tumour"] > 10 * rt["region.density_per_mm2.tumour.stroma"]
    ratio = dens[0.8]["intratumoral_per_mm2"] / dens[0.05]["intratumoral_per_mm2"]
    assert ratio > 5  # planted 16x (thinning of overlapping nuclei lowers it)
    assert dens[0.8]["stromal_per_mm2"] == pytest.approx(dens[0.05]["stromal_per_mm2"], rel=0.35)
    assert near[0.8] > near[0.05]
    # planted densities: 1200 lymphocytes/mm² in stroma, x infiltration in tumour (before thinning)
    assert 400 < dens[0.8]["stromal_per_mm2"] < 1300


def test_region_distances_in_cell_stats(tile, tile_table):
    from xpath.datasets import REGION_TYPES

    g = build_graph_knn(tile_table, k=5)
    s = cell_spatial_stats(tile_table, g, regions=tile.regions, region_names=dict(enumerate(REGION_TYPES)),
                           mpp=tile.mpp)
    inside = (tile.regions[np.rint(tile_table.y_px).astype(int), np.rint(tile_table.x_px).astype(int)]
              == REGION_TYPES.index("tumour"))
    d = s["cell.spatial.region_distance_um.tumour"].to_numpy()
    assert (d[inside] < 0).all() and (d[~inside] > 0).all()
    tum = (tile_table["class"] == "tumour").to_numpy()
    assert np.median(d[tum]) < 0  # tumour nuclei sit inside tumour nests


def test_bad_input(rng):
    cells = _clustered(rng, n_clusters=2, per=5)
    g = build_graph_knn(cells, k=3)
    with pytest.raises(ValueError, match="graph has"):
        cell_spatial_stats(cells.iloc[:5], g)
    with pytest.raises(ValueError, match="n_perms"):
        neighbourhood_enrichment(g, cells, n_perms=1)
    with pytest.raises(ValueError, match="radii_um"):
        ripley(cells, [-1.0])
    with pytest.raises(ValueError, match="mpp"):
        cell_spatial_stats(cells, g, regions=np.zeros((5, 5), np.int32))


def test_enrichment_equals_naive_permutation_test(rng, seed):
    """Same seed, same permutations: the numba edge pass equals a plain bincount over the edges."""
    cells = _clustered(rng, n_clusters=8, per=20)
    g = build_graph_delaunay(cells)
    res = neighbourhood_enrichment(g, cells, n_perms=30, seed=seed)
    codes = cells["class"].cat.codes.to_numpy()
    coo = g.connectivities.tocoo()
    count = lambda k: np.bincount(k[coo.row] * 2 + k[coo.col], minlength=4)
    perm_rng = np.random.default_rng(seed)
    perms = np.array([count(perm_rng.permutation(codes)) for _ in range(30)])
    np.testing.assert_array_equal(res["count"].to_numpy().ravel(), count(codes))
    z = (count(codes) - perms.mean(0)) / perms.std(0, ddof=1)
    np.testing.assert_allclose(res["zscore"].to_numpy().ravel(), z, rtol=1e-12)


def test_voronoi_hull_test_agrees_with_scipy_find_simplex():
    """The half-plane hull test that replaced Delaunay.find_simplex (quadratic for points outside the hull)
    gives scipy's answer, with NaN/inf points outside."""
    from scipy.spatial import Delaunay

    from xpath.biomarkers._image_stats import _inside_hull

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 500, (400, 2))
    tri = Delaunay(xy)
    pts = np.concatenate([rng.uniform(-100, 600, (5000, 2)), [[np.nan, 1.0], [np.inf, 0.0]]])
    expected = tri.find_simplex(np.nan_to_num(pts, nan=np.inf, posinf=np.inf)) >= 0
    got = _inside_hull(xy, tri, pts)
    assert got.sum() > 1000 and (~got).sum() > 1000
    np.testing.assert_array_equal(got, expected)
