"""Ownership by centroid and the merge rule, on label maps whose answers are known.

(The block-wise watershed, ``InstanceStitcher``, is tested with the tiling in test_tiling.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from xpath.segmentation.inference.stitching import centroids, core_ids, merge_objects
from xpath.segmentation.inference.tiling import tile_cores, tile_starts


def _squares(shape=(90, 130), side=5, seed=0):
    """Non-overlapping ``side × side`` squares at random places; ids 1..N in raster order of their corner."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    n = 0
    for _ in range(400):
        y, x = rng.integers(0, shape[0] - side), rng.integers(0, shape[1] - side)
        if not lab[max(y - 1, 0): y + side + 1, max(x - 1, 0): x + side + 1].any():
            n += 1
            lab[y: y + side, x: x + side] = n
    return lab, n


def test_centroids_of_squares_are_their_centres():
    lab, n = _squares()
    ids, cy, cx = centroids(lab)
    assert ids.tolist() == list(range(1, n + 1))
    for i, y, x in zip(ids, cy, cx):
        rows, cols = np.nonzero(lab == i)
        assert (y, x) == (rows.min() + 2.0, cols.min() + 2.0)  # the middle pixel of a 5 × 5 square
    assert [a.size for a in centroids(np.zeros((3, 3), np.int32))] == [0, 0, 0]


def test_windows_whose_cores_partition_the_image_own_every_object_once():
    lab, n = _squares()
    tile, overlap = 40, 12
    ys, xs = tile_starts(lab.shape[0], tile, overlap), tile_starts(lab.shape[1], tile, overlap)
    (ay, by), (ax, bx) = tile_cores(ys, tile, lab.shape[0]), tile_cores(xs, tile, lab.shape[1])
    owned = []
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            window = lab[y: y + tile, x: x + tile]
            ids = core_ids(window, (ay[i], by[i]), (ax[j], bx[j]), origin=(y, x))
            assert (core_ids(window, (ay[i] - y, by[i] - y), (ax[j] - x, bx[j] - x)) == ids).all()
            for k in ids:  # an owned object is whole in its window: 5 px < half the overlap
                assert (window == k).sum() == 25
            owned += ids.tolist()
    assert sorted(owned) == list(range(1, n + 1))


def test_paste_objects_fills_free_pixels_and_drops_objects_seen_already():
    out = np.zeros((4, 10), np.int32)
    out[:, 0:4] = 1  # an object already there
    new = np.zeros_like(out)
    new[:, 0:3] = 4  # the same object seen again: no pixel free
    new[:, 3:6] = 7  # a third of it on the old object: 2/3 free
    new[:, 8:10] = 9  # all free
    pasted, n = merge_objects(out, new, first_id=2, min_free=0.7)
    assert n == 1 and (out[:, 8:10] == 2).all() and set(np.unique(out)) == {0, 1, 2}
    assert (pasted == np.where(out == 2, 2, 0)).all()
    # with min_free 0.5 the 2/3-free object is kept, on its free pixels only, and ids follow the old ids
    out2 = np.zeros((4, 10), np.int32)
    out2[:, 0:4] = 1
    _, n = merge_objects(out2, new, first_id=2, min_free=0.5)
    assert n == 2 and (out2[:, 3] == 1).all() and (out2[:, 4:6] == 2).all() and (out2[:, 8:10] == 3).all()
    # only the ids asked for
    out3 = np.zeros((4, 10), np.int32)
    _, n = merge_objects(out3, new, np.array([9]), first_id=1)
    assert n == 1 and set(np.unique(out3)) == {0, 1} and (out3[:, 8:10] == 1).all()
    with pytest.raises(ValueError, match="shape"):
        merge_objects(out3, new[:, :5], first_id=1)


def test_merge_objects_into_a_strided_memory_mapped_view_equals_the_rule(tmp_path):
    """The slide case: the target is a window (a strided view) of a memory-mapped map; the rule checked per object."""
    rng = np.random.default_rng(5)
    held = _squares((60, 80), side=6, seed=1)[0]
    new = np.roll(_squares((60, 80), side=6, seed=2)[0], 3, axis=1)
    full = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.int32, shape=(100, 120))
    full[20:80, 30:110] = held
    ids = rng.choice(np.unique(new)[1:], 30, replace=False)
    pasted, n = merge_objects(full[20:80, 30:110], new, ids, first_id=1000, min_free=0.5)
    free = held == 0
    kept = [i for i in np.sort(ids) if (free & (new == i)).sum() >= max(1, 0.5 * (new == i).sum())]
    assert n == len(kept) > 0
    for k, i in enumerate(kept):
        assert ((pasted == 1000 + k) == (free & (new == i))).all()
    window = np.asarray(full[20:80, 30:110])
    assert (window == np.where(pasted > 0, pasted, held)).all() and (full[:20] == 0).all()
