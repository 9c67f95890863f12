"""How a model reads a prompt: nearest known labels by text-embedding similarity.

``resolve_prompt("lymphocytes")`` embeds the text with the model's text encoder
(all-MiniLM-L6-v2 by default) and compares it with every known label of the vocabulary —
its canonical prompt and the bare names/synonyms of its object — so a user sees how the
free text was understood. Prompts are always encoded as typed; this is a report, not a
rewrite.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..ontology import Label, load_vocabulary

__all__ = ["PromptResolution", "resolve_prompt"]

logger = logging.getLogger(__name__)

#: Below this cosine similarity to every known label a prompt draws a warning (MiniLM scale).
LOW_SIMILARITY = 0.5


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


@torch.no_grad()
def _embed(encoder, texts: list[str]) -> torch.Tensor:
    """``(N, D)`` L2-normalised pooled embeddings, computed in chunks."""
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
