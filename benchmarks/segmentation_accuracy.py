"""Accuracy of a text-prompted segmenter on the held-out images, beside a classical baseline.

    python benchmarks/segmentation_accuracy.py [--checkpoint default|PATH] [--config configs/xpath_small_default_stage7.yaml]
                                                [--limit N] [--out results.csv] [--skip-calibration]
                                                [--reliability-figure PNG]

    python benchmarks/segmentation_accuracy.py --stain-shift [--checkpoint PATH] [--compare default]
    python benchmarks/segmentation_accuracy.py --type-f1 [--checkpoint PATH] [--compare default]
    python benchmarks/segmentation_accuracy.py --test-time-flips [--stain-shift | --type-f1]
    python benchmarks/segmentation_accuracy.py --leave-one-source-out RECIPE.yaml [RECIPE.yaml ...] [--loso-steps 300]

Every section takes ``--precision float32|auto|bfloat16`` (default float32, as the library; ``auto``: bfloat16 on
a CPU with AMX, float32 elsewhere); the model card's figures are float32 unless they say otherwise.
``--test-time-flips`` adds ``--checkpoint`` decoded with test-time flips (the mean of each tile's four mirrored
views, :mod:`xpath.segmentation.inference.decoding`) beside it, in the same run.

The validation images are the ones the training config holds out (``val`` rules of its
sources: MoNuSeg test, whole CoNSeP source images, NuCLS test, EBHI slides), so the model
never trained on them. For each image every label present is prompted with its canonical
text, plus the labels of the same dataset that are absent (negatives for the presence
score; only labels the source annotates, so "absent" is known). Printed, per source and category: mean per-image Dice
(the paper's protocol), AJI and PQ for nucleus instances, presence AUROC on present vs
absent prompts, and — on the same images in the same run — the classical baseline
(haematoxylin deconvolution + Otsu + distance-transform watershed) for all-nuclei prompts.
It also checks that free-text synonyms give the same masks ("lymphocytes", "immune cells",
"inflammatory nuclei") on CoNSeP images that have inflammatory nuclei, and that prompts for
different things give different masks: the Dice between the "nuclei" and "glands" masks of
one image (1.0 when the model returns the same mask whatever it is asked).

Images that state no mpp (EBHI-Seg) are segmented at the ``assume_mpp`` of the config, as the
model was trained on them.

Knowing what it knows: prompts the model was never trained for must be refused
(``UNLEARNED``), and the presence score is checked on the validation tiles of
:mod:`xpath.segmentation.record` — per structure, the expected calibration error of the raw
score and of the checkpoint's calibration (the calibration is fitted on these tiles: for a
held-out figure see the cross-fitted ECE that ``python -m xpath.segmentation.record`` prints),
and the presence AUROC per label.
"""

from __future__ import annotations

import argparse
import itertools
import time

import pandas as pd
from sklearn.metrics import roc_auc_score

from xpath.datasets import DATASETS
from xpath.segmentation import TextPromptPredictor, check_prompt_support, create_model
from xpath.segmentation.calibration import expected_calibration_error
from xpath.segmentation.classical import classical_nuclei
from xpath.segmentation.metrics import aji, dice, panoptic_quality
from xpath.segmentation.record import calibration_report, plot_reliability, validation_images, validation_tile_rows

# prompts outside the shipped vocabulary: each must be refused
UNLEARNED = ("a cat", "asdfgh qwerty", "the moon", "mitotic figures in brain", "adipose tissue", "necrosis",
             "blood vessels", "stroma", "tumor", "tumor region", "epithelium", "red blood cells")
SYNONYMS = ("lymphocytes", "immune cells", "inflammatory nuclei")
DISTINCT = ("nuclei", "glands")  # prompts that must not give one mask
SPECIFICITY_IMAGES = 10  # per source


