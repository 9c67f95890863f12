"""Label branches: a label's own copy of the decoder, so that teaching it leaves every other label as it was.

A fine-tune (:func:`~xpath.segmentation.finetune`) trains the light decoder parts — pixel
decoder, joint module, heads, text projections: about 1 M parameters, 2 MB in half precision —
on the new label's images. Trained in place, they would move every old label too (all labels
share them). Instead the trained copy becomes a :class:`DecoderBranch` of the new label and the
base's parts are put back: prompts of that label are decoded by the branch, every other prompt
by the untouched base parts, from the same image encoding. Old labels answer exactly as before
when asked without the new one (tested); asked together, they share the joint module's
self-attention only with prompts of their own path.

The routing key is the label's canonical prompt (``config.label_branches``); which texts map to
it is the model's support rule (:func:`~xpath.segmentation.check_prompt_support`), so "stroma"
reaches the branch of "tissue-level stroma in colon pathology" exactly when that rule says the
model supports "stroma" through that label.
"""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["BRANCH_PARTS", "DecoderBranch"]

#: The parts of :class:`~xpath.segmentation.modeling.TextPromptSegmenter` a branch holds its own copy of.
BRANCH_PARTS = ("pixel_decoder", "joint", "heads", "text_proj", "prompt_proj", "class_text_proj")


class DecoderBranch(nn.Module):
    """One label's copy of the decoder parts :data:`BRANCH_PARTS` (attributes of the same names)."""

    def __init__(self, parts: dict[str, nn.Module]) -> None:
        super().__init__()
        missing = [name for name in BRANCH_PARTS if name not in parts]
        if missing:
            raise ValueError(f"a decoder branch needs the parts {list(BRANCH_PARTS)}; missing {missing}")
        for name in BRANCH_PARTS:
            setattr(self, name, parts[name])

    @classmethod
    def copy_of(cls, model: nn.Module) -> DecoderBranch:
        """A branch holding deep copies of ``model``'s decoder parts (a segmenter or another branch)."""
        return cls({name: copy.deepcopy(getattr(model, name)) for name in BRANCH_PARTS})
