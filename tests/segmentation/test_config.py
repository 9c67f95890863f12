"""SegmenterConfig: a typed encoder config, plain-data round trips, and the flat layout of older checkpoints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from xpath.segmentation import (
    EfficientNetEncoderConfig,
    FocalNetEncoderConfig,
    SegmenterConfig,
    create_model,
    default_checkpoint,
    get_config,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from xpath.segmentation.modeling.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_FLAT_FOCALNET_DEFAULTS = {"embed_dim": 96, "depths": [2, 2, 6, 2], "focal_level": 2, "focal_window": 3,
                           "use_conv_embed": False, "use_layerscale": False, "use_postln": False,
                           "normalize_modulator": False, "drop_path_rate": 0.0}
# The config entry of the shipped xpath_small.pt, as the flat SegmenterConfig wrote it (vocabulary shortened):
# every FocalNet field travels in this EfficientNet checkpoint.
FLAT_SMALL = {
    "name": "xpath_small", "image_size": 512, "mpp": 0.25, "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225], "encoder": "efficientnet_lite0", "encoder_pretrained": True,
    **_FLAT_FOCALNET_DEFAULTS, "text_encoder": "minilm", "text_frozen": True, "text_dim": 384, "dim": 96,
    "mask_dim": 64, "num_queries": 32, "joint_layers": 3, "joint_levels": 3, "num_heads": 4, "ffn_dim": 384,
    "pixel_layers": 2, "pixel_levels": 1, "pixel_ffn_dim": 384, "grad_checkpointing": False,
    "vocabulary": ["nuclei-level nucleus in colon pathology"],
}
# xpath_tiny as the flat config wrote it.
FLAT_TINY = {
    "name": "xpath_tiny", "image_size": 256, "mpp": 0.5, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    "encoder": "focalnet", "encoder_pretrained": False, **_FLAT_FOCALNET_DEFAULTS, "embed_dim": 24,
    "depths": [1, 1, 2, 1], "text_encoder": "minilm", "text_frozen": True, "text_dim": 384, "dim": 64, "mask_dim": 32,
    "num_queries": 16, "joint_layers": 3, "joint_levels": 3, "num_heads": 4, "ffn_dim": 128, "pixel_layers": 1,
    "pixel_levels": 1, "pixel_ffn_dim": 128, "grad_checkpointing": False, "vocabulary": [],
}


def test_flat_efficientnet_config_reads_as_the_typed_one_without_focalnet_fields():
    config = SegmenterConfig.from_dict(FLAT_SMALL)
    assert config.encoder == EfficientNetEncoderConfig(pretrained=True)
    assert config == get_config("xpath_small", mpp=0.25, vocabulary=["nuclei-level nucleus in colon pathology"])
    stored = config.to_dict()
    assert stored["encoder"] == {"name": "efficientnet_lite0", "pretrained": True}
    assert not set(_FLAT_FOCALNET_DEFAULTS) & set(stored)  # FocalNet fields no longer travel with EfficientNet


def test_flat_focalnet_config_reads_as_the_registered_one():
    config = SegmenterConfig.from_dict(FLAT_TINY)
    assert config == get_config("xpath_tiny")
    assert config.encoder == FocalNetEncoderConfig(embed_dim=24, depths=(1, 1, 2, 1))


@pytest.mark.parametrize("name", list_models())
def test_every_registered_config_round_trips_as_plain_data(name):
    config = get_config(name)
    stored = config.to_dict()
    assert SegmenterConfig.from_dict(stored) == config
    assert stored["encoder"]["name"] == config.encoder.name
    assert all(not isinstance(v, tuple) for v in [*stored.values(), *stored["encoder"].values()])


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="unknown encoder 'resnet50'; known encoders: focalnet, efficientnet_lite0"):
        SegmenterConfig.from_dict({**FLAT_TINY, "encoder": "resnet50"})
    with pytest.raises(ValueError, match=r"unknown EfficientNetEncoderConfig fields \['embed_dim'\]"):
        SegmenterConfig.from_dict({**FLAT_TINY, "encoder": {"name": "efficientnet_lite0", "embed_dim": 8}})
    nested = get_config("xpath_tiny").to_dict()
    with pytest.raises(ValueError, match=r"unknown SegmenterConfig fields \['embed_dim'\]"):
        SegmenterConfig.from_dict({**nested, "embed_dim": 8})  # a flat field beside a nested encoder
    with pytest.raises(TypeError, match="encoder must be one of FocalNetEncoderConfig, EfficientNetEncoderConfig"):
        get_config("xpath_tiny", encoder="focalnet")


def test_shipped_checkpoint_loads_and_resaves_with_the_nested_config(tmp_path):
    # the stage-7 file was written with the nested config; the flat layout of older files is the next test's
    path = default_checkpoint("xpath_small")
    stored = read_checkpoint(path)["config"]
    assert stored["encoder"] == {"name": "efficientnet_lite0", "pretrained": True} and "embed_dim" not in stored
    model = create_model("xpath_small", checkpoint="default", device="cpu")
    assert model.config.encoder == EfficientNetEncoderConfig(pretrained=True)
    assert model.config.mpp == 0.25 and model.trained_vocabulary is not None
    again = load_checkpoint(save_checkpoint(model, tmp_path / "small.pt"), device="cpu")
    assert read_checkpoint(tmp_path / "small.pt")["config"]["encoder"] == {"name": "efficientnet_lite0",
                                                                           "pretrained": True}
    assert again.config == model.config


def test_a_checkpoint_written_with_the_flat_config_loads_with_identical_outputs(tmp_path, rng):
    torch.manual_seed(3)
    model = create_model("xpath_tiny", device="cpu").eval()
    path = save_checkpoint(model, tmp_path / "tiny.pt")
    payload = read_checkpoint(path)
    payload["config"] = dict(FLAT_TINY)  # what the release before the nested config wrote
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    loaded = load_checkpoint(old, device="cpu")
    assert loaded.config == model.config
    x = model.preprocess(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        assert torch.equal(model(x, ["nuclei"]).mask_logits, loaded(x, ["nuclei"]).mask_logits)


def test_configs_and_the_registry_do_not_import_torch():
    code = ("import sys; from xpath.segmentation import get_config, list_models; "
            "get_config('xpath_small', mpp=0.25); list_models(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
