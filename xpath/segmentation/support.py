"""What a model was trained to segment, and whether a prompt asks for it.

A checkpoint records its *trained labels* — the labels it saw with ground-truth masks, each
with the validation accuracy measured when the record was written — and a calibration of
its presence score (:class:`ModelVocabulary`). A prompt is checked against that record
before any image is encoded, by this rule:

1. **Read the prompt** with the label standard (:meth:`xpath.ontology.Vocabulary.read`): the
   canonical template, else the object, region and structure words in it ("tumour nuclei in
   colorectal tissue" → nuclei-level tumor in colon). A prompt with no known object term is
   read as the nearest known label by text-embedding similarity only when that similarity
   is at least ``TYPO_SIMILARITY`` (a misspelling such as "lymphocites"); else it has no
   reading ("a cat", "asdfgh").
2. **The structure must be stated**: by the template, a structure word ("nuclei", "cells",
   "tissue", "region"), a cell-type word ("lymphocytes"), or an object that exists at one
   level only ("glands"). "tumor" alone may mean tumour nuclei or tumour tissue: unsupported,
   with "tumor nuclei" among the suggestions.
3. **A generic prompt must not hide an unknown kind**: "goblet cells" finds only the generic
   object (all nuclei) beside a word the vocabulary does not know, so it is unsupported rather
   than answered with every nucleus.
4. **Structure and object must match a trained label.** The region may differ ("nuclei in
   lung" is answered by the nuclei label). Cells are segmented by their nuclei, so the cell
   and nuclei levels match each other ("immune cells" → inflammatory nuclei). A text
   similarity alone never makes a prompt supported: "stroma" reads as tissue-level stroma,
   which no trained label is, however close its embedding lies to "spindle-shaped nuclei".

Supported prompts are decoded as typed. For the others the caller chooses
(``on_unsupported``): ``"raise"`` (default) raises :class:`UnsupportedPromptError` naming the
prompt, how it was read and the closest supported prompts; ``"empty"`` returns an empty mask
with presence NaN and status ``"unsupported"``; ``"nearest"`` decodes the nearest supported
label instead and warns with its name. Nothing is substituted silently.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..ontology import GENERIC_OBJECT, Label, load_vocabulary

__all__ = [
    "ON_UNSUPPORTED",
    "TYPO_SIMILARITY",
    "ModelVocabulary",
    "PromptPlan",
    "PromptSupport",
    "TrainedLabel",
    "UnsupportedPromptError",
    "check_on_unsupported",
    "check_prompt_support",
    "model_vocabulary",
    "plan_prompts",
    "require_supported",
    "supported_prompts",
]

ON_UNSUPPORTED = ("raise", "empty", "nearest")
#: A prompt without a known object term is read as its nearest label only this close (MiniLM cosine).
TYPO_SIMILARITY = 0.8
_INSTANCE = frozenset({"nuclei", "cell"})


def structure_family(structure: str | None) -> str | None:
    """``"nuclei"`` for the instance levels (nuclei, cell), ``"tissue"`` for tissue, else ``None``."""
    if structure in _INSTANCE:
        return "nuclei"
    return "tissue" if structure == "tissue" else None


@dataclass(frozen=True)
class TrainedLabel:
    """One label a model was trained on, with its validation accuracy when recorded (NaN: not measured)."""

    label: Label
    dice: float = math.nan
    aji: float = math.nan
    presence_auroc: float = math.nan
    n_val: int = 0

    def to_dict(self) -> dict:
        return {"prompt": self.label.prompt, "dice": float(self.dice), "aji": float(self.aji),
                "presence_auroc": float(self.presence_auroc), "n_val": int(self.n_val)}

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainedLabel:
        label = load_vocabulary().parse_prompt(str(d["prompt"]))
        if label is None:
            raise ValueError(f"trained label {d['prompt']!r} is not a canonical prompt of the vocabulary")
        return cls(label, float(d.get("dice", math.nan)), float(d.get("aji", math.nan)),
                   float(d.get("presence_auroc", math.nan)), int(d.get("n_val", 0)))


@dataclass(frozen=True)
class ModelVocabulary:
    """What a checkpoint knows: its trained labels and the calibration of its presence score.

    Attributes
    ----------
    labels : tuple of TrainedLabel
    presence_calibration : mapping
        Structure family (``"nuclei"``, ``"tissue"``) → knots ``(x, y)`` of the isotonic map from
        raw to calibrated presence (:func:`~xpath.segmentation.calibration.fit_isotonic`), fitted
        on validation tiles; a family without one is left as is.
    """

    labels: tuple[TrainedLabel, ...]
    presence_calibration: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"labels": [t.to_dict() for t in self.labels],
                "presence_calibration": {k: {"x": list(x), "y": list(y)}
                                         for k, (x, y) in self.presence_calibration.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelVocabulary:
        labels = tuple(TrainedLabel.from_dict(t) for t in d.get("labels", []))
        cal = {str(k): (tuple(map(float, v["x"])), tuple(map(float, v["y"])))
               for k, v in dict(d.get("presence_calibration", {})).items()}
        return cls(labels, cal)

    def calibrate(self, presence: float, structure: str | None) -> float:
        """The calibrated presence of a raw presence score for a prompt of ``structure``."""
        from .calibration import apply_calibration

        knots = self.presence_calibration.get(structure_family(structure) or "")
        if knots is None or not math.isfinite(presence):
            return presence
        return float(apply_calibration(presence, knots))

    def matching(self, label: Label) -> list[TrainedLabel]:
        """Trained labels of the same object and structure family as ``label`` (any region)."""
        fam = structure_family(label.structure)
        return [t for t in self.labels if t.label.object == label.object and structure_family(t.label.structure) == fam]


@dataclass(frozen=True)
class PromptSupport:
    """Whether a model was trained for a prompt, and how the prompt was read.

    Attributes
    ----------
    prompt : str
    reading : Label or None
        How the prompt was understood (``None``: no known object).
    label : Label or None
        The trained label that answers it (supported prompts), else ``None``.
    status : {"supported", "unsupported", "unchecked"}
        ``"unchecked"``: the model has no record of what it was trained on (an untrained model).
    reason : str
        Why, in words.
    nearest : tuple of Label
        The closest supported labels, best first (unsupported prompts).
    """

    prompt: str
    reading: Label | None
    label: Label | None
    status: str
    reason: str
    nearest: tuple[Label, ...] = ()

    @property
    def supported(self) -> bool:
        return self.status != "unsupported"

    def describe(self) -> str:
        read = "no known object" if self.reading is None else f"read as {self.reading.prompt!r}"
        near = ", ".join(repr(example_prompt(lab)) for lab in self.nearest)
        return f"{self.prompt!r} ({read}): {self.reason}" + (f"; closest supported: {near}" if near else "")


class UnsupportedPromptError(ValueError):
    """Prompts a model was not trained for; raised before any image is encoded.

    Attributes
    ----------
    supports : list of PromptSupport
        The refused prompts, with how each was read and the closest supported prompts.
    """

    def __init__(self, supports: Sequence[PromptSupport], model_name: str = "the model") -> None:
        self.supports = list(supports)
        lines = "; ".join(s.describe() for s in self.supports)
        super().__init__(f"{model_name} was not trained for {len(self.supports)} prompt(s): {lines}. "
                         "See xpath.segmentation.supported_prompts(); pass on_unsupported='empty' for empty masks "
                         "or 'nearest' to use the closest supported label")


def check_on_unsupported(on_unsupported: str) -> str:
    if on_unsupported not in ON_UNSUPPORTED:
        raise ValueError(f"on_unsupported must be one of {ON_UNSUPPORTED}, got {on_unsupported!r}")
    return on_unsupported


# ------------------------------------------------------------------ the record of a model
def model_vocabulary(model: Any) -> ModelVocabulary | None:
    """The trained-label record of a model object, a registered name or a checkpoint path.

    ``None`` when the model has no record: an untrained model, or a registered name without
    shipped weights. A checkpoint written before records existed yields its vocabulary's
    labels, with unknown accuracy (they include any label used only as a negative).
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        return _file_vocabulary(str(model), path.stat().st_mtime_ns if path.is_file() else None)
    record = getattr(model, "trained_vocabulary", None)  # set by load_checkpoint; other models may lack it
    if record is not None:
        return record
    vocabulary = getattr(getattr(model, "config", None), "vocabulary", None) or []
    return _from_vocabulary(vocabulary) if vocabulary else None


