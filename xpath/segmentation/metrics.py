"""Segmentation metrics: Dice and IoU per image–mask pair, AJI and PQ for instances.

The paper's protocol (PathSegmentor, arXiv 2506.20988) scores every image–mask pair with
Dice and reports the **mean over pairs**, overall, per dataset and per category
(:func:`pair_scores` → :func:`summarize_scores`). Instance metrics follow their usual
definitions:

- **AJI** (aggregated Jaccard index, Kumar et al. 2017): every ground-truth object is
  paired with the prediction of highest IoU; ``AJI = Σ|G ∩ S| / (Σ|G ∪ S| + Σ|unused S|)``.
- **PQ** (panoptic quality, Kirillov et al. 2019): a ground-truth and a predicted object
  match when their IoU > 0.5 (such matches are unique); ``DQ = TP / (TP + FP/2 + FN/2)``,
  ``SQ`` = mean IoU of the matches, ``PQ = DQ × SQ``.

Both are computed from a sparse contingency table of (ground-truth id, predicted id) pixel
counts (:func:`contingency`), so their cost is one pass over the pixels plus work linear in
the number of overlapping pairs: no Python loop over objects.

Conventions for empty inputs: when both masks (or both label images) are empty, every
score is 1.0 (nothing to find, nothing found); when only one is empty it is 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._types import check_labels

__all__ = [
    "typed_detection_f1",
    "Contingency",
    "aji",
    "contingency",
    "dice",
    "instance_scores",
    "iou",
    "pair_scores",
    "panoptic_quality",
    "scores_by_category",
    "scores_by_dataset",
    "scores_overall",
    "summarize_scores",
]


def _check_masks(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    for name, value in (("pred", pred), ("target", target)):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name} must be a numpy array of shape (H, W), got {type(value).__name__}")
        if value.dtype != bool and not np.issubdtype(value.dtype, np.integer):
            raise TypeError(f"{name} must be a boolean (or integer 0/1) mask, got dtype {value.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    return pred.astype(bool, copy=False), target.astype(bool, copy=False)


def _overlap(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int]:
    p, t = _check_masks(pred, target)
    inter = int(np.count_nonzero(p & t))
    return inter, int(np.count_nonzero(p)), int(np.count_nonzero(t))


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient ``2|P ∩ T| / (|P| + |T|)`` of two masks.

    Parameters
    ----------
    pred, target : numpy.ndarray
        ``(H, W)`` (or any equal shape) boolean masks; non-zero integers count as foreground.

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when both masks are empty.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[1:3] = True
    >>> dice(a, b)
    0.5
    """
    inter, n_p, n_t = _overlap(pred, target)
    return 1.0 if n_p + n_t == 0 else 2.0 * inter / (n_p + n_t)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union ``|P ∩ T| / |P ∪ T|`` of two masks (1.0 when both are empty).

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[1:3] = True
    >>> round(iou(a, b), 4)
    0.3333
    """
    inter, n_p, n_t = _overlap(pred, target)
    union = n_p + n_t - inter
    return 1.0 if union == 0 else inter / union


@dataclass(frozen=True)
class Contingency:
    """Sparse overlap table between two label images.

    Attributes
    ----------
    gt_ids, pred_ids : numpy.ndarray
        ``(N_gt,)`` and ``(N_pred,)`` object ids present (0 excluded), sorted.
    gt_area, pred_area : numpy.ndarray
        ``(N_gt,)`` and ``(N_pred,)`` pixel areas of those objects.
    pair_gt, pair_pred : numpy.ndarray
        ``(K,)`` row indices into ``gt_ids`` / ``pred_ids`` of every overlapping pair.
    intersection : numpy.ndarray
        ``(K,)`` pixel count of each pair's intersection.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    intersection: np.ndarray

    @property
    def union(self) -> np.ndarray:
        """``(K,)`` union areas of the overlapping pairs."""
        return self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """``(K,)`` IoU of the overlapping pairs."""
        return self.intersection / self.union


