"""The main job run by ``make demo``: every layer of the library on the built-in sample data.

1. The real H&E sample → text-prompted segmentation with the default model → cell table,
   cell graph and spatial statistics (:func:`xpath.pipeline.analyze`); writes the overlay,
   the tables (Parquet), the presence scores and a QuPath GeoJSON.
2. A small explained analysis on those cells: which nuclear features tell apart what the
   model calls lymphocytes from tumour nuclei (logistic model, spatially grouped CV, SHAP).
3. A biomarker-discovery report (Cox, FDR screen, SHAP, stability, KM) on a synthetic
   cohort with planted effects, so the whole report can be seen end to end.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .io import atomic_path

__all__ = ["DEMO_PROMPTS", "run_demo"]

log = logging.getLogger(__name__)

# Specific prompts first: combine_instances keeps a nucleus in the first prompt that found it.
DEMO_PROMPTS = ("lymphocytes", "tumor nuclei", "nuclei")


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


def _explain_cells(out_dir: Path, cells: pd.DataFrame) -> list[Path]:
    """Lymphocytes vs tumour nuclei from nuclear shape and stain, with SHAP."""
    import matplotlib.pyplot as plt

    from .explain import shap_values
    from .models import DiagnosticModel
    from .plotting import plot_shap_bar

    two = cells[cells["class"].isin(DEMO_PROMPTS[:2])]
    counts = two["class"].astype(str).value_counts().reindex(list(DEMO_PROMPTS[:2]), fill_value=0)
    if counts.min() < 15:
        log.warning("cell-level explanation skipped: need >= 15 cells of both %s, got %s",
                    DEMO_PROMPTS[:2], counts.to_dict())
        return []
    features = [c for c in two.columns if c.startswith("nucleus.shape.") or c.startswith("nucleus.stain.hematoxylin.")]
    X = two[features].astype(float)
    y = (two["class"] == DEMO_PROMPTS[0]).astype(int)
    # Spatial blocks of 64 µm are the CV groups: neighbouring cells never straddle train and test.
    groups = (two["x_um"] // 64).astype(int).astype(str) + "_" + (two["y_um"] // 64).astype(int).astype(str)
    model = DiagnosticModel("logistic", cv=min(5, groups.nunique()), n_bootstrap=200).fit(X, y, groups=groups)
    explanation = shap_values(model, X, progress=False)
    fig, ax = plt.subplots(figsize=(7, 5))
    plot_shap_bar(explanation, ax=ax, max_display=10)
    ax.set_title(f"lymphocytes vs tumour nuclei, CV AUROC {model.auroc_:.2f}")
    path = _save_figure(fig, out_dir / "cells_shap_bar.png")
    plt.close(fig)
    return [path]


def _cohort_report(out_dir: Path) -> list[Path]:
    from .datasets import synthetic_cohort
    from .explain import BiomarkerReport
    from .models import CoxModel

    cohort = synthetic_cohort(300, n_null=20, seed=0)
    report = BiomarkerReport(model=CoxModel(n_bootstrap=50), top_k=10, stability_resamples=10)
    report.fit(cohort.X, cohort.durations, cohort.events)
    folder = Path(report.render(out_dir / "cohort_report"))
    return [folder / "report.html", folder / "report.md"]


def run_demo(out_dir: Path, *, model=None, progress: bool = True) -> list[Path]:
    """Run the demo into ``out_dir`` and return the paths it wrote.

    Parameters
    ----------
    out_dir : pathlib.Path
        Output folder (created).
    model : str, path or model, optional
        Segmentation model; default: the shipped ``xpath_small`` checkpoint.
    progress : bool
        Show progress bars.
    """
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, analysis = _segment_sample(out_dir, model or "xpath_small", progress)
    written += _explain_cells(out_dir, analysis.cells)
    written += _cohort_report(out_dir)
    return written
