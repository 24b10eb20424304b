"""Translation speed and quality: greedy vs beam 5, fp32 vs int8, batch 1 / 8 / 32, in one
process.

For each variant (precision × decoding) prints sentences/second at batch 1, 8 and 32 and the
sacreBLEU BLEU/chrF on the first ``--n`` sentences of ``test_2016_flickr`` (decoded at batch
32), then each figure's ratio to the baseline, fp32 greedy at batch 32. Speeds at batch 1 and
8 are measured on the first ``--speed-n`` of those sentences (batch 1 is slow).

    python benchmarks/translate.py [--artifact-dir artifacts/translation] [--n 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from models.common.paths import artifacts_dir, data_dir
from models.translation.data import read_lines, split_paths
from models.translation.evaluate import bleu_chrf, translate_file
from models.translation.predictor import TranslationPredictor

BATCHES = (1, 8, 32)
DECODING = (("greedy", 1), ("beam5", 5))


def sentences_per_second(predictor: TranslationPredictor, sources: list[str], beam_size: int,
                         batch_size: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = translate_file(predictor, sources, beam_size, batch_size, progress=False)
    return len(sources) / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "translation")
    parser.add_argument("--data-dir", type=Path, default=data_dir() / "multi30k")
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--n", type=int, default=300, help="sentences scored with BLEU")
    parser.add_argument("--speed-n", type=int, default=64,
                        help="sentences timed at batch 1 and 8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    src_path, ref_path = split_paths(args.data_dir, args.split)
    sources, references = read_lines(src_path)[:args.n], read_lines(ref_path)[:args.n]
    rows: dict[str, dict[str, float]] = {}
    for precision, quantize in (("fp32", False), ("int8", True)):
        predictor = TranslationPredictor.load(args.artifact_dir, "cpu", quantize)
        translate_file(predictor, sources[:8], 1, 8, progress=False)  # warm-up
        for decoding, beam in DECODING:
            row: dict[str, float] = {}
            for batch in BATCHES[:-1]:
                row[f"b{batch}"], _ = sentences_per_second(predictor, sources[:args.speed_n],
                                                           beam, batch)
            row["b32"], hypotheses = sentences_per_second(predictor, sources, beam, 32)
            scores = bleu_chrf(hypotheses, references)
            row["bleu"], row["chrf"] = scores["bleu"], scores["chrf"]
            rows[f"{precision} {decoding}"] = row
            print(f"{precision} {decoding}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()),
                  flush=True)
    print(f"\n{args.split}, first {len(sources)} sentences (speed at b1/b8: first "
          f"{min(args.speed_n, len(sources))}); {args.threads} threads; {scores['bleu_signature']}")
    print(f"{'variant':<14}" + "".join(f"{f'sent/s b={b}':>13}" for b in BATCHES)
          + f"{'BLEU':>8}{'chrF':>8}")
    for name, r in rows.items():
        print(f"{name:<14}" + "".join(f"{r[f'b{b}']:>13.1f}" for b in BATCHES)
              + f"{r['bleu']:>8.2f}{r['chrf']:>8.2f}")
    base = rows["fp32 greedy"]
    print("\nratios vs fp32 greedy batch 32 (speed) and its BLEU/chrF (difference, points):")
    for name, r in rows.items():
        speeds = "".join(f"{r[f'b{b}'] / base['b32']:>12.2f}x" for b in BATCHES)
        deltas = f"{r['bleu'] - base['bleu']:>+8.2f}{r['chrf'] - base['chrf']:>+8.2f}"
        print(f"{name:<14}{speeds}{deltas}")


if __name__ == "__main__":
    main()
