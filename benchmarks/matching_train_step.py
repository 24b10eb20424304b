"""Matching training-step speed: float32 against bfloat16 autocast, per architecture, in one
process.

For each ``--archs`` entry, builds the model with its preset
(:data:`models.matching.train.PRESETS`) on the real vocabulary of ``--dataset``, then times
``--steps`` training steps (forward, binary cross-entropy, backward, Adam) on the same
length-bucketed batches of the training split, first in float32 (the baseline) and then
under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Prints the median seconds per batch
of each and the bf16 speed-up (float32 median / bf16 median; above 1 means bf16 is faster).
The first two steps of each run are warm-up and not counted. This is the measurement
behind the presets' ``bf16`` flags.

    python benchmarks/matching_train_step.py [--archs esim,bimpm] [--dataset quora]
        [--steps 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.common.paths import data_dir
from models.matching.features import Featurizer, Vocab
from models.matching.model import build_model
from models.matching.train import PRESETS, TrainConfig, batches, read_pairs, split_path, to_examples


def seconds_per_batch(arch: str, vocab: Vocab, featurizer: Featurizer,
                      chunks: list, bf16: bool) -> float:
    """Median wall seconds of one training step over ``chunks`` (the first two skipped)."""
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=len(vocab), n_buckets=featurizer.n_buckets,
                        **PRESETS[arch]["model"])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=PRESETS[arch]["lr"])
    times = []
    for chunk in chunks:
        batch = featurizer.batch([(a, b) for a, b, _, _ in chunk])
        target = torch.tensor([float(e[2]) for e in chunk])
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", default="esim,bimpm")
    parser.add_argument("--dataset", default="quora", choices=("quora", "wikiqa"))
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    defaults = TrainConfig()
    examples = to_examples(read_pairs(split_path(args.data_dir, args.dataset, "train"))[1])
    vocab = Vocab.build((t for a, b, _, _ in examples for t in (a, b)), defaults.min_count)
    featurizer = Featurizer(vocab, defaults.n_buckets, defaults.max_len)
    print(f"{args.dataset}: {len(examples)} training pairs, vocabulary {len(vocab)}, "
          f"{args.threads} threads, {args.steps} steps (2 warm-up)")
    print(f"{'arch':<14}{'batch':>6}{'fp32 s/batch':>14}{'bf16 s/batch':>14}"
          f"{'bf16 speed-up':>15}{'preset bf16':>13}")
    for arch in args.archs.split(","):
        size = PRESETS[arch]["batch_size"]
        chunks = batches(examples, size, np.random.default_rng(0))[:args.steps]
        fp32 = seconds_per_batch(arch, vocab, featurizer, chunks, bf16=False)
        bf16 = seconds_per_batch(arch, vocab, featurizer, chunks, bf16=True)
        print(f"{arch:<14}{size:>6}{fp32:>14.3f}{bf16:>14.3f}{fp32 / bf16:>15.2f}"
              f"{PRESETS[arch]['bf16']!s:>13}")


if __name__ == "__main__":
    main()
