"""One nucleus, one type: the shared instance map is split between type prompts by per-instance vote."""

from __future__ import annotations

import numpy as np
import pytest

from xpath.segmentation.inference.nucleus_types import (
    assign_types,
    label_groups,
    split_into,
    type_masks,
    type_table,
    types_from_sums,
)


def _three_nuclei():
    inst = np.zeros((20, 30), np.int32)
    inst[2:8, 2:8], inst[2:8, 12:18], inst[12:18, 20:28] = 1, 2, 3
    return inst


def test_each_nucleus_gets_its_best_type_and_the_masks_are_disjoint():
    inst = _three_nuclei()
    lymph = np.where(inst == 1, 0.9, 0.1) + np.where(inst == 2, 0.55, 0.0)
    epi = np.where(inst == 2, 0.8, 0.2) + np.where(inst == 1, 0.6, 0.0)  # both > 0.5 on nuclei 1 and 2
    types, mean = assign_types(inst, {"lymphocytes": lymph, "epithelial nuclei": epi})
    assert types.tolist() == [-1, 0, 1, -1]  # nucleus 3 reaches neither type
    np.testing.assert_allclose(mean[1], [0.9, 0.8])
    masks = type_masks(inst, types, ["lymphocytes", "epithelial nuclei"])
    assert not ((masks["lymphocytes"] > 0) & (masks["epithelial nuclei"] > 0)).any()
    assert set(np.unique(masks["lymphocytes"])) == {0, 1} and set(np.unique(masks["epithelial nuclei"])) == {0, 2}
    table = type_table(types, mean, ["lymphocytes", "epithelial nuclei"])
    assert table["type"].tolist() == ["lymphocytes", "epithelial nuclei", None]
    assert table.columns.tolist() == ["instance", "type", "p_lymphocytes", "p_epithelial nuclei"]


def test_a_vote_is_over_the_whole_nucleus_not_a_pixel():
    inst = _three_nuclei()
    a = np.where(inst == 1, 0.45, 0.0)
    a[2, 2] = 1.0  # one confident pixel does not carry the nucleus
    b = np.where(inst == 1, 0.5, 0.0)
    types, _ = assign_types(inst, {"a": a, "b": b})
    assert types[1] == 1


def test_prompts_of_one_label_are_one_type_and_get_the_same_nuclei():
    inst = _three_nuclei()
    lymph = np.where(inst == 1, 0.9, 0.1)
    immune = np.where(inst == 1, 0.7, 0.1)  # a synonym: a little less sure, on the same nucleus
    epi = np.where(inst == 1, 0.75, 0.0) + np.where(inst == 2, 0.8, 0.0)
    flat = inst.ravel()
    area = np.bincount(flat)
    sums = np.stack([np.bincount(flat, weights=m.ravel()) for m in (lymph, immune, epi)], 1)
    groups = label_groups(["nuclei-level inflammatory in colon pathology",  # lymphocytes
                           "cell-level inflammatory in unspecified pathology",  # immune cells: another level
                           "nuclei-level epithelial in colon pathology"])
    assert groups.tolist() == [0, 0, 2]
    types, _ = types_from_sums(area, sums, groups=groups)
    assert types.tolist() == [-1, 0, 2, -1]  # nucleus 1: inflammatory (mean 0.8 > 0.75), alone "immune" would lose
    outs = [np.zeros_like(inst) for _ in range(3)]
    split_into(inst, outs, types, groups=groups)
    assert (outs[0] == outs[1]).all() and set(np.unique(outs[0])) == {0, 1} and set(np.unique(outs[2])) == {0, 2}
    assert types_from_sums(area, sums)[0].tolist() == [-1, 0, 2, -1]  # without groups each prompt is a type
    with pytest.raises(ValueError, match="one entry per type prompt"):
        types_from_sums(area, sums, groups=np.array([0, 0]))


