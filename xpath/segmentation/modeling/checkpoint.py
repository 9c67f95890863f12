"""The checkpoint file: written with its metadata, read and checked strictly, found where weights ship.

A checkpoint is one ``torch.save`` file holding a dict::

    {"format": "xpath.segmentation", "format_version": 1,
     "config": {...SegmenterConfig...}, "vocabulary": [...],
     "preprocessing": {"mean", "std", "mpp", "image_size"},
     "state_dict": {...}, "excluded_prefixes": [...], "extra": {...},
     "trained_vocabulary": {"labels": [...], "presence_calibration": {...}},   # optional
     "prompt_embeddings": {...}}   # optional

``trained_vocabulary`` (:class:`~xpath.segmentation.support.ModelVocabulary`) records the
labels the model was trained on, with their validation accuracy, and the calibration of its
presence score; files written before it existed load without it.

A frozen pretrained text encoder is left out (``excluded_prefixes``) and reloaded from its
package or directory when the model is rebuilt — lazily, on the first prompt it has not
embedded: the optional ``prompt_embeddings`` entry (written by
``python -m xpath.segmentation.cache_prompts CHECKPOINT``) holds the frozen encoder's
embeddings of the prompts the model was trained on, so inference with those prompts never
loads the encoder. Files without the entry load as before. Files are written atomically and read
with ``torch.load(map_location="cpu", weights_only=True)``; loading fails on missing or
unexpected keys and on shape mismatches. :func:`sha256sum` / :func:`verify_checksum` check
shipped files; :func:`default_checkpoint` finds them.

The config entry is :meth:`~xpath.segmentation.modeling.config.SegmenterConfig.to_dict` (files
of the older flat config load too). Rebuilding the model from a file is
:func:`~xpath.segmentation.modeling.build.load_checkpoint`: this module knows the file, not the
networks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from ...io import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "PROMPT_EMBEDDINGS_KEY", "WEIGHTS_DIR", "CheckpointError",
           "default_checkpoint", "load_weights", "pack_prompt_embeddings", "read_checkpoint", "save_checkpoint",
           "sha256sum", "text_encoder_excluded", "verify_checksum"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "xpath.segmentation"
CHECKPOINT_VERSION = 1
_TEXT_PREFIX = "text_encoder.model."
PROMPT_EMBEDDINGS_KEY = "prompt_embeddings"
#: Where the package ships trained weights (``xpath/segmentation/weights/``).
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, of another format or version, or does not match its model."""


def sha256sum(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, expected: str) -> Path:
    """Check ``path`` against its expected SHA-256 hex digest.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CheckpointError
        The digest differs (the file is corrupt, truncated or another version).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    actual = sha256sum(path)
    if actual.lower() != expected.strip().lower():
        raise CheckpointError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual} "
                              "(the file is corrupt, truncated or a different version)")
    return path


def default_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint of model ``name``, checked against its SHA-256, or ``None``.

    Looks for ``{name}.pt`` (with ``{name}.pt.sha256`` beside it) in ``$XPATH_WEIGHTS``
    first, then in the package's ``weights/`` folder. A file whose digest differs from its
    ``.sha256`` raises :class:`~xpath.segmentation.CheckpointError`.
    """
    folders = [Path(os.environ["XPATH_WEIGHTS"])] if os.environ.get("XPATH_WEIGHTS") else []
    for folder in [*folders, WEIGHTS_DIR]:
        path = folder / f"{name}.pt"
        digest = path.with_name(path.name + ".sha256")
        if path.is_file():
            if not digest.is_file():
                raise FileNotFoundError(f"{path} has no checksum file {digest.name} beside it")
            return verify_checksum(path, digest.read_text().split()[0])
    return None


def _excluded_prefixes(model) -> list[str]:
    return [_TEXT_PREFIX] if getattr(model.text_encoder, "reloadable", False) else []