def contingency(gt: np.ndarray, pred: np.ndarray) -> Contingency:
    """Build the sparse (ground-truth id × predicted id) overlap table of two label images.

    Parameters
    ----------
    gt, pred : numpy.ndarray
        ``(H, W)`` integer label images (0 = background); ids need not be consecutive.

    Returns
    -------
    Contingency

    Examples
    --------
    >>> c = contingency(np.array([[1, 1, 0, 2]]), np.array([[5, 0, 0, 5]]))
    >>> c.gt_ids.tolist(), c.pred_ids.tolist(), c.intersection.tolist()
    ([1, 2], [5], [1, 1])
    """
    gt = check_labels(gt, name="gt")
    pred = check_labels(pred, name="pred", shape=gt.shape)
    g_ids, g_inv = np.unique(gt.ravel(), return_inverse=True)
    p_ids, p_inv = np.unique(pred.ravel(), return_inverse=True)
    g_area = np.bincount(g_inv, minlength=len(g_ids))
    p_area = np.bincount(p_inv, minlength=len(p_ids))
    # Drop the background row/column (id 0 is the smallest id when present).
    g_off = int(len(g_ids) > 0 and g_ids[0] == 0)
    p_off = int(len(p_ids) > 0 and p_ids[0] == 0)
    both = (g_inv >= g_off) & (p_inv >= p_off)
    rows = g_inv[both] - g_off
    cols = p_inv[both] - p_off
    n_g, n_p = len(g_ids) - g_off, len(p_ids) - p_off
    table = sparse.coo_matrix(
        (np.ones(rows.size, np.int64), (rows, cols)), shape=(max(n_g, 1), max(n_p, 1))
    ).tocsr().tocoo()  # duplicates summed: one entry per overlapping pair
    return Contingency(
        gt_ids=g_ids[g_off:], pred_ids=p_ids[p_off:],
        gt_area=g_area[g_off:], pred_area=p_area[p_off:],
        pair_gt=table.row.astype(np.int64), pair_pred=table.col.astype(np.int64),
        intersection=table.data.astype(np.int64),
    )


def _as_table(gt: np.ndarray | Contingency, pred: np.ndarray | None) -> Contingency:
    if isinstance(gt, Contingency):
        return gt
    if pred is None:
        raise TypeError("pred is required when gt is a label image")
    return contingency(gt, pred)


def aji(gt: np.ndarray | Contingency, pred: np.ndarray | None = None) -> float:
    """Aggregated Jaccard index of a predicted instance map against the ground truth.

    Each ground-truth object G_i is paired with the predicted object S_j of highest IoU
    (a prediction may serve several ground-truth objects, as in Kumar et al. 2017);
    ``AJI = Σ_i |G_i ∩ S_j| / (Σ_i |G_i ∪ S_j| + Σ_{S unused} |S|)``. A ground-truth object
    that no prediction overlaps adds its area to the denominator only.

    Parameters
    ----------
    gt, pred : numpy.ndarray
        ``(H, W)`` integer label images (or ``gt`` a :class:`Contingency` and no ``pred``).

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when both are empty.

    Examples
    --------
    >>> gt = np.array([[1, 1, 2, 2]]); pred = np.array([[1, 1, 1, 0]])
    >>> aji(gt, pred)  # G1↔S1: 2/3; G2↔S1: 1/4 → (2 + 1) / (3 + 4)
    0.42857142857142855
    """
    t = _as_table(gt, pred)
    n_g, n_p = len(t.gt_ids), len(t.pred_ids)
    if n_g == 0 and n_p == 0:
        return 1.0
    if n_g == 0 or n_p == 0:
        return 0.0
    pair_iou = t.iou
    # For each gt row, the pair with the highest IoU (ties: the lower pred index).
    order = np.lexsort((t.pair_pred, -pair_iou, t.pair_gt))
    first = np.ones(order.size, bool)
    first[1:] = t.pair_gt[order][1:] != t.pair_gt[order][:-1]
    best = order[first]
    inter = float(t.intersection[best].sum())
    union = float(t.union[best].sum())
    matched_gt = np.zeros(n_g, bool)
    matched_gt[t.pair_gt[best]] = True
    union += float(t.gt_area[~matched_gt].sum())
    used = np.zeros(n_p, bool)
    used[t.pair_pred[best]] = True
    union += float(t.pred_area[~used].sum())
    return inter / union


