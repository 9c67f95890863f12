"""ImageStudy: table checks before any work, the cache, failures, the planted answer, prediction, report.

The segmentation model is replaced by a counting stand-in (classical nuclei + a bright-area
"gland" mask) so that the tests check the study's plumbing and statistics in seconds; the real
model runs in ``xpath study`` and ``make demo``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from xpath.datasets import synthetic_tissue
from xpath.explain import catalog_entries
from xpath.pipeline import ImageStudy, select_study_features

MPP = 0.5


class CountingSegmenter:
    """Stands in for ``xpath.segmentation.segment``: classical nuclei, bright pixels as 'glands'."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image, prompts, *, mpp=None, **kwargs):
        from xpath.segmentation.classical import classical_nuclei

        self.calls += 1
        image = np.asarray(image)
        nuclei = classical_nuclei(image, mpp=mpp).astype(np.int32)
        bright = image.mean(axis=2) > 200
        semantic, instances = {}, {}
        for p in prompts:
            if "gland" in p:
                semantic[p] = bright
            else:
                semantic[p], instances[p] = nuclei > 0, nuclei
        return SimpleNamespace(semantic=semantic, instances=instances, presence=dict.fromkeys(prompts, 0.9))


@pytest.fixture
def segmenter(monkeypatch):
    import xpath.segmentation

    fake = CountingSegmenter()
    monkeypatch.setattr(xpath.segmentation, "segment", fake, raising=False)
    return fake


def _tile(seed: int, high: bool, size: int = 128) -> np.ndarray:
    return synthetic_tissue(seed, size=size, mpp=MPP, nuclear_size_scale=1.45 if high else 1.0,
                            pleomorphism=0.35 if high else 0.12, lumen=0.1).image


def _table(folder, n: int = 12, *, start: int = 0) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        high = i % 2 == 1
        path = folder / f"img{i:02d}.png"
        PILImage.fromarray(_tile(i, high)).save(path)
        rows.append({"path": str(path), "label": int(high), "group": f"patient{i}", "mpp": MPP})
    return pd.DataFrame(rows)


def _study(tmp_path, **kw) -> ImageStudy:
    opts = {"prompts": ["nuclei", "glands"], "model": "stand-in", "cv": 3, "baseline": False,
            "cache_dir": tmp_path / "cache", "n_bootstrap": 50, "stability_resamples": 0, "progress": False}
    return ImageStudy(**{**opts, **kw})


def test_study_finds_the_planted_grade_and_predicts_unseen_images(tmp_path, segmenter):
    table = _table(tmp_path / "train")  # one image per patient
    study = _study(tmp_path).fit(table)
    assert segmenter.calls == 12
    assert study.features_.shape[0] == 12 and "nucleus.shape.area_um2.mean" in study.features_.columns
    assert (catalog_entries(study.features_.columns)["definition"] != "no catalogue entry").all()
    assert study.model_.auroc_ >= 0.85, study.cv_results_
    assert list(study.cv_results_.index) == ["biomarkers"]
    assert set(study.oof_["fold"]) == {0, 1, 2}

    # unseen images: another size, and one at half the pixel size (upsampled 2x, mpp halved)
    new = tmp_path / "new"
    new.mkdir()
    rows = []
    for k, (seed, high, size) in enumerate([(100, True, 160), (101, False, 160), (102, True, 96), (103, False, 96)]):
        path = new / f"new{k}.png"
        PILImage.fromarray(_tile(seed, high, size)).save(path)
        rows.append({"path": str(path), "mpp": MPP})
    big = PILImage.fromarray(_tile(104, True)).resize((256, 256), PILImage.BICUBIC)
    big.save(new / "new_hires.png")
    rows.append({"path": str(new / "new_hires.png"), "mpp": MPP / 2})
    proba = study.predict_proba(pd.DataFrame(rows))
    assert proba.shape == (5,) and np.all((proba >= 0) & (proba <= 1))
    assert min(proba[[0, 2, 4]]) > max(proba[[1, 3]]), proba


def test_a_second_fit_reads_the_cache_instead_of_segmenting(tmp_path, segmenter):
    table = _table(tmp_path / "train", n=8)
    first = _study(tmp_path, cv=2).fit(table)
    assert segmenter.calls == 8
    second = _study(tmp_path, cv=2).fit(table)
    assert segmenter.calls == 8  # nothing segmented again
    pd.testing.assert_frame_equal(first.features_, second.features_)
    _study(tmp_path, cv=2, prompts=["nuclei"]).fit(table)  # other prompts: another cache entry
    assert segmenter.calls == 16


def test_a_failing_image_is_recorded_and_left_out(tmp_path, segmenter):
    table = _table(tmp_path / "train", n=8)
    broken = tmp_path / "train" / "broken.png"
    broken.write_bytes(b"not a png")
    table = pd.concat([table, pd.DataFrame([{"path": str(broken), "label": 1, "group": "p99", "mpp": MPP}])])
    study = _study(tmp_path, cv=2).fit(table)
    assert len(study.failures_) == 1 and study.features_.shape[0] == 8
    assert "broken" not in study.features_.index


