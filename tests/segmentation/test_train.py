"""Trainer: schedule, configs and their validation splits, exact resume, and a real overfitting test."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xpath.ontology import Label
from xpath.segmentation.training.__main__ import main
from xpath.segmentation.training.config import (
    DataConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    load_config,
    source_weights,
    split_validation,
)
from xpath.segmentation.training.sources import build_datasets
from xpath.segmentation.training.trainer import Trainer, _lr_lambda, amp_dtype
from xpath.segmentation.training.validation import validation_dice

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_lr_schedule_warmup_then_cosine():
    f = lambda s: _lr_lambda(s, warmup=4, total=14, min_ratio=0.1)
    np.testing.assert_allclose([f(0), f(1), f(3)], [0.25, 0.5, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_bf16_training_is_cuda_only_and_auto_stays_float32_on_cpu(monkeypatch):
    from xpath.segmentation.training import trainer

    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cpu) is None
    monkeypatch.setattr(trainer, "native_bfloat16", lambda device: True)  # even an AMX CPU: measured slower
    with pytest.raises(ValueError, match="needs a CUDA device"):
        amp_dtype("bf16", cpu)
    assert amp_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    assert amp_dtype("auto", torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(trainer, "native_bfloat16", lambda device: False)  # a GPU before Ampere
    assert amp_dtype("auto", torch.device("cuda")) is None
    with pytest.raises(ValueError, match="needs a CUDA device with bf16"):
        amp_dtype("bf16", torch.device("cuda"))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(path):
    cfg = load_config(path)
    assert cfg.train.steps >= 1 and cfg.data.sources


def test_loading_a_config_does_not_import_torch():
    code = ("import sys; from xpath.segmentation.training.config import load_config; "
            f"cfg = load_config({str(CONFIGS / 'xpath_tiny_cpu.yaml')!r}); "
            "print(cfg.data.augment is not None, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_run_dir_writes_are_atomic_and_keep_the_newest(tmp_path):
    from xpath.segmentation.training.run_dir import atomic_torch_save, latest_checkpoint, write_checkpoint_dir

    target = tmp_path / "state.pt"
    atomic_torch_save({"a": 1}, target)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"b": _Unpicklable()}, target)  # fails half-way: the old file stays, no temp file
    assert torch.load(target, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        write_checkpoint_dir(root, step, {"state.pt": lambda p, s=step: atomic_torch_save({"step": s}, p)}, keep=2)
    assert latest_checkpoint(root) == root / "step_0000003"
    assert (root / "latest").read_text() == "step_0000003\n"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000002", "step_0000003"]


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: xpath_tiny\ndata: {sources: [{dataset: consep}]}\noptim: {lr: 1.0e-3, lrr: 2}\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lrr'\] in config section 'optim'"):
        load_config(p)
    p.write_text("model: xpath_tiny\ndata: {sources: []}\n")
    with pytest.raises(ValueError, match="at least one source"):
        load_config(p)
    p.write_text("model: xpath_tiny\ndata: {sources: [{dataset: consep, val: {fraction: 0.2}}]}\n")
    with pytest.raises(ValueError, match="val must be"):
        load_config(p)
    p.write_text("model: xpath_tiny\ndata: {sources: [{dataset: ebhi, pseudo_nuclei: yes please}]}\n")
    with pytest.raises(ValueError, match="pseudo_nuclei must be true, false or"):
        load_config(p)
    for bad in ("0", "-1", "heavy", ".nan", "true"):
        p.write_text(f"model: xpath_tiny\ndata: {{sources: [{{dataset: ebhi, weight: {bad}}}]}}\n")
        with pytest.raises(ValueError, match=r"sources\[0\]\.weight must be a finite number > 0"):
            load_config(p)
    p.write_text("model: xpath_tiny\ndata: {sources: [{synthetic: {count: 2}, weight: 2}]}\n")
    with pytest.raises(ValueError, match="on a dataset source"):
        load_config(p)
    p.write_text("model: xpath_tiny\ndata: {sources: [{dataset: ebhi, weight: 1}, {dataset: ebhi, weight: 2}]}\n")
    with pytest.raises(ValueError, match="dataset 'ebhi' twice with different weights"):
        load_config(p)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    cfg = load_config(CONFIGS / "xpath_tiny_cpu.yaml", overrides={"train.steps": 3, "seed": 9})
    assert cfg.train.steps == 3 and cfg.seed == 9


def test_run_mpp_sets_the_working_resolution_of_a_fresh_or_initialised_model(tmp_path):
    from xpath.segmentation import create_model, load_checkpoint, save_checkpoint
    from xpath.segmentation.training.trainer import _build_model

    cpu = torch.device("cpu")
    base = create_model("xpath_tiny", device="cpu")
    assert base.config.mpp == 0.5
    save_checkpoint(base, tmp_path / "init.pt")
    fine = _build_model("xpath_tiny", checkpoint=str(tmp_path / "init.pt"), device=cpu, mpp=0.25)
    assert fine.config.mpp == 0.25
    for k, v in base.state_dict().items():  # the weights are the checkpoint's; only the resolution changed
        torch.testing.assert_close(fine.state_dict()[k], v, rtol=0, atol=0, msg=k)
    save_checkpoint(fine, tmp_path / "fine.pt")
    assert load_checkpoint(tmp_path / "fine.pt").config.mpp == 0.25, "the checkpoint carries the new mpp"
    assert _build_model("xpath_tiny", checkpoint=None, device=cpu).config.mpp == 0.5
    p = tmp_path / "c.yaml"
    p.write_text("model: xpath_tiny\nmpp: 0.25\ndata: {sources: [{dataset: consep}]}\n")
    assert load_config(p).mpp == 0.25
    p.write_text("model: xpath_tiny\nmpp: -1\ndata: {sources: [{dataset: consep}]}\n")
    with pytest.raises(ValueError, match="mpp must be > 0"):
        load_config(p)


def test_split_by_group_never_straddles():
    ids = [f"train_{g}_{p:03d}" for g in range(1, 28) for p in range(16)]
    val = split_validation(ids, ["train"] * len(ids), {"group": r"^train_(\d+)_", "fraction": 0.2})
    groups = np.array([re.match(r"^train_(\d+)_", i).group(1) for i in ids])
    for g in np.unique(groups):
        assert len(set(val[groups == g])) == 1
    assert val.sum() == 16 * round(0.2 * 27)


def test_pseudo_nuclei_reach_training_images_only(shared_data, tmp_path):
    p = tmp_path / "c.yaml"
    source = '{dataset: ebhi, limit: 10, val: {group: "^(.*?__GT[^-]+)-", fraction: 0.3}, pseudo_nuclei: true}'
    p.write_text(f"model: xpath_tiny\ndata: {{sources: [{source}], assume_mpp: {{ebhi: 1.0}}}}\n")
    train, val = build_datasets(load_config(p), mpp=0.5, tile_size=128)
    assert train.records and val.records
    gland, nuclei = Label("colon", "tissue", "gland"), Label("colon", "nuclei", "nucleus")
    # the detector finds nuclei on most images (on some, Otsu splits off only a few saturated pixels)
    assert sum(r.labels == (gland, nuclei) for r in train.records) >= len(train.records) - 1
    assert all(r.labels == (gland,) for r in val.records)
    assert train.records[0].image.shape == (448, 448, 3)  # 224 px at the assumed 1 µm/px, to 0.5 µm/px
    # pseudo-labels are not exhaustive: a tile where the detector found no nuclei never teaches "no nuclei"
    assert train.partial_labels == {"ebhi": frozenset({nuclei})}
    assert nuclei not in train._negatives(train.records[0], {gland})
    p.write_text(f"model: xpath_tiny\ndata: {{sources: [{source}]}}\n")
    with pytest.raises(ValueError, match="pseudo_nuclei needs the images' mpp"):
        build_datasets(load_config(p), mpp=0.5, tile_size=128)


def test_a_source_weight_scales_how_often_its_tiles_are_drawn(shared_data, tmp_path):
    from xpath.segmentation.training.sources import sampling_weights

    p = tmp_path / "c.yaml"
    sources = "[{dataset: ebhi, limit: 3}, {dataset: ebhi_cohort, limit: 3, weight: 0.25}]"
    p.write_text(f"model: xpath_tiny\ndata: {{sources: {sources}, assume_mpp: {{ebhi: 1.0, ebhi_cohort: 1.0}}}}\n")
    cfg = load_config(p)
    train, _ = build_datasets(cfg, mpp=1.0, tile_size=112)
    source = np.array([train.records[r].source for r in train.tiles[:, 0]])
    assert set(source) == {"ebhi", "ebhi_cohort"}
    w = sampling_weights(train, cfg.data)
    mass = {s: w[source == s].sum() for s in ("ebhi", "ebhi_cohort")}
    # one label (glands) over both: balanced alone, each tile weighs the same; the cohort's tiles weigh a quarter
    n = {s: (source == s).sum() for s in mass}
    assert mass["ebhi_cohort"] / mass["ebhi"] == pytest.approx(0.25 * n["ebhi_cohort"] / n["ebhi"])
    assert source_weights(cfg.data.sources) == {"ebhi": 1.0, "ebhi_cohort": 0.25}


def test_small_cpu_config_holds_out_the_documented_validation_images(shared_data):
    """xpath_small_cpu.yaml: MoNuSeg test images, whole CoNSeP source images and part of EBHI are validation."""
    from xpath.datasets import load_dataset

    cfg = load_config(CONFIGS / "xpath_small_cpu.yaml")
    rules = {s.get("dataset"): s.get("val", "none") for s in cfg.data.sources}
    mon = load_dataset("monuseg", root=shared_data)
    is_val = split_validation([a.image_id for a in mon], [a.split for a in mon], rules["monuseg"])
    assert [a.split for a, v in zip(mon, is_val) if v] == ["test"] * 14 and is_val.sum() == 14
    con = load_dataset("consep", root=shared_data)
    is_val = split_validation([a.image_id for a in con], [a.split for a in con], rules["consep"])
    src = np.array([a.image_id.split("_")[1] for a in con])
    assert 0 < is_val.mean() < 0.5
    assert all(len(set(is_val[src == s])) == 1 for s in np.unique(src))  # never straddles
    ebhi = load_dataset("ebhi", root=shared_data)
    is_val = split_validation([a.image_id for a in ebhi], [a.split for a in ebhi], rules["ebhi"])
    cats = {a.split for a, v in zip(ebhi, is_val) if v}
    assert 0.1 < is_val.mean() < 0.4 and len(cats) == 6  # every grade category is represented
    assert rules.get("monuseg_binary", "none") in ("none", None)  # semantic-only images train only


def _tiny_config(tmp_path: Path, **train) -> TrainConfig:
    return TrainConfig(
        model="xpath_tiny",
        data=DataConfig(sources=({"dataset": "consep", "limit": 2},), tile_size=64, prompts_per_image=2,
                        max_negatives=1),
        optim=OptimConfig(lr=2e-3, warmup_steps=2, batch_size=2, accumulate=2, grad_clip=1.0),
        train=RunConfig(**{"steps": 6, "ckpt_every": 2, "log_every": 1, **train}),
        seed=11,
        out_dir=str(tmp_path / "run"),
    )


class _Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_resume_after_a_crash_reaches_the_same_weights(shared_data, tmp_path):
    torch.set_num_threads(1)
    cfg = _tiny_config(tmp_path)
    ref = Trainer(cfg, out_dir=tmp_path / "a", progress=False)
    ref.fit()
    ref_state = {k: v.clone() for k, v in ref.model.state_dict().items()}

    def crash(trainer, step):
        if step == 5:
            raise _Crash("simulated crash after step 5 (last checkpoint: step 4)")

    with pytest.raises(_Crash):
        Trainer(cfg, out_dir=tmp_path / "b", progress=False, callbacks=[crash]).fit()
    assert (tmp_path / "b/checkpoints/latest").read_text().strip() == "step_0000004"
    resumed = Trainer(cfg, out_dir=tmp_path / "b", progress=False)
    out = resumed.fit(resume=True)
    assert out["step"] == 6
    state = resumed.model.state_dict()
    assert state.keys() == ref_state.keys()
    for k, v in ref_state.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=1e-6, msg=k)
    # the model checkpoint is the model format, loadable on its own, with the same weights
    from xpath.segmentation import load_checkpoint

    again = load_checkpoint(tmp_path / "b/checkpoints/step_0000006/model.pt")
    # it records the labels it was trained on (CoNSeP's, in the canonical prompt form)
    assert again.config.vocabulary == [lab.prompt for lab in resumed.train_set.vocabulary]
    assert "nuclei-level nucleus in colon pathology" in again.config.vocabulary
    # and its trained-label record: every label with a training mask (no negative-only vocabulary entry)
    trained = {t.label for t in again.trained_vocabulary.labels}
    assert trained == {lab for labs in resumed.train_set.source_labels.values() for lab in labs}
    assert all(lab.region == "colon" for lab in trained)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=1e-6, msg=k)
    log = (tmp_path / "b/log.jsonl").read_text().splitlines()
    assert len(log) >= 6 and all(np.isfinite(__import__("json").loads(r)["loss"]) for r in log)
    # resuming a finished run trains nothing and still names its checkpoint
    done = Trainer(cfg, out_dir=tmp_path / "b", progress=False).fit(resume=True)
    assert done["step"] == 6 and done["checkpoint"].endswith("step_0000006")


@pytest.mark.slow
def test_cli_max_steps_then_resume_equals_uninterrupted(shared_data, tmp_path):
    torch.set_num_threads(1)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "model: xpath_tiny\nseed: 5\n"
        "data: {sources: [{dataset: consep, limit: 2}], tile_size: 64, prompts_per_image: 2}\n"
        "optim: {lr: 1.0e-3, warmup_steps: 1, batch_size: 2}\n"
        "train: {steps: 4, ckpt_every: 0, log_every: 1}\n")
    assert main(["--config", str(cfg_path), "--out", str(tmp_path / "full"), "--no-progress",
                 "--set", "train.log_every=2"]) == 0
    assert [__import__("json").loads(r)["step"] for r in (tmp_path / "full/log.jsonl").read_text().splitlines()] \
        == [2, 4]  # the --set override reached the run
    assert main(["--config", str(cfg_path), "--out", str(tmp_path / "part"), "--no-progress", "--max-steps", "2"]) == 0
    assert main(["--config", str(cfg_path), "--out", str(tmp_path / "part"), "--no-progress", "--resume"]) == 0
    a = torch.load(tmp_path / "full/checkpoints/step_0000004/state.pt", weights_only=True)
    b = torch.load(tmp_path / "part/checkpoints/step_0000004/state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["--config", str(cfg_path), "--out", str(tmp_path / "none"), "--no-progress", "--resume"])


def _real_crops(shared_data, size: int):
    """One CoNSeP image (all nuclei) and one EBHI image (glands), cropped to ``size`` px at 0.5 µm/px."""
    from xpath.datasets import ImageMaskLabel, load_dataset

    out = []
    for name, obj, n in (("consep", "nucleus", 2 * size), ("ebhi", "gland", size)):
        for t in load_dataset(name, limit=1, root=shared_data)[0].triples():
            if t.label.object == obj:
                inst = None if t.instances is None else t.instances[:n, :n]
                out.append(ImageMaskLabel(np.ascontiguousarray(t.image[:n, :n]), t.semantic[:n, :n], inst, t.label,
                                          t.mpp, t.source, t.image_id, t.split))
    return out


@pytest.mark.slow
def test_xpath_tiny_overfits_real_images(shared_data, tmp_path):
    """A fixed pair of real tiles (CoNSeP nuclei, EBHI glands) is learned to Dice >= 0.9 within 200 steps."""
    from xpath.segmentation.training.dataset import SegmentationDataset
    from xpath.segmentation.training.records import build_records

    torch.set_num_threads(2)
    records = build_records(_real_crops(shared_data, 64), mpp=0.5)
    data = SegmentationDataset(records, tile_size=64, prompts_per_image=1, max_negatives=0, augment=None)
    assert len(data) == 2
    cfg = TrainConfig(model="xpath_tiny", data=DataConfig(augment=None, balance="none"),
                      optim=OptimConfig(lr=3e-3, warmup_steps=5, weight_decay=0.0, batch_size=2, min_lr_ratio=0.1),
                      train=RunConfig(steps=200, log_every=10), seed=0, out_dir=str(tmp_path))
    scores = []

    class _Done(Exception):
        pass

    def check(trainer, step):
        if step % 20 == 0 and step >= 60:
            r = validation_dice(trainer.model, data)
            scores.append((step, {k: round(v["dice"], 3) for k, v in r["per_category"].items()}))
            if min(v["dice"] for v in r["per_category"].values()) >= 0.9:
                raise _Done

    from xpath.segmentation import create_model

    torch.manual_seed(0)
    model = create_model("xpath_tiny")
    before = validation_dice(model, data)
    assert before["dice"] < 0.8, before  # untrained: far from the goal
    trainer = Trainer(cfg, model=model, datasets=(data, None), progress=False, callbacks=[check])
    with pytest.raises(_Done):
        trainer.fit()  # _Done is raised once every category reaches Dice 0.9; else fit ends and the test fails
    assert len(scores[-1][1]) == 2, scores
