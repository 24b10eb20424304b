"""``LineReader.read`` with the contour reading as evidence: which lines are read jointly."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch

from models.handwriting import linereader
from models.handwriting.combine import LetterEvidence
from models.handwriting.crnn import CRNN
from models.handwriting.lines import find_lines
from models.handwriting.linesynth import ALPHABET
from models.handwriting.preprocess import ink_map


def two_line_page() -> np.ndarray:
    """Two lines of printed capitals, dark on light paper."""
    image = np.full((260, 700, 3), 235, np.uint8)
    for i, text in enumerate(("HELLO WORLD", "GOOD DAY")):
        cv2.putText(image, text, (30, 90 + 110 * i), cv2.FONT_HERSHEY_SIMPLEX, 2.0,
                    (20, 20, 20), 5, cv2.LINE_AA)
    return image


@pytest.fixture()
def reader(monkeypatch: pytest.MonkeyPatch) -> linereader.LineReader:
    """A random-weight CRNN reader whose every reading is kept (random weights are unsure)."""
    torch.manual_seed(0)
    model = CRNN(len(ALPHABET) + 1, hidden=32, channels=(8, 8, 16, 16, 16)).eval()
    config = {"alphabet": ALPHABET, "decode": {"beam_size": 1}}
    monkeypatch.setattr(linereader, "plausible", lambda reading: True)
    return linereader.LineReader(model, config, {}, lm=None)


def record_joint(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace ``joint_text`` by a recorder that answers ``JOINT<n>``."""
    calls: list[dict[str, Any]] = []

    def fake(log_probs: np.ndarray, alphabet: str, line_text: str, evidence: LetterEvidence,
             *args: Any) -> str:
        calls.append({"frames": log_probs.shape[0], "evidence": evidence, "args": args})
        return f"JOINT{len(calls)}"

    monkeypatch.setattr(linereader, "joint_text", fake)
    return calls


def test_each_found_line_is_read_with_the_contour_lines_inside_it(
        reader: linereader.LineReader, monkeypatch: pytest.MonkeyPatch) -> None:
    ink = ink_map(two_line_page())
    boxes = [line.original_box(ink) for line in find_lines(ink)]
    assert len(boxes) == 2
    calls = record_joint(monkeypatch)
    first = LetterEvidence(boxes[0], "HELLO WORLD", [{"H": 0.9}] * 10)
    # the second line's contour reading came as two pieces: merged left to right
    x, y, w, h = boxes[1]
    left = LetterEvidence((x, y, w // 2, h), "GOOD", [{"G": 0.9}] * 4)
    right = LetterEvidence((x + w // 2, y, w - w // 2, h), "DAY", [{"D": 0.9}] * 3)
    readings = reader.read(ink, [first, right, left])
    assert [r.text for r in readings] == ["JOINT1", "JOINT2"]
    assert [c["evidence"].text for c in calls] == ["HELLO WORLD", "GOOD DAY"]
    assert calls[0]["args"][3:5] == (reader.joint_weight, reader.joint_skip)
    # the characters of the joint text get boxes along the line, left to right
    xs = [c.box[0] for c in readings[0].chars]
    assert len(xs) == len("JOINT1") and xs == sorted(xs)


def test_no_evidence_or_weight_zero_reads_as_the_beam_search(
        reader: linereader.LineReader, monkeypatch: pytest.MonkeyPatch) -> None:
    ink = ink_map(two_line_page())
    plain = [r.text for r in reader.read(ink)]
    calls = record_joint(monkeypatch)
    boxes = [line.original_box(ink) for line in find_lines(ink)]
    evidence = [LetterEvidence(b, "X", [{"X": 0.9}]) for b in boxes]
    reader.joint_weight = 0.0
    assert [r.text for r in reader.read(ink, evidence)] == plain
    # a contour line far from every found line pairs with none
    reader.joint_weight = 0.7
    assert [r.text for r in reader.read(ink, [LetterEvidence((0, 0, 5, 5), "X",
                                                             [{"X": 0.9}])])] == plain
    assert calls == []
