"""Know what it knows: trained-label records, refusal of prompts a model never learned, calibrated presence."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from xpath.cli import EXIT_UNSUPPORTED, main
from xpath.ontology import load_vocabulary
from xpath.segmentation import (
    ModelVocabulary,
    TrainedLabel,
    UnsupportedPromptError,
    check_prompt_support,
    create_model,
    load_checkpoint,
    save_checkpoint,
    segment,
    supported_prompts,
)
from xpath.segmentation.calibration import (
    apply_calibration,
    expected_calibration_error,
    fit_isotonic,
    reliability_table,
)

VOC = load_vocabulary()
TRAINED = ("nuclei-level nucleus in unspecified pathology", "nuclei-level inflammatory in colon pathology",
           "nuclei-level epithelial in colon pathology", "tissue-level gland in colon pathology")


def _record(calibration=None) -> ModelVocabulary:
    labels = tuple(TrainedLabel(VOC.parse_prompt(p), dice=0.5 + 0.1 * k, n_val=3) for k, p in enumerate(TRAINED))
    return ModelVocabulary(labels, dict(calibration or {}))


@pytest.fixture(scope="module")
def known():
    """A tiny model that records four trained labels (its weights are random: only the bookkeeping is tested)."""
    torch.manual_seed(0)
    model = create_model("xpath_tiny", device="cpu")
    model.trained_vocabulary = _record()
    return model


@pytest.fixture(scope="module")
def known_file(known, tmp_path_factory):
    return save_checkpoint(known, tmp_path_factory.mktemp("ckpt") / "known.pt")


# ---------------------------------------------------------------- reading prompts
@pytest.mark.parametrize("text, structure, obj, stated", [
    ("lymphocytes", "nuclei", "inflammatory", True),
    ("immune cells", "cell", "inflammatory", True),
    ("glands", "tissue", "gland", True),
    ("tumor", "nuclei", "tumor", False),        # tumour nuclei or tumour tissue?
    ("tumor nuclei", "nuclei", "tumor", True),
    ("tumor region", "tissue", "tumor", True),
    ("epithelium", "nuclei", "epithelial", False),
    ("mitotic figures in brain", "nuclei", "mitotic figure", True),  # instance levels only
    ("gland nuclei", "nuclei", "gland", True),  # stated, though glands are tissue: nothing is trained on it
])
def test_vocabulary_reads_whether_the_structure_is_stated(text, structure, obj, stated):
    reading = VOC.read(text)
    assert (reading.label.structure, reading.label.object, reading.structure_stated) == (structure, obj, stated)
    assert VOC.lookup(text) == reading.label


def test_prompts_without_a_known_object_have_no_reading():
    assert VOC.read("a cat").label is None and VOC.read("asdfgh qwerty").label is None


def test_words_the_vocabulary_does_not_know_are_kept():
    assert VOC.read("goblet cells").unread == ("goblet",)
    assert VOC.read("all nuclei in the colon image").unread == ()


# ---------------------------------------------------------------- the rule
@pytest.mark.parametrize("prompt, label", [
    ("nuclei", "nuclei-level nucleus in unspecified pathology"),
    ("nuclei in lung", "nuclei-level nucleus in unspecified pathology"),  # region may differ
    ("lymphocytes", "nuclei-level inflammatory in colon pathology"),
    ("immune cells", "nuclei-level inflammatory in colon pathology"),  # cells are segmented by their nuclei
    ("epithelial nuclei in breast", "nuclei-level epithelial in colon pathology"),
    ("glands", "tissue-level gland in colon pathology"),
    ("all nuclei in the image", "nuclei-level nucleus in unspecified pathology"),
    ("nuclei-level inflammatory in colon pathology", "nuclei-level inflammatory in colon pathology"),
])
def test_trained_structure_and_object_are_supported(known, prompt, label):
    (s,) = check_prompt_support([prompt], known)
    assert s.status == "supported" and s.label.prompt == label


@pytest.mark.parametrize("prompt", ["a cat", "asdfgh qwerty", "the moon", "mitotic figures in brain", "adipose tissue",
                                    "necrosis", "blood vessels", "stroma", "tumor", "spindle-shaped nuclei",
                                    "gland nuclei", "goblet cells", "signet ring cells", "non-epithelial nuclei"])
def test_untrained_prompts_are_unsupported_with_suggestions(known, prompt):
    (s,) = check_prompt_support([prompt], known)
    assert s.status == "unsupported" and s.label is None
    assert s.nearest and all(lab.prompt in TRAINED for lab in s.nearest)
    assert len({(lab.object, lab.structure) for lab in s.nearest}) == len(s.nearest)  # no repeated suggestion


def test_stroma_is_not_spindle_shaped_nuclei_whatever_the_similarity():
    record = ModelVocabulary((TrainedLabel(VOC.parse_prompt("nuclei-level spindle-shaped in colon pathology")),))
    model = create_model("xpath_tiny", device="cpu")
    model.trained_vocabulary = record
    (s,) = check_prompt_support(["stroma"], model)
    assert s.status == "unsupported" and s.nearest[0].object == "spindle-shaped"  # suggested, never substituted


def test_a_model_without_a_record_is_unchecked():
    model = create_model("xpath_tiny", device="cpu")
    assert [s.status for s in check_prompt_support(["stroma", "nuclei"], model)] == ["unchecked", "unchecked"]
    assert supported_prompts(model).empty


# ---------------------------------------------------------------- records in checkpoints
def test_record_round_trips_through_a_checkpoint(known, known_file):
    loaded = load_checkpoint(known_file, device="cpu")
    pd.testing.assert_frame_equal(pd.DataFrame(loaded.trained_vocabulary.to_dict()["labels"]),
                                  pd.DataFrame(known.trained_vocabulary.to_dict()["labels"]))  # NaN-aware
    table = supported_prompts(known_file)
    assert table["label"].tolist() == list(TRAINED)
    assert table["dice"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    for label, examples in zip(table["label"], table["examples"]):  # every example resolves back to its label
        for text in examples.split(", "):
            (s,) = check_prompt_support([text], known_file)
            assert s.status == "supported" and s.label.prompt == label, text


def test_checkpoints_without_a_record_fall_back_to_their_vocabulary(tmp_path):
    model = create_model("xpath_tiny", device="cpu")
    model.config.vocabulary = list(TRAINED[:2])
    path = save_checkpoint(model, tmp_path / "old.pt")
    assert "trained_vocabulary" not in torch.load(path, weights_only=True)
    assert load_checkpoint(path, device="cpu").trained_vocabulary is None
    assert supported_prompts(path)["label"].tolist() == list(TRAINED[:2])


# ---------------------------------------------------------------- what an unsupported prompt gets
@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)


def test_refusal_names_the_prompt_its_reading_and_the_closest_supported(known, image):
    with pytest.raises(UnsupportedPromptError) as err:
        segment(image, ["nuclei", "stroma"], model=known, mpp=0.5, progress=False)
    message = str(err.value)
    assert "'stroma'" in message and "tissue-level stroma" in message and "closest supported" in message
    assert "'nuclei'" not in message.split("prompt(s):")[1].split(";")[0]  # only the refused prompt is named
    assert isinstance(err.value, ValueError) and [s.prompt for s in err.value.supports] == ["stroma"]


def test_refusal_comes_before_any_image_is_encoded(known, image, monkeypatch):
    calls = []
    monkeypatch.setattr(known, "encode_image", lambda x: calls.append(x))
    with pytest.raises(UnsupportedPromptError):
        segment(image, ["a cat"], model=known, mpp=0.5, progress=False)
    assert calls == []


def test_empty_answer_for_unsupported_prompts(known, image):
    seg = segment(image, ["nuclei", "stroma", "mitotic figures"], model=known, mpp=0.5, progress=False,
                  on_unsupported="empty")
    table = seg.classes.set_index("prompt")
    assert table.loc["nuclei", "status"] == "supported" and not math.isnan(seg.presence["nuclei"])
    for p in ("stroma", "mitotic figures"):
        assert table.loc[p, "status"] == "unsupported" and math.isnan(seg.presence[p])
        assert not seg.semantic[p].any() and pd.isna(table.loc[p, "label"])
    assert "mitotic figures" in seg.instances and not seg.instances["mitotic figures"].any()


def test_nearest_answer_warns_and_names_the_label(known, image):
    with pytest.warns(UserWarning, match="nearest supported label"):
        seg = segment(image, ["stroma"], model=known, mpp=0.5, progress=False, on_unsupported="nearest")
    row = seg.classes.iloc[0]
    assert row.status == "nearest" and row.label in TRAINED and not math.isnan(row.presence)


def test_on_unsupported_must_be_known(known, image):
    with pytest.raises(ValueError, match="on_unsupported must be one of"):
        segment(image, ["nuclei"], model=known, mpp=0.5, progress=False, on_unsupported="ignore")


def test_slides_are_refused_before_they_are_opened(known_file, tmp_path):
    from xpath.pipeline import analyze_cohort, analyze_slide, segment_slide

    missing = tmp_path / "never_opened.svs"  # opening it would raise FileNotFoundError
    with pytest.raises(UnsupportedPromptError):
        segment_slide(missing, ["necrosis"], out_dir=tmp_path, model=known_file)
    with pytest.raises(UnsupportedPromptError):
        analyze_slide(missing, ["blood vessels"], out_dir=tmp_path, model=known_file)
    with pytest.raises(UnsupportedPromptError):
        analyze_cohort([missing], ["the moon"], out_dir=tmp_path / "cohort", model=known_file, progress=False)
    assert not (tmp_path / "cohort").exists()


def test_analyze_refuses_before_reading_and_keeps_substitutes_out_of_regions(known, image, tmp_path):
    from xpath.pipeline import analyze

    with pytest.raises(UnsupportedPromptError):
        analyze(tmp_path / "not_there.png", ["nuclei", "stroma"], model=known, mpp=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyze(image, ["nuclei", "stroma", "glands"], model=known, mpp=0.5, on_unsupported="nearest")
    assert set(result.region_names.values()) <= {"glands"}  # "stroma" answered by another label is no region
    records = {r["prompt"]: r for r in result.prompt_records()}
    assert records["stroma"]["status"] == "nearest" and records["glands"]["status"] == "supported"
    path = result.to_geojson(tmp_path / "a.geojson")
    import json

    meta = json.loads(path.read_text())["xpath"]["prompts"]
    assert [m["status"] for m in meta] == ["supported", "nearest", "supported"]
    from xpath.io import read_parquet

    _, table_meta = read_parquet(result.to_parquet(tmp_path / "tables")["features"], with_metadata=True)
    assert json.loads(table_meta["prompt_support"]) == meta  # the feature table records the same


def test_cli_exits_with_the_documented_code_and_one_line(known_file, tmp_path, capsys):
    code = main(["segment", str(tmp_path / "missing.png"), "-p", "nuclei", "-p", "a cat", "--out", str(tmp_path),
                 "--model", str(known_file)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_UNSUPPORTED == 4
    assert err.count("\n") == 0 and err.startswith("xpath: unsupported prompt:") and "'a cat'" in err


def test_cli_lists_the_supported_prompts(known_file, capsys):
    assert main(["prompts", "--model", str(known_file)]) == 0
    out = capsys.readouterr().out
    assert all(p in out for p in TRAINED) and "lymphocytes" in out


# ---------------------------------------------------------------- calibration
def test_isotonic_calibration_repairs_a_known_miscalibration():
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=20000)
    y = (rng.uniform(size=truth.size) < truth).astype(int)
    overconfident = truth ** 0.25  # monotone, far from calibrated
    knots = fit_isotonic(y, overconfident)
    assert np.all(np.diff(knots[1]) > 0)  # strictly increasing: the raw ranking is kept
    calibrated = apply_calibration(overconfident, knots)
    inside = (overconfident > knots[0][0]) & (overconfident < knots[0][-1])
    order = np.argsort(overconfident[inside])
    assert np.all(np.diff(calibrated[inside][order]) > 0)
    assert expected_calibration_error(y, apply_calibration(overconfident, knots)) < 0.02
    assert expected_calibration_error(y, overconfident) > 0.15
    np.testing.assert_allclose(apply_calibration(overconfident, knots), truth, atol=0.08)


def test_ece_and_reliability_known_answers():
    assert expected_calibration_error([1, 0, 1, 0], [0.75, 0.75, 0.25, 0.25]) == pytest.approx(0.25)
    table = reliability_table([1, 0, 1, 0], [0.75, 0.75, 0.25, 0.25], n_bins=4)
    assert table.n.tolist() == [2, 2] and table.frequency.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="both present"):
        fit_isotonic([1, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="0/1"):
        expected_calibration_error([2, 0], [0.1, 0.2])


def test_predictor_applies_the_recorded_calibration(known, image):
    # float32: the uncalibrated score is compared exactly. In bfloat16 the 1e-7 differences between a prompt
    # embedded alone and in a padded batch (earlier tests embedded these prompts in batches) move it by 1e-4
    raw = segment(image, ["nuclei", "glands"], model=known, mpp=0.5, progress=False, precision="float32")
    calibrated_model = create_model("xpath_tiny", device="cpu")
    calibrated_model.load_state_dict(known.state_dict())
    calibrated_model.trained_vocabulary = _record({"nuclei": ((0.0, 1.0), (0.75, 0.75))})  # nuclei prompts → 0.75
    cal = segment(image, ["nuclei", "glands"], model=calibrated_model, mpp=0.5, progress=False, precision="float32")
    assert cal.presence["nuclei"] == pytest.approx(0.75)
    assert cal.presence["glands"] == pytest.approx(raw.presence["glands"])  # no tissue calibration: unchanged
    np.testing.assert_array_equal(cal.semantic["nuclei"], raw.semantic["nuclei"])


def test_slide_feature_tables_record_prompt_support(known_file):
    import json

    from xpath.pipeline._slide_analysis import _prompt_support

    records = json.loads(_prompt_support(["nuclei", "stroma"], known_file, None, "nearest"))
    assert [r["status"] for r in records] == ["supported", "nearest"]
    assert records[0]["label"] == TRAINED[0] and records[1]["label"] in TRAINED
    assert json.loads(_prompt_support(["stroma"], known_file, None, "empty"))[0] == {
        "prompt": "stroma", "label": None, "status": "unsupported"}
