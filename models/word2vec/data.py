"""Data pipeline for skip-gram and CBOW with negative sampling, vectorised with NumPy.

Follows the d2l.ai "word2vec in PyTorch" tutorial (sections "The Dataset for Pretraining
Word Embeddings"): read PTB, build a vocabulary, subsample frequent words, extract
centers and contexts with a dynamic window, draw negatives from unigram^0.75, and
``batchify`` into ``centers``, ``contexts_negatives``, ``masks`` and ``labels``.
The tutorial loops over tokens in Python; here every step works on whole arrays, and
subsampling, windows and negatives are redrawn each epoch (as the original word2vec does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models.word2vec.vocab import Vocab

Example = tuple[int, Sequence[int], Sequence[int]]


def read_ptb(path: Path) -> list[list[str]]:
    """Read a PTB-format file: one sentence a line, whitespace-separated tokens.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


@dataclass
class Corpus:
    """A tokenised corpus as two aligned flat arrays.

    Attributes:
        tokens: ``(N,)`` int64 vocabulary indices, out-of-vocabulary tokens removed.
        sentence_ids: ``(N,)`` int64 index of the sentence each token belongs to.
    """

    tokens: np.ndarray
    sentence_ids: np.ndarray

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[str]], vocab: Vocab) -> Corpus:
        """Index ``sentences`` with ``vocab``, dropping tokens that are not in it."""
        ids: list[int] = []
        sent: list[int] = []
        for s, sentence in enumerate(sentences):
            for tok in sentence:
                i = vocab.index.get(tok)
                if i is not None:
                    ids.append(i)
                    sent.append(s)
        return cls(np.asarray(ids, dtype=np.int64), np.asarray(sent, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.tokens)


def keep_probabilities(counts: np.ndarray, t: float = 1e-4) -> np.ndarray:
    """Subsampling keep probability per word (Mikolov et al. 2013, eq. 5).

    A token of word ``w`` is dropped with probability ``max(0, 1 - sqrt(t / f(w)))``
    where ``f(w) = count(w) / total``; this returns ``1 - P(drop)``.

    Args:
        counts: ``(V,)`` corpus counts.
        t: the subsampling threshold (1e-4 in the tutorial).

    Returns:
        ``(V,)`` float64 probabilities in ``(0, 1]``.
    """
    freq = counts / counts.sum()
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, np.sqrt(t / freq))


def subsample(corpus: Corpus, keep_prob: np.ndarray, rng: np.random.Generator) -> Corpus:
    """Keep each token independently with probability ``keep_prob[token]``."""
    keep = rng.random(len(corpus)) < keep_prob[corpus.tokens]
    return Corpus(corpus.tokens[keep], corpus.sentence_ids[keep])