def panoptic_quality(
    gt: np.ndarray | Contingency, pred: np.ndarray | None = None, *, match_iou: float = 0.5
) -> dict[str, float]:
    """Panoptic quality with matching at IoU > ``match_iou`` (0.5: unique matches).

    Parameters
    ----------
    gt, pred : numpy.ndarray
        ``(H, W)`` integer label images (or ``gt`` a :class:`Contingency` and no ``pred``).
    match_iou : float
        Pairs with IoU strictly above it match; must be ≥ 0.5 so that matches are unique.

    Returns
    -------
    dict
        ``pq``, ``dq`` (detection quality), ``sq`` (segmentation quality, 0 without
        matches), ``tp``, ``fp``, ``fn``. All scores 1.0 when both are empty.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 0, 2]]); pred = np.array([[3, 3, 0, 0, 4]])
    >>> r = panoptic_quality(gt, pred)  # IoUs 2/3 and 1; TP = 2
    >>> round(r["pq"], 4), r["tp"], r["fp"], r["fn"]
    (0.8333, 2, 0, 0)
    """
    if not 0.5 <= match_iou < 1.0:
        raise ValueError(f"match_iou must be in [0.5, 1) so that matches are unique, got {match_iou}")
    t = _as_table(gt, pred)
    n_g, n_p = len(t.gt_ids), len(t.pred_ids)
    if n_g == 0 and n_p == 0:
        return {"pq": 1.0, "dq": 1.0, "sq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    pair_iou = t.iou
    matched = pair_iou > match_iou
    tp = int(matched.sum())
    fp, fn = n_p - tp, n_g - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(pair_iou[matched].mean()) if tp else 0.0
    return {"pq": dq * sq, "dq": dq, "sq": sq, "tp": tp, "fp": fp, "fn": fn}


def instance_scores(gt: np.ndarray, pred: np.ndarray, *, match_iou: float = 0.5) -> dict[str, float]:
    """AJI, PQ, DQ, SQ and the semantic Dice of two label images from one contingency table.

    Examples
    --------
    >>> s = instance_scores(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 2]]))
    >>> s["aji"], s["pq"], s["dice"]
    (1.0, 1.0, 1.0)
    """
    t = contingency(gt, pred)
    out = {"aji": aji(t)}
    out.update(panoptic_quality(t, match_iou=match_iou))
    n_g, n_p = float(t.gt_area.sum()), float(t.pred_area.sum())
    out["dice"] = 1.0 if n_g + n_p == 0 else 2.0 * float(t.intersection.sum()) / (n_g + n_p)
    return out


def typed_detection_f1(gt: np.ndarray, gt_types: dict, pred: dict[str, np.ndarray], *,
                       match_iou: float = 0.5) -> dict[str, float]:
    """Detection and per-type classification F1 of typed nuclei (the HoVer-Net protocol, Graham et al. 2019).

    Predicted nuclei are the instances of each type's label map (``pred``: type → ``(H, W)``
    label map; maps may overlap, as per-prompt masks do); each ground-truth nucleus is paired
    with the prediction of highest IoU above ``match_iou`` (IoU > 0.5 pairs are unique within a
    map; across maps the best one wins, a tie the first map, and the others are unpaired predictions). Then
    ``F_d = 2 TP_d / (2 TP_d + FP_d + FN_d)`` and, per type ``c``,
    ``F_c = 2 (TP_c + TN_c) / (2 (TP_c + TN_c) + 2 FP_c + 2 FN_c + FP_d + FN_d)`` over the pairs
    (``TP_c``: paired, both of type ``c``; ``TN_c``: paired, neither; ``FP_c`` / ``FN_c``: paired,
    only the prediction / only the truth of type ``c``).

    Parameters
    ----------
    gt : numpy.ndarray
        ``(H, W)`` ground-truth instance map.
    gt_types : dict
        Ground-truth instance id → type name.
    pred : dict of str to numpy.ndarray
        Predicted type → instance map.

    Returns
    -------
    dict
        ``f_detection`` and ``f_<type>`` for every type in ``pred`` or ``gt_types``, with the counts
        ``n_gt``, ``n_pred``, ``n_paired``.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> s = typed_detection_f1(gt, {1: "a", 2: "b"}, {"a": np.array([[1, 1, 0, 0, 0]]), "b": np.array([[0, 0, 0, 3, 3]])})
    >>> s["f_detection"], s["f_a"], s["f_b"]
    (1.0, 1.0, 1.0)
    """
    best_iou: dict[int, float] = {}
    best_type: dict[int, str] = {}
    n_pred = 0
    for name, labels in pred.items():
        t = contingency(gt, labels)
        n_pred += len(t.pred_ids)
        ok = t.iou > match_iou
        for g, i in zip(t.gt_ids[t.pair_gt[ok]], t.iou[ok]):
            if i > best_iou.get(int(g), 0.0):
                best_iou[int(g)], best_type[int(g)] = float(i), name
    gt_ids = np.unique(gt)
    gt_ids = gt_ids[gt_ids > 0]
    tp = len(best_iou)
    fp_d, fn_d = n_pred - tp, len(gt_ids) - tp
    out = {"f_detection": 2 * tp / max(2 * tp + fp_d + fn_d, 1), "n_gt": float(len(gt_ids)), "n_pred": float(n_pred),
           "n_paired": float(tp)}
    truth = [gt_types.get(g) for g in best_iou]
    guess = [best_type[g] for g in best_iou]
    for c in sorted(set(pred) | set(gt_types.values())):
        tp_c = sum(a == c and b == c for a, b in zip(truth, guess))
        tn_c = sum(a != c and b != c for a, b in zip(truth, guess))
        fp_c = sum(a != c and b == c for a, b in zip(truth, guess))
        fn_c = sum(a == c and b != c for a, b in zip(truth, guess))
        denom = 2 * (tp_c + tn_c) + 2 * fp_c + 2 * fn_c + fp_d + fn_d
        out[f"f_{c}"] = 2 * (tp_c + tn_c) / denom if denom else float("nan")
    return out


def pair_scores(
    pairs: Iterable[Any],
    *,
    instances: bool = False,
) -> pd.DataFrame:
    """Score image–mask pairs: one row per pair (the paper's evaluation unit).

    Parameters
    ----------
    pairs : iterable
        Each item is either a mapping with keys ``pred``, ``target`` (``(H, W)`` masks or,
        with ``instances=True``, label images) and optional ``dataset``, ``category``,
        ``image_id``; or a tuple ``(pred, target[, dataset[, category[, image_id]]])``.
    instances : bool
        Also compute AJI and PQ/DQ/SQ (``pred`` and ``target`` must then be label images;
        Dice/IoU are computed on their foreground).

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset``, ``category``, ``image_id``, ``dice``, ``iou`` (+ ``aji``,
        ``pq``, ``dq``, ``sq`` with ``instances``); a typed empty frame for no pairs.

    Examples
    --------
    >>> m = np.ones((2, 2), bool)
    >>> pair_scores([(m, m, "A", "nuclei")])[["dataset", "dice"]].values.tolist()
    [['A', 1.0]]
    """
    rows = []
    for i, item in enumerate(pairs):
        if isinstance(item, dict):
            rec = dict(item)
        elif isinstance(item, (tuple, list)) and 2 <= len(item) <= 5:
            rec = dict(zip(("pred", "target", "dataset", "category", "image_id"), item))
        else:
            raise TypeError(
                f"pairs[{i}] must be a dict with 'pred' and 'target' or a tuple "
                f"(pred, target[, dataset[, category[, image_id]]]), got {type(item).__name__}"
            )
        if "pred" not in rec or "target" not in rec:
            raise ValueError(f"pairs[{i}] needs 'pred' and 'target', got keys {sorted(rec)}")
        pred, target = rec["pred"], rec["target"]
        row = {
            "dataset": rec.get("dataset", ""),
            "category": rec.get("category", ""),
            "image_id": rec.get("image_id", str(i)),
        }
        if instances:
            s = instance_scores(target, pred)
            inter_iou = iou(pred > 0, target > 0)
            row.update(dice=s["dice"], iou=inter_iou, aji=s["aji"], pq=s["pq"], dq=s["dq"], sq=s["sq"])
        else:
            row.update(dice=dice(pred, target), iou=iou(pred, target))
        rows.append(row)
    cols = ["dataset", "category", "image_id", "dice", "iou"] + (["aji", "pq", "dq", "sq"] if instances else [])
    if not rows:
        frame = pd.DataFrame({c: pd.Series(dtype=object if i < 3 else float) for i, c in enumerate(cols)})
        return frame
    return pd.DataFrame(rows, columns=cols)


def summarize_scores(scores: pd.DataFrame, *, by: str | list[str] | None = None) -> pd.DataFrame:
    """Mean over pairs (the paper's protocol), with standard deviation and count.

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of :func:`pair_scores` (any numeric score columns).
    by : str or list of str, optional
        Group columns (``"dataset"``, ``"category"``, ...); ``None`` = one overall row.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``n`` and ``{score}_mean``, ``{score}_std`` per score column.
    """
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame from pair_scores, got {type(scores).__name__}")
    metric_cols = [c for c in ("dice", "iou", "aji", "pq", "dq", "sq") if c in scores.columns]
    if not metric_cols:
        raise ValueError(f"scores has no score columns (dice, iou, aji, pq, ...); columns: {list(scores.columns)}")
    keys = [by] if isinstance(by, str) else list(by or [])
    missing = [k for k in keys if k not in scores.columns]
    if missing:
        raise ValueError(f"by names columns {missing} that scores lacks; columns: {list(scores.columns)}")
    if keys:
        grouped = scores.groupby(keys, sort=True, observed=True)[metric_cols]
        mean, std, n = grouped.mean(), grouped.std(ddof=0), grouped.size()
    else:
        frame = scores[metric_cols]
        mean = frame.mean().to_frame().T
        std = frame.std(ddof=0).to_frame().T
        n = pd.Series([len(frame)])
        mean.index = std.index = n.index = pd.Index(["overall"], name="group")
    out = pd.concat([n.rename("n"), mean.add_suffix("_mean"), std.add_suffix("_std")], axis=1)
    return out.reset_index()


def scores_overall(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over all pairs (one row). See :func:`summarize_scores`."""
    return summarize_scores(scores)


def scores_by_dataset(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over pairs per dataset. See :func:`summarize_scores`."""
    return summarize_scores(scores, by="dataset")


def scores_by_category(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over pairs per category (e.g. the prompt's label). See :func:`summarize_scores`."""
    return summarize_scores(scores, by="category")
