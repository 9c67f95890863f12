"""Cell graph + per-cell spatial statistics on 1,000,000 synthetic clustered cells of several classes.

Prints the wall time of each step and in total, and the peak resident memory of the
process (goal: graph + per-cell statistics <= 60 s and <= 4 GB on a 2-core laptop). With
``--squidpy-python PATH`` (the python of a separate environment that has squidpy; it is
not an xpath dependency), the same cells are written to a temporary file and
``squidpy.gr.spatial_neighbors`` (Delaunay) + ``squidpy.gr.nhood_enrichment`` run in that
interpreter, in the same benchmark run, and the ratio is printed.

    .venv/bin/python benchmarks/biomarkers_graph.py [--cells 1000000] [--perms 100] [--squidpy-python PY]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xpath.biomarkers import (
    build_graph_delaunay,
    build_graph_knn,
    cell_spatial_stats,
    neighbourhood_enrichment,
)

CLASSES = ("tumour", "lymphocyte", "stromal", "plasma", "other")


def clustered_cells(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` cells at ~2,500 cells/mm²: tumour in nests, lymphocytes in aggregates, the rest scattered."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(n / 2500.0) * 1000.0  # µm
    share = np.array([0.45, 0.25, 0.15, 0.05, 0.10])
    counts = rng.multinomial(n, share)
    parts, labels = [], []
    for k, cnt in enumerate(counts):
        if k in (0, 1):  # clustered: Thomas process (Gaussian clusters around Poisson parents)
            per = 200 if k == 0 else 60
            sd = 60.0 if k == 0 else 25.0
            parents = rng.uniform(0, side, (max(1, cnt // per), 2))
            xy = parents[rng.integers(0, len(parents), cnt)] + rng.normal(0, sd, (cnt, 2))
            xy = np.mod(xy, side)
        else:
            xy = rng.uniform(0, side, (cnt, 2))
        parts.append(xy)
        labels.append(np.full(cnt, k))
    xy = np.concatenate(parts)
    cls = np.concatenate(labels)
    order = rng.permutation(n)
    return pd.DataFrame({"id": np.arange(1, n + 1), "x_um": xy[order, 0], "y_um": xy[order, 1],
                         "class": pd.Categorical.from_codes(cls[order], CLASSES)})


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB (Linux)


_SQUIDPY = r"""
import json, resource, sys, time
import anndata, numpy as np, pandas as pd, squidpy as sq
cells = pd.read_parquet(sys.argv[1]); n_perms = int(sys.argv[2])
ad = anndata.AnnData(obs=pd.DataFrame(index=cells["id"].astype(str).to_numpy()))
ad.obs["class"] = pd.Categorical(cells["class"].astype(str).to_numpy())
ad.obsm["spatial"] = cells[["x_um", "y_um"]].to_numpy()
warm = ad[:2000].copy()  # compile squidpy's numba kernels outside the timing
sq.gr.spatial_neighbors(warm, coord_type="generic", delaunay=True)
sq.gr.nhood_enrichment(warm, cluster_key="class", n_perms=10, seed=0, n_jobs=1, show_progress_bar=False)
t0 = time.perf_counter(); sq.gr.spatial_neighbors(ad, coord_type="generic", delaunay=True); t1 = time.perf_counter()
sq.gr.nhood_enrichment(ad, cluster_key="class", n_perms=n_perms, seed=0, n_jobs=1, show_progress_bar=False)
t2 = time.perf_counter()
print(json.dumps({"graph_s": t1 - t0, "enrichment_s": t2 - t1,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "z_tumour_tumour": float(pd.DataFrame(ad.uns["class_nhood_enrichment"]["zscore"],
                          index=ad.obs["class"].cat.categories, columns=ad.obs["class"].cat.categories
                          ).loc["tumour", "tumour"])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--perms", type=int, default=100, help="permutations of the enrichment test (both tools)")
    ap.add_argument("--squidpy-python", default=None, help="python of a separate environment with squidpy")
    args = ap.parse_args()

    t = time.perf_counter()
    cells = clustered_cells(args.cells)
    print(f"{len(cells):,} cells, classes {dict(cells['class'].value_counts())}; generated in "
          f"{time.perf_counter() - t:.1f} s (not counted)")
    build_graph_knn(cells.iloc[:1000], k=3)  # load numba caches outside the timing
    cell_spatial_stats(cells.iloc[:1000], build_graph_knn(cells.iloc[:1000], k=3))

    steps: dict[str, tuple[float, float]] = {}  # name -> (wall s, CPU s of this process)

    def timed(name, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        steps[name] = (time.perf_counter() - w, time.process_time() - c)
        return out

    gk = timed("kNN graph (k=6)", lambda: build_graph_knn(cells, k=6))
    timed("per-cell spatial statistics on the kNN graph", lambda: cell_spatial_stats(cells, gk, density_radius_um=50.0))
    g = timed("Delaunay graph", lambda: build_graph_delaunay(cells))
    stats = timed("per-cell spatial statistics on the Delaunay graph",
                  lambda: cell_spatial_stats(cells, g, density_radius_um=50.0))
    z = timed(f"neighbourhood enrichment ({args.perms} permutations, Delaunay)",
              lambda: neighbourhood_enrichment(g, cells, n_perms=args.perms, seed=0)["zscore"])
    names = list(steps)
    total_knn = [steps[names[0]][i] + steps[names[1]][i] for i in (0, 1)]
    total_del = [steps[names[2]][i] + steps[names[3]][i] for i in (0, 1)]
    t_enr = steps[names[4]][0]
    print(f"  {'step':55s} {'wall':>7s}   {'CPU':>7s}")
    for k, (w, c) in steps.items():
        print(f"  {k:55s} {w:7.1f} s {c:7.1f} s")
    print(f"graph + per-cell statistics ({stats.shape[1]} columns), goal <= 60 s wall: "
          f"kNN {total_knn[0]:.1f} s wall ({total_knn[1]:.1f} s CPU), "
          f"Delaunay {total_del[0]:.1f} s wall ({total_del[1]:.1f} s CPU; {g.connectivities.nnz // 2:,} edges)")
    print(f"peak RSS of this process: {peak_rss_gb():.2f} GiB (goal <= 4 GB)")
    with open("/proc/loadavg") as fh:
        print(f"machine load average during the run: {fh.read().split()[:3]} on {len(os.sched_getaffinity(0))} cores")
    print(f"enrichment z tumour-tumour {z.loc['tumour', 'tumour']:.1f}, lymphocyte-lymphocyte "
          f"{z.loc['lymphocyte', 'lymphocyte']:.1f}, stromal-stromal {z.loc['stromal', 'stromal']:.1f}")

    if args.squidpy_python:
        ours = steps["Delaunay graph"][0] + t_enr
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cells.parquet"
            cells.to_parquet(path)
            res = subprocess.run([args.squidpy_python, "-c", _SQUIDPY, str(path), str(args.perms)],
                                 capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print("squidpy run failed:", res.stderr[-2000:])
            return
        sq = json.loads(res.stdout.strip().splitlines()[-1])
        theirs = sq["graph_s"] + sq["enrichment_s"]
        print(f"squidpy spatial_neighbors(delaunay) {sq['graph_s']:.1f} s + nhood_enrichment {sq['enrichment_s']:.1f} s "
              f"= {theirs:.1f} s, peak RSS {sq['peak_gb']:.2f} GiB, z tumour-tumour {sq['z_tumour_tumour']:.1f}")
        print(f"xpath Delaunay graph + enrichment = {ours:.1f} s; ratio squidpy / xpath = {theirs / ours:.1f}x")
    else:
        print("squidpy comparison not run (pass --squidpy-python with a separate environment that has squidpy)")


if __name__ == "__main__":
    sys.exit(main())
