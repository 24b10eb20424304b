"""Write the held-out rows of a real line/word image folder as a page folder.

A real-lines folder (``modelzoo data iam-lines --out-dir DIR``: ``manifest.tsv`` with
``path``, ``text``[, ``source``]) gives the CRNN its real training lines, all but every 20th
row (``models.handwriting.reallines.RealLineBank``, split ``val``). This script links the
first ``--n`` of those held-out rows into ``--out`` with a ``labels.tsv`` (``filename``,
``text``, ``style``), so the whole served pipeline (``pipeline=auto|lines|contours``) can be
scored on real handwriting that no model here was trained on:

    python benchmarks/handwriting_held_out_pages.py --real-lines DIR --out held-out/ --n 200
    modelzoo evaluate handwriting --pages held-out/ --pipeline auto --json

Texts are kept as training sees them (characters outside the CRNN's alphabet dropped).
Images are symbolic links to the folder's files (nothing is copied).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from models.common.paths import artifacts_dir
from models.handwriting.reallines import RealLineBank


def write_pages(real_lines: Path, out: Path, n: int, alphabet: str,
                exclude: list[Path] | None = None, style: str = "held-out lines") -> int:
    """Link the first ``n`` held-out rows of ``real_lines`` into ``out`` and write
    ``out/labels.tsv``.

    Args:
        real_lines: a folder with ``manifest.tsv``.
        out: the page folder to write (created; existing links of the same names replaced).
        n: at most this many rows.
        alphabet: the characters kept in the texts.
        exclude: ``labels.tsv`` files of evaluation images, left out (by md5 and text).
        style: the ``style`` column of every row.

    Returns:
        The number of rows written.

    Raises:
        FileNotFoundError: no ``manifest.tsv`` in ``real_lines``.
        ValueError: no held-out row with a usable text.
    """
    bank = RealLineBank.load(real_lines, alphabet, exclude, split="val")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (path, text) in enumerate(zip(bank.paths[:n], bank.texts[:n], strict=True)):
        name = f"{i:04d}{path.suffix}"
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path.resolve())
        rows.append((name, text, style))
    with (out / "labels.tsv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None,
                            lineterminator="\n")
        writer.writerow(("filename", "text", "style"))
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-lines", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--exclude-labels", type=Path, action="append", default=[],
                        help="labels.tsv of evaluation images to leave out (repeatable)")
    parser.add_argument("--artifact-dir", type=Path,
                        default=artifacts_dir() / "handwriting" / "crnn",
                        help="the CRNN artifact whose alphabet the texts keep")
    args = parser.parse_args()
    alphabet = json.loads((args.artifact_dir / "config.json").read_text())["alphabet"]
    count = write_pages(args.real_lines, args.out, args.n, alphabet, args.exclude_labels)
    print(f"{args.out}: {count} held-out images of {args.real_lines}")


if __name__ == "__main__":
    main()
