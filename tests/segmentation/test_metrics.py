"""Metrics against hand-computed values and a per-object reference implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xpath.segmentation.metrics import (
    aji,
    contingency,
    dice,
    instance_scores,
    iou,
    pair_scores,
    panoptic_quality,
    scores_by_category,
    scores_by_dataset,
    scores_overall,
)


def test_dice_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = np.zeros((4, 4), bool)
    b[1:4, :2] = True  # 6 px, overlap 2
    assert dice(a, b) == pytest.approx(2 * 2 / 14)
    assert iou(a, b) == pytest.approx(2 / 12)
    assert dice(a, a) == 1.0 and iou(a, ~a) == 0.0


def test_empty_conventions():
    z = np.zeros((3, 3), bool)
    one = z.copy()
    one[1, 1] = True
    assert dice(z, z) == 1.0 and iou(z, z) == 1.0
    assert dice(one, z) == 0.0 and iou(z, one) == 0.0
    zl = np.zeros((3, 3), np.int32)
    assert aji(zl, zl) == 1.0 and panoptic_quality(zl, zl)["pq"] == 1.0
    assert aji(zl, one.astype(np.int32)) == 0.0
    r = panoptic_quality(one.astype(np.int32), zl)
    assert (r["pq"], r["tp"], r["fn"], r["fp"]) == (0.0, 0, 1, 0)


def test_contingency_sparse_table():
    gt = np.array([[1, 1, 0, 7], [1, 0, 7, 7]])
    pred = np.array([[3, 0, 0, 3], [3, 9, 9, 0]])
    t = contingency(gt, pred)
    assert t.gt_ids.tolist() == [1, 7] and t.pred_ids.tolist() == [3, 9]
    assert t.gt_area.tolist() == [3, 3] and t.pred_area.tolist() == [3, 2]
    pairs = {(int(t.gt_ids[g]), int(t.pred_ids[p])): int(n)
             for g, p, n in zip(t.pair_gt, t.pair_pred, t.intersection)}
    assert pairs == {(1, 3): 2, (7, 3): 1, (7, 9): 1}


def test_aji_hand_computed():
    # G1 = 3 px, G2 = 3 px; S1 covers 2 px of G1 + 1 background px; S2 covers 1 px of G2; S3 is a false positive.
    gt = np.array([[1, 1, 1, 0, 2, 2, 2, 0, 0]])
    pred = np.array([[4, 4, 0, 4, 5, 0, 0, 0, 6]])
    # G1↔S4: I=2, U=4; G2↔S5: I=1, U=3; unused S6 adds 1 → AJI = 3 / 8.
    assert aji(gt, pred) == pytest.approx(3 / 8)


def test_aji_shared_prediction_counts_once_in_unused():
    gt = np.array([[1, 1, 2, 2]])
    pred = np.array([[1, 1, 1, 0]])
    # both gts choose S1: (2 + 1) / (3 + 4)
    assert aji(gt, pred) == pytest.approx(3 / 7)


def test_pq_hand_computed():
    gt = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3]])
    pred = np.array([[5, 5, 5, 0, 0, 6, 0, 0, 0]])
    # G1↔S5 IoU 3/4 (match), G2↔S6 IoU 1/2 (not > 0.5), G3 unmatched; S6 unmatched.
    r = panoptic_quality(gt, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 2)
    dq = 1 / (1 + 0.5 * 1 + 0.5 * 2)
    assert r["dq"] == pytest.approx(dq)
    assert r["sq"] == pytest.approx(0.75)
    assert r["pq"] == pytest.approx(dq * 0.75)
    with pytest.raises(ValueError, match="match_iou"):
        panoptic_quality(gt, pred, match_iou=0.3)


def _reference(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Per-object loops, as in HoVer-Net's get_fast_aji / get_fast_pq (for testing only)."""
    g_ids = [i for i in np.unique(gt) if i]
    p_ids = [j for j in np.unique(pred) if j]
    inter_sum = union_sum = 0.0
    used = set()
    ious_matched = []
    for i in g_ids:
        g = gt == i
        best, best_j = -1.0, None
        for j in p_ids:
            p = pred == j
            inter = (g & p).sum()
            if inter == 0:
                continue
            u = (g | p).sum()
            if inter / u > best:
                best, best_j, bi, bu = inter / u, j, inter, u
            if inter / u > 0.5:
                ious_matched.append(inter / u)
        if best_j is None:
            union_sum += g.sum()
        else:
            inter_sum += bi
            union_sum += bu
            used.add(best_j)
    union_sum += sum((pred == j).sum() for j in p_ids if j not in used)
    tp = len(ious_matched)
    fp, fn = len(p_ids) - tp, len(g_ids) - tp
    pq = (tp / (tp + 0.5 * fp + 0.5 * fn)) * (np.mean(ious_matched) if tp else 0.0)
    return inter_sum / union_sum, pq


