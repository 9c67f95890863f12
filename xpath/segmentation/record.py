"""Measure a checkpoint on its held-out validation tiles and record what it knows in the file.

    python -m xpath.segmentation.record CHECKPOINT --config CONFIG [--out PATH] [--limit N]
                                        [--rows ROWS.csv] [--figure RELIABILITY.png]

The record (:class:`~xpath.segmentation.support.ModelVocabulary`) lists the labels the model
was trained on — every label with a mask in the training part of the config's sources —
each with its accuracy on the validation part (the config's ``val`` rules: MoNuSeg test,
held-out CoNSeP images, NuCLS test, held-out EBHI slides), and an isotonic calibration of
the presence score per structure family fitted on the same validation tiles.

Validation images are cut into tiles of the model's field of view. Each tile is prompted
with every label its source annotates exhaustively (a CoNSeP tile: its four nucleus types
and all nuclei); a label is *present* when it covers at least ``MIN_PRESENT_UM2`` in the
tile, *absent* when it has no pixel there. Labels a source does not annotate are never
taken as absent (an EBHI tile has nuclei nobody outlined). Accuracy per trained label is
pooled over regions (the support rule matches labels by structure and object): mean tile
Dice on present tiles, mean AJI where the label has instances, presence AUROC. The printed
expected calibration error "after" is cross-fitted (calibration fitted on one half of the
images, measured on the other) so it is not measured on what it was fitted to; the
calibration written to the file is fitted on all validation tiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..ontology import Label
from .calibration import apply_calibration, expected_calibration_error, fit_isotonic
from .support import ModelVocabulary, TrainedLabel, structure_family

__all__ = ["MIN_PRESENT_UM2", "calibration_report", "cross_fitted", "measure_vocabulary", "plot_reliability", "trained_labels",
           "validation_images", "validation_tile_rows", "write_record"]

logger = logging.getLogger(__name__)

MIN_PRESENT_UM2 = 10.0


def validation_images(config, limit: int | None = None) -> Iterator[tuple[str, list, float | None]]:
    """``(source, held-out AnnotatedImage records, mpp for images that state none)`` per source of a config."""
    from ..datasets import load_dataset
    from .training.config import load_config, split_validation

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    for src in cfg.data.sources:
        rule = src.get("val")
        if "dataset" not in src or rule in (None, "none"):
            continue
        name = src["dataset"]
        records = load_dataset(name)
        held_out = split_validation([r.image_id for r in records], [r.split for r in records], rule)
        chosen = [r for r, v in zip(records, held_out) if v]
        yield name, chosen[:limit] if limit else chosen, cfg.data.assume_mpp.get(name)


def trained_labels(config) -> list[Label]:
    """Every label with a mask in the training part of a config's sources (pseudo-nuclei included)."""
    from .training.config import load_config, split_validation
    from .training.sources import load_source

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    labels: set[Label] = set()
    for src in cfg.data.sources:
        items, ids, splits = load_source(src, cfg.seed)
        is_val = split_validation(ids, splits, src.get("val", "none"))
        for item, val in zip(items, is_val):
            if val:
                continue
            found = {t.label for t in item.triples()}
            labels |= found
            if src.get("pseudo_nuclei") and found:
                labels.add(Label(next(iter(found)).region, "nuclei", "nucleus"))
    return sorted(labels)


def _annotated_labels(source: str) -> list[Label]:
    """The labels a source annotates exhaustively: its classes, and all nuclei for nucleus sets."""
    from ..datasets import DATASETS

    labels = sorted(set(DATASETS[source].classes.values()))
    if any(lab.is_instance_level for lab in labels) and not any(lab.object == "nucleus" for lab in labels):
        labels.append(Label(labels[0].region, "nuclei", "nucleus"))
    return labels


def _crops(rec, side: int) -> Iterator[tuple[int, object]]:
    from .inference.tiling import tile_starts

    h, w = rec.image.shape[:2]
    k = 0
    for y in tile_starts(h, side, 0):
        for x in tile_starts(w, side, 0):
            view = (slice(int(y), int(y) + side), slice(int(x), int(x) + side))
            yield k, dataclasses.replace(
                rec, image=rec.image[view], instances=None if rec.instances is None else rec.instances[view],
                class_map=None if rec.class_map is None else rec.class_map[view])
            k += 1


def validation_tile_rows(predictor, records, source: str, assumed_mpp: float | None = None) -> list[dict]:
    """One row per (validation tile, annotated label): ``present``, raw ``presence``, ``dice``, ``aji``."""
    from .metrics import aji, dice

    labels = _annotated_labels(source)
    model_mpp, tile = predictor.model_mpp, predictor.tile
    rows = []
    for rec in records:
        mpp = rec.mpp if rec.mpp is not None else assumed_mpp
        side = max(8, round(tile * model_mpp / mpp))
        min_px = MIN_PRESENT_UM2 / mpp ** 2
        for k, crop in _crops(rec, side):
            truth = {t.label: t for t in crop.triples()}
            area = {lab: float(truth[lab].semantic.sum()) if lab in truth else 0.0 for lab in labels}
            prompts = [lab for lab in labels if area[lab] == 0 or area[lab] >= min_px]  # slivers are neither
            if not prompts:
                continue
            result = predictor.set_image(crop.image, mpp=mpp).predict([lab.prompt for lab in prompts])
            for lab in prompts:
                row = {"source": source, "image": rec.image_id, "tile": k, "prompt": lab.prompt,
                       "object": lab.object, "family": structure_family(lab.structure), "present": area[lab] > 0,
                       "presence": result.presence[lab.prompt], "dice": np.nan, "aji": np.nan}
                if area[lab] > 0:
                    row["dice"] = dice(result.semantic[lab.prompt], truth[lab].semantic)
                    if truth[lab].instances is not None and lab.prompt in result.instances:
                        row["aji"] = aji(truth[lab].instances, result.instances[lab.prompt])
                rows.append(row)
    return rows


