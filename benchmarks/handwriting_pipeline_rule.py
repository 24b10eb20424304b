"""Measure the rule behind ``pipeline=auto``: when to keep the contour reading.

Every image of every ``--pages`` folder (``labels.tsv`` or ``labels.jsonl``), plus composed
pages made here from the held-out (test-split) letters (block capitals written apart, clean
and realistic photos, and mixed case), is read with ``pipeline=contours`` and with
``pipeline=lines``. For each candidate rule "keep contours when the letter CNN's mean
confidence >= m and every letter's >= n" the script prints the A-Z case-insensitive CER
(summed over images) that ``auto`` would get on each group, next to contours-only and
lines-only; ``*`` marks the rule in ``models.handwriting.predictor``. A second table does
the same for the line-by-line fusion that ``auto`` applies on the base reading the page
rule picks (``predictor.fuse_lines``): no fusion; the confidence rule alone ("a contour line
whose letters have mean >= a and min >= b replaces the line recognizer's line when its
confidence is below c, or is added where the recognizer has no line", line pages only);
and with the line-score rule too ("the other pipeline's line replaces the base's when its
mean ln confidence + w x LM ln P per character is more than m above", every page), for a
grid of w and m (``*``: the served knobs). These two tables are about ``auto`` without the
joint reading. A third reads every image with ``pipeline=auto`` as served, for a few weights
of the letter CNN in the joint reading of the lines both pipelines found
(``models.handwriting.combine``; weight 0 turns it off, and the line-score and confidence
rules decide those lines as in the second table).

    python benchmarks/handwriting_pipeline_rule.py --pages ../shared/data/handwriting-pages \\
        [--pages more/] [--synth 20] [--synth-seed 7] [--artifact-dir artifacts/handwriting]

A folder whose labels carry no style is one group, named after the folder.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.common.paths import artifacts_dir, data_dir
from models.handwriting import predictor as hw
from models.handwriting.charlm import CharNgramLM
from models.handwriting.combine import JOINT_WEIGHT
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
    reference: str = ""
    contour_reading: hw.Recognition | None = None
    line_reading: hw.Recognition | None = None
    joint: dict[float, ErrorCounts] = field(default_factory=dict)

    def fused(self, lm: CharNgramLM | None, lm_weight: float = hw.FUSE_LM_WEIGHT,
              margin: float = hw.FUSE_SCORE_MARGIN) -> ErrorCounts:
        """The counts of ``fuse_lines`` on this image's two readings, on the base the served
        page rule picks (the line-score rule off without ``lm``)."""
        assert self.contour_reading is not None and self.line_reading is not None
        base = "contours" if hw.prefer_contours(self.contour_reading) else "lines"
        fused = hw.fuse_lines(self.contour_reading, self.line_reading, base=base, lm=lm,
                              lm_weight=lm_weight, margin=margin, joint=False)
        return error_counts(fused.text, self.reference)


def read_folder(predictor: HandwritingPredictor, folder: Path, group: str | None
                ) -> list[Reading]:
    """Both pipelines' readings of every labelled image of ``folder``, grouped by style
    (or all under ``group``)."""
    out = []
    assert predictor.line_reader is not None
    served = predictor.line_reader.joint_weight
    for label in read_page_labels(folder):
        data = (folder / label.file).read_bytes()
        contours, _ = predictor.recognize(data, pipeline="contours")
        lines, _ = predictor.recognize(data, pipeline="lines")
        conf = [hw.top_confidence(c) for c in contours.letters] or [0.0]
        style = label.style if label.style != "unknown" else folder.name
        joint = {}
        for weight in JOINT_WEIGHTS:
            predictor.line_reader.joint_weight = weight
            joint[weight] = error_counts(
                predictor.recognize(data, pipeline="auto")[0].text, label.text)
        predictor.line_reader.joint_weight = served
        out.append(Reading(group or style, label.file, float(np.mean(conf)),
                           float(min(conf)), error_counts(contours.text, label.text),
                           error_counts(lines.text, label.text), label.text, contours, lines,
                           joint))
    return out


def composed(root: Path, n: int, tmp: Path, seed: int = 7) -> list[tuple[str, Path]]:
    """Composed evaluation folders (test-split letters): (group name, folder)."""
    from models.handwriting.synth import make_eval_set

    sets = []
    for difficulty, case in (("clean", "upper"), ("realistic", "upper"), ("realistic", "mixed")):
        folder = make_eval_set(tmp / f"{difficulty}-{case}", n, seed=seed, difficulty=difficulty,
                               data_dir=root, case=case)
        sets.append((f"composed {difficulty} {case}", folder))
    return sets


def _header(groups: list[str]) -> list[str]:
    head = f"{'rule':<22}" + "".join(f"{g[:22]:>24}" for g in groups) + \
        f"{'all':>10}"
    return [head, "-" * len(head)]


def _row(name: str, pick: list[ErrorCounts], readings: list[Reading], groups: list[str]
         ) -> str:
    cells = []
    for g in groups:
        counts = total_counts(p for p, r in zip(pick, readings, strict=True) if r.group == g)
        cells.append(f"{100 * counts.cer_az:>23.1f}%")
    return f"{name:<22}" + "".join(cells) + f"{100 * total_counts(pick).cer_az:>9.1f}%"


LM_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
JOINT_WEIGHTS = (0.0, 0.5, 0.7, 1.0)
MARGINS = (0.0, 0.1, 0.2, 0.5, 1.0)


def fusion_table(readings: list[Reading], lm: CharNgramLM) -> str:
    """A-Z CER per group of ``auto`` on the served page rule's base reading: without fusion,
    with the confidence rule alone, and with the line-score rule for each (w, m)."""
    groups = sorted({r.group for r in readings})
    page_pick = [r.mean_conf >= hw.AUTO_MEAN_CONFIDENCE and r.min_conf >= hw.AUTO_MIN_LETTER
                 for r in readings]
    rows = ["fusion on the page rule's base (line score: w x LM per char, margin m)"]
    rows += _header(groups)
    rows.append(_row(" rule, no fusion", [r.contours if keep else r.lines for r, keep
                                          in zip(readings, page_pick, strict=True)],
                     readings, groups))
    rows.append(_row(" confidence rule only", [r.fused(None) for r in readings], readings,
                     groups))
    for w, m in itertools.product(LM_WEIGHTS, MARGINS):
        star = "*" if (w, m) == (hw.FUSE_LM_WEIGHT, hw.FUSE_SCORE_MARGIN) else " "
        rows.append(_row(f"{star}w {w:.2f}, m {m:.1f}", [r.fused(lm, w, m) for r in readings],
                         readings, groups))
    return "\n".join(rows)


def joint_table(readings: list[Reading]) -> str:
    """A-Z CER per group of ``auto`` as served, for each weight of the letter CNN in the
    joint reading of shared lines (weight 0: no joint reading, the line-score and
    confidence rules of the fusion table decide the pairs)."""
    groups = sorted({r.group for r in readings})
    rows = ["auto with the joint reading of shared lines (weight of the letter CNN; 0 = off)",
            *_header(groups)]
    for weight in JOINT_WEIGHTS:
        star = "*" if weight == JOINT_WEIGHT else " "
        rows.append(_row(f"{star}joint {weight:.2f}", [r.joint[weight] for r in readings],
                         readings, groups))
    return "\n".join(rows)


def table(readings: list[Reading]) -> str:
    """A-Z CER per group of contours only, lines only, and each page rule (no fusion)."""
    groups = sorted({r.group for r in readings})
    rows = _header(groups)
    rows.append(_row("contours only", [r.contours for r in readings], readings, groups))
    rows.append(_row("lines only", [r.lines for r in readings], readings, groups))
    for m in MEANS:
        for n in MINS:
            pick = [r.contours if (r.mean_conf >= m and r.min_conf >= n) else r.lines
                    for r in readings]
            star = "*" if (m, n) == (hw.AUTO_MEAN_CONFIDENCE, hw.AUTO_MIN_LETTER) else " "
            rows.append(_row(f"{star}auto {m:.2f}, {n:.1f}", pick, readings, groups))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, action="append", default=[],
                        help="a labelled folder of real images (repeatable)")
    parser.add_argument("--synth", type=int, default=20,
                        help="composed pages per composed group (0: none)")
    parser.add_argument("--synth-seed", type=int, default=7,
                        help="seed of the composed pages (the evaluate command uses 0)")
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
            for group, folder in composed(root, args.synth, Path(tmp), args.synth_seed):
                readings += read_folder(predictor, folder, group)
    print(f"{len(readings)} images; A-Z CER of auto per rule (summed over images)")
    print(table(readings))
    print()
    assert predictor.line_reader.lm is not None, "the line recognizer has no charlm.npz"
    print(fusion_table(readings, predictor.line_reader.lm))
    print()
    print(joint_table(readings))
    print("\nper image: group, file, contour mean/min confidence, CER A-Z contours / lines")
    for r in readings:
        if not r.group.startswith("composed"):
            print(f"  {r.group:<12} {r.file:<34} {r.mean_conf:.3f} {r.min_conf:.3f}  "
                  f"{100 * r.contours.cer_az:5.1f}% / {100 * r.lines.cer_az:5.1f}%")


if __name__ == "__main__":
    main()
