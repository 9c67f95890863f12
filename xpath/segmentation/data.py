"""Training data for text-prompted segmentation: image–mask–label triples → batches of tensors.

The pipeline follows PathSeg's standardisation (arXiv 2506.20988) and adds what the
presence and instance heads need:

1. **Records** (:func:`build_records`): the triples of one image are grouped into a
   :class:`SegmentationRecord` and the image is rescaled to the model's pixel size
   ``mpp`` (antialiased for the image, nearest neighbour for masks). Images whose mpp is
   ``None`` (EBHI-Seg) are used at their native scale unless ``assume_mpp`` gives one.
2. **Tiles**: images larger than the tile are cut into tiles of side ``tile_size`` whose
   neighbours overlap by at least ``min_overlap`` pixels, spread evenly
   (:func:`~xpath.segmentation._augment.tile_starts`); smaller images give one tile and
   are completed by reflection (masks reflected alike).
3. **Augmentation** (training only): scale ``U(0.9, 1.1)`` with a jittered crop, the 8
   flips/90° rotations, H&E stain jitter in optical-density space.
4. **Prompts and targets**: up to ``prompts_per_image`` prompts per tile — labels present
   in the tile, then *negative* prompts of labels absent from it — padded with ``""``;
   targets as in the model contract: ``masks``, ``distance`` (per-instance normalised
   distance to the boundary), ``present``, ``prompt_valid``, ``has_instances``.
5. **Sampling** (:class:`BalancedSampler`): category-balanced, with replacement, an
   infinite deterministic stream split across DDP ranks that can restart at any position;
   each draw carries its own augmentation seed, so a resumed run sees the same batches.

Which absent labels are negatives: a label is *known absent* from a tile when either
(a) it belongs to the tile's own dataset (whose annotation is exhaustive for its classes —
not for pseudo-labels, see ``partial_labels``) and has no pixel in the tile, or (b) it names a specific anatomical region other than
the regions of the tile's labels (a "breast" prompt on a colon tile). Labels of other
datasets in the same region are never used as negatives: an EBHI gland image contains
nuclei that nobody annotated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..ontology import UNSPECIFIED, Label, load_vocabulary
from ._augment import (
    crop_resize,
    flip_rotate,
    gaussian_blur,
    normalised_distance,
    rescale_image,
    stain_jitter,
    tile_starts,
)

__all__ = [
    "AugmentConfig",
    "BalancedSampler",
    "SegmentationDataset",
    "SegmentationRecord",
    "balance_weights",
    "build_records",
    "collate_batch",
    "prompt_variants",
    "pseudo_nuclei_triples",
    "synthetic_triples",
]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation.

    Attributes
    ----------
    scale : (float, float)
        Range of the random zoom (PathSeg: 0.9–1.1); the crop window is ``tile / s``.
    shift : float
        Crop-centre jitter as a fraction of the tile side (uniform, each axis).
    flips : bool
        Random 90° rotations and left–right flip (8 symmetries).
    stain_sigma, stain_bias : float
        H&E optical-density jitter (see :func:`~xpath.segmentation._augment.stain_jitter`).
    brightness : float
        Additive brightness jitter in [0, 1] units.
    blur_prob : float
        Probability that a tile is blurred (:func:`~xpath.segmentation._augment.gaussian_blur`),
        with a sigma drawn from ``blur_sigma`` pixels: out-of-focus scans, and images
        upsampled from a coarser pixel size (EBHI-Seg at 1 µm/px is upsampled 4× to
        0.25 µm/px), should not be told apart from the other sources by sharpness alone.
    blur_sigma : (float, float)
        Range of the blur's sigma in pixels.
    synonym_prob : float
        Probability that a prompt is replaced by a paraphrase built from the synonyms of
        ``xpath/vocabulary.json`` (:func:`prompt_variants`), so that free text such as
        "lymphocytes" or "immune cells in colon" lands where "nuclei-level inflammatory in
        colon pathology" does. Negative prompts only take paraphrases that keep their region.
    """

    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.125
    flips: bool = True
    stain_sigma: float = 0.05
    stain_bias: float = 0.02
    brightness: float = 0.03
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    synonym_prob: float = 0.0


