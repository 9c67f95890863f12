"""What a fine-tune writes about itself: the trained-label record, the checkpoint's ``finetune`` entry, the model card.

- The **record** (:class:`~xpath.segmentation.support.ModelVocabulary`): the base model's trained
  labels as they were (their recorded accuracy, measured on the base model's own validation
  data), plus the new label with its Dice on the held-out new images. The presence calibration
  of the base model is kept.
- The checkpoint's ``extra["finetune"]`` entry: data, images, steps, minutes, the settings, and the
  Dice before and after of the new label (held-out new images) and of every old label (the
  replay sample's validation part).
- The **model card**, ``MODEL.md`` beside ``MODEL.pt``: the same in a page a person reads.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

__all__ = ["changes_table", "finetune_record", "write_model_card"]


def _dice(result: dict | None, prompt: str) -> tuple[float, int]:
    found = ((result or {}).get("per_category") or {}).get(prompt)
    return (float(found["dice"]), int(found["n"])) if found else (math.nan, 0)


def changes_table(before: dict | None, after: dict | None) -> pd.DataFrame:
    """Per label of two :func:`~xpath.segmentation.training.validation.validation_dice` results: Dice before, after,
    their difference and the number of (tile, label) pairs."""
    prompts = sorted(set((before or {}).get("per_category", {})) | set((after or {}).get("per_category", {})))
    rows = []
    for p in prompts:
        b, n = _dice(before, p)
        a, n_after = _dice(after, p)
        rows.append({"label": p, "dice_before": b, "dice_after": a, "change": a - b, "n": max(n, n_after)})
    return pd.DataFrame(rows, columns=["label", "dice_before", "dice_after", "change", "n"])


def finetune_record(base_record, label, new_after: dict):
    """The new checkpoint's record: the base model's labels unchanged, ``label`` with its held-out Dice."""
    from ..support import ModelVocabulary, TrainedLabel

    dice, n = _dice(new_after, label.prompt)
    old = [t for t in (base_record.labels if base_record is not None else ()) if t.label != label]
    labels = tuple(sorted([*old, TrainedLabel(label, dice=dice, n_val=n)], key=lambda t: t.label))
    calibration = dict(base_record.presence_calibration) if base_record is not None else {}
    return ModelVocabulary(labels, calibration)


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def write_model_card(path: str | Path, summary: dict, old: pd.DataFrame, new: pd.DataFrame) -> Path:
    """Write the markdown model card of a fine-tuned checkpoint (``summary``: the ``finetune`` entry)."""
    from ...io import atomic_path

    path = Path(path)
    s = summary
    label = s["label"]
    lines = [
        f"# Model card: `{Path(s['checkpoint']).name}` — `{s['base']}` taught `{label}`",
        "",
        (f"Fine-tuned with `xpath finetune` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Use it like any xpath "
        "checkpoint:"),
        "",
        "```python",
        "from xpath.segmentation import segment",
        f"seg = segment(image, [{s['prompt']!r}], model={str(s['checkpoint'])!r}, mpp=MPP)",
        "```",
        "",
        f"or `xpath segment IMAGE --prompt {s['prompt']!r} --model {s['checkpoint']} --out DIR`.",
        "",
        "## What was taught",
        "",
        "| | |",
        "|---|---|",
        f"| prompt | `{s['prompt']}` → label `{label}` |",
        f"| base model | `{s['base']}` |",
        f"| data | images `{s['data']['images']}`, {s['data']['kind']} `{s['data']['annotations']}` |",
        (f"| images | {len(s['train_images'])} trained on, {len(s['val_images'])} held out (by file, seed {s['seed']}):"
        f" {', '.join(s['val_images'])} |"),
        f"| pixel size | {s['mpp']} µm/px (the model works at {s['model_mpp']} µm/px: images resized to it) |",
        (f"| training | {s['steps']} steps of {s['settings']['batch_size']} tiles of {s['settings']['tile_size']} px, "
        f"{s['minutes']:.1f} min on {s['device']}; trained: {', '.join(s['settings']['trainable'])} "
        "(image and text encoders frozen) |"),
        f"| replay | {s['replay']} |",
        "",
        "## Accuracy before and after",
        "",
        f"The new label, Dice on the held-out images' tiles ({s['model_mpp']} µm/px, {s['settings']['tile_size']} px):",
        "",
        "| label | before | after | pairs |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{r.label}` | {_fmt(r.dice_before)} | {_fmt(r.dice_after)} | {r.n} |" for r in new.itertuples()]
    lines += [
        "",
        "The old labels, Dice on the validation part of the replay sample (images the base model never trained on):",
        "",
        "| label | before | after | change | pairs |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{r.label}` | {_fmt(r.dice_before)} | {_fmt(r.dice_after)} | {r.change:+.3f} | {r.n} |"
              for r in old.itertuples()]
    if old.empty:
        lines.append("| (not measured: no replay) | | | | |")
    lines += [
        "",
        "## Limits",
        "",
        (f"- Measured on {len(s['val_images'])} held-out image(s) of the same folder: expect lower accuracy on other "
        "scanners, stains and labs until it is measured there."),
        ("- The old labels keep their recorded accuracy (`xpath prompts --model` lists it); the table above is the "
        "check that fine-tuning did not change them."),
        ("- Licences: the replay images keep their sources' terms (mostly non-commercial research use, see "
        "`xpath/segmentation/training/replay_data/PROVENANCE.md`), and so does this model; add the terms of your "
        "own data."),
        "",
    ]
    with atomic_path(path, suffix=".md") as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    return path
