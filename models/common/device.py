"""The one place that decides which device a model runs on."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

DeviceSetting = Literal["auto", "cpu", "cuda"]
CudaDtype = Literal["float16", "bfloat16", "float32"]
CUDA_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


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


def inference_dtype(device: torch.device, cuda_dtype: str = "float16",
                    quantized: bool = False) -> torch.dtype:
    """The floating dtype a served model runs in: ``cuda_dtype`` on CUDA, float32 elsewhere.

    int8-quantized models run on CPU (their float parts float32), so they get float32 too.

    Raises:
        ValueError: ``cuda_dtype`` is not float16, bfloat16 or float32.
    """
    if cuda_dtype not in CUDA_DTYPES:
        raise ValueError(f"cuda dtype must be one of {', '.join(CUDA_DTYPES)}; got {cuda_dtype!r}")
    if quantized or device.type != "cuda":
        return torch.float32
    return CUDA_DTYPES[cuda_dtype]


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating tensor in it (tuples, lists, dicts) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, tuple):
        items = [_cast_floats(v, dtype) for v in value]
        make = getattr(value, "_make", None)  # a named tuple, e.g. PackedSequence
        return make(items) if make is not None and hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_cast_floats(v, dtype) for v in value]
    if isinstance(value, dict):
        return {k: _cast_floats(v, dtype) for k, v in value.items()}
    return value


def cast_for_inference(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s floating parameters and buffers to ``dtype`` (in place), so it runs in
    half precision on CUDA; a forward pre-hook on each module holding parameters casts its
    floating inputs (float32 images, hidden states, masks made by the predictor) to match.
    Outputs are in ``dtype``; predictors call ``.float()`` before softmax/sampling.

    A no-op for float32.
    """
    if dtype == torch.float32:
        return model
    model.to(dtype)

    def cast_inputs(_module: nn.Module, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return _cast_floats(args, dtype), _cast_floats(kwargs, dtype)

    for module in model.modules():
        if next(module.parameters(), None) is not None:
            module.register_forward_pre_hook(cast_inputs, with_kwargs=True)
    return model


def hardware_summary() -> str:
    """Describe the machine for model cards, e.g. ``"cpu: 2 threads (x86_64)"``."""
    import platform

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {torch.get_num_threads()} threads ({platform.machine()})"
