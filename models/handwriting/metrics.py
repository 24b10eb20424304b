"""Whole-image text metrics: character error rate (CER) and exact-word accuracy.

Both are corpus-level and case-sensitive (upper-case both sides first for a
case-insensitive score). Texts are plain ``str``: words separated by spaces, lines by
``"\\n"``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
