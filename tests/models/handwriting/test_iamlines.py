"""IAM line rebuilding: words pasted at their boxes, punctuation joined, evaluation texts out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from models.cli import app
from models.handwriting.iamlines import (
    build_iam_lines,
    join_tokens,
    overlaps,
    paste_line,
    read_words_txt,
)
from models.handwriting.linesynth import ALPHABET
from models.handwriting.reallines import RealLineBank


def _word(text: str, w: int, h: int, shade: int) -> np.ndarray:
    """A light-background crop with a dark bar of ``shade`` (so pasted pixels are traceable)."""
    img = np.full((h, w), 240, np.uint8)
    img[h // 4: 3 * h // 4, 2: w - 2] = shade
    return img


def _fake_iam(root: Path, rows: list[tuple[str, str, int, int, int, int, str]]) -> Path:
    """IAM layout under root: words.txt + words/<a01>/<form>/<id>.png for each row
    (word id, ok|err, x, y, w, h, text); a width of 0 writes no image."""
    lines = ["# IAM words.txt fixture"]
    for i, (wid, flag, x, y, w, h, text) in enumerate(rows):
        lines.append(f"{wid} {flag} 154 {x} {y} {max(w, 1)} {h} NN {text}")
        if w:
            form = wid.rsplit("-", 2)[0]
            path = root / "words" / form.split("-")[0] / form / f"{wid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), _word(text, w, h, 10 + 5 * i))
    (root / "words.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


ROWS = [
    # a01-000u line 00: three words and a comma, one word flagged err (kept in the line)
    ("a01-000u-00-00", "ok", 100, 50, 40, 30, "Hello"),
    ("a01-000u-00-01", "err", 150, 55, 50, 25, "there"),
    ("a01-000u-00-02", "ok", 202, 70, 6, 8, ","),
    ("a01-000u-00-03", "ok", 215, 48, 60, 34, "friend"),
    # a01-000u line 01: a word without its image -> line skipped
    ("a01-000u-01-00", "ok", 100, 120, 0, 30, "missing"),
    ("a01-000u-01-01", "ok", 150, 120, 30, 30, "image"),
    # b02-010 (another text): the evaluation text; b02-010x is the same text by another writer
    ("b02-010-00-00", "ok", 10, 10, 40, 30, "quick"),
    ("b02-010-00-01", "ok", 60, 10, 40, 30, "brown"),
    ("b02-010-00-02", "ok", 110, 10, 40, 30, "foxes"),
    ("b02-010x-00-00", "ok", 10, 10, 40, 30, "quick"),
    ("b02-010x-00-01", "ok", 60, 10, 40, 30, "brown"),
    ("b02-010x-00-02", "ok", 110, 10, 40, 30, "foxes"),
]


def test_join_tokens_writes_punctuation_against_its_word() -> None:
    assert join_tokens(["He", "said", '"', "no", '"', ",", "(", "twice", ")", "."]) == (
        'He said "no", (twice).')
    assert join_tokens(["it", "'s", "Mr.", "Brown", "'s", "dog"]) == "it's Mr. Brown's dog"
    assert join_tokens([]) == ""


def test_paste_line_puts_each_crop_at_its_box_darker_pixel_winning() -> None:
    a = np.full((10, 20), 200, np.uint8)
    b = np.full((6, 8), 50, np.uint8)
    line = paste_line([((100, 40), a), ((115, 44), b)], pad=3)
    # spans x 100..123, y 40..50, plus 3 px of white each side
    assert line.shape == (10 + 6, 23 + 6)
    assert line[3, 3] == 200 and line[7, 18] == 50  # b overlaps a: darker wins
    assert line[0].min() == 255 and line[:, -1].min() == 255
    with pytest.raises(ValueError, match="at least one"):
        paste_line([])


def test_overlaps_by_containment_or_a_shared_run_of_words() -> None:
    refs = ["The quick brown foxes jumped over"]
    assert overlaps("quick brown foxes jumped", refs)  # contained
    assert overlaps("a lazy dog and the quick brown foxes jumped", refs)  # 4-word run
    assert not overlaps("the brown foxes", refs)  # too short to be evidence
    assert not overlaps("nothing in common here at all", refs)
    # a crop of a few words of a line: all of the reference's words, in a row
    assert overlaps("if she made a list, followed a routine", ["made a list"])
    assert not overlaps("if she made lists, followed a routine", ["made a list"])
    assert not overlaps("one of the best", ["of the"])  # two words: too common


def test_read_words_txt_skips_comments_split_and_cut_rows(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text(
        "# comment\n"
        "a01-000u-00-00 ok 154 408 768 27 51 AT A\n"
        "a01-000u-00-01 ok 154 507 766 213 48 NN M Ps\n"  # split transcription: 10 fields
        "a01-000u-00-02 err 154 796 764 70 50 TO to\n"
        "a01-000u-00-03 ok 154 8", encoding="utf-8")  # cut short
    words = read_words_txt(tmp_path / "words.txt")
    assert [(w.word_id, w.ok, w.text) for w in words] == [
        ("a01-000u-00-00", True, "A"), ("a01-000u-00-02", False, "to")]
    assert words[0].box == (408, 768, 27, 51)
    assert (words[0].form, words[0].line_id, words[0].text_id) == (
        "a01-000u", "a01-000u-00", "a01-000")


def test_build_writes_lines_words_and_drops_evaluation_texts(tmp_path: Path) -> None:
    iam = _fake_iam(tmp_path / "iam", ROWS)
    (iam / "words/a01/a01-000u/a01-000u-01-01.png").write_bytes(b"")  # IAM has a 0-byte crop
    out = tmp_path / "out"
    counts = build_iam_lines(iam / "words.txt", iam / "words", out,
                             exclude_texts=["the quick brown foxes"], word_share=1.0)
    # line 00 of a01-000u kept; line 01 skipped (missing image); b02-010 and b02-010x dropped
    assert counts == {"lines": 1, "words": 2, "lines_skipped": 1, "texts_excluded": 1}
    rows = [r.split("\t") for r in (out / "manifest.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "text", "source"]
    by_path = {r[0]: r[1] for r in rows[1:]}
    assert by_path["lines/a01/a01-000u-00.png"] == "Hello there, friend"
    # single words: ok ones with a letter and 2+ characters whose crop decodes (not 'there' =
    # err, not ',', not the empty 'image')
    assert sorted(t for p, t in by_path.items() if p.startswith("words/")) == ["Hello", "friend"]
    assert not any("quick" in t for t in by_path.values())
    line = cv2.imread(str(out / "lines/a01/a01-000u-00.png"), cv2.IMREAD_GRAYSCALE)
    assert line.shape == (34 + 24, 175 + 24)  # boxes span x 100..275, y 48..82; pad 12
    # the err word's bar (shade 15) sits at its box: x 150-100+12 = 62.., y 55-48+12 = 19..
    assert line[19 + 12, 62 + 10] == 15
    # the folder is a --real-lines folder the trainer reads
    bank = RealLineBank.load(out, ALPHABET, split="all")
    assert sorted(bank.texts) == ["Hello", "Hello there, friend", "friend"]


def test_build_drops_the_text_of_a_word_crop_that_is_an_evaluation_image(tmp_path: Path) -> None:
    iam = _fake_iam(tmp_path / "iam", ROWS)
    crop = iam / "words/b02/b02-010x/b02-010x-00-01.png"  # 'brown' by writer x
    md5 = hashlib.md5(crop.read_bytes()).hexdigest()
    counts = build_iam_lines(iam / "words.txt", iam / "words", tmp_path / "out",
                             exclude_md5s={md5}, word_share=1.0)
    # the text b02-010 goes, both writers' copies; a01-000u stays
    assert (counts["lines"], counts["texts_excluded"]) == (1, 1)
    texts = (tmp_path / "out" / "manifest.tsv").read_text()
    assert "brown" not in texts and "Hello there, friend" in texts


def test_build_refuses_missing_folders_and_empty_label_files(tmp_path: Path) -> None:
    iam = _fake_iam(tmp_path / "iam", ROWS[:1])
    with pytest.raises(FileNotFoundError, match="words/ folder"):
        build_iam_lines(iam / "words.txt", tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no row"):
        build_iam_lines(tmp_path / "empty.txt", iam / "words", tmp_path / "out")
    with pytest.raises(ValueError, match="word_share"):
        build_iam_lines(iam / "words.txt", iam / "words", tmp_path / "out", word_share=2.0)


def test_cli_excludes_the_texts_of_given_labels_files(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_DATA_DIR", str(tmp_path / "no-data"))
    iam = _fake_iam(tmp_path / "iam", ROWS)
    labels = tmp_path / "labels.tsv"
    labels.write_text('filename\ttext\tstyle\nx.png\tquick brown foxes "\tcursive\n')
    runner = CliRunner()
    args = ["data", "iam-lines", "--words-txt", str(iam / "words.txt"), "--words-dir",
            str(iam / "words"), "--out-dir", str(tmp_path / "out"), "--word-share", "0"]
    res = runner.invoke(app, [*args, "--exclude-labels", str(labels)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert (summary["lines"], summary["words"], summary["texts_excluded"]) == (1, 0, 1)
    res = runner.invoke(app, [*args[:-2], "--exclude-labels", str(tmp_path / "none.tsv")])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.replace("│", " ").split())
    res = runner.invoke(app, ["data", "iam-lines", "--words-txt", str(tmp_path / "x.txt"),
                              "--words-dir", str(iam / "words"), "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "error:" in res.output
