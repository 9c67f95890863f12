"""Distributed set-up, random-number states and atomic checkpoint directories for training.

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

import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._registry import resolve_device

__all__ = ["DistInfo", "capture_rng", "init_distributed", "latest_checkpoint", "restore_rng", "write_checkpoint_dir"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` come from
    ``torchrun``; the backend is NCCL when the device is CUDA and gloo otherwise. Without
    ``WORLD_SIZE`` > 1 this returns a single-process :class:`DistInfo`.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    here = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        here = True
    return DistInfo(rank, world, local_rank, dev, here)


def capture_rng() -> dict:
    """The random states of python, numpy (legacy global), torch CPU and CUDA, as tensors/ints."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) if isinstance(v, float)
                                                                               else int(v) for v in np_state[2:]]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    _write_text_atomic(root / "latest", final.name + "\n")
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
