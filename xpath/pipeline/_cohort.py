"""Cohorts: one analysis per slide, resumable, failure-tolerant, serial / joblib / Dask.

Each slide's result is a small table written atomically to ``out_dir/slides/{slide_id}.parquet``.
A slide counts as finished when that file exists and its Parquet footer reads; a re-run
skips finished slides, removes temporary files left by a killed run and redoes slides
whose file is unreadable. A slide that raises is recorded in ``out_dir/failed/{slide_id}.json``
(collected into ``out_dir/failures.parquet``) and does not stop the cohort; the next run
retries it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import atomic_path, write_parquet
from ..segmentation import check_prompts
from ._analysis import analyze
from ._slide_analysis import analyze_slide

__all__ = ["BACKENDS", "CohortResult", "analyze_cohort", "read_slide_table"]

log = logging.getLogger(__name__)

BACKENDS = ("serial", "joblib", "dask")
_SAFE = "".join(chr(c) for c in range(128) if chr(c).isalnum()) + "-_."


@dataclass
class CohortResult:
    """What :func:`analyze_cohort` did.

    Attributes
    ----------
    table : pandas.DataFrame
        Every finished slide's result rows, with ``slide_id`` and the slide table's other
        columns (e.g. patient, outcome) joined on; also at ``out_dir/cohort.parquet``.
    failures : pandas.DataFrame
        One row per failed slide: ``slide_id``, ``path``, ``error``, ``message``, ``traceback``.
    done, skipped, failed : list of str
        Slide ids analysed in this run, found finished from an earlier run, failed.
    out_dir : pathlib.Path
    seconds : float
        Wall time of this run.
    """

    table: pd.DataFrame
    failures: pd.DataFrame
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    seconds: float = 0.0

    def __repr__(self) -> str:
        return (f"CohortResult(done={len(self.done)}, skipped={len(self.skipped)}, failed={len(self.failed)}, "
                f"rows={len(self.table)}, out_dir={str(self.out_dir)!r})")


def read_slide_table(slides) -> pd.DataFrame:
    """Normalise a cohort description to a table with unique ``slide_id`` and ``path`` columns.

    ``slides`` may be a DataFrame with a ``path`` column (and optionally ``slide_id`` and any
    metadata columns), a CSV/Parquet file of such a table, or a list of image paths. A
    missing ``slide_id`` is the file name without its suffix.
    """
    if isinstance(slides, (str, os.PathLike)):
        source = Path(slides)
        if not source.is_file():
            raise FileNotFoundError(f"slides: no such file: {source}")
        if source.suffix.lower() == ".parquet":
            table = pd.read_parquet(source)
        else:
            table = pd.read_csv(source)
        base = source.parent
        if "path" in table.columns:
            table["path"] = [str(p if Path(p).is_absolute() else base / p) for p in table["path"]]
    elif isinstance(slides, pd.DataFrame):
        table = slides.copy()
    elif isinstance(slides, Iterable):
        table = pd.DataFrame({"path": [str(p) for p in slides]})
    else:
        raise TypeError(f"slides must be a DataFrame, a CSV/Parquet path or a list of paths, got {type(slides).__name__}")
    if "path" not in table.columns:
        raise ValueError(f"slides must have a 'path' column; got columns {list(table.columns)}")
    table["path"] = table["path"].astype(str)
    if "slide_id" not in table.columns:
        table.insert(0, "slide_id", [Path(p).name.split(".")[0] for p in table["path"]])
    table["slide_id"] = table["slide_id"].astype(str)
    dup = table["slide_id"][table["slide_id"].duplicated()]
    if len(dup):
        raise ValueError(f"slide_id must be unique; duplicated: {sorted(set(dup))[:5]}")
    bad = [s for s in table["slide_id"] if not s or any(ch not in _SAFE for ch in s)]
    if bad:
        raise ValueError(f"slide_id may hold only letters, digits, '-', '_' and '.'; got {bad[:5]}")
    return table.reset_index(drop=True)


def _is_complete(path: Path) -> bool:
    """A result file is complete when its Parquet footer reads."""
    if not path.is_file():
        return False
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception:  # noqa: BLE001 - any unreadable file is partial
        return False
    return True


def _run_one(task: dict) -> dict:
    """Analyse one slide and write its result atomically (runs in a worker)."""
    slide_id, path = task["slide_id"], task["path"]
    out = Path(task["out"])
    fail = Path(task["fail"])
    start = time.perf_counter()
    try:
        result = task["func"](path, task["prompts"], **task["kwargs"])
        if isinstance(result, pd.Series):
            result = result.to_frame().T
        if not isinstance(result, pd.DataFrame):
            raise TypeError(f"the per-slide function must return a pandas DataFrame or Series, "
                            f"got {type(result).__name__}")
        result = result.reset_index(drop=True)
        if "slide_id" in result.columns:
            result = result.drop(columns="slide_id")
        result.insert(0, "slide_id", slide_id)
        write_parquet(result, out, metadata={"slide_id": slide_id, "path": path})
        if fail.exists():
            fail.unlink()
        return {"slide_id": slide_id, "status": "done", "seconds": time.perf_counter() - start}
    except Exception as err:  # noqa: BLE001 - a slide's failure is recorded, not fatal
        record = {"slide_id": slide_id, "path": path, "error": type(err).__name__, "message": str(err),
                  "traceback": traceback.format_exc()}
        with atomic_path(fail, suffix=".json.part") as tmp:
            tmp.write_text(json.dumps(record))
        return {"slide_id": slide_id, "status": "failed", "seconds": time.perf_counter() - start,
                "message": f"{type(err).__name__}: {err}"}


def _clean_partials(folder: Path) -> int:
    removed = 0
    for tmp in folder.glob(".*.part"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def analyze_features(path: str | os.PathLike, prompts: Sequence[str], *, mpp: float | None = None,
                     **kwargs) -> pd.DataFrame:
    """The default per-slide function of :func:`analyze_cohort`: one image or slide → its feature row.

    Plain images are analysed whole with :func:`~xpath.pipeline.analyze` (``mpp`` from the
    file or the argument); whole slides (SVS, NDPI, ...) with :func:`~xpath.pipeline.analyze_slide`.
    """
    import tempfile

    from ..io import SLIDE_SUFFIXES, read_image

    if Path(path).suffix.lower() in SLIDE_SUFFIXES:
        with tempfile.TemporaryDirectory(prefix="xpath-slide-") as tmp:
            result = analyze_slide(path, prompts, out_dir=tmp, mpp=mpp, progress=False, **kwargs)
        return result.features.reset_index(drop=True)
    image = read_image(path, mpp=mpp)
    result = analyze(image, prompts, mpp=image.mpp, **kwargs)
    return result.features.reset_index(drop=True)


def analyze_cohort(
    slides,
    prompts: Sequence[str] | None = None,
    *,
    out_dir: str | os.PathLike,
    backend: str = "serial",
    scheduler: str | None = None,
    n_workers: int = 2,
    func: Callable[..., pd.DataFrame] | None = None,
    progress: bool = True,
    retry_failed: bool = True,
    **kwargs,
) -> CohortResult:
    """Run a per-slide analysis over a cohort, resumably, with one result file per slide.

    Parameters
    ----------
    slides : pandas.DataFrame, path or list of paths
        See :func:`read_slide_table`: a ``path`` column, optional ``slide_id`` and metadata.
    prompts : sequence of str, optional
        Text prompts passed to ``func`` (the segmentation targets).
    out_dir : str or os.PathLike
        Results folder: ``slides/{slide_id}.parquet`` per slide, ``failed/{slide_id}.json``
        per failure, ``cohort.parquet`` (all results) and ``failures.parquet``.
    backend : {"serial", "joblib", "dask"}
        ``"dask"`` runs on ``dask.distributed``: a ``LocalCluster`` of ``n_workers``
        single-threaded worker processes, or the cluster at ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (e.g. ``"tcp://10.0.0.5:8786"``); dask backend only.
    n_workers : int
        Worker processes for the joblib backend and the local Dask cluster.
    func : callable, optional
        ``func(path, prompts, **kwargs) -> pandas.DataFrame`` (usually one row of features).
        Default: :func:`xpath.pipeline.analyze_features` (segmentation → biomarkers). It must
        be picklable for the joblib and dask backends (a module-level function).
    progress : bool
        Show a tqdm bar over slides.
    retry_failed : bool
        Retry slides that failed in an earlier run (default) or leave them recorded as failed.
    **kwargs
        Passed to ``func``.

    Returns
    -------
    CohortResult

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(folder / f"s{i}.png")
    >>> from xpath.pipeline import image_summary
    >>> res = analyze_cohort(sorted(folder.glob("*.png")), out_dir=folder / "out", func=image_summary,
    ...                      progress=False)
    >>> res.table["slide_id"].tolist(), len(res.done)
    (['s0', 's1', 's2'], 3)
    >>> len(analyze_cohort(sorted(folder.glob("*.png")), out_dir=folder / "out", func=image_summary,
    ...                    progress=False).skipped)
    3
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if scheduler is not None and backend != "dask":
        raise ValueError(f"scheduler= is only used with backend='dask', got backend={backend!r}")
    if int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if func is None and not prompts:
        raise ValueError("prompts are required for the default per-slide analysis, e.g. ['nuclei', 'stroma'] "
                         "(or pass func=image_summary for a quality-control pass)")
    if prompts is not None:
        prompts = check_prompts(prompts)
    if func is None:
        from ..segmentation.support import require_supported

        # refuse prompts the model was not trained for before any slide is opened
        require_supported(prompts, kwargs.get("model", "xpath_small"),
                          on_unsupported=kwargs.get("on_unsupported", "raise"))
        func = analyze_features
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    start = time.perf_counter()
    table = read_slide_table(slides)
    out_dir = Path(out_dir)
    slides_dir, failed_dir = out_dir / "slides", out_dir / "failed"
    slides_dir.mkdir(parents=True, exist_ok=True)
    failed_dir.mkdir(parents=True, exist_ok=True)
    removed = _clean_partials(slides_dir) + _clean_partials(failed_dir) + _clean_partials(out_dir)
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", removed)

    skipped, tasks = [], []
    for slide_id, path in zip(table["slide_id"], table["path"]):
        out = slides_dir / f"{slide_id}.parquet"
        fail = failed_dir / f"{slide_id}.json"
        if _is_complete(out):
            skipped.append(slide_id)
            continue
        if out.exists():
            log.warning("slide %s: result file is partial or corrupt; redoing it", slide_id)
            out.unlink()
        if fail.exists() and not retry_failed:
            continue
        tasks.append({"slide_id": slide_id, "path": path, "out": str(out), "fail": str(fail), "func": func,
                      "prompts": prompts, "kwargs": kwargs})
    log.info("cohort: %d slides, %d finished earlier, %d to run on %s", len(table), len(skipped), len(tasks), backend)

    outcomes = list(_execute(tasks, backend=backend, scheduler=scheduler, n_workers=int(n_workers),
                             progress=progress))
    done = [o["slide_id"] for o in outcomes if o["status"] == "done"]
    for o in outcomes:
        if o["status"] == "failed":
            log.warning("slide %s failed: %s", o["slide_id"], o.get("message"))
    return _collect(table, out_dir, done=done, skipped=skipped, seconds=time.perf_counter() - start)


