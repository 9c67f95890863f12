"""A user's annotated images for fine-tuning, read and checked before anything is trained.

A folder of images (``NAME.png|jpg|jpeg|tif|tiff``) is paired by name with either

- a folder of **masks** (``NAME.png|tif|tiff``, also ``NAME_mask.png`` and the like): binary (0/1,
  0/255, or boolean) or instance labels (0 = background, each object one integer), in the
  image's size; or
- a folder of **QuPath exports** (``NAME.geojson|json``, ``File → Export objects as GeoJSON``):
  the polygons and rectangles of the label, filled
  (:func:`~xpath.segmentation.annotations.triples_from_geojson`). Polygons whose classification
  reads as another object are left out; unclassified polygons are the label.

Every problem is a ``ValueError`` that names the file or the argument, raised before a model is
loaded: names that do not pair, a mask of another size than its image, a mask with values that
are neither binary nor labels (a JPEG-compressed or anti-aliased 0/255 mask, colours, negative
or fractional values), all masks empty, fewer than :data:`MIN_IMAGES` images, images of unknown
pixel size (no ``mpp`` given and none recorded in the files), and a prompt that is empty, names
no object of the label standard or does not say its structure.

:func:`hold_out` then sets part of the images aside for validation (by file, seeded, stratified
so that both parts have images that show the label).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...ontology import STRUCTURES, Label, load_vocabulary

__all__ = ["GEOJSON_SUFFIXES", "IMAGE_SUFFIXES", "MASK_SUFFIXES", "MIN_IMAGES", "AnnotatedFolder", "check_mask",
           "finetune_label", "hold_out", "read_annotated_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
GEOJSON_SUFFIXES = (".geojson", ".json")
#: Name endings that also pair a mask with image ``NAME`` (after the exact ``NAME``).
MASK_NAME_ENDINGS = ("_mask", "-mask", "_masks", "_label", "_labels", "_gt")
#: Fewest annotated images: three to train on and one to validate.
MIN_IMAGES = 4
_GENERIC_OBJECT = "nucleus"


@dataclass(frozen=True)
class AnnotatedFolder:
    """The images of a fine-tune, each with the mask of one label.

    Attributes
    ----------
    label : Label
        The label taught (canonical form ``label.prompt``).
    prompt : str
        The prompt as the user typed it.
    triples : tuple of xpath.datasets.ImageMaskLabel
        One per image, in sorted name order (a mask may be empty: the label is absent there).
    paths : tuple of (str, str)
        ``(image file, mask or GeoJSON file)`` of each triple.
    """

    label: Label
    prompt: str
    triples: tuple
    paths: tuple

    @property
    def names(self) -> list[str]:
        return [t.image_id for t in self.triples]

    @property
    def positive(self) -> np.ndarray:
        """``(N,)`` bool: the image has at least one pixel of the label."""
        return np.array([bool(t.semantic.any()) for t in self.triples])


# ---------------------------------------------------------------------------- the prompt
def finetune_label(prompt: str, *, structure: str | None = None) -> Label:
    """The label a fine-tune teaches: ``prompt`` read with the label standard.

    Parameters
    ----------
    prompt : str
        Free text (``"stroma in colon"``, ``"tumour nuclei"``) or the canonical template.
    structure : {"tissue", "cell", "nuclei"}, optional
        The structure level, where the prompt does not say it (``"tumor"``) or to override it.

    Raises
    ------
    ValueError
        An empty prompt, one without a known object, a kind of cell the standard does not know,
        a structure that is not stated or that the object does not exist at.

    Examples
    --------
    >>> finetune_label("stroma in colon").prompt
    'tissue-level stroma in colon pathology'
    >>> finetune_label("tumor", structure="tissue").prompt
    'tissue-level tumor in unspecified pathology'
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty text naming what the masks show (e.g. 'stroma in colon'), "
                         f"got {prompt!r}")
    if structure is not None and structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    vocab = load_vocabulary()
    reading = vocab.read(prompt)
    objects = vocab.data["objects"]
    if reading.label is None:
        raise ValueError(f"prompt {prompt!r} names no object of the label standard (xpath/vocabulary.json); "
                         f"known objects: {', '.join(sorted(objects))}")
    lab = reading.label
    if lab.object == _GENERIC_OBJECT and reading.unread:
        raise ValueError(f"prompt {prompt!r}: the label standard does not know the kind {' '.join(reading.unread)!r}; "
                         f"known objects: {', '.join(sorted(objects))}")
    allowed = objects[lab.object]["structures"]
    if structure is None and not reading.structure_stated:
        raise ValueError(f"prompt {prompt!r} does not say its structure ({lab.object!r} exists at the levels "
                         f"{allowed}): say e.g. '{lab.object} tissue' or '{lab.object} nuclei', or pass "
                         "structure= (--structure)")
    chosen = structure or lab.structure
    if chosen not in allowed:
        raise ValueError(f"prompt {prompt!r}: {lab.object!r} exists at the levels {allowed}, not {chosen!r}")
    return Label(lab.region, chosen, lab.object)