@dataclass(frozen=True)
class SegmentationRecord:
    """One image at the model's scale with all of its masks.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8`` rescaled to the model's mpp.
    masks : numpy.ndarray
        ``(L, H, W)`` bool, one mask per label.
    instances : numpy.ndarray or None
        ``(H, W)`` ``int32`` instance map (union over the labels that have instances).
    labels : tuple of Label
    instance_labels : numpy.ndarray
        ``(L,)`` bool: the label's objects are instances (distance target defined).
    source, image_id : str
    scale : float
        The factor applied to the original image (``mpp / model mpp``; 1 = native).
    mpp : float or None
        The original image's mpp.
    """

    image: np.ndarray
    masks: np.ndarray
    instances: np.ndarray | None
    labels: tuple
    instance_labels: np.ndarray
    source: str
    image_id: str
    scale: float
    mpp: float | None = None
    split: str = ""

    @property
    def regions(self) -> frozenset:
        return frozenset(lab.region for lab in self.labels if lab.region != UNSPECIFIED)


def synthetic_triples(tissue, *, image_id: str = "synthetic", region: str = UNSPECIFIED) -> list:
    """Image–mask–label triples of a :class:`~xpath.datasets.SyntheticTissue`.

    Nuclei: all nuclei (``nucleus``), and per type ``tumor``, ``inflammatory``
    (lymphocytes), ``spindle-shaped`` (stromal), each with instances; tissue regions
    ``tumor``, ``stroma`` and ``necrosis`` (where present) without instances.
    """
    from ..datasets import NUCLEUS_TYPES, ImageMaskLabel

    out = []

    def add(label, semantic, instances):
        if semantic.any():
            out.append(ImageMaskLabel(tissue.image, semantic, instances, label, tissue.mpp, "synthetic",
                                      image_id, "train"))

    add(Label(region, "nuclei", "nucleus"), tissue.instances > 0, tissue.instances)
    names = {"tumour": "tumor", "lymphocyte": "inflammatory", "stromal": "spindle-shaped"}
    for i, kind in enumerate(NUCLEUS_TYPES):
        sem = tissue.nucleus_types == i + 1
        add(Label(region, "nuclei", names[kind]), sem, np.where(sem, tissue.instances, 0).astype(np.int32))
    for name, obj in (("tumour", "tumor"), ("stroma", "stroma"), ("necrosis", "necrosis")):
        add(Label(region, "tissue", obj), tissue.region(name), None)
    return out


def pseudo_nuclei_triples(record, *, mpp: float) -> list:
    """The triples of a tissue-annotated image plus an all-nuclei triple from the classical detector.

    For sources that annotate a tissue structure but not its nuclei (EBHI-Seg's glands):
    with only the gland label, every image of the source has one positive prompt, and the
    model can answer "the foreground of this kind of image" whatever the text, so that
    "nuclei" and "glands" select the same mask. A nucleus mask on the same images makes the
    two prompts positive together with different targets. The pseudo-label is
    :func:`~xpath.segmentation.classical.classical_nuclei` (haematoxylin deconvolution +
    Otsu; Dice 0.78–0.80 to the ground truth on the MoNuSeg and NuCLS test sets), semantic
    only: its watershed split is not used to train the instance head.

    Parameters
    ----------
    record : xpath.datasets.AnnotatedImage
    mpp : float
        µm per pixel of the image (the detector's sizes are physical).

    Returns
    -------
    list of ImageMaskLabel
        ``record.triples()`` then ``(region, nuclei, nucleus)``, when the detector finds any.
    """
    from ..datasets import ImageMaskLabel
    from .classical import classical_nuclei

    triples = record.triples()
    if any(t.label.structure == "nuclei" for t in triples):
        raise ValueError(f"{record.source} image {record.image_id} already has nucleus labels; "
                         "pseudo_nuclei is for sources that annotate tissue only")
    nuclei = classical_nuclei(record.image, mpp=mpp) > 0
    if not nuclei.any():
        return triples
    region = triples[0].label.region if triples else UNSPECIFIED
    return triples + [ImageMaskLabel(record.image, nuclei, None, Label(region, "nuclei", "nucleus"), record.mpp,
                                     record.source, record.image_id, record.split)]


