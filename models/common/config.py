"""Helpers shared by the training configs: presets and the card's record of a run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any


def preset_values(presets: Mapping[str, Mapping[str, Any]], name: str,
                  overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The values of preset ``name`` with the non-None ``overrides`` on top.

    Raises:
        ValueError: ``name`` is not one of ``presets``.
    """
    if name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}; got {name!r}")
    return {**presets[name], **{k: v for k, v in overrides.items() if v is not None}}


def training_record(cfg: Any, exclude: Iterable[str]) -> dict[str, Any]:
    """A dataclass config as JSON-ready values (paths as strings), without ``exclude``
    (machine-specific paths and flags that do not describe the run)."""
    skip = set(exclude)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
            if k not in skip}
