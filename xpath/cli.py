"""The ``xpath`` command line: segment, analyze, cohort, study, prompts, train, finetune, report, demo.

Exit codes (stable, for scripts):

- 0: success.
- 1: an unexpected internal error (run with ``--debug`` for the traceback).
- 2: bad usage or bad input (unknown option, missing file, unreadable image, invalid value).
- 3: finished, but some slides of a cohort (or images of a study) failed (see ``failures.parquet`` in
  ``--out``, or the study's report).
- 4: a prompt the model was not trained for (``xpath prompts`` lists the supported ones);
  nothing was read or segmented. ``--on-unsupported empty|nearest`` answers it instead.
- 130: interrupted (Ctrl-C).

Errors are printed on one line without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["EXIT_FAILURES", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNSUPPORTED", "EXIT_USAGE",
           "build_parser", "main"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_FAILURES, EXIT_UNSUPPORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _is_slide(path: str) -> bool:
    from .io import SLIDE_SUFFIXES

    return Path(path).suffix.lower() in SLIDE_SUFFIXES


def _save_figure(ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from .io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        ax.figure.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(ax.figure)
    return path


def _print_outputs(title: str, paths) -> None:
    print(title)
    for path in paths:
        print(f"  {path}")


def _slide_mpp(args: argparse.Namespace) -> float | None:
    """Working resolution of a whole slide: ``--slide-mpp``, else ``--mpp`` as before."""
    return args.slide_mpp if args.slide_mpp is not None else args.mpp


# ---------------------------------------------------------------------------- commands
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _print_outputs("xpath demo wrote:", run_demo(Path(args.out)))
    return EXIT_OK


def _require_supported(args: argparse.Namespace) -> None:
    """Refuse prompts the model was not trained for before any file is read."""
    from .segmentation.support import require_supported

    require_supported(args.prompt, args.model, on_unsupported=args.on_unsupported)


def _prompts(args: argparse.Namespace) -> int:
    import pandas as pd

    from .segmentation import supported_prompts

    table = supported_prompts(args.model)
    if table.empty:
        print(f"model {args.model!r} records no trained labels (an untrained model): no prompt is supported")
        return EXIT_OK
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["structure", "object", "region"]).round(3).to_string(index=False))
    print("A prompt is supported when it names the structure and object of one of these labels (any region).")
    return EXIT_OK


def _segment(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _require_supported(args)
    if _is_slide(args.image):
        from .pipeline import segment_slide

        res = segment_slide(args.image, args.prompt, out_dir=out, model=args.model, mpp=_slide_mpp(args),
                            threshold=args.threshold, device=args.device, progress=not args.no_progress,
                            on_unsupported=args.on_unsupported, precision=args.precision,
                            test_time_flips=args.test_time_flips)
        _print_outputs(f"segmented {res.name}: {res.n_objects} objects; wrote:", res.files.values())
        return EXIT_OK
    from .io import GeoJSONWriter, atomic_path, read_image, write_ome_tiff
    from .plotting import plot_overlay
    from .segmentation import segment

    image = read_image(args.image, mpp=args.mpp)
    seg = segment(image, args.prompt, model=args.model, mpp=image.mpp, threshold=args.threshold,
                  device=args.device, progress=not args.no_progress, on_unsupported=args.on_unsupported,
                  precision=args.precision, test_time_flips=args.test_time_flips)
    name = Path(args.image).name.split(".")[0]
    channels = {p: (seg.instances[p] if p in seg.instances else seg.semantic[p]) for p in seg.prompts}
    written = [write_ome_tiff(out / f"{name}.masks.ome.tif", channels, mpp=image.mpp)]
    classes = seg.classes
    with atomic_path(out / f"{name}.classes.csv", suffix=".csv") as tmp:
        classes.to_csv(tmp, index=False)
    written.append(out / f"{name}.classes.csv")
    with GeoJSONWriter(out / f"{name}.geojson", image_name=name) as writer:
        for p in seg.prompts:
            if p in seg.instances:
                writer.add_labels(seg.instances[p], classes=p)
            else:
                writer.add_mask(seg.semantic[p], p)
    written.append(writer.path)
    masks = {p: seg.semantic[p] for p in seg.prompts if p not in seg.instances}
    inst = {p: seg.instances[p] for p in seg.prompts if p in seg.instances}
    written.append(_save_figure(plot_overlay(image.array, masks, instances=inst), out / f"{name}.overlay.png"))
    print(classes.to_string(index=False))
    _print_outputs("wrote:", written)
    return EXIT_OK


def _analyze(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _require_supported(args)
    if _is_slide(args.image):
        from .pipeline import analyze_slide

        res = analyze_slide(args.image, args.prompt, out_dir=out, model=args.model, mpp=_slide_mpp(args),
                            graph=args.graph, device=args.device, progress=not args.no_progress,
                            on_unsupported=args.on_unsupported, precision=args.precision,
                            test_time_flips=args.test_time_flips)
        _print_outputs(f"analysed {res.name}: {len(res.cells)} cells; wrote:", res.files.values())
        return EXIT_OK
    from .io import read_image
    from .pipeline import analyze

    image = read_image(args.image, mpp=args.mpp)
    result = analyze(image, args.prompt, model=args.model, mpp=image.mpp, graph=args.graph,
                     threshold=args.threshold, device=args.device, progress=not args.no_progress,
                     on_unsupported=args.on_unsupported, precision=args.precision,
                     test_time_flips=args.test_time_flips)
    files = result.to_parquet(out)
    written = [files["cells"], files["features"], result.to_geojson(out / f"{result.name}.geojson")]
    written.append(_save_figure(result.plot(), out / f"{result.name}.overlay.png"))
    print(repr(result))
    _print_outputs("wrote:", written)
    return EXIT_OK


def _cohort(args: argparse.Namespace) -> int:
    from .pipeline import analyze_cohort, analyze_features, image_summary

    if not args.qc and not args.prompt:
        raise ValueError("give at least one --prompt (or --qc for a quick quality-control pass)")
    func = image_summary if args.qc else analyze_features
    kwargs = {} if args.qc else {"model": args.model, "graph": args.graph, "device": args.device,
                                 "on_unsupported": args.on_unsupported}
    res = analyze_cohort(args.slides, args.prompt, out_dir=args.out, backend=args.backend,
                         scheduler=args.scheduler, n_workers=args.workers, func=func,
                         progress=not args.no_progress, retry_failed=not args.no_retry, **kwargs)
    print(f"cohort: {len(res.done)} analysed, {len(res.skipped)} already done, {len(res.failed)} failed "
          f"({res.seconds:.1f} s)")
    _print_outputs("wrote:", [res.out_dir / "cohort.parquet", res.out_dir / "failures.parquet"])
    if res.failed:
        for row in res.failures.itertuples():
            print(f"  failed: {row.slide_id}: {row.error}: {row.message}", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


def _read_study_table(path: str, *, argument: str):
    """A study table (CSV or Parquet); relative image paths are relative to the table's folder."""
    import pandas as pd

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{argument}: no such file: {source}")
    table = pd.read_parquet(source) if source.suffix.lower() == ".parquet" else pd.read_csv(source)
    if "path" in table.columns:
        table["path"] = [str(p if Path(p).is_absolute() else source.parent / p) for p in table["path"].astype(str)]
    return table


