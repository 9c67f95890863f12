"""Training configuration (YAML ↔ dataclasses) and the train/validation split of each source.

Plain dataclasses over numpy and PyYAML: reading a config does not import torch.

A config file has five sections; every key is optional except ``model`` and
``data.sources`` (see ``configs/xpath_tiny_cpu.yaml`` for a complete example)::

    model: xpath_tiny            # a registered name, or "package.module:factory"
    init_checkpoint: null        # start from these weights (a checkpoint of the model)
    mpp: null                    # working µm/px of the run; null keeps the model's (a fine-tune may change it)
    seed: 0
    out_dir: runs/xpath_tiny
    data:   {sources: [...], prompts_per_image: 4, max_negatives: 1, balance: label, augment: {...}, ...}
    optim:  {lr: 8.0e-4, weight_decay: 0.05, warmup_steps: 50, batch_size: 4, accumulate: 1, grad_clip: 1.0}
    train:  {steps: 1000, val_every: 200, ckpt_every: 200, log_every: 10, amp: auto, compile: false}

``distill: {checkpoint: PATH, weight: 1.0, structures: [nuclei]}`` (optional) holds the prompts of
those structures near a frozen teacher's output while the rest learns
(:mod:`~xpath.segmentation.training.distill`).

A source is ``{dataset: NAME, split: S, limit: N, include: REGEX, exclude: REGEX, val: RULE}``
(``NAME`` one of :data:`xpath.datasets.DATASETS`) or ``{synthetic: {count: N, size: PX, mpp: M}, val: RULE}``.
``RULE`` decides which images go to validation (never trained on):

- ``{split: test}``: the images of that split of the source;
- ``{group: REGEX, fraction: F}``: images are grouped by the first capture group of
  ``REGEX`` on the image id (e.g. CoNSeP's source image ``"^train_(\\d+)_"``); a fraction
  ``F`` of the groups, evenly spaced in sorted order, go to validation — a group never
  straddles the split;
- ``all``: the whole source; ``none`` (default): none of it.

``weight: W`` (default 1) multiplies the sampling weight of a dataset source's training tiles
after ``data.balance`` (e.g. ``0.5`` halves how often its tiles are drawn against the other
sources of the same label).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "DistillConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "load_config",
    "source_weights",
    "split_validation",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation.

    Attributes
    ----------
    scale : (float, float)
        Range of the random zoom (PathSeg: 0.9–1.1); the crop window is ``tile / s``.
    shift : float
        Crop-centre jitter as a fraction of the tile side (uniform, each axis).
    flips : bool
        Random 90° rotations and left–right flip (8 symmetries).
    stain_sigma, stain_bias : float
        H&E optical-density jitter (see :func:`~xpath.segmentation.training.augment.stain_jitter`).
    brightness : float
        Additive brightness jitter in [0, 1] units.
    blur_prob : float
        Probability that a tile is blurred (:func:`~xpath.segmentation.training.augment.gaussian_blur`),
        with a sigma drawn from ``blur_sigma`` pixels: out-of-focus scans, and images
        upsampled from a coarser pixel size (EBHI-Seg at 1 µm/px is upsampled 4× to
        0.25 µm/px), should not be told apart from the other sources by sharpness alone.
    blur_sigma : (float, float)
        Range of the blur's sigma in pixels.
    hue, saturation, contrast, gamma : float
        Colour jitter strengths (:func:`~xpath.segmentation.training.augment.colour_jitter`), applied
        to every tile after the stain jitter; 0 disables each.
    grey_prob, haematoxylin_prob : float
        Probability that a tile is turned grey, or reduced to its haematoxylin channel: the model
        must find nuclei by shape and texture when the eosin or the colour is unlike training.
    noise_sigma : float
        Gaussian noise of ``U(0, noise_sigma)`` ([0, 1] units) on every tile.
    jpeg_prob : float
        Probability that a tile is JPEG-compressed at a quality drawn from ``jpeg_quality``.
    jpeg_quality : (int, int)
        Range of that quality.
    spatial_prob : float
        Probability that a present label's prompt becomes a spatial prompt: a box or points on one of
        its objects, drawn from the ground truth (:mod:`~xpath.segmentation.training.spatial`), whose
        target is that object alone.
    spatial_text_prob : float
        Probability that a spatial prompt keeps its label's text (else it is
        :data:`~xpath.segmentation.modeling.segmenter.OBJECT_PROMPT`: a box with no text).
    spatial_points_prob : float
        Probability that a spatial prompt is points rather than a box.
    spatial_region_prob : float
        Probability that a spatial prompt with text is a region box over several objects.
    synonym_prob : float
        Probability that a prompt is replaced by a paraphrase built from the synonyms of
        ``xpath/vocabulary.json`` (:func:`~xpath.segmentation.training.dataset.prompt_variants`), so that free text such as
        "lymphocytes" or "immune cells in colon" lands where "nuclei-level inflammatory in
        colon pathology" does. Negative prompts only take paraphrases that keep their region.
    """

    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.125
    flips: bool = True
    stain_sigma: float = 0.05
    stain_bias: float = 0.02
    brightness: float = 0.03
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    hue: float = 0.0
    saturation: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    grey_prob: float = 0.0
    haematoxylin_prob: float = 0.0
    noise_sigma: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (50, 95)
    spatial_prob: float = 0.0
    spatial_text_prob: float = 0.5
    spatial_points_prob: float = 0.4
    spatial_region_prob: float = 0.2
    synonym_prob: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section: sources, prompts, sampling, augmentation."""

    sources: tuple = ()
    tile_size: int | None = None  # default: the model's image_size
    prompts_per_image: int = 4
    max_negatives: int = 1
    val_prompts_per_image: int | None = None  # default: enough for every label + negatives
    min_overlap: int | None = None
    min_area: int = 10
    balance: str = "label"
    balance_power: float = 1.0
    assume_mpp: dict = field(default_factory=dict)
    vocabulary: tuple = ()
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    num_workers: int = 0
    val_max_tiles: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    """The ``optim`` section: AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 8e-4
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    batch_size: int = 4  # images per rank per micro-step
    accumulate: int = 1  # micro-steps per optimizer step


