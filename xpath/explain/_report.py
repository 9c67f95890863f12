"""``BiomarkerReport``: screen, model, SHAP and stability of a biomarker table, as a folder.

``BiomarkerReport().fit(X, durations, events)`` (survival) or ``.fit(X, y)`` (diagnosis) runs the
univariable screen with BH q-values, a cross-validated model (``CoxModel`` or ``DiagnosticModel``),
SHAP values and the importance stability; ``render(folder)`` writes ``report.md``, ``report.html``
and the figures (PNG or SVG) atomically: the folder appears complete or not at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BiomarkerReport", "catalog_entries"]

logger = logging.getLogger(__name__)

# Figures of the model's out-of-fold performance, in the order the report shows them.
_PERFORMANCE_FIGURES = (
    ("km_risk_groups", "Kaplan–Meier curves of out-of-fold risk groups"),
    ("calibration", "Calibration"),
    ("roc", "Out-of-fold ROC curve"),
)


def catalog_entries(features: Sequence[str]) -> pd.DataFrame:
    """Feature-catalogue entries (definition, unit, reference) of ``features``.

    Looks each name up in ``xpath.biomarkers.feature_catalog()``, dropping trailing ``.stat``
    components until a match (``nucleus.shape.area_um2.mean`` → ``nucleus.shape.area_um2``); a
    per-class prefix (``tumour:nucleus.shape.area_um2.mean``) is looked up without the class.
    A feature the catalogue has no entry for gets a row that says so.
    """
    from ..biomarkers import feature_catalog

    catalog = feature_catalog()
    # template names such as "region.density_per_mm2.{class}.{region}" match any filled-in name
    templates = [
        (re.compile("^" + re.sub(r"\\\{[^}]*\\\}", r"[^.]+", re.escape(k)) + "$"), k)
        for k in catalog
        if "{" in k
    ]
    rows = []
    for f in features:
        parts = str(f).split(":")[-1].split(".")  # "tumour:nucleus.shape..." is a per-class aggregate
        entry, matched = None, ""
        for k in range(len(parts), 0, -1):
            key = ".".join(parts[:k])
            if key in catalog:
                entry, matched = catalog[key], key
                break
            hit = next((name for rx, name in templates if rx.match(key)), None)
            if hit is not None:
                entry, matched = catalog[hit], hit
                break
        if entry is not None:
            rows.append(
                (
                    f,
                    matched,
                    str(entry.get("definition", "")),
                    str(entry.get("unit", "")),
                    str(entry.get("reference", "")),
                )
            )
        else:
            rows.append((f, "", "no catalogue entry", "", ""))
    return pd.DataFrame(
        rows, columns=["feature", "catalogue_name", "definition", "unit", "reference"]
    ).set_index("feature")


class BiomarkerReport:
    """One object that runs a biomarker-discovery analysis and renders it.

    Parameters
    ----------
    model : CoxModel or DiagnosticModel, optional
        The model to validate and explain (default: ``CoxModel`` for survival, penalised with
        ``penalizer=0.1`` when there are fewer than 10 events per feature;
        ``DiagnosticModel("hgb")`` for diagnosis). Its ``cv`` and ``n_bootstrap`` are used as set;
        the out-of-fold sections and figures appear when its ``cross_validated_`` says the
        fit ran the cross-validation.
    top_k : int
        Biomarkers listed (and the k of the stability count).
    stability_resamples : int
        Bootstrap resamples of :func:`importance_stability` (0 skips it).
    waterfall : sequence of int, optional
        Row positions to draw SHAP waterfalls for (default: the highest- and lowest-output rows).
    title : str
    seed : int
    progress : bool

    Attributes
    ----------
    task_ : {"survival", "diagnosis"}
    cohort_ : pandas.DataFrame
        N rows, patients, events, censored, median follow-up (reverse Kaplan–Meier) or class counts.
    screen_ : pandas.DataFrame
        :func:`univariable_screen`.
    model_ : fitted model
    shap_ : shap.Explanation
        (for a multi-class model, of the last class).
    stability_ : pandas.DataFrame or None
    top_features_ : list of str
        Ranked by mean |SHAP|.
    catalog_ : pandas.DataFrame
        Catalogue entries of ``top_features_``.
    """

    def __init__(
        self,
        *,
        model=None,
        top_k: int = 10,
        stability_resamples: int = 20,
        waterfall: Sequence[int] | None = None,
        title: str = "Biomarker report",
        seed: int = 0,
        progress: bool = False,
    ):
        self.model = model
        self.top_k = top_k
        self.stability_resamples = stability_resamples
        self.waterfall = waterfall
        self.title = title
        self.seed = seed
        self.progress = progress

    def fit(self, X, *outcome, groups=None) -> BiomarkerReport:
        """Run the analysis: ``fit(X, durations, events)`` or ``fit(X, y)``."""
        from sklearn.base import clone

        from .._types import check_groups, check_labels_1d, check_survival, check_table
        from ..models import CoxModel, DiagnosticModel
        from ._screen import univariable_screen
        from ._shap import shap_values
        from ._stability import importance_stability

        df = check_table(X)
        if len(outcome) == 2:
            self.task_ = "survival"
            t, e = check_survival(*outcome, n=df.shape[0], frame=df)
            df = df.drop(columns=[o for o in outcome if isinstance(o, str)])
            outcome_arrays = (t, e)
        elif len(outcome) == 1:
            self.task_ = "diagnosis"
            outcome_arrays = (check_labels_1d(outcome[0], n=df.shape[0]),)
        else:
            raise TypeError("fit(X, durations, events) for survival or fit(X, y) for diagnosis")
        g = check_groups(groups, n=df.shape[0])
        self.cohort_ = self._cohort(df, outcome_arrays, g)
        self.screen_ = univariable_screen(df, *outcome_arrays, progress=self.progress)
        if self.model is not None:
            model = clone(self.model)
        elif self.task_ == "survival":
            epv = outcome_arrays[1].sum() / df.shape[1]
            model = CoxModel(
                penalizer=0.0 if epv >= 10 else 0.1, seed=self.seed, progress=self.progress
            )
            if epv < 10:
                logger.info(
                    "%.1f events per feature: Cox model penalised (ridge, penalizer=0.1)", epv
                )
        else:
            model = DiagnosticModel("hgb", seed=self.seed, progress=self.progress)
        self.model_ = model.fit(df, *outcome_arrays, groups=g)
        expl = shap_values(self.model_, df, seed=self.seed, progress=self.progress)
        if np.ndim(expl.values) == 3:
            expl = expl[:, :, -1]
        self.shap_ = expl
        imp = pd.Series(np.abs(expl.values).mean(axis=0), index=list(expl.feature_names))
        self.top_features_ = list(imp.sort_values(ascending=False).index[: self.top_k])
        self.stability_ = None
        if self.stability_resamples:
            self.stability_ = importance_stability(
                self.model_,
                df,
                *outcome_arrays,
                groups=g,
                n_resamples=self.stability_resamples,
                top_k=self.top_k,
                seed=self.seed,
                progress=self.progress,
            )
        self.catalog_ = catalog_entries(self.top_features_)
        self._data = (df, outcome_arrays)
        self._grouped = g is not None
        return self

    @staticmethod
    def _cohort(df, outcome, g) -> pd.DataFrame:
        from lifelines import KaplanMeierFitter

        rows = [
            ("rows", df.shape[0]),
            ("patients", df.shape[0] if g is None else np.unique(g).size),
            ("features", df.shape[1]),
        ]
        if len(outcome) == 2:
            t, e = outcome
            reverse = KaplanMeierFitter().fit(t, 1 - e)  # reverse KM: median potential follow-up
            rows += [
                ("events", int(e.sum())),
                ("censored", int((1 - e).sum())),
                ("median follow-up (reverse KM)", float(reverse.median_survival_time_)),
            ]
        else:
            values, counts = np.unique(outcome[0], return_counts=True)
            rows += [(f"class {v}", int(c)) for v, c in zip(values, counts, strict=True)]
        return pd.DataFrame(rows, columns=["quantity", "value"]).set_index("quantity")

    # ---------------------------------------------------------------------------- render
    def render(self, folder, *, figure_format: str = "png", dpi: int = 110, extra=None) -> Path:
        """Write ``report.md``, ``report.html`` and the figures to ``folder`` (replaced atomically).

        Parameters
        ----------
        folder : path
        figure_format : {"png", "svg"}
        dpi : int
        extra : callable, optional
            ``extra(tmp_folder) -> list of blocks`` inserted after the title: a caller's own
            sections (it may write its figures into ``tmp_folder``, which becomes ``folder``).
            Blocks are ``("h2", text)``, ``("p", text)``, ``("table", DataFrame)``,
            ``("img", relative_path, caption)``.

        Returns
        -------
        pathlib.Path
            The folder.
        """
        from ._render import atomic_folder, blocks_to_html, blocks_to_markdown

        if not hasattr(self, "model_"):
            raise RuntimeError("call fit(...) before render(...)")
        if figure_format not in ("png", "svg"):
            raise ValueError(f"figure_format must be 'png' or 'svg', got {figure_format!r}")
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            figures = self._figures(tmp, figure_format, dpi)
            blocks = self._blocks(figures)
            if extra is not None:
                blocks = blocks[:1] + list(extra(tmp)) + blocks[1:]
            (tmp / "report.md").write_text(blocks_to_markdown(blocks), encoding="utf-8")
            (tmp / "report.html").write_text(
                blocks_to_html(blocks, title=self.title), encoding="utf-8"
            )
            self.screen_.to_csv(tmp / "univariable_screen.csv")
            if self.stability_ is not None:
                self.stability_.to_csv(tmp / "importance_stability.csv")
        return folder

    def _figures(self, tmp: Path, fmt: str, dpi: int) -> dict[str, str]:
        from matplotlib.figure import Figure

        from .. import plotting

        df, outcome = self._data
        out: dict[str, str] = {}

        def save(name: str, draw, size=(6.5, 4.5)) -> None:
            fig = Figure(figsize=size)
            ax = fig.add_subplot()
            draw(ax)
            path = f"{name}.{fmt}"
            fig.savefig(tmp / path, dpi=dpi, bbox_inches="tight")
            out[name] = path

        n_top = min(self.top_k, df.shape[1])
        tall = (6.5, 0.35 * min(15, df.shape[1]) + 1.4)
        save(
            "forest_univariable",
            lambda ax: plotting.plot_forest(self.screen_, ax=ax, max_display=15),
            tall,
        )
        m = self.model_
        if self.task_ == "survival":
            save("forest_model", lambda ax: m.plot(ax=ax), (6.5, 0.35 * min(20, df.shape[1]) + 1.4))
            if m.cross_validated_:
                save("km_risk_groups", lambda ax: m.plot_km(ax=ax), (6.5, 5))
                k = int(np.argmin(np.abs(m.times_ - np.median(m.times_))))
                save(
                    "calibration",
                    lambda ax: plotting.plot_survival_calibration(
                        m.oof_survival_[:, k], *outcome, m.times_[k], ax=ax
                    ),
                    (4.8, 4.5),
                )
        elif m.cross_validated_ and m.classes_.size == 2:
            save("roc", lambda ax: m.plot(ax=ax), (4.8, 4.5))
            save("calibration", lambda ax: m.plot_calibration(ax=ax), (4.8, 4.5))
        save(
            "shap_bar",
            lambda ax: plotting.plot_shap_bar(self.shap_, ax=ax, max_display=n_top),
            tall,
        )
        save(
            "shap_beeswarm",
            lambda ax: plotting.plot_shap_beeswarm(self.shap_, ax=ax, max_display=n_top),
            tall,
        )
        output = self.shap_.base_values + self.shap_.values.sum(axis=1)
        rows = (
            list(self.waterfall)
            if self.waterfall is not None
            else [int(np.argmax(output)), int(np.argmin(output))]
        )
        for r in rows:
            save(
                f"shap_waterfall_row{r}",
                lambda ax, r=r: plotting.plot_shap_waterfall(
                    self.shap_, r, ax=ax, max_display=n_top
                ),
                tall,
            )
        if self.stability_ is not None:
            save("stability", lambda ax: plotting.plot_stability(self.stability_, ax=ax), tall)
        return out

    def _blocks(self, figures: dict[str, str]) -> list[tuple]:
        """The report as blocks, section by section (see :meth:`render` for the block kinds)."""
        b: list[tuple] = [("h1", self.title), ("h2", "Cohort"), ("table", self.cohort_)]
        b.append(("h2", "Model performance (cross-validated, out-of-fold)"))
        if self.task_ == "survival":
            b += self._survival_blocks()
        else:
            b += self._diagnosis_blocks()
        b += [("img", figures[name], cap) for name, cap in _PERFORMANCE_FIGURES if name in figures]
        b += self._screen_blocks(figures)
        b += self._shap_blocks(figures)
        b += self._stability_blocks(figures)
        b += [("h2", "Top biomarkers: feature catalogue"), ("table", self.catalog_)]
        return b

    def _survival_blocks(self) -> list[tuple]:
        """Cross-validated C-indices, the multivariable Cox model and its proportional-hazards check."""
        m = self.model_
        b: list[tuple] = []
        if m.cross_validated_:
            grouped = ", grouped by patient" if self._grouped else ""
            text = (
                f"{type(m).__name__}: {m.cv} folds{grouped}; 95% CI from {m.n_bootstrap} "
                "bootstrap resamples of patients; risk-group cut-points chosen inside each "
                "training fold."
            )
            b += [("p", text), ("table", m.cv_summary_)]
        b += [
            ("h2", "Multivariable Cox model (hazard ratio per SD)"),
            ("table", m.summary[["hr", "hr_lower", "hr_upper", "p", "hr_per_unit"]]),
        ]
        return b + self._proportional_hazards_blocks()

    def _proportional_hazards_blocks(self) -> list[tuple]:
        try:
            ph = self.model_.check_proportional_hazards()
            bad = list(ph.index[ph["violated"]])
        except Exception as err:  # noqa: BLE001 - a failed PH test is reported, not fatal
            return [("p", f"Proportional-hazards check could not run: {err}")]
        return [
            (
                "p",
                "Proportional-hazards check (Schoenfeld residuals, rank time): "
                + (f"p < 0.05 for {bad}." if bad else "no covariate with p < 0.05."),
            ),
            ("table", ph),
        ]

    def _diagnosis_blocks(self) -> list[tuple]:
        """Cross-validated metrics and the confusion matrix of the diagnostic model."""
        m = self.model_
        if not m.cross_validated_:
            return []
        grouped = ", grouped by patient" if self._grouped else ""
        return [
            (
                "p",
                (
                    f"{m.cv} folds{grouped}, 95% CI from {m.n_bootstrap} bootstrap resamples "
                    "of patients."
                ),
            ),
            ("table", m.summary),
            ("p", "Confusion matrix (rows = true class):"),
            ("table", m.confusion_matrix_),
        ]

    def _screen_blocks(self, figures: dict[str, str]) -> list[tuple]:
        b = [
            ("h2", "Univariable screen (Benjamini–Hochberg q-values)"),
            ("table", self.screen_.drop(columns=["note"], errors="ignore").head(20)),
            ("img", figures["forest_univariable"], "Forest plot, univariable effects per SD"),
        ]
        if "forest_model" in figures:
            b.append(("img", figures["forest_model"], "Forest plot, multivariable Cox model"))
        return b

    @staticmethod
    def _shap_blocks(figures: dict[str, str]) -> list[tuple]:
        b = [
            ("h2", "SHAP importance"),
            ("img", figures["shap_bar"], "Mean |SHAP value|"),
            ("img", figures["shap_beeswarm"], "SHAP beeswarm"),
        ]
        return b + [
            ("img", p, f"SHAP waterfall, {k.split('_')[-1]}")
            for k, p in figures.items()
            if k.startswith("shap_waterfall")
        ]

    def _stability_blocks(self, figures: dict[str, str]) -> list[tuple]:
        if self.stability_ is None:
            return []
        return [
            (
                "h2",
                (
                    "Importance stability "
                    f"({self.stability_.attrs.get('n_resamples')} bootstrap resamples)"
                ),
            ),
            ("table", self.stability_.head(20)),
            ("img", figures["stability"], "Top-k frequency"),
        ]
