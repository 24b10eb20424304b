"""Artifact IO: safetensors weights + JSON config + JSON model card.

An artifact directory holds

* ``model.safetensors`` - tensors only (never a pickled module); a large 2-D tensor may be
  stored row-wise int8 (``<name>.int8_rows`` + ``<name>.int8_scale``, :func:`int8_rows`),
  which :func:`load_artifact` turns back into ``<name>`` (float16);
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
INT8_ROWS = ".int8_rows"
INT8_SCALE = ".int8_scale"


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
    """Load ``(tensors, config, card)`` from an artifact directory; tensors stored row-wise
    int8 (:func:`int8_rows`) come back as float16 under their own names.

    Raises:
        ArtifactError: the directory or one of its three files is missing or unreadable.
    """
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"missing {WEIGHTS} in {directory}")
    tensors = from_int8_rows(load_file(weights, device=str(device)))
    return tensors, read_json(directory / CONFIG), read_json(directory / CARD)


def int8_rows(tensors: Mapping[str, torch.Tensor], names: list[str]
              ) -> dict[str, torch.Tensor]:
    """Store the 2-D float tensors ``names`` row-wise int8, for a smaller artifact.

    Each row ``w`` becomes ``q = round(w / s)`` in int8 (-127..127) with ``s = max|w| / 127``
    (symmetric absmax scaling per row, as in weight-only int8 quantization, e.g. Dettmers
    et al. 2022 without outlier columns): ``<name>.int8_rows`` int8 (rows, cols) and
    ``<name>.int8_scale`` float32 (rows,). The rounding error per entry is at most
    ``s / 2``. Other tensors are returned unchanged.

    Raises:
        KeyError: a name is not in ``tensors``.
        ValueError: a named tensor is not 2-D floating point.
    """
    out = dict(tensors)
    for name in names:
        w = out.pop(name)
        if w.ndim != 2 or not w.is_floating_point():
            raise ValueError(f"{name}: int8 row storage needs a 2-D float tensor, "
                             f"got {tuple(w.shape)} {w.dtype}")
        scale = (w.float().abs().amax(dim=1) / 127.0).clamp_min(1e-12)
        out[name + INT8_ROWS] = torch.round(w.float() / scale[:, None]).clamp(
            -127, 127).to(torch.int8)
        out[name + INT8_SCALE] = scale
    return out


def from_int8_rows(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`int8_rows`: every ``<name>.int8_rows`` + ``<name>.int8_scale`` pair
    becomes ``<name>`` = rows × scale, float16 (B, ...) like the other stored weights.

    Raises:
        ArtifactError: an ``.int8_rows`` tensor has no matching ``.int8_scale``.
    """
    for key in [k for k in tensors if k.endswith(INT8_ROWS)]:
        name = key[: -len(INT8_ROWS)]
        scale = tensors.pop(name + INT8_SCALE, None)
        if scale is None:
            raise ArtifactError(f"{key} has no {name + INT8_SCALE} beside it")
        q = tensors.pop(key)
        tensors[name] = (q.float() * scale.float()[:, None]).to(torch.float16)
    return tensors


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
