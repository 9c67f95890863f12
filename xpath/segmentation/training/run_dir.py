"""A training run's checkpoint directories, written atomically.

Checkpoint layout under ``OUT/checkpoints``::

    step_0000200/model.pt    the model, in the model checkpoint format (``save_checkpoint``)
    step_0000200/state.pt    training state: model and optimizer state dicts, scheduler,
                             step, sampler position, per-rank RNG states, config
    latest                   text file naming the newest complete step directory

A step directory is written under a temporary name and renamed when complete, then
``latest`` is replaced atomically, so a run killed at any moment leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ...io import atomic_path

__all__ = ["atomic_torch_save", "latest_checkpoint", "write_checkpoint_dir"]


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` through :func:`xpath.io.atomic_path`: ``path`` is the old file or the complete new one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_checkpoint_dir(root: Path, step: int, writers: dict, *, keep: int) -> Path:
    """Write one checkpoint directory atomically and prune old ones.

    Parameters
    ----------
    root : Path
        ``OUT/checkpoints``.
    step : int
    writers : dict
        ``{file name: callable(path)}`` each writing one file.
    keep : int
        How many step directories to keep (oldest removed first).
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".step_{step:07d}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, write in writers.items():
        write(tmp / name)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(root / "latest") as tmp_latest:
        tmp_latest.write_text(final.name + "\n")
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root`` (``OUT/checkpoints``), or ``None``."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if (cand / "state.pt").is_file():
            return cand
    steps = sorted(p for p in root.glob("step_*") if (p / "state.pt").is_file())
    return steps[-1] if steps else None
