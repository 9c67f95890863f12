"""How a prompt is read: what a prompt list may be, which structure a prompt names, its nearest labels.

Built on :mod:`xpath.ontology`, which alone parses the paper's template
``"{structure}-level {object} in {region} pathology"`` and holds every word of the label
standard (synonyms and stems, from ``xpath/vocabulary.json``).

- :func:`check_prompts` validates a prompt list.
- :func:`prompt_structure` says which structure (tissue / cell / nuclei) a prompt names; the
  structure decides whether a prompt gets an instance map (``instances="auto"``). It is read,
  in order, from the template, from the vocabulary's reading of the prompt's words (object
  synonyms such as "lymphocytes" → inflammatory nuclei), from the vocabulary's structure stems
  (``nucle`` → nuclei; ``gland``, ``stroma``, ``tissue`` → tissue; ``cyte``, ``cell`` → cell),
  and last from :func:`resolve_prompt` with the model's text encoder when it is close enough.
- :func:`resolve_prompt` embeds the text with the model's text encoder (all-MiniLM-L6-v2 by
  default) and compares it with every known label of the vocabulary — its canonical prompt and
  the bare names/synonyms of its object — so a user sees how the free text was understood.
  Prompts are always encoded as typed; this is a report, not a rewrite.

Only :func:`resolve_prompt` needs torch, and imports it when called.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..ontology import STRUCTURES, Label, load_vocabulary, split_template

__all__ = ["LOW_SIMILARITY", "PromptResolution", "check_prompts", "prompt_structure", "resolve_prompt"]

logger = logging.getLogger(__name__)

#: Below this cosine similarity to every known label a prompt draws a warning (MiniLM scale).
LOW_SIMILARITY = 0.5


# ------------------------------------------------------------------ prompt lists
def check_prompts(prompts: object) -> list[str]:
    """Validate a prompt list: non-empty, strings, non-blank, no duplicates.

    A single string is accepted as a one-prompt list.

    Raises
    ------
    TypeError
        ``prompts`` is not a string or a sequence of strings.
    ValueError
        Empty list, a blank prompt, or a repeated prompt (results are keyed by prompt).

    Examples
    --------
    >>> check_prompts("nuclei")
    ['nuclei']
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of str, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must be a non-empty list of str, got an empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(p).__name__} {p!r}")
        if not p.strip():
            raise ValueError(f"prompts[{i}] is an empty string; a prompt names what to segment, e.g. 'nuclei'")
    seen: set[str] = set()
    dup = sorted({p for p in prompts if p in seen or seen.add(p)})
    if dup:
        raise ValueError(f"prompts must be unique (results are keyed by prompt), got repeated {dup}")
    return prompts


# ------------------------------------------------------------------ structure
def prompt_structure(prompt: str, *, model: Any = None) -> tuple[str | None, str | None]:
    """The canonical label text and structure a prompt asks for.

    Parameters
    ----------
    prompt : str
    model : TextPromptSegmenter, optional
        When given, prompts that neither the vocabulary's words nor its stems place are
        resolved by text-embedding similarity with its text encoder (:func:`resolve_prompt`,
        which warns when no known label is close).

    Returns
    -------
    (label, structure)
        ``label``: canonical prompt text of the label the prompt resolved to, or ``None``
        when only stems decided; ``structure``: ``"tissue"``, ``"cell"``, ``"nuclei"`` or ``None``.

    Examples
    --------
    >>> prompt_structure("nuclei-level epithelial in colon pathology")
    ('nuclei-level epithelial in colon pathology', 'nuclei')
    >>> prompt_structure("stroma")[1]
    'tissue'
    """
    parts = split_template(prompt)
    if parts is not None:
        return prompt.strip(), parts[0]
    voc = load_vocabulary()
    label = voc.lookup(prompt)
    if label is not None and label.structure in STRUCTURES:
        return label.prompt, label.structure
    structure = voc.stem_structure(prompt)
    if structure is not None:
        return None, structure
    resolved = _from_resolver(prompt, model)
    return resolved if resolved is not None else (None, None)


def _from_resolver(prompt: str, model: Any) -> tuple[str | None, str | None] | None:
    """(label prompt, structure) from :func:`resolve_prompt`, when confident.

    Uses the model's own (already loaded) text encoder; the nearest label counts when its
    similarity reaches :data:`LOW_SIMILARITY` (below it the resolver warns, naming the closest
    labels).
    """
    if model is None or not hasattr(model, "text_encoder"):
        return None
    try:
        res = resolve_prompt(prompt, model=model)
    except (TypeError, ValueError, OSError, RuntimeError) as err:
        logger.debug("resolve_prompt(%r) failed (%s); no structure from the text encoder", prompt, err)
        return None
    label = res.lexical
    if label is None and res.similarity >= LOW_SIMILARITY:
        label = res.label
    if label is None or label.structure not in STRUCTURES:
        return None
    return label.prompt, label.structure


