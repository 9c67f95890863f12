"""The study-specific sections of :meth:`ImageStudy.report`.

The study design, the biomarker model against the black box in the same folds (with a paired
bootstrap of the AUROC difference), and the explanation mapped back: for each top feature the
images with its highest and lowest values, the objects that carry it outlined and coloured by
their own value. The generic sections (cohort, ROC, calibration, screen, SHAP, stability) come
from :class:`xpath.explain.BiomarkerReport`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["feature_carrier", "plot_feature_objects", "study_blocks"]

_STAT = re.compile(r"\.(mean|std|q\d+)$")


def feature_carrier(feature: str) -> tuple[str, str | None, str | None]:
    """Which objects carry an image-level feature, and which per-object column colours them.

    Returns
    -------
    (objects, cls, column)
        ``objects`` is ``"nuclei"`` or ``"glands"``; ``cls`` the nucleus class (``None`` = all);
        ``column`` the cell/gland-table column to colour by (``None`` = colour by class).

    Examples
    --------
    >>> feature_carrier("epithelial nuclei:nucleus.shape.area_um2.mean")
    ('nuclei', 'epithelial nuclei', 'nucleus.shape.area_um2')
    >>> feature_carrier("gland.shape.solidity.mean")
    ('glands', None, 'gland.shape.solidity')
    >>> feature_carrier("density_per_mm2.lymphocytes")
    ('nuclei', 'lymphocytes', None)
    """
    cls, _, rest = feature.rpartition(":")
    cls = cls or None
    if rest.startswith(("nucleus.", "cell.")):
        return "nuclei", cls, _STAT.sub("", rest)
    if rest.startswith("gland.shape."):
        return "glands", None, _STAT.sub("", rest)
    if rest.startswith(("gland.", "region.fraction.")):
        return "glands", None, "gland.shape.area_um2"
    for prefix in ("density_per_mm2.", "fraction.", "count."):
        if rest.startswith(prefix):
            return "nuclei", rest[len(prefix):], None
    if rest.startswith("region.density_per_mm2."):
        return "nuclei", rest.split(".")[2], None
    if rest.startswith("image.spatial.voronoi"):
        return "nuclei", None, "cell.spatial.local_density_per_mm2"
    if rest.startswith("image.spatial."):
        return "nuclei", None, "cell.spatial.neighbour_distance_mean_um"
    return "nuclei", None, None


def _objects(study, image_key: str, mpp: float, objects: str, cls, column):
    """Label map and per-object values of one cached image."""
    from ..biomarkers import cell_table

    folder = study._segmentation_dir() / "maps"
    maps = np.load(folder / f"{image_key}.npz")
    if objects == "glands":
        labels = maps["glands"]
        table = cell_table(labels, mpp=mpp, properties=("shape",), compartment="gland").set_index("id")
        values = table[column] if column in table.columns else pd.Series(1.0, index=table.index)
        return labels, values
    labels = maps["nuclei"]
    cells = pd.read_parquet(folder / f"{image_key}.cells.parquet").set_index("id")
    if cls is not None:
        cells = cells[cells["class"] == cls]
    keep = np.isin(labels, cells.index.to_numpy())
    labels = np.where(keep, labels, 0)
    if column is None or column not in cells.columns:
        return labels, cells["class"]
    return labels, cells[column].astype(float)


def plot_feature_objects(study, feature: str, image_id: str, *, ax=None, vmin=None, vmax=None):
    """One study image with the objects that carry ``feature`` outlined and coloured; returns the Axes.

    See :meth:`ImageStudy.plot_feature`.
    """
    from ..io import read_image
    from ..plotting import plot_instances

    if feature not in study.features_.columns:
        raise ValueError(f"feature must be one of the study's features_ columns, got {feature!r}")
    rows = study.table_.set_index("image_id")
    if image_id not in rows.index:
        raise ValueError(f"image_id must be one of the study's images (features_.index), got {image_id!r}")
    row = rows.loc[image_id]
    objects, cls, column = feature_carrier(feature)
    labels, vals = _objects(study, row["image_key"], float(row["mpp"]), objects, cls, column)
    image = read_image(row["path"], mpp=float(row["mpp"])).array
    numeric = pd.api.types.is_numeric_dtype(vals)
    ax = plot_instances(image, labels, vals, ax=ax, cmap="viridis", vmin=vmin if numeric else None,
                        vmax=vmax if numeric else None, label=column if numeric else None)
    ax.set_title(_panel_title(study, feature, image_id, prefix=f"{feature} ="), fontsize=8)
    return ax


def _panel_title(study, feature: str, image_id: str, *, prefix: str) -> str:
    p = study.oof_["p_biomarkers"].get(image_id, np.nan)
    label = study.table_.set_index("image_id").at[image_id, "label"]
    return (f"{prefix} {study.features_.at[image_id, feature]:.3g}\n{image_id[:48]}\n"
            f"label {label}, out-of-fold p = {float(np.ravel(p)[-1]):.2f}")


def _mapped_back(study, feature: str, tmp: Path, index: int, dpi: int) -> tuple[str, str]:
    """Figure: the highest- and lowest-valued image of ``feature``, carriers outlined and coloured."""
    from matplotlib.figure import Figure

    values = study.features_[feature].dropna()
    pos = {"highest": values.idxmax(), "lowest": values.idxmin()}
    objects, cls, column = feature_carrier(feature)
    rows = study.table_.set_index("image_id")
    numeric = []
    for image_id in pos.values():
        row = rows.loc[image_id]
        _, vals = _objects(study, row["image_key"], float(row["mpp"]), objects, cls, column)
        if pd.api.types.is_numeric_dtype(vals) and len(vals):
            numeric.append(vals)
    lo, hi = np.nanpercentile(pd.concat(numeric), [2, 98]) if numeric else (None, None)
    fig = Figure(figsize=(11, 5.2))
    for ax, (name, image_id) in zip(fig.subplots(1, 2), pos.items(), strict=True):
        plot_feature_objects(study, feature, image_id, ax=ax, vmin=lo, vmax=hi)
        ax.set_title(_panel_title(study, feature, image_id, prefix=f"{name} value:"), fontsize=8)
    what = (cls or "all nuclei") if objects == "nuclei" else "glands"
    fig.suptitle(f"{feature}: {what} outlined, coloured by {column or 'class'}", fontsize=9)
    path = f"mapped_{index}.png"
    fig.savefig(tmp / path, dpi=dpi, bbox_inches="tight")
    caption = (f"{feature} — left: the image with the highest value, right: the lowest; {what} outlined"
               f"{', coloured by ' + column + ' (shared scale)' if column else ''}")
    return path, caption


def _comparison(study, tmp: Path, dpi: int) -> list[tuple]:
    from matplotlib.figure import Figure

    from ..models import auroc, bootstrap_ci
    from ..plotting import plot_roc

    res = study.cv_results_
    blocks: list[tuple] = [("h2", "Biomarkers against a black box, in the same folds"), ("table", res)]
    if study.baseline_ is None or study.classes_.size != 2:
        return blocks
    y = study.model_._y
    a, b = study.model_.oof_proba_[:, 1], study.baseline_.oof_proba_[:, 1]
    classes = study.classes_
    diff = auroc(y, a, classes) - auroc(y, b, classes)
    lo, hi = bootstrap_ci(lambda yy, pa, pb: auroc(yy, pa, classes) - auroc(yy, pb, classes), y, a, b,
                          n_bootstrap=study.n_bootstrap, seed=study.seed,
                          groups=study.table_["group"].astype(str).to_numpy())
    better = "the interpretable biomarker model" if diff > 0 else "the black box"
    verdict = (f"AUROC difference (biomarkers − black box) {diff:+.3f}, paired patient bootstrap 95% CI "
               f"{lo:+.3f} to {hi:+.3f}: {better} is ahead"
               + (", but the interval includes 0 — no clear winner." if lo <= 0 <= hi else "."))
    blocks.append(("p", ("Black box: frozen ImageNet EfficientNet-Lite0, global-average-pooled 1280-d embedding "
                        "(images resized to 1 µm/px), standardised, logistic regression; identical patient-grouped "
                        f"folds (checked). {verdict}")))
    fig = Figure(figsize=(4.8, 4.5))
    ax = fig.add_subplot()
    plot_roc(y, a, positive=classes[1], ax=ax, label="biomarkers")
    plot_roc(y, b, positive=classes[1], ax=ax, label="black box", color="#2c7fb8")
    ax.set_title("out-of-fold ROC, same folds")
    fig.savefig(tmp / "roc_comparison.png", dpi=dpi, bbox_inches="tight")
    blocks.append(("img", "roc_comparison.png", "Out-of-fold ROC of both models"))
    study.comparison_ = {"difference": diff, "ci_lower": lo, "ci_upper": hi}
    return blocks


def study_blocks(study, tmp: Path, *, dpi: int = 110) -> list[tuple]:
    """Report blocks of the study design, the comparison and the mapped-back explanation."""
    table = study.table_
    counts = table.groupby("label").agg(images=("path", "size"), patients=("group", "nunique"))
    mpps = ", ".join(f"{m:g}" for m in sorted(set(table["mpp"])))
    prompts = ", ".join(repr(p) for p in study._prompts())
    design = (f"{len(table)} images from {table['group'].nunique()} patients; segmentation model "
              f"{study._model_tag()!r} with prompts {prompts}; pixel size (µm/px) {mpps}; "
              f"{study.features_.shape[1]} candidate biomarkers per image; {study.cv}-fold cross-validation "
              f"grouped by patient; {len(study.failures_)} image(s) failed and were left out.")
    blocks: list[tuple] = [("h2", "Study"), ("p", design), ("table", counts)]
    if len(study.failures_):
        blocks.append(("table", study.failures_[["slide_id", "error", "message"]].head(10)))
    blocks += _comparison(study, tmp, dpi)
    blocks.append(("h2", "The explanation mapped back onto the tissue"))
    blocks.append(("p", ("For each of the top features by mean |SHAP|, the image with its highest and its lowest "
                        "value; the nuclei or glands that carry the feature are outlined and coloured by their own "
                        "value (one colour scale per figure).")))
    for i, feature in enumerate(study.explanation_.top_features_[:3]):
        path, caption = _mapped_back(study, feature, tmp, i, dpi)
        blocks.append(("img", path, caption))
    return blocks
