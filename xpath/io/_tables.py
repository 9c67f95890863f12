"""Atomic file writes and tidy tables on disk: Parquet (pyarrow) and AnnData for squidpy users."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["atomic_path", "read_parquet", "to_anndata", "write_parquet"]


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


# read once, at import: os.umask is process-wide, so reading it while other threads create files is unsafe
_FILE_MODE = 0o666 & ~_process_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic: a
    reader sees either the old file or the complete new one, never a partial file. On an
    exception the temporary file is removed and ``path`` is untouched. The file gets the
    permissions a plain ``open(path, "w")`` would give (``mkstemp`` makes it owner-only).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".part")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _check_table(table, name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    return table


def write_parquet(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metadata: dict[str, str] | None = None,
    compression: str = "zstd",
) -> Path:
    """Write a table to Parquet atomically (pyarrow).

    Parameters
    ----------
    table : pandas.DataFrame
        Any tidy table (cell table, feature rows); categorical columns stay categorical.
    path : str or os.PathLike
        Destination ``.parquet`` file; written to a temporary file beside it, then renamed.
    metadata : dict of str to str, optional
        Key–value pairs stored in the file's schema metadata (e.g. ``{"mpp": "0.5"}``);
        read back with :func:`read_parquet` ``(..., with_metadata=True)``.
    compression : str
        Parquet codec ("zstd", "snappy", "gzip", "none").

    Returns
    -------
    pathlib.Path
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _check_table(table)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    arrow = pa.Table.from_pandas(table, preserve_index=not isinstance(table.index, pd.RangeIndex))
    if metadata:
        merged = dict(arrow.schema.metadata or {})
        merged.update({f"xpath.{k}".encode(): str(v).encode() for k, v in metadata.items()})
        arrow = arrow.replace_schema_metadata(merged)
    path = Path(path)
    with atomic_path(path, suffix=".parquet.part") as tmp:
        pq.write_table(arrow, tmp, compression=None if compression == "none" else compression)
    return path


def read_parquet(path: str | os.PathLike, *, with_metadata: bool = False):
    """Read a Parquet table written by :func:`write_parquet`.

    Returns the DataFrame, or ``(DataFrame, metadata dict)`` with ``with_metadata=True``.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {path}")
    arrow = pq.read_table(path)
    frame = arrow.to_pandas()
    if not with_metadata:
        return frame
    meta = {
        k.decode()[len("xpath."):]: v.decode()
        for k, v in (arrow.schema.metadata or {}).items()
        if k.decode().startswith("xpath.")
    }
    return frame, meta


def to_anndata(
    cells: pd.DataFrame,
    *,
    features: list[str] | None = None,
    graph=None,
    spatial: tuple[str, str] = ("x_um", "y_um"),
):
    """Convert a cell table (and optionally a cell graph) to an ``anndata.AnnData`` for squidpy.

    Parameters
    ----------
    cells : pandas.DataFrame
        One row per object; must hold the ``spatial`` columns.
    features : list of str, optional
        Numeric columns that become ``X`` (default: every numeric column whose name holds
        a dot, i.e. the ``{compartment}.{family}.{feature}`` columns).
    graph : object, optional
        A cell graph with ``connectivities`` and ``distances`` (scipy sparse, ``n × n``),
        stored as ``obsp["spatial_connectivities"]`` / ``obsp["spatial_distances"]``.
    spatial : (str, str)
        Coordinate columns stored as ``obsm["spatial"]`` (squidpy's key).

    Raises
    ------
    ImportError
        anndata is not installed (``pip install anndata``); it is optional.
    """
    try:
        import anndata
    except ImportError as err:
        raise ImportError("to_anndata needs the optional package anndata: pip install anndata") from err
    cells = _check_table(cells, "cells")
    missing = [c for c in spatial if c not in cells.columns]
    if missing:
        raise ValueError(f"cells must have the spatial columns {list(spatial)}; missing {missing}")
    if features is None:
        features = [c for c in cells.columns if "." in c and pd.api.types.is_numeric_dtype(cells[c])]
    X = cells[features].to_numpy(np.float32) if features else np.zeros((len(cells), 0), np.float32)
    obs = cells.drop(columns=features).copy()
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(features, dtype=str)))
    adata.obsm["spatial"] = cells[list(spatial)].to_numpy(np.float64)
    if graph is not None:
        n = len(cells)
        for key, attr in (("spatial_connectivities", "connectivities"), ("spatial_distances", "distances")):
            mat = getattr(graph, attr)
            if mat.shape != (n, n):
                raise ValueError(f"graph.{attr} has shape {mat.shape}, expected ({n}, {n}) for {n} cells")
            adata.obsp[key] = mat.tocsr()
    return adata
