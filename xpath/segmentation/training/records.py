"""Training records: image–mask–label triples grouped per image at the model's pixel size.

:func:`build_records` groups the triples of one image into a :class:`SegmentationRecord`
and rescales the image to the model's pixel size ``mpp`` (PathSeg's standardisation,
arXiv 2506.20988; antialiased for the image, nearest neighbour for masks). Images whose
mpp is ``None`` (EBHI-Seg) are used at their native scale unless ``assume_mpp`` gives one.
:func:`synthetic_triples` and :func:`pseudo_nuclei_triples` make triples of synthetic
tissue and of tissue-only annotations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ...ontology import UNSPECIFIED, Label
from .augment import rescale_image

__all__ = ["SegmentationRecord", "build_records", "pseudo_nuclei_triples", "synthetic_triples"]


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
    from ...datasets import NUCLEUS_TYPES, ImageMaskLabel

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


def pseudo_nuclei_triples(record, *, mpp: float, nuclei: np.ndarray | None = None) -> list:
    """The triples of a tissue-annotated image plus an all-nuclei triple, from the classical detector or given.

    For sources that annotate a tissue structure but not its nuclei (EBHI-Seg's glands):
    with only the gland label, every image of the source has one positive prompt, and the
    model can answer "the foreground of this kind of image" whatever the text, so that
    "nuclei" and "glands" select the same mask. A nucleus mask on the same images makes the
    two prompts positive together with different targets. The pseudo-label is
    :func:`~xpath.segmentation.classical.classical_nuclei` (haematoxylin deconvolution +
    Otsu; Dice 0.78–0.80 to the ground truth on the MoNuSeg and NuCLS test sets), semantic
    only: its watershed split is not used to train the instance head. A trained model's mask can
    be given instead (``nuclei=``; self-training, :mod:`~xpath.segmentation.training.self_training`).

    Parameters
    ----------
    record : xpath.datasets.AnnotatedImage
    mpp : float
        µm per pixel of the image (the detector's sizes are physical).
    nuclei : numpy.ndarray, optional
        ``(H, W)`` bool nucleus mask of the image to use instead of the detector's.

    Returns
    -------
    list of ImageMaskLabel
        ``record.triples()`` then ``(region, nuclei, nucleus)``, when the detector finds any.
    """
    from ...datasets import ImageMaskLabel
    from ..classical import classical_nuclei

    triples = record.triples()
    if any(t.label.structure == "nuclei" for t in triples):
        raise ValueError(f"{record.source} image {record.image_id} already has nucleus labels; "
                         "pseudo_nuclei is for sources that annotate tissue only")
    if nuclei is None:
        nuclei = classical_nuclei(record.image, mpp=mpp) > 0
    elif nuclei.shape != record.image.shape[:2] or nuclei.dtype != bool:
        raise ValueError(f"nuclei must be a bool mask of the image's shape {record.image.shape[:2]}, "
                         f"got {nuclei.dtype} {nuclei.shape}")
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
    from ...datasets import AnnotatedImage, ImageMaskLabel, SyntheticTissue

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
