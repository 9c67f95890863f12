"""Distillation from a frozen teacher: which prompts are held, the term itself, its config, and a run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from xpath.ontology import Label
from xpath.segmentation.modeling.segmenter import SegmenterOutput
from xpath.segmentation.training.config import DataConfig, DistillConfig, OptimConfig, RunConfig, TrainConfig, load_config
from xpath.segmentation.training.dataset import collate_batch
from xpath.segmentation.training.distill import distillation_loss, held_prompts
from xpath.segmentation.training.trainer import Trainer

NUCLEUS = Label("colon", "nuclei", "nucleus")
GLAND = Label("colon", "tissue", "gland")


def _output(b: int, p: int, size: int, seed: int, requires_grad: bool = False) -> SegmenterOutput:
    g = torch.Generator().manual_seed(seed)
    mask, dist = torch.randn(b, p, size, size, generator=g), torch.randn(b, p, size, size, generator=g)
    presence = torch.randn(b, p, generator=g)
    for t in (mask, dist, presence):
        t.requires_grad_(requires_grad)
    return SegmenterOutput(mask_logits=mask, distance_logits=dist, presence_logits=presence,
                           similarity=torch.zeros(b, p, 3), selected=torch.zeros(b, p, dtype=torch.long),
                           candidate_logits_s4=None, input_size=(size, size))


def test_held_prompts_are_the_valid_text_prompts_of_the_held_structures():
    labels = [[NUCLEUS, GLAND, NUCLEUS], [None, NUCLEUS, GLAND]]
    valid = torch.tensor([[True, True, True], [False, True, True]])
    spatial = torch.tensor([[False, False, True], [False, False, False]])
    held = held_prompts(labels, valid, spatial, ("nuclei",))
    assert held.tolist() == [[True, False, False], [False, True, False]]  # the box prompt keeps its own target
    assert held_prompts(labels, valid, None, ("nuclei", "tissue")).tolist() == [[True, True, True],
                                                                                  [False, True, True]]
    with pytest.raises(ValueError, match="one label per prompt slot"):
        held_prompts([[NUCLEUS]], valid, None, ("nuclei",))


def test_the_term_pulls_only_held_prompts_and_vanishes_where_the_student_agrees():
    teacher = _output(2, 3, 8, seed=0)
    held = torch.tensor([[True, False, True], [False, False, True]])
    student = _output(2, 3, 8, seed=1, requires_grad=True)
    distillation_loss(student, teacher, held).backward()
    grad = student.mask_logits.grad.abs().flatten(2).sum(-1)
    assert (grad[held] > 0).all() and (grad[~held] == 0).all()
    assert (student.presence_logits.grad[~held] == 0).all() and (student.distance_logits.grad[held] != 0).any()

    agreeing = _output(2, 3, 8, seed=0, requires_grad=True)  # the teacher's own logits: the minimum
    loss = distillation_loss(agreeing, teacher, held)
    loss.backward()
    for t in (agreeing.mask_logits, agreeing.distance_logits, agreeing.presence_logits):
        assert float(t.grad.abs().max()) < 1e-7
    assert float(loss.detach()) < float(distillation_loss(_output(2, 3, 8, seed=1), teacher, held))
    none = distillation_loss(student, teacher, torch.zeros(2, 3, dtype=torch.bool))
    assert float(none) == 0.0
    with pytest.raises(ValueError, match="must agree"):
        distillation_loss(student, teacher, torch.zeros(2, 2, dtype=torch.bool))


def test_distill_config_parses_and_names_its_errors(tmp_path):
    p = tmp_path / "c.yaml"
    base = "model: xpath_tiny\ndata: {sources: [{dataset: consep}]}\n"
    p.write_text(base + "distill: {checkpoint: t.pt, weight: 2}\n")
    cfg = load_config(p)
    assert cfg.distill == DistillConfig("t.pt", 2, ("nuclei",))
    assert load_config(p, overrides={"distill": None}).distill is None
    for bad, match in [("{weight: 2}", "mapping with a 'checkpoint'"), ("t.pt", "mapping with a 'checkpoint'"),
                       ("{checkpoint: t.pt, weight: 0}", "distill.weight must be a finite number > 0"),
                       ("{checkpoint: t.pt, structures: [glands]}", "distill.structures must list some of"),
                       ("{checkpoint: t.pt, temperature: 2}", r"unknown keys \['temperature'\]")]:
        p.write_text(base + f"distill: {bad}\n")
        with pytest.raises(ValueError, match=match):
            load_config(p)


def _tiny(tmp_path, name: str, distill: DistillConfig | None, init: str) -> TrainConfig:
    return TrainConfig(
        model="xpath_tiny",
        data=DataConfig(sources=({"dataset": "consep", "limit": 2},), tile_size=64, prompts_per_image=2,
                        max_negatives=1),
        optim=OptimConfig(lr=3e-3, warmup_steps=0, batch_size=2, grad_clip=1.0),
        train=RunConfig(steps=6, log_every=1),
        seed=5, out_dir=str(tmp_path / name), init_checkpoint=init, distill=distill)


@pytest.mark.slow
def test_a_distilled_run_stays_nearer_its_teacher(shared_data, tmp_path):
    from xpath.segmentation import create_model, load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    start = tmp_path / "start.pt"
    save_checkpoint(create_model("xpath_tiny", device="cpu"), start)
    with pytest.raises(FileNotFoundError, match="distill.checkpoint"):
        Trainer(_tiny(tmp_path, "x", DistillConfig(str(tmp_path / "nope.pt")), str(start)), progress=False).fit()

    free = Trainer(_tiny(tmp_path, "free", None, str(start)), progress=False)
    free.fit()
    held = Trainer(_tiny(tmp_path, "held", DistillConfig(str(start), weight=50.0), str(start)), progress=False)
    held.fit()
    rows = [r for r in held.history if r.get("kind") == "train"]
    assert len(rows) == 6 and all(np.isfinite(r["distill"]) and r["distill"] > 0 for r in rows)
    assert "distill" not in free.history[0]

    teacher = load_checkpoint(start)
    for k, v in held.teacher.state_dict().items():  # the teacher never trains
        torch.testing.assert_close(v, teacher.state_dict()[k], rtol=0, atol=0, msg=k)
    assert not any(p.requires_grad for p in held.teacher.parameters()) and not held.teacher.training

    batch = next(iter(torch.utils.data.DataLoader(held.train_set, batch_size=2, collate_fn=collate_batch)))
    prompts = [["nuclei-level nucleus in colon pathology"]] * 2

    def probabilities(model):
        model.eval()
        with torch.no_grad():
            return model(model.preprocess(batch["image"].numpy()), prompts).mask_logits.sigmoid()

    reference = probabilities(teacher)
    moved_free = float((probabilities(free.model) - reference).abs().mean())
    moved_held = float((probabilities(held.model) - reference).abs().mean())
    assert moved_held < 0.5 * moved_free, (moved_held, moved_free)


def test_to_dict_round_trips_the_distill_section():
    cfg = TrainConfig(model="xpath_tiny", data=DataConfig(sources=({"dataset": "consep"},)),
                      distill=DistillConfig("t.pt", 0.5, ("nuclei", "cell")))
    again = TrainConfig.from_dict(dataclasses.asdict(cfg))
    assert again.distill == cfg.distill
