"""Fine-tuning a new label: the command line end to end on a tiny model, resume after a kill, every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xpath.cli import main
from xpath.ontology import Label
from xpath.segmentation.training import replay as replay_module
from xpath.segmentation.training.encoder_cache import EncoderCache, keep_frozen
from xpath.segmentation.training.user_data import (
    check_mask,
    finetune_label,
    hold_out,
    read_annotated_folder,
)

STROMA = "tissue-level stroma in colon pathology"


def _tissue(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A pink image with a purple disc (the "stroma") at a seeded place, and the disc's mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 5) ** 2
    image = np.full((size, size, 3), (235, 190, 215), np.uint8)
    image[disc] = (150, 60, 150)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    return image, disc


def _folder(root: Path, n: int = 5, *, size: int = 96) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = _tissue(i, size)
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return _folder(tmp_path / "data")


@pytest.fixture
def small_replay(tmp_path, monkeypatch) -> Path:
    """The shipped replay sample cut to one CoNSeP image per part (a fast test), in its layout."""
    src = replay_module.REPLAY_DIR
    rows = json.loads((src / "manifest.json").read_text())
    keep = [next(r for r in rows if r["source"] == "consep" and r["split"] == split) for split in ("train", "val")]
    dst = tmp_path / "replay"
    for row in keep:
        for key in ("image", "instances", "class_map"):
            (dst / row[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / row[key], dst / row[key])
    (dst / "manifest.json").write_text(json.dumps(keep))
    monkeypatch.setattr(replay_module, "REPLAY_DIR", dst)
    return dst


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded: bad input must be reported before."""
    from xpath.segmentation.training import finetune as ft

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(ft, "_load_base", refuse)


def _cli(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--images", str(folder / "images"), "--masks", str(folder / "masks"), "--prompt",
            "stroma in colon", "--out", str(out), "--mpp", "0.5", "--base", "xpath_tiny", "--no-progress", *extra]


