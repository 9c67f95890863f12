"""Training loss of the text-prompted segmenter.

``segmentation_loss(out, targets)`` combines, for a batch of ``B`` images × ``P`` prompts:

- **mask**: BCE + Dice (1:1, PathSegmentor) on the candidate *matched* to each present
  prompt's target (one-to-one Hungarian matching per image on BCE + Dice at stride 4
  minus the selection probability, without gradient — Mask2Former's matching); a spatial
  prompt (``targets["spatial"]``, a box or points) is not matched: its own object mask
  (``mask_logits``) is compared with its target;
- **selection**: cross-entropy over the ``Q`` cosine similarities (÷ temperature) with the
  matched candidate as the class, so that selection by similarity picks it at inference
  (text prompts only);
- **presence**: BCE of ``presence_logits`` against ``present`` on every valid prompt;
- **distance**: BCE of ``distance_logits`` against the soft ``distance`` targets where the
  prompt is present and has instances.

Each term is averaged over the prompts it applies to (0 when there are none).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..modeling.segmenter import SegmenterOutput, upsample_stride4

__all__ = ["LOSS_WEIGHTS", "dice_loss", "match_candidates", "segmentation_loss"]

#: Default weights of the loss terms.
LOSS_WEIGHTS = {"mask_bce": 1.0, "mask_dice": 1.0, "selection": 1.0, "presence": 1.0, "distance": 1.0}

_TARGET_KEYS = ("masks", "distance", "present", "prompt_valid", "has_instances")


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per mask: ``(N, H, W)`` logits and 0/1 targets → ``(N,)``."""
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return 1 - (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)


@torch.no_grad()
def match_candidates(candidates_s4: torch.Tensor, masks: torch.Tensor, *, similarity: torch.Tensor | None = None,
                     active: torch.Tensor | None = None, temperature: float = 0.1,
                     class_weight: float = 1.0) -> torch.Tensor:
    """One-to-one assignment of candidates to the target masks of each image (Hungarian).

    The cost of giving candidate ``q`` to prompt ``p`` is BCE + Dice between them at
    stride 4, minus ``class_weight`` × the softmax of the prompt's similarities (as in
    Mask2Former). Prompts of one image get distinct candidates, so different prompts
    cannot pull one candidate towards conflicting masks.

    Parameters
    ----------
    candidates_s4 : torch.Tensor
        ``(B, Q, h, w)`` candidate logits.
    masks : torch.Tensor
        ``(B, P, H, W)`` 0/1 targets at the input resolution.
    similarity : torch.Tensor, optional
        ``(B, P, Q)`` cosine similarities (class term of the cost).
    active : torch.Tensor, optional
        ``(B, P)`` bool, the prompts to match (default all); others get index −1.

    Returns
    -------
    torch.Tensor
        ``(B, P)`` long candidate index per prompt (−1 where not active).
    """
    from scipy.optimize import linear_sum_assignment

    b, q, h, w = candidates_s4.shape
    p = masks.shape[1]
    hh, ww = masks.shape[-2:]
    pad = (0, w * 4 - ww, 0, h * 4 - hh)
    t = F.avg_pool2d(F.pad(masks.float(), pad), 4).flatten(2)  # (B, P, h*w) fraction of the 4×4 cell
    x = candidates_s4.float().flatten(2)  # (B, Q, h*w)
    n = x.shape[-1]
    # BCE(x, t) summed over pixels = Σ softplus(x) − Σ x·t, without a (B, P, Q, h*w) tensor
    bce = (F.softplus(x).sum(-1)[:, None, :] - torch.einsum("bpn,bqn->bpq", t, x)) / n  # (B, P, Q)
    prob = x.sigmoid()
    inter = torch.einsum("bpn,bqn->bpq", t, prob)
    dice = 1 - (2 * inter + 1) / (t.sum(-1)[..., None] + prob.sum(-1)[:, None, :] + 1)
    cost = bce + dice
    if similarity is not None:
        cost = cost - class_weight * (similarity.float() / temperature).softmax(-1)
    if active is None:
        active = torch.ones(b, p, dtype=torch.bool, device=masks.device)
    out = torch.full((b, p), -1, dtype=torch.long)
    cost = cost.cpu().numpy()
    act = active.cpu().numpy()
    for i in range(b):
        rows = act[i].nonzero()[0]
        if len(rows) == 0:
            continue
        if len(rows) > q:
            raise ValueError(f"image {i} has {len(rows)} prompts to match but the model has only {q} candidates")
        r, c = linear_sum_assignment(cost[i][rows])
        out[i, rows[r]] = torch.as_tensor(c, dtype=torch.long)
    return out.to(candidates_s4.device)


