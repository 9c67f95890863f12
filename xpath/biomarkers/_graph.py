"""Sparse cell graphs: k-nearest-neighbour, radius and Delaunay, as ``scipy.sparse`` CSR.

Edges come from ``scipy.spatial.cKDTree`` and ``scipy.spatial.Delaunay``; no dense N x N
array is ever formed. A :class:`CellGraph` records the parameters that built it (as
squidpy's ``spatial_neighbors`` does) and exports to networkx, torch-geometric and AnnData.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.spatial import Delaunay, cKDTree

__all__ = ["CellGraph", "build_graph_delaunay", "build_graph_knn", "build_graph_radius", "cell_coordinates"]

logger = logging.getLogger(__name__)


def cell_coordinates(cells: Any, *, name: str = "cells") -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` ``x_um, y_um`` coordinates and ``(N,)`` ids of a cell table or an ``(N, 2)`` array.

    An array is taken as ``(x_um, y_um)`` rows with ids ``0..N-1``.
    """
    if isinstance(cells, pd.DataFrame):
        missing = [c for c in ("x_um", "y_um") if c not in cells.columns]
        if missing:
            raise ValueError(f"{name} must have columns x_um and y_um, missing {missing}")
        xy = cells[["x_um", "y_um"]].to_numpy(np.float64)
        ids = cells["id"].to_numpy() if "id" in cells.columns else np.arange(len(cells))
    else:
        xy = np.asarray(cells, dtype=np.float64) if not isinstance(cells, str) else None
        if xy is None or xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"{name} must be a cell table with x_um, y_um or an (N, 2) array, "
                             f"got {getattr(xy, 'shape', type(cells).__name__)}")
        ids = np.arange(len(xy))
    if not np.isfinite(xy).all():
        raise ValueError(f"{name} coordinates contain NaN or infinite values")
    return xy, ids


@dataclass(frozen=True)
class CellGraph:
    """A spatial graph of cells.

    Attributes
    ----------
    connectivities : scipy.sparse.csr_matrix
        ``(N, N)`` ``float32`` adjacency, 1 on edges. Symmetric except for kNN graphs
        built with ``symmetric=False`` (row ``i`` then holds the ``k`` nearest cells of ``i``).
    distances : scipy.sparse.csr_matrix
        ``(N, N)`` ``float64`` edge lengths in µm, same sparsity as ``connectivities``.
    ids : numpy.ndarray
        ``(N,)`` cell ids (row order of the cell table).
    coords : numpy.ndarray
        ``(N, 2)`` ``x_um, y_um``.
    params : dict
        ``method`` and the arguments that built the graph.
    """

    connectivities: sparse.csr_matrix = field(repr=False)
    distances: sparse.csr_matrix = field(repr=False)
    ids: np.ndarray = field(repr=False)
    coords: np.ndarray = field(repr=False)
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"CellGraph(n_cells={self.n_cells}, n_edges={self.connectivities.nnz}, params={self.params})"

    @property
    def n_cells(self) -> int:
        return int(self.connectivities.shape[0])

    @property
    def degree(self) -> np.ndarray:
        """``(N,)`` number of neighbours (stored entries per row)."""
        return np.diff(self.connectivities.indptr)

    def edges(self) -> np.ndarray:
        """``(E, 2)`` ``int64`` row/column indices of the stored edges (both directions if symmetric)."""
        coo = self.connectivities.tocoo()
        return np.stack([coo.row, coo.col], 1).astype(np.int64)

    def to_networkx(self):
        """Undirected ``networkx.Graph`` with node attribute ``id``, ``x_um``, ``y_um`` and edge ``distance_um``.

        For small graphs (inspection, plotting); everything else stays sparse.
        """
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(
            (i, {"id": self.ids[i].item(), "x_um": float(x), "y_um": float(y)})
            for i, (x, y) in enumerate(self.coords)
        )
        d = self.distances.tocoo()
        g.add_weighted_edges_from(zip(d.row.tolist(), d.col.tolist(), d.data.tolist()), weight="distance_um")
        return g

    def to_pyg(self, features: Any = None):
        """``torch_geometric.data.Data`` with ``edge_index``, ``edge_attr`` (µm), ``pos`` (µm) and ``x``.

        Parameters
        ----------
        features : array-like or pandas.DataFrame, optional
            ``(N, F)`` node features in the graph's row order; a DataFrame's numeric columns
            are used and their names stored in ``data.feature_names``.
        """
        import torch
        from torch_geometric.data import Data

        coo = self.distances.tocoo()
        edge_index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
        data = Data(edge_index=edge_index, edge_attr=torch.from_numpy(coo.data.astype(np.float32))[:, None],
                    pos=torch.from_numpy(self.coords.astype(np.float32)), num_nodes=self.n_cells)
        if features is not None:
            names = None
            if isinstance(features, pd.DataFrame):
                features = features.select_dtypes("number")
                names = list(features.columns)
            x = np.asarray(features, dtype=np.float32)
            if x.ndim != 2 or x.shape[0] != self.n_cells:
                raise ValueError(f"features must have shape ({self.n_cells}, F), got {x.shape}")
            data.x = torch.from_numpy(x)
            if names is not None:
                data.feature_names = names
        return data

    def to_anndata(self, obs: pd.DataFrame | None = None):
        """``anndata.AnnData`` with squidpy's keys: ``obsm["spatial"]``, ``obsp["spatial_connectivities"]``,
        ``obsp["spatial_distances"]`` and ``uns["spatial_neighbors"]`` (the parameters).

        Raises
        ------
        ImportError
            If the ``anndata`` package is not installed (``pip install anndata``).
        """
        try:
            import anndata
        except ImportError as err:
            raise ImportError("CellGraph.to_anndata needs the 'anndata' package; install it with "
                              "`pip install anndata`") from err
        obs = pd.DataFrame(index=pd.Index(self.ids.astype(str), name="id")) if obs is None else obs
        adata = anndata.AnnData(obs=obs)
        adata.obsm["spatial"] = self.coords.copy()
        adata.obsp["spatial_connectivities"] = self.connectivities.copy()
        adata.obsp["spatial_distances"] = self.distances.copy()
        adata.uns["spatial_neighbors"] = {
            "connectivities_key": "spatial_connectivities", "distances_key": "spatial_distances",
            "params": {k: v for k, v in self.params.items()},
        }
        return adata


