"""The datasets of a fine-tune: new images, replay sample, self-replay, and the sampling weights that mix them.

:func:`build_finetune_sets` turns a checked folder (:mod:`~xpath.segmentation.training.user_data`)
and the shipped replay sample (:mod:`~xpath.segmentation.training.replay`) into

- ``train``: the new images' training tiles, the replay sample's training tiles (EBHI with its
  detector nuclei as the default model was trained) and the self-replay tiles, not augmented in
  pixels (so the frozen encoder's outputs can be cached) but in their prompts;
- ``weights``: per training tile, so that the new images get ``new_share`` of the draws, the
  self-replay ``self_share`` and the replay sample the rest, balanced over its labels;
- ``val_new`` and ``val_replay``: the held-out new images, and the replay sample's validation part.

The label vocabulary of every set is the base model's vocabulary plus the new label: the old
labels stay region negatives (a breast label on a colon tile), and the new label is a negative on
replay tiles of another region, where it is known absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ontology import UNSPECIFIED
from .config import AugmentConfig
from .dataset import SegmentationDataset
from .records import build_records, pseudo_nuclei_triples
from .replay import REPLAY_ASSUME_MPP, SELF_REPLAY_SOURCE, replay_images, replay_partial_labels, self_replay_records
from .sampler import balance_weights

__all__ = ["FinetuneSets", "build_finetune_sets", "identity_augment", "self_replay_labels"]


def identity_augment(synonym_prob: float) -> AugmentConfig:
    """No change to the pixels (scale 1, no shift, flips or colour); prompts drawn in random order, with
    random negatives and paraphrases."""
    return AugmentConfig(scale=(1.0, 1.0), shift=0.0, flips=False, stain_sigma=0.0, stain_bias=0.0, brightness=0.0,
                         synonym_prob=synonym_prob)


@dataclass
class FinetuneSets:
    """The datasets of a fine-tune (see the module docstring)."""

    train: SegmentationDataset
    weights: np.ndarray
    val_new: SegmentationDataset
    val_replay: SegmentationDataset | None
    tile_size: int
    augment: AugmentConfig
    counts: dict

    def prompts(self) -> list[str]:
        """Every prompt text the sets can draw (to embed once, in a fixed order)."""
        sets = [self.train, self.val_new, self.val_replay]
        return sorted({p for ds in sets if ds is not None for p in ds.prompts} | {""})

    def describe(self) -> str:
        c = self.counts
        return (f"{c['new']} tiles of the new images, {c['replay']} of the replay sample, {c['self']} self-replay "
                f"tiles ({c['self_labels']} old labels); validation {c['val_new']} + {c['val_replay']} tiles")


def self_replay_labels(base_record, label) -> list:
    """The old labels to keep on the new images: those of the new label's region (or of no region), other
    than the new label itself (all of them when the new label names no region)."""
    if base_record is None:
        return []
    out = set()
    for t in base_record.labels:
        lab = t.label
        if lab == label or (lab.object == label.object and lab.structure == label.structure):
            continue
        if label.region == UNSPECIFIED or lab.region in (label.region, UNSPECIFIED):
            out.add(lab)
    return sorted(out)


def _replay_sets(model_mpp: float, folder=None) -> tuple[list, list]:
    """Training and validation records of the replay sample (the shipped one, or ``folder``) at the model's pixel
    size."""
    items = []
    for rec in replay_images("train", folder=folder):
        if rec.source in REPLAY_ASSUME_MPP:  # a tissue-only source: its detector nuclei, as the default trained
            items += pseudo_nuclei_triples(rec, mpp=REPLAY_ASSUME_MPP[rec.source])
        else:
            items += rec.triples()
    train = build_records(items, mpp=model_mpp, assume_mpp=REPLAY_ASSUME_MPP)
    val = build_records(replay_images("val", folder=folder), mpp=model_mpp, assume_mpp=REPLAY_ASSUME_MPP)
    return train, val


def _weights(train: SegmentationDataset, new_share: float, self_share: float) -> np.ndarray:
    sources = np.array([train.records[r].source for r in train.tiles[:, 0]])
    is_self = sources == SELF_REPLAY_SOURCE
    is_new = np.array([train.records[r].split == "new" for r in train.tiles[:, 0]])
    is_replay = ~is_self & ~is_new
    shares = {"new": new_share, "self": self_share if is_self.any() else 0.0}
    shares["replay"] = (1.0 - shares["new"] - shares["self"]) if is_replay.any() else 0.0
    total = sum(shares.values())
    w = np.zeros(len(sources))
    w[is_new] = shares["new"] / total / is_new.sum()
    if is_self.any():
        w[is_self] = shares["self"] / total / is_self.sum()
    if is_replay.any():
        labels = [labs for labs, r in zip(train.tile_labels(), is_replay) if r]
        lw = balance_weights(labels, by="label")
        w[is_replay] = shares["replay"] / total * lw / lw.sum()
    return w


def build_finetune_sets(model, folder, held: np.ndarray, settings, *, base_record, replay: bool, cache,
                        progress: bool = False) -> FinetuneSets:
    """The datasets and weights of a fine-tune; encodes every tile into ``cache`` on the way.

    Parameters
    ----------
    model : TextPromptSegmenter
        The base model, frozen where it does not train (the self-replay answers are its own).
    folder : AnnotatedFolder
    held : numpy.ndarray
        ``(N,)`` bool, the images held out.
    settings : FinetuneSettings
    base_record : ModelVocabulary or None
        What the base model knows (its old labels).
    replay : bool or path
        The shipped replay sample (``True``), another in its layout (a folder), or none (``False``).
    cache : EncoderCache
    """
    import dataclasses

    model_mpp = float(model.config.mpp)
    tile = int(settings.tile_size or model.config.image_size)
    augment = identity_augment(settings.synonym_prob)
    new = [dataclasses.replace(t, split="new" if not h else "val") for t, h in zip(folder.triples, held)]
    new_train = build_records([t for t in new if t.split == "new"], mpp=model_mpp)
    new_val = build_records([t for t in new if t.split == "val"], mpp=model_mpp)
    replay_folder = None if replay is True else replay
    replay_train, replay_val = _replay_sets(model_mpp, replay_folder) if replay is not False else ([], [])
    vocabulary = [*(getattr(model.config, "vocabulary", None) or []), folder.label.prompt]
    common = {"tile_size": tile, "min_area": settings.min_area, "seed": settings.seed, "vocabulary": vocabulary}
    plain_new = SegmentationDataset(new_train, prompts_per_image=1, max_negatives=0, **common)
    val_new = SegmentationDataset(new_val, prompts_per_image=1 + settings.max_negatives,
                                  max_negatives=settings.max_negatives, **common)
    val_replay = None
    if replay_val:
        n_prompts = max(len(r.labels) for r in replay_val) + settings.max_negatives
        val_replay = SegmentationDataset(replay_val, prompts_per_image=n_prompts,
                                         max_negatives=settings.max_negatives, **common)
    plain_replay = (SegmentationDataset(replay_train, prompts_per_image=1, max_negatives=0, **common)
                    if replay_train else None)
    cache.fill(model, [plain_new, plain_replay, val_new, val_replay], batch_size=settings.batch_size,
               progress=progress)
    keep = self_replay_labels(base_record, folder.label) if replay is not False else []
    selfs = self_replay_records(model, plain_new, keep, batch_size=settings.batch_size,
                                min_area=settings.min_area, progress=progress)
    partial = {**replay_partial_labels(replay_train), SELF_REPLAY_SOURCE: set(keep)}
    train = SegmentationDataset(new_train + replay_train + selfs, prompts_per_image=settings.prompts_per_image,
                                max_negatives=settings.max_negatives, augment=augment, partial_labels=partial,
                                **common)
    counts = {"new": len(plain_new), "replay": len(plain_replay) if plain_replay else 0, "self": len(selfs),
              "self_labels": len(keep), "val_new": len(val_new), "val_replay": len(val_replay) if val_replay else 0}
    return FinetuneSets(train, _weights(train, settings.new_share, settings.self_share), val_new, val_replay, tile,
                        augment, counts)
