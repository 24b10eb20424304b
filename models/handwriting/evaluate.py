"""Letter accuracy per dataset (writer-disjoint sets reported apart), confusions, and
character error rate on whole pages."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from models.handwriting.augment import prepare_batch
from models.handwriting.data import WRITER_DISJOINT, LabelSet, LetterSet
from models.handwriting.metrics import character_error_rate, edit_distance, word_accuracy

if TYPE_CHECKING:
    from models.handwriting.predictor import HandwritingPredictor


@torch.inference_mode()
def predict_letters(model: nn.Module, images: np.ndarray, image_size: int,
                    batch_size: int = 512, device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities for uint8 letter images (N, S, S) → float32 (N, num_classes)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = prepare_batch(torch.from_numpy(images[i:i + batch_size]), image_size).to(device)
        out.append(model(x).float().softmax(-1).cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


@dataclass
class SetScore:
    """Accuracy of one dataset's test split."""

    name: str
    n: int
    accuracy: float
    writer_disjoint: bool
    confusions: list[tuple[str, str, int]] = field(default_factory=list)


def score_sets(model: nn.Module, data: LetterSet, label_set: LabelSet, image_size: int,
               top_confusions: int = 5, device: torch.device | str = "cpu") -> list[SetScore]:
    """Accuracy per source in ``data`` (case-insensitive via ``label_set``), plus "all".

    Confusions are ``(true, predicted, count)``, most frequent first.
    """
    targets = label_set.targets(data.codepoints)
    preds = predict_letters(model, data.images, image_size, device=device).argmax(-1)
    scores = []
    names = [*sorted(set(data.source.tolist())), "all"]
    for name in names:
        keep = np.ones(len(data), dtype=bool) if name == "all" else data.source == name
        t, p = targets[keep], preds[keep]
        pairs = Counter((label_set.classes[a], label_set.classes[b])
                        for a, b in zip(t, p, strict=True) if a != b)
        scores.append(SetScore(name, int(keep.sum()), float((t == p).mean()) if keep.any() else 0.0,
                               name in WRITER_DISJOINT,
                               [(a, b, c) for (a, b), c in pairs.most_common(top_confusions)]))
    return scores


def format_scores(scores: list[SetScore]) -> str:
    """A plain-text table: writer-disjoint sets first, then the others, then all."""
    lines = [f"{'set':32s} {'n':>6s} {'accuracy':>9s}  most confused (true→pred ×n)"]
    order = sorted(scores, key=lambda s: (s.name == "all", not s.writer_disjoint, s.name))
    for s in order:
        tag = " (writer-disjoint)" if s.writer_disjoint else ""
        conf = ", ".join(f"{a}→{b}×{c}" for a, b, c in s.confusions)
        lines.append(f"{s.name + tag:32s} {s.n:6d} {100 * s.accuracy:8.2f}%  {conf}")
    return "\n".join(lines)


@dataclass
class PageScore:
    """Whole-image quality on a folder of pages (``labels.jsonl`` + images).

    Attributes:
        cer: character error rate (Levenshtein distance / reference length, spaces and
            newlines counted), references upper-cased as the model is case-insensitive.
        word_accuracy: fraction of reference words read exactly.
        letter_count_accuracy: fraction of pages where segmentation found exactly as many
            letters as the reference has.
        exact: fraction of pages read exactly.
        seconds_per_page: mean wall time of ``recognize`` per page.
    """

    folder: str
    n: int
    cer: float
    word_accuracy: float
    letter_count_accuracy: float
    exact: float
    seconds_per_page: float
    worst: list[tuple[str, str, str]] = field(default_factory=list)


def score_pages(predictor: HandwritingPredictor, folder: Path, worst: int = 3) -> PageScore:
    """Read every page listed in ``folder/labels.jsonl`` and score the text.

    Raises:
        FileNotFoundError: no ``labels.jsonl`` or a listed image is missing.
    """
    records = [json.loads(line) for line in
               (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines() if line]
    hyps, refs, seconds = [], [], 0.0
    for r in records:
        t0 = time.perf_counter()
        result, _ = predictor.recognize((folder / r["file"]).read_bytes())
        seconds += time.perf_counter() - t0
        hyps.append(result.text)
        refs.append(r["text"].upper())
    per_page = sorted(((edit_distance(h, t) / max(1, len(t)), f["file"], h, t)
                       for h, t, f in zip(hyps, refs, records, strict=True)), reverse=True)
    return PageScore(
        str(folder), len(records), character_error_rate(hyps, refs), word_accuracy(hyps, refs),
        float(np.mean([sum(c.isalpha() for c in h) == sum(c.isalpha() for c in t)
                       for h, t in zip(hyps, refs, strict=True)])),
        float(np.mean([h == t for h, t in zip(hyps, refs, strict=True)])),
        seconds / max(1, len(records)),
        [(name, h, t) for _, name, h, t in per_page[:worst]],
    )


def format_page_score(s: PageScore) -> str:
    """One paragraph: CER, word accuracy, segmentation and the worst pages."""
    lines = [f"{s.folder}: {s.n} pages  CER {100 * s.cer:.2f}%  word accuracy "
             f"{100 * s.word_accuracy:.2f}%  pages exact {100 * s.exact:.1f}%  letter count right "
             f"{100 * s.letter_count_accuracy:.1f}%  {1000 * s.seconds_per_page:.0f} ms/page"]
    for name, hyp, ref in s.worst:
        lines.append(f"  worst {name}: read {hyp!r} for {ref!r}")
    return "\n".join(lines)