# ---------------------------------------------------------------------------- masks
def _read_mask(path: Path) -> np.ndarray:
    """A mask file's values as stored (16-bit labels kept; colour channels checked to be one)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            from PIL import Image as PILImage

            with PILImage.open(path) as im:
                array = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"mask {path}: cannot be read ({type(err).__name__}: {err})") from err
    if array.ndim == 3:
        channels = array[..., :3] if array.shape[-1] in (3, 4) else array
        if array.shape[-1] not in (3, 4) or not (channels == channels[..., :1]).all():
            raise ValueError(f"mask {path}: has {array.shape[-1]} channels that differ (a colour image?); a mask is "
                             "one channel: 0 = background, 1 or 255 = the label, or one integer per object")
        array = channels[..., 0]
    return array


def check_mask(mask: np.ndarray, *, name: str = "mask", instance_level: bool = False) -> tuple:
    """A mask's ``(semantic, instances)``: ``(H, W)`` bool and ``(H, W)`` int32 or ``None``.

    Binary masks (bool, 0/1 or 0/255) give no instances; label maps (other non-negative integers)
    give instances when ``instance_level`` (nuclei, cells), else only their union.

    Raises
    ------
    ValueError
        Naming ``name``: not 2-D, fractional or negative values, or a 0/255 mask with other values
        (lossy compression or anti-aliasing).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"{name}: must be a 2-D array, got shape {mask.shape}")
    if mask.dtype == bool:
        return mask, None
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise ValueError(f"{name}: must hold integers, got dtype {mask.dtype}")
    if np.issubdtype(mask.dtype, np.floating):
        if not np.isfinite(mask).all() or (mask != np.round(mask)).any():
            raise ValueError(f"{name}: has fractional or non-finite values (a probability map?); a mask holds "
                             "0 = background and 1/255 or one integer per object")
        mask = mask.astype(np.int64)
    if mask.min() < 0:
        raise ValueError(f"{name}: has negative values (min {mask.min()}); 0 is background, objects are > 0")
    values, counts = np.unique(mask, return_counts=True)
    nonzero = values[values > 0]
    if set(nonzero.tolist()) <= {1} or set(nonzero.tolist()) <= {255}:
        return mask > 0, None
    if mask.dtype == np.uint8 and 255 in nonzero and counts[values == 255][0] >= 0.5 * counts[values > 0].sum():
        others = [int(v) for v in nonzero if v != 255][:5]
        raise ValueError(f"{name}: looks like a 0/255 mask but also holds the values {others}...: saved with lossy "
                         "compression or anti-aliasing? Save masks as PNG or TIFF with exactly 0 and 255 (or 0/1), "
                         "or as instance labels")
    semantic = mask > 0
    return semantic, (mask.astype(np.int32) if instance_level else None)


