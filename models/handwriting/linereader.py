"""Serving-side line recognizer: page ink map → text lines → CRNN → CTC decoding → text.

The ``pipeline=lines`` path of :class:`models.handwriting.predictor.HandwritingPredictor`:
:func:`models.handwriting.lines.find_lines` finds and deskews the text lines, each line crop
(32 px high, ink bright on black) goes through the CRNN in one padded batch, and each line's
per-column distribution is decoded by CTC prefix beam search with the character n-gram
language model (:mod:`models.handwriting.ctc`, :mod:`models.handwriting.charlm`), or greedily
with ``beam_size=1``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.common.artifacts import ArtifactError, load_artifact
from models.handwriting.charlm import CharNgramLM
from models.handwriting.combine import (
    JOINT_MAX_BLOCKS,
    JOINT_SKIP,
    JOINT_WEIGHT,
    LetterEvidence,
    ctc_frames,
    joint_text,
    merge_evidence,
    pair_boxes,
)
from models.handwriting.crnn import CRNN
from models.handwriting.ctc import beam_search, greedy_decode
from models.handwriting.lines import MIN_STROKE, TextLine, find_lines, line_crop, to_original
from models.handwriting.preprocess import InkMap

log = logging.getLogger(__name__)

#: The language model file inside the CRNN artifact folder.
LM_FILE = "charlm.npz"
#: A line whose characters' mean confidence is below MIN_LINE_CONFIDENCE, or that has at most
#: SHORT_LINE_CHARS characters with mean confidence below SHORT_LINE_CONFIDENCE, is taken for
#: a speck, a stray mark or paper texture and dropped (see the README's line-reading notes).
MIN_LINE_CONFIDENCE = 0.35
SHORT_LINE_CHARS = 3
SHORT_LINE_CONFIDENCE = 0.6


@dataclass
class LineChar:
    """One character read on a line: its class probability, its approximate box (from the
    CTC column where it was emitted) and the top-3 ``(char, probability)`` of that column."""

    char: str
    confidence: float
    box: tuple[int, int, int, int]
    word: int
    alternatives: list[tuple[str, float]]


@dataclass
class LineReading:
    """The text of one line and where it is (boxes in original-image pixels)."""

    text: str
    box: tuple[int, int, int, int]
    word_boxes: list[tuple[int, int, int, int]]
    chars: list[LineChar]
    confidence: float


class LineReader:
    """CRNN + CTC decoding over the lines of a page.

    Args:
        model: the CRNN (eval mode).
        config: the artifact's ``config.json`` (``alphabet``, ``model``).
        lm: the character language model, or None (beam search without it).
        beam_size: 1 = greedy best path; otherwise prefix beam search width.
        lm_weight, insertion_bonus: shallow-fusion weights (alpha, beta).
        joint_weight, joint_skip: the letter CNN's weight and skip score when a line is read
            jointly with the contour reading (:meth:`read` with ``evidence``); weight 0
            turns the joint reading off.
        min_stroke: thinner strokes are thickened before reading (pixels at the CRNN's
            height; :func:`models.handwriting.lines.line_crop`); 0 turns that off.
    """

    def __init__(self, model: CRNN, config: dict[str, Any], card: dict[str, Any],
                 lm: CharNgramLM | None, beam_size: int = 8, lm_weight: float = 0.5,
                 insertion_bonus: float = 1.0, min_stroke: float = MIN_STROKE,
                 joint_weight: float = JOINT_WEIGHT, joint_skip: float = JOINT_SKIP) -> None:
        self.model, self.card, self.lm = model.eval(), card, lm
        self.min_stroke = min_stroke
        self.alphabet: str = config["alphabet"]
        decode = config.get("decode", {})  # the artifact's settings win over the defaults
        self.beam_size = int(decode.get("beam_size", beam_size))
        self.lm_weight = float(decode.get("lm_weight", lm_weight))
        self.insertion_bonus = float(decode.get("insertion_bonus", insertion_bonus))
        self.joint_weight = float(decode.get("joint_weight", joint_weight))
        self.joint_skip = float(decode.get("joint_skip", joint_skip))
        self.joint_max_blocks = int(decode.get("joint_max_blocks", JOINT_MAX_BLOCKS))

    @classmethod
    def load(cls, artifact_dir: Path, quantize: bool = False) -> LineReader:
        """Rebuild the CRNN from ``config.json`` + safetensors (float16 on disk, run in
        float32 on CPU), and the language model from ``charlm.npz`` when present.

        With ``quantize`` the LSTM and Linear layers are dynamically quantized to int8.

        Raises:
            ArtifactError: files missing, or weights that do not fit the config.
        """
        tensors, config, card = load_artifact(artifact_dir)
        try:
            model = CRNN(**config["model"])
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in tensors.items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{artifact_dir}: weights do not fit config.json: {exc}") from exc
        if len(config["alphabet"]) + 1 != config["model"]["num_classes"]:
            raise ArtifactError(f"{artifact_dir}: {len(config['alphabet'])} characters + blank "
                                f"for {config['model']['num_classes']} outputs")
        model.eval()
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
        lm_path = artifact_dir / LM_FILE
        lm = CharNgramLM.load(lm_path) if lm_path.is_file() else None
        return cls(model, config, card, lm)

    @torch.inference_mode()
    def log_probs(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Per-column log-probabilities of line crops, each line run on its own (no padding,
        so a line reads the same whatever else is on the page).

        Args:
            crops: float32 (32, W_i) ink maps, ink bright on black in [0, 1].

        Returns:
            float32 (T_i, len(alphabet) + 1) per crop, ``T_i = W_i // 4``, class 0 = blank.
        """
        out = []
        for crop in crops:
            width = max(8, crop.shape[1] // 4 * 4)
            x = np.zeros((1, 1, 32, width), np.float32)
            x[0, 0, :, :min(width, crop.shape[1])] = crop[:, :width]
            out.append(self.model(torch.from_numpy(x))[:, 0].numpy())  # (T, K)
        return out

    def decode(self, log_probs: np.ndarray) -> tuple[str, list[int]]:
        """Text and the emitting column of each character, for one line (T, K)."""
        if self.beam_size <= 1:
            pairs = greedy_decode(log_probs)
            return ("".join(self.alphabet[k - 1] for k, _ in pairs), [t for _, t in pairs])
        result = beam_search(log_probs, "\x00" + self.alphabet, beam_size=self.beam_size,
                             lm=self.lm, alpha=self.lm_weight, beta=self.insertion_bonus)
        return result.text, list(result.frames)

    def read(self, ink: InkMap, evidence: Sequence[LetterEvidence] = (),
             overlap: float = 0.5) -> list[LineReading]:
        """Find the lines of a page and read each one (boxes in original-image pixels);
        readings that look like stray marks (:func:`plausible`) are left out.

        Args:
            ink: the page's ink map.
            evidence: the contour reading's lines (:class:`LetterEvidence`, boxes in
                original-image pixels). A found line that the contour lines it overlaps
                overlap alone (:func:`models.handwriting.combine.pair_boxes`,
                ``overlap``; several are merged left to right) is read jointly with them
                (:func:`models.handwriting.combine.joint_text`, weights
                ``decode.joint_weight`` / ``decode.joint_skip`` of the config); the rest
                by the beam search alone.
        """
        lines = find_lines(ink)
        crops = [line_crop(ink, line, min_stroke=self.min_stroke) for line in lines]
        pairs = pair_boxes([line.original_box(ink) for line in lines],
                           [e.box for e in evidence], overlap) if evidence else {}
        readings = []
        for k, (line, crop, lp) in enumerate(zip(lines, crops, self.log_probs(crops),
                                                  strict=True)):
            text, frames = self.decode(lp)
            if k in pairs and self.joint_weight > 0:
                seen = merge_evidence([evidence[j] for j in pairs[k]])
                joint = joint_text(lp, self.alphabet, text, seen, self.lm,
                                   self.lm_weight, self.insertion_bonus, self.joint_weight,
                                   self.joint_skip, self.joint_max_blocks)
                if joint != text:
                    text, frames = joint, ctc_frames(lp, joint, self.alphabet)
            reading = self._reading(ink, line, crop, lp, text, frames)
            if plausible(reading):
                readings.append(reading)
        return readings

    def _reading(self, ink: InkMap, line: TextLine, crop: np.ndarray, lp: np.ndarray,
                 text: str, frames: list[int]) -> LineReading:
        """Boxes for the characters: a character spans from its emitting column to the next
        character's, mapped linearly from crop columns onto the (deskewed) line box."""
        x, y, w, h = line.box
        per_col = w / max(1, crop.shape[1]) * 4  # ink-map px per CTC column
        probs = np.exp(lp)
        words = [to_original(b, ink) for b in line.words]
        chars: list[LineChar] = []
        word = 0
        ends = [*frames[1:], lp.shape[0]]
        for ch, t0, t1 in zip(text, frames, ends, strict=True):
            if ch == " ":
                word += 1
                continue
            top = np.argsort(-probs[t0])[:3]
            alts = [(self.alphabet[k - 1] if k else "", round(float(probs[t0, k]), 4))
                    for k in top]
            conf = round(float(probs[t0, 1 + self.alphabet.index(ch)]), 4)
            bx = (int(x + t0 * per_col), y, max(1, int((t1 - t0) * per_col)), h)
            chars.append(LineChar(ch, conf, to_original(bx, ink), word,
                                  [(a, p) for a, p in alts if a]))
        confidence = float(np.mean([c.confidence for c in chars])) if chars else 0.0
        return LineReading(text.strip(), line.original_box(ink), words, chars, confidence)


def plausible(reading: LineReading) -> bool:
    """False for a reading that is more likely a speck or stray mark than text: mean
    character confidence below :data:`MIN_LINE_CONFIDENCE`, or at most
    :data:`SHORT_LINE_CHARS` characters below :data:`SHORT_LINE_CONFIDENCE`, or no text."""
    n = sum(c.char != " " for c in reading.chars)
    if n == 0 or reading.confidence < MIN_LINE_CONFIDENCE:
        return False
    return not (n <= SHORT_LINE_CHARS and reading.confidence < SHORT_LINE_CONFIDENCE)
