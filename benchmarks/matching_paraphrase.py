"""Out-of-domain paraphrase detection: ROC AUC of every served matching model on image
captions, a domain none of them was trained on.

Pairs are built from the Multi30k test split (``multi30k/test_2016_flickr.{de,en}.gz``,
1,000 Flickr30k images, one English caption and its German translation each):

- positive: the English caption and the English the served translation model makes of the
  German caption (two independent wordings of the same image description);
- hard negative: the same English caption and the translation of the caption of another
  image, the one whose English caption shares the most words with it (Jaccard on word sets),
  so that word overlap alone does not separate the classes.

The zero-shot cosine of the pretrained all-MiniLM-L6-v2 (mean pooling) is printed as the
baseline row, in the same run.

    python benchmarks/matching_paraphrase.py [--n 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from models.common.paths import artifacts_dir, data_dir
from models.matching.features import tokenize
from models.matching.predictor import MatchingPredictor
from models.matching.transformer import (
    BiEncoder,
    TransformerMatcher,
    build_encoder,
    load_tokenizer,
    text_of,
)
from models.translation.predictor import TranslationPredictor


def read_lines(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][:n]


def hard_negatives(english: list[str]) -> list[int]:
    """For each caption, the index of the other caption with the highest word Jaccard."""
    sets = [set(tokenize(s)) for s in english]
    out = []
    for i, a in enumerate(sets):
        best, best_j = -1.0, (i + 1) % len(sets)
        for j, b in enumerate(sets):
            if j != i:
                score = len(a & b) / max(1, len(a | b))
                if score > best:
                    best, best_j = score, j
        out.append(best_j)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images of the test split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_dir / "multi30k"
    english = read_lines(root / "test_2016_flickr.en.gz", args.n)
    german = read_lines(root / "test_2016_flickr.de.gz", args.n)
    start = time.perf_counter()
    translator = TranslationPredictor.load(artifacts_dir() / "translation")
    machine = [t.text for t in translator.translate(german, beam_size=1)]
    print(f"translated {len(german)} German captions in {time.perf_counter() - start:.1f} s")
    negatives = hard_negatives(english)
    pairs = [(e, m) for e, m in zip(english, machine, strict=True)]
    pairs += [(english[i], machine[j]) for i, j in enumerate(negatives)]
    labels = np.array([1] * len(english) + [0] * len(english))
    tokens = [(tokenize(a), tokenize(b)) for a, b in pairs]
    print(f"{len(pairs)} pairs (half paraphrases, half hard negatives)\n")
    print(f"{'model':<24} {'ROC AUC':>8} {'acc@thr':>8}")
    base = BiEncoder(build_encoder()).eval()
    zero_shot = TransformerMatcher("minilm-zero-shot", base, load_tokenizer(),
                                   {"max_length": 128}, {})
    texts = sorted({text_of(t) for p in tokens for t in p})
    index = {t: i for i, t in enumerate(texts)}
    vectors = zero_shot.embed(texts, torch.device("cpu"))
    cos = np.array([float(vectors[index[text_of(a)]] @ vectors[index[text_of(b)]])
                    for a, b in tokens])
    print(f"{'minilm zero-shot cosine':<24} {roc_auc_score(labels, cos):>8.4f} {'-':>8}")
    predictor = MatchingPredictor.load(artifacts_dir() / "matching")
    for name, matcher in sorted(predictor.matchers.items()):
        scores = np.asarray(matcher.probabilities(tokens, predictor.device))
        acc = float(((scores >= matcher.threshold) == labels).mean())
        default = " (default /v1/match)" if name == predictor.defaults["match"] else ""
        print(f"{name:<24} {roc_auc_score(labels, scores):>8.4f} {acc:>8.4f}{default}")


if __name__ == "__main__":
    main()