def test_against_reference_on_random_label_images(rng):
    from skimage.segmentation import expand_labels

    for _ in range(3):
        seeds = np.zeros((48, 48), np.int32)
        idx = rng.choice(48 * 48, 25, replace=False)
        seeds.flat[idx] = np.arange(1, 26)
        gt = expand_labels(seeds, 4)
        gt[rng.random(gt.shape) < 0.05] = 0
        shift = np.roll(gt, (1, 2), axis=(0, 1))
        pred = np.where(rng.random(gt.shape) < 0.9, shift, 0) * 3 + (shift > 0)  # renumbered ids
        ref_aji, ref_pq = _reference(gt, pred)
        assert aji(gt, pred) == pytest.approx(ref_aji)
        assert panoptic_quality(gt, pred)["pq"] == pytest.approx(ref_pq)


def test_instance_scores_identity_and_ids_not_consecutive():
    gt = np.array([[0, 4, 4, 0, 9, 9]])
    s = instance_scores(gt, gt * 10)
    assert s["aji"] == 1.0 and s["pq"] == 1.0 and s["dice"] == 1.0


def test_pair_scores_and_summaries():
    m = np.zeros((2, 4), bool)
    m[:, :2] = True
    half = np.zeros((2, 4), bool)
    half[:, :1] = True  # dice 2*2/(4+2) = 2/3
    pairs = [
        (m, m, "A", "nuclei", "a1"),
        (half, m, "A", "stroma", "a2"),
        {"pred": ~m, "target": m, "dataset": "B", "category": "nuclei"},
    ]
    df = pair_scores(pairs)
    assert list(df.columns) == ["dataset", "category", "image_id", "dice", "iou"]
    np.testing.assert_allclose(df["dice"], [1.0, 2 / 3, 0.0])
    overall = scores_overall(df)
    assert overall["dice_mean"].iloc[0] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert overall["n"].iloc[0] == 3
    by_ds = scores_by_dataset(df).set_index("dataset")
    assert by_ds.loc["A", "dice_mean"] == pytest.approx((1 + 2 / 3) / 2) and by_ds.loc["B", "n"] == 1
    by_cat = scores_by_category(df).set_index("category")
    assert by_cat.loc["nuclei", "dice_mean"] == pytest.approx(0.5)
    assert by_cat.loc["stroma", "iou_mean"] == pytest.approx(0.5)


def test_pair_scores_instances_and_empty():
    gt = np.array([[1, 1, 0, 2]])
    df = pair_scores([(gt, gt, "A", "nuclei")], instances=True)
    assert df[["aji", "pq"]].values.tolist() == [[1.0, 1.0]]
    empty = pair_scores([])
    assert len(empty) == 0 and empty["dice"].dtype == float


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((2, 2), bool), np.zeros((2, 3), bool))
    with pytest.raises(TypeError, match="boolean"):
        dice(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        aji(np.zeros((2, 2), int), np.zeros((3, 2), int))
    with pytest.raises(TypeError, match="pairs\\[0\\]"):
        pair_scores([np.zeros((2, 2))])
    with pytest.raises(ValueError, match="lacks"):
        scores_by_dataset(pd.DataFrame({"dice": [1.0]}))


def test_typed_detection_f1_counts_a_nucleus_typed_twice_as_one_pair_and_one_false_detection():
    from xpath.segmentation.metrics import typed_detection_f1

    gt = np.zeros((10, 20), np.int32)
    gt[1:5, 1:5], gt[1:5, 10:14], gt[6:9, 15:19] = 1, 2, 3
    types = {1: "epi", 2: "inf", 3: "inf"}
    epi = np.where(gt == 1, 7, 0) + np.where(gt == 2, 8, 0)  # nucleus 2 typed epithelial as well
    inf = np.where(gt == 2, 1, 0)  # nucleus 3 missed
    s = typed_detection_f1(gt, types, {"epi": epi, "inf": inf})
    # pairs: 1 (epi/epi), 2 (IoU 1 in both maps: a tie goes to the first map, epi: a wrong type); 3 unpaired
    assert (s["n_gt"], s["n_pred"], s["n_paired"]) == (3, 3, 2)
    assert s["f_detection"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # epi: TP 1, FP 1 -> 2 / (2 + 2 + 1 + 1); inf: TN 1, FN 1 -> the same
    assert s["f_epi"] == pytest.approx(2 / 6) and s["f_inf"] == pytest.approx(2 / 6)
