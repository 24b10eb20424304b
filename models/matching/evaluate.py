"""Score any Quora-style or WikiQA-style file with a served matching model.

``modelzoo evaluate matching --file PATH [--model NAME]``: Quora-style files get accuracy and
F1 at the model's threshold (the one stated in its card); WikiQA-style files get MAP and MRR
over the questions with both correct and incorrect candidates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from models.matching.data import accuracy_f1, map_mrr, read_pairs
from models.matching.features import tokenize
from models.matching.predictor import MatchingPredictor


def evaluate_file(predictor: MatchingPredictor, path: Path, model: str | None = None,
                  batch_size: int = 128) -> dict[str, Any]:
    """Metrics of one model on one labelled file, plus pairs/second.

    Args:
        model: a served model name; default: the pair-scoring default for Quora-style files,
            the ranking default for WikiQA-style files.

    Raises:
        ValueError: a malformed file (see :func:`models.matching.data.read_pairs`).
        models.common.errors.UnknownItemError: unknown ``model``.
    """
    fmt, pairs = read_pairs(path)
    matcher = predictor.resolve(model, "match" if fmt == "quora" else "rank")
    kept = [(p, tokenize(p.a), tokenize(p.b)) for p in pairs]
    kept = [(p, a, b) for p, a, b in kept if a and b]
    started = time.perf_counter()
    scores = np.asarray(matcher.probabilities([(a, b) for _, a, b in kept], predictor.device,
                                              batch_size))
    seconds = time.perf_counter() - started
    labels = np.array([p.label for p, _, _ in kept])
    out: dict[str, Any] = {"file": str(path), "format": fmt, "model": matcher.name,
                           "quantized": predictor.quantized, "pairs": len(kept),
                           "skipped_empty": len(pairs) - len(kept),
                           "pairs_per_s": round(len(kept) / seconds, 1)}
    if fmt == "quora":
        acc, f1 = accuracy_f1(scores, labels, matcher.threshold)
        out |= {"threshold": matcher.threshold, "accuracy": round(acc, 4), "f1": round(f1, 4)}
    else:
        m, r, n = map_mrr([p.group for p, _, _ in kept], scores, labels)
        out |= {"map": round(m, 4), "mrr": round(r, 4), "questions": n}
    return out
