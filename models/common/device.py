"""The one place that decides which device a model runs on."""

from __future__ import annotations

from typing import Literal

import torch

DeviceSetting = Literal["auto", "cpu", "cuda"]


def resolve_device(setting: str, quantized: bool = False) -> torch.device:
    """Map a device setting to a ``torch.device``.

    Args:
        setting: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        quantized: int8 dynamically quantized models have CPU kernels only
            (``quantized::linear_dynamic`` has no CUDA implementation), so they stay on CPU.

    Raises:
        ValueError: unknown setting, or ``"cuda"`` requested on a machine without CUDA.
    """
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {setting!r}")
    if quantized or setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but torch.cuda.is_available() is False; "
            "set MODELZOO_DEVICE=auto or cpu"
        )
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hardware_summary() -> str:
    """Describe the machine for model cards, e.g. ``"cpu: 2 threads (x86_64)"``."""
    import platform

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {torch.get_num_threads()} threads ({platform.machine()})"
