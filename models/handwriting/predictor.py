"""Serving-side handwriting recognition: image bytes → ink map → text, by two pipelines.

``contours``: the seed tutorial's pipeline (threshold, contours, bounding boxes, classify each
crop with the letter CNN, write the letters onto the image), with the robust preprocessing of
:mod:`models.handwriting.preprocess` and the reading order of :mod:`models.handwriting.segment`.
Best on letters written apart (block capitals).

``lines``: text lines found on the page (:mod:`models.handwriting.lines`), each read whole by
the CRNN + CTC line recognizer (:mod:`models.handwriting.linereader`): no letter
segmentation, so joined, touching and lower-case writing work. Its artifact lives in the
``crnn/`` folder of the handwriting artifact.

``auto`` reads with both and combines them line by line (:func:`fuse_lines`): the contour
reading is the base when the page looks like letters written apart (:func:`prefer_contours`),
else the line reading, and a line of the other reading replaces the base's where its
confidence and character-LM score (:func:`line_score`) are clearly higher. The contour
letters are decoded with the same LM (:mod:`models.handwriting.letterlm`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from models.common.artifacts import ArtifactError, load_artifact
from models.common.errors import InvalidInputError
from models.common.quantize import apply_saved_int8
from models.handwriting.augment import prepare_batch
from models.handwriting.charlm import CharNgramLM
from models.handwriting.combine import LetterEvidence, box_overlap, pair_boxes
from models.handwriting.letterlm import decode_line
from models.handwriting.linereader import LineReader
from models.handwriting.model import build_model
from models.handwriting.preprocess import decode_image, ink_map
from models.handwriting.quantize_static import load_static, use_static_int8
from models.handwriting.segment import Box, Layout, crop_letters, segment

log = logging.getLogger(__name__)

#: The line recognizer's folder inside the handwriting artifact.
CRNN_DIR = "crnn"
PIPELINES = ("auto", "lines", "contours")
#: ``auto`` keeps the contour reading when its letters' mean confidence is at least this
#: and no letter is below AUTO_MIN_LETTER (measured: benchmarks/handwriting_pipeline_rule.py).
AUTO_MEAN_CONFIDENCE = 0.8
AUTO_MIN_LETTER = 0.5
#: ``auto``, line by line (:func:`fuse_lines`): every page is read both ways, and the page
#: rule above picks the base reading. Lines of the two readings pair up by box overlap;
#: of a pair, the other pipeline's line replaces the base's when its line score (mean ln
#: confidence of its letters + FUSE_LM_WEIGHT x the character LM's ln P per character of
#: its text) beats the base line's by more than FUSE_SCORE_MARGIN. On line-recognizer
#: pages, a contour line also replaces its partner when its letters' mean confidence is at
#: least FUSE_LINE_MEAN, none is below FUSE_LINE_MIN and the recognizer's mean character
#: confidence there is below FUSE_CRNN_BELOW, and a confident contour line of at least
#: FUSE_MIN_LETTERS letters that no recognizer line covers is added. (Measured:
#: benchmarks/handwriting_pipeline_rule.py; the README's "Which pipeline" gives the figures.)
FUSE_LM_WEIGHT = 0.5
FUSE_SCORE_MARGIN = 0.2
FUSE_LINE_MEAN = 0.9
FUSE_LINE_MIN = 0.5
FUSE_CRNN_BELOW = 0.9
FUSE_MIN_LETTERS = 2
#: Two line boxes are the same line when their intersection covers at least this share of
#: the smaller box.
FUSE_OVERLAP = 0.5


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
            and ``classify``, in milliseconds (``lines``: ``read_lines`` too).
        pipeline: ``"contours"`` or ``"lines"``: which pipeline produced this reading.
        line_boxes: ``(x, y, w, h)`` per line in image pixels.
        word_boxes: per line, ``(x, y, w, h)`` per word (``lines`` pipeline; letter boxes
            grouped by word for ``contours``).
        line_pipelines: per line, the pipeline that read it (``auto`` can mix them); empty
            means every line was read by ``pipeline``.
    """

    text: str
    lines: list[str]
    letters: list[Letter]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    pipeline: str = "contours"
    line_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    word_boxes: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    line_pipelines: list[str] = field(default_factory=list)

    def line_pipeline(self, index: int) -> str:
        """The pipeline that read line ``index``."""
        return self.line_pipelines[index] if self.line_pipelines else self.pipeline