def _fold(image_ids: pd.Series) -> np.ndarray:
    return image_ids.map(lambda s: zlib.crc32(str(s).encode()) % 2).to_numpy()


def cross_fitted(rows: pd.DataFrame) -> np.ndarray:
    """Calibrated presence of each row by a calibration fitted on the other half of the images (NaN if none)."""
    y, p = rows.present.astype(int).to_numpy(), rows.presence.to_numpy(float)
    fold = _fold(rows.image)
    out = np.full(len(rows), np.nan)
    for f in (0, 1):
        train, test = fold != f, fold == f
        if test.any() and np.unique(y[train]).size == 2:
            out[test] = apply_calibration(p[test], fit_isotonic(y[train], p[train]))
    return out


def calibration_report(rows: pd.DataFrame) -> pd.DataFrame:
    """Per structure family: counts, presence AUROC, ECE before and after (cross-fitted) calibration."""
    from sklearn.metrics import roc_auc_score

    out = []
    for family, grp in rows.groupby("family"):
        y, p = grp.present.astype(int).to_numpy(), grp.presence.to_numpy(float)
        cross = cross_fitted(grp)
        out.append({"family": family, "n": len(grp), "n_present": int(y.sum()),
                    "auroc": roc_auc_score(y, p) if np.unique(y).size == 2 else np.nan,
                    "ece_before": expected_calibration_error(y, p),
                    "ece_after": expected_calibration_error(y, cross) if np.isfinite(cross).all() else np.nan})
    return pd.DataFrame(out)


def measure_vocabulary(rows: pd.DataFrame, trained: list[Label]) -> ModelVocabulary:
    """The record: each trained label with the pooled accuracy of its object and family, and the calibration."""
    from sklearn.metrics import roc_auc_score

    entries = []
    for lab in trained:
        grp = rows[(rows.object == lab.object) & (rows.family == structure_family(lab.structure))]
        pos = grp[grp.present]
        auroc = roc_auc_score(grp.present, grp.presence) if grp.present.nunique() == 2 else np.nan
        entries.append(TrainedLabel(lab, float(pos.dice.mean()) if len(pos) else np.nan,
                                    float(pos.aji.mean()) if pos.aji.notna().any() else np.nan,
                                    float(auroc), len(grp)))
    calibration = {}
    for family, grp in rows.groupby("family"):
        if grp.present.nunique() == 2:
            calibration[str(family)] = fit_isotonic(grp.present.astype(int), grp.presence)
    return ModelVocabulary(tuple(entries), calibration)


def write_record(checkpoint: str | Path, record: ModelVocabulary, out: str | Path | None = None) -> Path:
    """Write ``record`` into a checkpoint file (atomically; weights and everything else unchanged)."""
    import os

    import torch

    from ..io import atomic_path
    from .modeling.checkpoint import read_checkpoint

    payload = read_checkpoint(checkpoint)
    payload["trained_vocabulary"] = record.to_dict()
    out = Path(out or checkpoint)
    with atomic_path(out, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return out


def plot_reliability(rows: pd.DataFrame, path: str) -> None:
    """Reliability diagrams per structure family of validation-tile rows, raw and cross-fitted calibrated, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    from .calibration import reliability_table

    families = sorted(rows.family.unique())
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        grp = rows[rows.family == family]
        y, p = grp.present.astype(int), grp.presence.to_numpy(float)
        curves = [("raw", p)]
        cross = cross_fitted(grp)
        if np.isfinite(cross).all():
            curves.append(("calibrated, cross-fitted", cross))
        else:
            ax.text(0.5, 0.1, "no absent examples:\nnot calibrated", ha="center", transform=ax.transAxes)
        for name, q in curves:
            t = reliability_table(y, q)
            ax.plot(t.mean_score, t.frequency, "o-", label=f"{name} (ECE {expected_calibration_error(y, q):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(title=f"{family} prompts (n={len(grp)})", xlabel="presence score", ylabel="fraction present",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint file to measure")
    parser.add_argument("--config", required=True, help="its training config (sources, val rules, assume_mpp)")
    parser.add_argument("--out", default=None, help="write the recorded checkpoint here (default: in place)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many validation images per source")
    parser.add_argument("--rows", default=None, help="also write the per-tile rows to this CSV")
    parser.add_argument("--figure", default=None, help="also draw the reliability diagrams to this PNG")
    args = parser.parse_args(argv)

    from .inference.predictor import TextPromptPredictor
    from .modeling.build import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    trained = trained_labels(args.config)
    model.trained_vocabulary = ModelVocabulary(tuple(TrainedLabel(lab) for lab in trained))  # raw presence
    predictor = TextPromptPredictor(model)
    rows = []
    for source, records, assumed in validation_images(args.config, args.limit):
        rows += validation_tile_rows(predictor, records, source, assumed)
    rows = pd.DataFrame(rows)
    if args.rows:
        from ..io import atomic_path

        with atomic_path(args.rows, suffix=".csv") as tmp:
            rows.to_csv(tmp, index=False)
    record = measure_vocabulary(rows, trained)
    pd.set_option("display.width", 160)
    print(f"{len(rows)} (tile, label) rows from {rows.image.nunique()} validation images")
    print(calibration_report(rows).round(3).to_string(index=False))
    print(pd.DataFrame([t.to_dict() for t in record.labels]).round(3).to_string(index=False))
    print("presence calibration (isotonic knots) for:", sorted(record.presence_calibration))
    if args.figure:
        plot_reliability(rows, args.figure)
    print(f"wrote {write_record(args.checkpoint, record, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