def _check_targets(out: SegmenterOutput, targets: dict) -> None:
    missing = [k for k in _TARGET_KEYS if k not in targets]
    if missing:
        raise ValueError(f"targets is missing {missing}; expected keys {list(_TARGET_KEYS)}")
    b, p, h, w = out.mask_logits.shape
    shapes = {"masks": (b, p, h, w), "distance": (b, p, h, w), "present": (b, p), "prompt_valid": (b, p),
              "has_instances": (b, p)}
    for k, shape in shapes.items():
        if tuple(targets[k].shape) != shape:
            raise ValueError(f"targets[{k!r}] must have shape {shape}, got {tuple(targets[k].shape)}")


def segmentation_loss(out: SegmenterOutput, targets: dict, *, weights: dict | None = None,
                      temperature: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts.

    Parameters
    ----------
    out : SegmenterOutput
        Model output for ``B`` images × ``P`` prompts at ``(H, W)``.
    targets : dict of torch.Tensor
        ``masks`` (B, P, H, W) float 0/1; ``distance`` (B, P, H, W) float in [0, 1];
        ``present`` (B, P) float 0/1; ``prompt_valid`` (B, P) bool; ``has_instances`` (B, P) bool;
        optionally ``spatial`` (B, P) bool, the prompts decoded as objects.
    weights : dict, optional
        Overrides of :data:`LOSS_WEIGHTS`.
    temperature : float
        Divides the cosine similarities in the selection cross-entropy.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    parts : dict of str to float
        ``mask_bce``, ``mask_dice``, ``selection``, ``presence``, ``distance`` (unweighted) and ``total``.
    """
    _check_targets(out, targets)
    w = {**LOSS_WEIGHTS, **(weights or {})}
    bad = sorted(set(w) - set(LOSS_WEIGHTS))
    if bad:
        raise ValueError(f"unknown loss weights {bad}; known: {sorted(LOSS_WEIGHTS)}")
    valid = targets["prompt_valid"].bool()
    present = targets["present"].float()
    pos = valid & (present > 0.5)  # (B, P)
    inst = pos & targets["has_instances"].bool()
    zero = out.presence_logits.sum() * 0.0
    parts = {}

    spatial = targets.get("spatial")
    spatial = torch.zeros_like(pos) if spatial is None else spatial.bool() & pos
    text = pos & ~spatial
    logits, tgt = [], []
    selection = zero
    if text.any():
        matched = match_candidates(out.candidate_logits_s4, targets["masks"], similarity=out.similarity,
                                   active=text, temperature=temperature)  # (B, P)
        bi, pi = text.nonzero(as_tuple=True)
        qi = matched[bi, pi]
        logits.append(upsample_stride4(out.candidate_logits_s4[bi, qi][:, None], out.input_size)[:, 0])  # (N, H, W)
        tgt.append(targets["masks"][bi, pi].float())
        selection = F.cross_entropy(out.similarity[bi, pi] / temperature, qi)
    if spatial.any():
        logits.append(out.mask_logits[spatial])
        tgt.append(targets["masks"][spatial].float())
    if logits:
        logits, tgt = torch.cat(logits), torch.cat(tgt)
        mask_bce = F.binary_cross_entropy_with_logits(logits, tgt)
        mask_dice = dice_loss(logits, tgt).mean()
    else:
        mask_bce = mask_dice = zero
    presence = (F.binary_cross_entropy_with_logits(out.presence_logits[valid], present[valid])
                if valid.any() else zero)
    if inst.any():
        distance = F.binary_cross_entropy_with_logits(out.distance_logits[inst], targets["distance"][inst].float())
    else:
        distance = zero
    terms = {"mask_bce": mask_bce, "mask_dice": mask_dice, "selection": selection, "presence": presence,
             "distance": distance}
    loss = sum(w[k] * v for k, v in terms.items())
    parts = {k: float(v.detach()) for k, v in terms.items()}
    parts["total"] = float(loss.detach())
    return loss, parts
