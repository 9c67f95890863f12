"""The hierarchical label standard: anatomical region × histological structure × object.

A label is a triple ``(region, structure, object)`` as in PathSeg (arXiv 2506.20988):
``structure`` is one of ``tissue``, ``cell`` or ``nuclei``; ``region`` is an anatomical
site or ``"unspecified"``; ``object`` is the thing to segment. Its canonical prompt text
follows the paper's template ``"{structure}-level {object} in {region} pathology"``.

This module sits at the bottom of the package: datasets and segmentation import it,
it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STRUCTURES", "UNSPECIFIED", "Label"]

STRUCTURES = ("tissue", "cell", "nuclei")
UNSPECIFIED = "unspecified"


@dataclass(frozen=True, order=True)
class Label:
    """One class of the hierarchical standard.

    Examples
    --------
    >>> Label("colon", "nuclei", "epithelial").prompt
    'nuclei-level epithelial in colon pathology'
    """

    region: str
    structure: str
    object: str

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        for name in ("region", "object"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    @property
    def prompt(self) -> str:
        """The canonical prompt text of the paper's template."""
        region = "unspecified" if self.region == UNSPECIFIED else self.region
        return f"{self.structure}-level {self.object} in {region} pathology"

    @property
    def is_instance_level(self) -> bool:
        """Whether objects of this label are countable instances (nuclei, cells)."""
        return self.structure in ("cell", "nuclei")

    def __str__(self) -> str:
        return self.prompt