def centers_and_contexts(
    corpus: Corpus, max_window_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extract every center word and its contexts with a dynamic window.

    Each center samples its window size uniformly from ``1..max_window_size``; its contexts
    are the words at most that many positions away in the same sentence (the center
    itself excluded). Centers without any context (one-word sentences) are dropped.

    Returns:
        ``centers (M,)`` int64, ``contexts (M, 2*max_window_size)`` int64 (0 where padded,
        left-to-right order) and ``context_mask (M, 2*max_window_size)`` bool.
    """
    n, w = len(corpus), max_window_size
    tokens, sents = corpus.tokens, corpus.sentence_ids
    windows = rng.integers(1, w + 1, size=n)  # (N,)
    contexts = np.zeros((n, 2 * w), dtype=np.int64)
    mask = np.zeros((n, 2 * w), dtype=bool)
    offsets = [o for o in range(-w, w + 1) if o != 0]
    for col, o in enumerate(offsets):  # 2W whole-array passes, no per-token loop
        d = abs(o)
        if d >= n:
            continue
        if o > 0:  # context at i + d for centers i in [0, n - d)
            ok = (sents[d:] == sents[:-d]) & (windows[:-d] >= d)
            mask[:-d, col] = ok
            contexts[:-d, col] = np.where(ok, tokens[d:], 0)
        else:  # context at i - d for centers i in [d, n)
            ok = (sents[:-d] == sents[d:]) & (windows[d:] >= d)
            mask[d:, col] = ok
            contexts[d:, col] = np.where(ok, tokens[:-d], 0)
    has_context = mask.any(axis=1)
    return tokens[has_context], contexts[has_context], mask[has_context]


def get_centers_and_contexts(
    corpus: Sequence[Sequence[int]], max_window_size: int, rng: np.random.Generator
) -> tuple[list[int], list[list[int]]]:
    """The tutorial's list-of-lists interface over :func:`centers_and_contexts`.

    Args:
        corpus: sentences as lists of token indices.

    Returns:
        ``(centers, contexts)`` with one list of context indices per center.
    """
    tokens = np.asarray([t for s in corpus for t in s], dtype=np.int64)
    sents = np.asarray([i for i, s in enumerate(corpus) for _ in s], dtype=np.int64)
    centers, contexts, mask = centers_and_contexts(Corpus(tokens, sents), max_window_size, rng)
    return centers.tolist(), [row[m].tolist() for row, m in zip(contexts, mask, strict=True)]


class NegativeSampler:
    """Draw noise words from the unigram distribution raised to ``power`` (0.75).

    Uses Walker's alias method (Vose's construction): exact probabilities and O(1) work per
    draw, so millions of negatives are drawn in a few vectorised NumPy operations.
    """

    def __init__(self, counts: np.ndarray, power: float = 0.75) -> None:
        weights = np.asarray(counts, dtype=np.float64) ** power
        self.probabilities = weights / weights.sum()  # (V,)
        self._accept, self._alias = _alias_table(self.probabilities)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Return int64 word indices of the given shape."""
        v = len(self._accept)
        column = rng.integers(0, v, size=shape)
        take = rng.random(shape) < self._accept[column]
        return np.where(take, column, self._alias[column]).astype(np.int64)

    def sample_for(
        self,
        contexts: np.ndarray,
        num_noise_words: int,
        rng: np.random.Generator,
        max_rounds: int = 100,
    ) -> np.ndarray:
        """Draw ``num_noise_words`` negatives per context word, none equal to a context word.

        Args:
            contexts: ``(B, C)`` int64 context indices (every entry real).

        Returns:
            ``negatives (B, C*K)`` int64. As in the tutorial, a negative equal to one of its
            row's contexts is redrawn (up to ``max_rounds`` times).
        """
        b, c = contexts.shape
        negatives = self.sample((b, c * num_noise_words), rng)
        clash = np.zeros(negatives.shape, dtype=bool)
        for j in range(c):  # c <= 2 * max_window_size passes; no (B, C*K, C) temporary
            clash |= negatives == contexts[:, j : j + 1]
        rows, cols = np.nonzero(clash)
        for _ in range(max_rounds):  # redraw only the clashing slots
            if len(rows) == 0:
                break
            redrawn = self.sample((len(rows),), rng)
            negatives[rows, cols] = redrawn
            still = (redrawn[:, None] == contexts[rows]).any(axis=1)
            rows, cols = rows[still], cols[still]
        return negatives


def _alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table: ``(accept (V,) float64, alias (V,) int64)``."""
    v = len(probabilities)
    scaled = probabilities * v
    accept = np.ones(v)
    alias = np.arange(v)
    small = [i for i in range(v) if scaled[i] < 1.0]
    large = [i for i in range(v) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept, alias.astype(np.int64)


def batchify(data: Sequence[Example]) -> tuple[torch.Tensor, ...]:
    """The tutorial's ``batchify``: pad ``contexts + negatives`` to the batch's ``max_len``.

    Args:
        data: ``(center, contexts, negatives)`` examples.

    Returns:
        ``centers (B, 1)``, ``contexts_negatives (B, max_len)``, ``masks (B, max_len)`` and
        ``labels (B, max_len)``, all int64; masks are 1 on real entries, labels are 1 on
        the contexts (which come first in each row).
    """
    max_len = max(len(c) + len(n) for _, c, n in data)
    centers, contexts_negatives, masks, labels = [], [], [], []
    for center, context, negative in data:
        cur_len = len(context) + len(negative)
        centers.append([center])
        contexts_negatives.append(list(context) + list(negative) + [0] * (max_len - cur_len))
        masks.append([1] * cur_len + [0] * (max_len - cur_len))
        labels.append([1] * len(context) + [0] * (max_len - len(context)))
    return (
        torch.tensor(centers),
        torch.tensor(contexts_negatives),
        torch.tensor(masks),
        torch.tensor(labels),
    )


class WindowedEpoch(Dataset[tuple[torch.Tensor, ...]]):
    """What skip-gram and CBOW share for one epoch: subsampling, dynamic windows, negatives.

    Everything random derives from ``(seed, epoch)`` (a batch's negatives also from its
    first index), so an epoch, and a run resumed in its middle, is reproducible.
    ``__getitems__`` (in the subclasses) returns a whole batch without a per-example loop.
    """

    def __init__(
        self,
        corpus: Corpus,
        keep_prob: np.ndarray,
        sampler: NegativeSampler,
        *,
        max_window_size: int,
        num_noise_words: int,
        seed: int,
        epoch: int,
    ) -> None:
        self.sampler = sampler
        self.num_noise_words = num_noise_words
        self.seed, self.epoch = seed, epoch
        rng = np.random.default_rng([seed, epoch])
        kept = subsample(corpus, keep_prob, rng)
        self.centers, self.contexts, self.context_mask = centers_and_contexts(
            kept, max_window_size, rng
        )
        self.num_contexts = self.context_mask.sum(axis=1)  # (M,)

    def __len__(self) -> int:
        return len(self.centers)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def examples(self, indices: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Centers ``(B,)`` and each one's context indices (for inspection and tests)."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = [c[m] for c, m in zip(self.contexts[idx], self.context_mask[idx], strict=True)]
        return self.centers[idx], rows

    def _rng(self, idx: np.ndarray) -> np.random.Generator:
        """The generator of one batch's negatives."""
        return np.random.default_rng([self.seed, self.epoch, int(idx[0])])

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """Shuffled batches of indices."""
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        order = rng.permutation(len(self))
        return np.split(order, range(batch_size, len(order), batch_size))


