"""Letter accuracy per dataset (writer-disjoint sets reported apart) and confusions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.handwriting.augment import prepare_batch
from models.handwriting.data import WRITER_DISJOINT, LabelSet, LetterSet


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
