"""Rebuild the real-image development sets of the README from their public sources.

The README's real-image figures for handwriting (``extra-dev/``: 40 photos and scans;
``capitals16/``: 16 images of block capitals) come from images in public GitHub
repositories. The repository does not ship the images: it ships their sources and our
transcriptions in ``benchmarks/handwriting_dev_sources.tsv`` (one row per image: set,
filename, text, style, repo, commit, path, md5). This script takes each image out of a
local clone of its repository at the pinned commit (``git show COMMIT:PATH``), checks its
md5, and writes one folder per set with the images and a ``labels.tsv`` (filename, text,
style, source, md5) that ``modelzoo evaluate handwriting --pages`` and the handwriting
benchmarks read.

Clones are looked up under ``--repos`` as ``OWNER/NAME`` (``git clone
https://github.com/OWNER/NAME REPOS/OWNER/NAME``) or ``OWNER+NAME/repo`` (a bare mirror);
a missing repository or a changed file is reported and skipped, and the script exits 1
unless every image was written.

    python benchmarks/handwriting_dev_set.py --repos ~/src --out dev/
    # writes dev/extra-dev/ and dev/capitals16/

Never train on these images: the training commands take each ``labels.tsv`` as
``--exclude-labels``. The source repositories state no common licence; use the images for
evaluation only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

SOURCES = Path(__file__).with_name("handwriting_dev_sources.tsv")
LABEL_COLUMNS = ("filename", "text", "style", "source", "md5")


def read_sources(path: Path = SOURCES) -> list[dict[str, str]]:
    """Rows of the sources table (keys: set, filename, text, style, repo, commit, path, md5).

    Raises:
        ValueError: a row lacks a column, or a filename appears twice in one set.
    """
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    need = {"set", "filename", "text", "style", "repo", "commit", "path", "md5"}
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(rows, start=2):
        if any(not row.get(key) for key in need):
            raise ValueError(f"{path}:{i}: every row needs {sorted(need)}")
        key = (row["set"], row["filename"])
        if key in seen:
            raise ValueError(f"{path}:{i}: {row['filename']} twice in set {row['set']}")
        seen.add(key)
    return rows


def find_repo(root: Path, repo: str) -> Path | None:
    """The local git directory of ``OWNER/NAME`` under ``root``, or None where there is none."""
    owner, name = repo.split("/", 1)
    mirror = root / f"{owner}+{name}"
    for candidate in (root / owner / name, mirror / "repo", mirror):
        if candidate.is_dir():
            return candidate
    return None


def git_blob(git_dir: Path, commit: str, path: str) -> bytes:
    """The bytes of ``path`` at ``commit`` in the repository at ``git_dir``.

    Raises:
        subprocess.CalledProcessError: the commit or the path is not in that repository.
    """
    return subprocess.run(["git", "-C", str(git_dir), "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def build(repos: Path, out: Path, rows: list[dict[str, str]]) -> list[str]:
    """Write each set's images and ``labels.tsv`` under ``out``; return the problems found."""
    problems: list[str] = []
    written: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        git_dir = find_repo(repos, row["repo"])
        if git_dir is None:
            problems.append(f"{row['filename']}: no clone of {row['repo']} under {repos}")
            continue
        try:
            data = git_blob(git_dir, row["commit"], row["path"])
        except subprocess.CalledProcessError:
            where = f"{row['repo']}@{row['commit'][:12]}"
            problems.append(f"{row['filename']}: {where} has no {row['path']}")
            continue
        if hashlib.md5(data).hexdigest() != row["md5"]:
            problems.append(f"{row['filename']}: md5 differs from the table's {row['md5']}")
            continue
        folder = out / row["set"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / row["filename"]).write_bytes(data)
        written.setdefault(row["set"], []).append(row)
    for name, done in written.items():
        with (out / name / "labels.tsv").open("w", encoding="utf-8", newline="") as f:
            f.write("\t".join(LABEL_COLUMNS) + "\n")
            for row in done:
                source = f"{row['repo']}@{row['commit']}:{row['path']}"
                cells = (row["filename"], row["text"], row["style"], source, row["md5"])
                f.write("\t".join(cells) + "\n")
    return problems


def main() -> int:
    """Command-line entry point; exit status 1 if any image could not be written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=Path, required=True, help="folder of local clones")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write one subfolder per set into")
    parser.add_argument("--sources", type=Path, default=SOURCES)
    args = parser.parse_args()
    rows = read_sources(args.sources)
    problems = build(args.repos, args.out, rows)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(rows) - len(problems)} of {len(rows)} images written under {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
