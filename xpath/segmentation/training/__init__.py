"""The training room of :mod:`xpath.segmentation`: from image–mask–label triples to a checkpoint.

One idea per module, in the order a run uses them:

- :mod:`~.config` — the YAML config as dataclasses (``TrainConfig``, ``DataConfig``,
  ``OptimConfig``, ``RunConfig``, ``AugmentConfig``), ``load_config`` and the validation
  split of each source; reading a config does not import torch;
- :mod:`~.sources` — a config's sources loaded and split into training and validation datasets;
- :mod:`~.records` — triples grouped per image at the model's pixel size (``SegmentationRecord``);
- :mod:`~.self_training` — a trained model's nuclei written as the pseudo-labels of tissue-only images
  (``pseudo_nuclei: {labels: DIR}``), before a run; :mod:`~.pseudo_labels` — their files;
- :mod:`~.augment` — array kernels: resampling, flips, stain jitter, blur, distance targets;
- :mod:`~.dataset` — tiles with prompts, negatives and targets (``SegmentationDataset``, ``collate_batch``);
- :mod:`~.sampler` — category-balanced, deterministic, DDP-aware sampling (``BalancedSampler``);
- :mod:`~.losses` — the loss (mask BCE + Dice on matched candidates, selection, presence, distance);
- :mod:`~.distill` — the term that holds a frozen teacher's outputs (the config's ``distill:``);
- :mod:`~.validation` — Dice per category on the validation tiles;
- :mod:`~.distributed` — torchrun's process group and the per-rank random states;
- :mod:`~.run_dir` — atomic checkpoint directories under ``OUT/checkpoints``;
- :mod:`~.trainer` — ``Trainer``, the loop that ties them together;
- :mod:`~.finetune` — ``finetune``: a new label from a folder of annotated images, with replay
  (:mod:`~.user_data` reads and checks the folder, :mod:`~.replay` the shipped sample of the default
  model's data, :mod:`~.finetune_data` mixes them, :mod:`~.encoder_cache` keeps the frozen encoder's
  outputs, :mod:`~.finetune_report` writes the record and the model card);
- ``__main__`` — the command line, ``python -m xpath.segmentation.training --config CONFIG.yaml``
  (what ``xpath train`` runs).

Users import the public names from :mod:`xpath.segmentation`. Importing this package
imports nothing: each module loads when it is imported.
"""