def evaluate(predictor, records, source: str, presence_threshold=None, marker_threshold: float = 0.4,
             assumed_mpp: float | None = None, threshold: float = 0.5) -> dict[str, list[dict]]:
    """Rows of every table for one source, each image encoded once.

    ``scores``: per image–label rows for the model and the baseline; ``presence``: one row per
    prompt; ``specificity``: the ``DISTINCT`` prompts on the first ``SPECIFICITY_IMAGES``
    images; ``synonyms``: the ``SYNONYMS`` on CoNSeP images with inflammatory nuclei.
    """
    out = {"scores": [], "presence": [], "specificity": [], "synonyms": []}
    dataset_labels = {label.prompt for label in DATASETS[source].classes.values()}
    for i, rec in enumerate(records):
        triples = rec.triples()
        present = {t.prompt: t for t in triples}
        absent = sorted(dataset_labels - set(present))
        prompts = list(present) + absent
        predictor.set_image(rec.image, mpp=rec.mpp if rec.mpp is not None else assumed_mpp)
        result = predictor.predict(prompts, presence_threshold=presence_threshold, marker_threshold=marker_threshold,
                                   threshold=threshold)
        for prompt in prompts:
            out["presence"].append(dict(source=source, prompt=prompt, present=prompt in present,
                                        score=result.presence[prompt]))
        for prompt, triple in present.items():
            row = dict(method="xpath", source=source, image=rec.image_id, category=triple.label.object,
                       prompt=prompt, dice=dice(result.semantic[prompt], triple.semantic))
            if triple.instances is not None and prompt in result.instances:
                row["aji"] = aji(triple.instances, result.instances[prompt])
                row["pq"] = panoptic_quality(triple.instances, result.instances[prompt])["pq"]
            out["scores"].append(row)
            if triple.label.object == "nucleus" and rec.mpp is not None:
                labels = classical_nuclei(rec.image, mpp=rec.mpp)
                base = dict(method="classical", source=source, image=rec.image_id, category="nucleus",
                            prompt=prompt, dice=dice(labels > 0, triple.semantic))
                if triple.instances is not None:
                    base["aji"] = aji(triple.instances, labels)
                    base["pq"] = panoptic_quality(triple.instances, labels)["pq"]
                out["scores"].append(base)
        # the image stays set: these prompts reuse its features (decoded apart: prompts attend to each other)
        if i < SPECIFICITY_IMAGES:
            distinct = predictor.predict(list(DISTINCT), instances=False)
            a, b = (distinct.semantic[p] for p in DISTINCT)
            out["specificity"].append(dict(source=source, image=rec.image_id, dice=dice(a, b), **{
                f"presence {p}": distinct.presence[p] for p in DISTINCT}))
        if source == "consep" and (rec.class_map == 2).any():  # CoNSeP class 2 = inflammatory
            synonyms = predictor.predict(list(SYNONYMS))
            for a, b in itertools.combinations(SYNONYMS, 2):
                if synonyms.semantic[a].any() or synonyms.semantic[b].any():
                    out["synonyms"].append(dict(image=rec.image_id, pair=f"{a} / {b}",
                                                dice=dice(synonyms.semantic[a], synonyms.semantic[b])))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default", help="'default' (the shipped model) or a checkpoint path")
    parser.add_argument("--config", default="configs/xpath_small_default_stage7.yaml",
                        help="training config (val split, assume_mpp)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per source")
    parser.add_argument("--out", default=None, help="write the per-image rows to this CSV")
    parser.add_argument("--marker-threshold", type=float, default=0.4,
                        help="watershed markers: distance > this (predict's marker_threshold)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="mask threshold of every prompt (default 0.5, the library's); the main and --type-f1 "
                             "sections")
    parser.add_argument("--presence-threshold", type=float, default=None,
                        help="empty the masks of prompts whose presence is below this (default: keep all)")
    parser.add_argument("--skip-calibration", action="store_true", help="skip the tile-level presence section")
    parser.add_argument("--reliability-figure", default=None, help="draw the reliability diagrams to this PNG")
    parser.add_argument("--stain-shift", action="store_true",
                        help="only the stain-shift curve: nuclei Dice on MoNuSeg test against a controlled H&E change")
    parser.add_argument("--compare", default=None,
                        help="with --stain-shift: a second checkpoint (e.g. 'default', the current release) side by side")
    parser.add_argument("--type-f1", action="store_true",
                        help="only per-type detection-and-classification F1 on CoNSeP validation (HoVer-Net protocol)")
    parser.add_argument("--stain-normalization", action="store_true",
                        help="with --stain-shift: also --checkpoint with Macenko normalisation at inference")
    parser.add_argument("--test-time-flips", action="store_true",
                        help="also --checkpoint with test-time flips (the mean of four mirrored views), side by side "
                             "(every section but the leave-one-out table)")
    parser.add_argument("--leave-one-source-out", nargs="+", default=None, metavar="RECIPE",
                        help="only the leave-one-source-out table: train each recipe config without each nucleus "
                             "source in turn and score the held-out source")
    parser.add_argument("--loso-steps", type=int, default=300, help="steps of each leave-one-out run")
    parser.add_argument("--loso-tile", type=int, default=256, help="tile size of the leave-one-out runs")
    parser.add_argument("--loso-sources", nargs="+", default=None, help="held-out sources (default all three)")
    parser.add_argument("--runs-dir", default="runs/leave_one_out", help="where the leave-one-out runs are written")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="float32",
                        help="arithmetic of the model (default float32, the library's; auto: bfloat16 on AMX CPUs)")
    args = parser.parse_args(argv)
    if args.stain_shift:
        return stain_shift_section(args)
    if args.leave_one_source_out:
        return leave_one_out_section(args)
    if args.type_f1:
        return type_f1_section(args)

    model = create_model("xpath_small", checkpoint=args.checkpoint)  # "default": the shipped weights
    predictor = TextPromptPredictor(model, precision=args.precision)
    t0 = time.perf_counter()
    tables = {"scores": [], "presence": [], "specificity": [], "synonyms": []}
    flipped = TextPromptPredictor(model, precision=args.precision, test_time_flips=True) if args.test_time_flips \
        else None
    for source, records, assumed_mpp in validation_images(args.config, args.limit):
        for name, rows in evaluate(predictor, records, source, args.presence_threshold, args.marker_threshold,
                                   assumed_mpp, args.threshold).items():
            tables[name] += rows
        if flipped is not None:  # its scores only, beside the plain ones (the other tables stay the plain model's)
            rows = evaluate(flipped, records, source, args.presence_threshold, args.marker_threshold,
                            assumed_mpp, args.threshold)["scores"]
            tables["scores"] += [{**row, "method": "xpath+flips"} for row in rows if row["method"] == "xpath"]
    scores = pd.DataFrame(tables["scores"])
    if args.out:
        scores.to_csv(args.out, index=False)

    table = scores.groupby(["source", "category", "method"])[["dice", "aji", "pq"]].mean().unstack("method")
    table.columns = [f"{metric}_{method}" for metric, method in table.columns]
    table = table.dropna(axis=1, how="all")
    counts = scores[scores.method == "xpath"].groupby(["source", "category"]).size().rename("n_pairs")
    pd.set_option("display.width", 160)
    print(f"checkpoint: {args.checkpoint}   precision: {args.precision} ({predictor.autocast_dtype or 'float32'})   "
          f"images evaluated in {time.perf_counter() - t0:.0f} s")
    print("\nMean per-image Dice / AJI / PQ (xpath vs classical baseline, same images):")
    print(table.join(counts).round(3).to_string())
    model_rows = scores[scores.method == "xpath"]
    print(f"\nxpath, mean Dice over all {len(model_rows)} image–mask pairs: {model_rows.dice.mean():.3f}")
    if flipped is not None:
        print(f"xpath+flips, the same pairs: {scores[scores.method == 'xpath+flips'].dice.mean():.3f}")
    nuclei = scores[scores.category == "nucleus"].groupby("method")["dice"].mean()
    print(f"all-nuclei pairs, xpath vs classical: {nuclei.round(3).to_dict()}")

    pres = pd.DataFrame(tables["presence"])
    print("\nPresence AUROC (present vs absent prompts):")
    for source, grp in pres.groupby("source"):
        if grp.present.nunique() == 2:
            print(f"  {source:10s} {roc_auc_score(grp.present, grp.score):.3f}  (n={len(grp)})")
    print(f"  {'all':10s} {roc_auc_score(pres.present, pres.score):.3f}  (n={len(pres)})")

    agreement = pd.DataFrame(tables["synonyms"])
    if len(agreement):
        print("\nSynonym agreement on CoNSeP validation images (pairwise Dice of the masks):")
        print(agreement.groupby("pair")["dice"].agg(["mean", "min", "count"]).round(3).to_string())

    spec = pd.DataFrame(tables["specificity"])
    print(f"\nPrompt specificity: Dice between the {DISTINCT[0]!r} and {DISTINCT[1]!r} masks of one image "
          f"(1 = the same mask whatever is asked), first {SPECIFICITY_IMAGES} images per source:")
    print(spec.drop(columns="image").groupby("source").mean().round(3).to_string())

    refused = [s for s in check_prompt_support(list(UNLEARNED), model) if not s.supported]
    print(f"\nUnlearned prompts refused: {len(refused)} of {len(UNLEARNED)}"
          + "".join(f"\n  accepted: {s.prompt!r} as {s.label.prompt!r}" for s in
                    check_prompt_support(list(UNLEARNED), model) if s.supported))
    if not args.skip_calibration:
        presence_on_tiles(model, args)


