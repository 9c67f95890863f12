"""Tiles of training records with prompts and targets: the torch ``Dataset`` and its collate.

1. **Tiles**: images larger than the tile are cut into tiles of side ``tile_size`` whose
   neighbours overlap by at least ``min_overlap`` pixels, spread evenly
   (:func:`~xpath.segmentation.inference.tiling.tile_starts`, the placement inference uses); smaller
   images give one tile and are completed by reflection (masks reflected alike).
2. **Augmentation** (training only, :mod:`~xpath.segmentation.training.augment`): scale
   ``U(0.9, 1.1)`` with a jittered crop, the 8 flips/90° rotations, H&E stain jitter in
   optical-density space, then (each where configured) colour/contrast/gamma jitter, grey or
   haematoxylin-only tiles, blur, noise and JPEG compression.
3. **Prompts and targets**: up to ``prompts_per_image`` prompts per tile — labels present
   in the tile, then *negative* prompts of labels absent from it — padded with ``""``;
   targets as in the model contract: ``masks``, ``distance`` (per-instance normalised
   distance to the boundary), ``present``, ``prompt_valid``, ``has_instances``. A present
   label's prompt may become a spatial prompt (``spatial_prob``): ``boxes`` ``(P, 4)`` /
   ``points`` ``(P, MAX_POINTS, 3)`` (NaN where unused), ``spatial`` ``(P,)``, and its target
   is the one object prompted (:mod:`~xpath.segmentation.training.spatial`).

Which absent labels are negatives: a label is *known absent* from a tile when either
(a) it belongs to the tile's own dataset (whose annotation is exhaustive for its classes —
not for pseudo-labels, see ``partial_labels``) and has no pixel in the tile, or (b) it names a specific anatomical region other than
the regions of the tile's labels (a "breast" prompt on a colon tile). Labels of other
datasets in the same region are never used as negatives: an EBHI gland image contains
nuclei that nobody annotated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from ...ontology import UNSPECIFIED, Label, load_vocabulary
from ..inference.tiling import tile_starts
from ..modeling.segmenter import OBJECT_PROMPT
from .augment import (
    colour_jitter,
    crop_resize,
    flip_rotate,
    gaussian_blur,
    gaussian_noise,
    haematoxylin_only,
    jpeg_roundtrip,
    normalised_distance,
    stain_jitter,
    to_grey,
)
from .config import AugmentConfig
from .records import SegmentationRecord
from .sampler import _stable_seed
from .spatial import MAX_POINTS, sample_spatial_prompt

__all__ = ["SegmentationDataset", "collate_batch", "prompt_variants"]


def prompt_variants(label: Label, *, max_region_synonyms: int = 2) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Paraphrases of a label's prompt from the package vocabulary's synonyms.

    Forms, for the object and each of its synonyms ``o`` and the region and its first
    ``max_region_synonyms`` synonyms ``r``: ``"{structure}-level {o} in {region} pathology"``,
    ``"{o} in {r}"`` and (region-less) ``"{o}"``.

    Returns
    -------
    (all, regional) : tuple of tuple of str
        Every paraphrase (sorted, without the canonical prompt), and those that keep the
        region (all of them for an ``unspecified`` region). Empty when the vocabulary has
        no entry for the object.

    Examples
    --------
    >>> every, regional = prompt_variants(Label("colon", "nuclei", "inflammatory"))
    >>> "lymphocytes" in every and "lymphocytes" not in regional and "lymphocytes in colorectal" in regional
    True
    """
    data = load_vocabulary().data
    spec = data.get("objects", {}).get(label.object)
    if spec is None:
        return (), ()
    objects = [label.object, *spec.get("synonyms", [])]
    regional, regionless = set(), set()
    for o in objects:
        regional.add(f"{label.structure}-level {o} in {label.region} pathology")
        if label.region == UNSPECIFIED:
            regional.add(o)
            continue
        regionless.add(o)
        for r in [label.region, *data.get("regions", {}).get(label.region, [])[:max_region_synonyms]]:
            regional.add(f"{o} in {r}")
    regional.discard(label.prompt)
    return tuple(sorted(regional | regionless)), tuple(sorted(regional))


