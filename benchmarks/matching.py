"""Matching speed and quality: every served architecture, fp32 vs int8, batch 1 and 64, in
one process.

For each model in the artifact folder and each precision, prints pairs/second at batch 1
(on the first ``--speed-n`` dev pairs) and batch 64 (on all dev pairs of the model's
dataset), and the dev metric (Quora: accuracy at the card's threshold; WikiQA: MAP over the
filtered questions), then each speed's ratio to the same model in fp32 at batch 64.

    python benchmarks/matching.py [--artifact-dir artifacts/matching] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from models.common.paths import artifacts_dir, data_dir
from models.matching.data import accuracy_f1, map_mrr, read_pairs, split_path
from models.matching.predictor import Matcher, MatchingPredictor
from models.matching.train import Example, to_examples
from models.matching.transformer import TransformerMatcher


def pairs_per_second(matcher: Matcher | TransformerMatcher, examples: list[Example],
                     device: torch.device, batch_size: int) -> tuple[float, np.ndarray]:
    pairs = [(a, b) for a, b, _, _ in examples]
    start = time.perf_counter()
    scores = matcher.probabilities(pairs, device, batch_size)
    return len(pairs) / (time.perf_counter() - start), np.asarray(scores)


def p50_ms(matcher: Matcher | TransformerMatcher, examples: list[Example],
           device: torch.device) -> float:
    """Median milliseconds to score one pair alone (batch 1)."""
    times = []
    for a, b, _, _ in examples:
        start = time.perf_counter()
        matcher.probabilities([(a, b)], device, 1)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def metric(dataset: str, scores: np.ndarray, examples: list[Example], threshold: float) -> str:
    labels = np.array([e[2] for e in examples])
    if dataset == "quora":
        acc, f1 = accuracy_f1(scores, labels, threshold)
        return f"accuracy {acc:.4f}  F1 {f1:.4f}"
    m, r, _ = map_mrr([e[3] for e in examples], scores, labels)
    return f"MAP {m:.4f}  MRR {r:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "matching")
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--speed-n", type=int, default=500, help="pairs timed at batch 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=None,
                        help="comma-separated served names (default: every model)")
    args = parser.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    torch.set_num_threads(args.threads)
    dev = {ds: to_examples(read_pairs(split_path(args.data_dir, ds, "dev"))[1])
           for ds in ("quora", "wikiqa")}
    print(f"{'model':<22}{'prec':<6}{'batch 1 pairs/s':>16}{'p50 ms @1':>10}"
          f"{'batch 64 pairs/s':>18}{'x fp32@64':>11}  dev metric")
    base: dict[str, float] = {}  # fp32 batch-64 speed per model
    for precision, quantize in (("fp32", False), ("int8", True)):
        predictor = MatchingPredictor.load(args.artifact_dir, "cpu", quantize)
        for name, matcher in sorted(predictor.matchers.items()):
            if wanted is not None and name not in wanted:
                continue
            examples = dev[matcher.config["dataset"]]
            speed1, _ = pairs_per_second(matcher, examples[:args.speed_n], predictor.device, 1)
            p50 = p50_ms(matcher, examples[:args.speed_n], predictor.device)
            speed64, scores = pairs_per_second(matcher, examples, predictor.device, 64)
            base.setdefault(name, speed64)
            quality = metric(matcher.config["dataset"], scores, examples, matcher.threshold)
            print(f"{name:<22}{precision:<6}{speed1:>16.1f}{p50:>10.1f}{speed64:>18.1f}"
                  f"{speed64 / base[name]:>11.2f}  {quality}")


if __name__ == "__main__":
    main()
