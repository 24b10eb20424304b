"""CTC decoding for the CRNN line recognizer (Shi, Bai & Yao 2015, arXiv:1507.05717).

The network emits per-frame log-probabilities over ``C`` classes, one of which is the CTC
blank (Graves, Fernández, Gomez & Schmidhuber 2006, "Connectionist Temporal Classification").
A labelling's probability is the sum over all frame paths that collapse to it (merge
repeats, then drop blanks).

- :func:`greedy_decode` takes the best path (argmax per frame) and collapses it.
- :func:`beam_search` is the CTC prefix beam search of Hannun, Maas, Jurafsky & Ng 2014
  ("First-pass large vocabulary continuous speech recognition using bi-directional
  recurrent DNNs", arXiv:1408.2873, Algorithm 1), with shallow fusion of a character LM:
  each emitted character multiplies the prefix's mass by ``P_LM(c | prefix)**alpha *
  exp(beta)``, and the end-of-line probability closes each final prefix.

Alphabets: ``alphabet[i]`` is the character of class ``i``; ``alphabet[blank]`` is a
placeholder for the blank (index 0 by default) and is never emitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from models.handwriting.charlm import CharNgramLM

#: Frames whose blank probability exceeds this only carry prefixes forward (no extensions).
BLANK_SKIP_PROB = 0.999
_NORM_TOL = 1e-2  # allowed |logsumexp(row)| for input rows that should be log-probabilities


@dataclass
class DecodeResult:
    """One decoded line.

    Attributes:
        text: the recognised characters.
        frames: for each character of ``text``, the frame where it was first emitted
            (beam search: the frame whose first emission of it carried the most mass).
        score: ``ln P(text | x)`` summed over the paths the beam kept; with an LM, plus
            ``alpha * ln P_LM(text + end) + beta * len(text)``.
    """

    text: str
    frames: list[int]
    score: float


def _as_array(log_probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """(T, C) float input as float64 numpy.

    Raises:
        ValueError: not 2-D, no classes, or NaN entries.
    """
    if isinstance(log_probs, torch.Tensor):
        log_probs = log_probs.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(log_probs, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"log_probs must be (T, C) with C >= 1, got shape {a.shape}; "
                         "decode one line at a time (index the batch first)")
    if np.isnan(a).any():
        raise ValueError("log_probs contains NaN")
    return a


def _check_blank(blank: int, num_classes: int) -> None:
    if not 0 <= blank < num_classes:
        raise ValueError(f"blank index {blank} is outside 0..{num_classes - 1}")


def greedy_decode(
    log_probs: np.ndarray | torch.Tensor, blank: int = 0
) -> list[tuple[int, int]]:
    """Best-path decoding: argmax per frame, merge repeated classes, drop blanks.

    Args:
        log_probs: (T, C) float, per-frame scores (log-probabilities or logits; only the
            argmax matters). Ties go to the lower class index.
        blank: the blank's class index.

    Returns:
        ``(class index, first frame of that symbol's run)`` per emitted symbol.

    Raises:
        ValueError: bad shape, NaN, or ``blank`` out of range.
    """
    a = _as_array(log_probs)
    _check_blank(blank, a.shape[1])
    best = a.argmax(axis=1)  # (T,)
    if len(best) == 0:
        return []
    run_start = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    return [(int(best[t]), int(t)) for t in run_start if best[t] != blank]


def decode_text(indices: Iterable[int | tuple[int, int]], alphabet: str) -> str:
    """Characters of class ``indices`` (ints, or the ``(class, frame)`` pairs of
    :func:`greedy_decode`).

    Raises:
        ValueError: an index outside the alphabet.
    """
    out = []
    for item in indices:
        i = item[0] if isinstance(item, tuple) else item
        if not 0 <= i < len(alphabet):
            raise ValueError(f"class index {i} is outside the alphabet of {len(alphabet)}")
        out.append(alphabet[i])
    return "".join(out)


class _Beam:
    """A prefix's CTC masses (probability space, scaled per frame; see beam_search).

    p_b / p_nb: mass of the paths ending in blank / in the prefix's last character.
    last: the last character's class (-1 for the empty prefix).
    frames: first-emission frame of each character; emit: the (scaled) mass of the
    emission that set ``frames[-1]``.
    """

    __slots__ = ("emit", "frames", "last", "p_b", "p_nb")

    def __init__(self, p_b: float, p_nb: float, last: int, frames: tuple[int, ...],
                 emit: float) -> None:
        self.p_b = p_b
        self.p_nb = p_nb
        self.last = last
        self.frames = frames
        self.emit = emit


def beam_search(
    log_probs: np.ndarray | torch.Tensor,
    alphabet: str,
    beam_size: int = 16,
    lm: CharNgramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    blank: int = 0,
    prune_log_prob: float = -12.0,
) -> DecodeResult:
    """CTC prefix beam search (Hannun et al. 2014, Algorithm 1) with optional LM fusion.

    For every prefix the search keeps the mass of the paths ending in blank and in its last
    character, merges paths that collapse to the same prefix, and keeps the ``beam_size``
    prefixes with the largest mass after each frame. A repeated character needs a blank in
    between to be emitted twice. Masses are kept in probability space and rescaled every
    frame (the log of the scale is accumulated), which avoids log/exp in the inner loop.

    Speed-ups, all approximations: only classes with ``log p > prune_log_prob`` extend
    prefixes in a frame (``-inf`` keeps all), and at most the ``beam_size + 1`` most probable
    of them (without an LM, further ones could only add mass to prefixes that are pruned at
    this frame or already in the beam); a frame whose blank probability exceeds
    :data:`BLANK_SKIP_PROB` only carries the prefixes forward (blank and repeat), with no
    new characters. With none in effect and ``beam_size`` at least the number of prefixes,
    ``score`` is the exact CTC log-probability of ``text``.

    Args:
        log_probs: (T, C) float log-probabilities (log_softmax over classes) for one line.
        alphabet: ``C`` characters, ``alphabet[i]`` for class ``i``; ``alphabet[blank]`` is a
            placeholder. The other characters must be distinct.
        beam_size: prefixes kept per frame (>= 1).
        lm: character LM for shallow fusion; ``alpha`` and ``beta`` apply only with it.
        alpha: weight of ``ln P_LM`` per character and for the end of line.
        beta: bonus added per emitted character.
        blank: the blank's class index.
        prune_log_prob: per-frame class threshold in natural log.

    Returns:
        the best prefix after the end-of-line term (the empty text when ``T == 0``).

    Raises:
        ValueError: bad shape or NaN, rows that are not log-probabilities, an alphabet
            whose length differs from ``C`` or that repeats a character, ``beam_size < 1``,
            or ``blank`` out of range.
    """
    a = _as_array(log_probs)
    num_frames, num_classes = a.shape
    _check_blank(blank, num_classes)
    _check_alphabet(alphabet, num_classes, blank)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if num_frames:
        norm = np.logaddexp.reduce(a, axis=1)
        worst = float(np.abs(norm).max())
        if not worst <= _NORM_TOL:
            raise ValueError(f"rows of log_probs must be log-probabilities (logsumexp 0), "
                             f"found logsumexp off by {worst:.3g}; apply log_softmax over "
                             "the class axis first")
    probs = np.exp(a)  # (T, C)
    allowed = a > prune_log_prob
    allowed[:, blank] = False
    skip = probs[:, blank] > BLANK_SKIP_PROB  # (T,)

    weights = _lm_weights(lm, alphabet, blank, alpha, beta) if lm is not None else None
    beams: dict[str, _Beam] = {"": _Beam(1.0, 0.0, -1, (), 1.0)}
    log_scale = 0.0
    for t in range(num_frames):
        row = probs[t].tolist()
        p_blank = row[blank]
        if skip[t]:
            for b in beams.values():
                repeat = b.p_nb * row[b.last] if b.last >= 0 else 0.0
                b.p_b = (b.p_b + b.p_nb) * p_blank
                b.p_nb = repeat
        else:
            classes = np.flatnonzero(allowed[t])
            if len(classes) > beam_size + 1:  # keep the beam_size + 1 most probable
                top = np.argpartition(a[t, classes], len(classes) - beam_size - 1)
                classes = classes[top[len(classes) - beam_size - 1:]]
            beams = _extend(beams, row, p_blank, classes.tolist(), alphabet, t, weights)
        log_scale += _prune_and_rescale(beams, beam_size)

    best_text, best = "", -math.inf
    for prefix, b in beams.items():
        total = b.p_b + b.p_nb
        if total <= 0.0:
            continue
        score = math.log(total) + log_scale
        if lm is not None:
            score += alpha * lm.end_log_prob(prefix)
        if score > best:
            best_text, best = prefix, score
    frames = list(beams[best_text].frames) if best_text in beams else []
    return DecodeResult(best_text, frames, best)


def _lm_weights(
    lm: CharNgramLM, alphabet: str, blank: int, alpha: float, beta: float
) -> Callable[[str], list[float]]:
    """``weights(prefix)``: ``exp(alpha * ln P_LM(c | prefix) + beta)`` per class (C,),
    cached per prefix. Classes map to the LM's characters case-insensitively; the blank's
    entry is unused."""
    lm_class = np.array([lm.char_index(c) if i != blank else 0 for i, c in enumerate(alphabet)],
                        dtype=np.int64)  # (C,)
    cache: dict[str, list[float]] = {}

    def weights(prefix: str) -> list[float]:
        w = cache.get(prefix)
        if w is None:
            w = np.exp(alpha * lm.next_log_probs(prefix)[lm_class] + beta).tolist()
            cache[prefix] = w
        return w

    return weights


def _extend(
    beams: dict[str, _Beam],
    row: list[float],
    p_blank: float,
    classes: list[int],
    alphabet: str,
    t: int,
    weights: Callable[[str], list[float]] | None,
) -> dict[str, _Beam]:
    """One frame of the prefix recursion: every prefix stays (blank, repeat) or grows by one
    of ``classes``. ``weights(prefix)`` gives the LM factor per class, or is None."""
    nxt = {  # every prefix stays: a blank, or its last character again
        prefix: _Beam((b.p_b + b.p_nb) * p_blank, b.p_nb * row[b.last] if b.last >= 0 else 0.0,
                      b.last, b.frames, b.emit)
        for prefix, b in beams.items()
    }
    for prefix, b in beams.items():
        total = b.p_b + b.p_nb
        w = weights(prefix) if weights is not None else None
        for c in classes:
            # the same character again only extends paths that ended in blank
            mass = (b.p_b if c == b.last else total) * row[c]
            if w is not None:
                mass *= w[c]
            if mass <= 0.0:
                continue
            key = prefix + alphabet[c]
            child = nxt.get(key)
            if child is None:
                nxt[key] = _Beam(0.0, mass, c, (*b.frames, t), mass)
            else:
                child.p_nb += mass
                if mass > child.emit:
                    child.frames, child.emit = (*b.frames, t), mass
    return nxt


def _prune_and_rescale(beams: dict[str, _Beam], beam_size: int) -> float:
    """Keep the ``beam_size`` prefixes with the largest mass (in place), divide every mass
    by the largest, and return the log of that factor (0.0 when all masses are zero)."""
    if len(beams) > beam_size:
        ranked = sorted(beams.items(), key=lambda kv: kv[1].p_b + kv[1].p_nb, reverse=True)
        beams.clear()
        beams.update(ranked[:beam_size])
    top = max(b.p_b + b.p_nb for b in beams.values())
    if top <= 0.0:
        return 0.0
    for b in beams.values():
        b.p_b /= top
        b.p_nb /= top
        b.emit /= top
    return math.log(top)


def _check_alphabet(alphabet: str, num_classes: int, blank: int) -> None:
    if len(alphabet) != num_classes:
        raise ValueError(f"the alphabet has {len(alphabet)} characters for {num_classes} "
                         "classes; give one character per class, with a placeholder at the "
                         "blank's index")
    chars = alphabet[:blank] + alphabet[blank + 1:]
    if len(set(chars)) != len(chars):
        raise ValueError("the alphabet repeats a character; classes must map to distinct "
                         "characters")