def _study(args: argparse.Namespace) -> int:
    from .io import atomic_path
    from .pipeline import ImageStudy

    table = _read_study_table(args.table, argument="--table")
    new = _read_study_table(args.predict, argument="--predict") if args.predict else None
    if args.cv < 2:
        raise ValueError(f"--cv must be >= 2, got {args.cv}")
    study = ImageStudy(prompts=args.prompt, model=args.model, classifier=args.classifier, cv=args.cv,
                       baseline=not args.no_baseline, cache_dir=args.cache, seed=args.seed, device=args.device,
                       progress=not args.no_progress)
    study.fit(table)
    folder = study.report(args.out)
    print(study.cv_results_[["auroc", "ci_lower", "ci_upper", "n_images", "n_patients", "folds"]].to_string(
        float_format=lambda v: f"{v:.3f}"))
    print(f"top biomarkers: {', '.join(study.explanation_.top_features_[:5])}")
    written = [folder / "report.md", folder / "report.html"]
    if new is not None:
        proba = study.predict_proba(new)
        out = new.copy()
        if proba.ndim == 1:
            out[f"p_{study.classes_[1]}"] = proba
        else:
            for j, c in enumerate(study.classes_):
                out[f"p_{c}"] = proba[:, j]
        with atomic_path(folder / "predictions.csv", suffix=".csv") as tmp:
            out.to_csv(tmp, index=False)
        written.append(folder / "predictions.csv")
    _print_outputs("wrote:", written)
    if len(study.failures_):
        for row in study.failures_.itertuples():
            print(f"  failed: {row.path}: {row.error}: {row.message}", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from .segmentation.training.__main__ import main as train_main

    argv = ["--config", args.config]
    if args.resume:
        argv.append("--resume")
    if args.out:
        argv += ["--out", args.out]
    if args.max_steps is not None:
        argv += ["--max-steps", str(args.max_steps)]
    if args.no_progress:
        argv.append("--no-progress")
    for item in args.set or []:
        argv += ["--set", item]
    return int(train_main(argv) or 0)


def _finetune(args: argparse.Namespace) -> int:
    from .segmentation.training.finetune import finetune

    result = finetune(args.base, {"images": args.images, "masks": args.masks, "geojson": args.geojson},
                      prompt=args.prompt, minutes=args.minutes, steps=args.steps, out=args.out, mpp=args.mpp,
                      structure=args.structure, replay=not args.no_replay, progress=not args.no_progress,
                      device=args.device, restart=args.restart)
    new = result.new_label.iloc[0] if len(result.new_label) else None
    print(f"taught {result.label.prompt!r} in {result.steps} steps ({result.minutes:.1f} min): Dice on the "
          f"{len(result.val_images)} held-out image(s) {new.dice_before:.3f} before, {new.dice_after:.3f} after"
          if new is not None else f"taught {result.label.prompt!r} in {result.steps} steps")
    if len(result.old_labels):
        print("old labels, Dice on the replay sample's validation images (before -> after):")
        for row in result.old_labels.itertuples():
            print(f"  {row.label:48s} {row.dice_before:.3f} -> {row.dice_after:.3f} ({row.change:+.3f}, n={row.n})")
    _print_outputs("wrote:", [result.path, result.card])
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import read_parquet

    path = Path(args.features)
    table = read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    needed = [c for c in (args.duration, args.event, args.label, args.group) if c]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns are e.g. {list(table.columns)[:8]}")
    if not args.duration and not args.label:
        raise ValueError("give --duration and --event (survival) or --label (diagnosis)")
    if args.duration and not args.event:
        raise ValueError("--duration needs --event (1 = event observed, 0 = censored)")
    from . import explain

    excluded = [c for c in args.exclude or [] if c not in table.columns]
    if excluded:
        raise ValueError(f"--exclude names column(s) {excluded} that {path} does not have")
    drop = [c for c in (*needed, *(args.exclude or []), "slide_id", "image", "path", "patient") if c in table.columns]
    X = table.drop(columns=drop).select_dtypes("number")
    report = explain.BiomarkerReport(title=args.title, progress=False)
    groups = table[args.group].to_numpy() if args.group else None
    if args.duration:
        report.fit(X, table[args.duration].to_numpy(), table[args.event].to_numpy(), groups=groups)
    else:
        report.fit(X, table[args.label].to_numpy(), groups=groups)
    folder = Path(report.render(args.out))
    print(f"top biomarkers: {', '.join(report.top_features_[:5])}")
    _print_outputs("report written:", [folder / "report.md", folder / "report.html"])
    return EXIT_OK


# ---------------------------------------------------------------------------- parser
def _add_slide_mpp(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slide-mpp", type=float, default=None, metavar="MPP",
                   help="whole slides: µm/px the model runs at (default the model's 0.25; 0.5 runs a 20× slide "
                        "without upsampling it: 4× fewer tiles, about 0.06 lower Dice, see docs/model_card.md)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The model's arithmetic and test-time flips."""
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="float32",
                   help="arithmetic of the model: float32 (default); auto is bfloat16 where the device computes it "
                        "natively (CPUs with AMX, recent GPUs: the encoder 1.3-1.7x faster on CPU, instances within "
                        "AJI 0.97-0.98 of float32's, see docs/segmentation_inference.md), float32 elsewhere")
    p.add_argument("--test-time-flips", action="store_true",
                   help="average each tile over its four mirrored views: 4x the compute, mean Dice +0.01 on the "
                        "held-out sets, no gain for glands or nucleus counts (docs/model_card.md)")


def _add_common(p: argparse.ArgumentParser, *, prompts_required: bool = True) -> None:
    p.add_argument("--prompt", "-p", action="append", required=prompts_required, default=None, metavar="TEXT",
                   help="what to segment, e.g. 'tumour nuclei', 'lymphocytes', 'stroma' (repeat for several)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--model", default="xpath_small",
                   help="segmentation model: a registered name (xpath_small, xpath_tiny, ...) or a checkpoint file "
                        "(default: xpath_small)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA, then MPS, then CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--on-unsupported", choices=("raise", "empty", "nearest"), default="raise",
                   help="a prompt the model was not trained for: stop with exit code 4 (default), answer it with "
                        "an empty mask, or with the nearest supported label (see 'xpath prompts')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpath", description="Explainable AI for pathology images: text-prompted segmentation, biomarkers, "
                                  "SHAP and Cox analysis.",
        epilog="Exit codes: 0 success, 1 internal error, 2 bad usage or input, 3 some cohort slides / study images "
               "failed, 4 unsupported prompt, 130 interrupted.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_image_commands(sub)
    _add_study_command(sub)
    _add_model_and_report_commands(sub)
    _add_finetune_command(sub)
    return parser


def _add_image_commands(sub) -> None:
    """``segment``, ``analyze`` and ``cohort``: images and slides in, masks and biomarkers out."""
    p = sub.add_parser("segment", help="segment an image or whole slide with text prompts",
                       description="Segment what the prompts name. Writes the masks (OME-TIFF, one channel per "
                                   "prompt), QuPath GeoJSON, the per-prompt class table and an overlay PNG; whole "
                                   "slides (SVS, NDPI, ...) are tiled over tissue.")
    p.add_argument("image", help="image (PNG/JPEG/TIFF) or whole slide (SVS, NDPI, MRXS, ...)")
    _add_common(p)
    _add_slide_mpp(p)
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel, if the file does not record it")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the masks (default 0.5)")
    _add_model_options(p)
    p.set_defaults(func=_segment)

    p = sub.add_parser("analyze", help="segment, measure biomarkers and write tables, GeoJSON and an overlay",
                       description="Segmentation → cell table → cell graph → spatial statistics → one feature row. "
                                   "Writes cells.parquet, features.parquet, a QuPath GeoJSON and an overlay PNG.")
    p.add_argument("image", help="image or whole slide")
    _add_common(p)
    _add_slide_mpp(p)
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel, if the file does not record it")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the masks (default 0.5)")
    _add_model_options(p)
    p.add_argument("--graph", choices=["delaunay", "knn", "radius"], default="delaunay",
                   help="cell graph for the spatial statistics (default delaunay)")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("cohort", help="analyse many slides, resumably, serially or on a cluster",
                       description="Run the analysis over every slide of a table (CSV or Parquet with a 'path' "
                                   "column, optional 'slide_id' and metadata). One Parquet file per slide in "
                                   "OUT/slides; re-running skips finished slides; failures go to "
                                   "OUT/failures.parquet and give exit code 3.")
    p.add_argument("slides", help="CSV/Parquet table of slides (column 'path'; relative paths are relative to it)")
    _add_common(p, prompts_required=False)
    p.add_argument("--backend", choices=["serial", "joblib", "dask"], default="serial",
                   help="serial (default), joblib (local processes) or dask (dask.distributed)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for joblib / the local cluster")
    p.add_argument("--graph", choices=["delaunay", "knn", "radius"], default="delaunay", help="cell graph")
    p.add_argument("--qc", action="store_true",
                   help="only a quick quality-control summary per slide (tissue fraction, stain), no model")
    p.add_argument("--no-retry", action="store_true", help="do not retry slides that failed in an earlier run")
    p.set_defaults(func=_cohort)


