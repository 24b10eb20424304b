"""End-to-end handwriting recognition speed at ~1 MP and ~12 MP, in one process.

Builds one page of handwritten block capitals (composed from held-out real letters when the
shared data is present, else drawn with OpenCV's Hershey font), scales it to about 1 and 12
megapixels, encodes it as JPEG, and times ``HandwritingPredictor.recognize`` on the bytes:
images per second and the split between decode, segmentation (ink map + contours + crops)
and classification. The fp32 classifier is the baseline; the int8 variant (dynamic
quantization of the Linear layers) is timed in the same process and printed as a ratio.

When the artifact has a line recognizer (``crnn/``), the line pipeline is timed too on a
three-line mixed-case "phone photo" at 1 MP (composed from held-out letters, realistic
difficulty) and on the real phone photo ``handwriting-pages/page-hello-world.png`` (0.9 MP,
four lines) when the shared data is present: ``pipeline=lines`` and ``pipeline=auto``
(contours first, then lines), with the split between decode, contours and line reading.

    python benchmarks/handwriting.py [--artifact-dir artifacts/handwriting] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from models.common.paths import artifacts_dir, data_dir
from models.handwriting.predictor import HandwritingPredictor

TEXT = "THE QUICK BROWN\nFOX JUMPS OVER\nTHE LAZY DOG"


def make_page() -> tuple[np.ndarray, str]:
    """An RGB page and where it came from."""
    root = data_dir() / "handwriting"
    if root.is_dir():
        from models.handwriting.synth import compose, load_letter_pool

        sample = compose(load_letter_pool(root), np.random.default_rng(0), "clean", text=TEXT)
        return sample.image, "composed from held-out letters"
    page = np.full((600, 1100, 3), 235, np.uint8)
    for i, line in enumerate(TEXT.splitlines()):
        cv2.putText(page, line, (40, 150 + 180 * i), cv2.FONT_HERSHEY_SIMPLEX, 4.0, (20, 20, 20),
                    10, cv2.LINE_AA)
    return page, "Hershey font (shared data absent)"


def jpeg_at(page: np.ndarray, megapixels: float) -> tuple[bytes, tuple[int, int]]:
    h, w = page.shape[:2]
    f = (megapixels * 1e6 / (h * w)) ** 0.5
    size = (round(w * f), round(h * f))
    resized = cv2.resize(page, size, interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    Image.fromarray(resized).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), size


def run(predictor: HandwritingPredictor, data: bytes, repeats: int,
        pipeline: str = "contours") -> dict[str, Any]:
    predictor.recognize(data, pipeline=pipeline)  # warm-up
    totals: list[float] = []
    parts: dict[str, list[float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result, _ = predictor.recognize(data, pipeline=pipeline)
        totals.append(time.perf_counter() - t0)
        for k, v in result.timings_ms.items():
            parts.setdefault(k, []).append(v)
    return {"total_ms": 1000 * statistics.median(totals), "decode": 0.0, "segment": 0.0,
            "classify": 0.0, **{k: statistics.median(v) for k, v in parts.items()},
            "text": result.text, "pipeline": result.pipeline}


def line_photos() -> list[tuple[str, bytes]]:
    """(name, JPEG/PNG bytes) of line-pipeline test images: a composed three-line mixed-case
    photo at 1 MP and, when the shared data is present, the real page-hello-world photo."""
    out = []
    root = data_dir() / "handwriting"
    if root.is_dir():
        from models.handwriting.synth import compose, load_letter_pool

        sample = compose(load_letter_pool(root), np.random.default_rng(1), "realistic",
                         text="The quick brown\nfox jumps over\nthe lazy dog", case="mixed")
        data, (w, h) = jpeg_at(sample.image, 1.0)
        out.append((f"composed 3 lines {w}x{h}", data))
    real = data_dir() / "handwriting-pages" / "page-hello-world.png"
    if real.is_file():
        out.append(("real photo 825x1100", real.read_bytes()))
    return out


def bench_lines(artifact_dir: Path, repeats: int) -> None:
    """Time pipeline=lines and pipeline=auto on :func:`line_photos` (served int8 CNN)."""
    predictor = HandwritingPredictor.load(artifact_dir, "cpu", True)
    if predictor.line_reader is None:
        print("no crnn/ line recognizer in the artifact: line pipeline not timed")
        return
    print(f"\n{'image':<28}{'pipeline':<10}{'chosen':<10}{'total ms':>9}{'decode':>8}"
          f"{'contours':>9}{'lines':>8}  text")
    for name, data in line_photos():
        for pipeline in ("lines", "auto"):
            r = run(predictor, data, repeats, pipeline)
            contours = r["segment"] + r["classify"]
            print(f"{name:<28}{pipeline:<10}{r['pipeline']:<10}{r['total_ms']:9.1f}"
                  f"{r['decode']:8.1f}{contours:9.1f}{r.get('read_lines', 0.0):8.1f}  "
                  f"{r['text'][:60]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "handwriting")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    # the line pipeline first, in a fresh process state: timed after the four contour
    # predictors below it ran several times slower (seen here, not yet explained)
    bench_lines(args.artifact_dir, args.repeats)
    page, origin = make_page()
    print(f"\npage: {origin}; torch threads {args.threads}; median of {args.repeats}")
    print(f"{'image':<18}{'variant':<8}{'img/s':>8}{'total ms':>10}{'decode':>9}"
          f"{'segment':>9}{'classify':>9}  text")
    for mp in (1.0, 12.0):
        data, (w, h) = jpeg_at(page, mp)
        results = {}
        for variant, quantize in (("fp32", False), ("int8", True)):
            r = run(HandwritingPredictor.load(args.artifact_dir, "cpu", quantize), data,
                    args.repeats)
            results[variant] = r
            print(f"{f'{w}x{h} ({mp:g} MP)':<18}{variant:<8}{1000 / r['total_ms']:8.2f}"
                  f"{r['total_ms']:10.1f}{r['decode']:9.1f}{r['segment']:9.1f}"
                  f"{r['classify']:9.1f}  {r['text']!r}")
        ratio = results["fp32"]["total_ms"] / results["int8"]["total_ms"]
        print(f"{'':<18}int8 end-to-end speed-up vs fp32: {ratio:.2f}x")


if __name__ == "__main__":
    main()