@dataclass
class SegmentedPage:
    """An image segmented into letters, before classification.

    Attributes:
        rgb: the decoded image, uint8 (H, W, 3) or (H, W).
        layout: lines → words → letter boxes (:func:`models.handwriting.segment.segment`).
        crops: uint8 (N, 64, 64), one per letter in reading order, ink bright on black.
        timings_ms: ``decode`` (when decoded here) and ``segment`` wall times, milliseconds.
        layout_max_side: the ``max_side`` the ink map was made with.
    """

    rgb: np.ndarray
    layout: Layout
    crops: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    layout_max_side: int = 1600


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
                 device: torch.device, quantized: bool, quantization: str = "none",
                 line_reader: LineReader | None = None) -> None:
        self.model, self.card, self.device, self.quantized = model.eval(), card, device, quantized
        self.quantization = quantization  # "none" | "dynamic" | "static"
        self.image_size = int(config["image_size"])
        self.classes: str = config["classes"]
        self.line_reader = line_reader
        # contour letters decoded with the line recognizer's character LM (letterlm.py);
        # lm_weight 0 (the default for artifacts without "decode") is the CNN's argmax
        decode = config.get("decode", {})
        self.letter_lm_weight = float(decode.get("lm_weight", 0.0))
        self.letter_beam_size = int(decode.get("beam_size", 8))
        self.letter_top_k = int(decode.get("top_k", 5))

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device | str = "cpu",
             quantize: bool = False) -> HandwritingPredictor:
        """Rebuild the CNN from ``config.json`` + safetensors.

        With ``quantize``, the static int8 model of ``int8-static/`` is served when it is
        there, made from these float weights and accepted (accuracy drop <= 0.5 points when
        measured); otherwise the Linear layers are quantized dynamically. Both run on CPU.
        The line recognizer of ``crnn/`` (when present) is loaded too, its LSTM and Linear
        layers dynamically quantized with ``quantize``.

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
        crnn_dir = artifact_dir / CRNN_DIR
        # int8 with the letter CNN: dynamic quantization of the CRNN's LSTM and Linear layers
        # (1.2x per line, CER within 0.1 point: benchmarks/handwriting_decode.py)
        reader = (LineReader.load(crnn_dir, quantize=quantize)
                  if (crnn_dir / "config.json").is_file() else None)
        return cls(model.to(device), config, card, device, quantize, quantization, reader)

    @property
    def labels(self) -> str:
        """The characters this predictor can output: the line recognizer's (case-aware) when
        it has one, else the letter CNN's classes."""
        return self.line_reader.alphabet if self.line_reader is not None else self.classes

    def warmup(self) -> None:
        """One blank letter crop classified (and a blank line read), run once at startup."""
        self.classify(np.zeros((1, 64, 64), np.uint8))
        if self.line_reader is not None:
            self.line_reader.log_probs([np.zeros((32, 128), np.float32)])

    def check_pipeline(self, pipeline: str) -> None:
        """Raise :class:`InvalidInputError` for an unknown pipeline, or ``lines`` without
        a line recognizer in the artifact."""
        if pipeline not in PIPELINES:
            raise InvalidInputError(f"unknown pipeline {pipeline!r}; use one of "
                                    f"{', '.join(PIPELINES)}")
        if pipeline == "lines" and self.line_reader is None:
            raise InvalidInputError("this handwriting artifact has no line recognizer "
                                    f"({CRNN_DIR}/); use pipeline=contours")

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
                  max_side: int = 1600, pipeline: str = "auto") -> tuple[Recognition, np.ndarray]:
        """Read the text of an encoded image.

        ``contours``: :meth:`segment_image`, :meth:`classify`, :meth:`assemble`;
        ``lines``: :meth:`read_lines`; ``auto``: contours, kept when
        :func:`prefer_contours` says so, else lines fused line by line with the contour
        reading (:func:`fuse_lines`); contours only without a line recognizer.

        Args:
            data: PNG, JPEG, WebP, BMP or TIFF bytes.
            max_pixels: larger images are refused (decompression bombs).
            max_side: the image is downscaled to this longer side before segmentation.
            pipeline: ``auto`` | ``lines`` | ``contours``.

        Returns:
            The recognition and the decoded RGB image, uint8 (H, W, 3) (for annotation).

        Raises:
            InvalidInputError: unreadable, truncated or unsupported image; unknown pipeline.
            ImageTooLargeError: more than ``max_pixels`` pixels.
        """
        self.check_pipeline(pipeline)
        if pipeline == "lines":
            t0 = time.perf_counter()
            rgb = decode_image(data, max_pixels)
            decode_ms = round(1000 * (time.perf_counter() - t0), 2)
            result = self.read_lines(rgb, max_side)
            result.timings_ms = {"decode": decode_ms, **result.timings_ms}
            return result, rgb
        page = self.segment_image(data, max_pixels, max_side)
        result = self._classify_page(page)
        return self.finish(result, page, pipeline), page.rgb

    def finish(self, contours: Recognition, page: SegmentedPage, pipeline: str) -> Recognition:
        """The answer for ``pipeline`` given the contour reading of a page: the contour
        reading itself (``contours``, or no line recognizer loaded), or (``auto``) the
        line reading of the same decoded image fused line by line with the contour
        reading (:func:`fuse_lines`), on the base :func:`prefer_contours` picks."""
        if pipeline == "contours" or self.line_reader is None:
            return contours
        evidence = contour_evidence(contours) if self.line_reader.joint_weight > 0 else []
        lines = self.read_lines(page.rgb, page.layout_max_side, evidence)
        base = "contours" if prefer_contours(contours) else "lines"
        fused = fuse_lines(contours, lines, base=base, lm=self.line_reader.lm,
                           joint=bool(evidence))
        fused.timings_ms = {**contours.timings_ms, **lines.timings_ms}
        return fused

    def read_lines(self, rgb: np.ndarray, max_side: int = 1600,
                   evidence: Sequence[LetterEvidence] = ()) -> Recognition:
        """Read a decoded image, uint8 (H, W, 3) RGB or (H, W) gray, with the line recognizer
        (lines shared with ``evidence``, the contour reading, read jointly with it:
        :meth:`LineReader.read`).

        Raises:
            InvalidInputError: no line recognizer in this artifact.
        """
        if self.line_reader is None:
            raise InvalidInputError("this handwriting artifact has no line recognizer "
                                    f"({CRNN_DIR}/); use pipeline=contours")
        t0 = time.perf_counter()
        ink = ink_map(rgb, max_side)
        readings = self.line_reader.read(ink, evidence)
        letters = [Letter(c.char, c.confidence, c.box, li, c.word, c.alternatives)
                   for li, r in enumerate(readings) for c in r.chars]
        height, width = rgb.shape[:2]
        kept = [r for r in readings if r.text]
        return Recognition("\n".join(r.text for r in kept), [r.text for r in kept], letters,
                           width, height,
                           {"read_lines": round(1000 * (time.perf_counter() - t0), 2)},
                           "lines", [r.box for r in kept], [r.word_boxes for r in kept])

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
                             {"segment": round(1000 * (time.perf_counter() - t0), 2)},
                             max_side)

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
        chosen = iter(self.decode_letters(page.layout, probs))
        letters: list[Letter] = []
        lines: list[str] = []
        word_boxes: list[list[tuple[int, int, int, int]]] = []
        for li, line in enumerate(page.layout.lines):
            words = []
            line_words = []
            for wi, word in enumerate(line):
                chars = []
                for _ in word:
                    letter = self._letter(probs[next(rows)], int(next(chosen)), next(boxes),
                                          li, wi)
                    letters.append(letter)
                    chars.append(letter.char)
                words.append("".join(chars))
                line_words.append(_union([c.box for c in letters if c.line == li
                                          and c.word == wi]))
            lines.append(" ".join(words))
            word_boxes.append(line_words)
        height, width = page.rgb.shape[:2]
        return Recognition("\n".join(lines), lines, letters, width, height,
                           {**page.timings_ms, "classify": round(classify_ms, 2)}, "contours",
                           [_union(ws) for ws in word_boxes], word_boxes)

    def recognize_array(self, rgb: np.ndarray, max_side: int = 1600) -> Recognition:
        """Read the text of a decoded image, uint8 (H, W, 3) RGB or (H, W) gray."""
        return self._classify_page(self.segment_array(rgb, max_side))

    def _classify_page(self, page: SegmentedPage) -> Recognition:
        t0 = time.perf_counter()
        probs = self.classify(page.crops)
        return self.assemble(page, probs, 1000 * (time.perf_counter() - t0))

    def decode_letters(self, layout: Layout, probs: np.ndarray) -> np.ndarray:
        """The class of each letter crop: line by line, the letter CNN's probabilities
        combined with the line recognizer's character LM (:func:`letterlm.decode_line`,
        weight ``decode.lm_weight`` of the artifact's config), or the CNN's argmax without
        an LM or with weight 0.

        Args:
            layout: the page's lines → words → letter boxes (crops in reading order).
            probs: float32 (N, len(classes)), one row per crop.

        Returns:
            int64 (N,): class indices.
        """
        lm = self.line_reader.lm if self.line_reader is not None else None
        if lm is None or self.letter_lm_weight == 0.0:
            return probs.argmax(axis=1).astype(np.int64) if len(probs) else \
                np.zeros(0, np.int64)
        out = []
        start = 0
        for line in layout.lines:
            lengths = [len(word) for word in line if len(word)]
            n = sum(lengths)
            out.append(decode_line(probs[start:start + n], lengths, self.classes, lm,
                                   self.letter_lm_weight, self.letter_beam_size,
                                   self.letter_top_k))
            start += n
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _letter(self, p: np.ndarray, k: int, box: Box, line: int, word: int) -> Letter:
        """Letter of class ``k`` (its confidence is the CNN's probability of ``k``); the
        alternatives are the CNN's top 3, so ``alternatives[0]`` is its own best class."""
        top = np.argsort(-p)[:3]
        alternatives = [(self.classes[i], round(float(p[i]), 4)) for i in top]
        return Letter(self.classes[k], round(float(p[k]), 4), (box.x, box.y, box.w, box.h),
                      line, word, alternatives)