def stain_shift_section(args) -> None:
    """Print the stain-shift curve (:mod:`_stain_shift`) of ``--checkpoint`` and ``--compare`` on MoNuSeg test."""
    from _stain_shift import curve_table, stain_shift_curve

    names = {args.checkpoint: args.checkpoint}
    if args.compare:
        names[args.compare] = args.compare
    predictors = {n: TextPromptPredictor(create_model("xpath_small", checkpoint=c), progress=False,
                                         precision=args.precision) for n, c in names.items()}
    if args.test_time_flips:
        predictors[f"{args.checkpoint}+flips"] = TextPromptPredictor(
            create_model("xpath_small", checkpoint=args.checkpoint), progress=False, test_time_flips=True,
            precision=args.precision)
    if args.stain_normalization:
        predictors[f"{args.checkpoint}+macenko"] = TextPromptPredictor(
            create_model("xpath_small", checkpoint=args.checkpoint), progress=False, stain_normalization="macenko",
            precision=args.precision)
    records = next(recs for source, recs, _ in validation_images(args.config, args.limit) if source == "monuseg")
    t0 = time.perf_counter()
    rows = stain_shift_curve(predictors, records)
    if args.out:
        rows.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(f"Stain-shift curve: mean nuclei Dice on {len(records)} MoNuSeg test images, haematoxylin x (1 -/+ m), "
          f"eosin x (1 +/- m) ({time.perf_counter() - t0:.0f} s); drop = Dice at m=0 minus Dice at the largest m")
    print(curve_table(rows).round(3).to_string())