# ------------------------------------------------------------------ resolution
@dataclass(frozen=True)
class PromptResolution:
    """Nearest known labels of a prompt.

    Attributes
    ----------
    text : str
        The prompt as given.
    matches : tuple of (Label, float)
        Up to ``top_k`` labels with their cosine similarity, best first.
    lexical : Label or None
        The label read from the words alone (template or synonyms), if any.
    """

    text: str
    matches: tuple
    lexical: Label | None = None

    @property
    def label(self) -> Label:
        """The nearest label."""
        return self.matches[0][0]

    @property
    def similarity(self) -> float:
        """Cosine similarity of the nearest label."""
        return self.matches[0][1]

    def __str__(self) -> str:
        rows = ", ".join(f"{lab.prompt!r} ({sim:.2f})" for lab, sim in self.matches)
        return f"{self.text!r} → {rows}"


def _text_encoder(model):
    if model is None:
        return _default_encoder()
    encoder = getattr(model, "text_encoder", model)
    if not callable(encoder) or not hasattr(encoder, "dim"):
        raise TypeError(f"model must be a TextPromptSegmenter, an HFTextEncoder or None, got {type(model).__name__}")
    return encoder


@functools.lru_cache(maxsize=1)
def _default_encoder():
    from .modeling.text_encoder import HFTextEncoder

    return HFTextEncoder("minilm", frozen=True)


def _embed(encoder, texts: list[str]):
    """``(N, D)`` L2-normalised pooled embeddings, computed in chunks."""
    import torch
    from torch.nn import functional as F

    with torch.no_grad():
        out = [encoder(texts[i:i + 256]).pooled.float() for i in range(0, len(texts), 256)]
        return F.normalize(torch.cat(out), dim=-1)


_LABEL_CACHE: dict = {}


def _label_table(encoder, labels: tuple[Label, ...]):
    """Embeddings of each label's prompt and of every object term.

    Cached per frozen encoder *spec* (every model with the same frozen encoder shares the
    table), else per encoder object.
    """
    spec = getattr(encoder, "spec", None)
    key = (("spec", spec) if getattr(encoder, "frozen", False) and spec else ("id", id(encoder)), labels)
    if key not in _LABEL_CACHE:
        voc = load_vocabulary()
        terms = sorted({t for lab in labels for t in [lab.object, *voc.data["objects"].get(lab.object, {})
                                                         .get("synonyms", [])]})
        prompts = _embed(encoder, [lab.prompt for lab in labels])  # (L, D)
        term_emb = _embed(encoder, terms)  # (T, D)
        index = {t: i for i, t in enumerate(terms)}
        owner = [[index[t] for t in [lab.object, *voc.data["objects"].get(lab.object, {}).get("synonyms", [])]]
                 for lab in labels]
        _LABEL_CACHE.clear()  # keep one encoder's table: they are a few MB
        _LABEL_CACHE[key] = (prompts, term_emb, owner)
    return _LABEL_CACHE[key]


def resolve_prompt(text: str, *, model=None, labels=None, top_k: int = 3,
                   low_similarity: float = LOW_SIMILARITY) -> PromptResolution:
    """Nearest known labels of a free-text prompt by cosine similarity of text embeddings.

    A label's score is the larger of the similarity to its canonical prompt and to the bare
    name/synonyms of its object (so "lymphocytes" finds the inflammatory labels); ties
    are broken by the prompt similarity.

    Parameters
    ----------
    text : str
        The prompt.
    model : TextPromptSegmenter or HFTextEncoder, optional
        Whose text encoder to use; default all-MiniLM-L6-v2.
    labels : sequence of Label, optional
        Candidates; default every known label of the vocabulary.
    top_k : int
        How many matches to report.
    low_similarity : float
        Warn when the best similarity is below this.

    Returns
    -------
    PromptResolution

    Raises
    ------
    ValueError
        Empty or whitespace-only ``text``; ``top_k`` < 1; empty ``labels``.
    TypeError
        ``text`` is not a string.

    Warns
    -----
    UserWarning
        When no known label is similar (best similarity < ``low_similarity``), naming the closest ones.

    Examples
    --------
    >>> res = resolve_prompt("tumour nuclei in breast")  # doctest: +SKIP
    >>> res.label.prompt  # doctest: +SKIP
    'nuclei-level tumor in breast pathology'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must be a non-empty prompt, got an empty string")
    if top_k < 1:
        raise ValueError(f"top_k must be ≥ 1, got {top_k}")
    import torch

    voc = load_vocabulary()
    labels = tuple(voc.known_labels() if labels is None else labels)
    if not labels:
        raise ValueError("labels must not be empty")
    encoder = _text_encoder(model)
    prompts, terms, owner = _label_table(encoder, labels)
    query = _embed(encoder, [text])[0]  # (D,)
    prompt_sim = prompts @ query  # (L,)
    term_sim = terms @ query  # (T,)
    best_term = torch.stack([term_sim[idx].max() for idx in owner])  # (L,)
    score = torch.maximum(prompt_sim, best_term)
    order = sorted(range(len(labels)), key=lambda i: (-round(float(score[i]), 4), -float(prompt_sim[i])))
    matches = tuple((labels[i], float(score[i])) for i in order[:top_k])
    result = PromptResolution(text, matches, voc.lookup(text))
    if matches[0][1] < low_similarity:
        names = "; ".join(f"{lab.prompt!r} ({sim:.2f})" for lab, sim in matches)
        warnings.warn(f"prompt {text!r} is not close to any known label (best similarity {matches[0][1]:.2f} < "
                      f"{low_similarity}); closest: {names}", UserWarning, stacklevel=2)
    logger.debug("%s", result)
    return result
