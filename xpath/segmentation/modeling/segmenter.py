"""The composite text-prompted segmenter, assembled from the modules passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .box_prior import box_prior_logits
from .branch import DecoderBranch
from .heads import SegmentationHeads
from .joint import JointModule
from .pixel_decoder import PixelDecoder
from .prompt_encoder import SpatialPromptEncoder
from .text_encoder import HFTextEncoder

__all__ = ["OBJECT_PROMPT", "ImageFeatures", "SegmenterOutput", "TextPromptSegmenter", "spatial_prompts"]

#: The text of a spatial prompt given without text ("the object in this box / at these points").
OBJECT_PROMPT = "the object"

_PAD_MULTIPLE = 32


@dataclass
class ImageFeatures:
    """Encoded images (opaque to callers; reused for any number of prompts).

    Attributes
    ----------
    levels : list of torch.Tensor
        ``(B, D, H/s, W/s)`` pixel-decoder levels at strides 32, 16, 8.
    pixel, pixel_distance : torch.Tensor
        ``(B, mask_dim, Hp/4, Wp/4)`` per-pixel embeddings (``Hp, Wp`` = padded size).
    input_size : tuple of int
        ``(H, W)`` of the input before padding to a multiple of 32.
    attention_cache : dict
        Prompt-independent keys/values of the joint module's cross-attention, filled by the
        first decode without gradients and reused by the next ones.
    branches : dict
        Branch key → the features of that label branch's own pixel decoder
        (:mod:`~xpath.segmentation.modeling.branch`); empty for a model without branches.
    """

    levels: list[torch.Tensor]
    pixel: torch.Tensor
    pixel_distance: torch.Tensor
    input_size: tuple[int, int]
    attention_cache: dict = field(default_factory=dict, repr=False, compare=False)
    branches: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        return int(self.pixel.shape[0])

    def take(self, index: int) -> ImageFeatures:
        """The features of image ``index`` alone, as a batch of one (the attention cache starts empty)."""
        i = slice(index, index + 1)
        return ImageFeatures([lv[i] for lv in self.levels], self.pixel[i], self.pixel_distance[i], self.input_size,
                             branches={key: f.take(index) for key, f in self.branches.items()})


@dataclass
class SegmenterOutput:
    """Model outputs, at the input resolution ``(H, W)``.

    Attributes
    ----------
    mask_logits : torch.Tensor
        ``(B, P, H, W)`` the selected candidate per prompt.
    distance_logits : torch.Tensor
        ``(B, P, H, W)``; sigmoid → per-instance normalised distance to the boundary.
    presence_logits : torch.Tensor
        ``(B, P)``; sigmoid → probability that the prompted object is in the image.
    similarity : torch.Tensor
        ``(B, P, Q)`` cosine similarity of each prompt to each candidate's class embedding.
    selected : torch.Tensor
        ``(B, P)`` long, index of the selected candidate.
    candidate_logits_s4 : torch.Tensor or None
        ``(B, Q, H/4, W/4)`` candidates at stride 4 (cheap; the loss matches on these);
        ``None`` when decoded with ``all_candidates=False``.
    input_size : tuple of int
        ``(H, W)``.
    spatial : torch.Tensor or None
        ``(B, P)`` bool, the prompts decoded as objects (they had a box or points); ``None``
        when no prompt had one.

    ``candidate_logits`` (``(B, Q, H, W)``) upsamples the candidates on access.
    """

    mask_logits: torch.Tensor
    distance_logits: torch.Tensor
    presence_logits: torch.Tensor
    similarity: torch.Tensor
    selected: torch.Tensor
    candidate_logits_s4: torch.Tensor | None
    input_size: tuple[int, int] = field(default=(0, 0))
    spatial: torch.Tensor | None = None

    @property
    def candidate_logits(self) -> torch.Tensor:
        """``(B, Q, H, W)`` candidate masks upsampled to the input resolution."""
        if self.candidate_logits_s4 is None:
            raise ValueError("decoded with all_candidates=False: only the selected masks were computed")
        return upsample_stride4(self.candidate_logits_s4, self.input_size)


def spatial_prompts(boxes: torch.Tensor | None, points: torch.Tensor | None) -> torch.Tensor | None:
    """``(B, P)`` bool: the prompts with a box or at least one point (``None`` when neither is given)."""
    found = None
    if boxes is not None:
        found = ~torch.isnan(boxes).any(-1)
    if points is not None:
        has = (~torch.isnan(points).any(-1)).any(-1)
        found = has if found is None else found | has
    return found


_PER_PROMPT = ("mask_logits", "distance_logits", "presence_logits", "similarity", "selected", "spatial")


def _merge_prompts(outs: list[SegmenterOutput], positions: list[list[int]]) -> SegmenterOutput:
    """One output from outputs of prompt subsets (``positions[k]``: where ``outs[k]``'s prompts go); the
    candidates are those of the first (the base parts' where any prompt took them)."""
    p = sum(len(at) for at in positions)
    merged = {}
    for name in _PER_PROMPT:
        parts = [getattr(o, name) for o in outs]
        if all(x is None for x in parts):
            merged[name] = None
            continue
        if name == "spatial":
            parts = [x if x is not None else torch.zeros(o.presence_logits.shape, dtype=torch.bool,
                                                          device=o.presence_logits.device) for x, o in zip(parts, outs)]
        first = parts[0]
        full = first.new_zeros((first.shape[0], p, *first.shape[2:]))
        for x, at in zip(parts, positions):
            full[:, at] = x
        merged[name] = full
    return SegmenterOutput(**merged, candidate_logits_s4=outs[0].candidate_logits_s4, input_size=outs[0].input_size)


def _concat_images(outs: list[SegmenterOutput]) -> SegmenterOutput:
    """One output of a batch from the outputs of its images decoded one by one."""
    merged = {}
    for name in (*_PER_PROMPT, "candidate_logits_s4"):
        parts = [getattr(o, name) for o in outs]
        if name == "spatial" and any(x is not None for x in parts):
            parts = [x if x is not None else torch.zeros(o.presence_logits.shape, dtype=torch.bool,
                                                          device=o.presence_logits.device) for x, o in zip(parts, outs)]
        merged[name] = None if any(x is None for x in parts) else torch.cat(parts)
    return SegmenterOutput(**merged, input_size=outs[0].input_size)


def upsample_stride4(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear ×4 upsampling of ``(B, C, h, w)`` stride-4 logits, cropped to ``size`` ``(H, W)``."""
    h, w = x.shape[-2:]
    up = F.interpolate(x, size=(h * 4, w * 4), mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


class TextPromptSegmenter(nn.Module):
    """Text- (and box/point-) prompted segmenter.

    Parameters
    ----------
    image_encoder : torch.nn.Module
        Multi-scale encoder: ``forward(x)`` → 4 maps at strides 4–32; attribute ``channels``.
    pixel_decoder : PixelDecoder
    text_encoder : HFTextEncoder
    joint : JointModule
    spatial : SpatialPromptEncoder
    heads : SegmentationHeads
    config : SegmenterConfig
        Travels with the model (``model.config``) and its checkpoints.

    Examples
    --------
    >>> from xpath.segmentation import create_model  # doctest: +SKIP
    >>> model = create_model("xpath_tiny")  # doctest: +SKIP
    >>> out = model(model.preprocess(np.zeros((256, 256, 3), np.uint8)), ["nuclei"])  # doctest: +SKIP
    >>> out.mask_logits.shape  # doctest: +SKIP
    torch.Size([1, 1, 256, 256])
    """

    def __init__(self, image_encoder: nn.Module, pixel_decoder: PixelDecoder, text_encoder: HFTextEncoder,
                 joint: JointModule, spatial: SpatialPromptEncoder, heads: SegmentationHeads, config: Any) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.pixel_decoder = pixel_decoder
        self.text_encoder = text_encoder
        self.joint = joint
        self.spatial = spatial
        self.heads = heads
        self.config = config
        self.trained_vocabulary = None  # ModelVocabulary of a trained checkpoint (support.py); set on load
        dim, text_dim = joint.dim, text_encoder.dim
        self.text_proj = nn.Linear(text_dim, dim)  # text tokens → joint width
        self.prompt_proj = nn.Linear(text_dim, dim)  # global embedding → prompt token
        # global embedding → the class space of the class head. A learned projection (rather than
        # the raw text space) separates prompts that a frozen sentence encoder embeds close together.
        self.class_text_proj = nn.Linear(text_dim, heads.class_embed.out_features)
        # a fine-tune's new labels, each with its own copy of the decoder parts (branch.py); key i answers
        # config.label_branches[i]. Built here as copies so that a checkpoint's weights load into them.
        self.branches = nn.ModuleDict({str(i): DecoderBranch.copy_of(self)
                                       for i in range(len(getattr(config, "label_branches", ())))})
        self._routes: dict = {}  # (text, id of the trained vocabulary) → branch key or None
        self.register_buffer("pixel_mean", torch.tensor(config.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.std).view(1, 3, 1, 1) * 255, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ images
    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 RGB → normalised ``(B, 3, H, W)`` float on the model's device.

        Raises
        ------
        TypeError
            ``images`` is not a uint8 numpy array.
        ValueError
            Wrong shape or an empty image.
        """
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy uint8 array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise TypeError(f"images must have dtype uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
            raise ValueError(f"images must have shape (B, H, W, 3) or (H, W, 3) with H, W > 0, got {images.shape}")
        # a read-only array (a memory-mapped or broadcast window) is copied: torch warns on those
        x = torch.from_numpy(np.require(images, requirements=("C", "W"))).to(self.device)
        x = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
        return (x - self.pixel_mean) / self.pixel_std

    def encode_image(self, x: torch.Tensor) -> ImageFeatures:
        """Normalised ``(B, 3, H, W)`` → :class:`ImageFeatures` (padded internally to a multiple of 32)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % _PAD_MULTIPLE, (-w) % _PAD_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))  # zeros = the mean colour after normalisation
        feats = self.image_encoder(x)  # 4 × (B, C_i, Hp/s, Wp/s)
        size = (int(h), int(w))
        branches = {key: ImageFeatures(*branch.pixel_decoder(feats), size) for key, branch in self.branches.items()}
        return ImageFeatures(*self.pixel_decoder(feats), size, branches=branches)

    # ----------------------------------------------------------------- label branches
    def attach_branch(self, label: str, branch: DecoderBranch) -> None:
        """Answer the prompts of ``label`` (a canonical prompt) with ``branch`` from now on (recorded in
        ``config.label_branches``; replaces that label's branch if it had one)."""
        labels = self.config.label_branches
        if label not in labels:
            labels.append(label)
        self.branches[str(labels.index(label))] = branch.to(self.device)
        self._routes.clear()

    def branch_of(self, text: str) -> str | None:
        """Key of the label branch that decodes the prompt ``text``, or ``None`` for the base parts.

        ``text`` routes to the branch of label ``L`` when it is ``L`` or when the model's support rule
        maps it to ``L`` (:func:`~xpath.segmentation.check_prompt_support`).
        """
        if not self.branches or not text or text == OBJECT_PROMPT:
            return None
        key = (text, id(self.trained_vocabulary))
        if key not in self._routes:
            labels = self.config.label_branches
            label = text if text in labels else None
            if label is None and self.trained_vocabulary is not None:
                from ..support import check_prompt_support

                (support,) = check_prompt_support([text], self)
                label = support.label.prompt if support.supported else None
            self._routes[key] = str(labels.index(label)) if label in labels else None
        return self._routes[key]

    # ----------------------------------------------------------------- prompts
    @staticmethod
    def _prompt_lists(prompts: Any, batch: int) -> list[list[str]]:
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
            raise TypeError(f"prompts must be a list of str or a list of B lists of str, got {type(prompts).__name__}")
        if len(prompts) == 0:
            raise ValueError("prompts must not be empty")
        if all(isinstance(p, str) for p in prompts):
            return [list(prompts)] * batch
        if not all(isinstance(p, (list, tuple)) and all(isinstance(s, str) for s in p) for p in prompts):
            raise TypeError("prompts must be a list of str or a list of B lists of str")
        if len(prompts) != batch:
            raise ValueError(f"prompts has {len(prompts)} lists but the batch has {batch} images")
        lengths = {len(p) for p in prompts}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"every image needs the same number P > 0 of prompts, got lengths {sorted(lengths)}")
        return [list(p) for p in prompts]

    def _check_spatial(self, t: torch.Tensor | None, name: str, shape: tuple) -> torch.Tensor | None:
        if t is None:
            return None
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device)
        if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape, strict=True)):
            expected = "(" + ", ".join("K" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
        return t

    def decode(self, features: ImageFeatures, prompts: list[str] | list[list[str]], boxes: torch.Tensor | None = None,
               points: torch.Tensor | None = None, *, all_candidates: bool = True) -> SegmenterOutput:
        """Decode prompts against encoded images.

        Parameters
        ----------
        features : ImageFeatures
        prompts : list of str or list of list of str
            ``P`` prompts for every image, or ``B`` lists of ``P`` prompts (``""`` = padding).
        boxes : torch.Tensor, optional
            ``(B, P, 4)`` xyxy in input pixels, NaN where none.
        points : torch.Tensor, optional
            ``(B, P, K, 3)`` ``(x, y, label)``, label 1 positive / 0 negative, NaN where none.
            A prompt with a box or a point is decoded as one object: its mask comes from its
            own token (with the box's prior, :mod:`~xpath.segmentation.modeling.box_prior`),
            not from the selected candidate. Its text may be :data:`OBJECT_PROMPT`.
        all_candidates : bool
            Also compute every query's candidate mask (``candidate_logits_s4``, which the
            training loss matches); ``False`` (inference) computes only the selected masks.

        Returns
        -------
        SegmenterOutput
        """
        b = features.batch_size
        lists = self._prompt_lists(prompts, b)
        p = len(lists[0])
        boxes = self._check_spatial(boxes, "boxes", (b, p, 4))
        points = self._check_spatial(points, "points", (b, p, None, 3))
        if not getattr(self.config, "spatial_trained", False):  # an untrained box/point path is not used
            boxes = points = None
        if not self.branches:
            return self._decode_with(self, features, lists, boxes, points, all_candidates)
        if any(lst != lists[0] for lst in lists):  # prompts differ per image: route image by image
            outs = [self.decode(features.take(i), [lists[i]], None if boxes is None else boxes[i: i + 1],
                                None if points is None else points[i: i + 1], all_candidates=all_candidates)
                    for i in range(b)]
            return _concat_images(outs)
        routes = [self.branch_of(text) for text in lists[0]]
        outs, positions = [], []
        for key in sorted(set(routes), key=lambda r: (r is not None, r or "")):  # the base parts first
            at = [j for j, r in enumerate(routes) if r == key]
            parts, feats = (self, features) if key is None else (self.branches[key], features.branches[key])
            outs.append(self._decode_with(parts, feats, [[lst[j] for j in at] for lst in lists],
                                          None if boxes is None else boxes[:, at],
                                          None if points is None else points[:, at], all_candidates))
            positions.append(at)
        return outs[0] if len(outs) == 1 else _merge_prompts(outs, positions)

    def _decode_with(self, parts, features: ImageFeatures, lists: list[list[str]], boxes, points,
                     all_candidates: bool) -> SegmenterOutput:
        """:meth:`decode` through the decoder parts ``parts`` (this model's, or a label branch's)."""
        b, p = len(lists), len(lists[0])
        flat = [s for lst in lists for s in lst]
        text = self.text_encoder(flat)  # tokens (B*P, T, Dt)
        t = text.tokens.shape[1]
        tokens = parts.text_proj(text.tokens).reshape(b, p * t, -1)  # (B, P*T, D)
        pad = ~text.mask.reshape(b, p * t)  # (B, P*T) True = padding
        pooled = text.pooled.reshape(b, p, -1)  # (B, P, Dt)
        prompt_tokens = parts.prompt_proj(pooled)  # (B, P, D)
        size = features.input_size
        sp_tokens, sp_pad = self.spatial(boxes, points, prompt_tokens, size)
        context = torch.cat([tokens, sp_tokens], 1)
        context_pad = torch.cat([pad, sp_pad], 1)
        cache = None if torch.is_grad_enabled() else features.attention_cache  # never across a weight update
        queries, prompt_out = parts.joint(features.levels, prompt_tokens, context, context_pad, cache=cache)
        spatial = spatial_prompts(boxes, points)
        bias = None if boxes is None else box_prior_logits(boxes, tuple(features.pixel.shape[-2:]), 4)
        out = parts.heads(queries, prompt_out, parts.class_text_proj(pooled), features.pixel, features.pixel_distance,
                          all_candidates=all_candidates, spatial=spatial, spatial_bias=bias)
        return SegmenterOutput(
            mask_logits=upsample_stride4(out.masks, size),
            distance_logits=upsample_stride4(out.distance, size),
            presence_logits=out.presence,
            similarity=out.similarity,
            selected=out.selected,
            candidate_logits_s4=out.candidates,
            input_size=size,
            spatial=spatial,
        )

    def forward(self, x: torch.Tensor, prompts: list[str] | list[list[str]], boxes: torch.Tensor | None = None,
                points: torch.Tensor | None = None) -> SegmenterOutput:
        """``decode(encode_image(x), prompts, boxes, points)``."""
        return self.decode(self.encode_image(x), prompts, boxes, points)

    def num_parameters(self, *, trainable_only: bool = False) -> int:
        """Number of parameters (optionally only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