@pytest.mark.parametrize(("change", "error", "words"), [
    (lambda t: t.drop(columns="group"), ValueError, "['group']"),
    (lambda t: t.assign(path=[*t["path"][:-1], "/nonexistent/x.png"]), FileNotFoundError, "table['path']"),
    (lambda t: t.assign(label=0), ValueError, "one class"),
    (lambda t: t.assign(group=["a", "b"] * (len(t) // 2)), ValueError, "table['group']"),
    (lambda t: t.assign(mpp=-1.0), ValueError, "table['mpp']"),
    (lambda t: t.assign(label=[None, *t["label"][1:]]), ValueError, "table['label']"),
    (lambda t: t["path"].tolist(), TypeError, "DataFrame"),
])
def test_bad_tables_fail_clearly_before_any_segmentation(tmp_path, segmenter, change, error, words):
    table = _table(tmp_path / "train", n=6)
    with pytest.raises(error) as info:
        _study(tmp_path).fit(change(table))
    assert words in str(info.value)
    assert segmenter.calls == 0


def test_bad_parameters_fail_before_any_segmentation(tmp_path, segmenter):
    table = _table(tmp_path / "train", n=6)
    with pytest.raises(ValueError, match="classifier"):
        _study(tmp_path, classifier="svm").fit(table)
    with pytest.raises(ValueError, match="cv"):
        _study(tmp_path, cv=1).fit(table)
    with pytest.raises(ValueError, match="prompts"):
        _study(tmp_path, prompts=[""]).fit(table)
    with pytest.raises(RuntimeError, match="not fitted"):
        _study(tmp_path).predict_proba(table)
    assert segmenter.calls == 0


def test_report_compares_with_the_black_box_in_the_same_folds(tmp_path, segmenter):
    table = _table(tmp_path / "train")
    study = _study(tmp_path, baseline=True).fit(table)
    assert list(study.cv_results_.index) == ["biomarkers", "black box"]
    np.testing.assert_array_equal(study.baseline_.oof_fold_, study.model_.oof_fold_)
    folder = study.report(tmp_path / "report")
    for name in ("report.html", "report.md", "roc_comparison.png", "mapped_0.png", "shap_beeswarm.png",
                 "calibration.png"):
        assert (folder / name).stat().st_size > 500, name
    text = (folder / "report.md").read_text()
    assert "same folds" in text and "black box" in text and "AUROC difference" in text
    top = study.explanation_.top_features_[0]
    ax = study.plot_feature(top)
    assert top in ax.get_title() and study.features_[top].idxmax()[:40] in ax.get_title()
    with pytest.raises(ValueError, match="feature"):
        study.plot_feature("no.such.feature")


def test_select_study_features_keeps_named_biomarkers_and_drops_the_rest():
    frame = pd.DataFrame({
        "nucleus.shape.area_um2.mean": [1.0, 2.0, 3.0],
        "tumour:nucleus.shape.solidity.q90": [0.9, 0.8, 0.7],
        "nucleus.shape.area_px.mean": [4.0, 8.0, 12.0],  # pixels: the µm version is kept instead
        "presence.nuclei": [0.1, 0.5, 0.9],  # the segmenter's own score: not a biomarker
        "gland.count": [3.0, 3.0, 3.0],  # constant
        "density_per_mm2.lymphocytes": [np.nan, np.nan, 5.0],  # mostly missing
        "gland.shape.area_um2.mean": [100.0, 200.0, np.nan],
    })
    assert select_study_features(frame) == ["nucleus.shape.area_um2.mean", "tumour:nucleus.shape.solidity.q90",
                                            "gland.shape.area_um2.mean"]


def test_cli_study_writes_the_report_and_predictions(tmp_path, segmenter, capsys):
    from xpath.cli import EXIT_OK, EXIT_USAGE, main

    table = _table(tmp_path / "train")
    table["path"] = [f"train/{p.split('/')[-1]}" for p in table["path"]]  # relative to the table's folder
    table.to_csv(tmp_path / "table.csv", index=False)
    table.drop(columns=["label", "group"]).head(3).to_csv(tmp_path / "new.csv", index=False)
    code = main(["study", "--table", str(tmp_path / "table.csv"), "--out", str(tmp_path / "report"), "--prompt",
                 "nuclei", "--prompt", "glands", "--model", "stand-in", "--cv", "3", "--no-baseline",
                 "--cache", str(tmp_path / "cache"), "--predict", str(tmp_path / "new.csv"), "--no-progress"])
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "biomarkers" in out and "top biomarkers:" in out
    predictions = pd.read_csv(tmp_path / "report" / "predictions.csv")
    assert len(predictions) == 3 and predictions["p_1"].between(0, 1).all()
    assert (tmp_path / "report" / "report.html").is_file()

    table.drop(columns="mpp").to_csv(tmp_path / "bad.csv", index=False)
    assert main(["study", "--table", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "r2"),
                 "--model", "stand-in"]) == EXIT_USAGE
    assert "table is missing the column(s) ['mpp']" in capsys.readouterr().err
    assert main(["study", "--table", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r3")]) == EXIT_USAGE
    assert "--table: no such file" in capsys.readouterr().err


def test_default_prompts_are_labels_the_shipped_model_was_trained_on():
    from xpath.pipeline import DEFAULT_STUDY_PROMPTS
    from xpath.segmentation import check_prompt_support

    supports = check_prompt_support(list(DEFAULT_STUDY_PROMPTS), "xpath_small")
    assert [s.status for s in supports] == ["supported"] * len(DEFAULT_STUDY_PROMPTS)


def test_a_prompt_the_model_never_learned_is_refused_before_any_segmentation(tmp_path, segmenter):
    from xpath.segmentation import UnsupportedPromptError

    with pytest.raises(UnsupportedPromptError, match="stroma"):
        _study(tmp_path, prompts=["nuclei", "stroma"], model="xpath_small").fit(_table(tmp_path / "t", n=6))
    assert segmenter.calls == 0