def contour_evidence(contours: Recognition) -> list[LetterEvidence]:
    """The contour reading's lines as evidence for the joint line reading: box, text and
    each letter's top classes (the letter CNN's probabilities, whatever the LM chose)."""
    return [LetterEvidence(box, text, [dict(c.alternatives) for c in contours.letters
                                       if c.line == li])
            for li, (text, box) in enumerate(zip(contours.lines, contours.line_boxes,
                                                 strict=True))]


def prefer_contours(contours: Recognition) -> bool:
    """``auto``'s rule: keep the contour reading when it found letters and the letter CNN is
    sure of them (mean confidence >= AUTO_MEAN_CONFIDENCE, none below AUTO_MIN_LETTER):
    letters written apart. Joined or lower-case writing gives split or merged pieces that
    the CNN is unsure of, and goes to the line recognizer.
    (The thresholds are measured by ``benchmarks/handwriting_pipeline_rule.py``.)"""
    conf = [top_confidence(c) for c in contours.letters]
    return bool(conf) and float(np.mean(conf)) >= AUTO_MEAN_CONFIDENCE and \
        min(conf) >= AUTO_MIN_LETTER


def top_confidence(letter: Letter) -> float:
    """The recognizer's probability of its own best class for this letter (for contour
    letters the CNN's top class, whatever the LM chose), which the rules are measured on."""
    return letter.alternatives[0][1] if letter.alternatives else letter.confidence


