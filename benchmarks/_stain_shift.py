"""The stain-shift curve of ``segmentation_accuracy.py --stain-shift``: nuclei Dice against a controlled H&E change.

The validation images are unmixed into haematoxylin, eosin and DAB optical densities
(``skimage.color.rgb2hed``) and remixed with haematoxylin × ``(1 - m)`` and eosin × ``(1 + m)``
("pale": the lilac, weakly stained H&E of some sites) or the reverse ("dark"), for magnitudes
``m``. Every model given and the classical baseline segment the same shifted images in the same
run; a flatter curve is a model that keeps its accuracy when the stain is unlike training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xpath.segmentation.classical import classical_nuclei
from xpath.segmentation.metrics import dice

MAGNITUDES = (0.0, 0.25, 0.5, 0.75)
DIRECTIONS = {"pale": (-1.0, 1.0), "dark": (1.0, -1.0)}  # sign of the change of (haematoxylin, eosin)


def stain_shift(image: np.ndarray, magnitude: float, direction: str) -> np.ndarray:
    """``image`` with its haematoxylin and eosin scaled by ``1 ± magnitude`` (see the module docstring)."""
    if magnitude == 0:
        return image
    from skimage.color import hed2rgb, rgb2hed

    sh, se = DIRECTIONS[direction]
    hed = rgb2hed(image)
    hed[..., 0] *= 1 + sh * magnitude
    hed[..., 1] *= 1 + se * magnitude
    return np.clip(np.rint(hed2rgb(hed) * 255), 0, 255).astype(np.uint8)


def stain_shift_curve(predictors: dict, records: list, *, magnitudes=MAGNITUDES) -> pd.DataFrame:
    """Rows ``method, direction, magnitude, image, dice`` of the all-nuclei mask of every predictor
    (name → :class:`~xpath.segmentation.TextPromptPredictor`) and of the classical baseline."""
    rows = []
    for rec in records:
        truth = rec.instances > 0
        for direction in DIRECTIONS:
            for m in magnitudes:
                if m == 0 and direction != "pale":
                    continue  # the unshifted image once
                shifted = stain_shift(rec.image, m, direction)
                dirs = list(DIRECTIONS) if m == 0 else [direction]
                scores = {"classical": dice(classical_nuclei(shifted, mpp=rec.mpp) > 0, truth)}
                for name, predictor in predictors.items():
                    seg = predictor.set_image(shifted, mpp=rec.mpp).predict(["nuclei"], instances=False)
                    scores[name] = dice(seg.semantic["nuclei"], truth)
                rows += [{"method": k, "direction": d, "magnitude": m, "image": rec.image_id, "dice": v}
                         for k, v in scores.items() for d in dirs]
    return pd.DataFrame(rows)


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per method × (direction, magnitude), and each curve's drop from ``m = 0`` to the largest ``m``."""
    table = rows.pivot_table(index="method", columns=["direction", "magnitude"], values="dice", aggfunc="mean")
    top = max(table.columns.get_level_values(1))
    for d in DIRECTIONS:
        table[(d, "drop")] = table[(d, 0.0)] - table[(d, top)]
    return table.sort_index(axis=1, level=0, sort_remaining=False)
