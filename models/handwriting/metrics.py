"""Whole-image text metrics: character error rate (CER), exact-word accuracy, and the
per-image error counts of the page reports (two CERs and the word error rate, WER).

:func:`character_error_rate` and :func:`word_accuracy` are corpus-level and case-sensitive
(upper-case both sides first for a case-insensitive score). :class:`ErrorCounts` holds the
three page-report metrics, defined at :func:`error_counts`. Texts are plain ``str``: words
separated by spaces, lines by ``"\\n"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass

from rapidfuzz.distance import Levenshtein


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit-cost insertions, deletions, substitutions) between two
    strings; every character counts, spaces and newlines included.
    """
    return int(Levenshtein.distance(a, b))


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references; "
                         "pass one hypothesis per reference, in the same order")


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus CER: the sum of edit distances over the sum of reference lengths.

    Spaces and newlines are characters like any other, so a missed word break or a
    merged line costs one edit each. The value is >= 0 and can exceed 1 when the
    hypotheses are much longer than the references.

    Args:
        hypotheses: recognised texts, one per image.
        references: ground-truth texts, in the same order.

    Raises:
        ValueError: the sequences differ in length, or the references hold no characters.
    """
    _check_pairs(hypotheses, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("the references hold no characters, so CER is undefined")
    errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True))
    return errors / total


def _lines_of_words(text: str) -> list[list[str]]:
    """``text`` as its non-blank lines, each split on whitespace into words."""
    return [line.split() for line in text.splitlines() if line.strip()]


def word_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of reference words recognised exactly, compared by position.

    Definition: each text is cut into its non-blank lines and each line into words on
    whitespace. The j-th word of the i-th reference line is correct when the i-th
    hypothesis line has a j-th word equal to it. A missing line or word counts as wrong;
    extra hypothesis words or lines are not counted here (CER penalises them). Positional
    matching means a merged or split word also makes the rest of its line wrong.

    Returns:
        correct reference words / all reference words, in [0, 1].

    Raises:
        ValueError: the sequences differ in length, or the references hold no words.
    """
    _check_pairs(hypotheses, references)
    correct = total = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp_lines = _lines_of_words(hyp)
        for i, ref_words in enumerate(_lines_of_words(ref)):
            hyp_words = hyp_lines[i] if i < len(hyp_lines) else []
            total += len(ref_words)
            correct += sum(j < len(hyp_words) and hyp_words[j] == w
                           for j, w in enumerate(ref_words))
    if total == 0:
        raise ValueError("the references hold no words, so word accuracy is undefined")
    return correct / total


# ------------------------------------------------------------ per-image error counts
#
# The page reports (``modelzoo evaluate handwriting --pages``, the Tesseract benchmark) score
# each image as error counts, then sum the counts over images: a corpus rate is total edits /
# total reference units, never a mean of per-image ratios (a one-word line weighs less than
# a page).


def normalize_whitespace(text: str) -> str:
    """``text`` with every run of whitespace (spaces, tabs, newlines, form feeds) turned
    into one space, and none at either end."""
    return " ".join(text.split())


def letters_az(text: str) -> str:
    """The A–Z letters of ``text`` upper-cased, in order; everything else is dropped:
    spaces, newlines, digits, punctuation and letters outside A–Z (``"é"``, ``"ß"``).

    ``"Hello, World!"`` → ``"HELLOWORLD"``.
    """
    return "".join(c for c in text.upper() if "A" <= c <= "Z")


def words_of(text: str) -> list[str]:
    """The words of ``text`` for WER: upper-cased, every character that is neither a letter,
    a digit nor whitespace deleted (so ``"don't"`` → ``"DONT"``, ``"page."`` → ``"PAGE"``,
    a lone ``"-"`` vanishes), then split on whitespace."""
    return "".join(c for c in text.upper() if c.isalnum() or c.isspace()).split()


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one image, or summed over several (``+``).

    Attributes:
        char_edits, chars: case-sensitive CER: Levenshtein distance between the texts after
            :func:`normalize_whitespace`, and the normalized reference's length.
        az_edits, az_chars: case-insensitive A–Z CER: the same on :func:`letters_az` of
            both texts (no spaces, no punctuation).
        word_edits, words: WER: word-level Levenshtein distance between :func:`words_of`
            both texts (a word substituted, inserted or deleted costs one), and the
            reference's word count.
    """

    char_edits: int = 0
    chars: int = 0
    az_edits: int = 0
    az_chars: int = 0
    word_edits: int = 0
    words: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def cer(self) -> float:
        """Case-sensitive CER, ``nan`` when the references hold no characters."""
        return _rate(self.char_edits, self.chars)

    @property
    def cer_az(self) -> float:
        """Case-insensitive A–Z CER, ``nan`` when the references hold no A–Z letters."""
        return _rate(self.az_edits, self.az_chars)

    @property
    def wer(self) -> float:
        """Word error rate, ``nan`` when the references hold no words."""
        return _rate(self.word_edits, self.words)


def _rate(edits: int, total: int) -> float:
    return edits / total if total else math.nan


def error_counts(hypothesis: str, reference: str) -> ErrorCounts:
    """The :class:`ErrorCounts` of one hypothesis against its reference."""
    hyp, ref = normalize_whitespace(hypothesis), normalize_whitespace(reference)
    hyp_az, ref_az = letters_az(hypothesis), letters_az(reference)
    hyp_words, ref_words = words_of(hypothesis), words_of(reference)
    return ErrorCounts(edit_distance(hyp, ref), len(ref),
                       edit_distance(hyp_az, ref_az), len(ref_az),
                       int(Levenshtein.distance(hyp_words, ref_words)), len(ref_words))


def total_counts(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    """The sum of per-image counts (zero counts for none)."""
    return sum(counts, ErrorCounts())
