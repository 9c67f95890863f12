"""The hierarchical label standard: anatomical region × histological structure × object.

A label is a triple ``(region, structure, object)`` as in PathSeg (arXiv 2506.20988):
``structure`` is one of ``tissue``, ``cell`` or ``nuclei``; ``region`` is an anatomical
site or ``"unspecified"``; ``object`` is the thing to segment. Its canonical prompt text
follows the paper's template ``"{structure}-level {object} in {region} pathology"``.

The vocabulary (:func:`load_vocabulary`, file ``xpath/vocabulary.json``) maps the native
class names of public datasets (PanNuke, MoNuSeg, CoNSeP, Lizard/CoNIC, MoNuSAC, GlaS,
CRAG, BCSS, CPM, Kumar, TNBC, NuInsSeg, NuCLS, EBHI-Seg, CryoNuSeg) to labels, with
synonyms for free text ("lymphocytes" → inflammatory, "tumour"/"neoplastic"/"malignant
epithelial" → tumor, "colorectal" → colon) and word stems (:meth:`Vocabulary.stems`): the one
list of the words that say what a class name or prompt is about.

This module sits at the bottom of the package: datasets and segmentation import it,
it imports neither (and nothing heavy: only the standard library).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GENERIC_OBJECT", "STRUCTURES", "UNSPECIFIED", "Label", "PromptReading", "Vocabulary", "known_labels", "load_vocabulary",
           "split_template"]

STRUCTURES = ("tissue", "cell", "nuclei")
UNSPECIFIED = "unspecified"


@dataclass(frozen=True, order=True)
class Label:
    """One class of the hierarchical standard.

    Examples
    --------
    >>> Label("colon", "nuclei", "epithelial").prompt
    'nuclei-level epithelial in colon pathology'
    """

    region: str
    structure: str
    object: str

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        for name in ("region", "object"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    @property
    def prompt(self) -> str:
        """The canonical prompt text of the paper's template."""
        region = "unspecified" if self.region == UNSPECIFIED else self.region
        return f"{self.structure}-level {self.object} in {region} pathology"

    @property
    def is_instance_level(self) -> bool:
        """Whether objects of this label are countable instances (nuclei, cells)."""
        return self.structure in ("cell", "nuclei")

    def __str__(self) -> str:
        return self.prompt


# --------------------------------------------------------------------------- vocabulary

_VOCABULARY_FILE = Path(__file__).with_name("vocabulary.json")
_PROMPT_RE = re.compile(r"^\s*(tissue|cell|nuclei)-level\s+(.+)\s+in\s+(.+?)\s+pathology\s*$", re.IGNORECASE)
_STRUCTURE_WORDS = {
    "nuclei": "nuclei", "nucleus": "nuclei", "nuclear": "nuclei",
    "cell": "cell", "cells": "cell",
    "tissue": "tissue", "tissues": "tissue", "region": "tissue", "regions": "tissue", "area": "tissue",
    "areas": "tissue",
}
GENERIC_OBJECT = "nucleus"  # its synonyms ("nuclei", "cells") are also structure words of the other objects
_FILLER_WORDS = frozenset({"a", "an", "the", "all", "any", "every", "each", "of", "in", "on", "at", "from", "with",
                           "and", "or", "this", "that", "these", "those", "image", "images", "tile", "tiles", "slide",
                           "field", "h&e", "he", "pathology", "level", "-level"})


def split_template(text: str) -> tuple[str, str, str] | None:
    """``(structure, object, region)`` of a prompt in the paper's template, as written; else ``None``.

    The one parser of ``"{structure}-level {object} in {region} pathology"`` (case-insensitive;
    the structure is lower-cased; object and region are not normalised — see
    :meth:`Vocabulary.parse_prompt` for that).

    Examples
    --------
    >>> split_template("Nuclei-level epithelial in colon pathology")
    ('nuclei', 'epithelial', 'colon')
    >>> split_template("epithelial nuclei") is None
    True
    """
    m = _PROMPT_RE.match(text)
    return None if m is None else (m.group(1).lower(), m.group(2), m.group(3))


def _norm(term: str) -> str:
    return " ".join(term.strip().lower().replace("_", " ").split())