@functools.lru_cache(maxsize=8)
def _file_vocabulary(model: str, mtime_ns: int | None) -> ModelVocabulary | None:
    """The record of a named or file model (cached per file version: ``mtime_ns`` is part of the key)."""
    from .modeling.checkpoint import default_checkpoint, read_checkpoint
    from .modeling.registry import list_models

    path = Path(model)
    if path.suffix not in (".pt", ".pth", ".ckpt") and not path.is_file():
        if model not in list_models():
            return None  # load_model reports the unknown name with the known ones
        path = default_checkpoint(model)
        if path is None:
            return None
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {str(path)!r} does not exist")
    payload = read_checkpoint(path)
    return vocabulary_from_payload(payload)


def vocabulary_from_payload(payload: Mapping) -> ModelVocabulary | None:
    """The record in a raw checkpoint dict (:func:`~xpath.segmentation.read_checkpoint`)."""
    if "trained_vocabulary" in payload:
        return ModelVocabulary.from_dict(payload["trained_vocabulary"])
    vocabulary = list(payload.get("vocabulary", []))
    return _from_vocabulary(vocabulary) if vocabulary else None


def _from_vocabulary(prompts: Sequence[str]) -> ModelVocabulary:
    voc = load_vocabulary()
    labels = [voc.parse_prompt(p) for p in prompts]
    warnings.warn("the model records no trained labels (a checkpoint older than the record): every label of its "
                  "vocabulary counts as trained, with unknown accuracy; python -m xpath.segmentation.record "
                  "measures and records them", UserWarning, stacklevel=3)
    return ModelVocabulary(tuple(TrainedLabel(lab) for lab in labels if lab is not None))


