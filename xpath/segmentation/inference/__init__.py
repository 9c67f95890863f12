"""The inference room of :mod:`xpath.segmentation`: from an image and prompts to a :class:`Segmentation`.

One idea per module, in the order a prediction uses them:

- :mod:`~.predictor` — ``TextPromptPredictor``: encode an image once, decode any number of
  prompts against it (at the model's µm/px), whole images or slides read on demand;
- :mod:`~.tiling` — where the tiles go (``tile_starts``, the only tile placement, and the cores
  that partition an axis), panels and the blending of overlapping tiles (``predict_tiled``);
- :mod:`~.stitching` — objects across tile borders: the block-wise watershed over streamed rows
  (``InstanceStitcher``), which object a window owns (centroid in its core) and the merge of
  overlapping objects (``min_free``);
- :mod:`~.objects` — objects prompted by boxes and points (``TextPromptPredictor.predict_objects``):
  the window that holds each prompt and the rule that keeps its object;
- :mod:`~.postprocess` — instance label maps from the probability and distance maps (watershed);
- :mod:`~.nucleus_types` — one nucleus, one type: type prompts split the all-nuclei map by a
  per-nucleus vote (on whole images and, summed while stitching, on slides);
- :mod:`~.result` — ``Segmentation``, the result type, and its per-prompt class table.

Users import the public names from :mod:`xpath.segmentation`. Importing this package
imports nothing: each module loads when it is imported.
"""
