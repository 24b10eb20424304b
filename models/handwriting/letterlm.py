"""Language-model decoding of the contour pipeline's letters: the letter CNN's class
probabilities of a line's crops, combined with the character n-gram language model.

The letter CNN classifies each crop on its own, so a well-formed but ambiguous letter
(L/I, O/D, U/V, N/H) is read without looking at its neighbours: ``WEIL`` for WELL,
``POLIT`` for POINT. This module picks the letters of a whole line at once by beam
search over the log-linear combination

    score(c_1 .. c_n) = sum_i ln P_CNN(c_i | crop_i) + lm_weight * ln P_LM(line text),

where the line text is the letters with a space between words (the segmentation's word
boundaries) and an end of line, scored by :class:`models.handwriting.charlm.CharNgramLM`
(case-insensitive). This is the noisy-channel correction of isolated-character OCR with a
character n-gram model (Kukich 1992, "Techniques for automatically correcting words in
text", ACM Computing Surveys 24(4), sec. 2) in the shallow-fusion form the CTC decoder uses
(:func:`models.handwriting.ctc.beam_search`). With ``lm_weight = 0`` (or no LM) it is the
CNN's argmax per letter. Segmentation errors (a letter split in two or two letters merged)
are not corrected: the letters' number and the word boundaries are kept as segmented.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.handwriting.charlm import CharNgramLM


def decode_line(probs: np.ndarray, word_lengths: Sequence[int], classes: str,
                lm: CharNgramLM | None, lm_weight: float, beam_size: int = 8,
                top_k: int = 5, min_prob: float = 1e-3) -> np.ndarray:
    """The best class of each letter of one line, under the CNN and the language model.

    Each letter's candidates are its ``top_k`` most probable classes with probability at
    least ``min_prob`` (the CNN's best class always); the search keeps the ``beam_size``
    best partial lines after each letter and adds the LM's space between words and its
    end-of-line event at the end.

    Args:
        probs: float (N, C) class probabilities of the line's letters in reading order
            (rows of softmax outputs).
        word_lengths: letters per word, in order; they sum to N.
        classes: ``C`` characters, ``classes[i]`` for class ``i``.
        lm: the character language model; None gives the argmax of every row.
        lm_weight: weight of ``ln P_LM`` (natural log) against the CNN's ``ln P``; 0 gives
            the argmax.
        beam_size: partial lines kept (>= 1).
        top_k: candidates per letter (>= 1).
        min_prob: candidates below this probability are not tried.

    Returns:
        int64 (N,): the chosen class index of each letter.

    Raises:
        ValueError: ``probs`` is not (N, len(classes)), the word lengths do not sum to N or
            one is below 1, or ``beam_size``/``top_k`` is below 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"probs must be (N, {len(classes)}), got {p.shape}")
    if sum(word_lengths) != len(p) or any(n < 1 for n in word_lengths):
        raise ValueError(f"word lengths {list(word_lengths)} do not split {len(p)} letters")
    if beam_size < 1 or top_k < 1:
        raise ValueError(f"beam_size and top_k must be >= 1, got {beam_size}, {top_k}")
    best = p.argmax(axis=1)
    if lm is None or lm_weight == 0.0 or len(p) == 0:
        return best.astype(np.int64)
    log_p = np.log(np.clip(p, 1e-12, None))
    # (score, text so far, chosen classes)
    beams: list[tuple[float, str, tuple[int, ...]]] = [(0.0, "", ())]
    row = 0
    for w, n in enumerate(word_lengths):
        if w:
            beams = [(s + lm_weight * lm.log_prob(t, " "), t + " ", c) for s, t, c in beams]
        for _ in range(n):
            order = np.argsort(-p[row])[:top_k]
            cand = [int(k) for k in order if p[row, k] >= min_prob or k == best[row]]
            grown = [(s + log_p[row, k] + lm_weight * lm.log_prob(t, classes[k]),
                      t + classes[k], (*c, k))
                     for s, t, c in beams for k in cand]
            grown.sort(key=lambda b: -b[0])
            beams = grown[:beam_size]
            row += 1
    final = max(beams, key=lambda b: b[0] + lm_weight * lm.end_log_prob(b[1]))
    return np.asarray(final[2], dtype=np.int64)
