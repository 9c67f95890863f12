"""``ImageStudy``: an explained diagnostic study over a table of images.

``ImageStudy().fit(table)`` segments every image with text prompts (cached on disk by image
hash, model and prompts, resumable, failures recorded — through :func:`analyze_cohort`),
turns each image into one row of named biomarkers, fits a :class:`~xpath.models.DiagnosticModel`
with patient-grouped cross-validation, explains it (:class:`~xpath.explain.BiomarkerReport`:
FDR screen, SHAP, stability) and, in the same folds, a black-box baseline on frozen ImageNet
embeddings. ``report(out_dir)`` renders all of it, with the top features mapped back onto
the cells and glands that carry them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._types import check_mpp
from ..segmentation import check_prompts

__all__ = ["DEFAULT_STUDY_PROMPTS", "ImageStudy", "select_study_features", "study_image_features"]

log = logging.getLogger(__name__)

#: H&E default: nucleus types the shipped model was trained on (specific first: a nucleus found by
#: two prompts keeps the first), every other nucleus, and glands.
DEFAULT_STUDY_PROMPTS = ("lymphocytes", "epithelial nuclei", "spindle-shaped nuclei", "nuclei", "glands")
STATS = ("mean", "std", "q90")
CLASSIFIERS = ("logistic", "hgb", "rf")
FEATURE_VERSION = "study-3"  # bump when the per-image features change: it is part of the cache key
# (study-3: gland masks cleaned as regions, xpath.segmentation.inference.regions)
_NUCLEUS = (r"nucleus\.(shape\.(area_um2|perimeter_um|eccentricity|solidity|circularity|irregularity"
            r"|major_axis_um|minor_axis_um)|stain\.(hematoxylin\.(mean|std)|eosin\.mean)"
            r"|texture\.glcm_(contrast|entropy|homogeneity)\.mean)")
_SPATIAL = r"cell\.spatial\.(local_density_per_mm2|neighbour_distance_mean_um|region_distance_um\.[^.0-9][^.]*)"
_KEEP = re.compile(
    rf"^(([^:]+:)?({_NUCLEUS}|{_SPATIAL})\.(mean|std|q90)"
    r"|density_per_mm2(\.[^.]+)?|fraction\.[^.]+"
    r"|image\.spatial\.(delaunay_edge_um|voronoi_area_um2|mst_edge_um)_(mean|std|disorder)"
    r"|region\.fraction\.[^.]+|region\.density_per_mm2\.[^.]+\.[^.]+"
    r"|gland\..+)$")
#: Cell-table columns kept on disk for mapping features back onto the image.
CELL_COLUMNS = re.compile(rf"^({_NUCLEUS}|{_SPATIAL})$")


def _shipped_digest(name: str) -> str:
    """First 12 hex digits of a registered model's shipped checkpoint SHA-256 (``"untrained"`` if none)."""
    from ..segmentation import default_checkpoint

    try:
        path = default_checkpoint(name)
    except (KeyError, ValueError):
        return "unknown"
    if path is None:
        return "untrained"
    return Path(str(path) + ".sha256").read_text().split()[0][:12]


def _gland_prompt(prompts: Sequence[str]) -> str | None:
    return next((p for p in prompts if "gland" in p.lower()), None)