def save_checkpoint(model, path: str | os.PathLike, *, extra: dict | None = None,
                    half_precision: bool = False) -> Path:
    """Write ``model`` (config, vocabulary, preprocessing, weights) to ``path`` atomically.

    Parameters
    ----------
    model : TextPromptSegmenter
    path : str or PathLike
        Destination; its folder must exist.
    extra : dict, optional
        Anything else ``torch.load(weights_only=True)`` can read back (tensors, numbers,
        strings, lists, dicts), e.g. the training step.
    half_precision : bool
        Store floating-point tensors as float16 (half the file size; for shipping weights —
        loading casts them back to the model's float32). Not for training state.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of checkpoint path does not exist: {path.parent}")
    cfg = model.config
    excluded = _excluded_prefixes(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if not any(k.startswith(p) for p in excluded)}
    if half_precision:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": cfg.to_dict(),
        "vocabulary": list(cfg.vocabulary),
        "preprocessing": {"mean": list(cfg.mean), "std": list(cfg.std), "mpp": float(cfg.mpp),
                          "image_size": int(cfg.image_size)},
        "state_dict": state,
        "excluded_prefixes": excluded,
        "extra": dict(extra or {}),
    }
    record = getattr(model, "trained_vocabulary", None)
    if record is not None:
        payload["trained_vocabulary"] = record.to_dict()
    with atomic_path(path, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    logger.info("saved checkpoint of %s to %s (%d tensors)", cfg.name, path, len(state))
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate the raw checkpoint dict (no model is built).

    ``path`` is a checkpoint file, or a training run's checkpoint folder (``checkpoints/step_…``,
    what :meth:`~xpath.segmentation.training.Trainer.fit` returns), whose ``model.pt`` is read.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is a folder without ``model.pt``.
    CheckpointError
        Truncated/corrupt file, not an xpath segmentation checkpoint, or a newer format version.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise FileNotFoundError(f"checkpoint not found: {path} is a folder without model.pt")
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError/... on bad files
        raise CheckpointError(f"cannot read checkpoint {path} ({path.stat().st_size} bytes): the file is truncated, "
                              f"corrupt or not a torch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an xpath segmentation checkpoint (format "
                              f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this xpath reads versions "
                              f"≤ {CHECKPOINT_VERSION}")
    for key in ("config", "state_dict", "preprocessing", "vocabulary"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks the entry {key!r}")
    return payload


def text_encoder_excluded(payload: dict) -> bool:
    """Whether a checkpoint left its (frozen, pretrained) text encoder out, to be reloaded from its package."""
    return _TEXT_PREFIX in payload.get("excluded_prefixes", [])


def load_weights(model, payload: dict, path: str | os.PathLike) -> None:
    """Load a checkpoint's ``state_dict`` into ``model`` (built from its config) strictly, and seed its prompt cache.

    Raises
    ------
    CheckpointError
        Missing or unexpected keys, shape mismatches, or a malformed ``prompt_embeddings`` entry.
    """
    excluded = list(payload.get("excluded_prefixes", []))
    with model.text_encoder.deferred():  # the checks need no text weights: they are not in the file
        own = model.state_dict()
    expected = {k for k in own if not any(k.startswith(p) for p in excluded)}
    state = payload["state_dict"]
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match model {model.config.name!r}: {len(missing)} missing keys "
                              f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
             if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise CheckpointError(f"{path} does not match model {model.config.name!r}: shape mismatch {wrong[:5]}")
    result = model.load_state_dict(state, strict=False)
    leftover = [k for k in result.missing_keys if not any(k.startswith(p) for p in excluded)]
    if leftover or result.unexpected_keys:  # pragma: no cover - guarded above
        raise CheckpointError(f"{path}: strict load failed: missing {leftover}, unexpected {result.unexpected_keys}")
    if PROMPT_EMBEDDINGS_KEY in payload and _TEXT_PREFIX in excluded:
        _seed_prompt_cache(model.text_encoder, payload[PROMPT_EMBEDDINGS_KEY], path)


def pack_prompt_embeddings(encoder, texts: list[str]) -> dict:
    """Embed ``texts`` with a frozen ``encoder`` into the checkpoint's ``prompt_embeddings`` entry.

    Returns ``{"text_encoder": spec, "max_length": int, "texts": [N str], "lengths": (N,) int64,
    "tokens": (sum lengths, D) float32, "pooled": (N, D) float32}`` (tokens packed end to end).
    """
    texts = list(dict.fromkeys(texts))
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    encoder.clear_cache()  # embed with the weights, not with an earlier cache
    with torch.no_grad():
        toks, pooled = [], []
        for i in range(0, len(texts), 64):
            emb = encoder(texts[i:i + 64])
            for k in range(emb.tokens.shape[0]):
                toks.append(emb.tokens[k, emb.mask[k]].float().cpu())
                pooled.append(emb.pooled[k].float().cpu())
    return {"text_encoder": str(encoder.spec), "max_length": int(encoder.max_length), "texts": texts,
            "lengths": torch.tensor([t.shape[0] for t in toks], dtype=torch.int64),
            "tokens": torch.cat(toks).contiguous(), "pooled": torch.stack(pooled).contiguous()}


def _seed_prompt_cache(encoder, entry, path) -> None:
    """Put a checkpoint's ``prompt_embeddings`` into the text encoder's cache (checked against it)."""
    try:
        texts, lengths = list(entry["texts"]), entry["lengths"]
        tokens, pooled = entry["tokens"], entry["pooled"]
        spec, max_length = entry["text_encoder"], int(entry["max_length"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: malformed {PROMPT_EMBEDDINGS_KEY!r} entry ({err})") from err
    if spec != encoder.spec or max_length != encoder.max_length:
        logger.warning("%s: prompt embeddings were computed with text encoder %r (max_length %d), the model "
                       "has %r (max_length %d); ignoring them", path, spec, max_length, encoder.spec,
                       encoder.max_length)
        return
    if int(lengths.sum()) != tokens.shape[0] or len(lengths) != len(texts):
        raise CheckpointError(f"{path}: {PROMPT_EMBEDDINGS_KEY!r} has {len(texts)} texts, {len(lengths)} lengths "
                              f"and {tokens.shape[0]} token rows (expected {int(lengths.sum())})")
    try:
        encoder.add_cached(texts, list(torch.split(tokens, lengths.tolist())), pooled)
    except ValueError as err:
        raise CheckpointError(f"{path}: {PROMPT_EMBEDDINGS_KEY!r} does not match the text encoder: {err}") from err