@dataclass(frozen=True)
class PromptReading:
    """How the vocabulary reads a free-text prompt, from its words alone.

    Attributes
    ----------
    label : Label or None
        Region, structure and object read from the words; ``None`` when no known object term
        occurs ("a cat").
    structure_stated : bool
        Whether the prompt says its structure: the canonical template, a structure word
        ("nuclei", "cells", "tissue", "region"), a cell-type word ("lymphocytes"), or an object
        that exists at one structure level only ("glands"). ``False`` for "tumor", which may mean
        tumour nuclei or tumour tissue; ``label.structure`` is then the object's finest level.
    """

    label: Label | None
    structure_stated: bool = False
    unread: tuple[str, ...] = ()


class Vocabulary:
    """The label vocabulary: regions, objects, synonyms and every dataset's class names.

    Read from the package file ``xpath/vocabulary.json`` by :func:`load_vocabulary`.

    Examples
    --------
    >>> voc = load_vocabulary()
    >>> voc.dataset_label("pannuke", "Neoplastic", region="Breast")
    Label(region='breast', structure='nuclei', object='tumor')
    >>> voc.normalize_object("lymphocytes")
    'inflammatory'
    >>> voc.lookup("tumour nuclei in colorectal tissue")
    Label(region='colon', structure='nuclei', object='tumor')
    """

    def __init__(self, data: dict) -> None:
        self.data = data
        self.regions = tuple(sorted(data["regions"]))
        self.objects = tuple(sorted(data["objects"]))
        self.datasets = tuple(sorted(data["datasets"]))
        self._region_terms: dict[str, str] = {}
        for region, synonyms in data["regions"].items():
            for term in [region, *synonyms]:
                self._add_term(self._region_terms, term, region, "region")
        self._object_terms: dict[str, str] = {}
        for obj, spec in data["objects"].items():
            for term in [obj, *spec.get("synonyms", [])]:
                self._add_term(self._object_terms, term, obj, "object")
        for obj, spec in data["objects"].items():
            bad = set(spec["structures"]) - set(STRUCTURES)
            if bad or (spec.get("parent") is not None and spec["parent"] not in data["objects"]):
                raise ValueError(f"vocabulary object {obj!r} has bad structures {sorted(bad)} or parent")
        bad = sorted(set(data.get("structure_stems", {})) - set(STRUCTURES))
        if bad:
            raise ValueError(f"vocabulary structure_stems name unknown structures {bad}; known: {STRUCTURES}")

    @staticmethod
    def _add_term(table: dict, term: str, value: str, kind: str) -> None:
        key = _norm(term)
        if table.get(key, value) != value:
            raise ValueError(f"vocabulary {kind} term {term!r} maps to both {table[key]!r} and {value!r}")
        table[key] = value

    # ---------------------------------------------------------------- terms
    def normalize_region(self, term: str) -> str:
        """Canonical region for a region name or synonym (``"colorectal"`` → ``"colon"``).

        Raises
        ------
        ValueError
            Unknown region (lists the known ones).
        """
        key = _norm(term)
        if key not in self._region_terms:
            raise ValueError(f"unknown region {term!r}; known regions: {', '.join(self.regions)}")
        return self._region_terms[key]

    def normalize_object(self, term: str) -> str:
        """Canonical object for an object name or synonym (``"tumour"`` → ``"tumor"``).

        Raises
        ------
        ValueError
            Unknown object (lists the known ones).
        """
        key = _norm(term)
        if key not in self._object_terms:
            raise ValueError(f"unknown object {term!r}; known objects: {', '.join(self.objects)}")
        return self._object_terms[key]

    def label(self, region: str, structure: str, object: str) -> Label:  # noqa: A002 - the standard's word
        """A :class:`Label` with region and object normalised through the synonyms.

        Raises
        ------
        ValueError
            Unknown region/object, or an object not defined at ``structure`` level.
        """
        obj = self.normalize_object(object)
        allowed = self.data["objects"][obj]["structures"]
        if structure not in allowed:
            raise ValueError(f"object {obj!r} is defined at structure levels {allowed}, not {structure!r}")
        return Label(self.normalize_region(region), structure, obj)

    def parent(self, label: Label) -> Label | None:
        """The broader label (``neutrophil`` → ``inflammatory``), or ``None``."""
        parent = self.data["objects"][label.object].get("parent")
        return None if parent is None else Label(label.region, label.structure, parent)

    def stems(self, name: str) -> tuple[str, ...]:
        """Word stems that mark a free name as object or structure ``name`` (lower case, found inside a name).

        An object's ``stems`` in the vocabulary file catch the free class names of tables and
        annotations that its synonyms do not spell out ("TILs", "lymphocytic" → inflammatory);
        the file's ``structure_stems`` place a prompt that names no known object at a structure
        level (:meth:`stem_structure`); the cell stems also say that a prompt naming a cell type
        ("lymphocytes") asks for cells. Match them against lower-cased text.

        Raises
        ------
        ValueError
            ``name`` is neither an object nor a structure.

        Examples
        --------
        >>> load_vocabulary().stems("stroma")
        ('strom',)
        """
        if name in STRUCTURES:
            return tuple(self.data.get("structure_stems", {}).get(name, ()))
        if name not in self.data["objects"]:
            raise ValueError(f"unknown object or structure {name!r}; known objects: {', '.join(self.objects)}; "
                             f"structures: {', '.join(STRUCTURES)}")
        return tuple(self.data["objects"][name].get("stems", ()))

    def stem_structure(self, text: str) -> str | None:
        """The first structure, in the file's order (nuclei, tissue, cell), whose stems occur in ``text``; else ``None``.

        Examples
        --------
        >>> voc = load_vocabulary()
        >>> voc.stem_structure("keratinocytes"), voc.stem_structure("lumen"), voc.stem_structure("a cat")
        ('cell', 'tissue', None)
        """
        low = text.lower()
        for structure, stems in self.data.get("structure_stems", {}).items():
            if any(stem in low for stem in stems):
                return structure
        return None

    # ------------------------------------------------------------- datasets
    def _dataset(self, dataset: str) -> dict:
        key = _norm(dataset).replace(" ", "_")
        key = self.data.get("dataset_aliases", {}).get(key, key)
        if key not in self.data["datasets"]:
            raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(self.datasets)}")
        return self.data["datasets"][key]

    def dataset_classes(self, dataset: str) -> dict[str, str | None]:
        """Native class name → canonical object (``None`` = not a label, e.g. "exclude")."""
        return dict(self._dataset(dataset)["classes"])

    def dataset_label(self, dataset: str, native_class: str, *, region: str | None = None) -> Label | None:
        """The :class:`Label` of a dataset's native class (``None`` for ignored classes).

        Parameters
        ----------
        dataset : str
            Dataset name (case-insensitive; aliases such as ``"consep_train"`` work).
        native_class : str
            The class name as the dataset writes it (exact first, then case-insensitive).
        region : str, optional
            Region of the image for multi-organ sets (e.g. PanNuke's tissue type); default:
            the dataset's region, ``"unspecified"`` for multi-organ sets.
        """
        spec = self._dataset(dataset)
        classes = spec["classes"]
        if native_class not in classes:
            folded = {_norm(k): k for k in classes}
            if _norm(native_class) not in folded:
                raise ValueError(f"unknown class {native_class!r} of dataset {dataset!r}; known: {sorted(classes)}")
            native_class = folded[_norm(native_class)]
        obj = classes[native_class]
        if obj is None:
            return None
        if region is None:
            region = spec["region"] if spec["region"] != "per_image" else UNSPECIFIED
        return self.label(region, spec["structure"], obj)

    def dataset_labels(self, dataset: str) -> list[Label]:
        """All labels a dataset yields (every listed region of multi-organ sets, and ``unspecified``)."""
        spec = self._dataset(dataset)
        default = spec["region"] if spec["region"] != "per_image" else UNSPECIFIED
        regions = {default, *spec.get("regions", [])}
        objs = {o for o in spec["classes"].values() if o is not None}
        if spec["structure"] in ("nuclei", "cell"):
            objs.add("nucleus")  # typed nucleus sets also give "all nuclei"
        return sorted({self.label(r, spec["structure"], o) for r in regions for o in objs})

    def known_labels(self) -> list[Label]:
        """Union of :meth:`dataset_labels` over all datasets, sorted."""
        return sorted({lab for name in self.datasets for lab in self.dataset_labels(name)})

    # ------------------------------------------------------------ free text
    def parse_prompt(self, text: str) -> Label | None:
        """Parse the canonical template ``"{structure}-level {object} in {region} pathology"``.

        Returns ``None`` when ``text`` does not follow the template or names unknown terms.
        """
        parts = split_template(text)
        if parts is None:
            return None
        structure, obj, region = parts
        try:
            return self.label(region, structure, obj)
        except ValueError:
            return None

    def lookup(self, text: str) -> Label | None:
        """Best-effort lexical reading of free text (template, else known words in it).

        Finds the longest object synonym — a specific object before the generic ``nucleus``,
        whose synonyms ("nuclei", "cells") double as structure words, so "tumor nuclei" reads
        as tumour nuclei — a region synonym (default ``"unspecified"``) and a structure word
        ("nuclei", "cells", "tissue"; default: the object's finest level). Returns ``None``
        when no object term occurs. :meth:`read` also says whether the structure was stated.
        """
        return self.read(text).label

    def read(self, text: str) -> PromptReading:
        """Read a prompt's label from its words, and whether it states its structure.

        Examples
        --------
        >>> voc = load_vocabulary()
        >>> voc.read("lymphocytes").structure_stated, voc.read("tumor").structure_stated
        (True, False)
        >>> voc.read("gland nuclei").label
        Label(region='unspecified', structure='nuclei', object='gland')
        """
        parsed = self.parse_prompt(text)
        if parsed is not None:
            return PromptReading(parsed, True)
        words = _norm(re.sub(r"[^\w\s/-]", " ", text))
        padded = f" {words} "
        hits = [(obj != GENERIC_OBJECT, len(k), k) for k, obj in self._object_terms.items() if f" {k} " in padded]
        if not hits:
            return PromptReading(None, False)
        obj_key = max(hits)[2]
        obj = self._object_terms[obj_key]
        rest = padded.replace(f" {obj_key} ", " ")
        region_key, region = next(((k, v) for k, v in sorted(self._region_terms.items(), key=lambda kv: -len(kv[0]))
                                   if f" {k} " in rest), (None, UNSPECIFIED))
        leftover = rest.replace(f" {region_key} ", " ") if region_key else rest
        unread = tuple(w for w in leftover.split() if w not in _STRUCTURE_WORDS and w not in _FILLER_WORDS)
        allowed = self.data["objects"][obj]["structures"]
        stated = self._stated_structure(obj_key, rest)
        if stated is not None:
            # a stated structure the object is not defined at ("gland nuclei") is kept: nothing is trained on it
            return PromptReading(Label(region, stated, obj), True, unread)
        if len(allowed) == 1 or set(allowed) <= {"nuclei", "cell"}:  # one level, or instance levels only
            return PromptReading(Label(region, allowed[0], obj), True, unread)
        if any(stem in words for stem in self.stems("cell")):
            return PromptReading(Label(region, "nuclei" if "nuclei" in allowed else "cell", obj), True, unread)
        return PromptReading(Label(region, "nuclei" if "nuclei" in allowed else allowed[0], obj), False, unread)

    @staticmethod
    def _stated_structure(obj_key: str, rest: str) -> str | None:
        """The structure a structure word names, in the rest of the text first, else in the object term."""
        for part in (rest, f" {obj_key} "):
            found = {_STRUCTURE_WORDS[w] for w in part.split() if w in _STRUCTURE_WORDS}
            for structure in ("nuclei", "cell", "tissue"):
                if structure in found:
                    return structure
        return None


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """The package vocabulary (``xpath/vocabulary.json``), read once."""
    try:
        data = json.loads(_VOCABULARY_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"label vocabulary not found at {_VOCABULARY_FILE}") from err
    return Vocabulary(data)


def known_labels() -> list[Label]:
    """Every label of the package vocabulary (see :meth:`Vocabulary.known_labels`)."""
    return load_vocabulary().known_labels()