def build_records(
    items: Iterable,
    *,
    mpp: float | None,
    assume_mpp: dict | None = None,
    include_all_nuclei: bool = True,
) -> list[SegmentationRecord]:
    """Group triples by image and rescale each image to the model's pixel size.

    Parameters
    ----------
    items : iterable
        :class:`~xpath.datasets.ImageMaskLabel` triples, :class:`~xpath.datasets.AnnotatedImage`
        records (expanded with ``.triples()``) or :class:`~xpath.datasets.SyntheticTissue`.
    mpp : float or None
        The model's µm/px (``model.config.mpp``); ``None`` keeps every image's native scale.
    assume_mpp : dict, optional
        ``{source: mpp}`` for sources whose images state no mpp; images with no mpp and no
        entry here are used at their native scale.
    include_all_nuclei : bool
        Passed to ``AnnotatedImage.triples``.

    Returns
    -------
    list of SegmentationRecord
        In first-seen order of ``(source, image_id)``.
    """
    from ..datasets import AnnotatedImage, ImageMaskLabel, SyntheticTissue

    if mpp is not None and not mpp > 0:
        raise ValueError(f"mpp must be > 0 or None, got {mpp!r}")
    assume_mpp = dict(assume_mpp or {})
    groups: dict[tuple, list] = {}
    for item in items:
        if isinstance(item, AnnotatedImage):
            triples = item.triples(include_all_nuclei=include_all_nuclei)
        elif isinstance(item, SyntheticTissue):
            triples = synthetic_triples(item, image_id=f"synthetic_{item.params.get('seed', len(groups))}")
        elif isinstance(item, ImageMaskLabel):
            triples = [item]
        else:
            raise TypeError("items must hold ImageMaskLabel, AnnotatedImage or SyntheticTissue, "
                            f"got {type(item).__name__}")
        for t in triples:
            groups.setdefault((t.source, t.image_id), []).append(t)

    records = []
    for (source, image_id), triples in groups.items():
        image = triples[0].image
        src_mpp = triples[0].mpp if triples[0].mpp is not None else assume_mpp.get(source)
        factor = 1.0 if (mpp is None or src_mpp is None) else float(src_mpp) / float(mpp)
        seen: dict[Label, int] = {}
        for t in triples:  # one mask per label (a repeated label is merged)
            seen.setdefault(t.label, len(seen))
        masks = np.zeros((len(seen),) + image.shape[:2], bool)
        has_inst = np.zeros(len(seen), bool)
        instances = None
        for t in triples:
            i = seen[t.label]
            masks[i] |= np.asarray(t.semantic, bool)
            if t.instances is not None:
                has_inst[i] = True
                instances = t.instances.astype(np.int32) if instances is None else np.maximum(instances, t.instances)
        stack = masks.astype(np.int32)  # (L, H, W) masks, then the instance map: resampled together
        if instances is not None:
            stack = np.concatenate([stack, instances[None]])
        image_r, stack_r = rescale_image(image, stack, factor)
        records.append(SegmentationRecord(
            image=image_r, masks=stack_r[: len(seen)].astype(bool),
            instances=None if instances is None else stack_r[-1].astype(np.int32),
            labels=tuple(seen), instance_labels=has_inst, source=source, image_id=image_id,
            scale=factor, mpp=triples[0].mpp, split=triples[0].split,
        ))
    return records


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


def _stable_seed(*parts) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


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
            for y in tile_starts(h, self.tile_size, min_overlap=self.min_overlap):
                for x in tile_starts(w, self.tile_size, min_overlap=self.min_overlap):
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
            if self.augment.stain_sigma > 0 or self.augment.stain_bias > 0 or self.augment.brightness > 0:
                image = stain_jitter(image, rng, sigma=self.augment.stain_sigma, bias=self.augment.stain_bias,
                                     brightness=self.augment.brightness)
            if self.augment.blur_prob > 0 and rng.random() < self.augment.blur_prob:
                image = gaussian_blur(image, rng.uniform(*self.augment.blur_sigma))
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
        for slot, i in enumerate(present_idx[:n_pos]):
            lab = rec.labels[i]
            prompts[slot], labels[slot] = self._prompt_text(lab, rng, negative=False), lab
            out_masks[slot] = masks[i]
            present[slot], valid[slot] = 1.0, True
            if rec.instance_labels[i] and distance is not None:
                has_inst[slot] = True
                out_dist[slot] = np.where(masks[i], distance, 0.0)
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
            "prompts": prompts,
            "labels": labels,
            "source": rec.source,
            "image_id": rec.image_id,
            "index": index,
        }