def _from_csr(pattern: sparse.csr_matrix, xy, ids, params) -> CellGraph:
    """A CellGraph from the sparsity pattern of ``pattern`` (duplicates summed, values ignored)."""
    pattern.sum_duplicates()  # C++: merges repeated (i, j) entries and sorts indices
    n = pattern.shape[0]
    rows = np.repeat(np.arange(n), np.diff(pattern.indptr))
    d = np.hypot(*(xy[rows] - xy[pattern.indices]).T) if rows.size else np.zeros(0)
    dist = sparse.csr_matrix((d, pattern.indices.copy(), pattern.indptr.copy()), shape=(n, n))
    conn = sparse.csr_matrix((np.ones(d.size, np.float32), pattern.indices.copy(), pattern.indptr.copy()),
                             shape=(n, n))
    return CellGraph(conn, dist, np.asarray(ids), xy, params)


def _from_edges(rows, cols, xy, ids, n, params, *, symmetric: bool) -> CellGraph:
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    if symmetric:
        rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
    pattern = sparse.csr_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n))
    return _from_csr(pattern, xy, ids, params)


def build_graph_knn(cells: Any, k: int = 6, *, symmetric: bool = False) -> CellGraph:
    """k-nearest-neighbour graph of cells (scipy ``cKDTree``).

    Parameters
    ----------
    cells : pandas.DataFrame or numpy.ndarray
        Cell table with ``x_um, y_um`` (and ``id``), or ``(N, 2)`` coordinates in µm.
    k : int
        Neighbours per cell (fewer if there are only ``N - 1 < k`` other cells).
    symmetric : bool
        If True, add each edge in both directions (degree >= k); if False, row ``i``
        holds exactly the ``k`` nearest cells of ``i``.

    Returns
    -------
    CellGraph

    Examples
    --------
    >>> g = build_graph_knn(np.random.default_rng(0).uniform(0, 100, (50, 2)), k=3)
    >>> set(g.degree.tolist())
    {3}
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    xy, ids = cell_coordinates(cells)
    n = len(xy)
    kk = min(int(k), max(n - 1, 0))
    params = {"method": "knn", "k": int(k), "symmetric": bool(symmetric)}
    if kk == 0:
        return _from_edges([], [], xy, ids, n, params, symmetric=False)
    order = spatial_order(xy)
    xs = xy[order]
    _, nb_s = cKDTree(xs).query(xs, k=kk + 1, workers=-1)
    nb = np.empty((n, kk + 1), np.int64)
    nb[order] = order[nb_s.reshape(n, kk + 1)]  # back to the caller's order
    # Drop self: normally column 0; with duplicate points self may sit elsewhere (or be pushed
    # out by k + 1 duplicates, then the last column goes).
    is_self = nb == np.arange(n)[:, None]
    if is_self[:, 0].all():
        cols = nb[:, 1:]
    else:
        drop = np.where(is_self.any(1), is_self.argmax(1), kk)
        keep = np.ones_like(nb, bool)
        keep[np.arange(n), drop] = False
        cols = nb[keep].reshape(n, kk)
    pattern = sparse.csr_matrix((np.ones(n * kk, np.int8), cols.ravel(), np.arange(0, n * kk + 1, kk)), shape=(n, n))
    if symmetric:
        pattern = (pattern + pattern.T).tocsr()
    return _from_csr(pattern, xy, ids, params)


def build_graph_radius(cells: Any, radius_um: float) -> CellGraph:
    """Graph joining every pair of cells closer than ``radius_um`` (inclusive), symmetric.

    Examples
    --------
    >>> build_graph_radius(np.array([[0.0, 0.0], [3.0, 4.0], [20.0, 0.0]]), 5.0).degree.tolist()
    [1, 1, 0]
    """
    if not np.isfinite(radius_um) or radius_um <= 0:
        raise ValueError(f"radius_um must be a positive number of µm, got {radius_um!r}")
    xy, ids = cell_coordinates(cells)
    pairs = cKDTree(xy).query_pairs(float(radius_um), output_type="ndarray") if len(xy) else np.zeros((0, 2), int)
    return _from_edges(pairs[:, 0], pairs[:, 1], xy, ids, len(xy),
                       {"method": "radius", "radius_um": float(radius_um)}, symmetric=True)


def spatial_order(xy: np.ndarray) -> np.ndarray:
    """A permutation that puts nearby points next to each other (serpentine scan of a grid).

    Querying a k-d tree or triangulating in this order is 2-3x faster for large N (memory
    locality); results are mapped back to the caller's order.
    """
    n = len(xy)
    if n < 2:
        return np.arange(n)
    lo, hi = xy.min(0), xy.max(0)
    side = max(float(np.sqrt(max((hi - lo).prod(), 1e-12) * 16.0 / n)), 1e-9)  # ~16 points per cell
    cells = np.floor((xy - lo) / side).astype(np.int64)
    ny = int(cells[:, 1].max()) + 1
    col = np.where(cells[:, 0] % 2 == 0, cells[:, 1], ny - 1 - cells[:, 1])
    return np.argsort(cells[:, 0] * ny + col, kind="stable")


def delaunay_edges(xy: np.ndarray) -> tuple[np.ndarray, Delaunay | None, np.ndarray]:
    """Delaunay edges ``(E, 2)`` (unique, i < j, indices into ``xy``), the triangulation, and its point order.

    The triangulation is built on ``xy[order]`` (see :func:`spatial_order`): its simplices
    index ``xy[order]``.
    """
    n = len(xy)
    order = np.arange(n)
    if n < 3:
        e = np.array([[0, 1]]) if n == 2 else np.zeros((0, 2), np.int64)
        return e.astype(np.int64), None, order
    order = spatial_order(xy)
    tri = Delaunay(xy[order])
    indptr, indices = tri.vertex_neighbor_vertices  # CSR adjacency straight from Qhull
    rows = order[np.repeat(np.arange(n), np.diff(indptr))]
    cols = order[indices]
    keep = rows < cols
    return np.stack([rows[keep], cols[keep]], 1).astype(np.int64), tri, order


def build_graph_delaunay(cells: Any, max_edge_um: float | None = None) -> CellGraph:
    """Delaunay triangulation graph of cells, symmetric; optionally drop edges longer than ``max_edge_um``.

    Examples
    --------
    >>> g = build_graph_delaunay(np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]]))
    >>> int(g.connectivities.nnz // 2)  # 4 sides + 1 diagonal
    5
    """
    if max_edge_um is not None and (not np.isfinite(max_edge_um) or max_edge_um <= 0):
        raise ValueError(f"max_edge_um must be a positive number of µm or None, got {max_edge_um!r}")
    xy, ids = cell_coordinates(cells)
    e, _, _ = delaunay_edges(xy)
    if max_edge_um is not None and len(e):
        e = e[np.hypot(*(xy[e[:, 0]] - xy[e[:, 1]]).T) <= max_edge_um]
    return _from_edges(e[:, 0], e[:, 1], xy, ids, len(xy),
                       {"method": "delaunay", "max_edge_um": max_edge_um}, symmetric=True)
