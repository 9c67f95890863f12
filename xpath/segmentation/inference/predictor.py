"""Inference: a SAM-style predictor that encodes an image once, and the one-call :func:`segment`.

:class:`TextPromptPredictor` cuts the image into the model's tiles (resized to the model's
µm/px first when ``mpp`` is given), encodes them once in :meth:`~TextPromptPredictor.set_image`
and decodes any number of prompts against the cached features in
:meth:`~TextPromptPredictor.predict`. Images with more tiles than ``cache_tiles`` are not cached:
their tiles are encoded while streaming through ``predict`` (one encoding per tile per call, memory
bounded by the tile size). Blending and the memory bound are described in
:mod:`xpath.segmentation.inference.tiling`, instances across tile borders in :mod:`~.stitching`.

``instances="auto"`` builds instance maps for nuclei- and cell-level prompts. The structure
of a prompt is decided, in order, by the paper's canonical template
``"{structure}-level {object} in {region} pathology"``, by the vocabulary's reading of its
words (object synonyms such as "lymphocytes" → inflammatory nuclei), by keywords
(``nuclei``, ``cells`` → instance-level; ``gland``, ``stroma``, ``tissue`` → tissue-level),
and last by :func:`xpath.segmentation.prompts.resolve_prompt` with the model's text encoder
(nearest known label by embedding similarity, when it is close enough).

Prompts are checked against the labels the model was trained on before anything is decoded
(:mod:`xpath.segmentation.support`): a prompt it was not trained for raises
:class:`~xpath.segmentation.support.UnsupportedPromptError` unless ``on_unsupported`` says
otherwise, and presence scores are calibrated with the checkpoint's presence calibration.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..._types import check_image, check_mpp
from ..prompts import check_prompts
from ..support import PromptPlan, model_vocabulary, plan_prompts
from .decoding import VIEWS, decode_tiles, mirror
from .nucleus_types import label_groups, plan_types, split_into, type_table, types_from_sums
from .objects import (
    SPATIAL_THRESHOLD,
    ObjectPrediction,
    check_object_prompts,
    check_spatial_prompts,
    decode_objects,
    paste_objects,
)
from .precision import inference_context, model_device, resolve_precision
from .regions import REGION_HOLE_UM2, REGION_MIN_UM2, check_region_sizes, clean_tissue_answers
from .result import Segmentation, classes_table, count_ids
from .stain import macenko_normalize
from .stitching import InstanceStitcher
from .tiling import Band, extract_tile, nearest_index, predict_tiled, resize_uint8, tile_batches, tile_starts

__all__ = ["TextPromptPredictor", "check_threshold"]

logger = logging.getLogger(__name__)

_MPP_TOLERANCE = 0.02  # relative mpp difference below which the image is not resized


class TextPromptPredictor:
    """Encode an image once, decode any number of text (and box/point) prompts against it.

    Parameters
    ----------
    model : TextPromptSegmenter
        A model from :func:`~xpath.segmentation.create_model` (anything with ``config``
        (``image_size``, ``mpp``, ``name``), ``preprocess``, ``encode_image``, ``decode``).
        It is put in eval mode.
    overlap : int, optional
        Minimum overlap between tiles in model pixels (default: 1/8 of the tile).
    batch_size : int
        Tiles encoded per forward pass.
    cache_tiles : int
        Cache the encoded features in :meth:`set_image` when the image has at most this
        many tiles; larger images are encoded tile by tile in every :meth:`predict`.
    max_object_um : float
        Largest object extent expected (µm); sets the context (margin) of the block-wise
        watershed that keeps objects crossing tile borders whole.
    panel_tiles : int or None
        Widest run of tile columns processed together (:func:`~xpath.segmentation.inference.tiling.plan_panels`):
        the working memory stays ``O(tile × panel_tiles × tile)`` however large the image, at
        the cost of re-running one tile column per panel seam (images wider than
        ``panel_tiles`` tiles only). ``None``: one panel as wide as the image.
    progress : bool
        Show tqdm progress bars.
    mpp : float, optional
        Resolution (µm/px) the model runs at; default the model's ``config.mpp``. E.g. 0.5
        runs a 0.25 µm/px model on 20× images without upsampling them (4× fewer tiles, at
        the accuracy cost given in docs/model_card.md).
    stain_normalization : {None, "macenko"}
        Remix each image's H&E to a reference before segmenting it
        (:func:`~xpath.segmentation.inference.stain.macenko_normalize`). Off by default: whether it helps
        is measured in docs/model_card.md.
    precision : {"float32", "auto", "bfloat16"}
        Arithmetic of the model's forward passes (:mod:`~xpath.segmentation.inference.precision`):
        float32 by default (every figure of the model card); ``"auto"`` is bfloat16 autocast where
        the device computes it natively (a CUDA GPU with bf16, a CPU with AMX-BF16) and float32
        elsewhere. The chosen one is ``self.autocast_dtype`` (``None`` for float32).
    test_time_flips : bool
        Decode every tile also mirrored left–right, upside down and both, and average the four answers
        (:mod:`~xpath.segmentation.inference.decoding`): 4× the compute of text prompts, for the accuracy
        measured in docs/model_card.md; :meth:`set_image` caches the features of all four views (4× the
        memory). Off by default; :meth:`predict_objects` is not affected.

    Examples
    --------
    >>> from xpath.segmentation import create_model  # doctest: +SKIP
    >>> predictor = TextPromptPredictor(create_model("xpath_tiny")).set_image(image, mpp=0.5)  # doctest: +SKIP
    >>> result = predictor.predict(["nuclei", "stroma"])  # doctest: +SKIP
    >>> result.semantic["stroma"].shape == image.shape[:2]  # doctest: +SKIP
    True
    """

    def __init__(self, model: Any, *, overlap: int | None = None, batch_size: int = 4, cache_tiles: int = 16,
                 max_object_um: float = 32.0, panel_tiles: int | None = 4, progress: bool = False,
                 mpp: float | None = None, stain_normalization: str | None = None, precision: str = "float32",
                 test_time_flips: bool = False) -> None:
        for attr in ("config", "preprocess", "encode_image", "decode"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a text-prompted segmenter (missing .{attr}), got {type(model).__name__}")
        self.model = model.eval() if hasattr(model, "eval") else model  # inference: no dropout
        self.tile = int(model.config.image_size)
        self.overlap = self.tile // 8 if overlap is None else int(overlap)
        if not 0 <= self.overlap < self.tile // 2:
            raise ValueError(f"overlap must be in [0, {self.tile // 2}) pixels, got {self.overlap}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_object_um <= 0:
            raise ValueError(f"max_object_um must be > 0, got {max_object_um}")
        if panel_tiles is not None and panel_tiles < 1:
            raise ValueError(f"panel_tiles must be >= 1 or None, got {panel_tiles}")
        if stain_normalization not in (None, "macenko"):
            raise ValueError(f"stain_normalization must be None or 'macenko', got {stain_normalization!r}")
        self.stain_normalization = stain_normalization
        self.views = VIEWS if test_time_flips else VIEWS[:1]  # the mirrored views each tile is decoded in
        self.device = model_device(model)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.batch_size, self.cache_tiles = int(batch_size), int(cache_tiles)
        self.max_object_um, self.progress = float(max_object_um), bool(progress)
        self.model_mpp = float(model.config.mpp) if mpp is None else check_mpp(mpp, name="mpp")
        self.tiles_encoded = 0  # tiles run through the image encoder so far (a throughput count)
        self.margin = math.ceil(self.max_object_um / self.model_mpp)  # instance context, model pixels
        self.panel_width = None if panel_tiles is None else int(panel_tiles) * self.tile
        # xpath's models can skip the masks of unselected candidates; other models keep their own decode()
        lean = "all_candidates" in inspect.signature(model.decode).parameters
        self._decode_options = {"all_candidates": False} if lean else {}
        self.reset_image()

    # ------------------------------------------------------------------ image
    def reset_image(self) -> None:
        """Forget the current image and its features."""
        self._image: np.ndarray | None = None
        self._work: np.ndarray | None = None
        self._mpp: float | None = None
        self._cache: dict[tuple, Any] | None = None

    @property
    def is_image_set(self) -> bool:
        return self._image is not None

    @property
    def work_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image at the model's resolution."""
        self._require_image()
        return tuple(self._work.shape[:2])

    def _require_image(self) -> None:
        if self._image is None:
            raise RuntimeError("no image is set: call set_image(image, mpp=...) before predict()")

    def set_image(self, image: Any, mpp: float | None = None, *, allow_grayscale: bool = False) -> TextPromptPredictor:
        """Set the image and encode it (features cached when it has ≤ ``cache_tiles`` tiles).

        Parameters
        ----------
        image : numpy.ndarray or xpath.Image
            ``(H, W, 3)`` uint8 RGB (other forms as :func:`xpath.check_image` accepts).
        mpp : float, optional
            µm per pixel of ``image``. When it differs from the model's ``config.mpp`` the
            image is resized to the model's resolution and results are mapped back. ``None``:
            the ``mpp`` of an :class:`xpath.Image`, else the image is taken to be at the
            model's resolution, with a warning.
        allow_grayscale : bool
            Accept single-channel images (replicated to RGB).

        Returns
        -------
        TextPromptPredictor
            ``self``.
        """
        if mpp is None and getattr(image, "mpp", None) is not None and hasattr(image, "array"):
            mpp = image.mpp
        img = check_image(image, allow_grayscale=allow_grayscale)
        mpp = check_mpp(mpp, required=False)
        if mpp is None:
            warnings.warn(f"no mpp given: the image is taken to be at the model's {self.model_mpp:g} µm/px; pass "
                          "mpp= (about 0.5 for 20×, 0.25 for 40×), the masks depend on the scale", stacklevel=2)
        self.reset_image()
        work = img
        if mpp is not None and abs(mpp / self.model_mpp - 1.0) > _MPP_TOLERANCE:
            scale = mpp / self.model_mpp
            size = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)))
            logger.debug("resizing image %s at %.3g µm/px to %s at the model's %.3g µm/px",
                        img.shape[:2], mpp, size, self.model_mpp)
            work = resize_uint8(img, size)
        if self.stain_normalization == "macenko":
            work = macenko_normalize(work)
        self._image, self._work, self._mpp = img, work, mpp
        n_tiles = len(tile_starts(work.shape[0], self.tile, self.overlap)) * len(
            tile_starts(work.shape[1], self.tile, self.overlap))
        if n_tiles <= self.cache_tiles:
            from tqdm.auto import tqdm

            self._cache = {}
            batches = tile_batches(work.shape[:2], self.tile, self.overlap, self.batch_size,
                                   panel_width=self.panel_width, halo=self.margin)
            for origins in tqdm(batches, desc="encode", unit="batch", disable=not self.progress):
                tiles = np.stack([extract_tile(work, y, x, self.tile) for y, x in origins])
                for view in self.views:
                    self._cache[(tuple(origins), view)] = self._encode(np.ascontiguousarray(mirror(tiles, view, 1)))
        else:
            logger.debug("image has %d tiles (> cache_tiles=%d): features are computed while predicting",
                        n_tiles, self.cache_tiles)
        return self

    def _inference(self):
        """The context of every forward pass: inference mode, in the predictor's precision."""
        return inference_context(self.autocast_dtype, self.device)

    def _encode(self, tiles: np.ndarray):
        self.tiles_encoded += len(tiles)
        with self._inference():
            return self.model.encode_image(self.model.preprocess(tiles))

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        prompts: Sequence[str] | str,
        *,
        boxes: Any = None,
        points: Any = None,
        threshold: float = 0.5,
        instances: bool | str = "auto",
        return_probabilities: bool = False,
        marker_threshold: float = 0.4,
        min_area_um2: float = 10.0,
        region_min_um2: float = REGION_MIN_UM2,
        region_hole_um2: float = REGION_HOLE_UM2,
        presence_threshold: float | None = None,
        on_unsupported: str = "raise",
    ) -> Segmentation:
        """Decode prompts against the current image.

        Parameters
        ----------
        prompts : list of str
            What to segment, free text or canonical (``"nuclei-level epithelial in colon pathology"``).
        boxes : array-like, optional
            ``(P, 4)`` xyxy boxes in input pixels, one per prompt, NaN rows where none.
        points : array-like, optional
            ``(P, K, 3)`` ``(x, y, label)`` points in input pixels (label 1 positive, 0
            negative), NaN where none.
        threshold : float
            Probability threshold of the semantic masks, in ``(0, 1)``.
        instances : {"auto", True, False}
            Instance maps for nuclei/cell-level prompts (``"auto"``), for all, or for none.
        return_probabilities : bool
            Also return ``float16`` probability maps.
        marker_threshold : float
            Watershed markers: ``distance > marker_threshold`` (see
            :func:`~xpath.segmentation.inference.postprocess.instances_from_maps`).
        min_area_um2 : float
            Instances smaller than this (µm²) are removed.
        region_min_um2, region_hole_um2 : float
            Tissue-level masks lose their components smaller than ``region_min_um2`` µm²; those of glands
            also have their enclosed holes (lumens) smaller than ``region_hole_um2`` µm² filled
            (:mod:`~xpath.segmentation.inference.regions`); 0 turns either off.
        presence_threshold : float, optional
            A prompt whose presence score is below this gets an empty mask and no instances:
            the model's answer is "not in this image" rather than a forced mask (its
            probabilities, when returned, are kept). ``None`` (default) keeps every mask: the
            shipped model's presence is calibrated for nuclei prompts, but a threshold of 0.5
            would empty many masks of present fine nucleus types (docs/model_card.md), so
            choose it for your own question.
        on_unsupported : {"raise", "empty", "nearest"}
            What a prompt the model was not trained for gets (:mod:`xpath.segmentation.support`):
            :class:`~xpath.segmentation.support.UnsupportedPromptError` before anything is
            decoded, an empty mask with presence NaN and status ``"unsupported"``, or the
            nearest supported label's mask with a warning naming it (status ``"nearest"``).

        Returns
        -------
        Segmentation

        Raises
        ------
        UnsupportedPromptError
            A prompt the model was not trained for, with ``on_unsupported="raise"``.
        """
        self._require_image()
        if presence_threshold is not None and not 0.0 <= presence_threshold <= 1.0:
            raise ValueError(f"presence_threshold must be in [0, 1] or None, got {presence_threshold}")
        prompts = check_prompts(prompts)
        check_threshold(threshold)
        check_region_sizes(region_min_um2, region_hole_um2, ("region_min_um2", "region_hole_um2"))
        boxes, points = check_spatial_prompts(boxes, points, len(prompts), self._image.shape[:2], self._work.shape[:2])
        if (boxes is not None or points is not None) and not getattr(self.model.config, "spatial_trained", True):
            warnings.warn("this model's box/point path is untrained: predict() ignores boxes and points and returns the "
                          "text masks (predict_objects() answers them)", stacklevel=2)
        plans, inst_idx = self._plan(prompts, instances, on_unsupported)
        typed, run_plans, run_inst, generic = plan_types(plans, inst_idx, self.model,
                                                         spatial=boxes is not None or points is not None)
        hw, ww = self._work.shape[:2]
        keys = [plan.prompt for plan in plans]  # outputs of the prompts asked (a hidden all-nuclei one has none)
        semantic = {p: np.zeros((hw, ww), bool) for p in keys}
        probs = {p: np.zeros((hw, ww), np.float16) for p in keys} if return_probabilities else {}
        inst_out = {keys[i]: np.zeros((hw, ww), np.int32) for i in inst_idx}
        presence, types = self._run_tiles(self._work, run_plans, run_inst, semantic, inst_out, probs, boxes=boxes,
                                          points=points, typed=typed, shared=generic, threshold=threshold,
                                          marker_threshold=marker_threshold, min_area_um2=min_area_um2)
        clean_tissue_answers(plans, semantic, inst_out, self.model_mpp, region_min_um2, region_hole_um2)
        presence = presence[: len(prompts)]
        if presence_threshold is not None:
            for k, p in enumerate(prompts):
                if presence[k] < presence_threshold:
                    semantic[p][:] = False
                    if p in inst_out:
                        inst_out[p][:] = 0
        return self._result(plans, semantic, inst_out, probs, presence, threshold, nucleus_types=types)

    def predict_objects(self, boxes: Any = None, points: Any = None, point_labels: Any = None,
                        prompt: str | None = None, *, threshold: float = SPATIAL_THRESHOLD) -> ObjectPrediction:
        """Segment one object per box, or per row of points, in one call (:mod:`xpath.segmentation.inference.objects`).

        Parameters
        ----------
        boxes : array-like, optional
            ``(N, 4)`` xyxy in input pixels (the project's box convention).
        points : array-like, optional
            ``(N, K, 2)`` ``(x, y)`` in input pixels.
        point_labels : array-like, optional
            ``(N, K)``: 1 = inside the object, 0 = outside (default all 1).
        prompt : str, optional
            Text: the prompted structure inside each box ("glands"); must be a supported prompt.
            Without it, the object in the box or under the points, whatever it is.
        threshold : float
            Probability threshold of the masks (lower than :meth:`predict`'s: the prompt bounds the object).

        Returns
        -------
        ObjectPrediction
            ``.masks`` ``(N, H, W)`` bool and ``.scores`` ``(N,)``, in input pixels.

        Examples
        --------
        >>> predictor.set_image(image, mpp=0.25)  # doctest: +SKIP
        >>> objects = predictor.predict_objects(boxes=[[10, 10, 40, 42], [100, 80, 130, 118]])  # doctest: +SKIP
        >>> objects.masks.shape  # doctest: +SKIP
        (2, 512, 512)
        """
        self._require_image()
        check_threshold(threshold)
        h, w = self._image.shape[:2]
        boxes, points = check_object_prompts(boxes, points, point_labels, (h, w))
        text = structure = None
        if prompt is not None:
            (plan,) = plan_prompts(check_prompts([prompt]), self.model, on_unsupported="raise")
            text, structure = plan.text, plan.structure
        hw, ww = self._work.shape[:2]
        f = np.array([ww / w, hw / h])
        work_boxes = None if boxes is None else boxes * np.tile(f, 2)
        work_points = None if points is None else np.concatenate([points[..., :2] * f, points[..., 2:]], -1)
        with self._inference():  # the object decoder runs on features encoded in this precision
            found, scores = decode_objects(self, work_boxes, work_points, text, structure=structure, threshold=threshold)
        return ObjectPrediction(paste_objects(found, (hw, ww), (h, w)), scores, prompt)

    def instance_prompts(self, prompts: Sequence[str] | str, instances: bool | str = "auto", *,
                         on_unsupported: str = "raise") -> list[str]:
        """The prompts that get instance maps (nuclei/cell-level ones for ``"auto"``)."""
        prompts = check_prompts(prompts)
        return [prompts[i] for i in self._plan(prompts, instances, on_unsupported)[1]]

    def nucleus_type_prompts(self, prompts: Sequence[str] | str, instances: bool | str = "auto", *,
                             on_unsupported: str = "raise") -> dict[str, str | None]:
        """The nucleus-type prompts among ``prompts`` (without boxes or points), each with the prompt whose
        instance map they split (:mod:`~xpath.segmentation.inference.nucleus_types`): the all-nuclei prompt
        asked, or ``None`` when it is a hidden one. Their instances are nuclei of that map: same ids, same
        pixels."""
        prompts = check_prompts(prompts)
        plans, inst_idx = self._plan(prompts, instances, on_unsupported)
        typed, _, _, generic = plan_types(plans, inst_idx, self.model)
        shared = prompts[generic] if generic is not None and generic < len(prompts) else None
        return {prompts[k]: shared for k in typed}

    def predict_source(self, source: Any, prompts: Sequence[str] | str, *, out: dict, keep: Any = None,
                       threshold: float = 0.5, instances: bool | str = "auto", marker_threshold: float = 0.4,
                       min_area_um2: float = 10.0, region_min_um2: float = REGION_MIN_UM2,
                       region_hole_um2: float = REGION_HOLE_UM2, read_ahead: int = 2,
                       on_unsupported: str = "raise") -> dict[str, float]:
        """Segment an image read on demand (a whole slide) at ``model_mpp``, into arrays you give.

        Nothing of the image's size is allocated here; tiles are read in a background thread
        (``read_ahead`` batches ahead) while the model runs, and tiles that ``keep(y, x)``
        rejects are neither read nor encoded (their pixels get no mask and no objects).

        ``source``: ``shape`` ``(H, W, 3)`` and ``tiles(origins, tile) -> (B, tile, tile, 3)``
        uint8 (see :func:`~xpath.segmentation.inference.tiling.predict_tiled`). ``out``: per prompt an
        ``(H, W)`` array of zeros (e.g. memory-mapped), ``int32`` ids for the
        :meth:`instance_prompts`, a bool or uint8 mask for the others. The other options are
        those of :meth:`predict`; nucleus-type prompts share one instance map as in :meth:`predict` (one
        watershed for all of them; their arrays hold their nuclei, with the ids of that map). Returns the
        calibrated presence per prompt: of the maximum over the tiles run (0 when none ran); NaN for an
        unsupported prompt answered empty.
        """
        prompts = check_prompts(prompts)
        check_threshold(threshold)
        check_region_sizes(region_min_um2, region_hole_um2, ("region_min_um2", "region_hole_um2"))
        plans, inst_idx = self._plan(prompts, instances, on_unsupported)
        shape = tuple(source.shape[:2])
        for k, p in enumerate(prompts):
            arr, inst = out.get(p), k in inst_idx
            if arr is None or tuple(arr.shape) != shape or inst != (arr.dtype == np.int32):
                raise ValueError(f"out[{p!r}] must be a {shape} {'int32' if inst else 'bool or uint8'} array, got "
                                 f"{None if arr is None else (tuple(arr.shape), str(arr.dtype))}")
        typed, run_plans, run_inst, generic = plan_types(plans, inst_idx, self.model)
        semantic = {p: out[p] for p in prompts if out[p].dtype != np.int32}
        inst_out = {prompts[i]: out[prompts[i]] for i in inst_idx}
        presence, _ = self._run_tiles(source, run_plans, run_inst, semantic, inst_out, {}, keep=keep,
                                      read_ahead=read_ahead, typed=typed, shared=generic, threshold=threshold,
                                      marker_threshold=marker_threshold, min_area_um2=min_area_um2)
        clean_tissue_answers(plans, semantic, inst_out, self.model_mpp, region_min_um2, region_hole_um2)
        return {p: float(presence[k]) for k, p in enumerate(prompts)}

    def _plan(self, prompts: list[str], instances: bool | str, on_unsupported: str) -> tuple[list, list[int]]:
        """How each prompt is answered (:func:`~xpath.segmentation.support.plan_prompts`, which refuses
        unsupported prompts when asked) and the indices of the instance prompts."""
        if instances not in ("auto", True, False):
            raise ValueError(f"instances must be 'auto', True or False, got {instances!r}")
        plans = plan_prompts(prompts, self.model, on_unsupported=on_unsupported)
        if instances == "auto":
            return plans, [i for i, p in enumerate(plans) if p.structure in ("nuclei", "cell")]
        return plans, list(range(len(plans))) if instances else []

    def _run_tiles(self, image, plans: list[PromptPlan], inst_idx: list[int], semantic, inst_out, probs, *,
                   boxes=None, points=None, keep=None, read_ahead=0, typed=(), shared=None, threshold,
                   marker_threshold, min_area_um2) -> tuple[np.ndarray, pd.DataFrame | None]:
        """Decode the planned prompts over the tiles of ``image`` into ``semantic`` / ``probs`` / ``inst_out``.

        ``typed``: plan indices of nucleus-type prompts, which split the instances of the plan ``shared``
        (:mod:`~xpath.segmentation.inference.nucleus_types`); the outputs are keyed by prompt and exist only
        for the prompts asked (not for a hidden all-nuclei plan). Returns the calibrated presence ``(P,)``
        (NaN for prompts that are not decoded (unsupported, answered empty), whose outputs stay zero) and the
        :func:`~xpath.segmentation.inference.nucleus_types.type_table` (``None`` without type prompts).
        """
        decoded = [k for k, p in enumerate(plans) if p.text is not None]
        local = {k: j for j, k in enumerate(decoded)}
        presence = np.full(len(plans), np.nan)
        types = None
        if decoded:
            presence[decoded], types = self._blend(
                image, [plans[k].prompt for k in decoded], [plans[k].text for k in decoded],
                [local[k] for k in inst_idx if k in local], semantic, inst_out, probs,
                typed=[local[k] for k in typed], type_groups=label_groups([plans[k].label for k in typed]),
                shared=None if shared is None else local[shared],
                boxes=None if boxes is None else boxes[decoded], points=None if points is None else points[decoded],
                keep=keep, read_ahead=read_ahead, threshold=threshold, marker_threshold=marker_threshold,
                min_area_um2=min_area_um2)
        record = model_vocabulary(self.model)
        if record is not None:
            presence = np.array([record.calibrate(float(v), p.structure) for v, p in zip(presence, plans)])
        return presence, types

    def _blend(self, image, prompts, texts, inst_idx, semantic, inst_out, probs, *, typed, type_groups, shared,
               boxes, points, keep, read_ahead, threshold, marker_threshold,
               min_area_um2) -> tuple[np.ndarray, pd.DataFrame | None]:
        """Blend the tiles' maps of ``texts`` into the outputs keyed by ``prompts``; raw presence (P,) and the
        type table.

        Every instance prompt but the nucleus types ``typed`` gets its own watershed; the types get none: the
        stitcher of ``shared`` sums their probabilities over each of its nuclei (rounded to float16, the
        precision of the probability maps predict() returns) and each nucleus goes to the type it votes for,
        ids kept; ``type_groups`` (:func:`~xpath.segmentation.inference.nucleus_types.label_groups`) makes the
        prompts of one label one type.
        """
        n_p = len(prompts)
        stitched = [i for i in inst_idx if i not in set(typed)]  # prompts with a watershed (distance channel)
        into = {i: inst_out[prompts[i]] for i in stitched if prompts[i] in inst_out}
        if typed and shared not in into:  # a hidden all-nuclei prompt: its map is built in the first type's
            into[shared] = inst_out[prompts[typed[0]]]
        strip = max(self.tile, 2 * self.margin)
        # blocks twice as wide as the strip is tall: the watershed runs on (strip + 2·margin) × (block + 2·margin)
        # for a strip × block core, 1.88× the core's area instead of 2.25× (tile 512, margin 128; the stitch of the
        # sample slide 2.3 s against 2.7 s); the row buffer, (strip + 2·margin) rows, is unchanged
        stitchers = {i: InstanceStitcher(into[i], strip=strip, block=2 * strip, margin=self.margin,
                                         n_sums=len(typed) if i == shared else 0, sum_dtype=np.float16,
                                         threshold=threshold,
                                         marker_threshold=marker_threshold, min_area_um2=min_area_um2,
                                         mpp=self.model_mpp) for i in stitched if i in into}
        channel = {i: n_p + j for j, i in enumerate(stitched)}  # prompt -> its distance channel
        derived = {prompts[i] for i in typed}  # masks set from the split, not from the blend

        def on_band(band: Band) -> None:
            rows, cols = slice(band.y, band.y + band.data.shape[1]), slice(*band.core)
            core = band.core_data()
            for k, p in enumerate(prompts):
                if p in semantic and p not in derived:
                    semantic[p][rows, cols] = core[k] > threshold
                if p in probs:
                    probs[p][rows, cols] = core[k]
            for i, st in stitchers.items():
                sums = band.data[typed] if i == shared else None
                st.push(band.y, band.data[i], band.data[channel[i]], x=band.x, core=band.core, sums=sums)

        fn = functools.partial(decode_tiles, self, prompts=texts, inst_idx=stitched, boxes=boxes, points=points,
                               cached=image is self._work)  # features cached by set_image are of _work only
        presence = predict_tiled(image, fn, tile=self.tile, overlap=self.overlap, n_maps=n_p + len(stitched),
                                 on_band=on_band, batch_size=self.batch_size, panel_width=self.panel_width,
                                 halo=self.margin, keep=keep, read_ahead=read_ahead, progress=self.progress,
                                 desc="segment")
        for st in stitchers.values():
            st.finish()
        table = None
        if typed:
            names = [prompts[i] for i in typed]
            types, mean = types_from_sums(stitchers[shared].area, stitchers[shared].sums, threshold=threshold,
                                          groups=type_groups)
            split_into(into[shared], [inst_out[p] for p in names], types, groups=type_groups,
                       masks=[semantic.get(p) for p in names])
            table = type_table(types, mean, names)
        return np.zeros(n_p) if presence is None else np.asarray(presence, np.float64), table

    def _result(self, plans, semantic, inst_out, probs, presence, threshold, *,
                nucleus_types: pd.DataFrame | None = None) -> Segmentation:
        h, w = self._image.shape[:2]
        if self._work.shape[:2] != (h, w):  # back to the input resolution (nearest neighbour)
            ri = nearest_index(h, self._work.shape[0])[:, None]
            ci = nearest_index(w, self._work.shape[1])[None, :]
            semantic = {p: m[ri, ci] for p, m in semantic.items()}
            inst_out = {p: m[ri, ci] for p, m in inst_out.items()}
            probs = {p: m[ri, ci] for p, m in probs.items()}
        rows = []
        pres = {}
        for k, plan in enumerate(plans):
            p = plan.prompt
            pres[p] = float(presence[k])
            n_inst = count_ids(inst_out[p]) if p in inst_out else None
            rows.append({"prompt": p, "label": plan.label, "structure": plan.structure, "status": plan.status,
                         "presence": pres[p], "n_instances": pd.NA if n_inst is None else n_inst,
                         "area_fraction": float(semantic[p].mean())})
        return Segmentation(
            prompts=tuple(p.prompt for p in plans), semantic=semantic, instances=inst_out, presence=pres,
            classes=classes_table(rows), image_shape=(h, w), probabilities=probs,
            mpp=self._mpp if self._mpp is not None else self.model_mpp, threshold=threshold,
            model=str(getattr(self.model.config, "name", type(self.model).__name__)), image=self._image,
            nucleus_types=nucleus_types,
        )


def check_threshold(threshold: float) -> None:
    """Raise unless the mask threshold is a probability strictly between 0 and 1."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
