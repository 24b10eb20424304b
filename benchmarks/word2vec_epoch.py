"""Where one skip-gram training epoch spends its time, and why large SGD batches diverge.

Times, per PTB epoch of the default recipe (:data:`models.word2vec.train.RECIPES`: batches
of 2048 centers, the fused step, plain SGD), the three stages the trainer runs in line:

1. **draw**: subsampling, dynamic windows and negatives for the epoch, and ``batchify``
   of every batch (:class:`models.word2vec.data.SkipGramEpoch`, ``epoch_loader``);
2. **layout**: the sparse layout of every batch
   (:func:`models.word2vec.fused.sparse_skipgram_batch`);
3. **step**: the fused training steps (:func:`models.word2vec.fused.fused_step`).

It prints each stage's seconds and share of the epoch (the baseline is the whole epoch,
measured in the same process), then, for one batch, the largest number of noise-word
entries that share one context row: plain SGD adds all of their gradients to that row
before any is applied, which is why a too-high learning rate diverges on large batches.

    python benchmarks/word2vec_epoch.py [--epochs 3] [--batch-size 2048] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from models.common.malloc import keep_freed_memory
from models.common.paths import data_dir
from models.word2vec.data import (
    Corpus,
    NegativeSampler,
    SkipGramEpoch,
    epoch_loader,
    keep_probabilities,
    read_ptb,
)
from models.word2vec.fused import fused_step, sparse_skipgram_batch
from models.word2vec.model import SkipGram
from models.word2vec.train import RECIPES, TrainConfig
from models.word2vec.vocab import Vocab


def main() -> None:
    recipe = RECIPES["skipgram"]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=recipe["batch_size"])
    parser.add_argument("--lr", type=float, default=recipe["lr"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the trainer does for the fused step
    cfg = TrainConfig()
    sentences = read_ptb(args.data_dir / "ptb" / "ptb.train.txt")
    vocab = Vocab.build(sentences, cfg.min_count)
    corpus = Corpus.from_sentences(sentences, vocab)
    counts = vocab.counts_array()
    keep_prob = keep_probabilities(counts, cfg.subsample_t)
    sampler = NegativeSampler(counts)
    torch.manual_seed(cfg.seed)
    model = SkipGram(len(vocab), cfg.embed_size, sparse=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    print(f"PTB skip-gram, batch {args.batch_size}, fused step, SGD lr {args.lr}, "
          f"{args.threads} thread(s)")
    print(f"{'epoch':>5}{'steps':>7}{'draw s':>8}{'layout s':>10}{'step s':>8}{'epoch s':>9}"
          f"{'draw+layout':>13}{'step':>7}")
    first_batch = None
    for epoch in range(args.epochs):
        # Stages timed batch by batch, in line, as the trainer runs them.
        draw = layout = step = 0.0
        steps = 0
        t0 = time.perf_counter()
        dataset = SkipGramEpoch(corpus, keep_prob, sampler, max_window_size=cfg.max_window_size,
                                num_noise_words=cfg.num_noise_words, seed=cfg.seed, epoch=epoch)
        batches = iter(epoch_loader(dataset, args.batch_size))
        draw += time.perf_counter() - t0
        while True:
            ta = time.perf_counter()
            raw = next(batches, None)
            tb = time.perf_counter()
            draw += tb - ta
            if raw is None:
                break
            first_batch = first_batch or raw
            sparse = sparse_skipgram_batch(raw)
            tc = time.perf_counter()
            fused_step(model, optimizer, sparse)
            td = time.perf_counter()
            layout, step, steps = layout + tc - tb, step + td - tc, steps + 1
        total = time.perf_counter() - t0
        print(f"{epoch + 1:>5}{steps:>7}{draw:>8.2f}{layout:>10.2f}{step:>8.2f}{total:>9.2f}"
              f"{(draw + layout) / total:>12.0%}{step / total:>8.0%}")

    assert first_batch is not None
    _, contexts_negatives, masks, labels = first_batch
    noise = contexts_negatives[(masks > 0) & (labels == 0)].numpy()
    per_word = np.bincount(noise, minlength=len(vocab))
    top = int(per_word.argmax())
    print(f"one batch of {args.batch_size} centers: {len(noise)} noise-word entries; the most "
          f"frequent, {vocab.tokens[top]!r}, fills {per_word[top]} of them, all added to its "
          "context row in one SGD step")


if __name__ == "__main__":
    main()
