"""Choose the watershed's marker threshold and the mask thresholds on training images, never on held-out ones.

    python benchmarks/segmentation_marker_sweep.py [--checkpoint default|PATH] [--marker-thresholds 0.35 0.4]
                                                   [--mask-thresholds 0.3 0.35 0.4 0.5]
                                                   [--config configs/xpath_small_default_stage10.yaml]
                                                   [--sources monuseg consep nucls] [--limit 30]
                                                   [--gland-sources ebhi glas] [--gland-limit 25]

Nuclei: the model's "nuclei" prompt on the **training** part of each nucleus source of the config (the images
its ``val`` rule does not hold out, with at least one nucleus; at most ``--limit`` per source, a seeded sample;
each encoded once), scored per ``marker_threshold`` and mask ``threshold`` of
:meth:`~xpath.segmentation.TextPromptPredictor.predict`: mean Dice and AJI per source, their mean over the
sources (each source counts once, however many images it has: a value chosen for one lab's nuclei is not a
default) and its difference to the current defaults. Glands: the "glands" prompt on training images of each gland
source (``--gland-limit`` per source), mean Dice per mask threshold. The held-out effect of a choice must then be
measured with ``benchmarks/segmentation_accuracy.py --threshold T --marker-threshold M`` before it becomes a
default: on the images it trained on the model's rims are not those of new images (docs/model_card.md, "Mask
thresholds": 0.35 gained on the CoNSeP and NuCLS training images, tied on MoNuSeg's, and lost on the
held-out images).
"""

from __future__ import annotations

import argparse

import pandas as pd
from segmentation_regions import training_images

from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.metrics import aji, dice
from xpath.segmentation.training.config import load_config

DEFAULT = (0.4, 0.5)  # (marker_threshold, threshold) of TextPromptPredictor.predict
TISSUE_THRESHOLD = 0.5  # predict()'s mask threshold, for glands too


def has_nuclei(image) -> bool:
    """Instances and an mpp, and at least one nucleus (on an image without any, Dice and AJI are 0 or 1 whatever
    the threshold)."""
    return image.instances is not None and image.instances.any() and image.mpp is not None


def nuclei_table(predictor, images: dict, grid: list) -> pd.DataFrame:
    rows = []
    for source, records in images.items():
        for record in records:
            predictor.set_image(record.image, mpp=record.mpp)
            for m, t in grid:
                seg = predictor.predict(["nuclei"], marker_threshold=m, threshold=t)
                rows.append({"source": source, "marker_threshold": m, "threshold": t,
                             "dice": dice(record.instances > 0, seg.semantic["nuclei"]),
                             "aji": aji(record.instances, seg.instances["nuclei"])})
    per_source = pd.DataFrame(rows).groupby(["marker_threshold", "threshold", "source"])[["dice", "aji"]].mean(
    ).unstack("source")
    table = pd.concat({"AJI": per_source["aji"], "Dice": per_source["dice"]}, axis=1)
    table[("AJI", "mean of sources")] = per_source["aji"].mean(axis=1)
    table[("AJI", "vs default")] = table[("AJI", "mean of sources")] - table.loc[DEFAULT, ("AJI", "mean of sources")]
    return table


def gland_table(predictor, images: dict, thresholds: list, assume_mpp: dict) -> pd.DataFrame:
    rows = []
    for source, records in images.items():
        for record in records:
            predictor.set_image(record.image, mpp=record.mpp if record.mpp is not None else assume_mpp.get(source))
            (truth,) = [t.semantic for t in record.triples() if t.label.structure == "tissue"]
            for t in thresholds:
                seg = predictor.predict(["glands"], threshold=t)
                rows.append({"source": source, "threshold": t, "dice": dice(truth, seg.semantic["glands"])})
    table = pd.DataFrame(rows).groupby(["threshold", "source"])["dice"].mean().unstack("source")
    table["mean of sources"] = table.mean(axis=1)
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default", help="'default' (the shipped model) or a checkpoint path")
    parser.add_argument("--config", default="configs/xpath_small_default_stage10.yaml",
                        help="training config whose sources' training parts are swept")
    parser.add_argument("--sources", nargs="+", default=["monuseg", "consep", "nucls"])
    parser.add_argument("--limit", type=int, default=30, help="at most this many training images per nucleus source")
    parser.add_argument("--marker-thresholds", type=float, nargs="+", default=[0.35, 0.4, 0.45])
    parser.add_argument("--mask-thresholds", type=float, nargs="+", default=[0.3, 0.35, 0.4, 0.5])
    parser.add_argument("--gland-sources", nargs="*", default=["ebhi", "glas"])
    parser.add_argument("--gland-limit", type=int, default=25, help="at most this many training images per gland source")
    args = parser.parse_args(argv)
    grid = sorted({(m, t) for m in args.marker_thresholds for t in args.mask_thresholds} | {DEFAULT})
    predictor = TextPromptPredictor(create_model("xpath_small", checkpoint=args.checkpoint), cache_tiles=64)
    pd.set_option("display.width", 200)

    images = {s: training_images(args.config, s, args.limit, seed=0, keep=has_nuclei) for s in args.sources}
    counts = ", ".join(f"{s} {len(r)}" for s, r in images.items())
    print(f"Nuclei: training images of {args.config} ({counts}), prompt 'nuclei', checkpoint {args.checkpoint}; "
          f"defaults marker_threshold {DEFAULT[0]}, threshold {DEFAULT[1]}")
    print(nuclei_table(predictor, images, grid).round(3).to_string())
    if args.gland_sources:
        glands = {s: training_images(args.config, s, args.gland_limit, seed=0) for s in args.gland_sources}
        counts = ", ".join(f"{s} {len(r)}" for s, r in glands.items())
        thresholds = sorted(set(args.mask_thresholds) | {TISSUE_THRESHOLD})
        print(f"\nGlands: training images ({counts}), prompt 'glands', mean Dice per mask threshold (default "
              f"{TISSUE_THRESHOLD})")
        print(gland_table(predictor, glands, thresholds, load_config(args.config).data.assume_mpp).round(4).to_string())


if __name__ == "__main__":
    main()
