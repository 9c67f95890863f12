"""BiomarkerReport renders on GBSG2 and a planted cohort: Markdown, HTML, non-empty PNGs, atomic."""

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_gbsg2
from PIL import Image

from xpath.datasets import synthetic_cohort
from xpath.explain import BiomarkerReport, catalog_entries
from xpath.models import CoxModel, DiagnosticModel


def _check_pngs(folder, expected):
    for name in expected:
        path = folder / f"{name}.png"
        assert path.stat().st_size > 5000, name
        img = np.asarray(Image.open(path).convert("L"))
        assert min(img.shape) > 200 and img.std() > 10, name  # a drawing, not a blank canvas


@pytest.fixture(scope="module")
def gbsg2_report():
    d = load_gbsg2()
    X = pd.get_dummies(d.drop(columns=["time", "cens"]), drop_first=True, dtype=float)
    return BiomarkerReport(model=CoxModel(n_bootstrap=30), stability_resamples=3, top_k=5).fit(
        X, d["time"], d["cens"]
    )


def test_gbsg2_report(tmp_path, gbsg2_report):
    out = gbsg2_report.render(tmp_path / "gbsg2")
    _check_pngs(
        out,
        [
            "forest_univariable",
            "forest_model",
            "km_risk_groups",
            "calibration",
            "shap_bar",
            "shap_beeswarm",
            "stability",
        ],
    )
    assert len(list(out.glob("shap_waterfall_row*.png"))) == 2
    md = (out / "report.md").read_text()
    for text in (
        "## Cohort",
        "| events | 299 |",
        "harrell_c",
        "Proportional-hazards check",
        "![Kaplan–Meier curves of out-of-fold risk groups](km_risk_groups.png)",
        "pnodes",
    ):
        assert text in md, text
    assert '<img src="shap_beeswarm.png"' in (out / "report.html").read_text()
    assert pd.read_csv(out / "univariable_screen.csv", index_col=0).loc["pnodes", "q"] < 1e-6


def test_synthetic_diagnosis_report_and_catalogue(tmp_path):
    c = synthetic_cohort(200, n_null=10, seed=0)
    r = BiomarkerReport(
        model=DiagnosticModel("logistic", n_bootstrap=30),
        stability_resamples=3,
        top_k=5,
        waterfall=[0],
    ).fit(c.X, c.y)
    out = r.render(tmp_path / "dx")
    _check_pngs(
        out,
        [
            "forest_univariable",
            "roc",
            "calibration",
            "shap_bar",
            "shap_beeswarm",
            "shap_waterfall_row0",
            "stability",
        ],
    )
    assert set(r.top_features_) == set(c.informative)
    md = (out / "report.md").read_text()
    assert "auroc" in md and "Top biomarkers: feature catalogue" in md
    # the informative names follow the catalogue convention; the nulls have no entry
    entries = catalog_entries(
        [
            "nucleus.shape.area_um2.mean",
            "region.density_per_mm2.lymphocyte.tumour",
            "null.random.f00",
        ]
    )
    assert entries.loc["null.random.f00", "definition"] == "no catalogue entry"
    assert entries["catalogue_name"].tolist()[:2] == [
        "nucleus.shape.area_um2",
        "region.density_per_mm2.{class}.{region}",
    ]
    assert "region.density_per_mm2.{class}.{region}" in md


def test_synthetic_survival_report_with_patient_groups(tmp_path):
    c = synthetic_cohort(120, n_null=5, images_per_patient=2, seed=4)
    r = BiomarkerReport(model=CoxModel(n_bootstrap=20), stability_resamples=0, top_k=5).fit(
        c.X, c.durations, c.events, groups=c.groups
    )
    out = r.render(tmp_path / "surv", figure_format="svg")
    assert (out / "km_risk_groups.svg").stat().st_size > 5000
    assert "grouped by patient" in (out / "report.md").read_text()
    assert r.cohort_.loc["patients", "value"] == 120


def test_render_is_atomic(tmp_path, gbsg2_report, monkeypatch):
    target = tmp_path / "rep"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    gbsg2_report.render(target)
    assert not (target / "stale.txt").exists() and (target / "report.md").exists()
    before = sorted(p.name for p in target.iterdir())

    def fail(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(BiomarkerReport, "_blocks", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        gbsg2_report.render(target)
    assert sorted(p.name for p in target.iterdir()) == before  # the old report is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temporary folder left behind


def test_render_before_fit_and_bad_outcome():
    with pytest.raises(RuntimeError, match="fit"):
        BiomarkerReport().render("/nonexistent/never")
    with pytest.raises(TypeError, match="fit\\(X, durations, events\\)"):
        BiomarkerReport().fit(pd.DataFrame({"a": [1.0, 2.0]}))


@pytest.mark.parametrize("task", ["survival", "diagnosis"])
def test_a_model_fitted_without_cv_gets_no_out_of_fold_sections(tmp_path, task):
    c = synthetic_cohort(80, n_null=3, seed=1)
    if task == "survival":
        model, outcome, cv_text = CoxModel(cv=None), (c.durations, c.events), "harrell_c"
    else:
        model, outcome, cv_text = DiagnosticModel("logistic", cv=None), (c.y,), "Confusion matrix"
    r = BiomarkerReport(model=model, stability_resamples=0, top_k=3).fit(c.X, *outcome)
    assert r.model_.cross_validated_ is False
    out = r.render(tmp_path / task)
    md = (out / "report.md").read_text()
    assert cv_text not in md and "folds" not in md
    assert not {"km_risk_groups.png", "calibration.png", "roc.png"} & {p.name for p in out.iterdir()}
    # the same model with cv: the sections are there, and a refit without cv takes them away again
    refit = model.set_params(cv=3).fit(c.X, *outcome)
    assert refit.cross_validated_ is True
    assert refit.set_params(cv=None).fit(c.X, *outcome).cross_validated_ is False
