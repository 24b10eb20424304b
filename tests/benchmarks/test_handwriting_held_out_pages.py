"""benchmarks/handwriting_held_out_pages.py: the held-out real lines as a page folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.handwriting_held_out_pages import write_pages
from models.handwriting.evaluate import read_page_labels


def make_lines(root: Path, n: int) -> list[str]:
    """``n`` tiny line images under ``root/lines`` and their manifest; the texts."""
    (root / "lines").mkdir(parents=True)
    texts = [f"line \"number\" {i}" for i in range(n)]
    rows = ["path\ttext\tsource"]
    for i, text in enumerate(texts):
        img = np.full((20, 40), 255, np.uint8)
        img[5:15, 2:2 + i % 30] = 0  # each image differs
        cv2.imwrite(str(root / "lines" / f"{i}.png"), img)
        rows.append(f"lines/{i}.png\t{text}\ttest")
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return texts


def test_held_out_rows_become_a_page_folder(tmp_path: Path) -> None:
    texts = make_lines(tmp_path / "real", 60)
    out = tmp_path / "pages"
    # rows 19, 39 and 59 are held out (every 20th); --n 2 keeps the first two
    assert write_pages(tmp_path / "real", out, 2, " abcdefghijklmnopqrstuvwxyz0123456789\"") == 2
    labels = read_page_labels(out)
    assert [(lab.file, lab.text, lab.style) for lab in labels] == [
        ("0000.png", texts[19], "held-out lines"), ("0001.png", texts[39], "held-out lines")]
    assert (out / "0000.png").resolve() == (tmp_path / "real" / "lines" / "19.png").resolve()
    # characters outside the alphabet are dropped, as training drops them
    write_pages(tmp_path / "real", out, 1, " lien")
    assert read_page_labels(out)[0].text == "line ne"


def test_evaluation_images_are_left_out(tmp_path: Path) -> None:
    texts = make_lines(tmp_path / "real", 60)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "labels.tsv").write_text(f"filename\ttext\nx.png\t{texts[19]}\n")
    out = tmp_path / "pages"
    alphabet = " abcdefghijklmnopqrstuvwxyz0123456789\""
    assert write_pages(tmp_path / "real", out, 5, alphabet, [dev / "labels.tsv"]) == 2
    assert [lab.text for lab in read_page_labels(out)] == [texts[39], texts[59]]
