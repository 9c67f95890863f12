"""Text-prompted segmentation of pathology images (a rebuild of PathSegmentor, arXiv 2506.20988).

Public names load on first use (``_EXPORTS`` maps each to its module, or to
``"module:attribute"`` where the public name differs), so importing this package stays cheap
until a model is needed.
"""

from __future__ import annotations

from .._lazy import lazy_exports

# name → module (relative to this package), or "module:attribute". Each engineer adds only their own lines.
_EXPORTS = {
    # model (registry, checkpoints, losses, prompts)
    "SegmenterConfig": ".modeling.config",
    "FocalNetEncoderConfig": ".modeling.config",
    "EfficientNetEncoderConfig": ".modeling.config",
    "get_config": ".modeling.registry",
    "list_models": ".modeling.registry",
    "register_model": ".modeling.registry",
    "build_model": ".modeling.build",
    "create_model": ".modeling.build",
    "load_checkpoint": ".modeling.build",
    "default_checkpoint": ".modeling.checkpoint",
    "CheckpointError": ".modeling.checkpoint",
    "save_checkpoint": ".modeling.checkpoint",
    "sha256sum": ".modeling.checkpoint",
    "verify_checksum": ".modeling.checkpoint",
    "segmentation_loss": ".training.losses",
    "TextPromptSegmenter": ".modeling",
    "SegmenterOutput": ".modeling",
    "ImageFeatures": ".modeling",
    "resolve_prompt": ".prompts",
    "check_prompts": ".prompts",
    "PromptResolution": ".prompts",
    # what a model knows (trained labels, refusal of the rest, presence calibration)
    "supported_prompts": ".support",
    "check_prompt_support": ".support",
    "UnsupportedPromptError": ".support",
    "PromptSupport": ".support",
    "ModelVocabulary": ".support",
    "TrainedLabel": ".support",
    "expected_calibration_error": ".calibration",
    "fit_isotonic": ".calibration",
    "reliability_table": ".calibration",
    # inference (the room xpath/segmentation/inference/), metrics
    "Segmentation": ".inference.result",
    "TextPromptPredictor": ".inference.predictor",
    "ObjectPrediction": ".inference.objects",
    "GeoJSONPrompts": ".annotations",
    "prompts_from_geojson": ".annotations",
    "triples_from_geojson": ".annotations",
    "segment": ".api",
    "load_model": ".api",
    "prompt_structure": ".prompts",
    "instances_from_maps": ".inference.postprocess",
    "remove_small_instances": ".inference.postprocess",
    "predict_tiled": ".inference.tiling",
    "tile_starts": ".inference.tiling",
    "dice": ".metrics",
    "iou": ".metrics",
    "aji": ".metrics",
    "panoptic_quality": ".metrics",
    "instance_scores": ".metrics",
    "pair_scores": ".metrics",
    "summarize_scores": ".metrics",
    "scores_overall": ".metrics",
    "scores_by_dataset": ".metrics",
    "scores_by_category": ".metrics",
    # training (the room xpath/segmentation/training/)
    "AugmentConfig": ".training.config",
    "TrainConfig": ".training.config",
    "DataConfig": ".training.config",
    "OptimConfig": ".training.config",
    "RunConfig": ".training.config",
    "load_train_config": ".training.config:load_config",  # "load_config" alone would be ambiguous here
    "SegmentationRecord": ".training.records",
    "build_records": ".training.records",
    "SegmentationDataset": ".training.dataset",
    "BalancedSampler": ".training.sampler",
    "Trainer": ".training.trainer",
    "validation_dice": ".training.validation",
    # fine-tuning a new label (training/finetune.py, user_data.py)
    "finetune": ".training.finetune",
    "FinetuneResult": ".training.finetune",
    "FinetuneSettings": ".training.finetune",
    "AnnotatedFolder": ".training.user_data",
    "read_annotated_folder": ".training.user_data",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
