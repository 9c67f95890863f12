"""Loaders for the real annotated image sets in ``../shared/data`` (or ``$XPATH_DATA``).

Each set is read into :class:`AnnotatedImage` records (one per image, with every mask it
has); :meth:`AnnotatedImage.triples` expands a record into the image–mask–label triples
of the hierarchical standard (:class:`ImageMaskLabel`) that segmentation training uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ontology import UNSPECIFIED, Label

__all__ = [
    "DATASETS",
    "AnnotatedImage",
    "DatasetSpec",
    "ImageMaskLabel",
    "iter_dataset",
    "load_dataset",
    "shared_data_dir",
]


@dataclass(frozen=True)
class ImageMaskLabel:
    """One image–mask–label triple.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB (shared, not copied, between triples of one image).
    semantic : numpy.ndarray
        ``(H, W)`` bool mask of ``label``.
    instances : numpy.ndarray or None
        ``(H, W)`` ``int32`` instance ids of ``label`` (0 elsewhere) when the label is
        instance-level and the source has instances; else ``None``.
    label : xpath.ontology.Label
    mpp : float or None
        µm per pixel (``None`` where the source does not state it).
    source : str
        Dataset name.
    image_id : str
    split : str
        The source's split ("train", "test", ...).
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray | None
    label: Label
    mpp: float | None
    source: str
    image_id: str
    split: str

    @property
    def prompt(self) -> str:
        return self.label.prompt


@dataclass(frozen=True)
class AnnotatedImage:
    """One annotated image with all of its masks.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB.
    instances : numpy.ndarray or None
        ``(H, W)`` ``int32`` instance map (0 = background).
    class_map : numpy.ndarray or None
        ``(H, W)`` ``uint8`` per-pixel class index into ``classes`` (0 = background).
    classes : dict
        Class index → :class:`~xpath.ontology.Label`; for instance-only sets,
        ``{1: <the nucleus label>}``.
    semantic_only : bool
        The masks are semantic (touching objects merged): ``instances`` is ``None``.
    """

    image: np.ndarray
    instances: np.ndarray | None
    class_map: np.ndarray | None
    classes: dict
    mpp: float | None
    source: str
    image_id: str
    split: str
    metadata: dict = field(default_factory=dict)

    def triples(self, *, include_all_nuclei: bool = True) -> list[ImageMaskLabel]:
        """Expand into one :class:`ImageMaskLabel` per class present in the image.

        With ``include_all_nuclei``, typed nucleus sets also yield a triple for all
        nuclei together (label object ``"nucleus"``).
        """
        out = []
        if self.class_map is None:
            fg = self.instances > 0 if self.instances is not None else None
            for label in self.classes.values():
                out.append(self._triple(label, fg, self.instances))
            return out
        for idx, label in self.classes.items():
            mask = self.class_map == idx
            if not mask.any():
                continue
            inst = None
            if self.instances is not None and label.is_instance_level:
                inst = np.where(mask, self.instances, 0).astype(np.int32)
            out.append(self._triple(label, mask, inst))
        if include_all_nuclei and self.instances is not None and (self.instances > 0).any():
            region = next(iter(self.classes.values())).region
            out.append(self._triple(Label(region, "nuclei", "nucleus"), self.instances > 0, self.instances))
        return out

    def _triple(self, label, semantic, instances) -> ImageMaskLabel:
        return ImageMaskLabel(self.image, semantic, instances, label, self.mpp, self.source, self.image_id, self.split)


@dataclass(frozen=True)
class DatasetSpec:
    """How one folder of ``shared/data`` is laid out."""

    folder: str
    classes: dict  # class index in type/semantic masks → Label
    mpp: float | None
    instance_masks: bool  # masks/*.png are instance maps (else semantic)
    type_masks: bool
    citation: str
    partial: bool = False


_NUCLEUS_ANY = Label(UNSPECIFIED, "nuclei", "nucleus")

