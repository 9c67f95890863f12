"""Where torch runs: ``device=None`` resolves at run time to CUDA, then MPS, then CPU (DESIGN.md).

Every part of xpath that takes ``device=`` goes through :func:`resolve_device`; nothing
hard-codes ``"cuda"``. torch is imported on call, not at import.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device=None):
    """``device`` as a ``torch.device``; ``None`` → CUDA, then MPS, then CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