def _execute(tasks: list[dict], *, backend: str, scheduler, n_workers: int, progress: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="slides", unit="slide", disable=not progress or not tasks)
    try:
        if not tasks:
            return
        if backend == "serial":
            for task in tasks:
                yield _bar_step(bar, _run_one(task))
        elif backend == "joblib":
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=n_workers, return_as="generator_unordered")
            for outcome in parallel(delayed(_run_one)(task) for task in tasks):
                yield _bar_step(bar, outcome)
        else:
            yield from (_bar_step(bar, o) for o in _execute_dask(tasks, scheduler=scheduler, n_workers=n_workers))
    finally:
        bar.close()


def _bar_step(bar, outcome: dict) -> dict:
    bar.update(1)
    bar.set_postfix_str(f"{outcome['slide_id']}: {outcome['status']}", refresh=False)
    return outcome


def _execute_dask(tasks: list[dict], *, scheduler, n_workers: int):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - dask is a dev/cluster extra
        raise ImportError("backend='dask' needs dask and distributed: pip install 'xpath[cluster]'") from err
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = client.map(_run_one, tasks, pure=False, key=[f"xpath-slide-{t['slide_id']}" for t in tasks])
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _collect(table: pd.DataFrame, out_dir: Path, *, done, skipped, seconds) -> CohortResult:
    """Gather per-slide files into ``cohort.parquet`` and ``failures.parquet``."""
    frames = []
    for slide_id in table["slide_id"]:
        path = out_dir / "slides" / f"{slide_id}.parquet"
        if _is_complete(path):
            frames.append(pd.read_parquet(path))
    meta = table.drop(columns=[]).copy()
    if frames:
        results = pd.concat(frames, ignore_index=True)
        extra = [c for c in meta.columns if c != "slide_id" and c not in results.columns]
        results = results.merge(meta[["slide_id", *extra]], on="slide_id", how="left")
    else:
        results = pd.DataFrame({"slide_id": pd.Series([], dtype=str)})
    records = []
    for slide_id in table["slide_id"]:
        fail = out_dir / "failed" / f"{slide_id}.json"
        if fail.exists():
            records.append(json.loads(fail.read_text()))
    failures = pd.DataFrame.from_records(records, columns=["slide_id", "path", "error", "message", "traceback"])
    write_parquet(results, out_dir / "cohort.parquet")
    write_parquet(failures, out_dir / "failures.parquet")
    failed = failures["slide_id"].tolist()
    return CohortResult(results, failures, done=list(done), skipped=list(skipped), failed=failed,
                        out_dir=out_dir, seconds=seconds)
