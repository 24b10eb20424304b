"""Language-model decoding of contour letters (models/handwriting/letterlm.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.handwriting.charlm import CharNgramLM
from models.handwriting.letterlm import decode_line

CLASSES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    texts = ["well done", "the well is deep", "we sell well", "tell me well", "point to it",
             "a good point"] * 5
    return CharNgramLM.train(texts, order=4, min_count=1, alphabet="abcdefghijklmnopqrstuvwxyz")


def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    """(N, 26) rows: the given letters' probabilities, the rest spread evenly."""
    out = np.zeros((len(rows), len(CLASSES)))
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(CLASSES) - len(row))
        out[i] = rest
        for c, p in row.items():
            out[i, CLASSES.index(c)] = p
    return out


def _text(ids: np.ndarray) -> str:
    return "".join(CLASSES[i] for i in ids)


def test_the_lm_corrects_an_ambiguous_letter(lm: CharNgramLM) -> None:
    # the CNN prefers I over L for the third letter: WEIL; the LM knows "well"
    probs = _probs([{"W": 0.95}, {"E": 0.95}, {"I": 0.55, "L": 0.40}, {"L": 0.95}])
    assert _text(decode_line(probs, [4], CLASSES, None, 0.5)) == "WEIL"
    assert _text(decode_line(probs, [4], CLASSES, lm, 0.0)) == "WEIL"
    assert _text(decode_line(probs, [4], CLASSES, lm, 0.5)) == "WELL"


def test_a_sure_letter_is_kept_against_the_lm(lm: CharNgramLM) -> None:
    # "wexl" is unlikely for the LM, but the CNN is certain of the X
    probs = _probs([{"W": 0.95}, {"E": 0.95}, {"X": 0.999}, {"L": 0.95}])
    assert _text(decode_line(probs, [4], CLASSES, lm, 0.5)) == "WEXL"


def test_a_line_of_several_words(lm: CharNgramLM) -> None:
    # "a good point", with the CNN preferring D to O in the last word
    rows = [{"A": 0.95}, {"G": 0.95}, {"O": 0.95}, {"O": 0.95}, {"D": 0.95},
            {"P": 0.95}, {"D": 0.5, "O": 0.45}, {"I": 0.95}, {"N": 0.95}, {"T": 0.95}]
    ids = decode_line(_probs(rows), [1, 4, 5], CLASSES, lm, 0.5)
    assert _text(ids) == "AGOODPOINT"
    assert _text(decode_line(_probs(rows), [1, 4, 5], CLASSES, lm, 0.0)) == "AGOODPDINT"
    assert ids.dtype == np.int64 and ids.shape == (10,)


def test_weight_zero_and_no_lm_are_the_argmax(lm: CharNgramLM) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=7)
    expected = probs.argmax(axis=1)
    np.testing.assert_array_equal(decode_line(probs, [3, 4], CLASSES, lm, 0.0), expected)
    np.testing.assert_array_equal(decode_line(probs, [3, 4], CLASSES, None, 1.0), expected)


def test_bad_arguments_are_refused(lm: CharNgramLM) -> None:
    probs = _probs([{"A": 0.9}, {"B": 0.9}])
    with pytest.raises(ValueError, match="do not split"):
        decode_line(probs, [3], CLASSES, lm, 0.5)
    with pytest.raises(ValueError, match="do not split"):
        decode_line(probs, [2, 0], CLASSES, lm, 0.5)
    with pytest.raises(ValueError, match=r"\(N, 26\)"):
        decode_line(probs[:, :5], [2], CLASSES, lm, 0.5)
    with pytest.raises(ValueError, match="beam_size"):
        decode_line(probs, [2], CLASSES, lm, 0.5, beam_size=0)
