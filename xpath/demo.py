"""The main job run by ``make demo``: every layer of the library on the built-in sample data.

1. The real H&E sample → text-prompted segmentation with the default model → cell table,
   cell graph and spatial statistics (:func:`xpath.pipeline.analyze`); writes the overlay,
   the tables (Parquet), the presence scores and a QuPath GeoJSON.
2. The explained diagnostic study on real colon biopsies (:class:`xpath.pipeline.ImageStudy`):
   EBHI-Seg high grade (high-grade IN + adenocarcinoma) against low grade (normal, polyp,
   low-grade IN), serrated adenomas excluded, on a patient subset sized for a laptop; nuclei by
   type and glands → biomarkers → patient-grouped CV → SHAP → back onto the tissue, beside a
   black-box baseline in the same folds. ``xpath study --table outputs/study_table.csv`` runs
   it on any table, ``ebhi_study_table()`` gives all 305 images.

The survival example (Cox, KM, on a synthetic cohort, labelled so) is notebook 04.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .io import atomic_path

__all__ = ["DEMO_PROMPTS", "DEMO_SUBSET", "run_demo"]

log = logging.getLogger(__name__)

# Specific prompts first: combine_instances keeps a nucleus in the first prompt that found it.
DEMO_PROMPTS = ("lymphocytes", "tumor nuclei", "nuclei")
#: Images of the demo's study subset: sized so that ``make demo`` finishes in 5 minutes on 2 cores.
DEMO_SUBSET = 60


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return path


def _save_csv(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp)
    return path


def _segment_sample(out_dir: Path, model, progress: bool) -> tuple[list[Path], object]:
    import matplotlib.pyplot as plt

    from .datasets import sample_he
    from .pipeline import analyze

    he = sample_he()
    analysis = analyze(he, list(DEMO_PROMPTS), mpp=he.mpp, model=model, name="sample_he", progress=progress)
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    axes[0].imshow(he.array)
    axes[0].set_title("sample H&E (StarDist histo.jpg)")
    axes[0].axis("off")
    analysis.plot(ax=axes[1], kind="cells")
    axes[1].set_title(f"{len(analysis.cells)} nuclei coloured by prompt")
    written.append(_save_figure(fig, out_dir / "sample_he_overlay.png"))
    plt.close(fig)
    written.append(_save_csv(analysis.segmentation.classes.set_index("prompt"), out_dir / "sample_he_prompts.csv"))
    written += list(analysis.to_parquet(out_dir / "sample_he_tables").values())
    written.append(Path(analysis.to_geojson(out_dir / "sample_he_nuclei.geojson")))
    return written, analysis


def _study(out_dir: Path, model, progress: bool, subset: int | None) -> list[Path]:
    """The explained grading study on real EBHI biopsies (a patient subset), black box beside it."""
    from .datasets import ebhi_study_table
    from .pipeline import ImageStudy

    table = ebhi_study_table(subset=subset, seed=0)
    table_path = out_dir / "study_table.csv"
    with atomic_path(table_path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    log.info("study: %d EBHI images from %d patients (high grade %d, low grade %d); serrated adenomas excluded",
             len(table), table["group"].nunique(), int((table["label"] == 1).sum()), int((table["label"] == 0).sum()))
    study = ImageStudy(model=model, cv=5, cache_dir=out_dir / "study_cache", n_bootstrap=500,
                       stability_resamples=10, progress=progress).fit(table)
    folder = study.report(out_dir / "study_report")
    res = study.cv_results_
    for name, row in res.iterrows():
        log.info("%s: CV AUROC %.3f (95%% CI %.3f-%.3f)", name, row["auroc"], row["ci_lower"], row["ci_upper"])
    return [table_path, folder / "report.html", folder / "report.md"]


def run_demo(out_dir: Path, *, model=None, progress: bool = True, subset: int | None = DEMO_SUBSET) -> list[Path]:
    """Run the demo into ``out_dir`` and return the paths it wrote.

    Parameters
    ----------
    out_dir : pathlib.Path
        Output folder (created). The study's segmentation cache lives in ``out_dir/study_cache``,
        so a second run reads it back instead of segmenting.
    model : str, path or model, optional
        Segmentation model; default: the shipped ``xpath_small`` checkpoint.
    progress : bool
        Show progress bars.
    subset : int, optional
        About this many EBHI images (whole patients, half of each grade); ``None``: all 305.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, _analysis = _segment_sample(out_dir, model or "xpath_small", progress)
    written += _study(out_dir, model or "xpath_small", progress, subset)
    return written
