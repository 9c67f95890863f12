"""Per-image spatial statistics: neighbourhood enrichment, co-occurrence, Ripley's K/L,
Morisita–Horn, tumour-infiltrating lymphocytes, proximity, Delaunay/Voronoi/MST statistics,
and region areas."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from .._types import check_mpp
from ._graph import CellGraph, cell_coordinates, delaunay_edges
from ._spatial import class_codes

__all__ = [
    "co_occurrence",
    "graph_statistics",
    "immune_proximity",
    "morisita_horn",
    "neighbourhood_enrichment",
    "region_table",
    "ripley",
    "til_density",
]


@numba.njit(cache=True)
def _edge_class_counts(codes, indptr, indices, c):
    """``(C * C,)`` number of edges from class a to class b over a CSR graph (codes < 0 skipped)."""
    out = np.zeros(c * c, np.float64)
    for i in range(indptr.size - 1):
        a = codes[i]
        if a < 0:
            continue
        for e in range(indptr[i], indptr[i + 1]):
            b = codes[indices[e]]
            if b >= 0:
                out[a * c + b] += 1.0
    return out


def neighbourhood_enrichment(graph: CellGraph, classes: Any, *, n_perms: int = 1000, seed: int = 0,
                             progress: bool = False) -> dict[str, pd.DataFrame]:
    """Neighbourhood enrichment z-scores between classes (permutation test, as squidpy's ``nhood_enrichment``).

    The observed number of graph edges from class ``a`` to class ``b`` is compared with
    its distribution when class labels are permuted over the cells (``n_perms`` seeded
    permutations). The observed counts are the sparse product ``Sᵀ A S`` (one-hot ``S``);
    each permutation's counts are the same product computed by one numba pass over the edges.

    Parameters
    ----------
    graph : CellGraph
    classes : array-like or pandas.DataFrame
        ``(N,)`` class per cell, or the cell table (its ``class`` column).
    n_perms : int
    seed : int
    progress : bool
        Show a tqdm progress bar over the permutations.

    Returns
    -------
    dict
        ``"zscore"``, ``"count"`` (observed), ``"expected"`` (permutation mean): C x C
        DataFrames indexed by class name (rows = source class ``a``, columns = ``b``).
    """
    if isinstance(classes, pd.DataFrame):
        codes, names = class_codes(classes, n=graph.n_cells)
    else:
        codes, names = class_codes(None, classes, n=graph.n_cells)
    if n_perms < 2:
        raise ValueError(f"n_perms must be >= 2, got {n_perms}")
    c = len(names)
    a = graph.connectivities
    # Observed counts: the sparse product S^T A S with one-hot class indicators S (N x C).
    lab = codes >= 0
    onehot = sparse.csr_matrix((np.ones(int(lab.sum())), (np.flatnonzero(lab), codes[lab])), shape=(len(codes), c))
    obs = np.asarray((onehot.T @ a @ onehot).todense(), np.float64)
    # Permuted counts: the same product for shuffled labels, as one pass over the edge list per
    # permutation in a numba kernel (equal to the sparse product, ~10x faster for a million cells).
    small = np.int8 if c < 127 else np.int32  # compact labels stay in cache during the edge pass
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(lab)
    counts = np.empty((n_perms, c * c))
    perm = codes.astype(small)
    pool = perm[labelled].copy()
    for i in tqdm(range(n_perms), disable=not progress, desc="permutations"):  # not a loop over cells
        perm[labelled] = rng.permutation(pool)
        counts[i] = _edge_class_counts(perm, a.indptr, a.indices, c)
    mean = counts.mean(0)
    std = counts.std(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (obs.ravel() - mean) / std
    frame = lambda a: pd.DataFrame(a.reshape(c, c), index=pd.Index(names, name="class"), columns=names)
    return {"zscore": frame(z), "count": frame(obs.ravel()), "expected": frame(mean)}


def co_occurrence(cells: pd.DataFrame, radii_um: Sequence[float], *, classes: Any = None) -> pd.DataFrame:
    """Co-occurrence ratio ``P(b within r of a) / P(b)`` for every class pair and radius.

    ``P(b within r of a)`` is the fraction of class-``b`` cells among all other cells
    within ``r`` µm of class-``a`` cells (pairs counted once per ordered pair); ``P(b)``
    is the overall fraction of ``b``. 1 = no association, > 1 = co-located.

    Returns
    -------
    pandas.DataFrame
        Long table with columns ``a``, ``b``, ``radius_um``, ``ratio``.
    """
    xy, _ = cell_coordinates(cells)
    codes, names = class_codes(cells, classes, n=len(xy))
    radii = np.sort(np.asarray(radii_um, np.float64))
    if radii.size == 0 or (radii <= 0).any():
        raise ValueError(f"radii_um must be positive µm values, got {radii_um!r}")
    c = len(names)
    pairs = cKDTree(xy).query_pairs(float(radii[-1]), output_type="ndarray")
    d = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
    ok = (codes[pairs[:, 0]] >= 0) & (codes[pairs[:, 1]] >= 0)
    pairs, d = pairs[ok], d[ok]
    shell = np.searchsorted(radii, d, side="left")  # first radius >= d
    a, b = codes[pairs[:, 0]], codes[pairs[:, 1]]
    cnt = np.zeros((radii.size, c, c))
    for s_a, s_b in ((a, b), (b, a)):  # both orders of each unordered pair
        cnt += np.bincount(shell * c * c + s_a * c + s_b, minlength=radii.size * c * c).reshape(radii.size, c, c)
    cnt = np.cumsum(cnt, 0)
    p_b = np.bincount(codes[codes >= 0], minlength=c) / max((codes >= 0).sum(), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = cnt / cnt.sum(2, keepdims=True)
        ratio = cond / p_b[None, None, :]
    ri, ai, bi = np.meshgrid(np.arange(radii.size), np.arange(c), np.arange(c), indexing="ij")
    return pd.DataFrame({"a": np.array(names)[ai.ravel()], "b": np.array(names)[bi.ravel()],
                         "radius_um": radii[ri.ravel()], "ratio": ratio.ravel()})


def _window(xy: np.ndarray, window_um) -> tuple[float, float, float, float]:
    if window_um is None:
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        return float(x0), float(y0), float(x1), float(y1)
    w = tuple(float(v) for v in window_um)
    if len(w) == 2:
        w = (0.0, 0.0, *w)
    if len(w) != 4 or w[2] <= w[0] or w[3] <= w[1]:
        raise ValueError(f"window_um must be (width, height) or (x0, y0, x1, y1) in µm, got {window_um!r}")
    return w


def ripley(cells: Any, radii_um: Sequence[float], *, classes: Any = None, window_um=None) -> pd.DataFrame:
    """Ripley's K and L per class with the translation edge correction (rectangular window).

    ``K(r) = |W| / (n (n − 1)) Σ_{i≠j} 1(d_ij ≤ r) · |W| / |W ∩ (W + x_j − x_i)|`` with
    ``|W ∩ (W + h)| = (width − |h_x|)(height − |h_y|)``; ``L(r) = sqrt(K / π) − r`` (µm),
    0 under complete spatial randomness, > 0 for clustering.

    Parameters
    ----------
    cells : pandas.DataFrame or numpy.ndarray
        Cell table or ``(N, 2)`` µm coordinates.
    radii_um : sequence of float
    classes : array-like, optional
        Class per cell; ``None`` with a table uses its ``class`` column if any, else all cells
        as one class ``"all"``.
    window_um : (width, height) or (x0, y0, x1, y1), optional
        Observation window in µm (default: bounding box of the cells).

    Returns
    -------
    pandas.DataFrame
        Columns ``class``, ``radius_um``, ``K_um2``, ``L_um``, ``n``.
    """
    xy, _ = cell_coordinates(cells)
    radii = np.asarray(radii_um, np.float64)
    if radii.size == 0 or (radii <= 0).any():
        raise ValueError(f"radii_um must be positive µm values, got {radii_um!r}")
    if classes is None and not (isinstance(cells, pd.DataFrame) and "class" in cells.columns):
        codes, names = np.zeros(len(xy), np.int64), ["all"]
    else:
        codes, names = class_codes(cells, classes, n=len(xy))
    x0, y0, x1, y1 = _window(xy, window_um)
    width, height = x1 - x0, y1 - y0
    area = width * height
    rows = []
    for k, name in enumerate(names):  # loop over classes
        p = xy[codes == k]
        n = len(p)
        if n < 2:
            k_r = np.full(radii.size, np.nan)
        else:
            pairs = cKDTree(p).query_pairs(float(radii.max()), output_type="ndarray")
            h = np.abs(p[pairs[:, 0]] - p[pairs[:, 1]])
            d = np.hypot(h[:, 0], h[:, 1])
            w = area / np.clip((width - h[:, 0]) * (height - h[:, 1]), 1e-12, None)
            srt = np.argsort(d)
            cum = np.concatenate([[0.0], np.cumsum(w[srt])])
            upto = np.searchsorted(d[srt], radii, side="right")
            k_r = area / (n * (n - 1)) * 2 * cum[upto]  # each unordered pair counts for i->j and j->i
        for r, kv in zip(radii, k_r):
            rows.append((name, r, kv, math.sqrt(kv / math.pi) - r if np.isfinite(kv) else np.nan, n))
    return pd.DataFrame(rows, columns=["class", "radius_um", "K_um2", "L_um", "n"])


def morisita_horn(cells: pd.DataFrame, *, quadrat_um: float = 100.0, classes: Any = None) -> pd.DataFrame:
    """Morisita–Horn overlap index between the quadrat counts of every pair of classes.

    ``MH = 2 Σ x_i y_i / ((Σ x_i² / X² + Σ y_i² / Y²) X Y)`` over square quadrats of side
    ``quadrat_um``: 0 = never in the same quadrats, 1 = identical distributions.
    """
    xy, _ = cell_coordinates(cells)
    codes, names = class_codes(cells, classes, n=len(xy))
    if not np.isfinite(quadrat_um) or quadrat_um <= 0:
        raise ValueError(f"quadrat_um must be positive, got {quadrat_um!r}")
    cell = np.floor((xy - xy.min(0)) / quadrat_um).astype(np.int64)
    q = cell[:, 0] * (cell[:, 1].max() + 1) + cell[:, 1]
    _, q = np.unique(q, return_inverse=True)
    ok = codes >= 0
    counts = sparse.csr_matrix((np.ones(ok.sum()), (q[ok], codes[ok])), shape=(q.max() + 1, len(names))).toarray()
    tot = counts.sum(0)
    cross = counts.T @ counts
    dom = np.diag(cross) / np.where(tot > 0, tot**2, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mh = 2 * cross / ((dom[:, None] + dom[None, :]) * np.outer(tot, tot))
    return pd.DataFrame(mh, index=pd.Index(names, name="class"), columns=names)


def _cell_pixels(cells: pd.DataFrame, shape, mpp) -> tuple[np.ndarray, np.ndarray]:
    if {"x_px", "y_px"} <= set(cells.columns):
        r, c = cells["y_px"].to_numpy(), cells["x_px"].to_numpy()
    else:
        r, c = cells["y_um"].to_numpy() / mpp, cells["x_um"].to_numpy() / mpp
    return (np.clip(np.rint(r).astype(np.int64), 0, shape[0] - 1),
            np.clip(np.rint(c).astype(np.int64), 0, shape[1] - 1))


def til_density(cells: pd.DataFrame, regions: np.ndarray, *, mpp: float, immune_class: str = "lymphocyte",
                tumour_region: int = 1, stroma_region: int = 2) -> dict[str, float]:
    """Tumour-infiltrating lymphocyte density per mm²: intratumoural and stromal.

    Returns
    -------
    dict
        ``intratumoral_per_mm2`` (immune cells in the tumour region / its area) and
        ``stromal_per_mm2`` (in the stroma region / its area); NaN where the region is absent.
    """
    mpp = check_mpp(mpp)
    r, c = _cell_pixels(cells, regions.shape, mpp)
    where = regions[r, c]
    immune = (cells["class"].astype(str) == immune_class).to_numpy()
    px_mm2 = (mpp / 1000.0) ** 2
    out = {}
    for key, reg in (("intratumoral_per_mm2", tumour_region), ("stromal_per_mm2", stroma_region)):
        area = (regions == reg).sum() * px_mm2
        out[key] = float((immune & (where == reg)).sum() / area) if area > 0 else float("nan")
    return out


def immune_proximity(cells: pd.DataFrame, *, distance_um: float = 20.0, immune_class: str = "lymphocyte",
                     tumour_class: str = "tumour") -> float:
    """Fraction of immune cells with a tumour cell within ``distance_um`` (NaN without immune cells)."""
    xy, _ = cell_coordinates(cells)
    cls = cells["class"].astype(str).to_numpy()
    imm, tum = xy[cls == immune_class], xy[cls == tumour_class]
    if len(imm) == 0:
        return float("nan")
    if len(tum) == 0:
        return 0.0
    d, _ = cKDTree(tum).query(imm, k=1)
    return float((d <= distance_um).mean())


def _dist_stats(prefix: str, v: np.ndarray) -> dict[str, float]:
    if v.size == 0:
        return {f"{prefix}_{k}": float("nan") for k in ("mean", "std", "minmax_ratio", "disorder")}
    m, s = float(v.mean()), float(v.std())
    return {f"{prefix}_mean": m, f"{prefix}_std": s,
            f"{prefix}_minmax_ratio": float(v.min() / v.max()) if v.max() > 0 else float("nan"),
            f"{prefix}_disorder": 1 - 1 / (1 + s / m) if m > 0 else float("nan")}


def graph_statistics(cells: Any) -> dict[str, float]:
    """Delaunay edge length, Delaunay triangle area, Voronoi cell area and MST edge length statistics.

    For each: mean, standard deviation, min/max ratio and disorder ``1 − 1/(1 + std/mean)``
    (Doyle et al. 2012). Voronoi areas are computed exactly from the triangulation (each
    triangle gives each of its vertices the part of it closest to that vertex); cells on
    the convex hull (unbounded) and cells with a vertex outside the hull (cut by the
    image edge) are left out.
    """
    xy, _ = cell_coordinates(cells)
    e, tri, order = delaunay_edges(xy)
    out = {}
    lengths = np.hypot(*(xy[e[:, 0]] - xy[e[:, 1]]).T) if len(e) else np.zeros(0)
    out.update(_dist_stats("delaunay_edge_um", lengths))
    if tri is None:
        out.update(_dist_stats("delaunay_triangle_area_um2", np.zeros(0)))
        out.update(_dist_stats("voronoi_area_um2", np.zeros(0)))
    else:
        xs = xy[order]  # the triangulation's point order
        s = tri.simplices
        p0, p1, p2 = xs[s[:, 0]], xs[s[:, 1]], xs[s[:, 2]]
        cross = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
        out.update(_dist_stats("delaunay_triangle_area_um2", 0.5 * np.abs(cross)))
        out.update(_dist_stats("voronoi_area_um2", _voronoi_areas(xs, tri)))
    n = len(xy)
    if len(e):
        g = sparse.csr_matrix((lengths + 1e-12, (e[:, 0], e[:, 1])), shape=(n, n))
        mst = minimum_spanning_tree(g)
        out.update(_dist_stats("mst_edge_um", mst.data - 1e-12))
    else:
        out.update(_dist_stats("mst_edge_um", np.zeros(0)))
    return out


def _voronoi_areas(xy: np.ndarray, tri) -> np.ndarray:
    """Areas of the bounded Voronoi cells (points not on the convex hull), via circumcentres."""
    s = tri.simplices
    a, b, c = xy[s[:, 0]], xy[s[:, 1]], xy[s[:, 2]]
    d = 2 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1]))
    sa, sb, sc = (a**2).sum(1), (b**2).sum(1), (c**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ux = (sa * (b[:, 1] - c[:, 1]) + sb * (c[:, 1] - a[:, 1]) + sc * (a[:, 1] - b[:, 1])) / d
        uy = (sa * (c[:, 0] - b[:, 0]) + sb * (a[:, 0] - c[:, 0]) + sc * (b[:, 0] - a[:, 0])) / d
    cc = np.stack([ux, uy], 1)
    orient = np.sign((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    area = np.zeros(len(xy))
    pts = (a, b, c)

    def cross(u, v):
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    for k in range(3):
        # Signed quadrilateral (p, mid(p, q), circumcentre, mid(p, r)): the part of the triangle
        # nearer to p than to q and r (negative parts of obtuse triangles cancel across neighbours).
        p, q, r = pts[k], pts[(k + 1) % 3], pts[(k + 2) % 3]
        quad = 0.5 * (cross((p + q) / 2 - p, cc - p) + cross(cc - p, (p + r) / 2 - p))
        area += np.bincount(s[:, k], orient * quad, len(xy))
    # Bounded cells whose every vertex (circumcentre) lies inside the convex hull of the points;
    # the others are unbounded or cut by the image edge, where the cell shape is an artefact.
    outside = ~_inside_hull(xy, tri, cc)
    keep = np.ones(len(xy), bool)
    keep[np.unique(tri.convex_hull)] = False
    keep[np.unique(s[outside])] = False
    return area[keep]


def _inside_hull(xy: np.ndarray, tri, points: np.ndarray) -> np.ndarray:
    """Whether each of ``points`` (M, 2) lies in the convex hull of ``xy`` (NaN/inf: outside).

    Tests the hull's half-planes (O(M × hull edges)); ``tri.find_simplex`` gives the same
    answer but falls back to a brute-force search for every point outside the hull, which
    made it quadratic here (most unbounded cells' circumcentres lie outside).
    """
    finite = np.isfinite(points).all(1)
    inside = np.zeros(len(points), bool)
    hull = tri.convex_hull  # (F, 2) point indices of the hull edges
    centre = tri.points.mean(0)
    pts = tri.points
    a, b = pts[hull[:, 0]], pts[hull[:, 1]]
    normal = np.stack([b[:, 1] - a[:, 1], a[:, 0] - b[:, 0]], 1)  # (F, 2), orientation fixed below
    offset = (normal * a).sum(1)
    flip = (normal @ centre - offset) > 0  # make the centre lie on the negative side of every edge
    normal[flip], offset[flip] = -normal[flip], -offset[flip]
    tol = 1e-9 * max(float(np.abs(xy).max()), 1.0) * np.hypot(*normal.T)
    p = points[finite]
    inside[finite] = ((p @ normal.T - offset) <= tol).all(1)
    return inside


def region_table(regions: np.ndarray, *, mpp: float, region_names: Mapping | None = None,
                 cells: pd.DataFrame | None = None, tumour: Any = "tumour", stroma: Any = "stroma") -> dict:
    """Region-level measures: area (µm²) and fraction per tissue class, tumour–stroma ratio, densities.

    Returns
    -------
    dict
        ``region.area_um2.{region}``, ``region.fraction.{region}``, ``region.tumour_stroma_ratio``
        (tumour area / stroma area) and, with ``cells``, ``region.density_per_mm2.{class}.{region}``.
    """
    mpp = check_mpp(mpp)
    regions = np.asarray(regions)
    if regions.ndim != 2 or not np.issubdtype(regions.dtype, np.integer):
        raise ValueError(f"regions must be an (H, W) integer map, got shape {regions.shape} dtype {regions.dtype}")
    values, counts = np.unique(regions, return_counts=True)
    names = [str(region_names.get(int(v), int(v))) if region_names else str(int(v)) for v in values]
    px_um2 = mpp * mpp
    out: dict[str, float] = {}
    for name, cnt in zip(names, counts):
        out[f"region.area_um2.{name}"] = float(cnt * px_um2)
        out[f"region.fraction.{name}"] = float(cnt / regions.size)
    t = out.get(f"region.area_um2.{tumour}", 0.0)
    s = out.get(f"region.area_um2.{stroma}", 0.0)
    out["region.tumour_stroma_ratio"] = t / s if s > 0 else float("nan")
    if cells is not None and len(cells):
        r, c = _cell_pixels(cells, regions.shape, mpp)
        where = np.searchsorted(values, regions[r, c])
        codes, cnames = class_codes(cells)
        k = len(cnames)
        cnt = np.bincount(np.where(codes >= 0, codes * len(values) + where, -1)[codes >= 0],
                          minlength=k * len(values)).reshape(k, len(values))
        for ci, cname in enumerate(cnames):
            for ri, rname in enumerate(names):
                out[f"region.density_per_mm2.{cname}.{rname}"] = float(cnt[ci, ri] / (counts[ri] * px_um2 / 1e6))
    return out