def image_key(path: str | os.PathLike, mpp: float) -> str:
    """Cache key of one image: SHA-256 of the file's bytes (20 hex digits) and its pixel size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()[:20]}-{float(mpp):g}"


def _gland_features(glands: np.ndarray, mpp: float, area_mm2: float) -> dict[str, float]:
    """Gland count, density and shape distribution from the gland instance map."""
    from ..biomarkers import cell_table

    table = cell_table(glands, mpp=mpp, properties=("shape",), compartment="gland")
    row: dict[str, float] = {"gland.count": float(len(table)), "gland.density_per_mm2": len(table) / area_mm2}
    for col in ("area_um2", "solidity", "eccentricity", "circularity"):
        values = table[f"gland.shape.{col}"] if len(table) else pd.Series(dtype=float)
        row[f"gland.shape.{col}.mean"] = float(values.mean()) if len(values) else np.nan
        row[f"gland.shape.{col}.std"] = float(values.std()) if len(values) > 1 else np.nan
    return row


def _gland_instances(mask: np.ndarray, mpp: float, min_area_um2: float = 200.0) -> np.ndarray:
    """Connected components of the gland mask, small specks removed, ids ``1..N``."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return labels.astype(np.int32)
    area = np.bincount(labels.ravel())[1:] * mpp**2
    keep = np.zeros(n + 1, np.int32)
    kept = np.flatnonzero(area >= min_area_um2) + 1
    keep[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return keep[labels]


def study_image_features(path: str | os.PathLike, prompts: Sequence[str], *, model: Any = "xpath_small",
                         mpp: float, maps_dir: str | os.PathLike | None = None, n_perms: int = 100,
                         seed: int = 0, device: Any = None) -> pd.DataFrame:
    """The per-image function of :class:`ImageStudy`: segmentation → one feature row.

    :func:`~xpath.pipeline.analyze` (nuclei by type, glands as a region, graphs, spatial
    statistics) plus gland count and shape. With ``maps_dir`` it also writes
    ``{key}.npz`` (nucleus and gland label maps) and ``{key}.cells.parquet`` (a slim cell table),
    so that a report can outline the objects carrying a feature without segmenting again.
    """
    from ..io import atomic_path, read_image, write_parquet
    from ._analysis import analyze

    image = read_image(path, mpp=mpp)
    analysis = analyze(image, list(prompts), model=model, mpp=image.mpp, stats=STATS, n_perms=n_perms, seed=seed,
                       device=device, name="image")
    features = analysis.features.reset_index(drop=True)
    gland = _gland_prompt(prompts)
    glands = np.zeros(analysis.labels.shape, np.int32)
    if gland is not None:
        value = next(k for k, name in analysis.region_names.items() if name == gland)
        glands = _gland_instances(analysis.regions == value, image.mpp)
        area_mm2 = glands.size * (image.mpp / 1000.0) ** 2
        features = features.join(pd.DataFrame([_gland_features(glands, image.mpp, area_mm2)]))
    # Only the candidate families are kept on disk: the full row has ~2,400 columns (1.3 MB of Parquet
    # metadata per image); these ~300 are what select_study_features can choose from.
    features = features[[c for c in features.columns if _KEEP.match(str(c))]]
    if maps_dir is not None:
        key = image_key(path, image.mpp)
        folder = Path(maps_dir)
        with atomic_path(folder / f"{key}.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, nuclei=analysis.labels, glands=glands)
        keep = ["id", "class", "x_um", "y_um", *[c for c in analysis.cells.columns if CELL_COLUMNS.match(str(c))]]
        cells = analysis.cells[[c for c in keep if c in analysis.cells.columns]].copy()
        cells["class"] = cells["class"].astype(str)
        write_parquet(cells, folder / f"{key}.cells.parquet")
    return features


def select_study_features(frame: pd.DataFrame, *, max_missing: float = 0.5) -> list[str]:
    """The candidate biomarkers of a study among the per-image feature columns.

    Keeps interpretable families — nuclear size, shape, stain and texture distributions per
    type, densities and type fractions, nucleus-to-gland distances, graph statistics, gland
    fraction, count and shape — and drops columns missing in more than ``max_missing`` of the
    images or constant. No label is looked at, so choosing them before cross-validation leaks
    nothing.
    """
    cols = [c for c in frame.columns if _KEEP.match(str(c)) and pd.api.types.is_numeric_dtype(frame[c])]
    out = []
    for c in cols:
        values = frame[c].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size <= (1 - max_missing) * values.size or np.ptp(finite) == 0:
            continue
        out.append(c)
    return out


def _check_table(table, *, fit: bool, cv: int | None = None) -> pd.DataFrame:
    """Validate a study table before any expensive work; returns a clean copy."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame with columns path, label, group, mpp; "
                        f"got {type(table).__name__}")
    needed = ["path", "label", "group", "mpp"] if fit else ["path", "mpp"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing the column(s) {missing}; it needs {needed}, got {list(table.columns)}")
    if len(table) == 0:
        raise ValueError("table has no rows")
    table = table.reset_index(drop=True).copy()
    table["path"] = table["path"].astype(str)
    absent = [p for p in table["path"] if not Path(p).is_file()]
    if absent:
        raise FileNotFoundError(f"table['path']: {len(absent)} file(s) do not exist, e.g. {absent[:3]}")
    try:
        table["mpp"] = [check_mpp(float(m)) for m in table["mpp"]]
    except (TypeError, ValueError) as err:
        raise ValueError(f"table['mpp'] must be positive finite µm per pixel: {err}") from err
    if not fit:
        return table
    if table["label"].isna().any():
        raise ValueError(f"table['label'] has {int(table['label'].isna().sum())} missing value(s)")
    if table["group"].isna().any():
        raise ValueError(f"table['group'] has {int(table['group'].isna().sum())} missing patient id(s)")
    classes = np.unique(table["label"].to_numpy())
    if classes.size < 2:
        raise ValueError(f"table['label'] has one class only ({classes.tolist()}); a diagnostic study needs two")
    if cv is not None:
        per_class = table.groupby("label")["group"].nunique()
        few = per_class[per_class < cv]
        if len(few):
            raise ValueError(f"table['group']: class(es) {few.to_dict()} have images from fewer patients than "
                             f"cv={cv} folds; every fold needs each class. Use a smaller cv or more patients")
    return table


class ImageStudy:
    """An explained diagnostic study: images → segmented objects → biomarkers → model → SHAP.

    Parameters
    ----------
    prompts : sequence of str, optional
        What to segment. Default :data:`DEFAULT_STUDY_PROMPTS` (H&E: lymphocytes, epithelial
        and spindle-shaped nuclei, all other nuclei, glands — prompts the shipped model was
        trained on).
    model : str, path or model
        Segmentation model (:func:`xpath.segmentation.segment`).
    classifier : {"logistic", "hgb", "rf"} or scikit-learn classifier
        The :class:`~xpath.models.DiagnosticModel` estimator on the biomarkers.
    cv : int
        Folds of the patient-grouped cross-validation (both models use the same folds).
    baseline : bool
        Also fit the black-box baseline (EfficientNet-Lite0 ImageNet embeddings + logistic).
    cache_dir : path, optional
        Where segmentations and embeddings are cached (default: ``$XPATH_CACHE`` or
        ``~/.cache/xpath/study``). A re-run reads finished images back instead of segmenting.
    n_bootstrap : int
        Bootstrap resamples (of patients) of the AUROC confidence intervals.
    top_k : int
        Top features listed and mapped back in the report.
    stability_resamples : int
        Bootstrap refits of the importance-stability analysis (0 skips it).
    backend, n_workers
        :func:`analyze_cohort` execution.
    seed : int
    device : str, optional
    progress : bool
        tqdm bars (segmentation, embeddings).

    Attributes
    ----------
    features_ : pandas.DataFrame
        One row per image (index: ``image_id``), the candidate biomarkers the model was fitted on.
    model_ : xpath.models.DiagnosticModel
        Fitted on every image, with out-of-fold results.
    baseline_ : xpath.models.DiagnosticModel or None
        The black-box baseline, same folds.
    cv_results_ : pandas.DataFrame
        One row per model: ``auroc``, ``ci_lower``, ``ci_upper``, ``accuracy``, ``brier``, ``n_images``,
        ``n_patients``, ``folds``.
    oof_ : pandas.DataFrame
        Per image: ``path``, ``label``, ``group``, ``fold`` and the out-of-fold probability of each model.
    failures_ : pandas.DataFrame
        Images whose analysis failed (left out of the study).
    explanation_ : xpath.explain.BiomarkerReport
        Screen, SHAP values and stability (rendered by :meth:`report`).
    classes_ : numpy.ndarray
    """

    def __init__(self, prompts: Sequence[str] | None = None, model: Any = "xpath_small", classifier: Any = "logistic",
                 cv: int = 5, *, baseline: bool = True, cache_dir: str | os.PathLike | None = None,
                 n_bootstrap: int = 1000, top_k: int = 10, stability_resamples: int = 20,
                 backend: str = "serial", n_workers: int = 2, seed: int = 0, device: Any = None,
                 progress: bool = True):
        self.prompts = prompts
        self.model = model
        self.classifier = classifier
        self.cv = cv
        self.baseline = baseline
        self.cache_dir = cache_dir
        self.n_bootstrap = n_bootstrap
        self.top_k = top_k
        self.stability_resamples = stability_resamples
        self.backend = backend
        self.n_workers = n_workers
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ set-up
    def _prompts(self) -> list[str]:
        return check_prompts(DEFAULT_STUDY_PROMPTS if self.prompts is None else self.prompts)

    def _model_tag(self) -> str:
        m = self.model
        if isinstance(m, (str, os.PathLike)) and Path(m).is_file():
            return f"{Path(m).stem}-{image_key(m, 0)[:12]}"
        if isinstance(m, (str, os.PathLike)):
            return f"{m}-{_shipped_digest(str(m))}"  # new shipped weights of a name: a new cache entry
        return f"{type(m).__name__}-{id(m):x}"  # an in-memory model: cached for this process only

    def _cache_root(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        if os.environ.get("XPATH_CACHE"):
            return Path(os.environ["XPATH_CACHE"]) / "study"
        return Path.home() / ".cache" / "xpath" / "study"

    def _segmentation_dir(self) -> Path:
        tag = self._model_tag()
        digest = hashlib.sha256("|".join([tag, *self._prompts(), FEATURE_VERSION]).encode()).hexdigest()[:12]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)[:40]
        return self._cache_root() / f"{safe}-{digest}"

    def _check_params(self) -> None:
        from ..segmentation.support import require_supported

        require_supported(self._prompts(), self.model)  # refuse untrained prompts before any image is read
        if not isinstance(self.cv, (int, np.integer)) or isinstance(self.cv, bool) or self.cv < 2:
            raise ValueError(f"cv must be an integer >= 2 (folds), got {self.cv!r}")
        c = self.classifier
        if isinstance(c, str) and c not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS} or a scikit-learn classifier, got {c!r}")
        if not isinstance(c, str) and not (hasattr(c, "fit") and hasattr(c, "predict_proba")):
            raise TypeError(f"classifier must be one of {CLASSIFIERS} or a scikit-learn classifier with "
                            f"predict_proba, got {type(c).__name__}")

    # ------------------------------------------------------------------ features
    def _image_features(self, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Segment (or read back) every image; rows in ``table`` order, NaN rows for failures."""
        from ._cohort import analyze_cohort

        folder = self._segmentation_dir()
        keys = [image_key(p, m) for p, m in zip(table["path"], table["mpp"], strict=True)]
        frames, failures = [], []
        for mpp in sorted(set(table["mpp"])):  # analyze_cohort passes one mpp to the function
            part = table[table["mpp"] == mpp]
            slides = pd.DataFrame({"slide_id": [keys[i] for i in part.index], "path": part["path"].to_numpy()})
            slides = slides.drop_duplicates("slide_id")
            res = analyze_cohort(slides, self._prompts(), out_dir=folder, func=study_image_features,
                                 backend=self.backend, n_workers=self.n_workers, progress=self.progress,
                                 model=self.model, mpp=float(mpp), maps_dir=str(folder / "maps"),
                                 seed=self.seed, device=self.device)
            frames.append(res.table)
            failures.append(res.failures)
            self._segmented_ = getattr(self, "_segmented_", 0) + len(res.done)
        done = pd.concat(frames, ignore_index=True).drop(columns=["path"], errors="ignore")
        done = done.drop_duplicates("slide_id").set_index("slide_id")
        rows = done.reindex(keys)
        rows.index = pd.Index(keys, name="image_key")
        return rows, pd.concat(failures, ignore_index=True)

    # ------------------------------------------------------------------ fit
    def fit(self, table: pd.DataFrame) -> ImageStudy:
        """Segment, measure, cross-validate and explain.

        Parameters
        ----------
        table : pandas.DataFrame
            One row per image: ``path`` (file), ``label`` (0/1 or class names), ``group``
            (patient id: all images of a patient stay in one fold), ``mpp`` (µm per pixel).
            With class names, ``classes_`` is their sorted order and :meth:`predict_proba`
            gives the probability of ``classes_[1]``.

        Returns
        -------
        self
        """
        from ..explain import BiomarkerReport
        from ..models import DiagnosticModel

        self._check_params()
        table = _check_table(table, fit=True, cv=self.cv)
        rows, failures = self._image_features(table)
        ok = rows.notna().any(axis=1).to_numpy()
        self.failures_ = failures
        if not ok.all():
            log.warning("%d of %d images failed and are left out: %s", int((~ok).sum()), len(ok),
                        failures["message"].head(3).tolist())
        table = _check_table(table[ok], fit=True, cv=self.cv)
        rows = rows[ok]
        self.feature_names_ = select_study_features(rows)
        if not self.feature_names_:
            raise ValueError("no usable feature: every candidate biomarker is missing or constant over the images")
        X = rows[self.feature_names_].astype(float)
        X.index = pd.Index(_image_ids(table), name="image_id")
        self.features_ = X
        self.table_ = table.assign(image_id=X.index, image_key=rows.index)
        y = table["label"].to_numpy()
        g = table["group"].astype(str).to_numpy()
        model = DiagnosticModel(self.classifier, cv=self.cv, n_bootstrap=self.n_bootstrap, seed=self.seed)
        self.explanation_ = BiomarkerReport(model=model, top_k=self.top_k, stability_resamples=self.stability_resamples,
                                            seed=self.seed, title="xpath image study").fit(X, y, groups=g)
        self.model_ = self.explanation_.model_
        self.classes_ = self.model_.classes_
        self.baseline_ = self._fit_baseline(table, y, g) if self.baseline else None
        self._summarise(table, y, g)
        return self

    def _embeddings(self, table: pd.DataFrame) -> np.ndarray:
        from ._embed import image_embeddings

        keys = [image_key(p, m) for p, m in zip(table["path"], table["mpp"], strict=True)]
        return image_embeddings(list(table["path"]), list(table["mpp"]), keys=keys,
                                cache_dir=self._cache_root() / "embeddings-efficientnet_lite0",
                                progress=self.progress)

    def _fit_baseline(self, table: pd.DataFrame, y: np.ndarray, g: np.ndarray):
        from ..models import DiagnosticModel

        E = pd.DataFrame(self._embeddings(table), columns=[f"embedding.{i}" for i in range(1280)])
        base = DiagnosticModel("logistic", cv=self.cv, n_bootstrap=self.n_bootstrap, seed=self.seed).fit(E, y, groups=g)
        if not np.array_equal(base.oof_fold_, self.model_.oof_fold_):  # same y, groups, cv and seed: same folds
            raise RuntimeError("the baseline's folds differ from the biomarker model's")
        return base

    def _summarise(self, table: pd.DataFrame, y: np.ndarray, g: np.ndarray) -> None:
        rows, oof = [], table[["path", "label", "group"]].copy()
        oof.index = self.features_.index
        oof["fold"] = self.model_.oof_fold_
        for name, m in (("biomarkers", self.model_), ("black box", self.baseline_)):
            if m is None:
                continue
            rows.append({"model": name, "auroc": m.auroc_, "ci_lower": m.auroc_ci_[0], "ci_upper": m.auroc_ci_[1],
                         "accuracy": m.accuracy_, "brier": m.brier_, "n_images": len(y),
                         "n_patients": int(np.unique(g).size), "folds": self.cv})
            proba = m.oof_proba_
            oof[f"p_{name.replace(' ', '_')}"] = proba[:, 1] if proba.shape[1] == 2 else list(proba)
        self.cv_results_ = pd.DataFrame(rows).set_index("model")
        self.oof_ = oof

    # ------------------------------------------------------------------ predict
    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        """The biomarker rows of new images (segmenting those not cached), columns as fitted."""
        if not hasattr(self, "model_"):
            raise RuntimeError("this ImageStudy is not fitted yet; call fit(table) first")
        table = _check_table(table, fit=False)
        rows, failures = self._image_features(table)
        if len(failures):
            log.warning("%d image(s) failed; their features are imputed: %s", len(failures),
                        failures["message"].head(3).tolist())
        X = rows.reindex(columns=self.feature_names_).astype(float)
        X.index = pd.Index(_image_ids(table), name="image_id")
        return X

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of ``classes_[1]`` for each image, shape ``(n,)``; ``(n, n_classes)`` if multi-class.

        ``table`` needs ``path`` and ``mpp`` (``label`` and ``group`` are not used). Images of
        any size and pixel size are segmented at the model's resolution.
        """
        proba = self.model_.predict_proba(self.transform(table)) if hasattr(self, "model_") else None
        if proba is None:
            raise RuntimeError("this ImageStudy is not fitted yet; call fit(table) first")
        return proba[:, 1] if proba.shape[1] == 2 else proba

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted class of each image, shape ``(n,)``."""
        return self.model_.predict(self.transform(table))

    # ------------------------------------------------------------------ report
    def plot_feature(self, feature: str, image_id: str | None = None, *, ax=None):
        """One image with the nuclei or glands that carry ``feature`` outlined, coloured by their value.

        Parameters
        ----------
        feature : str
            A column of ``features_`` (e.g. ``"epithelial nuclei:nucleus.shape.area_um2.mean"``:
            the epithelial nuclei coloured by their area).
        image_id : str, optional
            A row of ``features_``; default the image with the highest value.
        ax : matplotlib Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        from ._study_report import plot_feature_objects

        if not hasattr(self, "model_"):
            raise RuntimeError("this ImageStudy is not fitted yet; call fit(table) first")
        if feature not in self.features_.columns:
            raise ValueError(f"feature must be a column of features_, got {feature!r}")
        if image_id is None:
            image_id = self.features_[feature].idxmax()
        return plot_feature_objects(self, feature, image_id, ax=ax)

    def report(self, out_dir: str | os.PathLike, *, dpi: int = 110) -> Path:
        """Write ``report.html``, ``report.md`` and the figures to ``out_dir`` (replaced atomically).

        Returns
        -------
        pathlib.Path
            The folder.
        """
        from ._study_report import study_blocks

        if not hasattr(self, "model_"):
            raise RuntimeError("this ImageStudy is not fitted yet; call fit(table) first")
        self.explanation_.title = "xpath image study: biomarkers vs black box, explained"
        return Path(self.explanation_.render(out_dir, dpi=dpi, extra=lambda tmp: study_blocks(self, tmp, dpi=dpi)))


def _image_ids(table: pd.DataFrame) -> list[str]:
    """Readable unique image ids: the file names without suffix (made unique with a counter)."""
    names = [Path(p).name.rsplit(".", 1)[0] for p in table["path"]]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}~{k}")
    return out

