"""Cohorts: resumable per-slide results, failures recorded, serial / joblib / Dask backends."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image as PILImage

from xpath.datasets import synthetic_tissue
from xpath.pipeline import analyze_cohort, image_summary, read_slide_table

ROOT = Path(__file__).resolve().parents[2]


def _write_slides(folder: Path, n: int, size: int = 128) -> list[Path]:
    """Synthetic tissue tiles as PNG and TIFF files, with tissue fractions that vary by slide."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        tile = synthetic_tissue(i, size=size, lumen=0.05 + 0.04 * (i % 5))
        if i % 2:
            path = folder / f"slide{i:02d}.tif"
            tifffile.imwrite(path, tile.image)
        else:
            path = folder / f"slide{i:02d}.png"
            PILImage.fromarray(tile.image).save(path)
        paths.append(path)
    return paths


def test_serial_cohort_joins_metadata_and_resumes(tmp_path):
    paths = _write_slides(tmp_path / "in", 4)
    slides = pd.DataFrame({"path": [str(p) for p in paths], "patient": ["p1", "p1", "p2", "p3"],
                           "outcome": [0, 0, 1, 1]})
    res = analyze_cohort(slides, out_dir=tmp_path / "out", func=image_summary, progress=False)
    assert sorted(res.done) == ["slide00", "slide01", "slide02", "slide03"] and not res.failed
    expected = pd.concat([image_summary(p) for p in paths], ignore_index=True)
    got = res.table.sort_values("slide_id").reset_index(drop=True)
    np.testing.assert_allclose(got["image.tissue.fraction"], expected["image.tissue.fraction"])
    assert got["patient"].tolist() == ["p1", "p1", "p2", "p3"]
    assert pd.read_parquet(tmp_path / "out" / "cohort.parquet").shape == res.table.shape
    again = analyze_cohort(slides, out_dir=tmp_path / "out", func=image_summary, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(res.done)


def test_failures_are_recorded_not_fatal_and_retried(tmp_path):
    paths = _write_slides(tmp_path / "in", 3)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not an image")
    res = analyze_cohort([*paths, broken], out_dir=tmp_path / "out", func=image_summary, progress=False)
    assert res.failed == ["broken"] and len(res.done) == 3
    row = res.failures.iloc[0]
    assert row["error"] == "ValueError" and "broken.png" in row["message"] and "Traceback" in row["traceback"]
    assert pd.read_parquet(tmp_path / "out" / "failures.parquet")["slide_id"].tolist() == ["broken"]
    # leave it failed on request, then fix the file and retry
    kept = analyze_cohort([*paths, broken], out_dir=tmp_path / "out", func=image_summary, progress=False,
                          retry_failed=False)
    assert kept.done == [] and kept.failed == ["broken"]
    PILImage.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(broken)
    fixed = analyze_cohort([*paths, broken], out_dir=tmp_path / "out", func=image_summary, progress=False)
    assert fixed.done == ["broken"] and fixed.failed == [] and len(fixed.table) == 4
    assert not (tmp_path / "out" / "failed" / "broken.json").exists()


def test_partial_result_is_redone_and_temporaries_removed(tmp_path):
    paths = _write_slides(tmp_path / "in", 3)
    out = tmp_path / "out"
    analyze_cohort(paths, out_dir=out, func=image_summary, progress=False)
    (out / "slides" / "slide01.parquet").write_bytes(b"PAR1 truncated")  # a torn write
    (out / "slides" / ".slide02.parquet.abc.parquet.part").write_bytes(b"half")  # a killed writer's temp file
    res = analyze_cohort(paths, out_dir=out, func=image_summary, progress=False)
    assert res.done == ["slide01"] and sorted(res.skipped) == ["slide00", "slide02"]
    assert not list(out.rglob("*.part"))
    assert len(res.table) == 3


def test_joblib_backend_matches_serial(tmp_path):
    paths = _write_slides(tmp_path / "in", 4)
    serial = analyze_cohort(paths, out_dir=tmp_path / "a", func=image_summary, progress=False)
    par = analyze_cohort(paths, out_dir=tmp_path / "b", func=image_summary, backend="joblib", n_workers=2,
                         progress=False)
    pd.testing.assert_frame_equal(serial.table.sort_values("slide_id").reset_index(drop=True),
                                  par.table.sort_values("slide_id").reset_index(drop=True))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        analyze_cohort(["a.png"], out_dir=tmp_path, backend="spark", func=image_summary)
    with pytest.raises(ValueError, match="scheduler"):
        analyze_cohort(["a.png"], out_dir=tmp_path, scheduler="tcp://x:1", func=image_summary)
    with pytest.raises(ValueError, match="prompts are required"):
        analyze_cohort(["a.png"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="unique"):
        read_slide_table(["x/a.png", "y/a.png"])
    with pytest.raises(ValueError, match="'path' column"):
        read_slide_table(pd.DataFrame({"file": ["a.png"]}))


_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from xpath.pipeline import analyze_cohort, image_summary

    def slow_summary(path, prompts, *, log):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (os.path.basename(path) + "\\n").encode())
        os.close(fd)
        time.sleep(0.4)
        return image_summary(path)

    if __name__ == "__main__":
        slides, out, log = sys.argv[1:4]
        res = analyze_cohort(slides, out_dir=out, func=slow_summary, backend="dask", n_workers=2,
                             progress=False, log=log)
        print("DONE", len(res.done), len(res.skipped), len(res.failed))
""")


@pytest.mark.slow
def test_dask_cohort_killed_half_way_resumes_without_redoing(tmp_path):
    paths = _write_slides(tmp_path / "in", 20, size=96)
    slides_csv = tmp_path / "slides.csv"
    pd.DataFrame({"path": [str(p) for p in paths]}).to_csv(slides_csv, index=False)
    script = tmp_path / "run_cohort.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), str(slides_csv), str(out)]

    # 1) start, and kill the whole process group (driver, scheduler, workers) once ~6 slides are done
    proc = subprocess.Popen([*args, str(tmp_path / "calls1.txt")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "slides").glob("*.parquet"))) < 6:
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {p.stem: p.stat().st_mtime_ns for p in (out / "slides").glob("*.parquet")}
    assert 6 <= len(finished) < 20, f"kill was not half-way: {len(finished)} finished"

    # 2) run again to the end
    rerun = subprocess.run([*args, str(tmp_path / "calls2.txt")], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"DONE {20 - len(finished)} {len(finished)} 0" in rerun.stdout
    redone = {Path(line).name.split(".")[0] for line in (tmp_path / "calls2.txt").read_text().split()}
    assert redone.isdisjoint(finished), "finished slides were analysed again"
    assert redone | set(finished) == {p.name.split(".")[0] for p in paths}
    assert {p.stem: p.stat().st_mtime_ns for p in (out / "slides").glob("*.parquet") if p.stem in finished} == finished
    assert not list(out.rglob("*.part")), "a partial file was left behind"
    table = pd.read_parquet(out / "cohort.parquet")
    assert sorted(table["slide_id"]) == sorted(p.name.split(".")[0] for p in paths)
