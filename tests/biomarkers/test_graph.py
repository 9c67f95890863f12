"""Cell graphs: kNN degree, radius graph against brute force, Delaunay on a grid, exports."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from xpath.biomarkers import CellGraph, build_graph_delaunay, build_graph_knn, build_graph_radius


@pytest.fixture
def points(rng):
    return rng.uniform(0, 200, (300, 2))


def test_knn_degree_and_neighbours_brute_force(points):
    g = build_graph_knn(points, k=5)
    assert isinstance(g.connectivities, sparse.csr_matrix) and isinstance(g.distances, sparse.csr_matrix)
    assert (g.degree == 5).all()
    d = np.linalg.norm(points[:, None] - points[None], axis=2)  # 300 x 300 brute force (test only)
    np.fill_diagonal(d, np.inf)
    want = np.sort(np.argsort(d, 1)[:, :5], 1)
    got = np.sort(g.connectivities.indices.reshape(-1, 5), 1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.sort(g.distances.data.reshape(-1, 5), 1), np.sort(d, 1)[:, :5])
    assert g.params == {"method": "knn", "k": 5, "symmetric": False}
    sym = build_graph_knn(points, k=5, symmetric=True)
    assert (sym.degree >= 5).all() and (sym.connectivities != sym.connectivities.T).nnz == 0
    assert set(np.unique(sym.connectivities.data)) == {1.0}  # no doubled entries for mutual neighbours


def test_radius_graph_matches_brute_force(points):
    g = build_graph_radius(points, 15.0)
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    want = (d <= 15.0) & ~np.eye(len(points), dtype=bool)
    np.testing.assert_array_equal(g.connectivities.toarray() > 0, want)
    np.testing.assert_allclose(g.distances.toarray()[want], d[want])


def test_delaunay_on_square_grid():
    n = 6
    yy, xx = np.mgrid[:n, :n]
    xy = np.stack([xx.ravel(), yy.ravel()], 1) * 10.0
    g = build_graph_delaunay(xy)
    a = g.connectivities.toarray() > 0
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    assert (a == a.T).all()
    assert (a[np.isclose(d, 10)]).all()  # every side of every grid square
    # Exactly one diagonal per square, nothing longer.
    assert np.isclose(d[a], 10 * np.sqrt(2)).sum() // 2 == (n - 1) ** 2
    assert a.sum() // 2 == 2 * n * (n - 1) + (n - 1) ** 2
    pruned = build_graph_delaunay(xy, max_edge_um=11)
    assert pruned.connectivities.nnz // 2 == 2 * n * (n - 1)


def test_graph_carries_ids_and_coords_from_table(points):
    cells = pd.DataFrame({"id": np.arange(len(points)) * 3 + 11, "x_um": points[:, 0], "y_um": points[:, 1]})
    g = build_graph_delaunay(cells)
    np.testing.assert_array_equal(g.ids, cells["id"])
    np.testing.assert_array_equal(g.coords, points)
    assert "delaunay" in repr(g)


def test_to_networkx(points):
    g = build_graph_radius(points[:50], 30.0)
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == 50 and nxg.number_of_edges() == g.connectivities.nnz // 2
    i, j = g.edges()[0]
    assert nxg.edges[i, j]["distance_um"] == pytest.approx(np.linalg.norm(points[i] - points[j]))


def test_to_pyg(points):
    pytest.importorskip("torch_geometric")  # installed in this project's environment
    g = build_graph_knn(points, k=4)
    feats = pd.DataFrame({"a": np.arange(len(points), dtype=float), "b": 1.0, "name": "x"})
    data = g.to_pyg(features=feats)
    assert tuple(data.edge_index.shape) == (2, len(points) * 4)
    assert tuple(data.x.shape) == (len(points), 2) and data.feature_names == ["a", "b"]
    assert data.edge_attr.shape[0] == len(points) * 4
    with pytest.raises(ValueError, match="features"):
        g.to_pyg(features=np.zeros((3, 2)))


def test_to_anndata_or_clear_import_error(points, monkeypatch):
    g = build_graph_knn(points, k=3)
    monkeypatch.setitem(sys.modules, "anndata", None)  # as if not installed
    with pytest.raises(ImportError, match="anndata"):
        g.to_anndata()


def test_to_anndata_keys_when_installed(points):
    pytest.importorskip("anndata")  # optional dependency, not installed by default
    ad = build_graph_knn(points, k=3).to_anndata()
    assert set(ad.obsp) == {"spatial_connectivities", "spatial_distances"} and ad.obsm["spatial"].shape == (300, 2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: build_graph_knn(p, k=0), "k must"),
        (lambda p: build_graph_radius(p, -1.0), "radius_um"),
        (lambda p: build_graph_delaunay(p, max_edge_um=0), "max_edge_um"),
        (lambda p: build_graph_knn(p[:, :1], k=2), r"\(N, 2\)"),
        (lambda p: build_graph_knn(pd.DataFrame({"x": p[:, 0]}), k=2), "x_um"),
    ],
)
def test_bad_input(points, call, match):
    with pytest.raises(ValueError, match=match):
        call(points)


def test_tiny_inputs():
    assert build_graph_knn(np.zeros((1, 2)), k=3).connectivities.nnz == 0
    assert build_graph_delaunay(np.array([[0.0, 0.0], [1.0, 0.0]])).connectivities.nnz == 2
    assert isinstance(build_graph_radius(np.zeros((0, 2)), 5.0), CellGraph)
