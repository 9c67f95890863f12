"""How tissue-level masks are cleaned: gland Dice for a grid of speck and hole sizes, on training and held-out images.

    python benchmarks/segmentation_regions.py [--checkpoint default|PATH] [--config configs/xpath_small_default_stage10.yaml]
                                              [--train-images 40] [--seed 0]

For every gland source of the config (EBHI, GlaS) the glands prompt is decoded once per image with the
region cleanup off (:mod:`xpath.segmentation.inference.regions`); each (``min_area_um2``, ``max_hole_um2``)
pair is then applied to the same mask and scored against the ground truth. Two parts per source:

- ``train``: a seeded sample of ``--train-images`` images the model trained on — where the sizes are
  chosen, from the plateau of pairs whose mean Dice over the sources is within ``TIE`` of the best;
- ``val``: the held-out part of the config — where the choice is confirmed, never made.

The sweep cleans the mask at the input resolution; the ``library`` row is ``predict``'s own answer with the
default sizes, cleaned at the model's resolution (as users get it). The ``0 / 0`` row is the mask as
thresholded; the row marked ``*`` is the default (``REGION_MIN_UM2`` / ``REGION_HOLE_UM2`` of
:mod:`xpath.segmentation.inference.regions`). Also printed: the time of ``predict`` with the default cleanup
against without it, on the same cached features (median ratio per image).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from xpath.datasets import load_dataset
from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.inference.regions import REGION_HOLE_UM2, REGION_MIN_UM2, clean_regions
from xpath.segmentation.metrics import dice
from xpath.segmentation.record import validation_images
from xpath.segmentation.training.config import load_config, split_validation

MIN_AREAS_UM2 = (0.0, 100.0, 200.0, 500.0)
HOLES_UM2 = (0.0, 1000.0, 5000.0, 20000.0)
GLAND_SOURCES = ("ebhi", "glas")
TIE = 0.002  # training-image mean Dice within which size pairs are not told apart


def training_images(config, source: str, n: int, seed: int, keep=None) -> list:
    """A seeded sample of ``n`` records of ``source`` that the config trains on (not held out) and that
    ``keep(record)`` accepts (all, by default)."""
    cfg = load_config(config)
    found = [s for s in cfg.data.sources if s.get("dataset") == source]
    if len(found) != 1:
        raise ValueError(f"{source!r} must be one source of {config}, found {len(found)}")
    (src,) = found
    records = load_dataset(source)
    held_out = split_validation([r.image_id for r in records], [r.split for r in records], src.get("val", "none"))
    trained = [r for r, v in zip(records, held_out) if not v and (keep is None or keep(r))]
    chosen = np.random.default_rng(seed).choice(len(trained), size=min(n, len(trained)), replace=False)
    return [trained[i] for i in sorted(chosen)]


def score(predictor, records, source: str, part: str, assumed_mpp: float | None) -> tuple[list[dict], list[float]]:
    """Per image, the Dice of the glands mask for each size pair and of the library's own answer; per image, the
    time of ``predict`` with the default cleanup against without it (features cached: decode and cleanup only)."""
    rows, ratios = [], []
    for rec in records:
        tissue = [t for t in rec.triples() if t.label.structure == "tissue"]
        if not tissue:
            continue
        (truth,) = tissue
        mpp = rec.mpp if rec.mpp is not None else assumed_mpp
        predictor.set_image(rec.image, mpp=mpp)
        t0 = time.perf_counter()
        raw = predictor.predict([truth.prompt], region_min_um2=0, region_hole_um2=0).semantic[truth.prompt]
        t1 = time.perf_counter()
        library = predictor.predict([truth.prompt]).semantic[truth.prompt]
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
        base = dict(source=source, part=part, image=rec.image_id)
        rows.append(dict(base, pair="library", dice=dice(library, truth.semantic)))
        for min_um2, hole_um2 in itertools.product(MIN_AREAS_UM2, HOLES_UM2):
            # on the mask at the input resolution (the library cleans at the model's): µm² mean the same at both
            cleaned = clean_regions(raw.copy(), mpp, min_area_um2=min_um2, max_hole_um2=hole_um2)
            rows.append(dict(base, pair=(min_um2, hole_um2), dice=dice(cleaned, truth.semantic)))
    return rows, ratios


def sweep_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, float, list[tuple[float, float]]]:
    """Mean Dice per size pair (rows) and source/part (columns) with the training mean; its best and the pairs
    within ``TIE`` of it."""
    table = frame.groupby(["pair", "source", "part"], sort=False)["dice"].mean().unstack(["source", "part"])
    table["train mean"] = table.xs("train", axis=1, level="part").mean(axis=1)
    sweep = table.drop(index="library")["train mean"]
    best = float(sweep.max())
    plateau = [pair for pair, mean in sweep.items() if mean >= best - TIE]
    table.index = ["library (default, at the model's resolution)" if p == "library" else
                   f"{p[0]:g} / {p[1]:g}" + (" *" if p == (REGION_MIN_UM2, REGION_HOLE_UM2) else "") for p in table.index]
    return table, best, plateau


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default", help="'default' (the shipped weights) or a checkpoint path")
    ap.add_argument("--config", default="configs/xpath_small_default_stage10.yaml",
                    help="training config: its held-out part is 'val', a sample of the rest 'train'")
    ap.add_argument("--train-images", type=int, default=40, help="training images per source")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    predictor = TextPromptPredictor(create_model("xpath_small", checkpoint=args.checkpoint), cache_tiles=64)
    rows, ratios = [], {}
    for source, held_out, assumed_mpp in validation_images(args.config):
        if source not in GLAND_SOURCES:
            continue
        for part, records in (("train", training_images(args.config, source, args.train_images, args.seed)),
                              ("val", held_out)):
            found, ratio = score(predictor, records, source, part, assumed_mpp)
            rows += found
            ratios[source] = ratios.get(source, []) + ratio
    frame = pd.DataFrame(rows)
    table, best, plateau = sweep_table(frame)
    images = frame.groupby(["source", "part"])["image"].nunique()
    print(f"checkpoint: {args.checkpoint}; images per source and part: {images.to_dict()}")
    print("\nMean gland Dice per image, min_area_um2 / max_hole_um2 (* = the library's default; the sweep on the mask "
          "at the input resolution):")
    print(table.round(3).to_string())
    print(f"\nbest training mean {best:.3f}; within {TIE} of it: " + ", ".join(f"{a:g} / {b:g}" for a, b in plateau))
    for source, r in ratios.items():
        print(f"predict() with the default cleanup / without, {source}: median {np.median(r):.2f}x over {len(r)} images")


if __name__ == "__main__":
    main()
