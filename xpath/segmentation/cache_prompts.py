"""Store a checkpoint's prompt embeddings in the file, so inference need not load the text encoder.

A checkpoint leaves its frozen pretrained text encoder out and reloads it (a few seconds
on a CPU) when a prompt must be embedded. This writes, under the checkpoint's
``prompt_embeddings`` entry, the encoder's token and pooled embeddings of the prompts the
model was trained on — each label's canonical prompt and the region-less paraphrases the
training drew (``"lymphocytes"``, ``"all nuclei"``, see
:func:`~xpath.segmentation.training.dataset.prompt_variants`) — plus :data:`COMMON_PROMPTS`. The
paraphrases that name a region (``"lymphocytes in colon"``) would add 7 MB for prompts
that are rarely typed; they load the encoder.
Everything else in the file (weights, config, ``extra``) is kept as it is. Run::

    python -m xpath.segmentation.cache_prompts xpath/segmentation/weights/xpath_small.pt

which also rewrites the ``.sha256`` beside the file. The result is the same on every run
(sorted texts, CPU float32), so it can be re-applied after the file changed otherwise.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..io import atomic_path
from .modeling.checkpoint import (
    PROMPT_EMBEDDINGS_KEY,
    pack_prompt_embeddings,
    read_checkpoint,
    sha256sum,
    text_encoder_excluded,
)

__all__ = ["COMMON_PROMPTS", "cache_prompt_embeddings", "trained_prompts"]

#: Free-text prompts of the documentation and examples that are not paraphrases of a label.
COMMON_PROMPTS = (
    "nuclei", "nucleus", "cells", "tumor nuclei", "tumour nuclei", "tumor cells", "tumour cells",
    "inflammatory nuclei", "immune cells", "lymphocytes", "epithelial nuclei", "stromal nuclei",
    "stroma", "glands", "gland", "tumor", "tumour", "necrosis", "mitoses", "mitotic figures",
)


def trained_prompts(vocabulary) -> list[str]:
    """Canonical prompts of ``vocabulary`` (label prompt texts), their region-less paraphrases and :data:`COMMON_PROMPTS`, sorted."""
    from ..ontology import load_vocabulary
    from .training.dataset import prompt_variants

    vocab = load_vocabulary()
    texts = set(COMMON_PROMPTS)
    for prompt in vocabulary:
        texts.add(prompt)
        label = vocab.lookup(prompt)
        if label is not None:
            every, regional = prompt_variants(label)
            texts.update(set(every) - set(regional))
    return sorted(texts)


def cache_prompt_embeddings(path: str | os.PathLike, *, texts=None) -> Path:
    """Write the ``prompt_embeddings`` entry of checkpoint ``path`` in place (atomically), and its ``.sha256``.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint whose text encoder is frozen and left out of the file.
    texts : sequence of str, optional
        Prompts to embed; default :func:`trained_prompts` of the checkpoint's vocabulary.

    Returns
    -------
    pathlib.Path
    """
    from .modeling.config import SegmenterConfig
    from .modeling.text_encoder import HFTextEncoder

    path = Path(path)
    payload = read_checkpoint(path)
    if not text_encoder_excluded(payload):
        raise ValueError(f"{path}: its text encoder is stored in the file (not frozen and reloaded); "
                         "prompt embeddings are cached only for a frozen, reloaded encoder")
    config = SegmenterConfig.from_dict(payload["config"])
    encoder = HFTextEncoder(config.text_encoder, frozen=True)
    texts = trained_prompts(payload["vocabulary"]) if texts is None else list(texts)
    payload[PROMPT_EMBEDDINGS_KEY] = pack_prompt_embeddings(encoder, texts)
    with atomic_path(path, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    digest = path.with_name(path.name + ".sha256")
    if digest.exists():
        with atomic_path(digest, suffix=".tmp") as tmp:
            Path(tmp).write_text(f"{sha256sum(path)}  {path.name}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint file to update in place")
    args = parser.parse_args(argv)
    path = cache_prompt_embeddings(args.checkpoint)
    entry = read_checkpoint(path)[PROMPT_EMBEDDINGS_KEY]
    print(f"{path}: {len(entry['texts'])} prompt embeddings; sha256 {sha256sum(path)}; "
          f"{path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
