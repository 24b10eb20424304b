"""Measure the rule behind ``pipeline=auto``: when to keep the contour reading.

Every image of every ``--pages`` folder (``labels.tsv`` or ``labels.jsonl``), plus composed
pages made here from the held-out (test-split) letters (block capitals written apart, clean
and realistic photos, and mixed case), is read with ``pipeline=contours`` and with
``pipeline=lines``. For each candidate rule "keep contours when the letter CNN's mean
confidence >= m and every letter's >= n" the script prints the A-Z case-insensitive CER
(summed over images) that ``auto`` would get on each group, next to contours-only and
lines-only; ``*`` marks the rule in ``models.handwriting.predictor``.

    python benchmarks/handwriting_pipeline_rule.py --pages ../shared/data/handwriting-pages \\
        [--pages more/] [--synth 20] [--artifact-dir artifacts/handwriting]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.paths import artifacts_dir, data_dir
from models.handwriting import predictor as hw
from models.handwriting.evaluate import read_page_labels
from models.handwriting.metrics import ErrorCounts, error_counts, total_counts
from models.handwriting.predictor import HandwritingPredictor

MEANS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.01)  # 1.01: never contours
MINS = (0.0, 0.3, 0.5, 0.7)


@dataclass
class Reading:
    group: str
    file: str
    mean_conf: float
    min_conf: float
    contours: ErrorCounts
    lines: ErrorCounts


def read_folder(predictor: HandwritingPredictor, folder: Path, group: str | None
                ) -> list[Reading]:
    """Both pipelines' readings of every labelled image of ``folder``, grouped by style
    (or all under ``group``)."""
    out = []
    for label in read_page_labels(folder):
        data = (folder / label.file).read_bytes()
        contours, _ = predictor.recognize(data, pipeline="contours")
        lines, _ = predictor.recognize(data, pipeline="lines")
        conf = [c.confidence for c in contours.letters] or [0.0]
        out.append(Reading(group or label.style, label.file, float(np.mean(conf)),
                           float(min(conf)), error_counts(contours.text, label.text),
                           error_counts(lines.text, label.text)))
    return out


def composed(root: Path, n: int, tmp: Path) -> list[tuple[str, Path]]:
    """Composed evaluation folders (test-split letters): (group name, folder)."""
    from models.handwriting.synth import make_eval_set

    sets = []
    for difficulty, case in (("clean", "upper"), ("realistic", "upper"), ("realistic", "mixed")):
        folder = make_eval_set(tmp / f"{difficulty}-{case}", n, seed=7, difficulty=difficulty,
                               data_dir=root, case=case)
        sets.append((f"composed {difficulty} {case}", folder))
    return sets


def table(readings: list[Reading]) -> str:
    groups = sorted({r.group for r in readings})
    head = f"{'rule (mean, min)':<18}" + "".join(f"{g[:22]:>24}" for g in groups) + \
        f"{'all':>10}"
    rows = [head, "-" * len(head)]

    def row(name: str, pick: list[ErrorCounts]) -> str:
        cells = []
        for g in groups:
            counts = total_counts(p for p, r in zip(pick, readings, strict=True) if r.group == g)
            cells.append(f"{100 * counts.cer_az:>23.1f}%")
        return f"{name:<18}" + "".join(cells) + f"{100 * total_counts(pick).cer_az:>9.1f}%"

    rows.append(row("contours only", [r.contours for r in readings]))
    rows.append(row("lines only", [r.lines for r in readings]))
    for m in MEANS:
        for n in MINS:
            pick = [r.contours if (r.mean_conf >= m and r.min_conf >= n) else r.lines
                    for r in readings]
            star = "*" if (m, n) == (hw.AUTO_MEAN_CONFIDENCE, hw.AUTO_MIN_LETTER) else " "
            rows.append(row(f"{star}auto {m:.2f}, {n:.1f}", pick))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, action="append", default=[],
                        help="a labelled folder of real images (repeatable)")
    parser.add_argument("--synth", type=int, default=20,
                        help="composed pages per composed group (0: none)")
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "handwriting")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = HandwritingPredictor.load(args.artifact_dir, quantize=True)
    if predictor.line_reader is None:
        raise SystemExit(f"{args.artifact_dir} has no crnn/ line recognizer")
    readings: list[Reading] = []
    for folder in args.pages:
        readings += read_folder(predictor, folder, None)
    root = data_dir() / "handwriting"
    if args.synth and root.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            for group, folder in composed(root, args.synth, Path(tmp)):
                readings += read_folder(predictor, folder, group)
    print(f"{len(readings)} images; A-Z CER of auto per rule (summed over images)")
    print(table(readings))
    print("\nper image: group, file, contour mean/min confidence, CER A-Z contours / lines")
    for r in readings:
        if not r.group.startswith("composed"):
            print(f"  {r.group:<12} {r.file:<34} {r.mean_conf:.3f} {r.min_conf:.3f}  "
                  f"{100 * r.contours.cer_az:5.1f}% / {100 * r.lines.cer_az:5.1f}%")


if __name__ == "__main__":
    main()