class SkipGramEpoch(WindowedEpoch):
    """One epoch of skip-gram examples: subsampled, windowed, negatives drawn per batch.

    Batches come from :meth:`batches`, which groups centers with the same number of
    contexts, so rows need no padding (the tutorial pads every row to the batch's longest,
    about half of it padding on PTB).
    """

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Batchify the examples ``indices`` (all with the same number of contexts ``n``).

        Returns:
            ``centers (B, 1)``, ``contexts_negatives (B, n*(1+K))``, ``masks`` and ``labels``
            of the same shape, all int64, exactly as :func:`batchify` lays them out.

        Raises:
            ValueError: the examples have different numbers of contexts.
        """
        idx = np.asarray(indices, dtype=np.int64)
        n = self.num_contexts[idx]
        if (n != n[0]).any():
            raise ValueError("a batch must hold centers with equal numbers of contexts")
        contexts = self.contexts[idx][self.context_mask[idx]].reshape(len(idx), int(n[0]))
        negatives = self.sampler.sample_for(contexts, self.num_noise_words, self._rng(idx))
        contexts_negatives = np.concatenate([contexts, negatives], axis=1)  # (B, n*(1+K))
        labels = np.zeros_like(contexts_negatives)
        labels[:, : contexts.shape[1]] = 1
        return (
            torch.from_numpy(self.centers[idx][:, None].copy()),
            torch.from_numpy(contexts_negatives),
            torch.ones_like(torch.from_numpy(labels)),
            torch.from_numpy(labels),
        )

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """Shuffled batches of indices, each holding centers with one number of contexts."""
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        order = rng.permutation(len(self))
        order = order[np.argsort(self.num_contexts[order], kind="stable")]
        bounds = np.flatnonzero(np.diff(self.num_contexts[order])) + 1
        out: list[np.ndarray] = []
        for bucket in np.split(order, bounds):
            out.extend(np.split(bucket, range(batch_size, len(bucket), batch_size)))
        return [out[i] for i in rng.permutation(len(out))]


class CBOWEpoch(WindowedEpoch):
    """One epoch of CBOW examples (Mikolov et al. 2013a): each center with its whole window.

    Same subsampling, dynamic windows and noise distribution as :class:`SkipGramEpoch`;
    the example is the other way round: the window's contexts (padded to ``2W`` and masked)
    predict the center, which is scored against ``K`` noise words (word2vec.c draws ``K``
    per center, not per context word), redrawn when equal to the center.
    """

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Batch the examples ``indices``.

        Returns:
            ``contexts (B, 2W)`` int64 (0 where padded), ``context_mask (B, 2W)`` int64 (1 on
            real contexts), ``center_negatives (B, 1+K)`` int64 (the center first) and
            ``labels (B, 1+K)`` int64 (1 for the center, 0 for the noise words).
        """
        idx = np.asarray(indices, dtype=np.int64)
        centers = self.centers[idx][:, None]  # (B, 1)
        negatives = self.sampler.sample_for(centers, self.num_noise_words, self._rng(idx))
        center_negatives = np.concatenate([centers, negatives], axis=1)  # (B, 1+K)
        labels = np.zeros_like(center_negatives)
        labels[:, 0] = 1
        return (
            torch.from_numpy(self.contexts[idx]),
            torch.from_numpy(self.context_mask[idx].astype(np.int64)),
            torch.from_numpy(center_negatives),
            torch.from_numpy(labels),
        )


def _batch_is_ready(batch: Any) -> Any:
    """``collate_fn``: ``__getitems__`` already returns a batchified tuple."""
    return batch


def epoch_loader(dataset: WindowedEpoch, batch_size: int, skip_batches: int = 0) -> DataLoader:
    """A ``DataLoader`` over one epoch's shuffled batches; each item is a batchified tuple.

    ``skip_batches`` drops the epoch's first batches without fetching them (for resuming).
    Worker processes do not pay on 2 cores (measured slower); the trainer overlaps batch
    preparation with a thread instead (:func:`models.common.prefetch.prefetch`).
    """
    batches = [b.tolist() for b in dataset.batches(batch_size)]
    return DataLoader(dataset, batch_sampler=batches[skip_batches:], collate_fn=_batch_is_ready)