# ------------------------------------------------------------------ the rule
def _read(prompt: str, text_model: Any) -> tuple[Label | None, bool, tuple[str, ...]]:
    """(reading, structure stated, unread words) by the vocabulary, else by a near-certain text-embedding match."""
    reading = load_vocabulary().read(prompt)
    if reading.label is not None:
        return reading.label, reading.structure_stated, reading.unread
    from .prompts import resolve_prompt

    res = resolve_prompt(prompt, model=text_model, low_similarity=0.0)
    if res.similarity >= TYPO_SIMILARITY:
        return res.label, True, ()
    return None, False, ()


def _nearest(prompt: str, record: ModelVocabulary, text_model: Any, k: int = 3) -> tuple[Label, ...]:
    """The ``k`` closest trained labels by text embedding, one per object and structure family."""
    from .prompts import resolve_prompt

    labels = sorted({t.label for t in record.labels})
    res = resolve_prompt(prompt, model=text_model, labels=labels, top_k=len(labels), low_similarity=0.0)
    out, seen = [], set()
    for lab, _ in res.matches:
        key = (lab.object, structure_family(lab.structure))
        if key not in seen:
            seen.add(key)
            out.append(lab)
    return tuple(out[:k])


def _pick(matches: list[TrainedLabel], region: str) -> Label:
    """The trained label of the prompt's region, else the region-free one, else the first."""
    by_region = {t.label.region: t.label for t in matches}
    return by_region.get(region) or by_region.get("unspecified") or min(by_region.values())


def _support(prompt: str, record: ModelVocabulary, text_model: Any) -> PromptSupport:
    reading, stated, unread = _read(prompt, text_model)
    if reading is None:
        reason = "it names no object of the label standard"
    elif reading.object == GENERIC_OBJECT and unread:  # "goblet cells": the generic object + an unknown word
        reason = f"it names a kind of nucleus or cell the label standard does not know ({' '.join(unread)!r})"
    elif not stated:
        reason = (f"it does not say which structure ({reading.object!r} exists at the levels "
                  f"{load_vocabulary().data['objects'][reading.object]['structures']}); say e.g. "
                  f"'{reading.object} nuclei' or '{reading.object} tissue'")
    else:
        matches = record.matching(reading)
        if matches:
            return PromptSupport(prompt, reading, _pick(matches, reading.region), "supported",
                                 "a trained label has its structure and object")
        reason = f"no trained label is a {reading.structure}-level {reading.object!r}"
    return PromptSupport(prompt, reading, None, "unsupported", reason, _nearest(prompt, record, text_model))


def check_prompt_support(prompts: Sequence[str], model: Any = "xpath_small", *,
                         text_model: Any = None) -> list[PromptSupport]:
    """Whether ``model`` was trained for each prompt (the rule of this module).

    Parameters
    ----------
    prompts : list of str
    model : str, path or model
        A registered name, a checkpoint path or a model object.
    text_model : model or HFTextEncoder, optional
        Text encoder for prompts without a known object and for the suggestions; default
        ``model`` when it is a model object, else all-MiniLM-L6-v2.

    Returns
    -------
    list of PromptSupport
        One per prompt; status ``"unchecked"`` for every prompt when the model has no record.

    Examples
    --------
    >>> [s.status for s in check_prompt_support(["nuclei", "stroma"])]  # doctest: +SKIP
    ['supported', 'unsupported']
    """
    record = model_vocabulary(model)
    if record is None or not record.labels:
        return [PromptSupport(p, load_vocabulary().lookup(p), None, "unchecked",
                              "the model records no trained labels (untrained)") for p in prompts]
    if text_model is None and not isinstance(model, (str, os.PathLike)):
        text_model = model if hasattr(model, "text_encoder") else None
    return [_support(p, record, text_model) for p in prompts]


