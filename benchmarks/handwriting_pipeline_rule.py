"""Measure the rule behind ``pipeline=auto``: when to keep the contour reading.

Every image of every ``--pages`` folder (``labels.tsv`` or ``labels.jsonl``), plus composed
pages made here from the held-out (test-split) letters (block capitals written apart, clean
and realistic photos, and mixed case), is read with ``pipeline=contours`` and with
``pipeline=lines``. For each candidate rule "keep contours when the letter CNN's mean
confidence >= m and every letter's >= n" the script prints the A-Z case-insensitive CER
(summed over images) that ``auto`` would get on each group, next to contours-only and
lines-only; ``*`` marks the rule in ``models.handwriting.predictor``. A second table does
the same for the line-by-line fusion that ``auto`` applies to the pages it reads with lines
(``predictor.fuse_lines``: "a contour line whose letters have mean >= a and min >= b
replaces the line recognizer's line when its confidence is below c, or is added where the
recognizer has no line"), with the page rule as served: no fusion, the served knobs, and the
best candidates.

    python benchmarks/handwriting_pipeline_rule.py --pages ../shared/data/handwriting-pages \\
        [--pages more/] [--synth 20] [--artifact-dir artifacts/handwriting]
"""

from __future__ import annotations

import argparse
import itertools
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
    reference: str = ""
    contour_reading: hw.Recognition | None = None
    line_reading: hw.Recognition | None = None

    def fused(self, knobs: dict[str, float]) -> ErrorCounts:
        """The counts of ``fuse_lines`` (these knobs) on this image's two readings."""
        assert self.contour_reading is not None and self.line_reading is not None
        fused = hw.fuse_lines(self.contour_reading, self.line_reading,
                              line_mean=knobs["line_mean"], line_min=knobs["line_min"],
                              crnn_below=knobs["crnn_below"],
                              min_letters=int(knobs["min_letters"]))
        return error_counts(fused.text, self.reference)


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
                           error_counts(lines.text, label.text), label.text, contours, lines))
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


FUSE_MEANS = (0.8, 0.85, 0.9, 0.95, 0.98)
FUSE_MINS = (0.3, 0.5, 0.7, 0.9)
FUSE_BELOW = (0.7, 0.8, 0.9, 0.95, 1.01)  # 1.01: replace whenever the contour line is sure
FUSE_LETTERS = (1, 2, 3, 99)  # 99: never add a line


def fusion_table(readings: list[Reading], top: int = 12) -> str:
    """A-Z CER per group of ``auto`` with line fusion, two ways: fusing every page, or only
    the pages the served page rule sends to lines (contours kept whole on the others);
    without fusion, the served knobs, and the ``top`` best knob settings over all images."""
    groups = sorted({r.group for r in readings})
    page_pick = [r.mean_conf >= hw.AUTO_MEAN_CONFIDENCE and r.min_conf >= hw.AUTO_MIN_LETTER
                 for r in readings]

    def pick(knobs: dict[str, float] | None, every_page: bool) -> list[ErrorCounts]:
        return [r.contours if keep and not every_page else
                (r.lines if knobs is None else r.fused(knobs))
                for r, keep in zip(readings, page_pick, strict=True)]

    served = {"line_mean": hw.FUSE_LINE_MEAN, "line_min": hw.FUSE_LINE_MIN,
              "crnn_below": hw.FUSE_CRNN_BELOW, "min_letters": hw.FUSE_MIN_LETTERS}
    scored = []
    for every in (True, False):
        for m, n, c, k in itertools.product(FUSE_MEANS, FUSE_MINS, FUSE_BELOW, FUSE_LETTERS):
            knobs = {"line_mean": m, "line_min": n, "crnn_below": c, "min_letters": k}
            counts = pick(knobs, every)
            scored.append((total_counts(counts).cer_az, every, knobs, counts))
    scored.sort(key=lambda t: t[0])

    def name(every: bool, knobs: dict[str, float]) -> str:
        return (f"{'all' if every else 'rule'} {knobs['line_mean']:.2f} "
                f"{knobs['line_min']:.1f} {knobs['crnn_below']:.2f} "
                f"{int(knobs['min_letters'])}")

    rows = ["fuse on all pages or on the pages the page rule sends to lines "
            "(mean a, min b, below c, letters k)"]
    rows += _header(groups)
    rows.append(_row("rule, no fusion", pick(None, False), readings, groups))
    for every in (True, False):
        star = "*" if every == hw.AUTO_FUSE_EVERY_PAGE else " "
        rows.append(_row(star + name(every, served), pick(served, every), readings, groups))
    for _, every, knobs, counts in scored[:top]:
        rows.append(_row(" " + name(every, knobs), counts, readings, groups))
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
    print()
    print(fusion_table(readings))
    print("\nper image: group, file, contour mean/min confidence, CER A-Z contours / lines")
    for r in readings:
        if not r.group.startswith("composed"):
            print(f"  {r.group:<12} {r.file:<34} {r.mean_conf:.3f} {r.min_conf:.3f}  "
                  f"{100 * r.contours.cer_az:5.1f}% / {100 * r.lines.cer_az:5.1f}%")


if __name__ == "__main__":
    main()
