"""Choose the watershed's marker threshold on training images, never on the held-out ones.

    python benchmarks/segmentation_marker_sweep.py [--checkpoint default|PATH] [--thresholds 0.2 0.3 0.4 0.5]

Runs the model's "nuclei" prompt on the MoNuSeg **training** images (encoded once each) and
prints, per ``marker_threshold`` of :meth:`~xpath.segmentation.TextPromptPredictor.predict`,
the mean Dice and AJI against the annotations, beside the default (0.4). The held-out effect
of a chosen value is then measured with
``benchmarks/segmentation_accuracy.py --marker-threshold T``.
"""

from __future__ import annotations

import argparse

import numpy as np

from xpath.datasets import iter_dataset
from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.metrics import aji, dice

DEFAULT = 0.4


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default", help="'default' (the shipped model) or a checkpoint path")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.35, 0.4, 0.5])
    args = parser.parse_args(argv)
    thresholds = sorted(set(args.thresholds) | {DEFAULT})

    predictor = TextPromptPredictor(create_model("xpath_small", checkpoint=args.checkpoint), cache_tiles=64)
    scores = {t: [] for t in thresholds}
    for record in iter_dataset("monuseg", split="train"):
        predictor.set_image(record.image, mpp=record.mpp)
        for t in thresholds:
            seg = predictor.predict(["nuclei"], marker_threshold=t)
            scores[t].append((dice(record.instances > 0, seg.semantic["nuclei"]),
                              aji(record.instances, seg.instances["nuclei"])))
    base_aji = np.mean(scores[DEFAULT], axis=0)[1]
    print(f"MoNuSeg training images (n={len(scores[DEFAULT])}), prompt 'nuclei', checkpoint {args.checkpoint}")
    print(f"{'marker_threshold':>17}{'Dice':>8}{'AJI':>8}{'AJI vs default':>16}")
    for t in thresholds:
        d, a = np.mean(scores[t], axis=0)
        print(f"{t:>17.2f}{d:>8.3f}{a:>8.3f}{a - base_aji:>+16.3f}" + ("   (default)" if t == DEFAULT else ""))


if __name__ == "__main__":
    main()