def fuse_lines(contours: Recognition, lines: Recognition, *, base: str = "lines",
               lm: CharNgramLM | None = None, lm_weight: float = FUSE_LM_WEIGHT,
               margin: float = FUSE_SCORE_MARGIN,
               line_mean: float = FUSE_LINE_MEAN, line_min: float = FUSE_LINE_MIN,
               crnn_below: float = FUSE_CRNN_BELOW, min_letters: int = FUSE_MIN_LETTERS,
               add_mean: float = AUTO_MEAN_CONFIDENCE, add_min: float = AUTO_MIN_LETTER,
               overlap: float = FUSE_OVERLAP, joint: bool = False) -> Recognition:
    """One reading of a page from its contour and line readings, line by line: a system
    combination at the level of lines, by confidence and language-model score (in the
    spirit of ROVER, Fiscus 1997, with two systems and whole lines as the unit).

    ``base`` (``"lines"`` or ``"contours"``) is the reading whose lines are kept unless
    replaced. Lines pair up when their boxes overlap (intersection >= ``overlap`` of the
    smaller box) one to one. With ``lm``, the other reading's line of a pair replaces the
    base's when its :func:`line_score` exceeds the base line's by more than ``margin``.
    On the ``lines`` base, as well: a contour line whose letters are sure (mean confidence
    >= ``line_mean``, each >= ``line_min``) replaces its partner when the line
    recognizer's mean character confidence there is below ``crnn_below`` (widely spaced
    capitals, which the CRNN reads least well), and a contour line with no partner (a short
    line the recognizer dropped as a stray mark, or a page it read nothing on) is added, at
    its place top to bottom, when it has at least ``min_letters`` letters that pass the
    page rule's bar (mean >= ``add_mean``, each >= ``add_min``). Everything else is the base
    reading as it was (on the ``contours`` base, unpaired recognizer lines are left out).

    With ``joint`` the line recognizer has already read each line it shares with the
    contour reading jointly with it (:mod:`models.handwriting.combine`), so a pair is
    decided: its recognizer line is kept, on either base, and the two rules above apply to
    none of the pairs (the adding of unpaired contour lines stays).

    Args:
        contours: the ``contours`` reading of the page.
        lines: the ``lines`` reading of the same decoded image (same pixel coordinates).
        base: which of the two is kept where nothing replaces it.
        lm: the character LM for the line scores; None turns the score rule off.

    Returns:
        A new recognition with ``line_pipelines`` saying which pipeline read each line
        (``pipeline`` is ``"lines"`` if any line came from the line recognizer, else
        ``"contours"``); the base reading itself when no line is replaced or added.

    Raises:
        ValueError: ``base`` is neither ``"lines"`` nor ``"contours"``.
    """
    if base not in ("lines", "contours"):
        raise ValueError(f"base must be 'lines' or 'contours', got {base!r}")
    main, other = (lines, contours) if base == "lines" else (contours, lines)

    def letters_of(rec: Recognition, index: int) -> list[Letter]:
        return [c for c in rec.letters if c.line == index]

    def sure(letters: list[Letter], mean: float, floor: float) -> bool:
        conf = [top_confidence(c) for c in letters]
        return bool(conf) and float(np.mean(conf)) >= mean and min(conf) >= floor

    def score(rec: Recognition, index: int) -> float:
        assert lm is not None
        return line_score(letters_of(rec, index), rec.lines[index], lm, lm_weight)

    # the other reading's line i -> the base lines that overlap it and no other line
    groups = pair_boxes(other.line_boxes, main.line_boxes, overlap)
    take: dict[int, int] = {}  # base line -> the other reading's line replacing it
    drop: set[int] = set()  # base lines that a line in take stands for as well
    add: list[int] = []
    for i, box in enumerate(other.line_boxes):
        p = groups.get(i)
        if p is None:
            mine = letters_of(other, i)
            if base == "lines" and len(mine) >= min_letters and sure(mine, add_mean, add_min) \
                    and not any(box_overlap(box, lb) >= overlap for lb in main.line_boxes):
                add.append(i)
            continue
        if joint:
            # on the contours base the recognizer line, read jointly with its contour
            # line(s), replaces them where its letters differ
            if base == "contours" and \
                    other.lines[i].upper() != " ".join(main.lines[j] for j in p).upper():
                take[p[0]] = i
                drop.update(p[1:])
            continue
        if len(p) != 1:
            continue
        j = p[0]
        if lm is not None and score(other, i) > score(main, j) + margin:
            take[j] = i
        elif base == "lines" and sure(letters_of(contours, i), line_mean, line_min):
            theirs = letters_of(lines, j)
            crnn = float(np.mean([c.confidence for c in theirs])) if theirs else 0.0
            if crnn < crnn_below:
                take[j] = i
    if not take and not add:
        return main
    # (source, index) per output line, base lines in their reading order and added
    # contour lines before the first base line whose box centre lies below theirs
    order: list[tuple[str, int]] = [("main", j) for j in range(len(main.line_boxes))
                                    if j not in drop]
    for i in sorted(add, key=lambda i: _centre_y(other.line_boxes[i])):
        y = _centre_y(other.line_boxes[i])
        at = next((k for k, (src, j) in enumerate(order) if src == "main"
                   and _centre_y(main.line_boxes[j]) > y), len(order))
        order.insert(at, ("other", i))
    out_lines: list[str] = []
    letters: list[Letter] = []
    boxes: list[tuple[int, int, int, int]] = []
    words: list[list[tuple[int, int, int, int]]] = []
    sources: list[str] = []
    for src, j in order:
        if src == "main" and j in take:
            rec, index = other, take[j]
        else:
            rec, index = (main, j) if src == "main" else (other, j)
        n = len(out_lines)
        out_lines.append(rec.lines[index])
        letters += [Letter(c.char, c.confidence, c.box, n, c.word, c.alternatives)
                    for c in letters_of(rec, index)]
        boxes.append(rec.line_boxes[index])
        words.append(rec.word_boxes[index])
        sources.append(rec.line_pipeline(index))
    return Recognition("\n".join(out_lines), out_lines, letters, main.width, main.height,
                       dict(main.timings_ms),
                       "lines" if "lines" in sources else "contours", boxes, words, sources)


