"""Scoring folders of labelled pages: the metrics, the labels files, and
``modelzoo evaluate handwriting --pages`` on a two-image folder drawn here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from models.cli import app
from models.handwriting.evaluate import (
    PRINT,
    ImageScore,
    PageLabel,
    PageReport,
    page_reader,
    read_page_labels,
    read_pages,
    score_pages,
)
from models.handwriting.metrics import (
    ErrorCounts,
    error_counts,
    letters_az,
    normalize_whitespace,
    total_counts,
    words_of,
)
from models.handwriting.predictor import HandwritingPredictor
from tests.app.test_handwriting_api import encode, page
from tests.conftest import ARTIFACTS

runner = CliRunner()
ARTIFACT = ARTIFACTS / "handwriting"

# (file, lines drawn in block capitals, label as written, style)
PAGES = [("hello.png", ["HELLO", "WORLD"], "Hello, World!", "mixed"),
         ("noway.png", ["NO WAY"], "NO WAY", "print")]


@pytest.fixture(scope="module")
def predictor() -> HandwritingPredictor:
    return HandwritingPredictor.load(ARTIFACT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two drawn pages and a labels.tsv with an extra column, as in the shared dev set."""
    root = tmp_path_factory.mktemp("pages")
    rows = ["filename\ttext\tstyle\tsource"]
    for name, lines, text, style in PAGES:
        (root / name).write_bytes(encode(page(lines)))
        rows.append(f"{name}\t{text}\t{style}\tdrawn by the test")
    (root / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def evaluate_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["evaluate", "handwriting", "--artifact-dir", str(ARTIFACT),
                                 *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------ metrics


def test_whitespace_runs_and_newlines_become_one_space() -> None:
    assert normalize_whitespace("  A \t B\n\nC\f ") == "A B C"
    counts = error_counts("A  B\nC\n", " A B C")
    assert (counts.char_edits, counts.chars) == (0, 5)


def test_case_sensitive_cer_counts_each_wrong_case() -> None:
    counts = error_counts("HELLO", "Hello")
    assert (counts.char_edits, counts.chars) == (4, 5)
    assert counts.cer == pytest.approx(0.8)


def test_az_cer_ignores_case_spaces_digits_and_punctuation() -> None:
    assert letters_az("Hello, World! 42 é") == "HELLOWORLD"
    counts = error_counts("HELLO\nWORLD", "Hello, World!")
    assert (counts.az_edits, counts.az_chars) == (0, 10)
    counts = error_counts("HELO WORLD", "hello world")  # one letter missing
    assert (counts.az_edits, counts.az_chars) == (1, 10)
    assert counts.cer_az == pytest.approx(0.1)


def test_wer_is_word_level_levenshtein_case_insensitive_without_punctuation() -> None:
    assert words_of("The first test-page. Don't!") == ["THE", "FIRST", "TESTPAGE", "DONT"]
    assert error_counts("THE FIRST PAGE", "The first test page.").word_edits == 1  # deletion
    counts = error_counts("THE CAT SAT ON MAT", "The dog sat on the mat")
    assert (counts.word_edits, counts.words) == (2, 6)  # one substitution, one deletion
    assert counts.wer == pytest.approx(2 / 6)
    assert error_counts("A B C D", "A").wer == pytest.approx(3.0)  # insertions can exceed 1


def test_rates_sum_edits_over_images_not_mean_of_ratios() -> None:
    short = error_counts("X", "A")                   # 1 edit in 1 letter: 100%
    long = error_counts("ABCDEFGHIJ", "ABCDEFGHIJ")  # 0 edits in 10 letters
    total = total_counts([short, long])
    assert (total.az_edits, total.az_chars) == (1, 11)
    assert total.cer_az == pytest.approx(1 / 11)    # the mean of ratios would be 0.5
    assert total == short + long


def test_rates_without_reference_units_are_nan() -> None:
    counts = error_counts("", "42 ?")  # no A-Z letters; "42" is a word
    assert math.isnan(counts.cer_az)
    assert counts.wer == 1.0
    assert math.isnan(ErrorCounts().cer) and math.isnan(total_counts([]).wer)


def test_print_group_sums_every_style_but_cursive() -> None:
    def score(style: str, hyp: str, ref: str) -> ImageScore:
        return ImageScore(f"{style}.png", style, ref, hyp, error_counts(hyp, ref), 1.0)

    images = [score("capitals", "HELLO", "HELLO"), score("mixed", "Wxrld", "World"),
              score("cursive", "xxxx", "abcd")]
    report = PageReport("dev", "test", images)
    assert report.rows() == ["capitals", "cursive", "mixed", PRINT, None]
    assert report.counts(PRINT) == images[0].counts + images[1].counts
    assert report.counts(PRINT).cer_az == pytest.approx(1 / 10)
    assert report.to_dict()["styles"][PRINT]["images"] == 2
    # no group without cursive, nor with cursive alone
    assert PageReport("dev", "t", images[:2]).rows() == ["capitals", "mixed", None]
    assert PageReport("dev", "t", images[2:]).rows() == ["cursive", None]


# ------------------------------------------------------------------------ labels files


def test_committed_artifact_loads(predictor: HandwritingPredictor) -> None:
    assert predictor.classes == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_tsv_labels_keep_text_as_written_and_ignore_extra_columns(folder: Path) -> None:
    assert read_page_labels(folder) == [PageLabel(n, t, s) for n, _, t, s in PAGES]


def test_jsonl_labels_are_still_accepted_with_style_unknown(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encode(page(["TAX"])))
    (tmp_path / "b.png").write_bytes(encode(page(["OK"])))
    (tmp_path / "labels.jsonl").write_text(
        json.dumps({"file": "a.png", "text": "TAX", "boxes": []}) + "\n"
        + json.dumps({"file": "b.png", "text": "OK", "style": "print"}) + "\n",
        encoding="utf-8")
    assert read_page_labels(tmp_path) == [PageLabel("a.png", "TAX", "unknown"),
                                          PageLabel("b.png", "OK", "print")]
    report = evaluate_json("--pages", str(tmp_path))["pages"][0]
    assert set(report["styles"]) == {"unknown", "print"}
    assert report["overall"]["images"] == 2


def test_score_pages_of_composed_sets_reads_jsonl(tmp_path: Path,
                                                  predictor: HandwritingPredictor) -> None:
    (tmp_path / "0000.png").write_bytes(encode(page(["NO WAY"])))
    (tmp_path / "labels.jsonl").write_text(
        json.dumps({"file": "0000.png", "text": "NO WAY", "boxes": []}) + "\n", encoding="utf-8")
    read = predictor.recognize((tmp_path / "0000.png").read_bytes())[0].text
    score = score_pages(predictor, tmp_path)
    assert score.n == 1
    assert score.cer == pytest.approx(error_counts(read, "NO WAY").char_edits / len("NO WAY"))


def test_missing_image_fails_naming_the_file(folder: Path, tmp_path: Path) -> None:
    labels = (folder / "labels.tsv").read_text(encoding="utf-8")
    (tmp_path / "hello.png").write_bytes((folder / "hello.png").read_bytes())
    (tmp_path / "labels.tsv").write_text(labels, encoding="utf-8")  # noway.png not copied
    result = runner.invoke(app, ["evaluate", "handwriting", "--pages", str(tmp_path)])
    assert result.exit_code == 1
    assert "noway.png" in result.output and "missing" in result.output
    assert "hello.png" not in result.output


def test_tsv_without_a_style_column_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "labels.tsv").write_text("filename\ttext\na.png\tA\n", encoding="utf-8")
    with pytest.raises(ValueError, match="style"):
        read_page_labels(tmp_path)


def test_folder_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labels\.tsv"):
        read_page_labels(tmp_path)


# ------------------------------------------------------------------------ pipelines


class _OnePipeline:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def recognize(self, data: bytes) -> tuple[Any, None]:
        self.calls.append({})
        return type("R", (), {"text": "OLD"})(), None


class _TwoPipelines:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def recognize(self, data: bytes, pipeline: str = "auto") -> tuple[Any, None]:
        self.calls.append({"pipeline": pipeline})
        return type("R", (), {"text": pipeline.upper()})(), None


def test_pipeline_is_passed_only_when_asked_and_supported() -> None:
    new = _TwoPipelines()
    assert page_reader(new, "lines")(b"") == "LINES"  # type: ignore[arg-type]
    assert page_reader(new)(b"") == "AUTO"  # type: ignore[arg-type]
    assert new.calls == [{"pipeline": "lines"}, {"pipeline": "auto"}]
    old = _OnePipeline()
    assert page_reader(old, "contours")(b"") == "OLD"  # type: ignore[arg-type]
    assert old.calls == [{}]
    with pytest.raises(ValueError, match="no line recognizer"):
        page_reader(old, "lines")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pipeline"):
        page_reader(new, "words")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the command


def test_evaluate_pages_reports_styles_and_overall_as_the_predictor_reads(
    folder: Path, predictor: HandwritingPredictor,
) -> None:
    report = evaluate_json("--pages", str(folder), "--pipeline", "contours")["pages"][0]
    assert "letters" not in report
    reads = {name: predictor.recognize((folder / name).read_bytes())[0].text
             for name, *_ in PAGES}
    assert [(i["file"], i["style"], i["hypothesis"]) for i in report["images"]] == [
        (name, style, reads[name]) for name, _, _, style in PAGES]
    counts = {name: error_counts(reads[name], text) for name, _, text, _ in PAGES}
    for name, _, _, style in PAGES:
        row = report["styles"][style]
        assert row["images"] == 1
        assert row["cer"] == pytest.approx(counts[name].cer, abs=1e-6)
        assert row["cer_az"] == pytest.approx(counts[name].cer_az, abs=1e-6)
        assert row["wer"] == pytest.approx(counts[name].wer, abs=1e-6)
    overall = total_counts(counts.values())
    assert report["overall"]["counts"] == {
        "char_edits": overall.char_edits, "chars": overall.chars, "az_edits": overall.az_edits,
        "az_chars": overall.az_chars, "word_edits": overall.word_edits, "words": overall.words}
    assert report["overall"]["cer_az"] == pytest.approx(overall.cer_az, abs=1e-6)


def test_evaluate_pages_prints_a_table_per_style_and_per_image(
    folder: Path, predictor: HandwritingPredictor,
) -> None:
    result = runner.invoke(app, ["evaluate", "handwriting", "--artifact-dir", str(ARTIFACT),
                                 "--pages", str(folder)])
    assert result.exit_code == 0, result.output
    report = read_pages(page_reader(predictor), folder)
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line}
    for style, key in (("mixed", "mixed"), ("print", "print"), (None, "overall")):
        c = report.counts(style)
        assert rows[key][2:5] == [f"{100 * c.cer_az:.1f}%", f"{100 * c.cer:.1f}%",
                                  f"{100 * c.wer:.1f}%"]
    for name, *_ in PAGES:
        assert name in rows
