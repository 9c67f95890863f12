"""Checkpoints: round trip, strictness, clear errors, checksums."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from xpath.segmentation import (
    CheckpointError,
    create_model,
    load_checkpoint,
    save_checkpoint,
    sha256sum,
    verify_checksum,
)
from xpath.segmentation.modeling.checkpoint import CHECKPOINT_VERSION, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["nuclei-level nucleus in colon pathology", "tissue-level gland in colon pathology"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("xpath_tiny", device="cpu").eval()
    model.config.vocabulary = list(PROMPTS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(model, path, extra={"step": 7})
    return model, path


def test_round_trip_gives_identical_outputs(saved, rng):
    model, path = saved
    x = model.preprocess(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        a = model(x, PROMPTS)
        loaded = load_checkpoint(path, device="cpu")
        b = loaded(x, PROMPTS)
    for name in ("mask_logits", "distance_logits", "presence_logits", "similarity"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert loaded.config == model.config
    assert not loaded.training
    again = create_model("xpath_tiny", checkpoint=path, device="cpu")
    assert again.config.vocabulary == PROMPTS


def test_file_holds_metadata_and_omits_frozen_text_encoder(saved):
    model, path = saved
    payload = read_checkpoint(path)
    assert payload["format_version"] == CHECKPOINT_VERSION
    assert payload["preprocessing"] == {"mean": list(model.config.mean), "std": list(model.config.std),
                                        "mpp": model.config.mpp, "image_size": model.config.image_size}
    assert payload["vocabulary"] == PROMPTS and payload["extra"] == {"step": 7}
    assert not any(k.startswith("text_encoder.") for k in payload["state_dict"])
    assert "image_encoder.downsamples.0.proj.weight" in payload["state_dict"]
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temp file


def test_truncated_file_is_a_clear_error(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch checkpoint"):
        load_checkpoint(bad)


def test_a_training_checkpoint_folder_loads_its_model_file(saved, tmp_path):
    _, path = saved
    step = tmp_path / "checkpoints" / "step_0000300"
    step.mkdir(parents=True)
    (step / "model.pt").write_bytes(path.read_bytes())
    assert read_checkpoint(step)["state_dict"].keys() == read_checkpoint(path)["state_dict"].keys()
    with pytest.raises(FileNotFoundError, match="folder without model.pt"):
        load_checkpoint(tmp_path / "checkpoints")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an xpath segmentation checkpoint"):
        load_checkpoint(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(text)


def _tampered(path, tmp_path, fn, name):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    fn(payload)
    out = tmp_path / name
    torch.save(payload, out)
    return out


def test_mismatched_weights_are_refused(saved, tmp_path):
    _, path = saved
    key = "heads.class_embed.weight"
    missing = _tampered(path, tmp_path, lambda p: p["state_dict"].pop(key), "missing.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys \['heads.class_embed.weight'\]"):
        load_checkpoint(missing)
    extra = _tampered(path, tmp_path, lambda p: p["state_dict"].update(bogus=torch.zeros(1)), "extra.pt")
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \['bogus'\]"):
        load_checkpoint(extra)
    shape = _tampered(path, tmp_path, lambda p: p["state_dict"].update({key: torch.zeros(3, 3)}), "shape.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(shape)
    newer = _tampered(path, tmp_path, lambda p: p.update(format_version=CHECKPOINT_VERSION + 1), "newer.pt")
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(newer)


def test_checkpoint_of_another_model(saved):
    _, path = saved
    with pytest.raises(ValueError, match="holds model 'xpath_tiny', not 'xpath_small'"):
        create_model("xpath_small", checkpoint=path)


def test_sha256_known_answer_and_mismatch(tmp_path):
    f = tmp_path / "abc.bin"
    f.write_bytes(b"abc")
    # FIPS 180-2 test vector for "abc"
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256sum(f) == expected == hashlib.sha256(b"abc").hexdigest()
    assert verify_checksum(f, expected.upper()) == f
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        verify_checksum(f, "0" * 64)
    with pytest.raises(FileNotFoundError):
        verify_checksum(tmp_path / "missing", expected)


def test_half_precision_halves_the_file_and_loads_close(saved, tmp_path):
    model, path = saved
    half = save_checkpoint(model, tmp_path / "half.pt", half_precision=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    assert all(v.dtype != torch.float32 for v in read_checkpoint(half)["state_dict"].values())
    loaded = load_checkpoint(half, device="cpu")
    x = model.preprocess(np.full((64, 64, 3), 128, np.uint8))
    with torch.no_grad():
        a = model(x, PROMPTS).mask_logits
        b = loaded(x, PROMPTS).mask_logits
    assert next(loaded.parameters()).dtype == torch.float32
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=0.05)


def test_default_checkpoint_is_found_and_checked(saved, tmp_path, monkeypatch):
    from xpath.segmentation import default_checkpoint

    _, path = saved
    monkeypatch.setenv("XPATH_WEIGHTS", str(tmp_path))
    assert default_checkpoint("xpath_tiny") is None
    with pytest.raises(FileNotFoundError, match="no trained checkpoint of 'xpath_tiny'"):
        create_model("xpath_tiny", checkpoint="default")
    shipped = tmp_path / "xpath_tiny.pt"
    shipped.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="no checksum file"):
        default_checkpoint("xpath_tiny")
    (tmp_path / "xpath_tiny.pt.sha256").write_text(sha256sum(path) + "  xpath_tiny.pt\n")
    assert default_checkpoint("xpath_tiny") == shipped
    assert create_model("xpath_tiny", checkpoint="default", device="cpu").config.name == "xpath_tiny"
    (tmp_path / "xpath_tiny.pt.sha256").write_text("0" * 64)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        default_checkpoint("xpath_tiny")


def test_cached_prompt_embeddings_skip_the_text_encoder_and_give_the_same_outputs(saved, tmp_path, rng):
    """A checkpoint with prompt embeddings loads without its text encoder; cached prompts decode as the
    live encoder would, and any other prompt loads the encoder lazily and still decodes correctly."""
    import shutil

    from xpath.segmentation.cache_prompts import cache_prompt_embeddings

    model, path = saved
    copy = tmp_path / "tiny.pt"
    shutil.copy(path, copy)
    cache_prompt_embeddings(copy, texts=PROMPTS)
    payload = read_checkpoint(copy)
    assert payload["prompt_embeddings"]["texts"] == PROMPTS and payload["extra"] == {"step": 7}
    before = read_checkpoint(path)["state_dict"]
    assert all(torch.equal(before[k], v) for k, v in payload["state_dict"].items())  # weights untouched
    loaded = load_checkpoint(copy, device="cpu")
    assert not loaded.text_encoder.loaded
    x = model.preprocess(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        a, b = model(x, PROMPTS), loaded(x, PROMPTS)
        assert not loaded.text_encoder.loaded  # every prompt came from the file
        torch.testing.assert_close(b.mask_logits, a.mask_logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.presence_logits, a.presence_logits, atol=1e-5, rtol=0)
        other = ["tissue-level stroma in breast pathology"]
        c, d = model(x, other), loaded(x, other)
    assert loaded.text_encoder.loaded
    torch.testing.assert_close(d.mask_logits, c.mask_logits, atol=1e-5, rtol=0)
    lazy = load_checkpoint(copy, device="cpu")
    state = lazy.state_dict()  # reading the state loads the text weights: it is the whole model's
    assert lazy.text_encoder.loaded and state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items() if k.startswith("text_encoder."))


def test_checkpoint_without_prompt_embeddings_loads_and_bad_ones_are_named(saved, tmp_path):
    _, path = saved
    assert "prompt_embeddings" not in read_checkpoint(path)
    loaded = load_checkpoint(path, device="cpu")  # an old file: no cache, the encoder loads on first use
    with torch.no_grad():
        loaded.text_encoder(PROMPTS)
    assert loaded.text_encoder.loaded
    payload = read_checkpoint(path)
    payload["prompt_embeddings"] = {"text_encoder": "minilm", "max_length": 32, "texts": ["a", "b"],
                                    "lengths": torch.tensor([2, 2]), "tokens": torch.zeros(3, 384),
                                    "pooled": torch.zeros(2, 384)}
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="prompt_embeddings"):
        load_checkpoint(bad, device="cpu")


def test_shipped_checkpoint_caches_the_documented_prompts():
    from xpath.segmentation import default_checkpoint
    from xpath.segmentation.cache_prompts import COMMON_PROMPTS

    payload = read_checkpoint(default_checkpoint("xpath_small"))
    texts = set(payload["prompt_embeddings"]["texts"])
    assert set(COMMON_PROMPTS) <= texts and set(payload["vocabulary"]) <= texts
    assert {"lymphocytes", "tumor nuclei", "nuclei"} <= texts
