"""benchmarks/handwriting_dev_set.py: the dev sets rebuilt from pinned commits, md5-checked."""

from __future__ import annotations

import csv
import hashlib
import subprocess
from pathlib import Path

import pytest

from benchmarks.handwriting_dev_set import SOURCES, build, read_sources

COLUMNS = "set\tfilename\ttext\tstyle\trepo\tcommit\tpath\tmd5\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture()
def clone(tmp_path: Path) -> tuple[Path, str, bytes]:
    """A one-commit repository at REPOS/alice/notes holding images/a.png; later overwritten."""
    repo = tmp_path / "repos" / "alice" / "notes"
    (repo / "images").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    first = b"\x89PNG first version"
    (repo / "images" / "a.png").write_bytes(first)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    commit = _git(repo, "rev-parse", "HEAD")
    (repo / "images" / "a.png").write_bytes(b"\x89PNG changed later")
    _git(repo, "commit", "-qam", "two")
    return tmp_path / "repos", commit, first


def _sources(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "sources.tsv"
    path.write_text(COLUMNS + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def test_build_takes_the_pinned_commit_and_writes_labels(tmp_path: Path, clone) -> None:
    repos, commit, first = clone
    md5 = hashlib.md5(first).hexdigest()
    rows = read_sources(_sources(tmp_path, [
        f"dev\tnote-a.png\tHello, World\tmixed\talice/notes\t{commit}\timages/a.png\t{md5}"]))
    problems = build(repos, tmp_path / "out", rows)
    assert problems == []
    assert (tmp_path / "out" / "dev" / "note-a.png").read_bytes() == first   # not the later version
    with (tmp_path / "out" / "dev" / "labels.tsv").open(encoding="utf-8") as f:
        labels = list(csv.DictReader(f, delimiter="\t"))
    assert labels == [{"filename": "note-a.png", "text": "Hello, World", "style": "mixed",
                       "source": f"alice/notes@{commit}:images/a.png", "md5": md5}]


def test_build_reports_changed_files_and_missing_clones(tmp_path: Path, clone) -> None:
    repos, commit, _ = clone
    rows = read_sources(_sources(tmp_path, [
        f"dev\twrong.png\tx\tmixed\talice/notes\t{commit}\timages/a.png\t{'0' * 32}",
        f"dev\tgone.png\tx\tmixed\tbob/none\t{commit}\timages/a.png\t{'0' * 32}",
        f"dev\tnopath.png\tx\tmixed\talice/notes\t{commit}\timages/b.png\t{'0' * 32}"]))
    problems = build(repos, tmp_path / "out", rows)
    assert len(problems) == 3
    assert "md5 differs" in problems[0] and "no clone of bob/none" in problems[1]
    assert "has no images/b.png" in problems[2]
    assert not (tmp_path / "out" / "dev" / "wrong.png").exists()


def test_read_sources_refuses_duplicates_and_blank_columns(tmp_path: Path) -> None:
    row = f"dev\ta.png\tx\tmixed\talice/notes\t{'a' * 40}\ta.png\t{'0' * 32}"
    with pytest.raises(ValueError, match="twice"):
        read_sources(_sources(tmp_path, [row, row]))
    with pytest.raises(ValueError, match="every row needs"):
        read_sources(_sources(tmp_path, [row.replace("\tx\t", "\t\t")]))


def test_shipped_table_is_well_formed() -> None:
    rows = read_sources(SOURCES)
    sets = {row["set"] for row in rows}
    assert sets == {"extra-dev", "capitals16"}
    assert all(len(row["commit"]) == 40 and len(row["md5"]) == 32 for row in rows)
    assert all(row["filename"].startswith(row["style"]) for row in rows)