def _add_study_command(sub) -> None:
    """``study``: an explained diagnostic study over a table of images."""
    p = sub.add_parser("study", help="an explained diagnostic study over a table of images",
                       description="Segment every image of TABLE (columns path, label, group = patient, mpp; cached "
                                   "and resumable), build one biomarker row per image, fit a diagnostic model with "
                                   "patient-grouped cross-validation beside a black-box baseline in the same folds, "
                                   "and write report.html / report.md with SHAP and the explanation mapped back "
                                   "onto the tissue. Images that fail are left out and give exit code 3.")
    p.add_argument("--table", required=True, metavar="TABLE",
                   help="CSV/Parquet table: path, label (0/1 or class names), group (patient), mpp (µm/px); "
                        "relative paths are relative to the table")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="report folder (replaced atomically)")
    p.add_argument("--predict", default=None, metavar="TABLE",
                   help="table of new images (path, mpp): writes DIR/predictions.csv with their probabilities")
    p.add_argument("--prompt", "-p", action="append", default=None, metavar="TEXT",
                   help="what to segment (repeat for several); default: lymphocytes, epithelial nuclei, "
                        "spindle-shaped nuclei, nuclei, glands")
    p.add_argument("--model", default="xpath_small", help="segmentation model (default: xpath_small)")
    p.add_argument("--classifier", choices=["logistic", "hgb", "rf"], default="logistic",
                   help="diagnostic model on the biomarkers (default: logistic)")
    p.add_argument("--cv", type=int, default=5, help="patient-grouped cross-validation folds (default 5)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="segmentation/embedding cache (default: $XPATH_CACHE/study or ~/.cache/xpath/study)")
    p.add_argument("--no-baseline", action="store_true", help="skip the black-box (EfficientNet) baseline")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and bootstraps (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: CUDA, then MPS, then CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_study)


def _add_model_and_report_commands(sub) -> None:
    """``train``, ``report``, ``prompts`` and ``demo``."""
    p = sub.add_parser("train", help="train a segmentation model from a YAML config",
                       description="Train (or fine-tune) a text-prompted segmentation model; for several GPUs run "
                                   "torchrun --nproc_per_node=N -m xpath.segmentation.training --config CONFIG.")
    p.add_argument("config", help="YAML training config (see configs/)")
    p.add_argument("--out", default=None, help="output folder (overrides the config's out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this step")
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=500 (repeat for several)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("report", help="biomarker-discovery report from a feature table",
                       description="Screen every feature (HR or odds ratio, 95%% CI, BH q-value), fit a "
                                   "cross-validated model, explain it with SHAP and render tables and figures.")
    p.add_argument("features", help="feature table (Parquet or CSV), one row per patient or slide")
    p.add_argument("--duration", default=None, help="column of follow-up times (survival report)")
    p.add_argument("--event", default=None, help="column of event indicators, 1 = event, 0 = censored")
    p.add_argument("--label", default=None, help="column of diagnoses (diagnostic report) instead of survival")
    p.add_argument("--group", default=None, help="column of patient ids for grouped cross-validation")
    p.add_argument("--exclude", action="append", default=None, metavar="COL",
                   help="a column that is not a candidate biomarker (e.g. another outcome); repeat for several. "
                        "Non-numeric columns and slide_id/image/path/patient are left out anyway")
    p.add_argument("--title", default="xpath biomarker report", help="report title")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=_report)

    p = sub.add_parser("prompts", help="list the prompts a model was trained for, with their measured accuracy",
                       description="The labels a model was trained on: example prompts that resolve to each, and "
                                   "the validation Dice, AJI and presence AUROC recorded in its checkpoint.")
    p.add_argument("--model", default="xpath_small", help="a registered name or a checkpoint file")
    p.set_defaults(func=_prompts)

    p = sub.add_parser("demo", help="run the main job on the built-in sample data")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.set_defaults(func=_demo)


