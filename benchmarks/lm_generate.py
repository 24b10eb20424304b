"""Generation speed of the LSTM LM, fp32 vs int8 dynamic quantization, in one process.

Prints tokens/second at batch 1 and 8 (``num_samples``), the validation perplexity of each
variant, and the int8/fp32 ratios.

    python benchmarks/lm_generate.py [--artifact-dir artifacts/lm] [--tokens 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from models.common.paths import artifacts_dir, data_dir
from models.lm.data import tokenize
from models.lm.evaluate import perplexity
from models.lm.predictor import LMPredictor


def tokens_per_second(lm: LMPredictor, batch: int, tokens: int, repeats: int = 3) -> float:
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        n = sum(1 for _ in lm.stream("the company said", tokens, 1.0, None, None, r, batch,
                                     False))
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "lm")
    parser.add_argument("--valid-file", type=Path, default=data_dir() / "ptb" / "ptb.valid.txt")
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {}
    for name, quantize in (("fp32", False), ("int8", True)):
        lm = LMPredictor.load(args.artifact_dir, "cpu", quantize)
        ids = tokenize(args.valid_file, lm.dictionary, grow=False)
        rows[name] = {
            "batch1": tokens_per_second(lm, 1, args.tokens),
            "batch8": tokens_per_second(lm, 8, args.tokens),
            "valid_ppl": perplexity(lm.model, ids),
        }
    print(f"{'variant':<8}{'tok/s b=1':>11}{'tok/s b=8':>11}{'valid ppl':>11}")
    for name, r in rows.items():
        print(f"{name:<8}{r['batch1']:>11.0f}{r['batch8']:>11.0f}{r['valid_ppl']:>11.2f}")
    f, q = rows["fp32"], rows["int8"]
    print(f"int8/fp32 speed: batch1 {q['batch1'] / f['batch1']:.2f}x, "
          f"batch8 {q['batch8'] / f['batch8']:.2f}x; perplexity "
          f"{100 * (q['valid_ppl'] / f['valid_ppl'] - 1):+.2f}%")


if __name__ == "__main__":
    main()
