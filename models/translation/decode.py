"""Greedy and beam-search decoding, batched over sentences, for any model with the
``encode(src) -> dict`` / ``decode(tgt_in, enc) -> logits`` interface of
:mod:`models.translation.model`.

Conventions shared by both decoders:

* ``src`` is int64 (B, S), right-padded with ``PAD``; each sentence may output at most
  ``floor(max_len_a * src_len + max_len_b)`` tokens before ``</s>`` (fairseq's ``-a``/``-b``),
  capped by ``max_len`` and by the model's position table. At that length ``</s>`` is forced
  (its real log-probability is added to the score).
* ``<pad>`` and ``<s>`` are never generated; returned token lists hold neither ``<s>`` nor
  ``</s>``.
* Finished sentences are dropped from the batch, so a long sentence does not make the
  others pay for its extra steps.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from models.translation.data import EOS, PAD, SOS

Enc = dict[str, torch.Tensor]


class EncoderDecoder(Protocol):
    """What decoding needs: both :class:`~models.translation.model.Seq2SeqLSTM` and
    :class:`~models.translation.model.TransformerNMT` (and test stubs) provide it."""

    def encode(self, src: torch.Tensor) -> Enc: ...

    def decode(self, tgt_in: torch.Tensor, enc: Enc, last_only: bool = False) -> torch.Tensor: ...


def position_limit(model: EncoderDecoder) -> int | None:
    """Longest target input the model can embed (``model.pos.pe`` rows), or ``None`` for
    models without a position table (the LSTM)."""
    pe = getattr(getattr(model, "pos", None), "pe", None)
    return int(pe.size(0)) if isinstance(pe, torch.Tensor) else None


def max_lengths(model: EncoderDecoder, src: torch.Tensor, max_len_a: float, max_len_b: int,
                max_len: int | None = None) -> torch.Tensor:
    """Most output tokens (``</s>`` excluded) per sentence, int64 (B,):
    ``floor(a * src_len + b)`` capped by ``max_len`` and the model's position limit − 1
    (decoder input = ``<s>`` + the tokens so far)."""
    src_len = (src != PAD).sum(1).double()
    lengths = torch.floor(max_len_a * src_len + max_len_b).long().clamp_min(0)
    limit = position_limit(model)
    if limit is not None:
        lengths = lengths.clamp_max(limit - 1)
    if max_len is not None:
        lengths = lengths.clamp_max(max_len)
    return lengths


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14); ``|Y|``
    counts the output tokens including ``</s>``."""
    return ((5.0 + length) / 6.0) ** alpha


def next_logprobs(model: EncoderDecoder, ys: torch.Tensor, enc: Enc, limits: torch.Tensor,
                  step: int) -> torch.Tensor:
    """Log-probabilities of the next token, float32 (N, V), for prefixes ``ys`` int64 (N, t).

    ``<pad>`` and ``<s>`` get ``-inf``; rows whose ``limits`` (N,) are reached at ``step``
    may only end (``</s>`` keeps its log-probability, every other token ``-inf``).
    """
    logp = F.log_softmax(model.decode(ys, enc, last_only=True)[:, -1].float(), dim=-1)  # (N, V)
    logp[:, PAD] = -math.inf
    logp[:, SOS] = -math.inf
    at_limit = limits <= step
    if bool(at_limit.any()):
        eos = logp[at_limit, EOS]
        logp[at_limit] = -math.inf
        logp[at_limit, EOS] = eos
    return logp


def _select(enc: Enc, rows: torch.Tensor) -> Enc:
    return {key: value.index_select(0, rows) for key, value in enc.items()}


@torch.inference_mode()
def greedy_decode(model: EncoderDecoder, src: torch.Tensor, max_len_a: float = 1.2,
                  max_len_b: int = 10, max_len: int | None = None,
                  ) -> tuple[list[list[int]], list[float]]:
    """Pick the most probable token at each step (the model should be in eval mode).

    Args:
        model: an encoder–decoder (see :class:`EncoderDecoder`).
        src: int64 (B, S), PAD-padded source ids (no specials needed).
        max_len_a, max_len_b: output length limit ``a * src_len + b`` (tokens).
        max_len: an absolute cap on output tokens, or ``None``.

    Returns:
        ``(tokens, scores)``: per sentence the output ids (no ``<s>``/``</s>``) and the
        **un-normalised** sum of natural-log probabilities of the tokens and of ``</s>``.
    """
    n = src.size(0)
    enc = model.encode(src)
    limits = max_lengths(model, src, max_len_a, max_len_b, max_len)  # (B,)
    ys = torch.full((n, 1), SOS, dtype=torch.long, device=src.device)  # (N, t)
    alive = list(range(n))
    tokens: list[list[int]] = [[] for _ in range(n)]
    scores = [0.0] * n
    for step in range(int(limits.max()) + 1 if n else 0):
        best, nxt = next_logprobs(model, ys, enc, limits, step).max(-1)  # (N,), (N,)
        for b, t, s in zip(alive, nxt.tolist(), best.tolist(), strict=True):
            scores[b] += s
            if t != EOS:
                tokens[b].append(t)
        keep = (nxt != EOS).nonzero().flatten()
        if keep.numel() == 0:
            break
        ys = torch.cat([ys, nxt[:, None]], dim=1).index_select(0, keep)
        enc, limits = _select(enc, keep), limits.index_select(0, keep)
        alive = [alive[i] for i in keep.tolist()]
    return tokens, scores


