"""Measuring a checkpoint on its validation tiles and writing its trained-label record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xpath.ontology import Label
from xpath.segmentation import TextPromptPredictor, create_model, load_checkpoint, save_checkpoint
from xpath.segmentation.record import (
    calibration_report,
    measure_vocabulary,
    trained_labels,
    validation_images,
    validation_tile_rows,
    write_record,
)
from xpath.segmentation.support import ModelVocabulary, TrainedLabel

CONSEP_TYPES = {"other", "inflammatory", "epithelial", "spindle-shaped", "nucleus"}


@pytest.fixture(scope="module")
def config(tmp_path_factory, shared_data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text("model: xpath_tiny\ndata:\n  sources:\n"
                    "    - {dataset: consep, limit: 6, val: {group: \"^train_(\\\\d+)_\", fraction: 0.34}}\n"
                    "    - {dataset: ebhi, limit: 4, pseudo_nuclei: true}\n"
                    "  assume_mpp: {ebhi: 1.0}\n")
    return path


def test_trained_labels_are_those_with_training_masks(config):
    labels = trained_labels(config)
    assert {lab.object for lab in labels if lab.region == "colon" and lab.structure == "nuclei"} <= CONSEP_TYPES
    assert Label("colon", "tissue", "gland") in labels
    assert Label("colon", "nuclei", "nucleus") in labels  # CoNSeP's, and EBHI's pseudo-nuclei
    assert not any(lab.object == "mitotic figure" for lab in labels)


def test_validation_rows_mark_present_and_known_absent_labels(config):
    torch.manual_seed(0)
    model = create_model("xpath_tiny", device="cpu")
    (source, records, assumed), = [v for v in validation_images(config) if v[0] == "consep"]
    rows = pd.DataFrame(validation_tile_rows(TextPromptPredictor(model), records[:1], source, assumed))
    assert set(rows.object) <= CONSEP_TYPES and set(rows.family) == {"nuclei"}
    assert rows[rows.object == "nucleus"].present.all()  # a CoNSeP tile always has nuclei
    assert rows[~rows.present].dice.isna().all() and rows[rows.present].dice.between(0, 1).all()
    record = records[0]
    for _, row in rows.drop_duplicates("prompt").iterrows():  # a label absent from the image is absent everywhere
        if not any(t.prompt == row.prompt for t in record.triples()):
            assert not rows[rows.prompt == row.prompt].present.any()


def _rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    present = rng.uniform(size=n) < 0.5
    raw = np.clip(np.where(present, 0.75, 0.45) + rng.normal(0, 0.15, n), 0, 1)  # over-confident, separable
    return pd.DataFrame({"image": [f"img{i % 40}" for i in range(n)], "object": "epithelial", "family": "nuclei",
                         "prompt": "nuclei-level epithelial in colon pathology", "present": present,
                         "presence": raw, "dice": np.where(present, 0.8, np.nan), "aji": np.nan})


def test_record_pools_accuracy_and_calibrates_presence():
    rows = _rows()
    trained = [Label("colon", "nuclei", "epithelial"), Label("breast", "nuclei", "epithelial")]
    record = measure_vocabulary(rows, trained)
    assert [t.label for t in record.labels] == trained  # pooled over regions: both get the same figures
    assert all(t.dice == pytest.approx(0.8) and t.n_val == len(rows) for t in record.labels)
    assert 0.8 < record.labels[0].presence_auroc <= 1.0
    report = calibration_report(rows).set_index("family")
    assert report.loc["nuclei", "ece_after"] < report.loc["nuclei", "ece_before"]  # cross-fitted, still better
    calibrated = [record.calibrate(p, "nuclei") for p in rows.presence]
    assert np.all(np.diff(np.array(calibrated)[np.argsort(rows.presence.to_numpy())]) >= 0)  # ranking kept


def test_write_record_keeps_the_weights(tmp_path):
    torch.manual_seed(0)
    model = create_model("xpath_tiny", device="cpu")
    path = save_checkpoint(model, tmp_path / "m.pt")
    record = ModelVocabulary((TrainedLabel(Label("colon", "tissue", "gland"), dice=0.9, n_val=3),),
                             {"nuclei": ((0.0, 1.0), (0.1, 0.9))})
    write_record(path, record)
    loaded = load_checkpoint(path, device="cpu")
    assert repr(loaded.trained_vocabulary.to_dict()) == repr(record.to_dict())  # repr: NaN-aware
    for k, v in model.state_dict().items():
        if not k.startswith("text_encoder.model."):
            torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0, msg=k)
