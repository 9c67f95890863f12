"""Label branches: a label decoded by its own copy of the decoder leaves every other label's answer unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xpath.segmentation import create_model
from xpath.segmentation.modeling.branch import BRANCH_PARTS, DecoderBranch
from xpath.segmentation.modeling.checkpoint import save_checkpoint

STROMA = "tissue-level stroma in colon pathology"


@pytest.fixture(scope="module")
def branched():
    """A tiny model with a branch for stroma whose heads differ from the base's, and two encoded images."""
    torch.manual_seed(0)
    model = create_model("xpath_tiny").eval()
    images = model.preprocess(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        base = model.decode(model.encode_image(images), ["nuclei", "glands"])
    branch = DecoderBranch.copy_of(model)
    with torch.no_grad():
        for p in branch.heads.parameters():
            p.add_(0.1)
    model.attach_branch(STROMA, branch)
    return model, images, base


def _decode(model, images, prompts, **kw):
    with torch.no_grad():
        return model.decode(model.encode_image(images), prompts, **kw)


def test_old_prompts_answer_exactly_as_before_with_or_without_the_branch_label(branched):
    model, images, base = branched
    alone = _decode(model, images, ["nuclei", "glands"])
    mixed = _decode(model, images, ["nuclei", STROMA, "glands"])
    assert torch.equal(alone.mask_logits, base.mask_logits)
    assert torch.equal(mixed.mask_logits[:, [0, 2]], base.mask_logits)
    assert torch.equal(mixed.presence_logits[:, [0, 2]], base.presence_logits)
    assert torch.equal(mixed.selected[:, [0, 2]], base.selected)


def test_the_branch_label_is_decoded_by_the_branch(branched):
    model, images, _ = branched
    mixed = _decode(model, images, ["nuclei", STROMA])
    alone = _decode(model, images, [STROMA])
    assert torch.equal(mixed.mask_logits[:, 1], alone.mask_logits[:, 0])
    model.branches["0"], saved = DecoderBranch.copy_of(model), model.branches["0"]  # the base's parts as a branch
    try:
        as_base = _decode(model, images, [STROMA])
    finally:
        model.branches["0"] = saved
    assert not torch.allclose(alone.mask_logits, as_base.mask_logits)


def test_per_image_prompt_lists_are_routed_image_by_image(branched):
    model, images, _ = branched
    with torch.no_grad():  # one encoding, so that only the routing can differ (a batch encodes to within 1e-5)
        feats = model.encode_image(images)
        out = model.decode(feats, [["nuclei", STROMA], [STROMA, "glands"]])
        first = model.decode(feats.take(0), ["nuclei", STROMA])
        second = model.decode(feats.take(1), [STROMA, "glands"])
    torch.testing.assert_close(out.mask_logits[0], first.mask_logits[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.mask_logits[1], second.mask_logits[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out.mask_logits[0, 1], out.mask_logits[1, 0], atol=1e-2)  # two images, two answers


def test_branches_travel_with_the_checkpoint(branched, tmp_path):
    model, images, _ = branched
    save_checkpoint(model, tmp_path / "m.pt")
    loaded = create_model(tmp_path / "m.pt")
    assert loaded.config.label_branches == [STROMA] and set(loaded.branches) == {"0"}
    before = _decode(model, images, ["nuclei", STROMA])
    after = _decode(loaded, images, ["nuclei", STROMA])
    assert torch.allclose(before.mask_logits, after.mask_logits, atol=1e-5)


def test_a_branch_needs_every_part():
    model = create_model("xpath_tiny")
    parts = {name: getattr(model, name) for name in BRANCH_PARTS[:-1]}
    with pytest.raises(ValueError, match="class_text_proj"):
        DecoderBranch(parts)
