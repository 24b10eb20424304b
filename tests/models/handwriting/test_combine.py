"""``models.handwriting.combine``: joint reading of a line by the CRNN and the letter CNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.handwriting.combine import (
    LetterEvidence,
    box_overlap,
    candidate_texts,
    ctc_frames,
    ctc_log_likelihoods,
    fold,
    joint_text,
    letter_log_ratio,
    merge_evidence,
    pair_boxes,
)

ALPHABET = "ABC"  # class 0 = blank, A = 1, B = 2, C = 3


def log_probs(rows: list[list[float]]) -> np.ndarray:
    """(T, 4) log-probabilities from rows of probabilities (blank, A, B, C)."""
    p = np.asarray(rows, np.float64)
    assert np.allclose(p.sum(axis=1), 1.0)
    return np.log(p).astype(np.float32)


def test_candidates_cross_every_disagreeing_stretch() -> None:
    # two stretches disagree (D/V and 2/L): the readings and both hybrids
    got = candidate_texts("RAGHAD BANSA2", "RAGHAV BANSAL", lower_case=False)
    assert got[0] == "RAGHAD BANSA2"
    assert sorted(got) == sorted(["RAGHAD BANSA2", "RAGHAV BANSA2", "RAGHAD BANSAL",
                                  "RAGHAV BANSAL"])
    # an insertion is a stretch too, and agreeing letters keep the first reading's case
    assert sorted(candidate_texts("Unc", "UMBC", lower_case=False)) == sorted(["Unc", "UMBc"])
    # digits agree with the letters they are written like: the first reading's stay
    assert sorted(candidate_texts("MO 21250", "MD ZIZSO", lower_case=False)) == \
        ["MD 21250", "MO 21250"]
    # a space more or less is a run of its own: the D can come without losing the space
    assert "MD 21250" in candidate_texts("MO 21250", "MDZIZSO", lower_case=False)
    # by default a run of the (case-blind) contour reading is offered in lower case too
    assert sorted(candidate_texts("for jumps", "FOX JUMPS")) == \
        ["foX jumps", "for jumps", "fox jumps"]
    assert candidate_texts("Hello", "HELLO") == ["Hello"]
    # too many stretches: only the two readings compete
    assert candidate_texts("ABCD", "AXCY", max_blocks=1) == ["ABCD", "AXCY"]
    assert candidate_texts("", "  ") == []


def test_fold_maps_lookalikes_and_keeps_length() -> None:
    assert fold("Mo 21250!") == "MO ZIZSOI"
    assert fold("a.b") == "A.B"


@settings(max_examples=60, deadline=None)
@given(st.text("ABC ", max_size=8), st.text("ABC ", max_size=8))
def test_candidates_contain_both_readings(a: str, b: str) -> None:
    got = candidate_texts(a, b, max_blocks=10)
    for text in (a, b):
        if text.split():
            assert " ".join(text.split()) in got
    assert len(got) == len(set(got))


def test_ctc_likelihood_is_the_sum_over_alignments() -> None:
    lp = log_probs([[0.5, 0.3, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]])
    p = np.exp(lp.astype(np.float64))
    # "A" over two frames: A A, A -, - A
    want_a = p[0, 1] * p[1, 1] + p[0, 1] * p[1, 0] + p[0, 0] * p[1, 1]
    want_ab = p[0, 1] * p[1, 2]
    got = ctc_log_likelihoods(lp, ["A", "AB", "AA", "AD", ""], ALPHABET)
    assert got[0] == pytest.approx(math.log(want_a), abs=1e-5)
    assert got[1] == pytest.approx(math.log(want_ab), abs=1e-5)
    # a repeated letter needs a blank between: three frames at least, so none fit in two
    assert got[2] == -math.inf
    assert got[3] == -math.inf  # D is not in the alphabet
    assert got[4] == -math.inf


def test_letter_ratio_scores_each_aligned_letter_against_chance() -> None:
    letters = [{"A": 0.9, "R": 0.05}, {"B": 0.8, "D": 0.1}]
    assert letter_log_ratio("AB", letters) == pytest.approx(
        math.log(26 * 0.9) + math.log(26 * 0.8))
    assert letter_log_ratio("a b", letters) == letter_log_ratio("AB", letters)
    assert letter_log_ratio("AD", letters) == pytest.approx(
        math.log(26 * 0.9) + math.log(26 * 0.1))
    # a class outside the top ones counts as the floor
    assert letter_log_ratio("AZ", letters, floor=1e-3) == pytest.approx(
        math.log(26 * 0.9) + math.log(26 * 1e-3))
    # a missing letter costs skip
    assert letter_log_ratio("A", letters, skip=-2.0) == pytest.approx(math.log(26 * 0.9) - 2)
    # a digit scores as its most probable look-alike: a 0 the CNN reads as O like the O,
    # a 2 where the CNN is sure of an L as badly as a Z there
    sure_o = [{"O": 0.94, "D": 0.03}]
    assert letter_log_ratio("0", sure_o) == letter_log_ratio("O", sure_o)
    sure_l = [{"L": 0.83, "I": 0.1}]
    assert letter_log_ratio("2", sure_l) == letter_log_ratio("Z", sure_l) < \
        letter_log_ratio("L", sure_l)
    assert letter_log_ratio("1", sure_l) == letter_log_ratio("L", sure_l)
    # another sign scores the mass outside the CNN's best letter
    assert letter_log_ratio(".", sure_l) == pytest.approx(math.log(26 * 0.17))
    assert letter_log_ratio("", []) == 0.0


def test_ctc_frames_are_the_viterbi_first_emissions() -> None:
    lp = log_probs([[0.9, 0.05, 0.03, 0.02], [0.1, 0.8, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05],
                    [0.8, 0.1, 0.05, 0.05], [0.1, 0.05, 0.8, 0.05]])
    assert ctc_frames(lp, "AB", ALPHABET) == [1, 4]
    # a repeated letter: emitted again after the blank at frame 3
    assert ctc_frames(lp, "AA", ALPHABET) == [1, 4]
    assert ctc_frames(lp, "", ALPHABET) == []
    with pytest.raises(ValueError, match="outside the alphabet"):
        ctc_frames(lp, "AZ", ALPHABET)


def test_the_letter_cnn_decides_what_the_crnn_is_unsure_of() -> None:
    # the CRNN leans to B at frame 2, barely; the letter CNN is sure it is C
    lp = log_probs([[0.05, 0.9, 0.03, 0.02], [0.9, 0.04, 0.03, 0.03],
                    [0.05, 0.05, 0.47, 0.43]])
    sure_c = LetterEvidence((0, 0, 30, 10), "AC", [{"A": 0.95}, {"C": 0.9, "B": 0.05}])
    assert joint_text(lp, ALPHABET, "AB", sure_c, None, 0.0, 0.0, weight=0.7) == "AC"
    # weight 0: the CRNN's reading stands
    assert joint_text(lp, ALPHABET, "AB", sure_c, None, 0.0, 0.0, weight=0.0) == "AB"
    # an unsure CNN does not overturn a sure CRNN
    sure_b = log_probs([[0.05, 0.9, 0.03, 0.02], [0.9, 0.04, 0.03, 0.03],
                        [0.05, 0.05, 0.85, 0.05]])
    unsure = LetterEvidence((0, 0, 30, 10), "AC", [{"A": 0.95}, {"C": 0.4, "B": 0.3}])
    assert joint_text(sure_b, ALPHABET, "AB", unsure, None, 0.0, 0.0, weight=0.7) == "AB"


def test_boxes_pair_in_exclusive_groups() -> None:
    assert box_overlap((0, 0, 10, 10), (5, 0, 10, 10)) == 0.5
    assert box_overlap((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert box_overlap((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0
    top, bottom, both = (0, 0, 100, 10), (0, 20, 100, 10), (0, 0, 100, 30)
    assert pair_boxes([top, bottom], [top, bottom], 0.5) == {0: [0], 1: [1]}
    # one line over two that meet nothing else: a group of two
    assert pair_boxes([both], [top, bottom], 0.5) == {0: [0, 1]}
    # a box shared by two lines pairs with neither
    assert pair_boxes([top, both], [top, bottom], 0.5) == {}
    assert pair_boxes([top], [both, bottom], 0.5) == {0: [0]}
    assert pair_boxes([top], [], 0.5) == {}


def test_merged_evidence_reads_left_to_right() -> None:
    right = LetterEvidence((50, 0, 40, 10), "MODELS", [{"M": 0.9}] * 6)
    left = LetterEvidence((10, 5, 5, 20), "L", [{"L": 0.7}])
    merged = merge_evidence([right, left])
    assert merged.text == "L MODELS"
    assert merged.box == (10, 0, 80, 25)
    assert merged.letters == [{"L": 0.7}] + [{"M": 0.9}] * 6
    assert merge_evidence([right]) == right
    with pytest.raises(ValueError, match="no contour lines"):
        merge_evidence([])
