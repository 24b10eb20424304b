"""manifest.json: write/verify round trip, and each kind of tampering named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.cli import app
from models.common.artifacts import ArtifactError
from models.common.manifest import (
    MANIFEST,
    ManifestError,
    MissingManifestError,
    verify_manifest,
    write_manifest,
)
from tests.conftest import ARTIFACTS


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    directory = tmp_path / "toy"
    (directory / "vocab").mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 10)
    (directory / "config.json").write_text('{"embed_size": 8}\n')
    (directory / "vocab" / "tokens.txt").write_text("a\nb\n")
    return directory


def test_write_then_verify_round_trip(artifact: Path) -> None:
    path = write_manifest(artifact)
    files = json.loads(path.read_text())["files"]
    assert set(files) == {"model.safetensors", "config.json", "vocab/tokens.txt"}
    assert files["model.safetensors"]["bytes"] == 2560
    assert len(files["config.json"]["sha256"]) == 64
    assert verify_manifest(artifact) == 3
    assert not list(artifact.glob(".manifest-*"))  # no temporary file left behind


def test_a_changed_byte_is_named(artifact: Path) -> None:
    write_manifest(artifact)
    data = bytearray((artifact / "model.safetensors").read_bytes())
    data[100] ^= 0xFF  # same size, different content
    (artifact / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"changed file model\.safetensors \(sha256"):
        verify_manifest(artifact)


def test_a_changed_size_is_named(artifact: Path) -> None:
    write_manifest(artifact)
    (artifact / "config.json").write_text('{"embed_size": 16}\n')
    with pytest.raises(ManifestError, match=r"changed file config\.json \(19 bytes"):
        verify_manifest(artifact)


def test_a_missing_file_is_named(artifact: Path) -> None:
    write_manifest(artifact)
    (artifact / "vocab" / "tokens.txt").unlink()
    with pytest.raises(ManifestError, match=r"missing file vocab/tokens\.txt"):
        verify_manifest(artifact)


def test_an_extra_file_is_named(artifact: Path) -> None:
    write_manifest(artifact)
    (artifact / "backdoor.py").write_text("import os\n")
    with pytest.raises(ManifestError, match=r"unexpected file backdoor\.py"):
        verify_manifest(artifact)


def test_every_problem_is_listed_with_the_fix(artifact: Path) -> None:
    write_manifest(artifact)
    (artifact / "config.json").unlink()
    (artifact / "extra.bin").write_bytes(b"x")
    with pytest.raises(ManifestError) as info:
        verify_manifest(artifact)
    message = str(info.value)
    assert "missing file config.json" in message and "unexpected file extra.bin" in message
    assert "modelzoo manifest toy" in message


def test_no_manifest_is_its_own_error(artifact: Path) -> None:
    with pytest.raises(MissingManifestError, match="modelzoo manifest"):
        verify_manifest(artifact)


def test_a_malformed_manifest_is_refused(artifact: Path) -> None:
    (artifact / MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        verify_manifest(artifact)
    (artifact / MANIFEST).write_text('{"files": []}')
    with pytest.raises(ManifestError, match="malformed"):
        verify_manifest(artifact)


def test_a_manifest_path_leaving_the_folder_is_refused(artifact: Path) -> None:
    entry = {"sha256": "0" * 64, "bytes": 1}
    (artifact / MANIFEST).write_text(json.dumps({"files": {"../../etc/passwd": entry}}))
    with pytest.raises(ManifestError, match="unsafe path"):
        verify_manifest(artifact)


def test_missing_folder_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        write_manifest(tmp_path / "nothing")


def test_cli_writes_then_checks(artifact: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(app, ["manifest", str(artifact)])
    assert written.exit_code == 0, written.output
    assert "3 files" in written.output
    ok = runner.invoke(app, ["manifest", str(artifact), "--check"])
    assert ok.exit_code == 0 and "ok: 3 files" in ok.output
    (artifact / "config.json").write_text("{}\n")
    bad = runner.invoke(app, ["manifest", str(artifact), "--check"])
    assert bad.exit_code == 1
    assert "changed file config.json" in bad.output


def test_cli_takes_a_task_name_under_the_artifacts_dir(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELZOO_ARTIFACTS_DIR", str(artifact.parent))
    result = CliRunner().invoke(app, ["manifest", "toy"])
    assert result.exit_code == 0, result.output
    assert (artifact / MANIFEST).is_file()


@pytest.mark.parametrize("task", ["word2vec", "lm", "handwriting", "translation"])
def test_committed_artifacts_match_their_manifests(task: str) -> None:
    if not (ARTIFACTS / task).is_dir():
        pytest.skip(f"artifacts/{task} is not committed")
    assert verify_manifest(ARTIFACTS / task) >= 3
