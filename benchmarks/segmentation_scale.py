"""Accuracy cost of running nuclei at 0.5 µm/px (a 20× slide as it is) instead of upsampling it to 0.25.

    python benchmarks/segmentation_scale.py [--limit 10] [--config configs/xpath_small_default_stage7.yaml]
                                            [--model-mpp 0.5 0.35]

Uses the held-out images of the training config (``segmentation_accuracy.validation_images``:
MoNuSeg test, CoNSeP, NuCLS test — the sources that state an mpp near 0.25). Each image is
first made a 20× image: resized to 0.5 µm/px (area filter), its ground truth by nearest
neighbour. Then, on the same images in the same run:

- ``upsampled`` (today's default): ``TextPromptPredictor(model)``; the 0.5 µm/px image is
  upsampled 2× to the model's 0.25 µm/px (4× the tiles) and the masks mapped back;
- ``at 0.5``: ``TextPromptPredictor(model, mpp=0.5)``; the model runs on the 0.5 µm/px
  pixels as they are;
- ``at M`` for each other ``--model-mpp M`` (e.g. 0.35: the 20× image upsampled 1.43×, half the
  tiles of the default).

Printed per source: mean per-image Dice and AJI of every nucleus prompt present (the paper's
protocol), both ways, the difference, and tiles encoded. A working scale becomes the default
for 20× input only if its Dice cost is ≤ 0.02.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from segmentation_accuracy import validation_images

from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.metrics import aji, dice

TARGET_MPP = 0.5


def to_20x(image: np.ndarray, masks: list[np.ndarray], mpp: float):
    """The image resized to TARGET_MPP (area filter) and the masks by nearest neighbour."""
    from PIL import Image as PILImage

    scale = mpp / TARGET_MPP
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    small = np.asarray(PILImage.fromarray(image).resize((w, h), PILImage.Resampling.BOX))
    ri = np.minimum(((np.arange(h) + 0.5) / scale).astype(int), image.shape[0] - 1)
    ci = np.minimum(((np.arange(w) + 0.5) / scale).astype(int), image.shape[1] - 1)
    return small, [None if m is None else m[ri][:, ci] for m in masks]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/xpath_small_default_stage7.yaml")
    parser.add_argument("--limit", type=int, default=10, help="images per source")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--model-mpp", type=float, nargs="+", default=[TARGET_MPP],
                        help="working scales (µm/px) to compare with the default upsampling")
    args = parser.parse_args(argv)
    model = create_model("xpath_small", checkpoint=args.checkpoint)
    ways = {"upsampled": TextPromptPredictor(model),
            **{f"at {m:g}": TextPromptPredictor(model, mpp=m) for m in args.model_mpp}}
    rows = []
    t0 = time.perf_counter()
    for source, records, _ in validation_images(args.config, args.limit):
        for rec in records:
            if rec.mpp is None or not 0.2 <= rec.mpp <= 0.3:
                continue  # only images at about 40× become a faithful 20× image
            triples = [t for t in rec.triples() if t.label.structure == "nuclei"]
            if not triples:
                continue
            image, masks = to_20x(rec.image, [t.semantic for t in triples] + [t.instances for t in triples],
                                  rec.mpp)
            sem, inst = masks[: len(triples)], masks[len(triples):]
            prompts = [t.prompt for t in triples]
            for way, predictor in ways.items():
                before = predictor.tiles_encoded
                result = predictor.set_image(image, mpp=TARGET_MPP).predict(prompts)
                for t, s, g in zip(triples, sem, inst):
                    row = {"source": source, "image": rec.image_id, "prompt": t.prompt, "way": way,
                           "dice": dice(result.semantic[t.prompt], s), "tiles": predictor.tiles_encoded - before}
                    if g is not None and t.prompt in result.instances:
                        row["aji"] = aji(g, result.instances[t.prompt])
                    rows.append(row)
    scores = pd.DataFrame(rows)
    table = scores.groupby(["source", "way"])[["dice", "aji"]].mean().unstack("way")
    pd.set_option("display.width", 160)
    print(f"{scores.image.nunique()} images, {len(scores) // len(ways)} image–prompt pairs, "
          f"{time.perf_counter() - t0:.0f} s")
    print(table.round(3).to_string())
    overall = scores.groupby("way")[["dice", "aji"]].mean()
    tiles = scores.drop_duplicates(["image", "way"]).groupby("way")["tiles"].sum()
    print("\nall pairs:")
    print(overall.join(tiles).round(3).to_string())
    up = overall.loc["upsampled"]
    for m in args.model_mpp:
        way = overall.loc[f"at {m:g}"]
        print(f"cost of running at {m:g} µm/px: Dice {up.dice - way.dice:+.3f}, AJI {up.aji - way.aji:+.3f} "
              f"(positive = worse), tiles {tiles[f'at {m:g}']} vs {tiles['upsampled']}")


if __name__ == "__main__":
    main()
