"""Inference precision: which arithmetic "auto" picks, that bfloat16 really runs, and that it changes no answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xpath.segmentation import TextPromptPredictor, create_model, segment
from xpath.segmentation.inference import precision as precision_mod
from xpath.segmentation.inference.precision import check_precision, resolve_precision
from xpath.segmentation.metrics import aji, dice


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("xpath_tiny", device="cpu")


@pytest.mark.parametrize("bad", ["fp16", "half", "", None, 32])
def test_unknown_precision_is_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'auto', 'bfloat16'\)"):
        check_precision(bad)


def test_auto_is_bfloat16_exactly_on_cpus_with_amx(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert resolve_precision("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    assert resolve_precision("auto", "cpu") is None  # avx512-bf16 alone: not measured faster, stays float32
    assert resolve_precision("float32", "cpu") is None
    assert resolve_precision("bfloat16", "cpu") is torch.bfloat16  # asked for: emulated where not native


def test_bfloat16_on_a_gpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_bfloat16", lambda device: False)
    with pytest.raises(ValueError, match="Ampere"):
        resolve_precision("bfloat16", "cuda")
    assert resolve_precision("auto", "cuda") is None


def test_the_default_is_float32_everywhere(tiny):
    assert TextPromptPredictor(tiny).autocast_dtype is None  # the model card's figures are float32


def test_predictor_encodes_in_the_precision_it_reports(tiny):
    image = np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    dtypes = {}
    for name in ("float32", "bfloat16"):
        predictor = TextPromptPredictor(tiny, precision=name)
        assert predictor.autocast_dtype == (None if name == "float32" else torch.bfloat16)
        dtypes[name] = predictor._encode(image[None].repeat(2, 0)).pixel.dtype
        # every public path decodes those features in the same arithmetic: no dtype mismatch, float32 answers
        seg = predictor.set_image(image, mpp=0.25).predict(["nuclei", "stroma"])
        assert seg.instances["nuclei"].shape == (96, 80) and np.isfinite(list(seg.presence.values())).all()
        objects = predictor.predict_objects(boxes=[[10, 10, 40, 50]])
        assert objects.masks.shape == (1, 96, 80) and np.isfinite(objects.scores).all()
    assert dtypes == {"float32": torch.float32, "bfloat16": torch.bfloat16}


def test_segment_refuses_an_unknown_precision_before_loading_a_model():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="precision"):
        segment(image, ["nuclei"], model="no_such_model", precision="fp16", progress=False)


def test_bfloat16_finds_the_same_nuclei_as_float32_with_the_shipped_model(shared_data):
    """The equality check of the slide-throughput issue for the faster arithmetic: same objects, same masks."""
    from xpath.datasets import iter_dataset

    record = next(r for r in iter_dataset("monuseg", root=shared_data) if r.image_id == "TCGA-2Z-A9J9-01A-01-TS1")
    image = np.ascontiguousarray(record.image[:512, :512])
    prompts = ["nuclei", "lymphocytes", "tumor nuclei"]
    runs = {name: segment(image, prompts, mpp=record.mpp, progress=False, precision=name)
            for name in ("float32", "bfloat16")}
    a, b = runs["float32"], runs["bfloat16"]
    assert a.instances["nuclei"].max() > 50  # a real field of nuclei, not two empty maps agreeing
    assert aji(a.instances["nuclei"], b.instances["nuclei"]) >= 0.98  # measured 0.998
    assert dice(a.semantic["nuclei"], b.semantic["nuclei"]) >= 0.99
    # a type is a per-nucleus vote, so a flipped vote moves a whole nucleus: measured AJI 0.975 / 0.998 here on a CPU
    # with AMX (0.95-0.99 on other MoNuSeg crops) and 0.997 / 0.924 on one without (bfloat16 by other kernels), where
    # float32 against float32 with the tile grid moved by 8 px gives 0.66 / 0.54
    for p in prompts[1:]:
        assert aji(a.instances[p], b.instances[p]) >= 0.90, p
    for p in prompts:
        assert abs(a.presence[p] - b.presence[p]) < 0.02, p