# ---------------------------------------------------------------------------- end to end
def test_cli_end_to_end_on_a_tiny_model(folder, small_replay, tmp_path, capsys):
    from xpath.segmentation import create_model, segment, supported_prompts
    from xpath.segmentation.modeling.checkpoint import read_checkpoint

    out = tmp_path / "stroma.pt"
    assert main(_cli(folder, out, "--steps", "3")) == 0
    printed = capsys.readouterr().out
    assert "taught 'tissue-level stroma in colon pathology' in 3 steps" in printed and str(out) in printed

    payload = read_checkpoint(out)
    summary = payload["extra"]["finetune"]
    assert summary["label"] == STROMA and summary["steps"] == 3
    assert len(summary["val_images"]) == 1 and len(summary["train_images"]) == 4
    assert {r["label"] for r in summary["old_labels"]} >= {"nuclei-level nucleus in colon pathology"}
    assert all(np.isfinite(r["dice_before"]) and np.isfinite(r["dice_after"]) for r in summary["old_labels"])
    assert {"stroma in colon", STROMA, "stroma"} <= set(payload["prompt_embeddings"]["texts"])
    assert out.with_suffix(".md").is_file() and "## Accuracy before and after" in out.with_suffix(".md").read_text()

    table = supported_prompts(out)  # the new label is supported, with its held-out Dice
    row = table[table.label == STROMA].iloc[0]
    assert np.isfinite(row.dice) and row.n_val >= 1
    model = create_model(out)  # an ordinary checkpoint
    assert model.config.name == "xpath_tiny" and STROMA in model.config.vocabulary
    # the new label has its own decoder branch; the old labels keep the base's weights, so their Dice is unchanged
    assert model.config.label_branches == [STROMA] and model.branch_of("stroma") == "0"
    assert model.branch_of("nuclei") is None
    with torch.random.fork_rng():
        torch.manual_seed(0)  # how the fine-tune built its untrained base
        base = create_model("xpath_tiny")
    for name in ("pixel_decoder", "joint", "heads", "text_proj"):
        ours, theirs = getattr(model, name).state_dict(), getattr(base, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    trained = model.branches["0"].heads.state_dict()
    assert any(not torch.equal(trained[k], base.heads.state_dict()[k]) for k in trained)
    assert all(r["dice_after"] == r["dice_before"] for r in summary["old_labels"])
    image, _ = _tissue(7)
    seg = segment(image, ["stroma in colon"], model=str(out), mpp=0.5, progress=False)
    assert seg.semantic["stroma in colon"].shape == image.shape[:2]
    Image.fromarray(image).save(tmp_path / "new.png")
    assert main(["segment", str(tmp_path / "new.png"), "-p", "stroma", "--model", str(out), "--mpp", "0.5",
                 "--out", str(tmp_path / "seg"), "--no-progress"]) == 0
    assert not (tmp_path / "stroma.run" / "checkpoints").exists()  # finished: checkpoints of the run removed


def test_resume_after_a_kill(folder, small_replay, tmp_path, monkeypatch):
    from xpath.segmentation import FinetuneSettings, finetune
    from xpath.segmentation.training.trainer import Trainer

    save, load = Trainer.save_checkpoint, Trainer._load_state
    seen = {}

    def killed_after_first_checkpoint(self):
        path = save(self)
        if not seen.get("resumed"):
            raise KeyboardInterrupt  # the process dies right after step 5's checkpoint
        return path

    def spy_load(self):
        load(self)
        seen["resumed"] = self.step

    monkeypatch.setattr(Trainer, "save_checkpoint", killed_after_first_checkpoint)
    monkeypatch.setattr(Trainer, "_load_state", spy_load)
    kwargs = {"prompt": "stroma in colon", "mpp": 0.5, "steps": 7, "out": tmp_path / "m.pt", "progress": False,
              "settings": FinetuneSettings(checkpoint_every=5)}
    data = {"images": folder / "images", "masks": folder / "masks"}
    with pytest.raises(KeyboardInterrupt):
        finetune("xpath_tiny", data, **kwargs)
    assert (tmp_path / "m.run" / "checkpoints").is_dir() and not (tmp_path / "m.pt").exists()
    seen["resumed"] = None
    result = finetune("xpath_tiny", data, **kwargs)  # the same call again
    assert seen["resumed"] == 5 and result.steps == 7 and result.path.is_file()


def test_a_run_folder_of_other_data_is_not_resumed(folder, tmp_path):
    from xpath.segmentation.training.finetune import _Run

    run = _Run.open(tmp_path / "x.run", "aaaa", restart=False)
    (run.path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="unfinished fine-tune of other data"):
        _Run.open(tmp_path / "x.run", "bbbb", restart=False)
    assert _Run.open(tmp_path / "x.run", "bbbb", restart=True).state["fingerprint"] == "bbbb"


# ---------------------------------------------------------------------------- bad input, before any model
def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unpaired_names_are_named(folder, tmp_path, capsys, no_model):
    (folder / "masks" / "img4.png").rename(folder / "masks" / "other.png")
    err = _error(capsys, _cli(folder, tmp_path / "m.pt"))
    assert "do not pair" in err and "img4.png" in err and "other.png" in err


def test_size_mismatch_is_named(folder, tmp_path, capsys, no_model):
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(folder / "masks" / "img2.png")
    err = _error(capsys, _cli(folder, tmp_path / "m.pt"))
    assert "img2.png" in err and "60×50" in err and "96×96" in err


@pytest.mark.parametrize("values, expect", [
    ("antialiased", "0/255 mask but also holds"),
    ("colour", "channels that differ"),
    ("jpeg", "are JPEG"),
])
def test_unexpected_mask_values_are_named(folder, tmp_path, capsys, no_model, values, expect):
    mask = np.zeros((96, 96), np.uint8)
    mask[20:60, 20:60] = 255
    target = folder / "masks" / "img1.png"
    if values == "antialiased":
        mask[20, 20:60] = 128
        Image.fromarray(mask).save(target)
    elif values == "colour":
        Image.fromarray(np.stack([mask, mask // 2, mask], -1)).save(target)
    else:
        target.unlink()
        Image.fromarray(mask).save(target.with_suffix(".jpg"))
    err = _error(capsys, _cli(folder, tmp_path / "m.pt"))
    assert expect in err and "img1" in err


def test_all_empty_masks_fewer_than_four_images_no_mpp_empty_prompt(folder, tmp_path, capsys, no_model):
    out = tmp_path / "m.pt"
    argv = _cli(folder, out)
    assert "--mpp" in _error(capsys, [a for a in argv if a not in ("--mpp", "0.5")])  # PNGs record no pixel size
    empty_prompt = list(argv)
    empty_prompt[empty_prompt.index("stroma in colon")] = "  "
    assert "prompt must be a non-empty text" in _error(capsys, empty_prompt)
    for path in (folder / "masks").iterdir():
        Image.fromarray(np.zeros((96, 96), np.uint8)).save(path)
    assert "is empty" in _error(capsys, argv)
    for i in (2, 3, 4):
        (folder / "images" / f"img{i}.png").unlink()
        (folder / "masks" / f"img{i}.png").unlink()
    assert "at least 4" in _error(capsys, argv)


def test_prompt_reading():
    assert finetune_label("stroma in colon") == Label("colon", "tissue", "stroma")
    assert finetune_label("tumour nuclei").prompt == "nuclei-level tumor in unspecified pathology"
    with pytest.raises(ValueError, match="does not say its structure"):
        finetune_label("tumor")
    assert finetune_label("tumor", structure="tissue").structure == "tissue"
    with pytest.raises(ValueError, match="does not know the kind 'goblet'"):
        finetune_label("goblet cells")
    with pytest.raises(ValueError, match="names no object"):
        finetune_label("a cat")
    with pytest.raises(ValueError, match="exists at the levels"):
        finetune_label("glands", structure="nuclei")


def test_masks_binary_or_labels():
    labels = np.zeros((6, 6), np.uint16)
    labels[:2, :2], labels[4:, 4:] = 7, 300
    semantic, inst = check_mask(labels, instance_level=True)
    assert semantic.sum() == 8 and set(np.unique(inst)) == {0, 7, 300}
    assert check_mask(labels, instance_level=False)[1] is None
    assert check_mask((labels > 0).astype(np.uint8) * 255)[1] is None
    with pytest.raises(ValueError, match="negative"):
        check_mask(-labels.astype(np.int32))
    with pytest.raises(ValueError, match="fractional"):
        check_mask(labels / 2.5)


def test_hold_out_is_seeded_by_file_and_stratified():
    positive = np.array([True] * 8 + [False] * 2)
    a, b = hold_out(positive, seed=3), hold_out(positive, seed=3)
    assert (a == b).all() and a.sum() == 2 and (positive & a).any() and (positive & ~a).any()
    assert hold_out([True] * 4).sum() == 1  # leaves three to train on
    with pytest.raises(ValueError, match="only 1 image"):
        hold_out([True, False, False, False])


def test_qupath_exports_give_the_label_polygons(folder, tmp_path):
    (tmp_path / "geo").mkdir()
    for i in range(5):
        features = [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [40, 10], [40, 30], [10, 30],
                                                                                  [10, 10]]]},
             "properties": {"objectType": "annotation", "classification": {"name": "Stroma"}}},
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[60, 60], [90, 60], [90, 90], [60, 90],
                                                                                  [60, 60]]]},
             "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
        ]
        (tmp_path / "geo" / f"img{i}.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                                       "features": features}))
    data = read_annotated_folder(folder / "images", geojson=tmp_path / "geo", prompt="stroma in colon", mpp=0.5)
    mask = data.triples[0].semantic
    assert mask[15:25, 15:35].all() and not mask[65:85, 65:85].any()  # the "Tumor" polygon is left out
    assert 550 <= mask.sum() <= 700  # the 30 × 20 rectangle


# ---------------------------------------------------------------------------- the pieces
def test_encoder_cache_returns_the_encoder_outputs_and_frozen_stays_in_eval():
    from xpath.segmentation import create_model

    model = create_model("xpath_tiny", device="cpu")
    keep_frozen(model.image_encoder)
    model.train()
    assert not model.image_encoder.training and model.pixel_decoder.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model.image_encoder(x)
    with EncoderCache(model.image_encoder) as cache:
        first = model.image_encoder(x)
        again = model.image_encoder(x[1:])
        assert cache.misses == 2 and cache.hits == 1 and len(cache) == 2
    for a, b in zip(plain, first):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(again[0], first[0][1:])
    assert "forward" not in vars(model.image_encoder)  # restored
