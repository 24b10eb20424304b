"""Artifact integrity: ``manifest.json`` lists every file of an artifact with its sha256.

``write_manifest(dir)`` records ``{"files": {relative_path: {"sha256", "bytes"}}}`` for every
regular file under ``dir`` (sub-folders included, paths with ``/``) except the manifest
itself and OS clutter (``.DS_Store``, ``Thumbs.db``). ``verify_manifest(dir)`` recomputes
them and raises :class:`ArtifactError` naming each missing, unexpected or changed file.

Training writers call :func:`write_manifest` last; ``modelzoo manifest <task-or-dir>``
(re)writes or checks one; the service verifies it before loading a predictor.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from models.common.artifacts import ArtifactError

MANIFEST = "manifest.json"
IGNORED_NAMES = frozenset({MANIFEST, ".DS_Store", "Thumbs.db"})
_CHUNK = 1 << 20


class ManifestError(ArtifactError):
    """``manifest.json`` is missing or malformed, or the files do not match it."""


class MissingManifestError(ManifestError):
    """The artifact directory has no ``manifest.json`` (e.g. an artifact from before them)."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_files(directory: Path) -> dict[str, Path]:
    """Relative POSIX path -> path of every file the manifest covers, sorted."""
    files = {
        p.relative_to(directory).as_posix(): p
        for p in directory.rglob("*")
        if p.is_file() and p.name not in IGNORED_NAMES
    }
    return dict(sorted(files.items()))


def compute_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of ``directory`` as it is now (not written)."""
    return {"files": {name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                      for name, p in artifact_files(directory).items()}}


def write_manifest(artifact_dir: Path) -> Path:
    """Write ``manifest.json`` for ``artifact_dir`` (atomically) and return its path.

    Raises:
        ArtifactError: ``artifact_dir`` is not a directory.
    """
    if not artifact_dir.is_dir():
        raise ArtifactError(f"artifact directory {artifact_dir} does not exist")
    text = json.dumps(compute_manifest(artifact_dir), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=artifact_dir, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, artifact_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return artifact_dir / MANIFEST


def covering_manifest_dir(directory: Path) -> Path:
    """The folder whose ``manifest.json`` covers the files of ``directory``: ``directory``
    itself when it has one, else its parent when that has one (a task folder holding one
    sub-folder per model, as ``artifacts/matching/`` does), else ``directory`` (a new
    manifest goes there).

    Rewriting a model sub-folder's files must rewrite the task folder's manifest, or the
    service's integrity check of the task fails on the changed files.
    """
    if (directory / MANIFEST).is_file() or not (directory.parent / MANIFEST).is_file():
        return directory
    return directory.parent


def _read_entries(artifact_dir: Path) -> dict[str, dict[str, Any]]:
    """The manifest's file entries, validated (shape, and no path leaving the folder)."""
    path = artifact_dir / MANIFEST
    if not path.is_file():
        raise MissingManifestError(
            f"no {MANIFEST} in the '{artifact_dir.name}' artifact; write one with "
            f"'modelzoo manifest {artifact_dir.name}'"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{MANIFEST} of the '{artifact_dir.name}' artifact is not valid "
                            f"JSON ({exc}); rewrite it with 'modelzoo manifest "
                            f"{artifact_dir.name}'") from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ManifestError(f"{MANIFEST} of the '{artifact_dir.name}' artifact is malformed: "
                            "expected {\"files\": {path: {\"sha256\", \"bytes\"}}}")
    for name, entry in files.items():
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or "\\" in name:
            raise ManifestError(f"{MANIFEST} of the '{artifact_dir.name}' artifact names "
                                f"an unsafe path {name!r}")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise ManifestError(f"{MANIFEST} of the '{artifact_dir.name}' artifact has a "
                                f"malformed entry for {name}: expected sha256 and bytes")
    return files


def verify_manifest(artifact_dir: Path) -> int:
    """Check every file of ``artifact_dir`` against its ``manifest.json``.

    Returns:
        The number of files verified.

    Raises:
        ArtifactError: ``artifact_dir`` does not exist.
        MissingManifestError: there is no ``manifest.json``.
        ManifestError: the manifest is malformed, or a file is missing, unexpected (not
            listed) or changed (size or sha256); the message names every such file,
            relative to the artifact folder.
    """
    if not artifact_dir.is_dir():
        raise ArtifactError(f"artifact directory {artifact_dir} does not exist")
    expected = _read_entries(artifact_dir)
    actual = artifact_files(artifact_dir)
    problems = [f"missing file {n}" for n in expected if n not in actual]
    problems += [f"unexpected file {n} (not in {MANIFEST})" for n in actual if n not in expected]
    for name, entry in expected.items():
        if name not in actual:
            continue
        size = actual[name].stat().st_size
        if size != entry["bytes"]:
            problems.append(f"changed file {name} ({size} bytes, manifest says {entry['bytes']})")
        elif file_sha256(actual[name]) != entry["sha256"].lower():
            problems.append(f"changed file {name} (sha256 differs from {MANIFEST})")
    if problems:
        raise ManifestError(
            f"the '{artifact_dir.name}' artifact failed its integrity check: "
            + "; ".join(problems)
            + f". Restore the files, or if the change is intended run "
            f"'modelzoo manifest {artifact_dir.name}' to re-record them"
        )
    return len(expected)