def test_shapes_must_agree_and_empty_maps_work():
    inst = _three_nuclei()
    with pytest.raises(ValueError, match=r"probabilities\['a'\] has shape"):
        assign_types(inst, {"a": np.zeros((5, 5))})
    types, mean = assign_types(np.zeros((4, 4), np.int32), {"a": np.ones((4, 4))})
    assert types.tolist() == [-1] and mean.shape == (1, 1)


def test_type_prompts_of_one_image_never_overlap_and_share_the_nuclei_map():
    import torch

    from xpath.datasets import synthetic_tissue
    from xpath.segmentation import TextPromptPredictor, create_model

    torch.manual_seed(0)
    tissue = synthetic_tissue(2, size=(256, 256), mpp=0.5)
    pred = TextPromptPredictor(create_model("xpath_tiny", device="cpu")).set_image(tissue.image, mpp=0.5)
    prompts = ["lymphocytes", "epithelial nuclei", "spindle-shaped nuclei"]
    seg = pred.predict(prompts, threshold=0.3)
    maps = [seg.instances[p] for p in prompts]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not ((maps[i] > 0) & (maps[j] > 0)).any()
        assert (seg.semantic[prompts[i]] == (maps[i] > 0)).all()
    table = seg.nucleus_types
    assert table is not None and list(table.columns[:2]) == ["instance", "type"]
    assert {f"p_{p}" for p in prompts} <= set(table.columns)
    for p, m in zip(prompts, maps):  # each type's instances are the table's nuclei of that type, ids kept
        assert set(np.unique(m)) - {0} == set(table.loc[table["type"] == p, "instance"])
    both = pred.predict(["nuclei", "lymphocytes"], threshold=0.3)  # the all-nuclei prompt asked: its map is shared
    assert set(np.unique(both.instances["lymphocytes"])) <= set(np.unique(both.instances["nuclei"]))
    assert pred.predict(["nuclei"]).nucleus_types is None


def test_synonym_type_prompts_asked_together_get_the_same_nuclei():
    from xpath.datasets import sample_he
    from xpath.segmentation import TextPromptPredictor, create_model

    image = sample_he()  # the shipped model on real H&E: an untrained model finds no typed nuclei at all
    pred = TextPromptPredictor(create_model("xpath_small", checkpoint="default"), progress=False)
    seg = pred.set_image(image, mpp=image.mpp).predict(["lymphocytes", "immune cells", "epithelial nuclei"])
    assert seg.instances["lymphocytes"].max() > 0  # there are inflammatory nuclei to share (137 at this writing)
    assert (seg.instances["lymphocytes"] == seg.instances["immune cells"]).all()  # as rivals, "immune cells" got none
    assert not ((seg.instances["lymphocytes"] > 0) & (seg.instances["epithelial nuclei"] > 0)).any()


def test_split_into_memory_mapped_bands_equals_type_masks(tmp_path):
    """A slide's split: bands of memory-mapped arrays (ids, uint8 masks), the shared map one of the outputs."""
    rng = np.random.default_rng(3)
    inst = np.zeros((70, 50), np.int32)
    for k in range(1, 40):
        y, x = rng.integers(0, 66), rng.integers(0, 46)
        inst[y: y + 4, x: x + 4] = k
    types = rng.integers(-1, 2, int(inst.max()) + 1)
    types[0] = -1
    expected = type_masks(inst, types, ["a", "b"])
    shared = np.lib.format.open_memmap(tmp_path / "shared.npy", mode="w+", dtype=np.int32, shape=inst.shape)
    shared[:] = inst
    other = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.int32, shape=inst.shape)
    mask = np.lib.format.open_memmap(tmp_path / "mask.npy", mode="w+", dtype=np.uint8, shape=inst.shape)
    split_into(shared, [other, shared], types, rows=16, masks=[mask, None])  # shared is rewritten last
    assert (other == expected["a"]).all() and (shared == expected["b"]).all()
    assert (mask == (expected["a"] > 0)).all()
