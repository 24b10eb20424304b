"""Artifact IO: safetensors weights + JSON config + JSON model card.

An artifact directory holds

* ``model.safetensors`` - tensors only (never a pickled module);
* ``config.json``       - the model's constructor arguments (``Model(**config)``);
* ``card.json``         - the model card (dataset, metrics and the commands behind them);
* any task files (vocabularies, tokenizers) written by the task itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.common.paths import REPO_ROOT

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "card.json"


class ArtifactError(RuntimeError):
    """An artifact directory is missing or incomplete."""


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """Read a UTF-8 JSON file.

    Raises:
        ArtifactError: the file does not exist or is not valid JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing {path.name} in {path.parent}") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc


def save_artifact(
    directory: Path,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    card: Mapping[str, Any],
) -> None:
    """Write weights, config and card into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, directory / WEIGHTS)
    write_json(directory / CONFIG, dict(config))
    write_json(directory / CARD, dict(card))


def load_artifact(
    directory: Path, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Load ``(tensors, config, card)`` from an artifact directory.

    Raises:
        ArtifactError: the directory or one of its three files is missing or unreadable.
    """
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"missing {WEIGHTS} in {directory}")
    tensors = load_file(weights, device=str(device))
    return tensors, read_json(directory / CONFIG), read_json(directory / CARD)


def directory_size_bytes(directory: Path) -> int:
    """Total size in bytes of the regular files under ``directory``."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def git_commit() -> str | None:
    """The repository's current commit hash, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
