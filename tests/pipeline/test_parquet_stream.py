"""The slide's cell table stream: frames held and written in row groups of batch_rows, in order, atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from xpath.pipeline._slide import _ParquetStream


def _frame(k: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": "nuclei", "id": [2 * k + 1, 2 * k + 2], "area_um2": [10.0 + k, np.nan]})


def test_frames_are_written_in_order_in_row_groups_of_batch_rows(tmp_path):
    stream = _ParquetStream(tmp_path / "cells.parquet", batch_rows=3)
    for k in range(5):
        stream.append(_frame(k))
    stream.append(_frame(9).iloc[:0])  # an empty window adds nothing
    assert stream.close() and stream.rows == 10
    assert pq.ParquetFile(tmp_path / "cells.parquet").num_row_groups == 3  # 4 rows, 4 rows, the last 2 at close
    table = pd.read_parquet(tmp_path / "cells.parquet")
    assert table["id"].tolist() == list(range(1, 11))
    pd.testing.assert_frame_equal(table, pd.concat([_frame(k) for k in range(5)], ignore_index=True))


def test_an_error_or_no_rows_leaves_no_file(tmp_path):
    failed = _ParquetStream(tmp_path / "failed.parquet", batch_rows=3)
    failed.append(_frame(0))
    assert not failed.close(RuntimeError("interrupted"))
    empty = _ParquetStream(tmp_path / "empty.parquet")
    assert not empty.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
