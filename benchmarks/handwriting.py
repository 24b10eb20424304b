"""End-to-end handwriting recognition speed at ~1 MP and ~12 MP, in one process.

Builds one page of handwritten block capitals (composed from held-out real letters when the
shared data is present, else drawn with OpenCV's Hershey font), scales it to about 1 and 12
megapixels, encodes it as JPEG, and times ``HandwritingPredictor.recognize`` on the bytes:
images per second and the split between decode, segmentation (ink map + contours + crops)
and classification. The fp32 classifier is the baseline; the int8 variant (dynamic
quantization of the Linear layers) is timed in the same process and printed as a ratio.

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


def run(predictor: HandwritingPredictor, data: bytes, repeats: int) -> dict[str, Any]:
    predictor.recognize(data)  # warm-up
    totals: list[float] = []
    parts: dict[str, list[float]] = {"decode": [], "segment": [], "classify": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result, _ = predictor.recognize(data)
        totals.append(time.perf_counter() - t0)
        for k in parts:
            parts[k].append(result.timings_ms[k])
    return {"total_ms": 1000 * statistics.median(totals),
            **{k: statistics.median(v) for k, v in parts.items()}, "text": result.text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact-dir", type=Path, default=artifacts_dir() / "handwriting")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    page, origin = make_page()
    print(f"page: {origin}; torch threads {args.threads}; median of {args.repeats}")
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
