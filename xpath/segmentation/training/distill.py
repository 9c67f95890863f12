"""Holding what a model already does while it learns something else: distillation from a frozen teacher.

A continuation of a trained model on new data (more gland images, say) moves every output a little,
including those it did not need to move: three CPU continuations of the shipped model each cost CoNSeP
nucleus AJI 0.010–0.019 while their glands gained (docs/model_card.md, stages 11–13). With a ``distill``
section in the training config, a frozen copy of the starting weights (the *teacher*) decodes every
batch too, and the student pays for leaving the teacher's output on the prompts of the chosen
structures — Learning without Forgetting (Li & Hoiem, TPAMI 2018), on the same augmented tiles::

    distill:
      checkpoint: runs/xpath_small_stage10_shipped.pt   # the teacher (usually the init_checkpoint)
      weight: 1.0                                       # its term's weight in the total loss
      structures: [nuclei]                              # prompts of these structures are held

:func:`distillation_loss` is the term: BCE of the student's selected mask and distance logits against
the teacher's probabilities, and of its presence logit against the teacher's presence probability, on
every valid text prompt of a held structure (present or not: a negative prompt's empty answer is
behaviour to keep too). Prompts of other structures learn from their ground truth alone.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..modeling.segmenter import SegmenterOutput

__all__ = ["distillation_loss", "held_prompts"]


def held_prompts(labels: list[list], valid: torch.Tensor, spatial: torch.Tensor | None,
                 structures: tuple[str, ...]) -> torch.Tensor:
    """``(B, P)`` bool: the valid text prompts whose label's structure is one of ``structures``.

    ``labels`` is the batch's ``labels`` (one :class:`~xpath.ontology.Label` or ``None`` per prompt slot);
    spatial prompts (a box or points) are left to their own targets.
    """
    held = torch.tensor([[lab is not None and lab.structure in structures for lab in row] for row in labels],
                        dtype=torch.bool, device=valid.device)
    if held.shape != valid.shape:
        raise ValueError(f"labels must give one label per prompt slot {tuple(valid.shape)}, got {tuple(held.shape)}")
    held &= valid.bool()
    if spatial is not None:
        held &= ~spatial.bool()
    return held


def distillation_loss(student: SegmenterOutput, teacher: SegmenterOutput, held: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the student's logits against the teacher's probabilities on the ``held`` prompts.

    Parameters
    ----------
    student, teacher : SegmenterOutput
        Outputs of the two models on the same inputs and prompts.
    held : torch.Tensor
        ``(B, P)`` bool, the prompts to hold (:func:`held_prompts`).

    Returns
    -------
    torch.Tensor
        Scalar: mask + distance + presence terms (each a mean over the held prompts); 0 when none is held.
    """
    if held.shape != student.presence_logits.shape or teacher.mask_logits.shape != student.mask_logits.shape:
        raise ValueError(f"student, teacher and held must agree on (B, P): {tuple(student.presence_logits.shape)}, "
                         f"{tuple(teacher.presence_logits.shape)}, {tuple(held.shape)}")
    if not held.any():
        return student.presence_logits.sum() * 0.0

    def bce(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(s[held].float(), t[held].float().sigmoid())

    return (bce(student.mask_logits, teacher.mask_logits) + bce(student.distance_logits, teacher.distance_logits)
            + bce(student.presence_logits, teacher.presence_logits))
