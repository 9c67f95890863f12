"""Train a text-prompted segmenter from a YAML config: the one training command line.

Command line::

    python -m xpath.segmentation.training --config configs/xpath_tiny_cpu.yaml [--resume] [--max-steps N] [--out DIR]
                                          [--set train.steps=500 ...] [--threads N] [--no-progress] [-v]
    torchrun --standalone --nproc_per_node=2 -m xpath.segmentation.training --config ...   # DDP (gloo on CPU, NCCL on GPU)

``xpath train CONFIG.yaml`` calls :func:`main`. What a run does, and how it resumes exactly:
:mod:`xpath.segmentation.training.trainer`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

from .config import load_config
from .trainer import Trainer

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m xpath.segmentation.training", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this step (schedule unchanged)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each process")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=500 --set data.tile_size=256 "
                             "(VALUE is parsed as YAML)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    import yaml

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    config = load_config(args.config, overrides=overrides)
    trainer = Trainer(config, out_dir=args.out, progress=not args.no_progress)
    try:
        result = trainer.fit(resume=args.resume, max_steps=args.max_steps)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        sys.stdout.write(json.dumps({"step": result["step"], "checkpoint": result["checkpoint"],
                                     "val_dice": (result["val"] or {}).get("dice")}) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
