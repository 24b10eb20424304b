"""Joint reading of one text line by the line recognizer and the letter classifier.

``pipeline=auto`` reads every page twice: the CRNN + CTC line recognizer, and contour
segmentation + the letter CNN. Where both found the same line, the line's text is chosen
among the two readings and their *hybrids* (every way of taking each stretch where they
disagree from one reading or the other) by one log-linear score, the sum of three experts'
log-likelihoods (a product of experts, Hinton 2002; in the form of the log-linear model
combination of Och & Ney 2002, with the weights measured on the development images):

    score(y) = ln P_CTC(y | line)                     the CRNN, exact CTC forward sum
             + alpha x ln P_LM(y + end) + beta x |y|   as in the beam search (shallow fusion)
             + weight x ln R_letters(y)                the letter CNN, below

``ln R_letters(y)`` is the best monotone alignment of ``y``'s non-space characters to the
contour letters, each aligned pair scoring the letter CNN's log-likelihood ratio against
chance, ``ln(26 p(c))`` (floored at ``LETTER_FLOOR``). A character outside A-Z is not one
of the CNN's classes: a digit or sign written like letters (``LOOKALIKES``: 0 like O or D,
1 like I or L, 2 like Z, 5 like S, ! like I, ...) scores as its most probable look-alike,
so the CNN neither speaks for nor against a 0 it reads as O, but does against a 2 it
reads as L; any other character scores the mass the CNN left outside its own best letter,
``ln(26 (1 - p_top))``. A character or a letter left unaligned costs ``skip``.

Lines without a contour line, and every line when the weight is 0, are not read jointly
(:meth:`models.handwriting.linereader.LineReader.read`): the beam search's reading stands.
Case and spaces of the hybrids come from the reading each stretch is taken from; the
contour reading is upper case.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein

from models.handwriting.charlm import CharNgramLM

#: Weight of the letter CNN's log-likelihood ratio (measured:
#: benchmarks/handwriting_pipeline_rule.py, "joint" rows).
JOINT_WEIGHT = 0.7
#: ln-score of a character or contour letter left out of the alignment.
JOINT_SKIP = -2.0
#: At most this many disagreeing stretches are combined (up to 3 ** n hybrids: either
#: reading's stretch, or the contour one in lower case); beyond it only the two readings
#: themselves compete.
JOINT_MAX_BLOCKS = 5
#: Floor of a letter CNN probability inside the log-likelihood ratio (the CNN reports its
#: top 3 classes; any other class counts as this).
LETTER_FLOOR = 1e-3
#: The letter CNN's classes.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Characters outside the letter CNN's classes that are written like letters: each scores
#: as the most probable of its look-alikes (the CNN, never shown a digit, reads a 0 as O),
#: and the two readings are aligned with it folded to its first look-alike.
LOOKALIKES = {"0": "OD", "1": "IL", "2": "Z", "3": "B", "4": "A", "5": "S", "6": "G",
              "7": "T", "8": "B", "9": "G", "!": "I", "&": "E", "(": "C"}


@dataclass(frozen=True)
class LetterEvidence:
    """The contour reading of one line.

    Attributes:
        box: the line's box ``(x, y, w, h)`` in decoded-image pixels.
        text: its text (upper case, words separated by one space).
        letters: per contour letter in reading order, the letter CNN's top classes as
            ``{letter: probability}``.
    """

    box: tuple[int, int, int, int]
    text: str
    letters: list[dict[str, float]]


def box_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area of two ``(x, y, w, h)`` boxes over the smaller box's area (0 when
    either is empty)."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    small = min(a[2] * a[3], b[2] * b[3])
    return max(0, ix) * max(0, iy) / small if small > 0 else 0.0


def pair_boxes(a: Sequence[tuple[int, int, int, int]], b: Sequence[tuple[int, int, int, int]],
               overlap: float) -> dict[int, list[int]]:
    """Groups ``{i: [j, ...]}``: box ``a[i]`` with every box ``b[j]`` whose
    :func:`box_overlap` with it is at least ``overlap``, when each of those ``b[j]`` meets
    no other box of ``a``; a box ``a[i]`` that shares one of its ``b`` boxes with another
    ``a`` box is left out. Within a group the ``b`` indices are in ascending order."""
    partners = [[j for j, bb in enumerate(b) if box_overlap(ab, bb) >= overlap] for ab in a]
    claimed = [sum(j in p for p in partners) for j in range(len(b))]
    return {i: p for i, p in enumerate(partners) if p and all(claimed[j] == 1 for j in p)}


def merge_evidence(parts: Sequence[LetterEvidence]) -> LetterEvidence:
    """Contour lines that lie in one recognizer line as one line: ordered left to right by
    their boxes' x, texts joined by a space, letters concatenated, boxes united.

    Raises:
        ValueError: no parts.
    """
    if not parts:
        raise ValueError("no contour lines to merge")
    ordered = sorted(parts, key=lambda e: e.box[0])
    x0 = min(e.box[0] for e in parts)
    y0 = min(e.box[1] for e in parts)
    x1 = max(e.box[0] + e.box[2] for e in parts)
    y1 = max(e.box[1] + e.box[3] for e in parts)
    return LetterEvidence((x0, y0, x1 - x0, y1 - y0), " ".join(e.text for e in ordered),
                          [letter for e in ordered for letter in e.letters])


def fold(text: str) -> str:
    """``text`` upper-cased, each character of :data:`LOOKALIKES` replaced by its first
    look-alike letter (same length as ``text``)."""
    return "".join(LOOKALIKES[c][0] if c in LOOKALIKES else c.upper() for c in text)


def candidate_texts(a: str, b: str, max_blocks: int = JOINT_MAX_BLOCKS,
                    lower_case: bool = True) -> list[str]:
    """``a``, ``b`` and their hybrids: the texts aligned case-insensitively with digits and
    signs folded to their letter look-alikes (:func:`fold`; Levenshtein opcodes), each
    maximal run of disagreeing positions taken from one or the other; where they agree,
    ``a``'s characters are kept (so the CRNN's ``21250`` stays against the contour
    reading's ``ZIZSO``). With ``lower_case`` a run may also be taken from ``b`` in lower
    case (``b`` is the case-blind contour reading). Whitespace is collapsed and empty texts
    are left out.

    Returns:
        Distinct texts, ``a`` first (when non-empty): every combination (up to ``3 **
        max_blocks``); with more than ``max_blocks`` disagreeing runs only ``a`` and ``b``
        (``b`` in ``a``'s case where they agree).
    """
    ops = Levenshtein.opcodes(fold(a), fold(b))
    blocks: list[tuple[str, str, bool]] = []  # (a's text, b's text, agree)
    for op in ops:
        sa, sb = a[op.src_start:op.src_end], b[op.dest_start:op.dest_end]
        agree = op.tag == "equal"
        gap = not (sa + sb).strip()  # a space more or less: a run of its own
        if blocks and not agree and not gap and not blocks[-1][2] and \
                (blocks[-1][0] + blocks[-1][1]).strip():
            pa, pb, _ = blocks.pop()
            blocks.append((pa + sa, pb + sb, False))
        else:
            blocks.append((sa, sb, agree))
    # the options of each disagreeing run: a's text, b's, and b's in lower case (the
    # letter CNN is case-blind, so the CRNN's likelihood picks the case of b's letters)
    options = [list(dict.fromkeys((blk[0], blk[1], blk[1].lower()) if lower_case else
                                  (blk[0], blk[1])))
               if not blk[2] else [blk[0]] for blk in blocks]
    if sum(not blk[2] for blk in blocks) > max_blocks:
        texts = ["".join(blk[0] for blk in blocks),
                 "".join(blk[0] if blk[2] else blk[1] for blk in blocks)]
    else:
        texts = ["".join(parts) for parts in itertools.product(*options)]
    out: dict[str, None] = {}
    for text in texts:
        text = " ".join(text.split())
        if text:
            out[text] = None
    return list(out)


def ctc_log_likelihoods(log_probs: np.ndarray, texts: Sequence[str], alphabet: str
                        ) -> np.ndarray:
    """``ln P_CTC(text | x)`` of each text: the CTC forward sum over every alignment
    (Graves et al. 2006), by ``torch.nn.functional.ctc_loss``.

    Args:
        log_probs: float32 (T, C) log-probabilities of one line, class 0 = blank.
        texts: the candidate texts.
        alphabet: ``C - 1`` characters; character ``alphabet[i]`` is class ``i + 1``.

    Returns:
        float64 (len(texts),); ``-inf`` for a text with a character outside ``alphabet``,
        an empty text, or one that cannot fit in T frames.
    """
    out = np.full(len(texts), -math.inf)
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    keep = [k for k, t in enumerate(texts) if t and all(c in index for c in t)]
    if not keep or log_probs.shape[0] == 0:
        return out
    targets = [torch.tensor([index[c] for c in texts[k]]) for k in keep]
    frames = log_probs.shape[0]
    lp = torch.from_numpy(np.ascontiguousarray(log_probs, np.float32))[:, None, :]
    loss = torch.nn.functional.ctc_loss(
        lp.expand(frames, len(keep), lp.shape[2]), torch.cat(targets),
        torch.full((len(keep),), frames, dtype=torch.long),
        torch.tensor([len(t) for t in targets]), blank=0, reduction="none")
    out[keep] = -loss.double().numpy()
    return out


def letter_log_ratio(text: str, letters: Sequence[dict[str, float]],
                     skip: float = JOINT_SKIP, floor: float = LETTER_FLOOR) -> float:
    """The letter CNN's support for ``text``: the best monotone alignment of ``text``'s
    non-space characters to ``letters`` (an edit-distance recursion), an aligned A-Z
    character ``c`` scoring ``ln(26 max(p(c), floor))``, a character of
    :data:`LOOKALIKES` the same for its most probable look-alike, any other character
    ``ln(26 max(1 - p_top, floor))``, and each unaligned character or letter ``skip``.

    Args:
        text: a candidate line (case-insensitive).
        letters: per contour letter, ``{letter: probability}`` (its top classes).

    Returns:
        The alignment's total score in nats (0.0 for no characters and no letters).
    """
    chars = [c.upper() for c in text if not c.isspace()]
    n, m = len(chars), len(letters)
    # gain[i][j]: score of aligning character i with letter j
    gain = [[_letter_gain(c, seg, floor) for seg in letters] for c in chars]
    prev = [j * skip for j in range(m + 1)]
    for i in range(1, n + 1):
        row = [i * skip] + [0.0] * m
        g = gain[i - 1]
        for j in range(1, m + 1):
            row[j] = max(prev[j - 1] + g[j - 1], prev[j] + skip, row[j - 1] + skip)
        prev = row
    return prev[m]


def _letter_gain(char: str, letter: dict[str, float], floor: float) -> float:
    """ln(26 p) of one upper-cased character against one contour letter's top classes."""
    if char in LETTERS:
        p = letter.get(char, floor)
    elif char in LOOKALIKES:
        p = max(letter.get(c, floor) for c in LOOKALIKES[char])
    else:
        p = 1.0 - max(letter.values(), default=0.0)
    return math.log(26 * max(p, floor))


def ctc_frames(log_probs: np.ndarray, text: str, alphabet: str) -> list[int]:
    """The frame where each character of ``text`` is first emitted on the most probable
    CTC path that collapses to it (Viterbi forced alignment).

    Args:
        log_probs: float (T, C) log-probabilities, class 0 = blank, ``alphabet[i]`` is
            class ``i + 1``.
        text: characters of ``alphabet``.

    Returns:
        ``len(text)`` non-decreasing frame indices (evenly spread when no path fits).

    Raises:
        ValueError: a character outside ``alphabet``.
    """
    frames_n = log_probs.shape[0]
    if not text:
        return []
    try:
        labels = [alphabet.index(c) + 1 for c in text]
    except ValueError as exc:
        raise ValueError(f"{text!r} has a character outside the alphabet") from exc
    ext = [0]
    for k in labels:
        ext += [k, 0]
    s_n = len(ext)
    neg = -math.inf
    score = np.full(s_n, neg)
    back = np.zeros((frames_n, s_n), np.int64)
    if frames_n:
        score[0] = log_probs[0, 0]
        if s_n > 1:
            score[1] = log_probs[0, ext[1]]
    for t in range(1, frames_n):
        new = np.full(s_n, neg)
        for s in range(s_n):
            best, arg = score[s], s
            if s >= 1 and score[s - 1] > best:
                best, arg = score[s - 1], s - 1
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2] and score[s - 2] > best:
                best, arg = score[s - 2], s - 2
            new[s] = best + log_probs[t, ext[s]]
            back[t, s] = arg
        score = new
    end = s_n - 1 if s_n < 2 or score[s_n - 1] >= score[s_n - 2] else s_n - 2
    if frames_n == 0 or not math.isfinite(score[end]):
        step = max(frames_n, 1) / len(text)
        return [min(int(k * step), max(frames_n - 1, 0)) for k in range(len(text))]
    path = [end]
    for t in range(frames_n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    path.reverse()
    first: dict[int, int] = {}
    for t, s in enumerate(path):
        if s % 2 == 1 and s not in first:
            first[s] = t
    return [first[2 * k + 1] for k in range(len(text))]


def joint_text(log_probs: np.ndarray, alphabet: str, line_text: str, evidence: LetterEvidence,
               lm: CharNgramLM | None, alpha: float, beta: float,
               weight: float = JOINT_WEIGHT, skip: float = JOINT_SKIP,
               max_blocks: int = JOINT_MAX_BLOCKS) -> str:
    """The best-scoring of :func:`candidate_texts` (``line_text``, ``evidence.text``) under
    the module's joint score.

    Args:
        log_probs: float32 (T, C) the CRNN's log-probabilities for the line.
        alphabet: the CRNN's characters (class ``i + 1`` is ``alphabet[i]``).
        line_text: the line recognizer's own reading (kept on ties).
        evidence: the contour reading of the same line.
        lm: the character LM (None: no LM term).
        alpha, beta: LM weight and per-character bonus, as in the beam search.
        weight, skip: of :func:`letter_log_ratio`.

    Returns:
        The chosen text (``line_text`` when no candidate scores finite).
    """
    texts = candidate_texts(line_text, evidence.text, max_blocks)
    if not texts:
        return line_text
    scores = ctc_log_likelihoods(log_probs, texts, alphabet)
    caseless: dict[str, float] = {}  # the LM and the letter CNN ignore case
    for k, text in enumerate(texts):
        if not math.isfinite(scores[k]):
            continue
        key = text.upper()
        if key not in caseless:
            caseless[key] = weight * letter_log_ratio(text, evidence.letters, skip) + (
                alpha * lm.line_log_prob(text)[0] + beta * len(text) if lm is not None
                else 0.0)
        scores[k] += caseless[key]
    best = int(np.argmax(scores))
    return texts[best] if math.isfinite(scores[best]) else line_text
