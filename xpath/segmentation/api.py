"""The one-call entry points: :func:`segment` an image, and :func:`load_model` from a name, a file or an object.

``segment`` validates everything cheap (the image, the prompts, and whether the model was
trained for them) before a model is built, then runs a
:class:`~xpath.segmentation.inference.predictor.TextPromptPredictor`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._device import resolve_device
from .._types import check_image, check_mpp
from .inference.precision import check_precision
from .inference.predictor import TextPromptPredictor, check_threshold
from .inference.regions import REGION_HOLE_UM2, REGION_MIN_UM2, check_region_sizes
from .inference.result import Segmentation
from .prompts import check_prompts
from .support import check_on_unsupported, require_supported

__all__ = ["load_model", "segment"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _named_model(name: str, device: str):
    from .modeling import build, checkpoint

    path = checkpoint.default_checkpoint(name)
    if path is None:
        logger.warning(
            "model %r has no trained checkpoint in this installation: its encoders are pretrained but its "
            "decoder is untrained, so masks and presence scores are not meaningful yet. Pass model= a "
            "checkpoint path or a trained model object.", name)
    return build.create_model(name, checkpoint=path, device=device)


def load_model(model: Any, device: Any = None):
    """A ready segmenter from a registered name (with its shipped weights), a checkpoint path or a model.

    This is how :func:`segment` reads its ``model=`` argument; named models are built once per
    process and device.
    """
    dev = resolve_device(device)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix in (".pt", ".pth", ".ckpt") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"model checkpoint {str(path)!r} does not exist")
            from .modeling.build import load_checkpoint

            return load_checkpoint(path, device=dev)
        return _named_model(str(model), str(dev))
    if hasattr(model, "encode_image") and hasattr(model, "decode"):
        if device is not None and hasattr(model, "to"):
            model = model.to(dev)
        return model
    raise TypeError(f"model must be a model name, a checkpoint path or a model object, got {type(model).__name__}")


def segment(
    image: Any,
    prompts: Sequence[str] | str,
    *,
    model: Any = "xpath_small",
    mpp: float | None = None,
    threshold: float = 0.5,
    instances: bool | str = "auto",
    device: Any = None,
    batch_size: int = 4,
    progress: bool = True,
    boxes: Any = None,
    points: Any = None,
    return_probabilities: bool = False,
    allow_grayscale: bool = False,
    min_area_um2: float = 10.0,
    region_min_um2: float = REGION_MIN_UM2,
    region_hole_um2: float = REGION_HOLE_UM2,
    presence_threshold: float | None = None,
    on_unsupported: str = "raise",
    precision: str = "float32",
    test_time_flips: bool = False,
) -> Segmentation:
    """Segment what the prompts name in an image, in one call.

    Parameters
    ----------
    image : numpy.ndarray or xpath.Image
        ``(H, W, 3)`` uint8 RGB, any size: large images are tiled with overlap and blended,
        with memory bounded by the tile size.
    prompts : list of str
        E.g. ``["nuclei", "lymphocytes", "stroma"]`` or canonical
        ``"nuclei-level epithelial in colon pathology"``.
    model : str, path or model
        A registered name (``"xpath_small"``, ``"xpath_tiny"``, ...), a checkpoint file, or a
        model object.
    mpp : float, optional
        µm per pixel of ``image``; the image is resized to the model's resolution when they
        differ and the results mapped back. ``None``: taken to be at the model's resolution
        (with a warning), unless ``image`` is an :class:`xpath.Image` that knows its ``mpp``.
    threshold : float
        Probability threshold of the semantic masks.
    instances : {"auto", True, False}
        Instance label maps for nuclei/cell-level prompts (``"auto"``), all, or none.
    device : str or torch.device, optional
        ``None`` picks CUDA, then MPS, then CPU.
    batch_size : int
        Tiles per forward pass.
    progress : bool
        Show a progress bar over tiles.
    boxes, points : array-like, optional
        Spatial prompts per prompt, see :meth:`TextPromptPredictor.predict`.
    return_probabilities : bool
        Also return ``float16`` probability maps.
    allow_grayscale : bool
        Accept single-channel images (replicated to RGB).
    min_area_um2 : float
        Instances smaller than this (µm²) are removed.
    region_min_um2, region_hole_um2 : float
        Tissue-level masks lose their components smaller than ``region_min_um2`` µm², and glands their
        enclosed holes smaller than ``region_hole_um2`` µm² (:mod:`~xpath.segmentation.inference.regions`);
        0 turns either off.
    presence_threshold : float, optional
        Prompts whose presence score is below this get an empty mask and no instances ("not in
        this image"); ``None`` (default) keeps every mask.
    on_unsupported : {"raise", "empty", "nearest"}
        Prompts the model was not trained for (see :func:`~xpath.segmentation.supported_prompts`):
        raise :class:`~xpath.segmentation.support.UnsupportedPromptError` before the model is
        loaded or the image encoded, return an empty mask (presence NaN, status
        ``"unsupported"``), or use the nearest supported label with a warning.
    precision : {"float32", "auto", "bfloat16"}
        Arithmetic of the model (:mod:`~xpath.segmentation.inference.precision`): float32 by default;
        ``"auto"`` is bfloat16 where the device computes it natively (AMX CPUs, recent GPUs), float32
        elsewhere.
    test_time_flips : bool
        Average each tile's answer over its four mirrored views (:class:`TextPromptPredictor`): 4× the compute,
        for the accuracy measured in docs/model_card.md.

    Returns
    -------
    Segmentation
        ``semantic[prompt]`` (bool H×W), ``instances[prompt]`` (int32 H×W, nuclei/cell
        prompts), ``presence[prompt]`` (float in [0, 1]), ``classes`` table, ``plot()``.

    Raises
    ------
    UnsupportedPromptError
        A prompt the model was not trained for (``on_unsupported="raise"``), a ``ValueError``.
    ValueError
        Empty prompt list or prompt, grayscale image without ``allow_grayscale``, empty
        image, NaN or out-of-range floats, ``mpp <= 0``, ``threshold`` outside (0, 1).
    TypeError
        Prompts that are not strings, images of an unsupported dtype.

    Examples
    --------
    >>> from xpath.datasets import sample_he  # doctest: +SKIP
    >>> seg = segment(sample_he(), ["nuclei", "stroma"], mpp=0.5)  # doctest: +SKIP
    >>> seg.classes[["prompt", "presence", "n_instances"]]  # doctest: +SKIP
    """
    # Validate everything cheap before a model is built.
    prompts = check_prompts(prompts)
    img = check_image(image, allow_grayscale=allow_grayscale)
    if mpp is None and getattr(image, "mpp", None) is not None and hasattr(image, "array"):
        mpp = image.mpp
    mpp = check_mpp(mpp, required=False)
    check_threshold(threshold)
    check_region_sizes(region_min_um2, region_hole_um2, ("region_min_um2", "region_hole_um2"))
    if instances not in ("auto", True, False):
        raise ValueError(f"instances must be 'auto', True or False, got {instances!r}")
    check_precision(precision)
    if check_on_unsupported(on_unsupported) == "raise":
        require_supported(prompts, model)  # refuse before the model is built
    net = load_model(model, device)
    predictor = TextPromptPredictor(net, batch_size=batch_size, cache_tiles=0, progress=progress,
                                    precision=precision, test_time_flips=test_time_flips)
    predictor.set_image(img, mpp=mpp)
    return predictor.predict(prompts, boxes=boxes, points=points, threshold=threshold, instances=instances,
                             return_probabilities=return_probabilities, min_area_um2=min_area_um2,
                             region_min_um2=region_min_um2, region_hole_um2=region_hole_um2,
                             presence_threshold=presence_threshold, on_unsupported=on_unsupported)
