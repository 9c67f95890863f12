"""Self-training: a trained model's nuclei as the pseudo-labels of tissue-only training images.

A source that annotates glands but not their nuclei (EBHI-Seg, GlaS, the EBHI cohort) needs a
nucleus mask on the same images, or "nuclei" and "glands" learn to select one foreground
(:func:`~xpath.segmentation.training.records.pseudo_nuclei_triples`). ``pseudo_nuclei: true`` takes
it from the classical detector; ``pseudo_nuclei: {labels: DIR}`` reads it from ``DIR``, written
beforehand by a trained model (noisy-student self-training, Xie et al., CVPR 2020)::

    python -m xpath.segmentation.training.self_training --config CONFIG.yaml \\
        --checkpoint runs/xpath_small_stage10_shipped.pt [--threads 2] [--no-progress]

labels the *training* images of every such source of the config (validation images keep their
true labels and are never looked at) with the canonical all-nuclei prompt of the image's region
(``"nuclei-level nucleus in colon pathology"``), decoded by
:class:`~xpath.segmentation.inference.predictor.TextPromptPredictor` at the image's µm/px (or the
config's ``assume_mpp``) — the inference path the model card measures. Each mask is written
atomically to ``DIR/<source>/<image_id>.npz`` (bit-packed, :mod:`~.pseudo_labels`); images already
labelled are skipped, so an interrupted run resumes. ``DIR/labeller.json`` names the checkpoint and
its SHA-256, and a folder labelled by another checkpoint is refused rather than mixed. The labels
are semantic only (the instance head keeps learning from annotated instances) and partial: a tile
where the model found no nucleus never teaches "no nuclei".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...io import atomic_path
from ...ontology import UNSPECIFIED, Label
from .pseudo_labels import label_path, write_model_nuclei

__all__ = ["label_config", "label_images", "main", "nuclei_prompt"]

logger = logging.getLogger(__name__)


def nuclei_prompt(record) -> str:
    """The canonical all-nuclei prompt of a record's region (its first label's)."""
    triples = record.triples()
    region = triples[0].label.region if triples else UNSPECIFIED
    return Label(region, "nuclei", "nucleus").prompt


def _claim_folder(folder: Path, checkpoint: str | Path) -> None:
    """Record the labelling checkpoint in ``folder/labeller.json``; refuse a folder of another one."""
    from ..modeling.checkpoint import sha256sum

    entry = {"checkpoint": str(checkpoint), "sha256": sha256sum(checkpoint)}
    note = folder / "labeller.json"
    if note.is_file():
        known = json.loads(note.read_text())
        if known.get("sha256") != entry["sha256"]:
            raise ValueError(f"{folder} holds labels of {known.get('checkpoint')!r} (sha256 {known.get('sha256')}); "
                             f"{checkpoint} is another model: label into a new folder")
        return
    with atomic_path(note) as tmp:
        tmp.write_text(json.dumps(entry, indent=1) + "\n")


def label_images(predictor, records: Iterable, *, folder: str | Path, mpp: float | None = None,
                 threshold: float = 0.5, progress: bool = True) -> int:
    """Write the model's all-nuclei mask of each record that has none yet in ``folder``.

    Parameters
    ----------
    predictor : TextPromptPredictor
        The labelling model.
    records : iterable of AnnotatedImage
        Tissue-annotated images; each is decoded with :func:`nuclei_prompt`.
    folder : str or Path
        The labels' folder (:func:`label_path`).
    mpp : float, optional
        µm/px of the records that state none.
    threshold : float
        Probability threshold of the masks.

    Returns
    -------
    int
        How many images were labelled now (those already in ``folder`` are skipped).
    """
    from tqdm.auto import tqdm

    todo = [r for r in records if not label_path(folder, r.source, r.image_id).is_file()]
    for rec in todo:
        if rec.mpp is None and mpp is None:
            raise ValueError(f"{rec.source} image {rec.image_id!r} states no mpp: pass mpp= (the config's assume_mpp)")
    for rec in tqdm(todo, desc="pseudo-nuclei", disable=not progress, leave=False):
        prompt = nuclei_prompt(rec)
        predictor.set_image(rec.image, mpp=rec.mpp if rec.mpp is not None else mpp)
        mask = predictor.predict([prompt], threshold=threshold, instances=False).semantic[prompt]
        write_model_nuclei(label_path(folder, rec.source, rec.image_id), np.asarray(mask, bool))
    return len(todo)


def label_config(config, checkpoint: str | Path, *, progress: bool = True) -> dict[str, int]:
    """Label the training images of every ``pseudo_nuclei: {labels: DIR}`` source of a training config.

    Returns
    -------
    dict
        ``{source: images labelled now}``.
    """
    from .. import create_model
    from ..inference.predictor import TextPromptPredictor
    from .config import load_config, split_validation
    from .sources import load_source

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    sources = [s for s in cfg.data.sources if isinstance(s.get("pseudo_nuclei"), dict)]
    if not sources:
        raise ValueError("the config has no source with pseudo_nuclei: {labels: DIR}; nothing to label")
    predictor = TextPromptPredictor(create_model(str(checkpoint)), progress=False)
    written = {}
    for src in sources:
        folder = Path(src["pseudo_nuclei"]["labels"])
        _claim_folder(folder, checkpoint)
        items, ids, splits = load_source(src, cfg.seed)
        is_val = split_validation(ids, splits, src.get("val", "none"))
        train_part = [it for it, v in zip(items, is_val) if not v]
        written[src["dataset"]] = label_images(predictor, train_part, folder=folder, progress=progress,
                                               mpp=cfg.data.assume_mpp.get(src["dataset"]))
        logger.info("%s: %d of %d training images labelled now, into %s", src["dataset"],
                    written[src["dataset"]], len(train_part), folder)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m xpath.segmentation.training.self_training",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML training config with pseudo_nuclei: {labels: DIR}")
    parser.add_argument("--checkpoint", required=True, help="the labelling model's checkpoint (.pt)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = label_config(args.config, args.checkpoint, progress=not args.no_progress)
    print(json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
