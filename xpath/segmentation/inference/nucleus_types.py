"""One nucleus, one type: nucleus-type prompts share one instance map and split its nuclei between them.

Decoded alone, each type prompt ("lymphocytes", "epithelial nuclei", ...) draws its own mask, so
one nucleus could be a lymphocyte and an epithelial nucleus at once. Instead, the nuclei are
found once (the all-nuclei instance map), and each nucleus gets the type whose probability,
averaged over the nucleus's pixels, is highest (HoVer-Net and CellViT vote per instance in the
same way), provided that mean reaches the threshold; a nucleus no type reaches stays untyped.
The type masks are then disjoint sets of instances of one map, and every nucleus keeps its
probability of each type (:func:`type_table`). Prompts of one type ("lymphocytes" and "immune
cells": the object of their labels, inflammatory) vote together (the mean of their probabilities)
and get the same nuclei.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["GENERIC_NUCLEI_PROMPT", "assign_types", "label_groups", "label_object", "plan_types", "split_into",
           "type_masks", "type_prompt_indices", "type_table", "types_from_sums"]

#: The all-nuclei prompt decoded (hidden) for its instance map when only type prompts are asked for.
GENERIC_NUCLEI_PROMPT = "nuclei-level nucleus in unspecified pathology"


def label_groups(labels: Sequence[str | None]) -> np.ndarray:
    """``(T,)`` the type of each type prompt, from its canonical label: the index of the first prompt whose label
    has the same object (:func:`label_object`), so a nucleus and a cell of one kind, in any region, are one
    type; a prompt without a canonical label is a type of its own.

    Examples
    --------
    >>> label_groups(["nuclei-level inflammatory in colon pathology", "nuclei-level epithelial in colon pathology",
    ...               "cell-level inflammatory in unspecified pathology", None]).tolist()
    [0, 1, 0, 3]
    """
    first: dict = {}
    objects = [label_object(lab) for lab in labels]
    return np.array([first.setdefault(obj, j) if obj is not None else j for j, obj in enumerate(objects)], np.int64)


def types_from_sums(area: np.ndarray, sums: np.ndarray, *, threshold: float = 0.5,
                    groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The vote itself: each instance's type from its pixel count and per-type probability sums.

    Parameters
    ----------
    area : numpy.ndarray
        ``(N + 1,)`` pixels of instance ``i`` (``area[0]``: the background, ignored).
    sums : numpy.ndarray
        ``(N + 1, T)`` sum of each type prompt's probability over those pixels.
    threshold : float
        A nucleus whose best mean probability is below this is left untyped.
    groups : numpy.ndarray, optional
        ``(T,)`` :func:`label_groups` of the prompts: prompts of one label vote as one type, with the
        mean of their probabilities (default: every prompt its own type).

    Returns
    -------
    types, mean
        As :func:`assign_types`; with ``groups``, ``types`` is the group (its first prompt's index).
    """
    mean = np.asarray(sums, np.float64) / np.maximum(np.asarray(area, np.float64), 1.0)[:, None]
    t = mean.shape[1]
    groups = np.arange(t) if groups is None else np.asarray(groups, np.int64)
    if groups.shape != (t,):
        raise ValueError(f"groups must have one entry per type prompt ({t}), got shape {groups.shape}")
    heads = np.unique(groups)  # one column per type: the mean over its prompts
    voted = np.stack([mean[:, groups == g].mean(1) for g in heads], 1) if t else mean
    types = np.full(len(mean), -1, np.int64)
    if t:
        best = voted.argmax(1)
        ok = voted[np.arange(len(voted)), best] >= threshold
        types[ok] = heads[best[ok]]
    if len(types):
        types[0] = -1
    return types, mean