def _add_finetune_command(sub) -> None:
    """``finetune``: teach a model a new label from a folder of annotated images."""
    p = sub.add_parser("finetune", help="teach a model a new prompt from a few annotated images (minutes, on a CPU)",
                       description="Fine-tune a segmentation model on your annotated images so that it learns a "
                                   "new label, with replay of its own training data so that it keeps the old ones. "
                                   "Writes an ordinary checkpoint (use it with --model) and a model card beside it; "
                                   "killed, the same command resumes.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (NAME.png|jpg|tif)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--masks", metavar="DIR", help="folder of same-named masks (0/1, 0/255 or instance labels; "
                                                      "0 = background)")
    group.add_argument("--geojson", metavar="DIR", help="folder of same-named QuPath GeoJSON exports instead of masks")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="what the masks show, e.g. 'stroma in colon'")
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="the checkpoint to write")
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel of the images, if the files do not record it")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget of the whole run (default 10 when --steps is not given)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: as many as --minutes allow)")
    p.add_argument("--base", default="xpath_small", help="the model to teach: a registered name (its shipped "
                                                         "weights) or a checkpoint file (default xpath_small)")
    p.add_argument("--structure", choices=("tissue", "cell", "nuclei"), default=None,
                   help="the label's structure where the prompt does not say it (e.g. --prompt tumor)")
    p.add_argument("--no-replay", action="store_true",
                   help="train on your images alone (no replay of the base model's data: old labels unprotected)")
    p.add_argument("--restart", action="store_true", help="start afresh instead of resuming an unfinished run")
    p.add_argument("--device", default=None, help="torch device (default: CUDA, then MPS, then CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_finetune)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    from ._allocator import keep_freed_memory
    from .segmentation.support import UnsupportedPromptError

    keep_freed_memory()  # one process per job: reuse freed pages instead of faulting new ones (xpath._allocator)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("xpath: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UnsupportedPromptError as err:
        if args.debug:
            raise
        print(f"xpath: unsupported prompt: {err}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, KeyError) as err:
        if args.debug:
            raise
        print(f"xpath: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:
        if args.debug:
            raise
        print(f"xpath: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
