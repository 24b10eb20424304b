"""``predictor.fuse_lines``: line-level combination of the contour and line readings."""

from __future__ import annotations

import numpy as np
import pytest

from models.handwriting.charlm import CharNgramLM
from models.handwriting.predictor import Letter, Recognition, fuse_lines, line_score

Box = tuple[int, int, int, int]


def reading(pipeline: str, lines: list[tuple[str, Box, list[float]]]) -> Recognition:
    """A recognition of ``(text, line box, per-letter confidences)`` lines: each character
    (spaces too) takes an equal slice of its line's box, and spaces separate words."""
    letters = []
    for i, (text, box, conf) in enumerate(lines):
        assert len([c for c in text if c != " "]) == len(conf)
        step = box[2] / max(1, len(text))
        probs = iter(conf)
        word = 0
        for k, c in enumerate(text):
            if c == " ":
                word += 1
                continue
            p = next(probs)
            letter_box = (round(box[0] + k * step), box[1], max(1, round(step)), box[3])
            letters.append(Letter(c, p, letter_box, i, word, [(c, p)]))
    return Recognition("\n".join(t for t, _, _ in lines), [t for t, _, _ in lines], letters,
                       400, 300, {}, pipeline, [b for _, b, _ in lines],
                       [[b] for _, b, _ in lines])


TOP: Box = (10, 10, 300, 40)
MIDDLE: Box = (10, 80, 120, 40)
BOTTOM: Box = (10, 150, 300, 40)


def test_sure_contour_line_replaces_an_unsure_recognizer_line() -> None:
    contours = reading("contours", [("HELLO", TOP, [0.99] * 5), ("YOU", MIDDLE, [0.97] * 3)])
    lines = reading("lines", [("HELLO", TOP, [0.98] * 5), ("tOU", MIDDLE, [0.5, 0.4, 0.6])])
    fused = fuse_lines(contours, lines)
    assert fused.lines == ["HELLO", "YOU"]
    assert fused.text == "HELLO\nYOU"
    assert fused.line_pipelines == ["lines", "contours"]
    assert fused.pipeline == "lines"
    assert [c.line for c in fused.letters] == [0] * 5 + [1] * 3
    assert "".join(c.char for c in fused.letters if c.line == 1) == "YOU"


def test_a_sure_recognizer_line_is_kept() -> None:
    contours = reading("contours", [("HELIO", TOP, [0.99] * 5)])
    lines = reading("lines", [("Hello", TOP, [0.95] * 5)])
    assert fuse_lines(contours, lines) is lines


def test_an_unsure_contour_line_is_not_taken() -> None:
    contours = reading("contours", [("YOU", MIDDLE, [0.99, 0.4, 0.99])])  # one letter < 0.5
    lines = reading("lines", [("tOU", MIDDLE, [0.5, 0.4, 0.6])])
    assert fuse_lines(contours, lines) is lines
    low_mean = reading("contours", [("YOU", MIDDLE, [0.8, 0.8, 0.8])])
    assert fuse_lines(low_mean, lines) is lines


def test_a_line_the_recognizer_missed_is_added_in_reading_order() -> None:
    contours = reading("contours", [("TOP", TOP, [0.99] * 3), ("MY", MIDDLE, [0.95] * 2),
                                    ("END", BOTTOM, [0.99] * 3)])
    lines = reading("lines", [("Top", TOP, [0.99] * 3), ("End", BOTTOM, [0.99] * 3)])
    fused = fuse_lines(contours, lines)
    assert fused.lines == ["Top", "MY", "End"]
    assert fused.line_pipelines == ["lines", "contours", "lines"]
    assert fused.line_boxes == [TOP, MIDDLE, BOTTOM]
    assert [c.line for c in fused.letters] == [0, 0, 0, 1, 1, 2, 2, 2]
    # a single letter alone is more likely a stray mark: not added with min_letters=2
    one = reading("contours", [("I", MIDDLE, [0.99])])
    assert fuse_lines(one, lines, min_letters=2) is lines
    assert fuse_lines(one, lines, min_letters=1).lines == ["Top", "I", "End"]


def test_lines_that_do_not_pair_one_to_one_stay_as_read() -> None:
    # two contour lines inside one recognizer line (the CNN split a line in two)
    left: Box = (10, 10, 140, 40)
    right: Box = (170, 10, 140, 40)
    contours = reading("contours", [("AB", left, [0.99] * 2), ("CD", right, [0.99] * 2)])
    lines = reading("lines", [("A8 CD", TOP, [0.5] * 4)])
    assert fuse_lines(contours, lines) is lines


def test_no_contour_lines_or_no_recognizer_lines() -> None:
    empty_contours = reading("contours", [])
    lines = reading("lines", [("tOU", MIDDLE, [0.5, 0.4, 0.6])])
    assert fuse_lines(empty_contours, lines) is lines
    contours = reading("contours", [("YOU", MIDDLE, [0.97] * 3)])
    fused = fuse_lines(contours, reading("lines", []))
    assert fused.lines == ["YOU"] and fused.line_pipelines == ["contours"]
    assert fused.pipeline == "contours"


def test_an_unpaired_line_needs_only_the_page_rules_bar() -> None:
    """Replacing a recognizer line takes a surer contour line (``line_mean``) than adding a
    line the recognizer has no reading for (``add_mean``, the page rule's)."""
    lines = reading("lines", [("tOU", MIDDLE, [0.5, 0.4, 0.6])])
    contours = reading("contours", [("YOU", MIDDLE, [0.85] * 3)])
    assert fuse_lines(contours, lines, line_mean=0.9) is lines
    assert fuse_lines(contours, reading("lines", []), add_mean=0.8).lines == ["YOU"]
    assert fuse_lines(contours, reading("lines", []), add_mean=0.9).lines == []


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    texts = ["there is a house", "where is the house", "here we are", "the other house"] * 5
    return CharNgramLM.train(texts, order=4, min_count=1, alphabet="abcdefghijklmnopqrstuvwxyz")