def type_f1_section(args) -> None:
    """Per-type F1 of the CoNSeP type prompts on CoNSeP validation, for ``--checkpoint`` and ``--compare``."""
    import numpy as np

    from xpath.segmentation.metrics import typed_detection_f1

    runs = [(args.checkpoint, args.checkpoint, False)] + ([(args.compare, args.compare, False)] if args.compare else [])
    if args.test_time_flips:
        runs.append((f"{args.checkpoint}+flips", args.checkpoint, True))
    records = next(recs for source, recs, _ in validation_images(args.config, args.limit) if source == "consep")
    classes = DATASETS["consep"].classes
    prompts = {c: label.prompt for c, label in classes.items()}
    rows = []
    for name, checkpoint, flips in runs:
        predictor = TextPromptPredictor(create_model("xpath_small", checkpoint=checkpoint), progress=False,
                                        precision=args.precision, test_time_flips=flips)
        gts, pred_maps, types, offset = [], {c: [] for c in prompts}, {}, 0
        for rec in records:  # pooled: the images side by side as one map, ids offset per image
            gt = np.where(rec.instances > 0, rec.instances + offset, 0)
            for i in np.unique(gt)[1:]:  # each nucleus's type: the class of most of its pixels
                types[int(i)] = classes[int(np.bincount(rec.class_map[gt == i]).argmax())].object
            seg = predictor.set_image(rec.image, mpp=rec.mpp).predict(list(prompts.values()), threshold=args.threshold)
            for c, p in prompts.items():
                pred_maps[c].append(np.where(seg.instances[p] > 0, seg.instances[p] + offset, 0))
            gts.append(gt)
            offset = int(max(gt.max(), *(m[-1].max() for m in pred_maps.values()))) + 1
        pooled = {classes[c].object: _side_by_side(maps) for c, maps in pred_maps.items()}
        rows.append({"checkpoint": name, **typed_detection_f1(_side_by_side(gts), types, pooled)})
    cols = ["f_detection"] + [f"f_{label.object}" for label in classes.values()] + ["n_gt", "n_pred", "n_paired"]
    pd.set_option("display.width", 200)
    print(f"Per-type F1 on {len(records)} CoNSeP validation images (HoVer-Net protocol, pairs at IoU > 0.5, "
          "pooled over the images):")
    print(pd.DataFrame(rows).set_index("checkpoint")[cols].round(3).to_string())


