"""Teach a model a new prompt from a few annotated images, on a laptop CPU, without forgetting the old ones.

Python::

    from xpath.segmentation import finetune
    result = finetune("xpath_small", {"images": "tiles/", "masks": "masks/"}, prompt="stroma in colon",
                      mpp=0.5, minutes=10, out="stroma.pt")
    segment(image, ["stroma"], model=result.path, mpp=0.5)

Command line::

    xpath finetune --images DIR --masks DIR --prompt TEXT --out MODEL.pt [--mpp MPP] [--minutes N] [--steps N]
                   [--base MODEL] [--no-progress]          # or --geojson DIR (QuPath exports) instead of --masks

What it does, in order (everything that can be wrong with the data is found in step 1):

1. **Read and check** the folder (:mod:`~xpath.segmentation.training.user_data`): names pair, sizes
   match, masks are binary or labels, not all empty, at least 4 images, a pixel size; the prompt is
   read into the label standard (its canonical form, e.g. ``tissue-level stroma in colon pathology``).
   A seeded fifth of the images (by file, stratified) is held out for validation.
2. **Freeze** the image encoder and the text encoder; the pixel decoder, the joint module, the heads
   and the text projections train (measured on 2 CPU cores: the mask embeddings of the frozen
   decoder do not separate a tissue such as stroma, a linear probe on them reaches Dice 0.64 where
   the decoder trained reaches 0.7–0.8). Tiles are not augmented in their pixels, so that the frozen
   encoder runs once per tile (:class:`~xpath.segmentation.training.encoder_cache.EncoderCache`); their
   prompts are (order, negatives, synonyms of the label).
3. **Replay**, so that the old labels are not forgotten: the training draws mix the new images
   (``new_share``), the shipped sample of the base model's own training data with its ground truth
   (:mod:`~xpath.segmentation.training.replay`; the new label is a negative there where it is known
   absent: another organ), and the base model's own answers for its old labels on the new images
   (``self_share``, :func:`~xpath.segmentation.training.replay.self_replay_records`).
4. **Measure before**: the base model's Dice on the held-out new images (the new label) and on the
   replay sample's validation part (every old label).
5. **Train** with :class:`~xpath.segmentation.training.trainer.Trainer` in a run folder beside the output
   (``MODEL.run/``): with ``minutes``, the number of steps is planned from the measured cost of one
   (AdamW, linear warmup, cosine decay over the planned steps) and training stops at the time limit
   in any case; a checkpoint about every 30 s. Killed, the same call (or command) resumes from the
   last checkpoint.
6. **Keep the old labels as they were**: the trained parts become the new label's own decoder branch
   (:mod:`~xpath.segmentation.modeling.branch`) and the base's parts are put back, so every old
   label is answered by exactly the weights it had (a base's own branches are carried over).
7. **Measure after**, then write ``MODEL.pt``: an ordinary checkpoint (``create_model(path)``,
   ``segment(..., model=PATH)``, ``--model PATH``) whose record lists the new label with its held-out
   Dice beside the old labels, whose ``extra["finetune"]`` holds the numbers before and after, with the
   new prompt's text embeddings cached; and ``MODEL.md``, its model card.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..modeling.branch import BRANCH_PARTS, DecoderBranch
from .user_data import AnnotatedFolder, hold_out, read_annotated_folder

__all__ = ["DEFAULT_MINUTES", "TRAINED_PARTS", "FinetuneResult", "FinetuneSettings", "finetune"]

log = logging.getLogger(__name__)

#: Time budget when neither ``minutes`` nor ``steps`` is given.
DEFAULT_MINUTES = 10.0
#: The parts of a :class:`~xpath.segmentation.modeling.TextPromptSegmenter` a fine-tune trains.
#: They become the new label's branch, so they are the branch's parts (or some of them).
TRAINED_PARTS = BRANCH_PARTS
_STATE_FILE = "finetune.json"
_STATE_VERSION = 1


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyper-parameters of a fine-tune (recorded in the checkpoint; defaults measured on 2 CPU cores).

    Attributes
    ----------
    lr : float
        AdamW learning rate after a warmup of ``warmup_steps``, decayed to a tenth by cosine.
    batch_size : int
        Tiles per step.
    tile_size : int or None
        Side of the training tiles at the model's pixel size (default the model's input size).
    prompts_per_image, max_negatives : int
        Prompts per tile, of which at most this many are negatives.
    new_share, self_share : float
        Shares of the training draws given to the new images and to the base model's answers on
        them (self-replay); the replay sample gets the rest, balanced over its labels.
    val_fraction : float
        Fraction of the images held out for validation (by file).
    synonym_prob : float
        Probability that a prompt is drawn as a paraphrase of its label ("stroma", "stroma in colon").
    max_steps : int
        Most steps a ``minutes`` budget plans (a fast machine stops there rather than fit a few tiles for
        ever). The old labels do not drift however long it trains: they keep the base's weights
        (:mod:`~xpath.segmentation.modeling.branch`).
    checkpoint_every : int or None
        Steps between the run folder's checkpoints (what a killed run resumes from); default about
        every 30 s of training.
    seed : int
    """

    lr: float = 2e-4
    batch_size: int = 2
    tile_size: int | None = None
    prompts_per_image: int = 4
    max_negatives: int = 1
    new_share: float = 0.4
    self_share: float = 0.3
    val_fraction: float = 0.2
    synonym_prob: float = 0.3
    warmup_steps: int = 10
    min_area: int = 16
    max_steps: int = 1500
    checkpoint_every: int | None = None
    seed: int = 0
    trainable: tuple = TRAINED_PARTS


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` wrote and measured.

    Attributes
    ----------
    path, card : pathlib.Path
        The checkpoint and its model card.
    label : Label
        The label taught.
    steps : int
    minutes : float
        Wall time of the whole call.
    new_label : pandas.DataFrame
        The new label's Dice on the held-out images, before and after (one row).
    old_labels : pandas.DataFrame
        Each old label's Dice on the replay sample's validation part, before and after.
    train_images, val_images : tuple of str
    """

    path: Path
    card: Path
    label: Any
    steps: int
    minutes: float
    new_label: pd.DataFrame
    old_labels: pd.DataFrame
    train_images: tuple
    val_images: tuple
    summary: dict = field(repr=False, default_factory=dict)

    def load(self, device=None):
        """The fine-tuned model, loaded from :attr:`path`."""
        from ..modeling.build import load_checkpoint

        return load_checkpoint(self.path, device=device)


# ---------------------------------------------------------------------------- inputs
def _as_folder(data, *, prompt, structure, mpp) -> AnnotatedFolder:
    """``data`` as an :class:`AnnotatedFolder`: one already read, a mapping of folders, or a folder of folders."""
    if isinstance(data, AnnotatedFolder):
        return data
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"images", "masks", "geojson"})
        if unknown or "images" not in data:
            raise ValueError(f"data must map 'images' and 'masks' (or 'geojson') to folders, got keys {sorted(data)}")
        return read_annotated_folder(data["images"], data.get("masks"), geojson=data.get("geojson"), prompt=prompt,
                                     structure=structure, mpp=mpp)
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        kind = "masks" if (root / "masks").is_dir() else "geojson"
        if not (root / "images").is_dir() or not (root / kind).is_dir():
            raise FileNotFoundError(f"data: {root} must hold an images/ folder and a masks/ (or geojson/) folder")
        return read_annotated_folder(root / "images", **{kind: root / kind}, prompt=prompt, structure=structure,
                                     mpp=mpp)
    raise TypeError(f"data must be a folder, a mapping of folders or an AnnotatedFolder, got {type(data).__name__}")


def _load_base(model, device, seed: int = 0) -> tuple[Any, str]:
    """A private copy of the base model and how to name it (a registered name gets its shipped weights; one
    without them is initialised from ``seed``, so that the same call builds the same model and can resume)."""
    from ..modeling.build import create_model, load_checkpoint
    from ..modeling.checkpoint import default_checkpoint
    from ..modeling.registry import list_models

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix in (".pt", ".pth", ".ckpt") or path.is_file():
            return load_checkpoint(path, device=device), str(path)
        if str(model) not in list_models():
            raise ValueError(f"base model {str(model)!r} is neither a checkpoint file nor a registered model "
                             f"({', '.join(list_models())})")
        if default_checkpoint(str(model)) is None:
            log.warning("no trained checkpoint of %r ships with xpath: fine-tuning its untrained decoder (it knows "
                        "no old label to keep)", str(model))
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                return create_model(str(model), device=device), f"{model} (untrained)"
        return create_model(str(model), checkpoint="default", device=device), f"{model} (shipped)"
    if not hasattr(model, "encode_image") or not hasattr(model, "config"):
        raise TypeError(f"model must be a model name, a checkpoint path or a model, got {type(model).__name__}")
    net = copy.deepcopy(model)
    return (net.to(device) if device is not None else net), getattr(model.config, "name", "model")


def _freeze(model, trainable) -> None:
    from .encoder_cache import keep_frozen

    unknown = [name for name in trainable if name not in BRANCH_PARTS]
    if unknown:
        raise ValueError(f"trainable parts {unknown} are not parts of a label branch; choose among {list(BRANCH_PARTS)}")
    for name, module in model.named_children():
        if name not in trainable:
            keep_frozen(module)
    for name, p in model.named_parameters():
        if name.split(".")[0] not in trainable:
            p.requires_grad_(False)


def _detach_branches(model) -> dict:
    """Remove ``model``'s label branches; returns them by label."""
    carried = {label: model.branches[str(i)] for i, label in enumerate(model.config.label_branches)}
    model.config.label_branches = []
    model.branches.clear()
    model._routes.clear()
    return carried


def _without(record, labels):
    """``record`` without the trained labels whose canonical prompts are ``labels``."""
    from ..support import ModelVocabulary

    if record is None or not labels:
        return record
    return ModelVocabulary(tuple(t for t in record.labels if t.label.prompt not in labels),
                           dict(record.presence_calibration))


def _branch_off(model, base_parts: DecoderBranch, carried: dict, label) -> None:
    """Make ``model``'s trained decoder parts the branch of ``label``, put the base's parts back and
    re-attach the base's own branches: every old label is then decoded by the weights it had."""
    trained = DecoderBranch.copy_of(model)
    for name in BRANCH_PARTS:
        getattr(model, name).load_state_dict(getattr(base_parts, name).state_dict())
    for old, branch in carried.items():
        if old != label.prompt:
            model.attach_branch(old, branch)
    model.attach_branch(label.prompt, trained)
    model.eval()


def _weights_digest(model) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, t in sorted(model.state_dict().items()):
        if not name.startswith("text_encoder."):
            digest.update(name.encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- the run folder
@dataclass
class _Run:
    """The run folder: the Trainer's checkpoints and logs, and ``finetune.json`` (fingerprint, plan, "before")."""

    path: Path
    state: dict

    @classmethod
    def open(cls, path: Path, fingerprint: str, *, restart: bool) -> _Run:
        state_file = path / _STATE_FILE
        if path.exists():
            old = json.loads(state_file.read_text()) if state_file.is_file() else {}
            done = old.get("finished", False) or not (path / "checkpoints").is_dir()
            if old.get("fingerprint") == fingerprint and not done and not restart:
                log.info("resuming the fine-tune in %s", path)
                return cls(path, old)
            if old.get("fingerprint") not in (None, fingerprint) and not done and not restart:
                raise ValueError(f"run folder {path} holds an unfinished fine-tune of other data or settings; "
                                 "delete it, pass another out=, or restart=True (--restart)")
            shutil.rmtree(path)
        path.mkdir(parents=True)
        run = cls(path, {"version": _STATE_VERSION, "fingerprint": fingerprint, "finished": False})
        run.save()
        return run

    @property
    def resuming(self) -> bool:
        return "steps" in self.state and (self.path / "checkpoints").is_dir()

    def save(self) -> None:
        from ...io import atomic_path

        with atomic_path(self.path / _STATE_FILE, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(self.state, indent=1, default=float))


def _fingerprint(folder: AnnotatedFolder, held: np.ndarray, settings: FinetuneSettings, base_digest: str,
                 replay: bool) -> str:
    files = [(p, os.path.getsize(p), os.path.getmtime(p)) for pair in folder.paths for p in pair]
    payload = {"label": folder.label.prompt, "files": files, "mpp": [t.mpp for t in folder.triples],
               "held_out": held.tolist(), "settings": dataclasses.asdict(settings), "base": base_digest,
               "replay": str(replay)}
    return hashlib.sha256(json.dumps(payload, default=str, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- the pieces of a run
def _measure(model, sets, batch_size: int) -> dict:
    from .validation import validation_dice

    t0 = time.perf_counter()
    out = {"new": validation_dice(model, sets.val_new, batch_size=batch_size),
           "replay": validation_dice(model, sets.val_replay, batch_size=batch_size) if sets.val_replay else None}
    out["seconds"] = time.perf_counter() - t0
    return out


def _seconds_per_step(model, sets, settings: FinetuneSettings, batches: int = 5) -> float:
    """Wall time of one training step: tiles drawn as training draws them, made, collated, forward, loss and
    backward (no update); the fastest of ``batches`` after one warm-up batch (a busy machine's slow moments
    would plan too few steps; the time limit stops a run that is slower), plus a tenth for the update."""
    from .dataset import collate_batch
    from .losses import segmentation_loss

    rng = np.random.default_rng(settings.seed)
    model.train()
    times = []
    for k in range(batches + 1):
        t0 = time.perf_counter()
        draw = rng.choice(len(sets.train), settings.batch_size, p=sets.weights / sets.weights.sum())
        batch = collate_batch([sets.train[(int(i), k)] for i in draw])
        out = model(model.preprocess(batch["image"].numpy()), batch["prompts"])
        targets = {"masks": batch["masks"].float(), "distance": batch["distance"].float(), "present": batch["present"],
                   "prompt_valid": batch["prompt_valid"], "has_instances": batch["has_instances"],
                   "spatial": batch["spatial"]}
        segmentation_loss(out, targets)[0].backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return float(np.min(times[1:])) * 1.1


def _plan_steps(steps, minutes, elapsed: float, reserve: float, per_step: float,
                max_steps: int) -> tuple[int, float | None]:
    """Planned steps and the training time limit (s) from ``steps`` and/or ``minutes``."""
    limit = None if minutes is None else max(0.0, minutes * 60 - elapsed - reserve)
    if steps is not None:
        return int(steps), limit
    planned = min(int(limit // per_step) if per_step > 0 else 1, max_steps)
    if planned < 20:
        log.warning("the time left (%.0f s) allows only %d training steps (%.1f s each): the new label may be "
                    "learnt poorly; give more minutes", limit, max(planned, 1), per_step)
    return max(1, planned), limit


def _trainer_config(sets, settings: FinetuneSettings, steps: int, per_step: float, run: _Run, model, device):
    from .config import DataConfig, OptimConfig, RunConfig, TrainConfig

    ckpt_every = settings.checkpoint_every or max(5, round(30 / max(per_step, 1e-3)))
    data = DataConfig(tile_size=sets.tile_size, prompts_per_image=settings.prompts_per_image,
                      max_negatives=settings.max_negatives, min_area=settings.min_area, augment=sets.augment,
                      balance="none", vocabulary=tuple(lab.prompt for lab in sets.train.vocabulary))
    optim = OptimConfig(lr=settings.lr, weight_decay=0.0, warmup_steps=min(settings.warmup_steps, steps // 4),
                        min_lr_ratio=0.1, batch_size=settings.batch_size)
    train = RunConfig(steps=steps, ckpt_every=ckpt_every, log_every=10, keep_checkpoints=1, amp="off",
                      device=None if device is None else str(device))
    return TrainConfig(model=getattr(model.config, "name", "model"), data=data, optim=optim, train=train,
                       seed=settings.seed, out_dir=str(run.path))


def _check_budget(minutes, steps) -> None:
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0 and math.isfinite(minutes)):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    if steps is not None and not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _default_out(label) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in f"{label.object}_{label.region}").strip("_")
    return Path(f"xpath_{slug}.pt")


# ---------------------------------------------------------------------------- the function
def finetune(model: Any, data: Any, *, prompt: str, minutes: float | None = None, steps: int | None = None,
             out: str | os.PathLike | None = None, mpp: float | None = None, structure: str | None = None,
             replay: bool = True, settings: FinetuneSettings | None = None, device: Any = None,
             progress: bool = True, restart: bool = False) -> FinetuneResult:
    """Teach ``model`` the label ``prompt`` from a folder of annotated images (see the module docstring).

    Parameters
    ----------
    model : str, path or model
        The base: a registered name (its shipped weights, e.g. ``"xpath_small"``), a checkpoint file,
        or a model object (copied, not changed).
    data : path, mapping or AnnotatedFolder
        ``{"images": DIR, "masks": DIR}`` (or ``"geojson": DIR`` for QuPath exports), a folder holding
        ``images/`` and ``masks/`` (or ``geojson/``), or a folder read by
        :func:`~xpath.segmentation.training.user_data.read_annotated_folder`.
    prompt : str
        What the masks show, e.g. ``"stroma in colon"``; read into the label standard.
    minutes : float, optional
        Time budget of the whole call (reading, encoding, training, measuring); default
        :data:`DEFAULT_MINUTES` when ``steps`` is not given either.
    steps : int, optional
        Training steps (with ``minutes`` too, the time limit still stops training).
    out : path, optional
        The checkpoint to write (default ``xpath_{object}_{region}.pt`` here); the model card is
        written beside it (``.md``) and the run folder too (``.run/``, kept for its logs).
    mpp : float, optional
        µm per pixel of the images, where the files do not record it.
    structure : {"tissue", "cell", "nuclei"}, optional
        The label's structure where the prompt does not say it.
    replay : bool or path
        Train and measure the old labels on the shipped replay sample (and on the base model's own
        answers on the new images); a folder: another sample in its layout
        (:mod:`~xpath.segmentation.training.replay`); ``False`` trains on the new images alone.
    settings : FinetuneSettings, optional
    device : str or torch.device, optional
    progress : bool
        Progress bars (encoding, training with its ETA, validation).
    restart : bool
        Start afresh even where an unfinished run of other data or settings is in the run folder.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    ValueError, FileNotFoundError, TypeError
        Bad data or arguments, before any model is loaded or trained (see
        :mod:`~xpath.segmentation.training.user_data`).
    """
    t_start = time.perf_counter()
    _check_budget(minutes, steps)
    settings = settings or FinetuneSettings()
    if minutes is None and steps is None:
        minutes = DEFAULT_MINUTES
    folder = _as_folder(data, prompt=prompt, structure=structure, mpp=mpp)
    held = hold_out(folder.positive, fraction=settings.val_fraction, seed=settings.seed)
    out = Path(out) if out is not None else _default_out(folder.label)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"out: the folder of {out} does not exist")
    net, base_name = _load_base(model, device, settings.seed)
    run = _Run.open(out.with_suffix(".run"), _fingerprint(folder, held, settings, _weights_digest(net), replay),
                    restart=restart)
    log.info("fine-tuning %s to %r (%s): %d images, %d held out (%s)", base_name, folder.prompt,
             folder.label.prompt, len(folder.triples), int(held.sum()),
             ", ".join(n for n, h in zip(folder.names, held) if h))
    return _run(net, base_name, folder, held, out, run, settings=settings, steps=steps, minutes=minutes,
                replay=replay, device=device, progress=progress, t_start=t_start)


def _run(net, base_name, folder, held, out, run, *, settings, steps, minutes, replay, device, progress, t_start):
    """Steps 2–6 of the module docstring, on a loaded base model in an open run folder."""
    from ..support import model_vocabulary
    from .encoder_cache import EncoderCache
    from .finetune_data import build_finetune_sets
    from .finetune_report import finetune_record
    from .trainer import Trainer

    base_record = model_vocabulary(net)
    carried = _detach_branches(net)  # the base's own label branches: not trained, put back as they are
    base_parts = DecoderBranch.copy_of(net)  # before any resumed weights load
    _freeze(net, settings.trainable)
    with EncoderCache(net.image_encoder) as cache:
        sets = build_finetune_sets(net, folder, held, settings, base_record=_without(base_record, carried),
                                   replay=replay, cache=cache, progress=progress)
        log.info("%.1f min in: %d tiles encoded; %s", (time.perf_counter() - t_start) / 60, len(cache),
                 sets.describe())
        if getattr(net.text_encoder, "frozen", False):
            with torch.no_grad():
                net.text_encoder(sets.prompts())  # every prompt embedded once, before anything is timed
        if run.resuming:
            before = run.state["before"]
        else:
            before = _measure(net, sets, settings.batch_size)
            run.state["before"] = before
        # measuring after (the new label's branch decodes beside the base: about twice the work), saving, caching
        reserve = 2.5 * before["seconds"] + 30.0
        per_step = run.state.get("seconds_per_step") or _seconds_per_step(net, sets, settings)
        planned, limit = _plan_steps(run.state.get("steps", steps), minutes, time.perf_counter() - t_start,
                                     reserve, per_step, settings.max_steps)
        run.state.update(steps=planned, seconds_per_step=per_step)
        run.save()
        log.info("%.1f min in: measured before; training %d steps (%.1f s each%s)", (time.perf_counter() - t_start) / 60,
                 planned, per_step, "" if limit is None else f", stopping after {limit / 60:.1f} min at the latest")
        trainer = Trainer(_trainer_config(sets, settings, planned, per_step, run, net, device), model=net,
                          datasets=(sets.train, None), sample_weights=sets.weights, progress=progress)
        try:
            fit = trainer.fit(resume=run.resuming, time_limit_s=limit)
        finally:
            trainer.close()
        log.info("%.1f min in: trained %d steps; measuring", (time.perf_counter() - t_start) / 60, fit["step"])
        _branch_off(net, base_parts, carried, folder.label)
        net.trained_vocabulary = finetune_record(base_record, folder.label, before["new"])  # routes its prompts
        after = _measure(net, sets, settings.batch_size)
    return _finish(net, base_name, folder, held, out, run, sets, before, after, fit["step"], settings, replay,
                   base_record, t_start, device)


def _finish(net, base_name, folder, held, out, run, sets, before, after, step, settings, replay, base_record,
            t_start, device) -> FinetuneResult:
    """Write the checkpoint (record, ``finetune`` entry, prompt embeddings) and its model card."""
    from ..modeling.checkpoint import save_checkpoint
    from ..cache_prompts import cache_prompt_embeddings, trained_prompts
    from .finetune_report import changes_table, finetune_record, write_model_card

    label = folder.label
    new = changes_table(before["new"], after["new"])
    new = new[new.label == label.prompt].reset_index(drop=True)
    old = changes_table(before["replay"], after["replay"])
    summary = {
        "format": 1, "label": label.prompt, "prompt": folder.prompt, "base": base_name, "checkpoint": str(out),
        "data": {"images": str(Path(folder.paths[0][0]).parent), "annotations": str(Path(folder.paths[0][1]).parent),
                 "kind": "masks" if Path(folder.paths[0][1]).suffix.lower() in (".png", ".tif", ".tiff")
                 else "QuPath GeoJSON"},
        "train_images": [n for n, h in zip(folder.names, held) if not h],
        "val_images": [n for n, h in zip(folder.names, held) if h],
        "mpp": sorted({float(t.mpp) for t in folder.triples}), "model_mpp": float(net.config.mpp),
        "steps": int(step), "minutes": (time.perf_counter() - t_start) / 60, "seed": settings.seed,
        "device": str(net.device), "settings": {**dataclasses.asdict(settings), "tile_size": sets.tile_size,
                                                "trainable": list(settings.trainable)},
        "replay": sets.describe() if replay is not False else "none (old labels not protected)",
        "new_label": new.to_dict("records"), "old_labels": old.to_dict("records"),
    }
    net.trained_vocabulary = finetune_record(base_record, label, after["new"])
    save_checkpoint(net, out, extra={"finetune": json.loads(json.dumps(summary, default=float))})
    cache_prompt_embeddings(out, texts=sorted(set(trained_prompts(net.config.vocabulary)) | {folder.prompt}))
    card = write_model_card(out.with_suffix(".md"), summary, old, new)
    shutil.rmtree(run.path / "checkpoints", ignore_errors=True)
    run.state.update(finished=True, after=after, checkpoint=str(out))
    run.save()
    log.info("wrote %s and %s: %r Dice %.3f on %d held-out image(s), before %.3f", out, card, label.prompt,
             new.dice_after.iloc[0] if len(new) else math.nan, int(held.sum()),
             new.dice_before.iloc[0] if len(new) else math.nan)
    return FinetuneResult(out, card, label, int(step), summary["minutes"], new, old, tuple(summary["train_images"]),
                          tuple(summary["val_images"]), summary)