@dataclass(frozen=True)
class RunConfig:
    """The ``train`` section: length, cadence, precision, compilation, device."""

    steps: int = 100  # the schedule's length (``--max-steps`` may stop earlier)
    val_every: int = 0  # 0: only at the end
    ckpt_every: int = 0  # 0: only at the end
    log_every: int = 10
    keep_checkpoints: int = 2
    amp: str = "auto"  # auto = bf16 autocast on CUDA, off elsewhere; "bf16" (CUDA) | "off"
    compile: bool = False
    device: str | None = None
    find_unused_parameters: bool = True  # the spatial-prompt encoder gets no gradient in text-only batches


@dataclass(frozen=True)
class DistillConfig:
    """The ``distill`` section: a frozen teacher whose output the prompts of ``structures`` are held to."""

    checkpoint: str
    weight: float = 1.0
    structures: tuple = ("nuclei",)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (see the module docstring for the YAML layout)."""

    model: str
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    seed: int = 0
    out_dir: str = "runs/segmentation"
    init_checkpoint: str | None = None
    mpp: float | None = None
    distill: DistillConfig | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """Build from a parsed YAML mapping; unknown keys are an error naming the section."""
        if not isinstance(raw, dict):
            raise TypeError(f"config must be a mapping, got {type(raw).__name__}")
        raw = dict(raw)
        data = dict(raw.pop("data", None) or {})
        if "augment" in data:
            aug = data["augment"]
            data["augment"] = None if aug in (None, False) else _make(AugmentConfig, aug, "data.augment")
        if "sources" in data:
            data["sources"] = tuple(_check_source(s, i) for i, s in enumerate(data["sources"]))
        if "vocabulary" in data:
            data["vocabulary"] = tuple(data["vocabulary"])
        if not data.get("sources"):
            raise ValueError("config data.sources must list at least one source")
        top = {k: raw.pop(k) for k in list(raw) if k in ("model", "seed", "out_dir", "init_checkpoint", "mpp")}
        if "model" not in top:
            raise ValueError("config needs a 'model' (a registered name such as 'xpath_tiny')")
        optim = _make(OptimConfig, raw.pop("optim", None) or {}, "optim")
        run = _make(RunConfig, raw.pop("train", None) or {}, "train")
        distill = raw.pop("distill", None)
        if distill is not None:
            if not isinstance(distill, dict) or "checkpoint" not in distill:
                raise ValueError(f"config distill must be a mapping with a 'checkpoint', got {distill!r}")
            distill = _make(DistillConfig, distill, "distill")
        if raw:
            raise ValueError(f"unknown config keys {sorted(raw)}; expected model, seed, out_dir, init_checkpoint, "
                             "mpp, data, optim, train, distill")
        cfg = cls(data=_make(DataConfig, data, "data"), optim=optim, train=run, distill=distill, **top)
        _validate(cfg)
        return cfg


def _make(cls, values: dict, section: str):
    if not isinstance(values, dict):
        raise TypeError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in config section {section!r}; known: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


_SOURCE_KEYS = {"dataset", "synthetic", "split", "limit", "include", "exclude", "val", "region", "pseudo_nuclei",
                "weight"}


def _check_source(src: Any, i: int) -> dict:
    if not isinstance(src, dict) or ("dataset" in src) == ("synthetic" in src):
        raise ValueError(f"data.sources[{i}] must be a mapping with exactly one of 'dataset' or 'synthetic', "
                         f"got {src!r}")
    unknown = sorted(set(src) - _SOURCE_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in data.sources[{i}]; known: {sorted(_SOURCE_KEYS)}")
    rule = src.get("val", "none")
    if not (rule in ("all", "none", None) or (isinstance(rule, dict) and (set(rule) == {"split"} or
                                                                        set(rule) == {"group", "fraction"}))):
        raise ValueError(f"data.sources[{i}].val must be 'all', 'none', {{split: S}} or {{group: REGEX, fraction: F}}, "
                         f"got {rule!r}")
    pseudo = src.get("pseudo_nuclei", False)
    model_made = isinstance(pseudo, dict) and set(pseudo) == {"labels"} and isinstance(pseudo["labels"], str)
    if not (isinstance(pseudo, bool) or model_made) or (pseudo and "dataset" not in src):
        raise ValueError(f"data.sources[{i}].pseudo_nuclei must be true, false or {{labels: DIR}} (a folder written "
                         f"by xpath.segmentation.training.self_training), on a dataset source; got {pseudo!r}")
    weight = src.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight <= 0 \
            or ("weight" in src and "dataset" not in src):
        raise ValueError(f"data.sources[{i}].weight must be a finite number > 0, on a dataset source; got {weight!r}")
    return dict(src)


def source_weights(sources) -> dict[str, float]:
    """The sampling weight of each dataset named by ``data.sources`` (``weight``, default 1)."""
    out: dict[str, float] = {}
    for src in sources:
        name, weight = src.get("dataset"), float(src.get("weight", 1.0))
        if name is None:
            continue
        if out.get(name, weight) != weight:
            raise ValueError(f"data.sources name dataset {name!r} twice with different weights")
        out[name] = weight
    return out


def _validate(cfg: TrainConfig) -> None:
    o, t, d = cfg.optim, cfg.train, cfg.data
    checks = [
        (o.lr > 0, "optim.lr must be > 0"), (o.batch_size >= 1, "optim.batch_size must be >= 1"),
        (o.accumulate >= 1, "optim.accumulate must be >= 1"), (o.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]"),
        (o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip must be > 0 or null"),
        (cfg.mpp is None or (isinstance(cfg.mpp, (int, float)) and cfg.mpp > 0), "mpp must be > 0 or null"),
        (t.steps >= 1, "train.steps must be >= 1"),
        (t.amp in ("auto", "bf16", "off"), "train.amp must be auto|bf16|off"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (d.prompts_per_image >= 1, "data.prompts_per_image must be >= 1"),
        (d.balance in ("label", "source", "none"), "data.balance must be label|source|none"),
    ]
    if cfg.distill is not None:
        from ...ontology import STRUCTURES

        w, structures = cfg.distill.weight, cfg.distill.structures
        checks += [
            (isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w > 0,
             f"distill.weight must be a finite number > 0, got {w!r}"),
            (len(structures) > 0 and set(structures) <= set(STRUCTURES),
             f"distill.structures must list some of {list(STRUCTURES)}, got {list(structures)}"),
        ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    source_weights(d.sources)  # one weight per dataset, checked before any image is read


def load_config(path: str | Path, *, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML training config.

    Parameters
    ----------
    path : path
        The YAML file.
    overrides : dict, optional
        Top-level or dotted keys to replace, e.g. ``{"train.steps": 10, "out_dir": "x"}``.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return TrainConfig.from_dict(raw)


def split_validation(image_ids: list[str], splits: list[str], rule: Any) -> np.ndarray:
    """Which images of one source go to validation, as a bool array (see the module docstring).

    Examples
    --------
    >>> ids = [f"train_{g}_{p:03d}" for g in range(1, 6) for p in range(2)]
    >>> split_validation(ids, ["train"] * 10, {"group": r"^train_(\\d+)_", "fraction": 0.2}).astype(int).tolist()
    [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    """
    n = len(image_ids)
    if rule in (None, "none"):
        return np.zeros(n, bool)
    if rule == "all":
        return np.ones(n, bool)
    if "split" in rule:
        return np.array([s == rule["split"] for s in splits], bool)
    pattern = re.compile(rule["group"])
    fraction = float(rule["fraction"])
    if not 0 < fraction < 1:
        raise ValueError(f"val fraction must be in (0, 1), got {fraction}")
    keys = []
    for image_id in image_ids:
        m = pattern.search(image_id)
        keys.append(m.group(1) if m and m.groups() else (m.group(0) if m else image_id))
    groups = sorted(set(keys))
    k = max(1, round(fraction * len(groups)))
    # evenly spaced picks, centred in their strata: with groups sorted by category this stratifies
    picks = {groups[int(i)] for i in np.floor((np.arange(k) + 0.5) * len(groups) / k)}
    return np.array([key in picks for key in keys], bool)


def _to_yaml(d: dict) -> str:
    """A config's ``to_dict()`` as YAML (tuples written as lists), what a run saves as ``config.yaml``."""
    import yaml

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return yaml.safe_dump(plain(d), sort_keys=False)