def test_on_a_contour_page_a_better_scored_recognizer_line_replaces_a_split_letter(
        lm: CharNgramLM) -> None:
    # the contour pipeline split the H of HOUSE into two I's; the recognizer read it whole
    contours = reading("contours", [("THERE", TOP, [0.99] * 5),
                                    ("IIOUSE", BOTTOM, [0.9, 0.9, 0.99, 0.99, 0.99, 0.99])])
    lines = reading("lines", [("THERE", TOP, [0.97] * 5), ("HOUSE", BOTTOM, [0.95] * 5)])
    fused = fuse_lines(contours, lines, base="contours", lm=lm)
    assert fused.lines == ["THERE", "HOUSE"]
    assert fused.line_pipelines == ["contours", "lines"]
    assert fused.pipeline == "lines"
    assert [c.line for c in fused.letters] == [0] * 5 + [1] * 5
    # without the LM the contour reading stays whole, and a large margin keeps it too
    assert fuse_lines(contours, lines, base="contours") is contours
    assert fuse_lines(contours, lines, base="contours", lm=lm, margin=50.0) is contours


def test_on_a_contour_page_unpaired_recognizer_lines_are_left_out(lm: CharNgramLM) -> None:
    contours = reading("contours", [("HOUSE", TOP, [0.99] * 5)])
    lines = reading("lines", [("HOUSE", TOP, [0.99] * 5), ("the", BOTTOM, [0.99] * 3)])
    fused = fuse_lines(contours, lines, base="contours", lm=lm)
    assert fused.lines == ["HOUSE"]


def test_on_a_line_page_a_better_scored_contour_line_replaces_a_sure_recognizer_line(
        lm: CharNgramLM) -> None:
    # the recognizer is fairly sure of a misreading the LM finds implausible
    contours = reading("contours", [("HERE WE ARE", TOP, [0.93] * 9)])
    lines = reading("lines", [("HEQE WE AQE", TOP, [0.92] * 9)])
    assert fuse_lines(contours, lines) is lines  # the confidence rule alone keeps it
    fused = fuse_lines(contours, lines, lm=lm)
    assert fused.lines == ["HERE WE ARE"] and fused.line_pipelines == ["contours"]


def test_line_score_adds_the_lm_to_the_confidence(lm: CharNgramLM) -> None:
    sure = reading("contours", [("HOUSE", TOP, [0.99] * 5)]).letters
    unsure = reading("contours", [("HOUSE", TOP, [0.5] * 5)]).letters
    assert line_score(sure, "HOUSE", lm, 0.5) > line_score(unsure, "HOUSE", lm, 0.5)
    assert line_score(sure, "HOUSE", lm, 0.5) > line_score(sure, "XQZJK", lm, 0.5)
    assert line_score(sure, "XQZJK", lm, 0.0) == pytest.approx(np.log(0.99))


def test_an_unknown_base_is_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        fuse_lines(reading("contours", []), reading("lines", []), base="tesseract")


def test_joint_pairs_keep_the_recognizer_line_on_either_base() -> None:
    # with joint=True the recognizer line of a pair has already weighed the contour reading
    contours = reading("contours", [("TOP", TOP, [0.99] * 3), ("YOU", MIDDLE, [0.97] * 3),
                                    ("END", BOTTOM, [0.99] * 3)])
    lines = reading("lines", [("Top", TOP, [0.99] * 3), ("tOU", MIDDLE, [0.5, 0.4, 0.6])])
    on_lines = fuse_lines(contours, lines, base="lines", joint=True)
    # no sure-contour replacement of the pair; the unpaired contour line is still added
    assert on_lines.lines == ["Top", "tOU", "END"]
    assert on_lines.line_pipelines == ["lines", "lines", "contours"]
    # on the contours base the pair whose letters differ takes the recognizer line; where
    # only the case differs (Top / TOP) the contour line stays, in block capitals
    on_contours = fuse_lines(contours, lines, base="contours", joint=True)
    assert on_contours.lines == ["TOP", "tOU", "END"]
    assert on_contours.line_pipelines == ["contours", "lines", "contours"]
    # without joint the contours base keeps its own lines
    assert fuse_lines(contours, lines, base="contours").lines == ["TOP", "YOU", "END"]


def test_joint_reading_stands_for_several_contour_lines_in_one_recognizer_line() -> None:
    # a stray contour "line" (a thin stroke) and the word, both inside the recognizer's one
    # line: on the contours base that line, read jointly with both, replaces the two
    stroke: Box = (280, 12, 10, 30)
    contours = reading("contours", [("L", stroke, [0.7]), ("MODELS", (10, 15, 260, 30),
                                                            [0.95] * 6)])
    lines = reading("lines", [("MODELS", TOP, [0.99] * 6)])
    fused = fuse_lines(contours, lines, base="contours", joint=True)
    assert fused.lines == ["MODELS"]
    assert fused.line_pipelines == ["lines"]
    # without joint the two contour lines stay
    assert fuse_lines(contours, lines, base="contours").lines == ["L", "MODELS"]
    # where the joint reading is the two contour lines' letters, they stay as they are
    same = reading("lines", [("l models", TOP, [0.99] * 7)])
    assert fuse_lines(contours, same, base="contours", joint=True).lines == ["L", "MODELS"]
