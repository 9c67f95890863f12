"""Where training images come from: a config's sources, loaded and split into training and validation.

:func:`load_source` reads one ``data.sources`` entry (a dataset of :mod:`xpath.datasets` or
synthetic tissue); :func:`build_datasets` applies each source's validation rule
(:func:`~xpath.segmentation.training.config.split_validation`), adds pseudo-labels where asked,
and builds the two :class:`~xpath.segmentation.training.dataset.SegmentationDataset`;
:func:`sampling_weights` gives each training tile its draw weight.
"""

from __future__ import annotations

import re

import numpy as np

from .config import DataConfig, TrainConfig, source_weights, split_validation
from .dataset import SegmentationDataset
from .pseudo_labels import read_model_nuclei
from .records import build_records, pseudo_nuclei_triples
from .sampler import balance_weights

__all__ = ["build_datasets", "load_source", "sampling_weights"]


def load_source(src: dict, seed: int) -> tuple[list, list[str], list[str]]:
    """Items of one config source, with their image ids and splits."""
    if "synthetic" in src:
        from ...datasets import synthetic_tissue

        opts = dict(src["synthetic"])
        count, offset = int(opts.pop("count", 4)), int(opts.pop("seed", seed))
        items = [synthetic_tissue(offset + i, **opts) for i in range(count)]
        ids = [f"synthetic_{offset + i}" for i in range(count)]
        return items, ids, ["train"] * count
    from ...datasets import iter_dataset

    items = list(iter_dataset(src["dataset"], split=src.get("split"), limit=src.get("limit")))
    if src.get("include"):
        items = [it for it in items if re.search(src["include"], it.image_id)]
    if src.get("exclude"):
        items = [it for it in items if not re.search(src["exclude"], it.image_id)]
    return items, [it.image_id for it in items], [it.split for it in items]


def build_datasets(config: TrainConfig, *, mpp: float | None, tile_size: int,
                   vocabulary=()) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training and validation datasets of a config (validation ``None`` if no source has a rule)."""
    d = config.data
    train_items, val_items = [], []
    partial: dict[str, set] = {}  # source -> pseudo-labels (not exhaustive: never "absent")
    for src in d.sources:
        items, ids, splits = load_source(src, config.seed)
        is_val = split_validation(ids, splits, src.get("val", "none"))
        train_part = [it for it, v in zip(items, is_val) if not v]
        pseudo = src.get("pseudo_nuclei")
        if pseudo:  # training images only: validation keeps the true labels
            mpp_src = d.assume_mpp.get(src.get("dataset"))
            if mpp_src is None and any(it.mpp is None for it in train_part):
                raise ValueError(f"source {src.get('dataset')!r}: pseudo_nuclei needs the images' mpp; "
                                 "set data.assume_mpp for it")
            model_made = isinstance(pseudo, dict)  # {labels: DIR}: a trained model's, else the classical detector's
            train_part = [t for it in train_part
                          for t in pseudo_nuclei_triples(it, mpp=it.mpp if it.mpp is not None else mpp_src,
                                                         nuclei=read_model_nuclei(pseudo["labels"], it)
                                                         if model_made else None)]
            for t in train_part:
                if t.label.structure == "nuclei":
                    partial.setdefault(t.source, set()).add(t.label)
        train_items += train_part
        val_items += [it for it, v in zip(items, is_val) if v]
    if not train_items:
        raise ValueError("the config's sources leave no training images (check limit/split/val rules)")
    vocab = tuple(d.vocabulary) + tuple(vocabulary or ())
    train_records = build_records(train_items, mpp=mpp, assume_mpp=d.assume_mpp)
    train_keys = {(r.source, r.image_id) for r in train_records}
    common = {"tile_size": tile_size, "min_overlap": d.min_overlap, "min_area": d.min_area, "seed": config.seed}
    train = SegmentationDataset(train_records, prompts_per_image=d.prompts_per_image, max_negatives=d.max_negatives,
                                augment=d.augment, vocabulary=vocab, partial_labels=partial, **common)
    if not val_items:
        return train, None
    val_records = build_records(val_items, mpp=mpp, assume_mpp=d.assume_mpp)
    leak = train_keys & {(r.source, r.image_id) for r in val_records}
    if leak:
        raise ValueError(f"images in both training and validation: {sorted(leak)[:5]}")
    n_prompts = d.val_prompts_per_image or (max(len(r.labels) for r in val_records) + d.max_negatives)
    val = SegmentationDataset(val_records, prompts_per_image=n_prompts, max_negatives=d.max_negatives, augment=None,
                              vocabulary=train.vocabulary, **common)
    return train, val


def sampling_weights(train: SegmentationDataset, data: DataConfig) -> np.ndarray:
    """The draw weight of each training tile: ``data.balance``, times its source's ``weight``."""
    sources = [train.records[r].source for r in train.tiles[:, 0]]
    balanced = balance_weights(train.tile_labels(), by=data.balance, power=data.balance_power, sources=sources)
    per_source = source_weights(data.sources)
    return balanced * np.array([per_source.get(s, 1.0) for s in sources])