def _side_by_side(maps: list) -> "np.ndarray":
    """Label maps of different sizes placed side by side (zero-padded to the tallest)."""
    import numpy as np

    h = max(m.shape[0] for m in maps)
    return np.concatenate([np.pad(m, ((0, h - m.shape[0]), (0, 0))) for m in maps], axis=1)


def leave_one_out_section(args) -> None:
    """Print the leave-one-source-out table (:mod:`_leave_one_out`) of the recipes given."""
    from _leave_one_out import NUCLEUS_SOURCES, leave_one_out_rows, leave_one_out_table

    t0 = time.perf_counter()
    rows = leave_one_out_rows(args.leave_one_source_out, steps=args.loso_steps, tile_size=args.loso_tile,
                              runs_dir=args.runs_dir, limit=args.limit, sources=args.loso_sources or NUCLEUS_SOURCES)
    if args.out:
        rows.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    print(f"Leave-one-source-out: all-nuclei Dice on each held-out source's validation images; each recipe trained "
          f"{args.loso_steps} steps of {args.loso_tile} px tiles from the pretrained encoder without that source "
          f"({time.perf_counter() - t0:.0f} s)")
    print(leave_one_out_table(rows).to_string())


def presence_on_tiles(model, args) -> None:
    """ECE per structure (raw and calibrated) and presence AUROC per label, on the validation tiles."""
    record = model.trained_vocabulary
    raw_model = create_model("xpath_small", checkpoint=args.checkpoint)
    raw_model.trained_vocabulary = type(record)(record.labels)  # the same labels, no calibration
    predictor = TextPromptPredictor(raw_model, precision=args.precision)
    rows = pd.concat([pd.DataFrame(validation_tile_rows(predictor, records, source, assumed_mpp))
                      for source, records, assumed_mpp in validation_images(args.config, args.limit)])
    rows["calibrated"] = [record.calibrate(p, family) for p, family in zip(rows.presence, rows.family)]
    report = calibration_report(rows).set_index("family")
    report["ece_shipped"] = [expected_calibration_error(g.present.astype(int), g.calibrated)
                             for _, g in rows.groupby("family")]
    print(f"\nPresence on {len(rows)} (validation tile, annotated label) pairs; ECE in 10 equal-width bins: raw,"
          " cross-fitted calibration (fitted on the other half of the images), and the checkpoint's calibration"
          " (fitted on all these tiles, so in-sample):")
    print(report.round(3).to_string())
    print("Presence AUROC per label (positive = the label is in the tile's ground truth):")
    for prompt, grp in rows.groupby("prompt"):
        auc = roc_auc_score(grp.present, grp.presence) if grp.present.nunique() == 2 else float("nan")
        print(f"  {prompt:48s} {auc:.3f}  (n={len(grp)}, present {int(grp.present.sum())})")
    if args.reliability_figure:
        plot_reliability(rows, args.reliability_figure)


if __name__ == "__main__":
    main()
