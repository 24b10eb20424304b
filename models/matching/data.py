"""Readers for the two matching datasets and the metrics they are scored with.

* Quora Question Pairs (BiMPM partition dev; our 39k training substitute, SOURCES-quora.md):
  ``label<TAB>question1<TAB>question2<TAB>id`` per line, optionally gzipped, no header.
* WikiQA (Yang, Yih & Meek 2015): a header line then ``QuestionID Question DocumentID
  DocumentTitle SentenceID Sentence Label`` (CRLF line ends); the candidates of a question
  are consecutive.

Metrics: accuracy and F1 at a threshold (Quora), and MAP / MRR over the questions that have
both a correct and an incorrect candidate (the "filtered" WikiQA evaluation of Yang et al.
2015, as in ``WikiQA-*-filtered.ref``).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("quora", "wikiqa")
WIKIQA_HEADER = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel"


@dataclass(frozen=True)
class Pair:
    """One labelled text pair.

    Attributes:
        a: the first question (Quora) or the question (WikiQA).
        b: the second question or the candidate answer sentence.
        label: 1 = duplicate / correct answer, 0 otherwise.
        group: the WikiQA question id the candidate belongs to (``None`` for Quora).
    """

    a: str
    b: str
    label: int
    group: str | None = None


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        text = f.read()
    return [line.rstrip("\r") for line in text.split("\n") if line.strip("\r")]


def _label(value: str, path: Path, line_no: int) -> int:
    if value not in ("0", "1"):
        raise ValueError(f"{path}:{line_no}: label must be 0 or 1, got {value!r}")
    return int(value)


def read_pairs(path: Path) -> tuple[str, list[Pair]]:
    """Read a Quora-style or WikiQA-style file; the format is told by the first line.

    Returns:
        ``("wikiqa", pairs)`` when the file starts with the WikiQA header, else
        ``("quora", pairs)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line with the wrong number of fields or a label other than 0/1,
            naming the file and line.
    """
    lines = _lines(path)
    if lines and lines[0] == WIKIQA_HEADER:
        pairs = []
        for n, line in enumerate(lines[1:], start=2):
            cols = line.split("\t")
            if len(cols) != 7:
                raise ValueError(f"{path}:{n}: expected 7 tab-separated WikiQA fields, "
                                 f"got {len(cols)}")
            pairs.append(Pair(cols[1], cols[5], _label(cols[6], path, n), group=cols[0]))
        return "wikiqa", pairs
    pairs = []
    for n, line in enumerate(lines, start=1):
        cols = line.split("\t")
        if len(cols) not in (3, 4):
            raise ValueError(f"{path}:{n}: expected 'label<TAB>text_a<TAB>text_b[<TAB>id]', "
                             f"got {len(cols)} fields")
        pairs.append(Pair(cols[1], cols[2], _label(cols[0], path, n)))
    return "quora", pairs


def split_path(data_dir: Path, dataset: str, split: str) -> Path:
    """The file of ``split`` (``train`` or ``dev``) of ``dataset`` under the data folder.

    Raises:
        ValueError: unknown dataset or split.
    """
    files = {("quora", "train"): "quora/train.tsv.gz", ("quora", "dev"): "quora/dev.tsv.gz",
             ("wikiqa", "train"): "wikiqa/WikiQA-train.tsv",
             ("wikiqa", "dev"): "wikiqa/WikiQA-dev.tsv"}
    if (dataset, split) not in files:
        raise ValueError(f"dataset must be one of {DATASETS} and split train or dev; got "
                         f"{dataset!r}, {split!r}")
    return data_dir / files[dataset, split]


def accuracy_f1(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Accuracy and F1 (of the positive class) when ``score >= threshold`` predicts 1.

    Args:
        scores: ``(N,)`` match probabilities.
        labels: ``(N,)`` 0/1 labels.
    """
    pred = scores >= threshold
    gold = labels.astype(bool)
    tp = float(np.sum(pred & gold))
    precision_den, recall_den = float(pred.sum()), float(gold.sum())
    f1 = 2 * tp / (precision_den + recall_den) if precision_den + recall_den else 0.0
    return float(np.mean(pred == gold)), f1


def best_threshold(scores: np.ndarray, labels: np.ndarray, objective: str = "accuracy") -> float:
    """The threshold among the scores (or 0.5 if none beats it) that maximises ``objective``
    (``"accuracy"`` or ``"f1"``).

    Args:
        scores: ``(N,)`` match probabilities; labels: ``(N,)`` 0/1.

    Raises:
        ValueError: an unknown objective.
    """
    if objective not in ("accuracy", "f1"):
        raise ValueError(f"objective must be 'accuracy' or 'f1', got {objective!r}")
    pick = 0 if objective == "accuracy" else 1
    best_t, best = 0.5, accuracy_f1(scores, labels, 0.5)[pick]
    order = np.unique(scores)
    candidates = order if order.size <= 2000 else np.quantile(order, np.linspace(0, 1, 2001))
    for t in candidates:
        value = accuracy_f1(scores, labels, float(t))[pick]
        if value > best:
            best_t, best = float(t), value
    return best_t


def map_mrr(groups: Sequence[str | None], scores: np.ndarray,
            labels: np.ndarray) -> tuple[float, float, int]:
    """Mean average precision and mean reciprocal rank over the groups (questions) that
    have at least one correct and one incorrect candidate; candidates are ranked by score
    (ties keep file order).

    Returns:
        ``(MAP, MRR, number of groups scored)``; ``(0.0, 0.0, 0)`` when no group qualifies.
    """
    by_group: dict[str | None, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    aps, rrs = [], []
    for idx in by_group.values():
        lab = labels[idx]
        if lab.min() == lab.max():
            continue
        ranked = lab[np.argsort(-scores[idx], kind="stable")]
        hits = np.flatnonzero(ranked == 1)
        aps.append(float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))))
        rrs.append(1.0 / (hits[0] + 1))
    if not aps:
        return 0.0, 0.0, 0
    return float(np.mean(aps)), float(np.mean(rrs)), len(aps)
