"""The training loss: known values, masking rules, matching, and that the model learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xpath.segmentation import segmentation_loss
from xpath.segmentation.modeling import SegmenterOutput
from xpath.segmentation.training.losses import dice_loss, match_candidates

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dice_loss_known_values():
    t = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    perfect = torch.tensor([[[20.0, 20.0], [-20.0, -20.0]]])
    assert dice_loss(perfect, t).item() == pytest.approx(0.0, abs=1e-6)
    # all probabilities 0.5: inter = 1, sums = 2 + 2 → 1 − (2·1 + 1)/(2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(1, 2, 2), t).item() == pytest.approx(0.4)


def test_match_picks_the_planted_candidate():
    torch.manual_seed(0)
    target = torch.zeros(1, 2, 32, 32)
    target[0, 0, 4:16, 4:16] = 1
    target[0, 1, 20:30, 2:30] = 1
    cands = torch.randn(1, 5, 8, 8)
    small = torch.nn.functional.avg_pool2d(target, 4)[0]  # (2, 8, 8)
    cands[0, 3] = (small[0] * 2 - 1) * 10  # candidate 3 = target 0
    cands[0, 1] = (small[1] * 2 - 1) * 10  # candidate 1 = target 1
    assert match_candidates(cands, target).tolist() == [[3, 1]]
    # one-to-one: two prompts with the same mask get distinct candidates
    same = target[:, :1].expand(1, 2, 32, 32)
    got = match_candidates(cands, same)[0].tolist()
    assert 3 in got and len(set(got)) == 2
    # inactive prompts are not matched
    assert match_candidates(cands, target, active=torch.tensor([[False, True]])).tolist() == [[-1, 1]]


def _output(b=1, p=2, q=4, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    cands = torch.randn(b, q, h // 4, w // 4, generator=g, requires_grad=True)
    sim = torch.randn(b, p, q, generator=g).tanh().requires_grad_()
    sel = sim.argmax(-1)
    masks_s4 = torch.gather(cands, 1, sel[..., None, None].expand(-1, -1, h // 4, w // 4))
    up = torch.nn.functional.interpolate(masks_s4, size=(h, w), mode="bilinear", align_corners=False)
    dist = torch.randn(b, p, h, w, generator=g, requires_grad=True)
    pres = torch.randn(b, p, generator=g, requires_grad=True)
    return SegmenterOutput(up, dist, pres, sim, sel, cands, (h, w))


def _targets(b=1, p=2, h=16, w=16):
    masks = torch.zeros(b, p, h, w)
    masks[:, 0, 2:10, 2:10] = 1
    return {"masks": masks, "distance": masks * 0.5, "present": torch.tensor([[1.0, 0.0]]).expand(b, p),
            "prompt_valid": torch.ones(b, p, dtype=torch.bool), "has_instances": torch.tensor([[True, True]])}


def test_absent_and_invalid_prompts_follow_the_contract():
    out, t = _output(), _targets()
    loss, parts = segmentation_loss(out, t)
    assert set(parts) == {"mask_bce", "mask_dice", "selection", "presence", "distance", "total"}
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"), rel=1e-5)
    # the absent prompt's mask does not enter the mask loss
    t2 = dict(t, masks=t["masks"].clone())
    t2["masks"][0, 1] = 1
    _, parts2 = segmentation_loss(out, t2)
    assert parts2["mask_bce"] == parts["mask_bce"] and parts2["mask_dice"] == parts["mask_dice"]
    # presence: BCE over valid prompts only — hand-computed
    x = out.presence_logits.detach()[0]
    expected = (math.log1p(math.exp(-x[0])) + math.log1p(math.exp(x[1]))) / 2
    assert parts["presence"] == pytest.approx(expected, rel=1e-5)
    t3 = dict(t, prompt_valid=torch.tensor([[True, False]]))
    _, parts3 = segmentation_loss(out, t3)
    assert parts3["presence"] == pytest.approx(math.log1p(math.exp(-x[0])), rel=1e-5)
    # distance only where present & has_instances: prompt 0 only
    d = torch.nn.functional.binary_cross_entropy_with_logits(out.distance_logits[0, 0], t["distance"][0, 0])
    assert parts["distance"] == pytest.approx(d.item(), rel=1e-5)
    loss.backward()
    assert out.candidate_logits_s4.grad.abs().sum() > 0 and out.similarity.grad.abs().sum() > 0


def test_no_present_prompt_gives_zero_mask_terms():
    out, t = _output(), _targets()
    t = dict(t, present=torch.zeros(1, 2))
    loss, parts = segmentation_loss(out, t)
    assert parts["mask_bce"] == parts["mask_dice"] == parts["selection"] == parts["distance"] == 0.0
    assert torch.isfinite(loss)


def test_bad_targets():
    out, t = _output(), _targets()
    with pytest.raises(ValueError, match="missing"):
        segmentation_loss(out, {k: v for k, v in t.items() if k != "present"})
    with pytest.raises(ValueError, match=r"targets\['masks'\] must have shape"):
        segmentation_loss(out, dict(t, masks=t["masks"][..., :8]))
    with pytest.raises(ValueError, match="unknown loss weights"):
        segmentation_loss(out, t, weights={"dice": 1.0})


@pytest.mark.slow
def test_tiny_model_learns_a_real_batch(shared_data, seed):
    """xpath_tiny fits two real CoNSeP crops with three disjoint nucleus classes as prompts.

    Epithelial, inflammatory and spindle-shaped nuclei do not overlap, so a high Dice for
    every prompt needs the text to steer which candidate is selected.
    """
    from xpath.datasets import load_dataset
    from xpath.segmentation import create_model

    torch.manual_seed(seed)
    ds = load_dataset("consep")
    records = [ds[7], ds[8]]  # both crops hold all three classes
    objects = ["epithelial", "inflammatory", "spindle-shaped"]
    prompts = [f"nuclei-level {o} in colon pathology" for o in objects]
    images = np.stack([r.image[:128, :128] for r in records])
    masks = []
    for r in records:
        by_object = {t.label.object: t.semantic[:128, :128] for t in r.triples()}
        masks.append([by_object[o] for o in objects])
    masks = torch.tensor(np.array(masks), dtype=torch.float32)  # (2, 3, 128, 128)
    assert (masks.flatten(2).sum(-1) > 0).all()
    assert masks.sum(1).max() == 1  # disjoint classes
    targets = {"masks": masks, "distance": masks * 0.5, "present": torch.ones(2, 3),
               "prompt_valid": torch.ones(2, 3, dtype=torch.bool), "has_instances": torch.ones(2, 3, dtype=torch.bool)}
    model = create_model("xpath_tiny", device="cpu").train()
    x = model.preprocess(images)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    first = None
    for _ in range(120):
        loss, parts = segmentation_loss(model(x, prompts), targets)
        first = parts["total"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x, prompts)
    pred = (out.mask_logits > 0).float()
    dice = 2 * (pred * masks).flatten(2).sum(-1) / (pred.flatten(2).sum(-1) + masks.flatten(2).sum(-1))  # (2, 3)
    assert parts["total"] < 0.3 * first
    assert dice.min() > 0.8, f"Dice per image × prompt {dice.tolist()} after 120 steps"
    # each prompt selects its own candidate
    assert all(len(set(row)) == 3 for row in out.selected.tolist())
