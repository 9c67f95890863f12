"""Per-object morphology on ~20,000 objects: xpath.biomarkers.cell_table vs skimage.measure.regionprops_table.

Both compute the same property list on the same label image, side by side in one process;
the script prints the median wall time of each over the repeats and the ratio, then (for
information) the time of the full table with stain and texture.

    .venv/bin/python benchmarks/biomarkers_morphology.py [--objects 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from skimage.measure import regionprops_table

from xpath.biomarkers import cell_table
from xpath.datasets import synthetic_tissue

SKIMAGE_PROPS = ("label", "area", "perimeter", "eccentricity", "orientation", "axis_major_length",
                 "axis_minor_length", "solidity", "extent", "equivalent_diameter_area", "feret_diameter_max",
                 "area_convex", "centroid", "moments_hu")


def make_labels(n_objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tile synthetic tissue (0.5 µm/px) until it holds ``n_objects`` nuclei; returns labels and RGB."""
    tile = synthetic_tissue(seed, size=1024, mpp=0.5, tumour_fraction=0.6)
    per = int(tile.instances.max())
    k = int(np.ceil(np.sqrt(n_objects / per)))
    lab = np.zeros((1024 * k, 1024 * k), np.int32)
    for i in range(k):
        for j in range(k):
            block = tile.instances
            lab[i * 1024 : (i + 1) * 1024, j * 1024 : (j + 1) * 1024] = np.where(block > 0, block + (i * k + j) * per, 0)
    lab[lab > n_objects] = 0
    rgb = np.tile(tile.image, (k, k, 1))
    return lab, rgb


def median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (this process) seconds of ``fn()`` over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lab, rgb = make_labels(args.objects)
    n = len(np.unique(lab)) - 1
    print(f"label image {lab.shape}, {n} objects, {int((lab > 0).sum())} object pixels")
    cell_table(lab[:512, :512], mpp=0.5, properties=("shape", "moments"))  # compile / load numba caches

    ours = median_time(lambda: cell_table(lab, mpp=1.0, properties=("shape", "moments")), args.repeats)
    ref = median_time(lambda: regionprops_table(lab, properties=SKIMAGE_PROPS), args.repeats)
    print(f"same properties ({len(SKIMAGE_PROPS) - 1} regionprops properties; ours computes a superset), "
          f"median of {args.repeats}:")
    print(f"  skimage.measure.regionprops_table  wall {ref[0]:8.2f} s   CPU {ref[1]:8.2f} s")
    print(f"  xpath.biomarkers.cell_table        wall {ours[0]:8.2f} s   CPU {ours[1]:8.2f} s")
    print(f"  ratio (regionprops / xpath)        wall {ref[0] / ours[0]:8.1f}x   CPU {ref[1] / ours[1]:8.1f}x  (goal >= 5x)")
    full = median_time(lambda: cell_table(lab, rgb, mpp=0.5), 1)
    print(f"full table (shape, Hu, Fourier, WDBC, H&E stain stats, GLCM texture): {full[0]:.2f} s wall, "
          f"{full[1]:.2f} s CPU ({n / full[0]:,.0f} objects/s)")
    with open("/proc/loadavg") as fh:
        print(f"machine load average: {fh.read().split()[:3]} on {len(os.sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