class SegmentationDataset(torch.utils.data.Dataset):
    """Tiles of :class:`SegmentationRecord` with prompts and targets (a torch ``Dataset``).

    Parameters
    ----------
    records : sequence of SegmentationRecord
        From :func:`build_records` (already at the model's mpp).
    tile_size : int
        Side of the square output tiles (``model.config.image_size``).
    prompts_per_image : int
        ``P``: prompts per tile (present labels first, then negatives, padded with ``""``).
    max_negatives : int
        At most this many negative prompts per tile.
    augment : AugmentConfig or None
        ``None`` (validation): deterministic tiles, all present labels as prompts.
    min_overlap : int, optional
        Minimum tile overlap in pixels (default ``tile_size // 4``).
    min_area : int
        A label with fewer pixels in the tile counts as absent.
    vocabulary : sequence of str or Label, optional
        Extra labels that may serve as region negatives (e.g. ``model.config.vocabulary``);
        strings not in the canonical template are ignored for negatives.
    partial_labels : mapping, optional
        Source → labels that source does not annotate exhaustively (pseudo-labels, such as
        EBHI's detector nuclei): a tile without them is not evidence that they are absent, so
        they are never its own-dataset negatives.
    seed : int
        Base seed of the per-item random draws (with ``augment`` and negatives).

    Notes
    -----
    ``dataset[i]`` is the ``i``-th tile with draws seeded by ``(seed, i)``;
    ``dataset[(i, s)]`` uses seed ``s`` (what :class:`BalancedSampler` yields).
    """

    def __init__(
        self,
        records: Sequence[SegmentationRecord],
        *,
        tile_size: int,
        prompts_per_image: int = 4,
        max_negatives: int = 1,
        augment: AugmentConfig | None = None,
        min_overlap: int | None = None,
        min_area: int = 10,
        vocabulary: Sequence | None = None,
        partial_labels: Mapping[str, Iterable[Label]] | None = None,
        seed: int = 0,
    ) -> None:
        if not records:
            raise ValueError("records must not be empty")
        if tile_size < 8:
            raise ValueError(f"tile_size must be >= 8, got {tile_size}")
        if prompts_per_image < 1:
            raise ValueError(f"prompts_per_image must be >= 1, got {prompts_per_image}")
        self.records = list(records)
        self.tile_size = int(tile_size)
        self.prompts_per_image = int(prompts_per_image)
        self.max_negatives = int(max_negatives)
        self.augment = augment
        self.min_overlap = self.tile_size // 4 if min_overlap is None else int(min_overlap)
        self.min_area = int(min_area)
        self.seed = int(seed)

        tiles = []
        for r, rec in enumerate(self.records):
            h, w = rec.image.shape[:2]
            for y in tile_starts(h, self.tile_size, self.min_overlap):
                for x in tile_starts(w, self.tile_size, self.min_overlap):
                    tiles.append((r, int(y), int(x)))
        self.tiles = np.asarray(tiles, np.int64)  # (N, 3): record, y0, x0

        self.source_labels: dict[str, tuple] = {}
        for rec in self.records:
            known = self.source_labels.setdefault(rec.source, ())
            self.source_labels[rec.source] = known + tuple(lab for lab in rec.labels if lab not in known)
        vocab = {lab for labs in self.source_labels.values() for lab in labs}
        for v in vocabulary or ():
            lab = v if isinstance(v, Label) else load_vocabulary().parse_prompt(str(v))
            if lab is not None:
                vocab.add(lab)
        self.vocabulary = tuple(sorted(vocab))
        self.partial_labels = {src: frozenset(labs) for src, labs in (partial_labels or {}).items()}
        self._variant_cache: dict = {}

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def prompts(self) -> list[str]:
        """Every prompt text an item can carry: canonical prompts, and paraphrases when augmenting with synonyms."""
        out = [lab.prompt for lab in self.vocabulary]
        if self.augment is not None and self.augment.synonym_prob > 0:
            out += sorted({v for lab in self.vocabulary for v in self._variants(lab)[0]})
        if self.augment is not None and self.augment.spatial_prob > 0:
            out.append(OBJECT_PROMPT)
        return out

    def _variants(self, label: Label) -> tuple:
        if label not in self._variant_cache:
            self._variant_cache[label] = prompt_variants(label)
        return self._variant_cache[label]

    def _prompt_text(self, label: Label, rng, *, negative: bool) -> str:
        if self.augment is None or self.augment.synonym_prob <= 0 or rng.random() >= self.augment.synonym_prob:
            return label.prompt
        every, regional = self._variants(label)
        pool = regional if negative else every
        return str(pool[rng.integers(len(pool))]) if pool else label.prompt

    def tile_labels(self) -> list[tuple]:
        """The labels of each tile's record (used for balanced sampling)."""
        return [self.records[r].labels for r in self.tiles[:, 0]]

    # ------------------------------------------------------------------ one item
    def _window(self, rec: SegmentationRecord, y0: int, x0: int, rng) -> tuple:
        t = self.tile_size
        h, w = rec.image.shape[:2]
        if self.augment is None:
            side, cy, cx = float(t), y0 + t / 2, x0 + t / 2
            if h < t:
                cy = h / 2
            if w < t:
                cx = w / 2
        else:
            s = rng.uniform(*self.augment.scale)
            side = t / s
            j = self.augment.shift * t
            cy = y0 + t / 2 + rng.uniform(-j, j)
            cx = x0 + t / 2 + rng.uniform(-j, j)
            # keep the window inside the image where the image is big enough
            cy = np.clip(cy, side / 2, h - side / 2) if h >= side else h / 2
            cx = np.clip(cx, side / 2, w - side / 2) if w >= side else w / 2
        return (cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2)

    def _negatives(self, rec: SegmentationRecord, present: set) -> list[Label]:
        regions = rec.regions
        own = set(self.source_labels[rec.source]) - self.partial_labels.get(rec.source, frozenset())
        out = []
        for lab in self.vocabulary:
            if lab in present:
                continue
            if lab in own or (regions and lab.region != UNSPECIFIED and lab.region not in regions):
                out.append(lab)
        return out

    def _augment_colour(self, image: np.ndarray, rng) -> np.ndarray:
        """Stain, colour, blur, noise and compression augmentation of one tile (each where configured)."""
        a = self.augment
        if a.stain_sigma > 0 or a.stain_bias > 0 or a.brightness > 0:
            image = stain_jitter(image, rng, sigma=a.stain_sigma, bias=a.stain_bias, brightness=a.brightness)
        if a.hue > 0 or a.saturation > 0 or a.contrast > 0 or a.gamma > 0:
            image = colour_jitter(image, rng, hue=a.hue, saturation=a.saturation, contrast=a.contrast, gamma=a.gamma)
        if a.haematoxylin_prob > 0 and rng.random() < a.haematoxylin_prob:
            image = haematoxylin_only(image)
        elif a.grey_prob > 0 and rng.random() < a.grey_prob:
            image = to_grey(image)
        if a.blur_prob > 0 and rng.random() < a.blur_prob:
            image = gaussian_blur(image, rng.uniform(*a.blur_sigma))
        if a.noise_sigma > 0:
            image = gaussian_noise(image, rng, rng.uniform(0, a.noise_sigma))
        if a.jpeg_prob > 0 and rng.random() < a.jpeg_prob:
            image = jpeg_roundtrip(image, int(rng.integers(a.jpeg_quality[0], a.jpeg_quality[1] + 1)))
        return image

    def _spatial(self, mask: np.ndarray, instances: np.ndarray | None, label: Label, rng):
        """A spatial prompt for a present label, with its text, or ``None`` (not drawn, or no object)."""
        a = self.augment
        if a is None or a.spatial_prob <= 0 or rng.random() >= a.spatial_prob:
            return None
        keep_text = rng.random() < a.spatial_text_prob
        drawn = sample_spatial_prompt(mask, instances, rng, min_area=self.min_area, points_prob=a.spatial_points_prob,
                                      region_prob=a.spatial_region_prob if keep_text else 0.0)
        if drawn is None:
            return None
        return drawn, (self._prompt_text(label, rng, negative=False) if keep_text else OBJECT_PROMPT)

    def __getitem__(self, key) -> dict:
        if isinstance(key, (tuple, list)):
            index, item_seed = int(key[0]), int(key[1])
        else:
            index, item_seed = int(key), _stable_seed(self.seed, int(key))
        rng = np.random.default_rng(item_seed)
        r, y0, x0 = (int(v) for v in self.tiles[index])
        rec = self.records[r]
        t = self.tile_size

        stack = rec.masks.astype(np.int32)
        if rec.instances is not None:
            stack = np.concatenate([stack, rec.instances[None]])
        image, stack = crop_resize(rec.image, stack, self._window(rec, y0, x0, rng), t)
        if self.augment is not None:
            if self.augment.flips:
                image, stack = flip_rotate(image, stack, k=int(rng.integers(4)), flip=bool(rng.integers(2)))
            image = self._augment_colour(image, rng)
        n_lab = len(rec.labels)
        masks = stack[:n_lab].astype(bool)  # (L, t, t)
        distance = normalised_distance(stack[n_lab]) if rec.instances is not None else None

        area = masks.reshape(n_lab, -1).sum(1)
        present_idx = [i for i in range(n_lab) if area[i] >= self.min_area]
        present_labels = {rec.labels[i] for i in present_idx}
        negatives = self._negatives(rec, present_labels)
        if self.augment is not None:
            present_idx = [present_idx[i] for i in rng.permutation(len(present_idx))]
        p = self.prompts_per_image
        n_neg = min(len(negatives), self.max_negatives, p)
        n_pos = min(len(present_idx), p - n_neg)
        n_neg = min(len(negatives), p - n_pos, self.max_negatives)
        neg_pick = (rng.choice(len(negatives), n_neg, replace=False) if self.augment is not None
                    else np.linspace(0, len(negatives) - 1, n_neg).round().astype(int)) if n_neg else []

        prompts = [""] * p
        out_masks = np.zeros((p, t, t), np.uint8)
        out_dist = np.zeros((p, t, t), np.float16)
        present = np.zeros(p, np.float32)
        valid = np.zeros(p, bool)
        has_inst = np.zeros(p, bool)
        labels: list = [None] * p
        boxes = np.full((p, 4), np.nan, np.float32)
        points = np.full((p, MAX_POINTS, 3), np.nan, np.float32)
        spatial = np.zeros(p, bool)
        for slot, i in enumerate(present_idx[:n_pos]):
            lab = rec.labels[i]
            with_instances = bool(rec.instance_labels[i]) and distance is not None
            drawn = self._spatial(masks[i], stack[n_lab] if with_instances else None, lab, rng)
            target = masks[i]
            if drawn is None:
                prompts[slot] = self._prompt_text(lab, rng, negative=False)
            else:
                (sp, prompts[slot]), spatial[slot] = drawn, True
                boxes[slot], points[slot], target = sp.box, sp.points, sp.target
            labels[slot] = lab
            out_masks[slot] = target
            present[slot], valid[slot] = 1.0, True
            if with_instances:
                has_inst[slot] = True
                out_dist[slot] = np.where(target, distance, 0.0)
        for slot, j in enumerate(neg_pick, start=n_pos):
            lab = negatives[int(j)]
            prompts[slot], labels[slot], valid[slot] = self._prompt_text(lab, rng, negative=True), lab, True
            if lab in rec.labels:  # own label cut out of this tile: its few pixels are still the truth
                out_masks[slot] = masks[rec.labels.index(lab)]
        return {
            "image": torch.from_numpy(image),  # (t, t, 3) uint8
            "masks": torch.from_numpy(out_masks),  # (P, t, t) uint8
            "distance": torch.from_numpy(out_dist),  # (P, t, t) float16
            "present": torch.from_numpy(present),
            "prompt_valid": torch.from_numpy(valid),
            "has_instances": torch.from_numpy(has_inst),
            "boxes": torch.from_numpy(boxes),  # (P, 4) xyxy, NaN = none
            "points": torch.from_numpy(points),  # (P, MAX_POINTS, 3) x, y, label; NaN = none
            "spatial": torch.from_numpy(spatial),
            "prompts": prompts,
            "labels": labels,
            "source": rec.source,
            "image_id": rec.image_id,
            "index": index,
        }


def collate_batch(items: list[dict]) -> dict:
    """Stack dataset items into a batch (tensors stacked; prompts a ``list[list[str]]``)."""
    out = {}
    for key in ("image", "masks", "distance", "present", "prompt_valid", "has_instances", "boxes", "points",
                "spatial"):
        out[key] = torch.stack([it[key] for it in items])
    for key in ("prompts", "labels", "source", "image_id"):
        out[key] = [it[key] for it in items]
    out["index"] = torch.as_tensor([it["index"] for it in items])
    return out
