"""Box- and point-prompted objects on held-out images, beside the text-only answer and the filled box.

    python benchmarks/segmentation_spatial.py [--checkpoint default|PATH] [--config configs/xpath_small_default_stage7.yaml]
                                              [--max-objects 60] [--limit N] [--seed 0] [--out rows.csv]
                                              [--decoder]

Prompts come from the ground truth of the images the config holds out (never trained on):

- **nuclei** (MoNuSeg test): one box per annotated nucleus, each side jittered by up to ±10 % of
  its length (as in training); and one positive point at the nucleus's deepest pixel;
- **glands** (the EBHI and GlaS validation parts): one box per connected gland of at least
  ``MIN_GLAND_AREA_UM2``;
- **nuclei, rule-choice rows** (the CoNSeP and NuCLS validation parts, ``RULE_SOURCES``): the same
  prompts as MoNuSeg. The keep rules of :mod:`xpath.segmentation.inference.objects` (threshold,
  box-size structure choice, a click's share of a clump and its reach) were chosen on these, so they
  are not a test;
  their prompts are drawn from a generator of their own, so that the other rows keep their objects.

For every object, in the same run:

- ``box`` / ``point``: IoU of ``predict_objects`` with the object;
- ``text``: IoU of the best-overlapping object of the text-only answer ("nuclei" instances,
  connected components of "glands") — what the model gave before any box;
- ``filled_box``: IoU of the box itself (filled) with the object — the baseline a box must beat.

Printed: mean IoU per source and prompt kind, and the ratio of ``predict_objects`` time to
text-only time on the same images. A checkpoint whose box path was not trained answers boxes from
its text answer (see :mod:`xpath.segmentation.inference.objects`); ``--decoder`` forces the object
decoder instead (``config.spatial_trained = True``: for a checkpoint trained with spatial prompts
before the flag existed, such as stage 7, or to measure the untrained path).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import ndimage

from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.record import validation_images

NUCLEI_SOURCES = {"monuseg": "nuclei"}
RULE_SOURCES = {"consep": "nuclei", "nucls": "nuclei"}  # where the keep rules were chosen (not a test)
GLAND_SOURCES = {"ebhi": "glands", "glas": "glands"}
_NUCLEUS_PROMPTS = {**NUCLEI_SOURCES, **RULE_SOURCES}  # every source prompted per nucleus
MIN_GLAND_AREA_UM2 = 500.0
JITTER = 0.1


def gt_objects(rec, source: str, mpp: float) -> np.ndarray:
    """``(H, W)`` int map of the objects to prompt: nucleus instances, or connected glands."""
    if source in _NUCLEUS_PROMPTS:
        return rec.instances
    labels, n = ndimage.label(rec.class_map > 0)
    areas = np.bincount(labels.ravel(), minlength=n + 1) * mpp ** 2
    small = areas < MIN_GLAND_AREA_UM2
    small[0] = True
    labels[small[labels]] = 0
    return labels


def object_prompts(objects: np.ndarray, ids: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jittered boxes ``(N, 4)``, exact boxes ``(N, 4)`` and central points ``(N, 1, 2)`` of the objects ``ids``."""
    h, w = objects.shape
    slices = ndimage.find_objects(objects)
    exact = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in (slices[i - 1] for i in ids)], float)
    side = np.concatenate([exact[:, 2:] - exact[:, :2]] * 2, 1)
    jittered = exact + rng.uniform(-JITTER, JITTER, exact.shape) * side
    jittered[:, :2] = np.clip(jittered[:, :2], 0, [w - 1, h - 1])
    jittered[:, 2:] = np.clip(np.maximum(jittered[:, 2:], jittered[:, :2] + 1), 0, [w, h])
    points = np.zeros((len(ids), 1, 2))
    for k, i in enumerate(ids):
        y0, x0 = slices[i - 1][0].start, slices[i - 1][1].start
        depth = ndimage.distance_transform_edt(np.pad(objects[slices[i - 1]] == i, 1))[1:-1, 1:-1]
        cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
        points[k, 0] = (x0 + cx + 0.5, y0 + cy + 0.5)
    return jittered, exact, points


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def best_overlap_iou(truth: np.ndarray, answer: np.ndarray) -> float:
    """IoU of ``truth`` with the ``answer`` object (label map) that overlaps it most."""
    hit = answer[truth]
    hit = hit[hit > 0]
    if hit.size == 0:
        return 0.0
    return _iou(truth, answer == np.bincount(hit).argmax())


