"""Leave-one-source-out runs of ``segmentation_accuracy.py --leave-one-source-out``: a small proxy for a new hospital.

For each nucleus source (MoNuSeg, CoNSeP, NuCLS) and each training recipe (a config), the
recipe is trained again with that source removed from its training data — nothing else
changed except the run's length, tile size and starting point (the pretrained image encoder
and an untrained decoder: never the shipped weights, which saw every source) — and its
all-nuclei Dice is measured on the held-out source's validation images, beside the classical
baseline on the same images. Runs are short CPU runs; they rank recipes, they do not reproduce
the shipped model's accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.classical import classical_nuclei
from xpath.segmentation.metrics import dice
from xpath.segmentation.record import validation_images
from xpath.segmentation.training.config import load_config
from xpath.segmentation.training.trainer import Trainer

NUCLEUS_SOURCES = ("monuseg", "consep", "nucls")


def leave_one_out_config(recipe: str | Path, held_out: str, *, steps: int, tile_size: int, out_dir: str | Path):
    """The recipe's config without ``held_out`` in training (its ``monuseg_binary`` twin goes with MoNuSeg),
    from the pretrained encoder, for ``steps`` steps of ``tile_size`` tiles."""
    cfg = load_config(recipe)
    dropped = {held_out, f"{held_out}_binary"}
    sources = tuple(s for s in cfg.data.sources if s.get("dataset") not in dropped)
    if len(sources) == len(cfg.data.sources):
        raise ValueError(f"recipe {recipe} has no source {held_out!r} to leave out")
    data = dataclasses.replace(cfg.data, sources=sources, tile_size=tile_size, val_max_tiles=4)
    run = dataclasses.replace(cfg.train, steps=steps, val_every=0, ckpt_every=steps, keep_checkpoints=1)
    optim = dataclasses.replace(cfg.optim, warmup_steps=min(cfg.optim.warmup_steps, steps // 10))
    return dataclasses.replace(cfg, data=data, train=run, optim=optim, init_checkpoint=None, out_dir=str(out_dir))


def held_out_records(recipe: str | Path, source: str, limit: int | None) -> list:
    """The validation images of ``source`` under the recipe's rule (never trained on by any run)."""
    return next(recs for name, recs, _ in validation_images(recipe, limit) if name == source)


def leave_one_out_rows(recipes: list[str], *, steps: int, tile_size: int, runs_dir: str | Path,
                       limit: int | None = None, sources=NUCLEUS_SOURCES) -> pd.DataFrame:
    """Train every (recipe, held-out source) run (resuming finished ones) and score it; one row per image."""
    rows = []
    for source in sources:
        records = held_out_records(recipes[0], source, limit)
        for rec in records:
            rows.append({"recipe": "classical", "held_out": source, "image": rec.image_id,
                         "dice": dice(classical_nuclei(rec.image, mpp=rec.mpp) > 0, rec.instances > 0)})
        for recipe in recipes:
            out = Path(runs_dir) / f"{Path(recipe).stem}_without_{source}"
            cfg = leave_one_out_config(recipe, source, steps=steps, tile_size=tile_size, out_dir=out)
            result = Trainer(cfg, out_dir=out, progress=False).fit(resume=(out / "checkpoints").is_dir())
            model = create_model(cfg.model, checkpoint=result["checkpoint"])
            predictor = TextPromptPredictor(model, progress=False)
            for rec in records:
                seg = predictor.set_image(rec.image, mpp=rec.mpp).predict(["nuclei"], instances=False)
                rows.append({"recipe": Path(recipe).stem, "held_out": source, "image": rec.image_id,
                             "dice": dice(seg.semantic["nuclei"], rec.instances > 0)})
    return pd.DataFrame(rows)


def leave_one_out_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per held-out source × recipe, and each recipe's margin over the classical baseline."""
    table = rows.pivot_table(index="held_out", columns="recipe", values="dice", aggfunc="mean")
    for recipe in [c for c in table.columns if c != "classical"]:
        table[f"{recipe} - classical"] = table[recipe] - table["classical"]
    return table.round(3).astype(np.float64)
