"""The word2vec data pipeline: subsampling, windows, negative sampling, batchify."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.word2vec.data import (
    Corpus,
    NegativeSampler,
    SkipGramEpoch,
    batchify,
    centers_and_contexts,
    get_centers_and_contexts,
    keep_probabilities,
    read_ptb,
    subsample,
)
from models.word2vec.vocab import Vocab
from tests.conftest import require_data


def test_keep_probability_follows_mikolov_formula() -> None:
    counts = np.array([9000.0, 900.0, 90.0, 10.0])
    freq = counts / counts.sum()
    expected = 1 - np.maximum(0.0, 1 - np.sqrt(1e-2 / freq))  # 1 - P(drop), t = 1e-2
    np.testing.assert_allclose(keep_probabilities(counts, t=1e-2), expected)
    assert keep_probabilities(counts, t=1e-2)[-1] == 1.0  # rare words are never dropped


def test_subsampling_on_ptb_keeps_about_half_and_drops_the() -> None:
    sentences = read_ptb(require_data("ptb", "ptb.train.txt"))
    vocab = Vocab.build(sentences, min_count=5)
    corpus = Corpus.from_sentences(sentences, vocab)
    kept = subsample(corpus, keep_probabilities(vocab.counts_array()), np.random.default_rng(0))
    assert 0.35 < len(kept) / len(corpus) < 0.55
    before = np.bincount(corpus.tokens, minlength=len(vocab))
    after = np.bincount(kept.tokens, minlength=len(vocab))
    the, join = vocab.index["the"], vocab.index["join"]
    assert after[the] < before[the] / 20
    assert after[join] == before[join] == 45


def test_vocab_keeps_words_seen_at_least_min_count() -> None:
    vocab = Vocab.build([["a", "a", "b"], ["a", "c", "c"]], min_count=2)
    assert vocab.tokens == ["a", "c"]
    assert vocab.counts == [3, 2]


def _single_sentence_corpus(n: int) -> Corpus:
    return Corpus(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64))


def test_contexts_stay_within_window_and_sentence() -> None:
    rng = np.random.default_rng(1)
    sentences = rng.integers(0, 50, size=2000)
    sentences.sort()
    corpus = Corpus(np.arange(2000, dtype=np.int64), sentences.astype(np.int64))
    centers, contexts, mask = centers_and_contexts(corpus, 5, rng)
    for center, row, m in zip(centers, contexts, mask, strict=True):
        ctx = row[m]
        assert len(ctx) >= 1 and center not in ctx
        assert np.abs(ctx - center).max() <= 5  # token id == position here
        assert (sentences[ctx] == sentences[center]).all()
        # a window is symmetric: contexts are contiguous around the center
        assert set(ctx) == set(range(ctx.min(), ctx.max() + 1)) - {center}


def test_window_size_is_uniform_on_one_to_max() -> None:
    centers, _, mask = centers_and_contexts(_single_sentence_corpus(30_000), 5,
                                            np.random.default_rng(2))
    interior = (centers >= 5) & (centers < 30_000 - 5)
    window = mask[interior].sum(axis=1) // 2  # both sides of an interior center
    freq = np.bincount(window, minlength=6)[1:] / interior.sum()
    np.testing.assert_allclose(freq, np.full(5, 0.2), atol=0.015)


def test_tutorial_toy_dataset_centers_and_contexts() -> None:
    tiny = [list(range(7)), list(range(7, 10))]
    centers, contexts = get_centers_and_contexts(tiny, 2, np.random.default_rng(0))
    assert centers == list(range(10))
    for center, ctx in zip(centers, contexts, strict=True):
        sentence = tiny[0] if center < 7 else tiny[1]
        assert set(ctx) <= set(sentence) - {center}
        assert all(abs(c - center) <= 2 for c in ctx) and ctx


def test_negative_sampler_follows_unigram_to_the_075() -> None:
    counts = np.array([10_000.0, 1_000.0, 100.0, 10.0, 1.0])
    sampler = NegativeSampler(counts)
    draws = sampler.sample((400_000,), np.random.default_rng(3))
    empirical = np.bincount(draws, minlength=5) / len(draws)
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(empirical, expected, rtol=0.05, atol=5e-4)
    plain = counts / counts.sum()
    assert np.abs(empirical - expected).sum() < np.abs(empirical - plain).sum() / 10


def test_negatives_never_equal_a_context_of_their_row() -> None:
    sampler = NegativeSampler(np.array([100.0, 50.0, 20.0, 5.0, 5.0, 1.0]))
    contexts = np.array([[0, 1], [0, 2], [1, 2]])
    negatives = sampler.sample_for(contexts, 5, np.random.default_rng(4))
    assert negatives.shape == (3, 10)
    for row, ctx in zip(negatives, contexts, strict=True):
        assert not set(row) & set(ctx)


def test_batchify_matches_the_tutorial_example() -> None:
    x_1 = (1, [2, 2], [3, 3, 3, 3])
    x_2 = (1, [2, 2, 2], [3, 3])
    centers, contexts_negatives, masks, labels = batchify((x_1, x_2))
    assert centers.tolist() == [[1], [1]]
    assert contexts_negatives.tolist() == [[2, 2, 3, 3, 3, 3], [2, 2, 2, 3, 3, 0]]
    assert masks.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    assert labels.tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]


def test_epoch_batches_equal_batchify_of_their_examples() -> None:
    rng = np.random.default_rng(5)
    corpus = Corpus(rng.integers(0, 40, 3000), np.repeat(np.arange(300), 10))
    counts = np.bincount(corpus.tokens, minlength=40).astype(float)
    dataset = SkipGramEpoch(corpus, np.ones(40), NegativeSampler(counts), max_window_size=3,
                            num_noise_words=5, seed=0, epoch=0)
    batches = dataset.batches(64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(dataset)))
    for indices in batches[:10]:
        centers, ctx_neg, masks, labels = dataset.__getitems__(indices)
        n = len(dataset.examples(indices)[1][0])
        examples = [
            (int(c), list(ctx), ctx_neg[i, n:].tolist())
            for i, (c, ctx) in enumerate(zip(*dataset.examples(indices), strict=True))
        ]
        for got, want in zip((centers, ctx_neg, masks, labels), batchify(examples), strict=True):
            assert torch.equal(got, want)
        assert ctx_neg.shape[1] == n * 6


def test_epoch_is_reproducible_and_differs_across_epochs() -> None:
    rng = np.random.default_rng(6)
    corpus = Corpus(rng.integers(0, 40, 3000), np.repeat(np.arange(300), 10))
    counts = np.bincount(corpus.tokens, minlength=40).astype(float)
    kw = {"max_window_size": 3, "num_noise_words": 5, "seed": 0}
    keep = np.full(40, 0.7)
    a = SkipGramEpoch(corpus, keep, NegativeSampler(counts), epoch=0, **kw)
    b = SkipGramEpoch(corpus, keep, NegativeSampler(counts), epoch=0, **kw)
    c = SkipGramEpoch(corpus, keep, NegativeSampler(counts), epoch=1, **kw)
    assert np.array_equal(a.centers, b.centers)
    first = a.batches(32)[0]
    assert torch.equal(a.__getitems__(first)[1], b.__getitems__(first)[1])
    assert not np.array_equal(a.centers, c.centers)


def test_mixed_context_counts_in_one_batch_are_rejected() -> None:
    corpus = Corpus(np.arange(10), np.zeros(10, dtype=np.int64))
    dataset = SkipGramEpoch(corpus, np.ones(10), NegativeSampler(np.ones(10)),
                            max_window_size=5, num_noise_words=2, seed=0, epoch=0)
    n = dataset.num_contexts
    mixed = [int(np.argmin(n)), int(np.argmax(n))]
    assert n[mixed[0]] != n[mixed[1]]
    with pytest.raises(ValueError, match="equal numbers of contexts"):
        dataset.__getitems__(mixed)