# ---------------------------------------------------------------------------- folders
def _listing(folder: Path, suffixes: Sequence[str], what: str, argument: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{argument}: {what} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            raise ValueError(f"{argument}: {found[path.stem].name} and {path.name} in {folder} have the same name")
        found[path.stem] = path
    return found


def _pair(images: dict[str, Path], others: dict[str, Path], kind: str, images_dir: Path, other_dir: Path,
          argument: str) -> dict[str, Path]:
    """Image name → its mask or GeoJSON file; an error listing every name that does not pair."""
    pairs, used = {}, set()
    for stem in images:
        match = stem if stem in others else next((stem + e for e in MASK_NAME_ENDINGS if stem + e in others), None)
        if match is not None:
            pairs[stem] = others[match]
            used.add(match)
    lonely_images = sorted(set(images) - set(pairs))
    lonely_others = sorted(set(others) - used)
    if lonely_images or lonely_others:
        parts = []
        if lonely_images:
            parts.append(f"{len(lonely_images)} image(s) in {images_dir} without a {kind} in {other_dir}: "
                         + ", ".join(images[s].name for s in lonely_images[:5]))
        if lonely_others:
            parts.append(f"{len(lonely_others)} {kind}(s) in {other_dir} without an image: "
                         + ", ".join(others[s].name for s in lonely_others[:5]))
        raise ValueError(f"{argument}: names do not pair (a {kind} is named like its image, e.g. "
                         f"img1.png + img1.png): " + "; ".join(parts))
    return pairs


def _geojson_mask(image: np.ndarray, path: Path, label: Label, prompt: str, mpp: float | None) -> tuple:
    """``(semantic, instances)`` of the label's polygons in one QuPath export (empty when it has none)."""
    from ...io import read_geojson
    from ..annotations import triples_from_geojson

    table = read_geojson(path)
    areas = table[[bool(g) and g.get("type") in ("Polygon", "MultiPolygon") for g in table["geometry"]]]
    vocab = load_vocabulary()

    def is_label(name) -> bool:
        if not isinstance(name, str) or not name.strip():
            return True  # unclassified: what the prompt names
        if name.strip().lower() == prompt.strip().lower():
            return True
        read = vocab.read(name).label
        return read is not None and read.object == label.object

    keep = areas[[is_label(c) for c in areas["class"]]]
    if len(areas) and keep.empty:
        classes = sorted({str(c) for c in areas["class"]})
        raise ValueError(f"{path}: none of its polygons is classified as {label.object!r} (classes: {classes}); "
                         "export the label's annotations, or leave them unclassified")
    if keep.empty:  # no annotation in this image: the label is absent
        return np.zeros(image.shape[:2], bool), None
    (triple,) = triples_from_geojson(image, keep, mpp=mpp, prompt=label.prompt, image_id=path.stem,
                                     instances=label.is_instance_level)
    return triple.semantic, triple.instances


def read_annotated_folder(images: str | os.PathLike, masks: str | os.PathLike | None = None, *,
                          geojson: str | os.PathLike | None = None, prompt: str, structure: str | None = None,
                          mpp: float | None = None, source: str = "user") -> AnnotatedFolder:
    """Read and check a fine-tune's images with their masks (or QuPath GeoJSON exports).

    Parameters
    ----------
    images : path
        Folder of ``NAME.png|jpg|jpeg|tif|tiff`` images (RGB).
    masks : path, optional
        Folder of same-named masks; exactly one of ``masks`` and ``geojson``.
    geojson : path, optional
        Folder of same-named QuPath exports (``NAME.geojson``), in the images' pixels.
    prompt : str
        What the masks show (see :func:`finetune_label`).
    structure : str, optional
        The structure level where the prompt does not say it.
    mpp : float, optional
        µm per pixel of every image; default what each file records (TIFF resolution, PNG dpi).
    source : str
        Recorded on each triple (the dataset name of the new data).

    Returns
    -------
    AnnotatedFolder

    Raises
    ------
    ValueError, FileNotFoundError
        See the module docstring; each names the file or argument.
    """
    from ..._types import check_mpp
    from ...datasets import ImageMaskLabel
    from ...io import read_image

    label = finetune_label(prompt, structure=structure)
    if (masks is None) == (geojson is None):
        raise ValueError("give exactly one of masks= (--masks DIR) and geojson= (--geojson DIR)")
    mpp = check_mpp(mpp, required=False)
    images_dir = Path(images)
    found = _listing(images_dir, IMAGE_SUFFIXES, "images", "--images")
    other_dir, kind = (Path(masks), "mask") if masks is not None else (Path(geojson), "GeoJSON file")
    argument = "--masks" if masks is not None else "--geojson"
    others = _listing(other_dir, MASK_SUFFIXES + (".jpg", ".jpeg") if masks is not None else GEOJSON_SUFFIXES,
                      "masks" if masks is not None else "GeoJSON", argument)
    pairs = _pair(found, others, kind, images_dir, other_dir, argument)
    if len(pairs) < MIN_IMAGES:
        raise ValueError(f"--images: {images_dir} has {len(pairs)} annotated image(s); a fine-tune needs at least "
                         f"{MIN_IMAGES} (some are held out to measure it)")
    jpeg = [p.name for p in pairs.values() if p.suffix.lower() in (".jpg", ".jpeg")]
    if jpeg:
        raise ValueError(f"--masks: {', '.join(jpeg[:5])} in {other_dir} are JPEG, whose lossy compression changes a "
                         "mask's values; save masks as PNG or TIFF")
    no_mpp, triples, paths = [], [], []
    for stem in sorted(pairs):
        img = read_image(found[stem], mpp=mpp)
        if img.mpp is None:
            no_mpp.append(found[stem].name)
        if masks is not None:
            semantic, inst = check_mask(_read_mask(pairs[stem]), name=f"mask {pairs[stem]}",
                                        instance_level=label.is_instance_level)
        else:
            semantic, inst = _geojson_mask(img.array, pairs[stem], label, prompt, img.mpp)
        if semantic.shape != img.array.shape[:2]:
            raise ValueError(f"mask {pairs[stem]} is {semantic.shape[1]}×{semantic.shape[0]} px but its image "
                             f"{found[stem]} is {img.array.shape[1]}×{img.array.shape[0]} px (width × height)")
        triples.append(ImageMaskLabel(img.array, semantic, inst, label, img.mpp, source, stem, "train"))
        paths.append((str(found[stem]), str(pairs[stem])))
    if no_mpp:
        raise ValueError(f"--mpp: {len(no_mpp)} image(s) record no pixel size ({', '.join(no_mpp[:5])}); pass the "
                         "µm per pixel of the images, e.g. --mpp 0.5 for a 20× scan (mpp= in Python)")
    if not any(t.semantic.any() for t in triples):
        raise ValueError(f"{argument}: every {kind} in {other_dir} is empty (no pixel of {label.prompt!r}): "
                         "nothing to learn")
    return AnnotatedFolder(label, prompt, tuple(triples), tuple(paths))


def hold_out(positive: Sequence[bool], *, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Which images to hold out for validation, by file: ``(N,)`` bool.

    A seeded draw of ``round(fraction * n)`` images (at least 1, leaving at least 3 to train on),
    stratified: images that show the label and images that do not are drawn apart, so that both
    parts have at least one image with the label.

    Examples
    --------
    >>> hold_out([True] * 10, fraction=0.2, seed=0).sum()
    np.int64(2)
    """
    positive = np.asarray(positive, bool)
    n = positive.size
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    if n < MIN_IMAGES:
        raise ValueError(f"at least {MIN_IMAGES} images are needed to hold some out, got {n}")
    n_pos = int(positive.sum())
    if n_pos < 2:
        raise ValueError(f"only {n_pos} image(s) show the label; at least 2 are needed (one to train on, one to "
                         "validate)")
    n_val = min(max(1, round(fraction * n)), n - 3)
    val_pos = min(max(1, round(n_val * n_pos / n)), n_pos - 1)
    val_neg = min(n_val - val_pos, n - n_pos)
    rng = np.random.default_rng(seed)
    out = np.zeros(n, bool)
    for group, k in ((np.flatnonzero(positive), val_pos), (np.flatnonzero(~positive), val_neg)):
        if k > 0:
            out[rng.choice(group, k, replace=False)] = True
    return out
