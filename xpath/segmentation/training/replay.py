"""The replay sample: a few images of the default model's own training data, shipped for fine-tuning.

A fine-tune (:mod:`~xpath.segmentation.training.finetune`) trains on the user's new label *and*
on these images with their old labels, so that the old labels are not forgotten, and measures
every old label on the held-out part before and after (the replay-validation Dice). The sample
lives in ``replay_data/`` beside this module (``PROVENANCE.md`` there states the sources and
their licence terms): images as JPEG (quality 90), masks as PNG, and ``manifest.json``. It was
drawn from ``../shared/data`` by :func:`build_replay_sample`::

    python -m xpath.segmentation.training.replay --build [--root SHARED_DATA] [--out DIR]

Its **train** part comes from the images the shipped ``xpath_small`` trained on, its **val**
part from the images that model's training config held out (MoNuSeg and NuCLS test images,
held-out CoNSeP source images and EBHI slides), so that the "before" numbers are measured on
images the default model never saw:

========  =======================================================  =====  ===
source    labels                                                   train  val
========  =======================================================  =====  ===
monuseg   all nuclei (instances), 512 px crops at ~0.25 µm/px         4     3
consep    colon nuclei: other, inflammatory, epithelial, spindle      8     6
nucls     breast nuclei: tumor, non-tumor                             4     3
ebhi      colon glands (at an assumed 1 µm/px, as trained)            6     4
========  =======================================================  =====  ===
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["REPLAY_ASSUME_MPP", "REPLAY_DIR", "SELF_REPLAY_SOURCE", "build_replay_sample", "replay_images",
           "replay_partial_labels", "self_replay_records"]

REPLAY_DIR = Path(__file__).with_name("replay_data")
#: µm/px of the sample's sources that state none (the default model's ``assume_mpp``).
REPLAY_ASSUME_MPP = {"ebhi": 1.0}
#: Source name of the records that hold the base model's own answers on the new images.
SELF_REPLAY_SOURCE = "self-replay"
_COUNTS = {"monuseg": (4, 3), "consep": (8, 6), "nucls": (4, 3), "ebhi": (6, 4)}
_VAL_RULES = {"monuseg": {"split": "test"}, "consep": {"group": r"^train_(\d+)_", "fraction": 0.2},
              "nucls": {"split": "test"}, "ebhi": {"group": r"^(.*?__GT[^-]+)-", "fraction": 0.2}}
_MONUSEG_CROP = 512
_JPEG_QUALITY = 90


def _read(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return np.asarray(im)


def replay_images(split: str, *, folder: str | os.PathLike | None = None) -> list:
    """The replay sample's images of one part, as :class:`~xpath.datasets.AnnotatedImage` records.

    Parameters
    ----------
    split : {"train", "val"}
    folder : path, optional
        Another sample in the same layout (default: the one shipped in the package).

    Raises
    ------
    FileNotFoundError
        The sample (its ``manifest.json``) is missing, naming where it was looked for.
    """
    from ...datasets import DATASETS, AnnotatedImage

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = Path(folder) if folder is not None else REPLAY_DIR
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"replay sample not found: {manifest} does not exist (reinstall xpath, or pass "
                                "replay=False to fine-tune without it)")
    out = []
    for row in json.loads(manifest.read_text()):
        if row["split"] != split:
            continue
        image = np.ascontiguousarray(_read(root / row["image"])[..., :3], np.uint8)
        instances = _read(root / row["instances"]).astype(np.int32) if row.get("instances") else None
        class_map = _read(root / row["class_map"]).astype(np.uint8) if row.get("class_map") else None
        out.append(AnnotatedImage(image=image, instances=instances, class_map=class_map,
                                  classes=dict(DATASETS[row["source"]].classes), mpp=row["mpp"],
                                  source=row["source"], image_id=row["image_id"], split=split))
    return out


def replay_partial_labels(records) -> dict:
    """Source → pseudo-labels of the replay records (EBHI's detector nuclei: never negatives)."""
    from ...ontology import Label

    return {"ebhi": {Label("colon", "nuclei", "nucleus")}} if any(r.source == "ebhi" for r in records) else {}


def self_replay_records(model, dataset, labels, *, batch_size: int = 4, min_area: int = 16,
                        progress: bool = False) -> list:
    """The base model's own answers for old labels on the new images, as training records.

    The replay sample keeps the old labels on *its* images; on the user's images nobody annotated
    them, yet that is where a prompt such as "glands" and the new "stroma" meet. Before any
    training, each tile of ``dataset`` is decoded with the base weights for ``labels`` (their
    canonical prompts); every label the base model finds in a tile (presence ≥ 0.5, at least
    ``min_area`` pixels) gets its predicted mask as the target. Training on these keeps the answers
    the model gave (Li & Hoiem's "learning without forgetting", with hard targets). The records
    are one tile each (the tile's own pixels, so an encoder cache serves them), of source
    :data:`SELF_REPLAY_SOURCE`, whose labels are partial: never taken as absent.

    Parameters
    ----------
    model : TextPromptSegmenter
        The base model (before training).
    dataset : SegmentationDataset
        The new images' tiles, not augmented in pixels.
    labels : sequence of Label
        The old labels to keep.

    Returns
    -------
    list of SegmentationRecord
    """
    import torch
    from tqdm.auto import tqdm

    from .records import SegmentationRecord

    labels = list(labels)
    if not labels:
        return []
    prompts = [lab.prompt for lab in labels]
    out = []
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc="self-replay", disable=not progress,
                          leave=False):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = np.stack([it["image"].numpy() for it in items])
            with torch.no_grad():
                res = model(model.preprocess(images), prompts)
            masks = (res.mask_logits > 0).cpu().numpy()  # (B, L, t, t)
            present = (res.presence_logits.sigmoid() >= 0.5).cpu().numpy()  # (B, L)
            for b, it in enumerate(items):
                keep = [j for j in range(len(labels)) if present[b, j] and masks[b, j].sum() >= min_area]
                if not keep:
                    continue
                y0, x0 = (int(v) for v in dataset.tiles[it["index"], 1:])
                out.append(SegmentationRecord(
                    image=images[b], masks=masks[b, keep], instances=None, labels=tuple(labels[j] for j in keep),
                    instance_labels=np.zeros(len(keep), bool), source=SELF_REPLAY_SOURCE,
                    image_id=f"{it['image_id']}@{y0},{x0}", scale=1.0, mpp=None, split="train"))
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------- building the sample
def _evenly(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    return [items[int(i)] for i in np.floor((np.arange(k) + 0.5) * len(items) / k)]


def _pick(name: str, records: list, held_out: np.ndarray, split: str) -> list:
    """``k`` records of one part, evenly spaced in sorted order (CoNSeP: spread over its source images)."""
    part = [r for r, v in zip(records, held_out) if v == (split == "val")]
    k = _COUNTS[name][split == "val"]
    if name == "consep":  # round-robin over source images, the patches with the most nucleus types first
        by_source: dict[str, list] = {}
        for r in part:
            by_source.setdefault(r.image_id.rsplit("_", 1)[0], []).append(r)
        ranked = [sorted(g, key=lambda r: (-len(set(np.unique(r.class_map)) - {0}), r.image_id))
                  for _, g in sorted(by_source.items())]
        sources = _evenly(ranked, k)
        part = [g[i] for i in range(k) for g in sources if i < len(g)][:k]
        return part
    return _evenly(part, k)


def _crop(rec, size: int):
    """The centre ``size`` crop of a MoNuSeg record (its instance ids renumbered from 1)."""
    import dataclasses

    from skimage.segmentation import relabel_sequential

    h, w = rec.image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    view = (slice(y, y + size), slice(x, x + size))
    inst = relabel_sequential(rec.instances[view])[0].astype(np.int32)
    return dataclasses.replace(rec, image=np.ascontiguousarray(rec.image[view]), instances=inst)


def build_replay_sample(out: str | os.PathLike = REPLAY_DIR, *, root: str | os.PathLike | None = None) -> Path:
    """Draw the replay sample from the shared data folder into ``out`` (images, masks, ``manifest.json``).

    Deterministic: the same data give the same files. ``PROVENANCE.md`` is written by hand.
    """
    from PIL import Image as PILImage

    from ...datasets import load_dataset
    from .config import split_validation

    out = Path(out)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for name in _COUNTS:
        records = load_dataset(name, root=root)
        held_out = split_validation([r.image_id for r in records], [r.split for r in records], _VAL_RULES[name])
        for split in ("train", "val"):
            for rec in _pick(name, records, held_out, split):
                if name == "monuseg":
                    rec = _crop(rec, _MONUSEG_CROP)
                stem = f"{name}__{rec.image_id}"
                PILImage.fromarray(rec.image).save(out / "images" / f"{stem}.jpg", quality=_JPEG_QUALITY)
                row = {"source": name, "image_id": rec.image_id, "split": split, "mpp": rec.mpp,
                       "image": f"images/{stem}.jpg"}
                if rec.instances is not None:
                    PILImage.fromarray(rec.instances.astype(np.uint16)).save(out / "masks" / f"{stem}.instances.png")
                    row["instances"] = f"masks/{stem}.instances.png"
                if rec.class_map is not None:
                    PILImage.fromarray(rec.class_map.astype(np.uint8)).save(out / "masks" / f"{stem}.classes.png")
                    row["class_map"] = f"masks/{stem}.classes.png"
                rows.append(row)
    (out / "manifest.json").write_text(json.dumps(rows, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="draw the sample from the shared data folder")
    parser.add_argument("--root", default=None, help="the shared data folder (default: $XPATH_DATA or ../shared/data)")
    parser.add_argument("--out", default=str(REPLAY_DIR), help="where to write it (default: the package's copy)")
    args = parser.parse_args(argv)
    if not args.build:
        parser.error("nothing to do: pass --build")
    path = build_replay_sample(args.out, root=args.root)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"wrote {path}: {len(json.loads((path / 'manifest.json').read_text()))} images, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
