"""What a prompt list may be, and which structure (tissue / cell / nuclei) a prompt names.

The structure decides whether a prompt gets an instance map (``instances="auto"``). It is
read, in order, from the paper's canonical template
``"{structure}-level {object} in {region} pathology"``, from the vocabulary's reading of its
words (object synonyms such as "lymphocytes" → inflammatory nuclei), from keywords
(``nuclei``, ``cells`` → instance-level; ``gland``, ``stroma``, ``tissue`` → tissue-level),
and last from :func:`xpath.segmentation.prompts.resolve_prompt` with the model's text
encoder (nearest known label by embedding similarity, when it is close enough).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..ontology import STRUCTURES, load_vocabulary, split_template

__all__ = ["check_prompts", "prompt_structure"]

logger = logging.getLogger(__name__)


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


_NUCLEI_WORDS = ("nucle", "karyo", "mitos", "mitotic")
_CELL_WORDS = (
    "cell", "cyte", "phil", "macrophage", "fibroblast", "plasma", "neutro", "eosino",
    "lympho", "leukocyte", "immune",
)
_TISSUE_WORDS = (
    "tissue", "stroma", "gland", "region", "necros", "lumen", "fat", "adipose", "muscle",
    "mucus", "mucin", "epithelium", "vessel", "background", "tumor area", "tumour area",
)


def _from_resolver(prompt: str, model: Any) -> tuple[str | None, str | None] | None:
    """(label prompt, structure) from :func:`~xpath.segmentation.prompts.resolve_prompt`, when confident.

    Uses the model's own (already loaded) text encoder; the nearest label counts when its
    similarity reaches the resolver's ``LOW_SIMILARITY`` (below it the resolver warns,
    naming the closest labels).
    """
    if model is None or not hasattr(model, "text_encoder"):
        return None
    from .prompts import LOW_SIMILARITY, resolve_prompt

    try:
        res = resolve_prompt(prompt, model=model)
    except (TypeError, ValueError, OSError, RuntimeError) as err:
        logger.debug("resolve_prompt(%r) failed (%s); falling back to keywords", prompt, err)
        return None
    label = res.lexical
    if label is None and res.similarity >= LOW_SIMILARITY:
        label = res.label
    if label is None or label.structure not in STRUCTURES:
        return None
    return label.prompt, label.structure


def prompt_structure(prompt: str, *, model: Any = None) -> tuple[str | None, str | None]:
    """The canonical label text and structure a prompt asks for.

    Parameters
    ----------
    prompt : str
    model : TextPromptSegmenter, optional
        When given, prompts that neither the vocabulary's words nor the keywords place are
        resolved by text-embedding similarity with its text encoder
        (:func:`~xpath.segmentation.prompts.resolve_prompt`, which warns when no known
        label is close).

    Returns
    -------
    (label, structure)
        ``label``: canonical prompt text of the label the prompt resolved to, or ``None``
        when only keywords decided; ``structure``: ``"tissue"``, ``"cell"``, ``"nuclei"`` or ``None``.

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
    label = load_vocabulary().lookup(prompt)
    if label is not None and label.structure in STRUCTURES:
        return label.prompt, label.structure
    text = prompt.lower()
    for words, structure in ((_NUCLEI_WORDS, "nuclei"), (_TISSUE_WORDS, "tissue"), (_CELL_WORDS, "cell")):
        if any(w in text for w in words):
            return None, structure
    resolved = _from_resolver(prompt, model)
    return resolved if resolved is not None else (None, None)
