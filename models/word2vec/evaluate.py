"""Intrinsic evaluation of word vectors: word similarity (Spearman rho) and analogies.

Benchmarks (all under ``<data>/wordsim``): WordSim-353 combined (Finkelstein et al. 2002),
SimLex-999 (Hill et al. 2015), MEN natural form (Bruni et al. 2014) and the Google analogy
questions (Mikolov et al. 2013). Only pairs/questions whose words are all in the
vocabulary are scored; coverage is reported beside each figure, as gensim does.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from models.word2vec.vectors import WordVectors

log = logging.getLogger(__name__)

Pair = tuple[str, str, float]
PROBE_WORDS = ("chip", "intel", "baby", "stock", "japan")


def load_wordsim353(path: Path) -> list[Pair]:
    """WordSim-353 ``combined.csv``: header, then ``word1,word2,score``."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(r[0].lower(), r[1].lower(), float(r[2])) for r in rows if len(r) >= 3]


def load_simlex999(path: Path) -> list[Pair]:
    """SimLex-999 ``SimLex-999.txt``: tab-separated with a header; the score is column 4."""
    rows = [line.rstrip("\r\n").split("\t") for line in path.read_text("utf-8").splitlines()]
    return [(r[0].lower(), r[1].lower(), float(r[3])) for r in rows[1:] if len(r) >= 4]


def load_men(path: Path) -> list[Pair]:
    """MEN natural form: ``word1 word2 score`` per line."""
    rows = [line.split() for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [(r[0].lower(), r[1].lower(), float(r[2])) for r in rows]


def similarity_benchmarks(wordsim_dir: Path) -> dict[str, list[Pair]]:
    """Load the three similarity benchmarks from ``wordsim_dir``.

    Raises:
        FileNotFoundError: a benchmark file is missing.
    """
    return {
        "wordsim353": load_wordsim353(wordsim_dir / "wordsim353" / "combined.csv"),
        "simlex999": load_simlex999(wordsim_dir / "SimLex-999" / "SimLex-999.txt"),
        "men": load_men(wordsim_dir / "MEN" / "MEN_dataset_natural_form_full"),
    }


@dataclass
class SimilarityResult:
    """Spearman correlation on the in-vocabulary pairs of one benchmark."""

    spearman: float
    pairs_used: int
    pairs_total: int

    @property
    def coverage(self) -> float:
        return self.pairs_used / self.pairs_total if self.pairs_total else 0.0


def spearman_similarity(vectors: WordVectors, pairs: list[Pair]) -> SimilarityResult:
    """Spearman rho between human scores and cosine similarity, in-vocabulary pairs only."""
    index = vectors.vocab.index
    used = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
    if len(used) < 2:
        return SimilarityResult(float("nan"), len(used), len(pairs))
    left = torch.tensor([u[0] for u in used], device=vectors.device)
    right = torch.tensor([u[1] for u in used], device=vectors.device)
    cos = vectors.cosine(left, right).cpu().numpy()
    rho = spearmanr(cos, np.array([u[2] for u in used])).statistic
    return SimilarityResult(float(rho), len(used), len(pairs))


def load_analogies(path: Path) -> list[tuple[str, str, str, str]]:
    """Google analogy questions ``a b c d`` (``a:b :: c:d``), lowercased, headers skipped."""
    out = []
    for line in path.read_text("utf-8").splitlines():
        if line.startswith(":") or not line.strip():
            continue
        a, b, c, d = line.lower().split()
        out.append((a, b, c, d))
    return out


def analogy_accuracy(
    vectors: WordVectors, questions: list[tuple[str, str, str, str]], chunk: int = 2048
) -> SimilarityResult:
    """3CosAdd accuracy (``b - a + c`` nearest is ``d``) over in-vocabulary questions.

    Returned in a :class:`SimilarityResult` whose ``spearman`` field holds the accuracy.
    """
    index = vectors.vocab.index
    used = [tuple(index[w] for w in q) for q in questions if all(w in index for w in q)]
    if not used:
        return SimilarityResult(float("nan"), 0, len(questions))
    ids = torch.tensor(used, device=vectors.device)  # (Q, 4)
    correct = 0
    for start in range(0, len(ids), chunk):
        q = ids[start : start + chunk]
        _, top = vectors.analogy(q[:, 1], q[:, 0], q[:, 2], k=1)  # b - a + c
        correct += int((top[:, 0] == q[:, 3]).sum())
    return SimilarityResult(correct / len(used), len(used), len(questions))


def probe_neighbors(
    vectors: WordVectors, words: tuple[str, ...] = PROBE_WORDS, k: int = 5
) -> dict[str, list[tuple[str, float]]]:
    """Top-``k`` cosine neighbours of a few probe words (those in the vocabulary)."""
    present = [w for w in words if w in vectors.vocab]
    if not present:
        return {}
    idx = torch.tensor([vectors.vocab.index[w] for w in present], device=vectors.device)
    scores, top = vectors.neighbors(idx, k)
    tokens = vectors.vocab.tokens
    return {
        w: [(tokens[j], round(float(s), 4)) for s, j in zip(srow, trow, strict=True)]
        for w, srow, trow in zip(present, scores.tolist(), top.tolist(), strict=True)
    }


def evaluate_vectors(vectors: WordVectors, wordsim_dir: Path) -> dict[str, dict[str, float]]:
    """All intrinsic metrics as ``{benchmark: {spearman|accuracy, pairs_used, pairs_total}}``."""
    results: dict[str, dict[str, float]] = {}
    for name, pairs in similarity_benchmarks(wordsim_dir).items():
        results[name] = asdict(spearman_similarity(vectors, pairs))
    analogy = analogy_accuracy(vectors, load_analogies(wordsim_dir / "questions-words.txt"))
    results["google_analogy"] = {
        "accuracy": analogy.spearman,
        "questions_used": analogy.pairs_used,
        "questions_total": analogy.pairs_total,
    }
    return results


def format_report(metrics: dict[str, dict[str, float]], probes: dict) -> str:
    """Human-readable report of :func:`evaluate_vectors` and :func:`probe_neighbors`."""
    lines = []
    for name, m in metrics.items():
        if "spearman" in m:
            lines.append(
                f"{name:<16} spearman rho = {m['spearman']:.4f}   "
                f"({m['pairs_used']}/{m['pairs_total']} pairs in vocabulary)"
            )
        else:
            lines.append(
                f"{name:<16} accuracy     = {m['accuracy']:.4f}   "
                f"({m['questions_used']}/{m['questions_total']} questions in vocabulary)"
            )
    for word, nbrs in probes.items():
        lines.append(f"{word:<10} -> " + ", ".join(f"{w} ({s:.3f})" for w, s in nbrs))
    return "\n".join(lines)


def load_pairs_file(path: Path) -> list[Pair]:
    """Any ``word1 word2 score`` file (tab, comma or space separated; ``#`` comments and a
    non-numeric header line are skipped).

    Raises:
        ValueError: no line could be parsed.
    """
    pairs = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.replace(",", " ").replace("\t", " ").split()
        try:
            pairs.append((parts[0].lower(), parts[1].lower(), float(parts[2])))
        except (IndexError, ValueError):
            continue
    if not pairs:
        raise ValueError(f"{path} has no 'word1 word2 score' lines")
    return pairs
