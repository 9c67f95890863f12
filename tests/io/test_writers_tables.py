"""OME-TIFF label masks, Parquet tables, AnnData export, atomic writes."""

import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from xpath.io import (
    atomic_path,
    read_ome_tiff,
    read_parquet,
    to_anndata,
    write_ome_tiff,
    write_parquet,
)


def test_ome_tiff_round_trip_is_tiled_and_compressed(tmp_path, rng):
    lab = rng.integers(0, 70_000, (300, 517)).astype(np.int32)
    mask = rng.random((300, 517)) > 0.5
    out = write_ome_tiff(tmp_path / "m.ome.tif", {"nuclei": lab, "stroma": mask}, mpp=0.25, origin=(64, 32))
    arr, meta = read_ome_tiff(out)
    assert arr.shape == (2, 300, 517)
    assert np.array_equal(arr[0], lab) and np.array_equal(arr[1], mask.astype(np.int32))
    assert meta == {"channels": ["nuclei", "stroma"], "mpp": 0.25, "origin": (64.0, 32.0)}
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.tilewidth == 256
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.is_ome


def test_ome_tiff_from_memmap(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.int32, shape=(600, 400))
    mm[100:200, 50:90] = 7
    out = write_ome_tiff(tmp_path / "mm.ome.tif", mm)
    arr, meta = read_ome_tiff(out)
    assert arr.shape == (1, 600, 400) and (arr[0] == 7).sum() == 100 * 40 and meta["channels"] is None
    fast = write_ome_tiff(tmp_path / "fast.ome.tif", mm, level=1)  # the slide outputs' level: same pixels
    assert np.array_equal(read_ome_tiff(fast)[0], arr)


def test_ome_tiff_bad_input(tmp_path):
    with pytest.raises(TypeError, match="float"):
        write_ome_tiff(tmp_path / "x.ome.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="same shape"):
        write_ome_tiff(tmp_path / "x.ome.tif", {"a": np.zeros((4, 4), bool), "b": np.zeros((5, 4), bool)})
    with pytest.raises(ValueError, match="level must be an int"):
        write_ome_tiff(tmp_path / "x.ome.tif", np.zeros((4, 4), bool), compression="none", level=1)
    assert not list(tmp_path.iterdir())


def test_parquet_round_trip_with_metadata(tmp_path):
    table = pd.DataFrame({"id": np.arange(5, dtype=np.int32), "class": pd.Categorical(list("aabba")),
                          "nucleus.size.area_um2": np.linspace(10, 50, 5)})
    out = write_parquet(table, tmp_path / "cells.parquet", metadata={"mpp": 0.5, "slide": "s1"})
    back, meta = read_parquet(out, with_metadata=True)
    pd.testing.assert_frame_equal(back, table)
    assert meta == {"mpp": "0.5", "slide": "s1"}


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyError("fail")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_atomic_path_gives_the_permissions_of_a_plain_write(tmp_path):
    # mkstemp makes owner-only files; results on a shared server must stay readable by the group
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_to_anndata_without_anndata_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)
    with pytest.raises(ImportError, match="pip install anndata"):
        to_anndata(pd.DataFrame({"x_um": [0.0], "y_um": [1.0]}))


def test_to_anndata_keys_when_installed():
    anndata = pytest.importorskip("anndata", reason="anndata is optional")  # the error path is tested above
    import scipy.sparse as sp

    cells = pd.DataFrame({"x_um": [0.0, 1.0, 2.0], "y_um": [0.0, 0.0, 1.0], "class": ["a", "b", "a"],
                          "nucleus.size.area_um2": [1.0, 2.0, 3.0]})
    graph = type("G", (), {"connectivities": sp.eye(3, format="csr"), "distances": sp.eye(3, format="csr")})()
    adata = to_anndata(cells, graph=graph)
    assert isinstance(adata, anndata.AnnData)
    assert adata.obsm["spatial"].shape == (3, 2) and "spatial_connectivities" in adata.obsp
    assert list(adata.var_names) == ["nucleus.size.area_um2"]