def collate_batch(items: list[dict]) -> dict:
    """Stack dataset items into a batch (tensors stacked; prompts a ``list[list[str]]``)."""
    out = {}
    for key in ("image", "masks", "distance", "present", "prompt_valid", "has_instances"):
        out[key] = torch.stack([it[key] for it in items])
    for key in ("prompts", "labels", "source", "image_id"):
        out[key] = [it[key] for it in items]
    out["index"] = torch.as_tensor([it["index"] for it in items])
    return out


def balance_weights(tile_labels: Sequence[Sequence], *, by: str = "label", sources: Sequence[str] | None = None,
                    power: float = 1.0) -> np.ndarray:
    """Sampling weight per tile for category-balanced training.

    ``by="label"``: each label gets the same total mass, a tile's weight is the mean over
    its labels of ``1 / n_label**power`` (``n_label`` = tiles with that label);
    ``by="source"``: each source (dataset) gets the same mass (``sources`` required);
    ``by="none"``: uniform.
    """
    n = len(tile_labels)
    if by == "none":
        return np.ones(n)
    if by == "source":
        if sources is None:
            raise ValueError("by='source' needs sources")
        _, inverse, counts = np.unique(np.asarray(sources), return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse].astype(float) ** power
    if by != "label":
        raise ValueError(f"by must be 'label', 'source' or 'none', got {by!r}")
    counts: dict = {}
    for labs in tile_labels:
        for lab in sorted(set(labs)):
            counts[lab] = counts.get(lab, 0) + 1
    w = np.array([np.mean([1.0 / counts[lab] ** power for lab in sorted(set(labs))]) if labs else 0.0
                  for labs in tile_labels])
    if not (w > 0).any():
        raise ValueError("no tile has a label to sample")
    return w


@dataclass
class BalancedSampler(torch.utils.data.Sampler):
    """Infinite, deterministic, DDP-aware weighted sampling with replacement.

    The global stream is cut into epochs of ``epoch_size`` draws; epoch ``e`` is drawn
    with ``torch.multinomial`` from a generator seeded by ``(seed, e)``. Rank ``r`` of
    ``num_replicas`` takes global positions ``r, r + R, r + 2R, ...``, starting at its
    local position ``start`` (draws already consumed: what a resumed run skips). Each
    draw is yielded as ``(tile_index, item_seed)`` with ``item_seed`` a hash of
    ``(seed, global_position)``, so augmentation does not depend on workers or restarts.
    """

    weights: np.ndarray
    seed: int = 0
    num_replicas: int = 1
    rank: int = 0
    start: int = 0
    epoch_size: int | None = None
    _epoch_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float64)
        if w.ndim != 1 or w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("weights must be a non-empty 1-D array of finite non-negative numbers with a positive sum")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank must be in [0, {self.num_replicas}), got {self.rank}")
        self.weights = w
        self.epoch_size = int(self.epoch_size or w.size)

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._epoch_cache:
            self._epoch_cache.clear()
            g = torch.Generator().manual_seed(_stable_seed("epoch", self.seed, e))
            draw = torch.multinomial(torch.as_tensor(self.weights), self.epoch_size, replacement=True, generator=g)
            self._epoch_cache[e] = draw.numpy()
        return self._epoch_cache[e]

    def draw(self, local_position: int) -> tuple[int, int]:
        """The ``(tile_index, item_seed)`` at this rank's local position."""
        k = local_position * self.num_replicas + self.rank  # global position
        e, off = divmod(k, self.epoch_size)
        return int(self._epoch(e)[off]), _stable_seed("item", self.seed, k)

    def __iter__(self):
        j = self.start
        while True:
            yield self.draw(j)
            j += 1