def assign_types(instances: np.ndarray, probabilities: Mapping[str, np.ndarray], *,
                 threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The type of every instance of a shared nuclei map.

    The whole-image form of the vote; tiled images and slides sum the same probabilities per
    nucleus while its rows are in memory (:class:`~xpath.segmentation.inference.stitching.InstanceStitcher`
    with ``n_sums``) and call :func:`types_from_sums`.

    Parameters
    ----------
    instances : numpy.ndarray
        ``(H, W)`` int label map, 0 = background.
    probabilities : mapping of str to numpy.ndarray
        Type prompt → ``(H, W)`` probability map (in order: the column order of the result).
    threshold : float
        A nucleus whose best mean probability is below this is left untyped.

    Returns
    -------
    types : numpy.ndarray
        ``(N + 1,)`` int: index into ``probabilities`` of the type of instance ``i`` (``types[i]``),
        −1 for untyped instances and for the background ``0``.
    mean : numpy.ndarray
        ``(N + 1, T)`` mean probability of each type over each instance.

    Examples
    --------
    >>> inst = np.array([[1, 1, 0, 2, 2]])
    >>> probs = {"a": np.array([[0.9, 0.7, 0, 0.2, 0.3]]), "b": np.array([[0.6, 0.8, 0, 0.4, 0.1]])}
    >>> types, mean = assign_types(inst, probs)
    >>> types.tolist()  # instance 1 -> "a" (0.80 > 0.70); instance 2 reaches neither
    [-1, 0, -1]
    """
    n = int(instances.max()) if instances.size else 0
    flat = instances.ravel()
    area = np.bincount(flat, minlength=n + 1)
    sums = np.zeros((n + 1, len(probabilities)))
    for j, (name, prob) in enumerate(probabilities.items()):
        prob = np.asarray(prob)
        if prob.shape != instances.shape:
            raise ValueError(f"probabilities[{name!r}] has shape {prob.shape}, the instances {instances.shape}")
        sums[:, j] = np.bincount(flat, weights=prob.ravel().astype(np.float64), minlength=n + 1)
    return types_from_sums(area, sums, threshold=threshold)


def type_masks(instances: np.ndarray, types: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each type's instance map: the shared map's instances of that type (ids kept), others 0."""
    lookup = types[instances]
    return {name: np.where(lookup == j, instances, 0).astype(np.int32) for j, name in enumerate(names)}


def split_into(shared: np.ndarray, outs: Sequence[np.ndarray], types: np.ndarray, *, rows: int = 512,
               groups: np.ndarray | None = None, masks: Sequence[np.ndarray | None] | None = None) -> None:
    """:func:`type_masks` into arrays you give, a band of ``rows`` at a time (memory-mapped slides):
    ``outs[j]`` gets the instances of ``shared`` of type ``j`` (of type ``groups[j]`` with
    :func:`label_groups`), ids kept, and ``masks[j]`` (optional, bool) their pixels.

    Only the pixels of ``shared``'s instances are written (4 % of the sample slide), so every array given
    must hold 0 wherever ``shared`` does: fresh zeros, or ``shared`` itself (which may be one of ``outs``).

    Examples
    --------
    >>> shared = np.array([[1, 1, 0, 2, 2]], np.int32)
    >>> outs, masks = [np.zeros_like(shared), shared], [np.zeros(shared.shape, bool), None]
    >>> split_into(shared, outs, np.array([-1, 1, 0]), masks=masks)  # nucleus 1 is of type 1, nucleus 2 of type 0
    >>> outs[0].tolist(), outs[1].tolist(), masks[0].astype(int).tolist()
    ([[0, 0, 0, 2, 2]], [[1, 1, 0, 0, 0]], [[0, 0, 0, 1, 1]])
    """
    from ._label_kernels import split_band

    groups = np.arange(len(outs)) if groups is None else np.asarray(groups, np.int64)
    masks = [None] * len(outs) if masks is None else list(masks)
    types = np.asarray(types, np.int64)
    no_mask = np.zeros((1, 1), bool)
    for y in range(0, shared.shape[0], rows):
        band = np.array(shared[y: y + rows])  # a copy: ``shared`` may be one of ``outs``
        if not band.any():
            continue
        for g, out, mask in zip(groups, outs, masks):
            split_band(band, types, int(g), np.asarray(out[y: y + rows]),
                       no_mask if mask is None else np.asarray(mask[y: y + rows]), mask is not None)


def type_table(types: np.ndarray, mean: np.ndarray, names: list[str]) -> pd.DataFrame:
    """One row per instance: ``instance`` id, ``type`` (the prompt, or ``None`` when untyped; with
    :func:`label_groups`, the first prompt of the type) and ``p_<prompt>`` (its mean probability of each
    prompt)."""
    ids = np.arange(1, len(types))
    table = pd.DataFrame({"instance": ids, "type": [names[t] if t >= 0 else None for t in types[1:]]})
    for j, name in enumerate(names):
        table[f"p_{name}"] = mean[1:, j]
    return table


def label_object(label: str | None) -> str | None:
    """The object of a canonical label prompt (``None`` when it is not one)."""
    from ...ontology import split_template

    parts = split_template(label) if label else None
    return None if parts is None else parts[1]


def type_prompt_indices(plans: Sequence, inst_idx: Sequence[int]) -> list[int]:
    """Indices of the decoded nucleus-type prompts among a predictor's plans: instance prompts at the
    nuclei/cell level whose label is a nucleus type (not the all-nuclei label)."""
    from ...ontology import GENERIC_OBJECT

    out = []
    for k in inst_idx:
        plan = plans[k]
        obj = label_object(plan.label)
        if plan.text is not None and plan.structure in ("nuclei", "cell") and obj not in (None, GENERIC_OBJECT):
            out.append(k)
    return out


def plan_types(plans: Sequence, inst_idx: Sequence[int], model, *,
               spatial: bool = False) -> tuple[list[int], list, list[int], int | None]:
    """How a predictor's plans split nuclei by type: ``(typed, plans, inst_idx, shared)``.

    ``typed``: the indices of the nucleus-type prompts (none with boxes or points, ``spatial``);
    ``plans`` and ``inst_idx`` to decode, with a hidden all-nuclei prompt (:data:`GENERIC_NUCLEI_PROMPT`)
    appended when there are type prompts and none of the prompts is the all-nuclei one; ``shared``:
    the index of the all-nuclei prompt whose instance map the types split (``None`` without types).
    """
    from ...ontology import GENERIC_OBJECT
    from ..support import plan_prompts

    typed = [] if spatial else type_prompt_indices(plans, inst_idx)
    plans, inst_idx = list(plans), list(inst_idx)
    if not typed:
        return typed, plans, inst_idx, None
    shared = next((k for k in inst_idx if k not in typed and plans[k].text is not None
                   and label_object(plans[k].label) == GENERIC_OBJECT), None)
    if shared is not None:
        return typed, plans, inst_idx, shared
    (hidden,) = plan_prompts([GENERIC_NUCLEI_PROMPT], model, on_unsupported="nearest")
    return typed, [*plans, hidden], [*inst_idx, len(plans)], len(plans)
