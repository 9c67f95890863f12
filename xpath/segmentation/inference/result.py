"""The result of text-prompted segmentation: :class:`Segmentation`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Segmentation", "classes_table", "count_ids"]

_CLASS_COLUMNS = ("prompt", "label", "structure", "status", "presence", "n_instances", "area_fraction")


def classes_table(rows: list[dict]) -> pd.DataFrame:
    """Typed per-prompt class table of a :class:`Segmentation` (an empty list gives typed empty columns).

    ``status`` is the prompt's support by the model (:mod:`xpath.segmentation.support`):
    ``"supported"``, ``"unsupported"`` (empty mask, presence NaN), ``"nearest"`` (the nearest
    supported label was decoded; ``label`` names it) or ``"unchecked"`` (a model without a
    record of its trained labels).
    """
    frame = pd.DataFrame(rows, columns=list(_CLASS_COLUMNS))
    return frame.astype({"prompt": object, "label": object, "structure": object, "status": object, "presence": float,
                         "n_instances": "Int64", "area_fraction": float})


def count_ids(labels: np.ndarray, rows: int = 256) -> int:
    """Number of distinct non-zero ids, a band of rows at a time (bincount would copy it all to int64)."""
    seen = np.zeros(int(labels.max(initial=0)) + 1, bool)
    for y in range(0, labels.shape[0], rows):
        seen[labels[y: y + rows].ravel()] = True
    return int(np.count_nonzero(seen[1:]))


@dataclass(frozen=True)
class Segmentation:
    """Masks, instances and presence scores of one image for a list of prompts.

    Every mapping is keyed by the prompt text exactly as it was given.

    Attributes
    ----------
    prompts : tuple of str
        The prompts, in the order given.
    semantic : dict of str to numpy.ndarray
        ``(H, W)`` bool mask per prompt (``probability > threshold``), at the input resolution.
    instances : dict of str to numpy.ndarray
        ``(H, W)`` ``int32`` label map (0 = background, ids ``1..N``) for each prompt whose
        structure is nuclei/cell (or all prompts with ``instances=True``); tissue-level
        prompts are absent.
    presence : dict of str to float
        Probability in ``[0, 1]`` that the prompted object is in the image at all.
    probabilities : dict of str to numpy.ndarray
        ``(H, W)`` ``float16`` probability maps, when requested (else empty).
    classes : pandas.DataFrame
        One row per prompt: ``prompt``, ``label`` (the canonical label the prompt resolved
        to, or ``None``), ``structure`` (tissue / cell / nuclei, or ``None`` when unknown),
        ``presence``, ``n_instances`` (``<NA>`` for prompts without instances),
        ``area_fraction`` (fraction of the image in the semantic mask).
    image_shape : tuple of int
        ``(H, W)`` of the input image.
    mpp : float or None
        µm per pixel of the input image (as given, or the model's when not given).
    threshold : float
        Probability threshold of the semantic masks.
    model : str
        Name of the model configuration that produced the result.
    nucleus_types : pandas.DataFrame or None
        When nucleus-type prompts were asked for together with instances: one row per nucleus of
        the shared all-nuclei map — ``instance``, ``type`` (the prompt it was given, ``None`` when no
        type reached the threshold) and ``p_<prompt>`` (its mean probability of each type). The type
        prompts' instance maps are disjoint sets of these nuclei, ids kept
        (:mod:`~xpath.segmentation.inference.nucleus_types`).
    image : numpy.ndarray or None
        The input image (a reference, not a copy), used by :meth:`plot`.
    """

    prompts: tuple[str, ...]
    semantic: dict[str, np.ndarray]
    instances: dict[str, np.ndarray]
    presence: dict[str, float]
    classes: pd.DataFrame
    image_shape: tuple[int, int]
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    mpp: float | None = None
    threshold: float = 0.5
    model: str = ""
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    nucleus_types: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"Segmentation(image_shape={self.image_shape}, mpp={self.mpp}, model={self.model!r}, "
            f"prompts={list(self.prompts)}, instances={sorted(self.instances)})"
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def _check_prompt(self, prompt: str) -> str:
        if prompt not in self.semantic:
            raise KeyError(f"prompt {prompt!r} is not in this result; prompts: {list(self.prompts)}")
        return prompt

    def to_label_image(self, prompt: str) -> np.ndarray:
        """``(H, W)`` ``int32`` label image of one prompt.

        The instance map where the prompt has one; otherwise the connected components of
        the semantic mask (8-connectivity), numbered ``1..N``.
        """
        self._check_prompt(prompt)
        if prompt in self.instances:
            return self.instances[prompt]
        from scipy import ndimage

        labels, _ = ndimage.label(self.semantic[prompt], structure=np.ones((3, 3), bool))
        return labels.astype(np.int32, copy=False)

    def plot(self, ax=None, prompts: list[str] | None = None, *, alpha: float = 0.45, legend: bool = True,
             max_side: int = 2048):
        """Overlay the masks on the image, one colour per prompt; returns the Axes.

        A prompt's colour is :func:`xpath.io.class_colour` of its text, the colour it has in
        :func:`xpath.plotting.plot_overlay` and in the QuPath GeoJSON.

        Instance boundaries are drawn darker. Images longer than ``max_side`` pixels are
        subsampled for display. Nothing is shown (no ``plt.show()``).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure when ``None``).
        prompts : list of str, optional
            Prompts to draw (default: all).
        alpha : float
            Opacity of the mask colours.
        legend : bool
            Add a legend naming the prompts (with their presence scores).
        max_side : int
            Longest side drawn, in pixels (the arrays are strided, never copied whole).
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        from ...io import class_colour

        chosen = list(self.prompts) if prompts is None else [self._check_prompt(p) for p in prompts]
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6 * self.image_shape[0] / max(self.image_shape[1], 1)))
        h, w = self.image_shape
        step = max(1, -(-max(h, w) // max_side))
        view = (slice(None, None, step), slice(None, None, step))
        if self.image is not None:
            rgb = self.image[view].astype(np.float32) / 255.0
        else:
            rgb = np.ones((len(range(0, h, step)), len(range(0, w, step)), 3), np.float32)
        handles = []
        for prompt in chosen:
            colour = np.asarray(class_colour(prompt), np.float32) / 255.0
            mask = self.semantic[prompt][view]
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
            if prompt in self.instances:
                from skimage.segmentation import find_boundaries

                edge = find_boundaries(self.instances[prompt][view], mode="inner")
                rgb[edge] = 0.6 * colour
            handles.append(Patch(color=colour, label=f"{prompt} ({self.presence[prompt]:.2f})"))
        ax.imshow(np.clip(rgb, 0, 1), extent=(0, w, h, 0))  # axes in full-resolution pixels
        ax.set_axis_off()
        if legend and handles:
            ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
        return ax