def evaluate_image(predictor, rec, source: str, mpp: float, rng, max_objects: int) -> tuple[list[dict], dict]:
    """Rows (one per object and prompt kind) and the timings of one image."""
    objects = gt_objects(rec, source, mpp)
    ids = np.unique(objects)[1:]
    if ids.size == 0:
        return [], {}
    ids = np.sort(rng.choice(ids, min(max_objects, ids.size), replace=False))
    boxes, exact, points = object_prompts(objects, ids, rng)
    predictor.set_image(rec.image, mpp=mpp)
    prompt = _NUCLEUS_PROMPTS.get(source) or GLAND_SOURCES[source]
    t0 = time.perf_counter()
    text = predictor.predict([prompt])
    t_text = time.perf_counter() - t0
    answer = text.instances[prompt] if prompt in text.instances else ndimage.label(text.semantic[prompt])[0]
    t0 = time.perf_counter()
    by_box = predictor.predict_objects(boxes=boxes)
    t_box = time.perf_counter() - t0
    by_point = predictor.predict_objects(points=points) if source in _NUCLEUS_PROMPTS else None
    rows = []
    for k, i in enumerate(ids):
        truth = objects == i
        filled = np.zeros_like(truth)
        x0, y0, x1, y1 = np.round(boxes[k]).astype(int)
        filled[y0:y1, x0:x1] = True
        row = {"source": source, "image_id": rec.image_id, "object": int(i), "area_px": int(truth.sum()),
               "box": _iou(truth, by_box.masks[k]), "text": best_overlap_iou(truth, answer),
               "filled_box": _iou(truth, filled)}
        if by_point is not None:
            row["point"] = _iou(truth, by_point.masks[k])
        rows.append(row)
    return rows, {"text_s": t_text, "box_s": t_box}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="default", help="'default' (the shipped weights) or a checkpoint path")
    ap.add_argument("--config", default="configs/xpath_small_default_stage7.yaml",
                    help="training config whose held-out images are used")
    ap.add_argument("--max-objects", type=int, default=60, help="objects prompted per image (a random subset)")
    ap.add_argument("--limit", type=int, default=None, help="images per source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the per-object rows to this CSV")
    ap.add_argument("--decoder", action="store_true", help="decode boxes and points by the object decoder")
    args = ap.parse_args(argv)

    model = create_model("xpath_small", checkpoint=args.checkpoint)
    if args.decoder:
        model.config.spatial_trained = True
    print(f"spatial prompts: {'object decoder' if model.config.spatial_trained else 'from the text answer'}")
    predictor = TextPromptPredictor(model, progress=False)
    rng = np.random.default_rng(args.seed)
    rule_rng = np.random.default_rng([args.seed, 1])
    rows, times = [], []
    for source, records, assumed in validation_images(args.config, limit=args.limit):
        if source not in _NUCLEUS_PROMPTS and source not in GLAND_SOURCES:
            continue
        for rec in records:
            mpp = rec.mpp if rec.mpp is not None else assumed
            got, t = evaluate_image(predictor, rec, source, mpp, rule_rng if source in RULE_SOURCES else rng,
                                    args.max_objects)
            rows += got
            if t:
                times.append(t)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    kinds = [c for c in ("box", "point", "text", "filled_box") if c in table]
    summary = table.groupby("source")[kinds].mean().round(3)
    summary.insert(0, "objects", table.groupby("source").size())
    summary.insert(1, "images", table.groupby("source")["image_id"].nunique())
    summary.insert(2, "role", ["rules chosen" if s in RULE_SOURCES else "test" for s in summary.index])
    pd.set_option("display.width", 160)
    print("mean IoU per object (box/point: predict_objects; text: text-only answer; filled_box: the box itself)")
    print(summary.to_string())
    t = pd.DataFrame(times)
    print(f"\npredict_objects (all boxes of an image) / text-only predict: median time ratio "
          f"{float((t['box_s'] / t['text_s']).median()):.2f} over {len(t)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
