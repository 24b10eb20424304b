"""Our handwriting recognizer against Tesseract on a folder of labelled pages, in one run.

Every image listed in ``--pages`` (``labels.tsv``: filename, text, style; or
``labels.jsonl``) is read by ``HandwritingPredictor.recognize`` and by Tesseract
(``tesseract stdin - --psm 3``: the image bytes on stdin, text on stdout, automatic page
segmentation), and both readings are scored by the same code
(:func:`models.handwriting.evaluate.read_pages`): per style and overall, CER on A-Z
case-insensitive, CER as written (whitespace normalized), WER, each summed over images;
the ratio is ours / Tesseract's (above 1: we make more errors), and ms per image (mean
wall time of one read, after one warm-up read; Tesseract's includes starting its process).
Torch and Tesseract (``OMP_THREAD_LIMIT``) get ``--threads`` threads each. Without
``tesseract`` on PATH only ours is shown.

    python benchmarks/handwriting_vs_tesseract.py --pages ../shared/data/handwriting-pages
        [--pipeline auto|lines|contours] [--artifact-dir artifacts/handwriting] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from models.common.paths import artifacts_dir, data_dir
from models.handwriting.evaluate import (
    PIPELINES,
    PageReport,
    format_page_report,
    page_reader,
    read_page_labels,
    read_pages,
)
from models.handwriting.predictor import HandwritingPredictor

TESSERACT_MISSING = "tesseract not found: apt-get install tesseract-ocr; showing modelzoo only"


def tesseract_reader(executable: str, threads: int, psm: int = 3) -> Callable[[bytes], str]:
    """``image bytes → text`` with the Tesseract command line (English, default model)."""
    env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}

    def read(data: bytes) -> str:
        done = subprocess.run([executable, "stdin", "-", "--psm", str(psm)], input=data,
                              capture_output=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"tesseract failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode("utf-8", errors="replace")

    return read


def tesseract_version(executable: str) -> str:
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def format_comparison(ours: PageReport, theirs: PageReport | None) -> str:
    """Per style and overall: each metric for ours, Tesseract's and the ratio; ms/image."""
    metrics = (("CER A-Z", "cer_az"), ("CER", "cer"), ("WER", "wer"))
    head = f"{'style':<20}{'images':>7}"
    for name, _ in metrics:
        head += f"  {name + ' ours':>13}" + (f"{'tess':>8}{'ratio':>7}" if theirs else "")
    head += f"  {'ms ours':>8}" + (f"{'ms tess':>9}" if theirs else "")
    lines = [head]
    for style in ours.rows():
        mine = ours.counts(style)
        row = f"{style or 'overall':<20}{len(ours.of_style(style)):>7}"
        for _, attr in metrics:
            row += f"  {_pct(getattr(mine, attr)):>13}"
            if theirs:
                other = getattr(theirs.counts(style), attr)
                row += f"{_pct(other):>8}{_ratio(getattr(mine, attr), other):>7}"
        row += f"  {ours.ms_per_image(style):>8.0f}"
        if theirs:
            row += f"{theirs.ms_per_image(style):>9.0f}"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=data_dir() / "handwriting-pages",
                        help="folder of images with labels.tsv or labels.jsonl")
    parser.add_argument("--pipeline", choices=PIPELINES, default=None,
                        help="passed to recognize() (default: the predictor's default)")
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "handwriting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write both reports here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    labels = read_page_labels(args.pages)
    first = (args.pages / labels[0].file).read_bytes() if labels else b""
    predictor = HandwritingPredictor.load(args.artifact_dir, "cpu")
    ours_read = page_reader(predictor, args.pipeline)
    if first:
        ours_read(first)  # warm-up
    ours = read_pages(ours_read, args.pages,
                      f"modelzoo {args.artifact_dir} (pipeline {args.pipeline or 'default'})",
                      labels)
    theirs = None
    executable = shutil.which("tesseract")
    if executable is None:
        print(TESSERACT_MISSING)
    else:
        tess_read = tesseract_reader(executable, args.threads)
        if first:
            tess_read(first)  # warm-up (disk cache, language data)
        theirs = read_pages(tess_read, args.pages,
                            f"{tesseract_version(executable)} --psm 3", labels)

    print(f"pages: {args.pages} ({len(labels)} images); ours: {ours.system}; "
          f"tesseract: {theirs.system if theirs else 'absent'}; {args.threads} threads each")
    print("CER A-Z: letters A-Z upper-cased, all else dropped; CER: as written, whitespace "
          "runs -> one space; WER: words upper-cased, punctuation deleted; each summed over "
          "images; ratio = ours / tesseract; ms = mean per image")
    print(format_comparison(ours, theirs))
    for report in (ours, theirs):
        if report is not None:
            print()
            print(format_page_report(report))
    if args.json:
        args.json.write_text(json.dumps(
            {"modelzoo": ours.to_dict(), "tesseract": theirs.to_dict() if theirs else None},
            indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
