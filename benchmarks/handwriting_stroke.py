"""Measure stroke-width normalization of the line crops (``lines.MIN_STROKE``) on real images.

Every image of every ``--pages`` folder (``labels.tsv`` or ``labels.jsonl``) is read with
``pipeline=auto`` once per ``min_stroke`` value (the contour reading is computed once, the
line reading per value, and fused as the service does); the script prints, per writing
style and overall, the A-Z edits and case-insensitive A-Z CER (summed over images) for each
value, the number of text lines whose strokes were thickened, and the images whose edits
change against ``min_stroke = 0`` (no thickening). ``*`` marks the served value.

    python benchmarks/handwriting_stroke.py --pages ../shared/data/handwriting-pages \\
        [--pages more/] [--values 0 0.8 1.0 1.2 1.5 2.0] [--artifact-dir artifacts/handwriting]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from models.common.paths import artifacts_dir
from models.handwriting.evaluate import read_page_labels
from models.handwriting.lines import MIN_STROKE, find_lines, line_crop
from models.handwriting.metrics import ErrorCounts, error_counts, total_counts
from models.handwriting.predictor import HandwritingPredictor
from models.handwriting.preprocess import InkMap, ink_map


def thickened_lines(inks: list[InkMap], min_stroke: float) -> int:
    """How many text lines of the pages' ink maps ``line_crop`` thickens at ``min_stroke``."""
    if min_stroke <= 0:
        return 0
    count = 0
    for ink in inks:
        for line in find_lines(ink):
            plain = line_crop(ink, line, min_stroke=0.0)
            count += bool((line_crop(ink, line, min_stroke=min_stroke) != plain).any())
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, action="append", default=[],
                        help="a labelled folder of real images (repeatable)")
    parser.add_argument("--values", type=float, nargs="+",
                        default=[0.0, 0.8, 1.0, 1.2, 1.5, 2.0],
                        help="min_stroke values to compare (pixels at the CRNN's height)")
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "handwriting")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = HandwritingPredictor.load(args.artifact_dir)
    reader = predictor.line_reader
    if reader is None:
        raise SystemExit(f"{args.artifact_dir} has no crnn/ line recognizer")
    values = sorted(set(args.values) | {0.0})
    counts: dict[float, dict[str, list[ErrorCounts]]] = {v: defaultdict(list) for v in values}
    per_image: dict[float, dict[str, int]] = {v: {} for v in values}
    inks: list[InkMap] = []
    for folder in args.pages:
        for label in read_page_labels(folder):
            page = predictor.segment_image((folder / label.file).read_bytes())
            inks.append(ink_map(page.rgb, page.layout_max_side))
            contours = predictor.assemble(page, predictor.classify(page.crops))
            for v in values:
                reader.min_stroke = v
                reading = predictor.finish(contours, page, "auto")
                c = error_counts(reading.text, label.text)
                counts[v][label.style].append(c)
                counts[v]["all"].append(c)
                per_image[v][f"{folder.name}/{label.file}"] = c.az_edits
    styles = [*sorted(s for s in counts[0.0] if s != "all"), "all"]
    print(f"{len(inks)} images; A-Z edits (CER) of pipeline=auto per min_stroke")
    head = f"{'min_stroke':<12}{'lines':>7}" + "".join(f"{s[:16]:>20}" for s in styles)
    print(head)
    print("-" * len(head))
    for v in values:
        star = "*" if v == MIN_STROKE else " "
        cells = []
        for s in styles:
            t = total_counts(counts[v][s])
            cells.append(f"{t.az_edits:>9d} ({100 * t.cer_az:5.1f}%)")
        print(f"{star}{v:<11.2f}{thickened_lines(inks, v):>7d}" +
              "".join(f"{c:>20}" for c in cells))
    print("\nimages whose A-Z edits change against min_stroke 0:")
    for name, base in per_image[0.0].items():
        row = [per_image[v][name] for v in values]
        if any(e != base for e in row):
            print(f"  {name:<60}" + " ".join(f"{e:>4d}" for e in row))


if __name__ == "__main__":
    main()
