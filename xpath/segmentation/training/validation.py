"""Validation of a training run: Dice per category on the validation tiles, and the autocast both use."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..metrics import dice
from .dataset import SegmentationDataset, collate_batch

__all__ = ["validation_dice"]


def validation_dice(model, dataset: SegmentationDataset, *, batch_size: int = 4, max_tiles: int | None = None,
                    amp_dtype=None, progress: bool = False) -> dict:
    """Dice per category of a model on a validation dataset.

    Every present prompt of every tile gives one image–mask pair (mask = sigmoid > 0.5);
    Dice is averaged per category (canonical prompt), per source and overall (the
    paper's protocol, on tiles). Presence accuracy is reported over all valid prompts.

    Returns
    -------
    dict
        ``{"dice": float, "presence_acc": float, "n_pairs": int,
        "per_category": {prompt: {"dice": float, "n": int}}, "per_source": {...}}``.
    """
    index = np.arange(len(dataset))
    if max_tiles is not None and len(index) > max_tiles:
        index = np.linspace(0, len(index) - 1, max_tiles).round().astype(int)
    rows, presence_hits, presence_n = [], 0, 0
    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(index), batch_size), desc="validate", disable=not progress, leave=False):
            batch = collate_batch([dataset[int(i)] for i in index[start:start + batch_size]])
            with torch.no_grad(), _autocast(model.device, amp_dtype):
                out = model(model.preprocess(batch["image"].numpy()), batch["prompts"])
            pred = (out.mask_logits.float() > 0).cpu().numpy()
            pres = (out.presence_logits.float() > 0).cpu().numpy()
            target = batch["masks"].numpy().astype(bool)
            valid, present = batch["prompt_valid"].numpy(), batch["present"].numpy() > 0.5
            presence_hits += int((pres == present)[valid].sum())
            presence_n += int(valid.sum())
            for b, q in zip(*np.nonzero(valid & present)):
                category = batch["labels"][b][q].prompt  # canonical, whatever text was prompted
                rows.append((category, batch["source"][b], float(dice(pred[b, q], target[b, q]))))
    finally:
        model.train(was_training)
    per_cat: dict = {}
    per_src: dict = {}
    for prompt, source, value in rows:
        per_cat.setdefault(prompt, []).append(value)
        per_src.setdefault(source, []).append(value)
    summary = lambda groups: {k: {"dice": float(np.mean(v)), "n": len(v)} for k, v in sorted(groups.items())}
    return {
        "dice": float(np.mean([r[2] for r in rows])) if rows else float("nan"),
        "presence_acc": presence_hits / presence_n if presence_n else float("nan"),
        "n_pairs": len(rows),
        "per_category": summary(per_cat),
        "per_source": summary(per_src),
    }


def _autocast(device: torch.device, dtype):
    """bf16 (or ``dtype``) autocast on ``device``; no autocast when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
