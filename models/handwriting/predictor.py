"""Serving-side handwriting recognition: image bytes → ink map → letters → CNN → text.

The seed tutorial's pipeline (threshold, contours, bounding boxes, classify each crop, write
the letters onto the image), with the robust preprocessing of
:mod:`models.handwriting.preprocess` and the reading order of :mod:`models.handwriting.segment`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from models.common.artifacts import ArtifactError, load_artifact
from models.common.quantize import apply_saved_int8
from models.handwriting.augment import prepare_batch
from models.handwriting.model import build_model
from models.handwriting.preprocess import decode_image, ink_map
from models.handwriting.quantize_static import load_static, use_static_int8
from models.handwriting.segment import Box, Layout, crop_letters, segment

log = logging.getLogger(__name__)


@dataclass
class Letter:
    """One recognised letter: the best class, its probability, the box in image pixels
    ``(x, y, w, h)``, its line and word index, and the top-3 ``(char, probability)``."""

    char: str
    confidence: float
    box: tuple[int, int, int, int]
    line: int
    word: int
    alternatives: list[tuple[str, float]]


@dataclass
class Recognition:
    """What one image reads as.

    Attributes:
        text: lines joined by ``\\n``, words by one space.
        lines: the text of each line.
        letters: every letter in reading order.
        width, height: the decoded (EXIF-rotated) image size in pixels.
        timings_ms: wall time of ``decode``, ``segment`` (ink map + segmentation + crops)
            and ``classify``, in milliseconds.
    """

    text: str
    lines: list[str]
    letters: list[Letter]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class SegmentedPage:
    """An image segmented into letters, before classification.

    Attributes:
        rgb: the decoded image, uint8 (H, W, 3) or (H, W).
        layout: lines → words → letter boxes (:func:`models.handwriting.segment.segment`).
        crops: uint8 (N, 64, 64), one per letter in reading order, ink bright on black.
        timings_ms: ``decode`` (when decoded here) and ``segment`` wall times, milliseconds.
    """

    rgb: np.ndarray
    layout: Layout
    crops: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class HandwritingPredictor:
    """Reads block letters from photos and scans with the trained letter CNN.

    Args:
        model: the classifier (eval mode).
        config: the artifact's config (``arch``, ``model``, ``image_size``, ``classes``).
        card: the model card.
        device: where the classifier runs (segmentation always runs on CPU, in OpenCV).
        quantized: int8: static (convolutions too, ``int8-static/`` from
            ``modelzoo quantize handwriting --static``) when the artifact has an accepted
            one, else dynamic quantization of the Linear layers.
    """

    task = "handwriting"

    def __init__(self, model: nn.Module, config: dict[str, Any], card: dict[str, Any],
                 device: torch.device, quantized: bool, quantization: str = "none") -> None:
        self.model, self.card, self.device, self.quantized = model.eval(), card, device, quantized
        self.quantization = quantization  # "none" | "dynamic" | "static"
        self.image_size = int(config["image_size"])
        self.classes: str = config["classes"]

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device | str = "cpu",
             quantize: bool = False) -> HandwritingPredictor:
        """Rebuild the CNN from ``config.json`` + safetensors.

        With ``quantize``, the static int8 model of ``int8-static/`` is served when it is
        there, made from these float weights and accepted (accuracy drop <= 0.5 points when
        measured); otherwise the Linear layers are quantized dynamically. Both run on CPU.

        Raises:
            ArtifactError: files missing, or weights that do not fit the config.
        """
        device = torch.device(device)
        tensors, config, card = load_artifact(artifact_dir)
        try:
            model = build_model(config["arch"], **config["model"])
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in tensors.items()})
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{artifact_dir}: weights do not fit config.json: {exc}") from exc
        if len(config["classes"]) != config["model"]["num_classes"]:
            raise ArtifactError(f"{artifact_dir}: {len(config['classes'])} class names for "
                                f"{config['model']['num_classes']} outputs")
        model.eval()
        quantization = "none"
        if quantize:
            static = load_static(model, artifact_dir) if use_static_int8() else None
            if static is not None:
                model, quantization = static, "static"
            else:
                model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear},
                                                               dtype=torch.qint8)
                apply_saved_int8(model, artifact_dir)  # int8/ from 'modelzoo quantize', if any
                quantization = "dynamic"
            device = torch.device("cpu")
        return cls(model.to(device), config, card, device, quantize, quantization)

    def warmup(self) -> None:
        """One blank letter crop classified, run once at startup by the service."""
        self.classify(np.zeros((1, 64, 64), np.uint8))

    @torch.inference_mode()
    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities of letter crops.

        Args:
            crops: uint8 (N, 64, 64), ink bright on black (as ``segment.crop_letters`` makes).

        Returns:
            float32 (N, len(classes)).
        """
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        x = prepare_batch(torch.from_numpy(np.ascontiguousarray(crops)), self.image_size)
        return self.model(x.to(self.device)).float().softmax(-1).cpu().numpy()

    def recognize(self, data: bytes, max_pixels: int = 40_000_000,
                  max_side: int = 1600) -> tuple[Recognition, np.ndarray]:
        """Read the text of an encoded image: :meth:`segment_image`, :meth:`classify`,
        :meth:`assemble`.

        Args:
            data: PNG, JPEG, WebP, BMP or TIFF bytes.
            max_pixels: larger images are refused (decompression bombs).
            max_side: the image is downscaled to this longer side before segmentation.

        Returns:
            The recognition and the decoded RGB image, uint8 (H, W, 3) (for annotation).

        Raises:
            InvalidInputError: unreadable, truncated or unsupported image.
            ImageTooLargeError: more than ``max_pixels`` pixels.
        """
        page = self.segment_image(data, max_pixels, max_side)
        return self._classify_page(page), page.rgb

    def segment_image(self, data: bytes, max_pixels: int = 40_000_000,
                      max_side: int = 1600) -> SegmentedPage:
        """Decode and segment an encoded image into letter crops (CPU, OpenCV): the part of
        :meth:`recognize` before the classifier, so that the service can classify the
        crops of concurrent requests in one batch.

        Raises:
            InvalidInputError: unreadable, truncated or unsupported image.
            ImageTooLargeError: more than ``max_pixels`` pixels.
        """
        t0 = time.perf_counter()
        rgb = decode_image(data, max_pixels)
        t1 = time.perf_counter()
        page = self.segment_array(rgb, max_side)
        page.timings_ms = {"decode": round(1000 * (t1 - t0), 2), **page.timings_ms}
        return page

    def segment_array(self, rgb: np.ndarray, max_side: int = 1600) -> SegmentedPage:
        """Segment a decoded image, uint8 (H, W, 3) RGB or (H, W) gray, into letter crops."""
        t0 = time.perf_counter()
        layout = segment(ink_map(rgb, max_side))
        crops = crop_letters(layout)  # (N, 64, 64)
        return SegmentedPage(rgb, layout, crops,
                             {"segment": round(1000 * (time.perf_counter() - t0), 2)})

    def assemble(self, page: SegmentedPage, probs: np.ndarray,
                 classify_ms: float = 0.0) -> Recognition:
        """The recognition of a segmented page from its crops' class probabilities.

        Args:
            page: from :meth:`segment_image` / :meth:`segment_array`.
            probs: float32 (N, len(classes)), row i for ``page.crops[i]``.
            classify_ms: the classifier's wall time, reported in ``timings_ms``.

        Raises:
            ValueError: ``probs`` does not have one row per crop.
        """
        if len(probs) != len(page.crops):
            raise ValueError(f"{len(probs)} probability rows for {len(page.crops)} crops")
        boxes = iter(page.layout.boxes_in_original())
        rows = iter(range(len(probs)))
        letters: list[Letter] = []
        lines: list[str] = []
        for li, line in enumerate(page.layout.lines):
            words = []
            for wi, word in enumerate(line):
                chars = []
                for _ in word:
                    letter = self._letter(probs[next(rows)], next(boxes), li, wi)
                    letters.append(letter)
                    chars.append(letter.char)
                words.append("".join(chars))
            lines.append(" ".join(words))
        height, width = page.rgb.shape[:2]
        return Recognition("\n".join(lines), lines, letters, width, height,
                           {**page.timings_ms, "classify": round(classify_ms, 2)})

    def recognize_array(self, rgb: np.ndarray, max_side: int = 1600) -> Recognition:
        """Read the text of a decoded image, uint8 (H, W, 3) RGB or (H, W) gray."""
        return self._classify_page(self.segment_array(rgb, max_side))

    def _classify_page(self, page: SegmentedPage) -> Recognition:
        t0 = time.perf_counter()
        probs = self.classify(page.crops)
        return self.assemble(page, probs, 1000 * (time.perf_counter() - t0))

    def _letter(self, p: np.ndarray, box: Box, line: int, word: int) -> Letter:
        top = np.argsort(-p)[:3]
        alternatives = [(self.classes[i], round(float(p[i]), 4)) for i in top]
        return Letter(alternatives[0][0], alternatives[0][1], (box.x, box.y, box.w, box.h),
                      line, word, alternatives)


def annotate(rgb: np.ndarray, recognition: Recognition) -> bytes:
    """The image with each letter's box and predicted letter drawn on it, as PNG bytes
    (the seed tutorial's final step: ``cv2.rectangle`` + ``cv2.putText``).

    Args:
        rgb: uint8 (H, W, 3), the image the recognition's boxes refer to.
    """
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(rgb.shape[:2]) / 500))
    for letter in recognition.letters:
        x, y, w, h = letter.box
        cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 200, 0), thickness)
        scale = max(0.4, h / 50)
        cv2.putText(bgr, letter.char, (x, max(0, y - 3 * thickness)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 230), thickness + 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
