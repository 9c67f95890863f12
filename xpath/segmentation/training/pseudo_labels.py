"""The pseudo-label files of self-training: one bit-packed nucleus mask per training image.

``DIR/<source>/<image_id>.npz`` holds the mask's shape and its bits; it is written by
:mod:`~xpath.segmentation.training.self_training` and read by
:func:`~xpath.segmentation.training.sources.build_datasets` for a source with
``pseudo_nuclei: {labels: DIR}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import atomic_path

__all__ = ["LABEL_COMMAND", "label_path", "read_model_nuclei", "write_model_nuclei"]

#: The command that writes a folder's labels (named in the error for a missing one).
LABEL_COMMAND = "python -m xpath.segmentation.training.self_training --config CONFIG.yaml --checkpoint MODEL.pt"


def label_path(folder: str | Path, source: str, image_id: str) -> Path:
    """Where the pseudo-label of one image lives: ``folder/source/image_id.npz``."""
    if not image_id or "/" in image_id or image_id.startswith("."):
        raise ValueError(f"image_id must be a plain file name, got {image_id!r}")
    return Path(folder) / source / f"{image_id}.npz"


def write_model_nuclei(path: Path, mask: np.ndarray) -> None:
    """Write one ``(H, W)`` bool mask to ``path`` (:func:`label_path`), atomically, bit-packed."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, shape=np.asarray(mask.shape, np.int64), bits=np.packbits(mask, axis=None))


def read_model_nuclei(folder: str | Path, record) -> np.ndarray:
    """The model-made nucleus mask of one training image, ``(H, W)`` bool in the image's pixels.

    Raises
    ------
    FileNotFoundError
        The image was not labelled (names the file and the command that writes it).
    ValueError
        The file does not hold a mask of the image's shape.
    """
    path = label_path(folder, record.source, record.image_id)
    if not path.is_file():
        raise FileNotFoundError(f"no pseudo-label for {record.source} image {record.image_id!r}: {path} is missing; "
                                f"write the folder's labels first with: {LABEL_COMMAND}")
    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        mask = np.unpackbits(data["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    if shape != record.image.shape[:2]:
        raise ValueError(f"{path} holds a {shape} mask, but {record.source} image {record.image_id!r} is "
                         f"{record.image.shape[:2]}; relabel the folder")
    return mask
