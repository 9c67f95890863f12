"""The shipped default checkpoint: it loads offline, and its outputs on two fixed real images stay put.

The reference masks in ``tests/data/shipped_model/`` are the shipped model's own outputs on two
held-out real images (a MoNuSeg test crop and an EBHI validation image). A broken checkpoint,
a changed preprocessing or a changed post-processing moves the masks and fails here. After
shipping new weights on purpose, regenerate them with::

    XPATH_REGENERATE_REFERENCES=1 .venv/bin/python -m pytest tests/segmentation/test_shipped_model.py

The same images also check the masks against the ground truth, so a reference regenerated
from a bad model cannot pass either.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from xpath.datasets import iter_dataset
from xpath.segmentation import default_checkpoint, segment
from xpath.segmentation.metrics import dice

REFERENCES = Path(__file__).resolve().parents[1] / "data" / "shipped_model"

# (dataset, image id, crop, prompt, floor of Dice against the ground truth)
CASES = {
    "monuseg_nuclei": ("monuseg", "TCGA-2Z-A9J9-01A-01-TS1", (slice(0, 512), slice(0, 512)), "nuclei", 0.70),
    "ebhi_glands": ("ebhi", "Adenocarcinoma__GT2012336-1-400-008", (slice(None), slice(None)), "glands", 0.80),
}


def _case(shared_data, name):
    source, image_id, crop, prompt, floor = CASES[name]
    record = next(r for r in iter_dataset(source, root=shared_data) if r.image_id == image_id)
    truth = record.triples()[0].semantic
    return np.ascontiguousarray(record.image[crop]), truth[crop], record.mpp, prompt, floor


def test_default_checkpoint_ships_and_verifies():
    path = default_checkpoint("xpath_small")
    assert path is not None and path.stat().st_size < 12 * 2**20  # fp16 trainable weights only


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_stored_reference_and_ground_truth(shared_data, name):
    image, truth, mpp, prompt, floor = _case(shared_data, name)
    result = segment(image, [prompt, "mitotic figures in brain"], mpp=mpp, progress=False, presence_threshold=0.5)
    mask = result.semantic[prompt]
    reference_path = REFERENCES / f"{name}.png"
    if os.environ.get("XPATH_REGENERATE_REFERENCES"):
        REFERENCES.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(mask).save(reference_path, optimize=True)
    reference = np.asarray(PILImage.open(reference_path)).astype(bool)
    assert dice(mask, reference) >= 0.95
    assert dice(mask, truth) >= floor
    assert result.presence[prompt] > 0.5
    assert result.presence["mitotic figures in brain"] < 0.5
    assert not result.semantic["mitotic figures in brain"].any()  # "not in this image", no forced mask
