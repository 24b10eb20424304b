"""Where datasets and artifacts live by default."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Return the dataset root: ``$MODELZOO_DATA_DIR`` or ``../shared/data`` beside the repo."""
    env = os.environ.get("MODELZOO_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def artifacts_dir() -> Path:
    """Return the artifacts root: ``$MODELZOO_ARTIFACTS_DIR`` or ``<repo>/artifacts``."""
    env = os.environ.get("MODELZOO_ARTIFACTS_DIR")
    return Path(env) if env else REPO_ROOT / "artifacts"
