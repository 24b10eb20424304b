"""The interface every task's predictor implements (see ../shared/DESIGN.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn


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


def predictor_modules(predictor: object) -> dict[str, nn.Module]:
    """The networks a predictor runs, by artifact sub-folder (``""``: the artifact folder).

    Matching serves one model per sub-folder (``predictor.matchers[name].model``); the other
    tasks have one network, ``predictor.model``. Word2vec, a table of vectors, has none.
    """
    matchers = getattr(predictor, "matchers", None)
    if isinstance(matchers, dict):
        return {name: m.model for name, m in matchers.items() if isinstance(m.model, nn.Module)}
    model = getattr(predictor, "model", None)
    return {"": model} if isinstance(model, nn.Module) else {}