@torch.inference_mode()
def beam_search(model: EncoderDecoder, src: torch.Tensor, beam_size: int = 5,
                length_penalty: float = 0.6, max_len_a: float = 1.2, max_len_b: int = 10,
                max_len: int | None = None) -> tuple[list[list[int]], list[float]]:
    """Beam search with ``beam_size`` hypotheses per sentence, all sentences in one batch
    (rows ``b * K + k``, the encoder state repeated with ``index_select``).

    Each step scores the ``K × V`` one-token extensions of a sentence's beams by their
    summed log-probability and takes the best ``2K``: a ``</s>`` among the first ``K``
    finishes that hypothesis, and the best ``K`` others become the new beams (fairseq's
    rule). Hypotheses are ranked by ``sum log p / lp`` with the GNMT length penalty
    ``lp = ((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016; ``|Y|`` counts ``</s>``).

    A sentence is done when its best finished hypothesis scores at least as well as its best
    live beam at the current length (exact for ``alpha = 0``, since log-probabilities only
    fall; the usual heuristic otherwise), or at its length limit. fairseq's "``K``
    hypotheses finished" rule is not used: weak beams that end early would stop the search
    before the best one ends. With ``beam_size=1`` this returns exactly
    :func:`greedy_decode`'s tokens.

    Args:
        model: an encoder–decoder (see :class:`EncoderDecoder`), in eval mode.
        src: int64 (B, S), PAD-padded source ids.
        beam_size: hypotheses kept per sentence, ``K >= 1``.
        length_penalty: ``alpha``; 0 ranks by the raw log-probability.
        max_len_a, max_len_b, max_len: output length limits as in :func:`greedy_decode`.

    Returns:
        ``(tokens, scores)``: per sentence the best hypothesis (no ``<s>``/``</s>``) and its
        **length-normalised** score ``sum log p / lp`` (natural log, ``</s>`` included).

    Raises:
        ValueError: ``beam_size < 1``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    n, k = src.size(0), beam_size
    device = src.device
    limits = max_lengths(model, src, max_len_a, max_len_b, max_len)  # (B,)
    enc = _select(model.encode(src), torch.arange(n, device=device).repeat_interleave(k))
    ys = torch.full((n * k, 1), SOS, dtype=torch.long, device=device)  # (N*K, t)
    beam_scores = torch.full((n, k), -math.inf, device=device)  # (N, K) summed log p
    beam_scores[:, 0] = 0.0  # the first step expands one beam only
    alive = list(range(n))
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]  # (score, ids)

    def best_finished(b: int) -> float:
        return max((score for score, _ in finished[b]), default=-math.inf)

    for step in range(int(limits.max()) + 1 if n else 0):
        m = len(alive)
        logp = next_logprobs(model, ys, enc, limits.repeat_interleave(k), step)  # (M*K, V)
        v = logp.size(-1)
        cand = (beam_scores.unsqueeze(-1) + logp.view(m, k, v)).view(m, k * v)
        top_scores, top_ids = cand.topk(min(2 * k, k * v), dim=1)  # (M, 2K)
        rows: list[int] = []
        next_tokens: list[int] = []
        next_scores: list[float] = []
        keep: list[int] = []
        for i, (scores_i, ids_i) in enumerate(zip(top_scores.tolist(), top_ids.tolist(),
                                                  strict=True)):
            chosen: list[tuple[int, int, float]] = []
            for j, (s, idx) in enumerate(zip(scores_i, ids_i, strict=True)):
                if s == -math.inf:
                    break
                row, tok = i * k + idx // v, idx % v
                if tok == EOS:
                    if j < k:
                        hyp = ys[row, 1:].tolist()
                        finished[alive[i]].append(
                            (s / gnmt_length_penalty(len(hyp) + 1, length_penalty), hyp))
                elif len(chosen) < k:
                    chosen.append((row, tok, s))
            # the best live beam, normalised as if it ended now (it has step + 1 tokens)
            live = (chosen[0][2] / gnmt_length_penalty(step + 1, length_penalty) if chosen
                    else -math.inf)
            if int(limits[i]) <= step or best_finished(alive[i]) >= live:
                continue  # this sentence is done
            chosen += [(i * k, PAD, -math.inf)] * (k - len(chosen))  # dead beams
            keep.append(i)
            for row, tok, s in chosen:
                rows.append(row)
                next_tokens.append(tok)
                next_scores.append(s)
        if not keep:
            break
        rows_t = torch.tensor(rows, device=device)
        ys = torch.cat([ys.index_select(0, rows_t),
                        torch.tensor(next_tokens, device=device)[:, None]], dim=1)
        enc = _select(enc, rows_t)
        beam_scores = torch.tensor(next_scores, device=device).view(len(keep), k)
        limits = limits.index_select(0, torch.tensor(keep, device=device))
        alive = [alive[i] for i in keep]
    best = [max(f, key=lambda h: h[0]) if f else (-math.inf, []) for f in finished]
    return [hyp for _, hyp in best], [score for score, _ in best]