def require_supported(prompts: Sequence[str], model: Any = "xpath_small", *, on_unsupported: str = "raise",
                      text_model: Any = None) -> list[PromptSupport]:
    """:func:`check_prompt_support`, raising :class:`UnsupportedPromptError` when ``on_unsupported="raise"``."""
    check_on_unsupported(on_unsupported)
    supports = check_prompt_support(prompts, model, text_model=text_model)
    refused = [s for s in supports if not s.supported]
    if refused and on_unsupported == "raise":
        name = model if isinstance(model, (str, os.PathLike)) else getattr(getattr(model, "config", None), "name",
                                                                             "the model")
        raise UnsupportedPromptError(refused, model_name=f"model {str(name)!r}")
    return supports


@dataclass(frozen=True)
class PromptPlan:
    """How a predictor answers one prompt: the text decoded (``None``: an empty answer), its label and status."""

    prompt: str
    text: str | None
    label: str | None
    structure: str | None
    status: str


def plan_prompts(prompts: Sequence[str], model: Any, *, on_unsupported: str = "raise") -> list[PromptPlan]:
    """Check ``prompts`` against ``model`` (raising when asked) and say how each is answered.

    Supported and unchecked prompts are decoded as typed; with ``on_unsupported="nearest"`` an
    unsupported prompt decodes its nearest supported label (a warning names it); with
    ``"empty"`` it is not decoded.
    """
    from .prompts import prompt_structure

    plans = []
    for s in require_supported(prompts, model, on_unsupported=on_unsupported):
        if s.status == "unchecked":
            label, structure = prompt_structure(s.prompt, model=model)
            plans.append(PromptPlan(s.prompt, s.prompt, label, structure, "unchecked"))
        elif s.supported:
            plans.append(PromptPlan(s.prompt, s.prompt, s.label.prompt, s.label.structure, "supported"))
        elif on_unsupported == "nearest" and s.nearest:
            near = s.nearest[0]
            warnings.warn(f"prompt {s.prompt!r} is not supported by this model ({s.reason}); answering with the "
                          f"nearest supported label {near.prompt!r}", UserWarning, stacklevel=3)
            plans.append(PromptPlan(s.prompt, near.prompt, near.prompt, near.structure, "nearest"))
        else:
            structure = s.reading.structure if s.reading is not None else None
            plans.append(PromptPlan(s.prompt, None, None, structure, "unsupported"))
    return plans


# ------------------------------------------------------------------ the table users read
def example_prompt(label: Label) -> str:
    """The plain-words prompt of a label: ``"epithelial nuclei"``, ``"nuclei"``, ``"glands"``."""
    if label.object == "nucleus":
        return "nuclei" if label.structure == "nuclei" else "cells"
    if label.structure == "tissue":
        spec = load_vocabulary().data["objects"][label.object]
        plural = [s for s in spec.get("synonyms", []) if s == f"{label.object}s"]
        return plural[0] if plural else f"{label.object} tissue"
    return f"{label.object} {'nuclei' if label.structure == 'nuclei' else 'cells'}"


def _examples(trained: TrainedLabel, record: ModelVocabulary, k: int = 3) -> list[str]:
    """Up to ``k`` free texts that the rule maps to this trained label."""
    voc = load_vocabulary()
    lab = trained.label
    spec = voc.data["objects"][lab.object]
    candidates = [example_prompt(lab), *spec.get("examples", []), *spec.get("synonyms", []), lab.prompt]
    out = []
    for text in candidates:
        reading = voc.read(text)
        if (reading.label is not None and reading.structure_stated and reading.label.object == lab.object
                and structure_family(reading.label.structure) == structure_family(lab.structure)
                and text not in out):
            out.append(text)
        if len(out) == k:
            break
    return out


def supported_prompts(model: Any = "xpath_small") -> pd.DataFrame:
    """The labels a model was trained on, with example prompts and their measured validation accuracy.

    Parameters
    ----------
    model : str, path or model
        A registered name (its shipped weights), a checkpoint path or a model object.

    Returns
    -------
    pandas.DataFrame
        One row per trained label: ``label`` (canonical prompt), ``structure``, ``object``,
        ``region``, ``examples`` (texts that resolve to it), ``dice``, ``aji`` (instance
        labels), ``presence_auroc``, ``n_val`` (validation tiles). Empty for a model without
        a record.

    Examples
    --------
    >>> supported_prompts("xpath_small")[["label", "examples", "dice"]]  # doctest: +SKIP
    """
    record = model_vocabulary(model)
    columns = ["label", "structure", "object", "region", "examples", "dice", "aji", "presence_auroc", "n_val"]
    if record is None:
        return pd.DataFrame(columns=columns)
    rows = [{"label": t.label.prompt, "structure": t.label.structure, "object": t.label.object,
             "region": t.label.region, "examples": ", ".join(_examples(t, record)), "dice": t.dice, "aji": t.aji,
             "presence_auroc": t.presence_auroc, "n_val": t.n_val} for t in record.labels]
    return pd.DataFrame(rows, columns=columns)
