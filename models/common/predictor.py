"""The interface every task's predictor implements (see ../shared/DESIGN.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch


class Predictor(Protocol):
    """A loaded model that answers plain Python calls; it knows nothing of HTTP.

    Attributes:
        task: the task name (``"word2vec"``, ...).
        card: the model card read from ``card.json``.
        device: where the model runs.
        quantized: whether int8 dynamic quantization is applied.
    """

    task: str
    card: dict[str, Any]
    device: torch.device
    quantized: bool

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device, quantize: bool) -> Predictor:
        """Build the predictor from an artifact directory."""
        ...
