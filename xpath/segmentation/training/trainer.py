"""The training loop: one config run to its end, single process or DDP through ``torchrun``.

Python::

    from xpath.segmentation.training.config import load_config
    from xpath.segmentation.training.trainer import Trainer
    result = Trainer(load_config("configs/xpath_tiny_cpu.yaml")).fit()

(the command line is ``python -m xpath.segmentation.training``, :mod:`xpath.segmentation.training.__main__`).

What a run does: AdamW (no weight decay on biases and norms) with linear warmup then
cosine decay, gradient accumulation, gradient clipping, bf16 autocast on CUDA only,
optional ``torch.compile``, category-balanced sampling with negative prompts
(:mod:`~xpath.segmentation.training.sampler`, :mod:`~xpath.segmentation.training.dataset`),
optional distillation from a frozen teacher (``config.distill``, :mod:`~xpath.segmentation.training.distill`),
validation Dice per category every ``val_every`` steps,
an atomic checkpoint every ``ckpt_every`` steps (``OUT/checkpoints/step_N/{model.pt,state.pt}``)
and a log (``OUT/log.jsonl``, ``OUT/train_log.csv``, ``OUT/val_log.csv``).

Determinism: the same config and seed give the same weights, and a run stopped (or
killed) after a checkpoint and resumed with ``--resume`` reaches the same weights as an
uninterrupted run — the state file holds the optimizer, scheduler, step, per-rank RNG
states, and the sampler's position; every sample's augmentation is seeded by its
position in the sampling stream. ``--max-steps`` stops early without changing the
learning-rate schedule, which always spans ``train.steps``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..inference.precision import native_bfloat16
from .config import TrainConfig, _to_yaml
from .dataset import collate_batch
from .distributed import DistInfo, capture_rng, init_distributed, restore_rng
from .run_dir import atomic_torch_save, latest_checkpoint, write_checkpoint_dir
from .sampler import BalancedSampler
from .sources import build_datasets, sampling_weights
from .validation import _autocast, validation_dice

__all__ = ["Trainer"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


# --------------------------------------------------------------------------- building blocks
def _build_model(spec: str, *, checkpoint: str | None, device: torch.device, mpp: float | None = None):
    """A registered model name, or ``"package.module:factory"`` (called with no arguments).

    ``mpp`` replaces the working resolution stored in the model's config (also one loaded from
    ``checkpoint``): the weights are scale-agnostic, the µm/px they are trained at is data.
    """
    if ":" in spec:
        module, _, attr = spec.partition(":")
        model = getattr(importlib.import_module(module), attr)()
        if checkpoint:
            raise ValueError("init_checkpoint is only supported for registered model names")
    else:
        from ..modeling.build import create_model

        model = create_model(spec, checkpoint=checkpoint, device=device)
    if mpp is not None:
        if dataclasses.is_dataclass(model.config):
            model.config = dataclasses.replace(model.config, mpp=float(mpp))
        else:  # a factory's own config object
            model.config.mpp = float(mpp)
    return model.to(device)


def _default_loss():
    from .losses import segmentation_loss

    return segmentation_loss


def amp_dtype(amp: str, device: torch.device):
    """``train.amp`` on ``device`` → the autocast dtype (``None``: float32).

    ``"auto"`` is bfloat16 on a CUDA GPU with bf16 and float32 elsewhere; ``"bf16"`` needs such a GPU. Not on a
    CPU, even one with AMX: there a training step in bf16 autocast ran at 0.75× float32's speed (1.42 against
    1.89 images/s, xpath_small, 512-px tiles, 2 cores), where inference gains 1.36× (the backward pass is slow).
    """
    native = device.type == "cuda" and native_bfloat16(device)
    if amp == "bf16" and not native:
        raise ValueError(f"train.amp='bf16' needs a CUDA device with bf16, got {device}")
    return torch.bfloat16 if amp == "bf16" or (amp == "auto" and native) else None


def _lr_lambda(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps: linear warmup, cosine decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _frozen_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters that do not train (a frozen pretrained text encoder)."""
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def _trainable_state(model: torch.nn.Module) -> dict:
    """The state dict without frozen parameters (they reload from their own package)."""
    frozen = _frozen_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Runs one training config to its end (or to ``max_steps``).

    Parameters
    ----------
    config : TrainConfig
    model : torch.nn.Module, optional
        Use this model instead of building ``config.model`` (it must follow the model
        contract: ``config``, ``preprocess``, ``forward(x, prompts)`` → ``SegmenterOutput``).
    loss_fn : callable, optional
        ``loss_fn(out, targets) -> (loss, parts)``; default :func:`xpath.segmentation.training.losses.segmentation_loss`.
    out_dir : path, optional
        Overrides ``config.out_dir``.
    progress : bool
        A tqdm bar on rank 0.
    callbacks : list of callable, optional
        Each called as ``cb(trainer, step)`` after every optimizer step (tests use one to
        simulate a crash).
    datasets : (SegmentationDataset, SegmentationDataset or None), optional
        Train on these (e.g. built from your own triples with
        :func:`~xpath.segmentation.training.records.build_records`) instead of ``config.data.sources``.
    sample_weights : array-like, optional
        Sampling weight of each training tile, instead of ``config.data.balance`` (e.g. a fine-tune
        that gives its new data half the draws and the replayed old data the other half).
    """

    def __init__(self, config: TrainConfig, *, model=None, loss_fn: Callable | None = None,
                 out_dir: str | Path | None = None, progress: bool = True,
                 callbacks: list[Callable] | None = None, datasets: tuple | None = None,
                 sample_weights=None) -> None:
        self.config = config
        self.out_dir = Path(out_dir or config.out_dir)
        self.progress = progress
        self.callbacks = list(callbacks or [])
        self._model_arg = model
        self._loss_fn = loss_fn
        self._datasets = datasets
        self._sample_weights = sample_weights
        self.step = 0
        self.history: list[dict] = []

    # ---------------------------------------------------------------- setup
    def _setup(self, resume: bool) -> None:
        cfg = self.config
        self.dist: DistInfo = init_distributed(cfg.train.device)
        dev = self.dist.device
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        import random

        random.seed(cfg.seed)
        model = self._model_arg if self._model_arg is not None else _build_model(
            cfg.model, checkpoint=cfg.init_checkpoint, device=dev, mpp=cfg.mpp)
        self.model = model.to(dev)
        self.model.train()
        self.teacher = self._build_teacher(dev)
        self.loss_fn = self._loss_fn or _default_loss()
        mcfg = self.model.config
        if self._datasets is not None:
            self.train_set, self.val_set = self._datasets
        else:
            self.train_set, self.val_set = build_datasets(cfg, mpp=getattr(mcfg, "mpp", None),
                                                          tile_size=int(cfg.data.tile_size or mcfg.image_size),
                                                          vocabulary=getattr(mcfg, "vocabulary", ()) or ())
        augment = getattr(cfg.data, "augment", None)
        if augment is not None and augment.spatial_prob > 0 and hasattr(mcfg, "spatial_trained"):
            mcfg.spatial_trained = True  # its checkpoints decode boxes and points through the object path
        if hasattr(mcfg, "vocabulary"):  # the checkpoint records the labels the model was trained on
            mcfg.vocabulary = [lab.prompt for lab in self.train_set.vocabulary]
        self._last_val: dict | None = None
        self._warm_text_cache()
        d = cfg.data
        if self._sample_weights is not None:
            self.weights = np.asarray(self._sample_weights, np.float64)
            if self.weights.shape != (len(self.train_set),):
                raise ValueError(f"sample_weights must have one weight per training tile ({len(self.train_set)}), "
                                 f"got shape {self.weights.shape}")
        else:
            self.weights = sampling_weights(self.train_set, d)

        o = cfg.optim
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, o.weight_decay), lr=o.lr, betas=tuple(o.betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _lr_lambda(s, warmup=o.warmup_steps, total=cfg.train.steps,
                                                 min_ratio=o.min_lr_ratio))
        self.amp_dtype = amp_dtype(cfg.train.amp, dev)

        self.step = 0
        if resume:
            self._load_state()
        elif self.dist.distributed:
            torch.manual_seed(cfg.seed + self.dist.rank)  # distinct dropout per rank; weights are broadcast by DDP

        self.net = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                               find_unused_parameters=cfg.train.find_unused_parameters)
        if cfg.train.compile:
            self.net = torch.compile(self.net)

        per_step = o.batch_size * o.accumulate
        self.sampler = BalancedSampler(self.weights, seed=cfg.seed, num_replicas=self.dist.world_size,
                                       rank=self.dist.rank, start=self.step * per_step)
        self.loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=o.batch_size, sampler=self.sampler, collate_fn=collate_batch,
            num_workers=d.num_workers, pin_memory=dev.type == "cuda", persistent_workers=d.num_workers > 0)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(_to_yaml(cfg.to_dict()))
            log.info("training %s: %d train tiles, %d val tiles, world size %d, device %s", cfg.model,
                     len(self.train_set), len(self.val_set) if self.val_set else 0, self.dist.world_size, dev)

    def _build_teacher(self, dev: torch.device):
        """The frozen model of ``config.distill`` (``None`` without one), in eval mode."""
        distill = self.config.distill
        if distill is None:
            return None
        if not Path(distill.checkpoint).is_file():
            raise FileNotFoundError(f"distill.checkpoint {distill.checkpoint} does not exist")
        teacher = _build_model(self.config.model, checkpoint=distill.checkpoint, device=dev, mpp=self.config.mpp)
        teacher.eval().requires_grad_(False)
        return teacher

    def _warm_text_cache(self) -> None:
        """Encode every prompt of the datasets once, in a fixed order.

        A frozen text encoder caches embeddings per text; encoding them in one fixed batch
        makes them independent of which prompts happened to share a batch, so an
        interrupted and resumed run sees bit-identical embeddings.
        """
        encoder = getattr(self.model, "text_encoder", None)
        if encoder is None or not getattr(encoder, "frozen", False):
            return
        prompts = set(self.train_set.prompts) | {""}
        if self.val_set is not None:
            prompts |= set(self.val_set.prompts)
        with torch.no_grad():
            encoder(sorted(prompts))

    # ---------------------------------------------------------------- state
    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def _gather(self, obj):
        if not self.dist.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.dist.world_size
        dist.all_gather_object(out, obj)
        return out

    def save_checkpoint(self) -> Path | None:
        """Write ``OUT/checkpoints/step_N`` (collective under DDP: every rank must call it)."""
        rngs = self._gather(capture_rng())
        path = None
        if self.dist.is_main:
            state = {
                "version": STATE_VERSION,
                "step": self.step,
                "model": _trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs,
                "world_size": self.dist.world_size,
                "samples_per_rank": self.step * self.config.optim.batch_size * self.config.optim.accumulate,
                "config": json.dumps(self.config.to_dict(), default=str),
            }
            writers = {"state.pt": lambda p: atomic_torch_save(state, p)}
            save_model = self._model_saver()
            if save_model is not None:
                writers["model.pt"] = save_model
            path = write_checkpoint_dir(self.checkpoint_root, self.step, writers,
                                        keep=self.config.train.keep_checkpoints)
            log.info("checkpoint %s", path)
        self._barrier()
        return path

    def _model_saver(self):
        from ..modeling.checkpoint import save_checkpoint
        from ..modeling.segmenter import TextPromptSegmenter

        if not isinstance(self.model, TextPromptSegmenter):
            return None
        extra = {"step": self.step, "train_config": self.config.to_dict()}

        def save(path):
            self.model.trained_vocabulary = self._vocabulary_record()
            return save_checkpoint(self.model, path, extra=extra)

        return save

    def _vocabulary_record(self):
        """The labels trained so far (with masks in the training data, or in the initial checkpoint's record),
        each with the Dice of the last validation (NaN when not measured; ``python -m xpath.segmentation.record``
        measures a release fully and calibrates its presence)."""
        from ..support import ModelVocabulary, TrainedLabel

        previous = getattr(self.model, "trained_vocabulary", None)
        known = {t.label: t for t in (previous.labels if previous is not None else ())}
        per_category = (self._last_val or {}).get("per_category", {})
        for lab in sorted({lab for labs in self.train_set.source_labels.values() for lab in labs}):
            measured = per_category.get(lab.prompt)
            if measured is not None or lab not in known:
                known[lab] = TrainedLabel(lab, dice=float(measured["dice"]) if measured else float("nan"),
                                          n_val=int(measured["n"]) if measured else 0)
        return ModelVocabulary(tuple(known[lab] for lab in sorted(known)))

    def _load_state(self) -> None:
        ckpt = latest_checkpoint(self.checkpoint_root)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint found under {self.checkpoint_root}")
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{ckpt / 'state.pt'} has state version {state.get('version')}, expected {STATE_VERSION}")
        if state["world_size"] != self.dist.world_size:
            raise ValueError(f"{ckpt} was written by {state['world_size']} processes; resume with the same "
                             f"number (got {self.dist.world_size})")
        frozen = _frozen_names(self.model)
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        bad = sorted(set(missing) - frozen) + sorted(unexpected)
        if bad:
            raise ValueError(f"{ckpt / 'state.pt'} does not match the model: missing or unexpected keys {bad[:8]}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        restore_rng(state["rng"][self.dist.rank])
        if self.dist.is_main:
            log.info("resumed from %s at step %d", ckpt, self.step)

    def _barrier(self) -> None:
        if self.dist.distributed:
            import torch.distributed as dist

            dist.barrier()

    # ---------------------------------------------------------------- loop
    def _targets(self, batch: dict) -> dict:
        dev = self.dist.device
        return {
            "masks": batch["masks"].to(dev).float(),
            "distance": batch["distance"].to(dev).float(),
            "present": batch["present"].to(dev),
            "prompt_valid": batch["prompt_valid"].to(dev),
            "has_instances": batch["has_instances"].to(dev),
            "spatial": batch["spatial"].to(dev),
        }

    def _spatial_inputs(self, batch: dict) -> tuple:
        """The batch's boxes and points for the model, or ``(None, None)`` when no prompt is spatial."""
        if "spatial" not in batch or not bool(batch["spatial"].any()):
            return None, None
        dev = self.dist.device
        return batch["boxes"].to(dev), batch["points"].to(dev)

    def _train_step(self, batches) -> dict:
        o = self.config.optim
        self.optimizer.zero_grad(set_to_none=True)
        total, parts_sum = 0.0, {}
        for micro in range(o.accumulate):
            batch = next(batches)
            sync = micro == o.accumulate - 1 or not self.dist.distributed
            with (contextlib.nullcontext() if sync else self.net.no_sync()):
                with _autocast(self.dist.device, self.amp_dtype):
                    x = self.model.preprocess(batch["image"].numpy())
                    out = self.net(x, batch["prompts"], *self._spatial_inputs(batch))
                    targets = self._targets(batch)
                    loss, parts = self.loss_fn(out, targets)
                    if self.teacher is not None:
                        loss, parts = self._add_distillation(loss, parts, out, x, batch, targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step + 1}: {parts}")
                (loss / o.accumulate).backward()
            total += float(loss.detach()) / o.accumulate
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v) / o.accumulate
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip if o.grad_clip else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": total, "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0], **parts_sum}

    def _add_distillation(self, loss, parts: dict, out, x, batch: dict, targets: dict):
        """``loss`` plus ``distill.weight`` × the teacher term (:mod:`~xpath.segmentation.training.distill`)."""
        from .distill import distillation_loss, held_prompts

        distill = self.config.distill
        with torch.no_grad():
            teacher_out = self.teacher(x, batch["prompts"], *self._spatial_inputs(batch))
        held = held_prompts(batch["labels"], targets["prompt_valid"], targets["spatial"], tuple(distill.structures))
        term = distillation_loss(out, teacher_out, held)
        parts = {**parts, "distill": float(term.detach())}
        loss = loss + distill.weight * term
        parts["total"] = float(loss.detach())
        return loss, parts

    def validate(self) -> dict | None:
        """Validation Dice per category on rank 0 (other ranks wait); ``None`` without a validation set."""
        result = None
        if self.val_set is not None and self.dist.is_main:
            with torch.random.fork_rng(devices=[self.dist.device] if self.dist.device.type == "cuda" else []):
                result = validation_dice(self.model, self.val_set, batch_size=self.config.optim.batch_size,
                                         max_tiles=self.config.data.val_max_tiles, amp_dtype=self.amp_dtype)
            self._log({"kind": "val", "step": self.step, **result})
            self._write_val_csv(result)
            self._last_val = result
        self._barrier()
        return result

    def fit(self, *, resume: bool = False, max_steps: int | None = None, time_limit_s: float | None = None) -> dict:
        """Train until ``train.steps`` (or ``max_steps``, the schedule unchanged).

        ``time_limit_s`` stops earlier, after the first step that ends that many seconds after the loop
        started (validated and checkpointed like the last step, so a later ``resume`` continues from it).

        Returns
        -------
        dict
            ``{"step": int, "val": dict or None, "checkpoint": str or None, "out_dir": str}``; a finished run
            resumed trains nothing and returns its last checkpoint.
        """
        self._setup(resume)
        cfg = self.config.train
        stop = cfg.steps if max_steps is None else min(int(max_steps), cfg.steps)
        batches = iter(self.loader)
        from tqdm.auto import tqdm

        bar = tqdm(total=stop, initial=self.step, desc="train", disable=not (self.progress and self.dist.is_main))
        val, t0, seen = None, time.perf_counter(), 0
        ckpt = latest_checkpoint(self.checkpoint_root) if self.step >= stop else None  # a finished run resumed
        try:
            while self.step < stop:
                row = self._train_step(batches)
                seen += self.config.optim.batch_size * self.config.optim.accumulate * self.dist.world_size
                bar.update(1)
                if self.step % max(1, cfg.log_every) == 0 or self.step == stop:
                    row.update(self._reduce({"loss": row["loss"]}))
                    elapsed = time.perf_counter() - t0
                    row.update(step=self.step, kind="train", images_per_s=seen / max(elapsed, 1e-9))
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
                    self._log(row)
                    self._write_train_csv(row)
                last = self.step == stop or (time_limit_s is not None
                                             and self._any(time.perf_counter() - t0 >= time_limit_s))
                if (cfg.val_every and self.step % cfg.val_every == 0) or last:
                    val = self.validate()
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last:
                    ckpt = self.save_checkpoint()
                for cb in self.callbacks:
                    cb(self, self.step)
                if last:
                    break
        finally:
            bar.close()
        return {"step": self.step, "val": val, "checkpoint": str(ckpt) if ckpt else None, "out_dir": str(self.out_dir)}

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if getattr(self, "dist", None) is not None and self.dist.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()

    # ---------------------------------------------------------------- logs
    def _reduce(self, values: dict) -> dict:
        if not self.dist.distributed:
            return values
        import torch.distributed as dist

        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.dist.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.dist.world_size).tolist()))

    def _any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (so that every rank stops at the same step)."""
        if not self.dist.distributed:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=self.dist.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        self.history.append(row)
        with open(self.out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def _write_train_csv(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        path = self.out_dir / "train_log.csv"
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "kind"}
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted(scalars), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(scalars)

    def _write_val_csv(self, result: dict) -> None:
        path = self.out_dir / "val_log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["step", "group", "name", "dice", "n"])
            writer.writerow([self.step, "overall", "all", result["dice"], result["n_pairs"]])
            for group in ("per_category", "per_source"):
                for name, v in result[group].items():
                    writer.writerow([self.step, group, name, v["dice"], v["n"]])
