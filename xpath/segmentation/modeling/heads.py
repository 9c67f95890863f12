"""Output heads: candidate masks, class embeddings, selection, presence and distance.

- mask head: 3-layer MLP on each query → dot product with the per-pixel embeddings
  → ``Q`` candidate masks;
- class head: one linear layer projecting each query into the (projected) text space; the
  mask of a prompt is the candidate whose class embedding is most cosine-similar to the
  prompt's global text embedding (PathSegmentor);
- presence head (beyond the paper): MLP on the prompt token → "is it in the image?";
- distance head (beyond the paper): MLP on the prompt token → dot product with the
  distance pixel embeddings → per-instance normalised distance to the boundary;
- object masks (spatial prompts, beyond the paper): a prompt with a box or points takes its
  mask from its own token through the mask head (as SAM's output token), not from the
  selected candidate: the candidates answer "which structure", the prompt token "which
  object here".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP", "HeadOutputs", "SegmentationHeads"]


@dataclass
class HeadOutputs:
    """What the heads return, at stride 4.

    Attributes
    ----------
    candidates : torch.Tensor or None
        ``(B, Q, h, w)`` every query's mask, or ``None`` when not asked for.
    similarity : torch.Tensor
        ``(B, P, Q)`` cosine similarity of each prompt to each candidate's class embedding.
    selected : torch.Tensor
        ``(B, P)`` long, the candidate chosen for each prompt.
    masks : torch.Tensor
        ``(B, P, h, w)`` each prompt's mask: the selected candidate, or for a spatial prompt
        its object mask.
    distance : torch.Tensor
        ``(B, P, h, w)``.
    presence : torch.Tensor
        ``(B, P)``.
    """

    candidates: torch.Tensor | None
    similarity: torch.Tensor
    selected: torch.Tensor
    masks: torch.Tensor
    distance: torch.Tensor
    presence: torch.Tensor


class MLP(nn.Sequential):
    """``num_layers`` linear layers with GELU between them."""

    def __init__(self, din: int, hidden: int, dout: int, num_layers: int = 3) -> None:
        dims = [din] + [hidden] * (num_layers - 1) + [dout]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        super().__init__(*layers)


class SegmentationHeads(nn.Module):
    """All heads of the composite model.

    Parameters
    ----------
    dim : int
        Joint-module width.
    mask_dim : int
        Per-pixel embedding channels.
    class_dim : int
        Width of the class space shared with the projected global text embeddings.
    """

    def __init__(self, dim: int, mask_dim: int, class_dim: int) -> None:
        super().__init__()
        self.mask_embed = MLP(dim, dim, mask_dim, 3)
        self.class_embed = nn.Linear(dim, class_dim)
        self.presence = MLP(dim, dim, 1, 2)
        self.distance_embed = MLP(dim, dim, mask_dim, 3)

    def forward(self, queries: torch.Tensor, prompt_tokens: torch.Tensor, text_global: torch.Tensor,
                pixel: torch.Tensor, pixel_distance: torch.Tensor, *, all_candidates: bool = True,
                spatial: torch.Tensor | None = None, spatial_bias: torch.Tensor | None = None) -> HeadOutputs:
        """Apply the heads at stride 4.

        Parameters
        ----------
        queries : torch.Tensor
            ``(B, Q, D)``.
        prompt_tokens : torch.Tensor
            ``(B, P, D)``.
        text_global : torch.Tensor
            ``(B, P, class_dim)`` projected global embedding of each prompt.
        pixel, pixel_distance : torch.Tensor
            ``(B, mask_dim, h, w)``.
        all_candidates : bool
            Compute the masks of all ``Q`` candidates (training: the loss matches them);
            ``False`` computes only the selected ones (inference; ``candidates`` is ``None``).
        spatial : torch.Tensor, optional
            ``(B, P)`` bool, the prompts with a box or points: their mask is the object mask
            of their own token.
        spatial_bias : torch.Tensor, optional
            ``(B, P, h, w)`` logits added to the object masks (the box's geometric prior).

        Returns
        -------
        HeadOutputs
        """
        embed = self.mask_embed(queries)  # (B, Q, mask_dim)
        cls = F.normalize(self.class_embed(queries), dim=-1)  # (B, Q, class_dim)
        txt = F.normalize(text_global, dim=-1)  # (B, P, class_dim)
        similarity = torch.einsum("bpc,bqc->bpq", txt, cls)  # (B, P, Q) cosine
        selected = similarity.argmax(-1)  # (B, P)
        if all_candidates:
            candidates = torch.einsum("bqc,bchw->bqhw", embed, pixel)  # (B, Q, h, w)
            h, w = candidates.shape[-2:]
            masks = torch.gather(candidates, 1, selected[..., None, None].expand(-1, -1, h, w))  # (B, P, h, w)
        else:
            candidates = None
            chosen = torch.gather(embed, 1, selected[..., None].expand(-1, -1, embed.shape[-1]))  # (B, P, mask_dim)
            masks = torch.einsum("bpc,bchw->bphw", chosen, pixel)
        if spatial is not None and bool(spatial.any()):
            objects = torch.einsum("bpc,bchw->bphw", self.mask_embed(prompt_tokens), pixel)
            if spatial_bias is not None:
                objects = objects + spatial_bias
            masks = torch.where(spatial[..., None, None], objects, masks)
        distance = torch.einsum("bpc,bchw->bphw", self.distance_embed(prompt_tokens), pixel_distance)
        presence = self.presence(prompt_tokens).squeeze(-1)  # (B, P)
        return HeadOutputs(candidates=candidates, similarity=similarity, selected=selected, masks=masks,
                           distance=distance, presence=presence)