DATASETS: dict[str, DatasetSpec] = {
    "monuseg": DatasetSpec(
        "monuseg", {1: _NUCLEUS_ANY}, 0.25, True, False,
        "Kumar et al., IEEE TMI 2017 and 2020 (MoNuSeg); CC BY-NC-SA 4.0",
    ),
    "monuseg_binary": DatasetSpec(
        "monuseg/binary_only", {1: _NUCLEUS_ANY}, 0.25, False, False,
        "Kumar et al. (MoNuSeg) — repo author's binary masks, semantic only",
    ),
    "consep": DatasetSpec(
        "consep_train",
        {1: Label("colon", "nuclei", "other"), 2: Label("colon", "nuclei", "inflammatory"),
         3: Label("colon", "nuclei", "epithelial"), 4: Label("colon", "nuclei", "spindle-shaped")},
        0.25, True, True,
        "Graham et al., Medical Image Analysis 2019 (CoNSeP); licence unverified, non-commercial research",
    ),
    "nucls": DatasetSpec(
        "nucls", {1: Label("breast", "nuclei", "non-tumor"), 2: Label("breast", "nuclei", "tumor")},
        0.25, True, True, "Amgad et al., GigaScience 2022 (NuCLS); CC0 1.0",
    ),
    "ebhi": DatasetSpec(
        "ebhi_seg", {1: Label("colon", "tissue", "gland")}, None, False, False,
        "Shi et al., Frontiers in Medicine 2023 (EBHI-Seg); licence unverified",
    ),
    "ebhi_cohort": DatasetSpec(  # the diagnostic cohort's 206 biopsies: same kind of masks, other patients
        "ebhi_cohort", {1: Label("colon", "tissue", "gland")}, None, False, False,
        "Shi et al., Frontiers in Medicine 2023 (EBHI-Seg); licence unverified",
    ),
    "glas": DatasetSpec(
        "glas_train", {1: Label("colon", "tissue", "gland")}, 0.62005, False, False,
        "Sirinukunwattana et al., Medical Image Analysis 2017 and IEEE TMI 2015 (GlaS); research use only, "
        "no commercial use",
    ),
    "cryonuseg": DatasetSpec(
        "cryonuseg_samples", {1: _NUCLEUS_ANY}, 0.25, True, False,
        "Mahbod et al., Comput. Biol. Med. 2021 (CryoNuSeg); partial annotations", partial=True,
    ),
}


_IMAGE_SUFFIXES = (".png", ".jpg")  # GlaS ships JPEG images (quality 95) beside PNG masks


def shared_data_dir() -> Path:
    """The folder of real annotated sets: ``$XPATH_DATA``, else ``../shared/data`` next to the repository.

    Raises
    ------
    FileNotFoundError
        Naming every place that was looked in.
    """
    candidates = []
    if os.environ.get("XPATH_DATA"):
        candidates.append(Path(os.environ["XPATH_DATA"]))
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for path in candidates:
        if (path / "monuseg").is_dir() or any(path.glob("*/PROVENANCE.md")):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"annotated data folder not found; looked in: {looked}. Set XPATH_DATA to its path.")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            return np.asarray(im)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def _counts(folder: Path) -> dict:
    path = folder / "counts.json"
    if not path.is_file():
        return {}
    return {row["name"]: row for row in json.loads(path.read_text())}


def iter_dataset(
    name: str, *, split: str | None = None, limit: int | None = None, root: str | os.PathLike | None = None
) -> Iterator[AnnotatedImage]:
    """Yield the images of one real set as :class:`AnnotatedImage`, in sorted file order.

    Parameters
    ----------
    name : str
        One of ``DATASETS``: ``monuseg``, ``monuseg_binary``, ``consep``, ``nucls``,
        ``ebhi``, ``ebhi_cohort``, ``glas``, ``cryonuseg``.
    split : str, optional
        Keep only images of this split (``"train"``/``"test"`` where the set has them;
        EBHI's split is its grade category).
    limit : int, optional
        Stop after this many images.
    root : path, optional
        The ``shared/data`` folder; default :func:`shared_data_dir`.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    spec = DATASETS[name]
    folder = Path(root) / spec.folder if root else shared_data_dir() / spec.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    counts = _counts(folder if name != "monuseg_binary" else folder.parent)
    yielded = 0
    for image_path in sorted(p for p in (folder / "images").iterdir() if p.suffix in _IMAGE_SUFFIXES):
        stem = image_path.stem
        row = counts.get(stem, {})
        image_split = row.get("split") or row.get("category") or ("train" if name == "monuseg_binary" else "all")
        if split is not None and image_split != split:
            continue
        image = _read_png(image_path)[..., :3]
        mask = _read_png(folder / "masks" / f"{stem}.png")
        if mask.ndim == 3:
            mask = mask[..., 0]
        instances = mask.astype(np.int32) if spec.instance_masks else None
        if spec.type_masks:
            class_map = _read_png(folder / "type_masks" / image_path.name).astype(np.uint8)
        elif spec.instance_masks:
            class_map = None
        else:
            class_map = (mask > 0).astype(np.uint8)
        mpp = spec.mpp
        if row.get("mpp_xml"):
            mpp = float(row["mpp_xml"])
        yield AnnotatedImage(
            image=np.ascontiguousarray(image, dtype=np.uint8),
            instances=instances,
            class_map=class_map,
            classes=dict(spec.classes),
            mpp=mpp,
            source=name,
            image_id=stem,
            split=image_split,
            metadata={"partial": spec.partial, **{k: v for k, v in row.items() if k not in ("name",)}},
        )
        yielded += 1
        if limit is not None and yielded >= limit:
            return


def load_dataset(name: str, **kwargs) -> list[AnnotatedImage]:
    """All images of one real set as a list; see :func:`iter_dataset` for the arguments."""
    return list(iter_dataset(name, **kwargs))