def line_score(letters: list[Letter], text: str, lm: CharNgramLM, lm_weight: float) -> float:
    """How plausible one line's reading is, comparable across the two pipelines: the mean
    natural-log confidence of its letters (the recognizer's probability of its own best
    class, floored at 1e-4; contour letters: the letter CNN's, line letters: the CRNN's)
    plus ``lm_weight`` x the LM's natural-log probability per character of ``text``
    (:meth:`CharNgramLM.line_log_prob`, end of line included).

    Returns:
        A float; higher is more plausible. A line without letters scores ln 1e-4 for them.
    """
    conf = [max(top_confidence(c), 1e-4) for c in letters] or [1e-4]
    log_p, n = lm.line_log_prob(text)
    return float(np.mean(np.log(conf))) + lm_weight * log_p / n


def _centre_y(box: tuple[int, int, int, int]) -> float:
    return box[1] + box[3] / 2


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The box ``(x, y, w, h)`` around boxes; (0, 0, 0, 0) for none."""
    if not boxes:
        return (0, 0, 0, 0)
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def annotate(rgb: np.ndarray, recognition: Recognition) -> bytes:
    """The image with each letter's box and predicted letter drawn on it, as PNG bytes
    (the seed tutorial's final step: ``cv2.rectangle`` + ``cv2.putText``); for the
    ``lines`` pipeline, each line's box (blue) and word boxes (green) with the line's text.

    Args:
        rgb: uint8 (H, W, 3), the image the recognition's boxes refer to.
    """
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(rgb.shape[:2]) / 500))
    if recognition.pipeline == "lines":
        return _annotate_lines(bgr, recognition, thickness)
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


def _annotate_lines(bgr: np.ndarray, recognition: Recognition, thickness: int) -> bytes:
    """Line boxes, word boxes and each line's text above its box, as PNG bytes."""
    for (x, y, w, h), words, text in zip(recognition.line_boxes, recognition.word_boxes,
                                         recognition.lines, strict=True):
        cv2.rectangle(bgr, (x, y), (x + w, y + h), (230, 120, 0), thickness)
        for wx, wy, ww, wh in words:
            cv2.rectangle(bgr, (wx, wy), (wx + ww, wy + wh), (0, 200, 0), thickness)
        scale = max(0.4, h / 60)
        cv2.putText(bgr, text, (x, max(0, y - 3 * thickness)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 230), thickness + 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
