"""The arithmetic inference runs in: float32, or bfloat16 autocast where the hardware has it natively.

The default is float32: every figure of the model card, and the reference outputs, are float32.
``precision="auto"`` opts in to bfloat16 where it is native and measured faster:

- a CUDA GPU that supports bfloat16 (Ampere and later);
- a CPU with AMX-BF16 tiles (Intel Xeon Sapphire Rapids and later). On this project's 2-core
  Sapphire Rapids machines the image encoder runs 1.3–1.7× faster than in float32 and a whole
  slide 0.94× the wall time (the rest of the pipeline is not the model's); the instances agree with
  float32's at AJI 0.97–0.98 on the sample slide, nuclei 0.99+ on MoNuSeg crops (a nucleus whose
  type vote is close can change type). ``benchmarks/slide_throughput.py --precision auto --float32``,
  docs/segmentation_inference.md ("Precision").

A CPU without AMX (most laptops, AMD before Zen 5) stays in float32 under ``"auto"``: emulated
bfloat16 there is slower, not faster. The weights stay float32 either way; autocast runs the
convolutions and matrix products in bfloat16 and everything that reads an output (sigmoid,
thresholds, watershed) sees float32.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["PRECISIONS", "check_precision", "inference_context", "model_device", "native_bfloat16", "resolve_precision"]

PRECISIONS = ("float32", "auto", "bfloat16")


def check_precision(precision: str) -> str:
    """Raise unless ``precision`` is one of :data:`PRECISIONS` (cheap: call it before a model loads)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def native_bfloat16(device: Any) -> bool:
    """Whether ``device`` computes bfloat16 products natively: CUDA with bf16, or a CPU with AMX-BF16."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu.get_capabilities().get("amx_bf16", False))
    return False


def model_device(model: Any):
    """The device of ``model``'s parameters (``model.device`` where it says; CPU for a model without any)."""
    import torch

    if getattr(model, "device", None) is not None:
        return torch.device(model.device)
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def resolve_precision(precision: str, device: Any):
    """``precision`` (one of :data:`PRECISIONS`) on ``device`` → the autocast dtype, or ``None`` for float32.

    Raises
    ------
    ValueError
        ``precision`` is not one of :data:`PRECISIONS`, or is ``"bfloat16"`` on a device without
        bfloat16 products (a CUDA GPU before Ampere, or a device type autocast does not cover).
    """
    import torch

    check_precision(precision)
    device = torch.device(device)
    if precision == "float32":
        return None
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else None
    if device.type == "cuda" and not native_bfloat16(device):
        raise ValueError("precision='bfloat16' needs a GPU with bfloat16 support (Ampere or later); "
                         "use precision='float32'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision='bfloat16' runs on 'cpu' or 'cuda' devices, got {device.type!r}")
    return torch.bfloat16  # a CPU without AMX emulates it: allowed when asked for, never chosen by "auto"


def inference_context(dtype: Any, device: Any) -> contextlib.AbstractContextManager:
    """``torch.inference_mode()``, under bfloat16 autocast on ``device`` when ``dtype`` is not ``None``."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if dtype is not None:
        stack.enter_context(torch.autocast(device_type=torch.device(device).type, dtype=dtype))
    return stack
