"""The ``pipeline`` switch of /v1/handwriting/*: contours, lines and auto, through the API.

A copy of the committed letter artifact gets a CRNN line recognizer: the committed one when
``artifacts/handwriting/crnn`` exists, else a randomly initialised one built here (the
switch, the response shape and the errors do not depend on its weights).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch

from app.config import Settings
from models.common.artifacts import save_artifact
from models.common.manifest import write_manifest
from models.handwriting import linereader
from models.handwriting.charlm import CharNgramLM
from models.handwriting.crnn import CRNN
from models.handwriting.linesynth import ALPHABET
from tests.app.test_handwriting_api import encode, page, upload
from tests.conftest import ARTIFACTS, running_app

pytestmark = pytest.mark.anyio


def script_page(lines: list[str], scale: float = 2.0) -> np.ndarray:
    """Joined script (Hershey script simplex), dark on light paper, one text line each."""
    font, thickness = cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 3
    (_, cap), _ = cv2.getTextSize("H", font, scale, thickness)
    width = max(cv2.getTextSize(line, font, scale, thickness)[0][0] for line in lines) + 2 * cap
    image = np.full((3 * cap * len(lines) + cap, width, 3), 235, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (cap, 3 * cap * (i + 1)), font, scale, (20, 20, 20),
                    thickness, cv2.LINE_AA)
    return image


def write_random_crnn(directory: Path) -> None:
    """A CRNN artifact with random weights and a tiny character LM, as train_crnn writes."""
    torch.manual_seed(0)
    model = CRNN(len(ALPHABET) + 1, hidden=32, channels=(8, 8, 16, 16, 16)).eval()
    config = {"arch": "crnn", "model": model.config.to_dict(), "alphabet": ALPHABET,
              "blank": 0}
    save_artifact(directory, {k: v.half() if v.is_floating_point() else v
                              for k, v in model.state_dict().items()},
                  config, {"task": "handwriting", "name": "lines-crnn-random"})
    CharNgramLM.train(["the cat sat on the mat", "hello world"], order=3, min_count=1,
                      alphabet=ALPHABET).save(directory / "charlm.npz")


def with_random_crnn(target: Path) -> None:
    """A copy of the committed handwriting artifact at ``target`` whose line recognizer
    has random weights (unsure of every line)."""
    shutil.copytree(ARTIFACTS / "handwriting", target)
    shutil.rmtree(target / "crnn", ignore_errors=True)
    write_random_crnn(target / "crnn")
    write_manifest(target)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """An artifacts root whose handwriting folder has a line recognizer."""
    root = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS / "handwriting", root / "handwriting")
    if not (root / "handwriting" / "crnn").is_dir():
        write_random_crnn(root / "handwriting" / "crnn")
        write_manifest(root / "handwriting")
    return root


def _settings(root: Path) -> Settings:
    return Settings(artifacts_dir=root, models="handwriting", max_upload_bytes=2_000_000,
                    handwriting_max_pixels=3_000_000)


@pytest.fixture
async def client(artifacts: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(_settings(artifacts)) as c:
        yield c


@pytest.fixture
def keep_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep readings the stray-mark filter would drop (random weights are never sure)."""
    monkeypatch.setattr(linereader, "plausible", lambda reading: bool(reading.chars))


@pytest.mark.usefixtures("keep_every_line")
async def test_lines_pipeline_answers_with_line_and_word_boxes(
        client: httpx.AsyncClient) -> None:
    image = script_page(["hello there", "a second line"])
    response = await client.post("/v1/handwriting/recognize?pipeline=lines",
                                 files=upload(encode(image)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline"] == "lines"
    assert body["labels"] == ALPHABET
    assert len(body["line_boxes"]) == 2
    first, second = body["line_boxes"]
    assert first["box"][1] < second["box"][1]          # top to bottom
    for line in body["line_boxes"]:
        x, y, w, h = line["box"]
        assert x >= 0 and y >= 0 and x + w <= image.shape[1] and y + h <= image.shape[0]
        assert line["words"]


async def read_hello_world(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    """POST a page of "HELLO" / "WORLD" in block capitals; the 200 answer must read it."""
    response = await client.post(f"/v1/handwriting/recognize{query}",
                                 files=upload(encode(page(["HELLO", "WORLD"]))))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["text"] == "HELLO\nWORLD"
    return body


async def test_contours_pipeline_reads_block_capitals(client: httpx.AsyncClient) -> None:
    body = await read_hello_world(client, "?pipeline=contours")
    assert body["pipeline"] == "contours"
    assert [line["text"] for line in body["line_boxes"]] == ["HELLO", "WORLD"]
    assert len(body["characters"]) == 10


async def test_auto_reads_block_capitals_written_apart(client: httpx.AsyncClient) -> None:
    body = await read_hello_world(client)
    assert [line["text"] for line in body["line_boxes"]] == ["HELLO", "WORLD"]
    assert {line["pipeline"] for line in body["line_boxes"]} <= {"lines", "contours"}


async def test_auto_takes_the_contour_lines_where_the_line_recognizer_is_unsure(
        tmp_path: Path) -> None:
    """A line recognizer with random weights is unsure of every line, so ``auto`` answers
    with the letter CNN's lines, each marked as read by contours (the page rule's base,
    kept line by line: see the test below that reads a contour page both ways)."""
    root = tmp_path / "artifacts"
    with_random_crnn(root / "handwriting")
    async with running_app(_settings(root)) as c:
        body = await read_hello_world(c)
    assert body["pipeline"] == "contours"
    assert [line["pipeline"] for line in body["line_boxes"]] == ["contours", "contours"]
    assert [c["line"] for c in body["characters"]] == [0] * 5 + [1] * 5


async def test_auto_reads_joined_script_with_lines(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/handwriting/recognize?pipeline=auto",
                                 files=upload(encode(script_page(["minimum summer"]))))
    assert response.status_code == 200, response.text
    assert response.json()["pipeline"] == "lines"


@pytest.mark.usefixtures("keep_every_line")
async def test_annotate_draws_line_boxes_for_lines(client: httpx.AsyncClient) -> None:
    image = script_page(["hello there"])
    response = await client.post("/v1/handwriting/annotate?pipeline=lines",
                                 files=upload(encode(image)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    drawn = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape[:2] == image.shape[:2]
    assert not np.array_equal(drawn[..., ::-1], image)  # boxes were drawn


async def test_unknown_pipeline_returns_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/handwriting/recognize?pipeline=ocr",
                                 files=upload(encode(page(["HI"]))))
    assert response.status_code == 422
    assert "pipeline" in response.text


async def test_blank_page_reads_empty_with_every_pipeline(client: httpx.AsyncClient) -> None:
    blank = np.full((300, 400, 3), 240, np.uint8)
    for pipeline in ("auto", "lines", "contours"):
        response = await client.post(f"/v1/handwriting/recognize?pipeline={pipeline}",
                                     files=upload(encode(blank)))
        assert response.status_code == 200, response.text
        assert response.json()["text"] == ""
        assert response.json()["line_boxes"] == []


async def test_lines_without_a_line_recognizer_returns_422(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS / "handwriting", root / "handwriting")
    if (root / "handwriting" / "crnn").is_dir():
        shutil.rmtree(root / "handwriting" / "crnn")
        write_manifest(root / "handwriting")
    async with running_app(_settings(root)) as client:
        response = await client.post("/v1/handwriting/recognize?pipeline=lines",
                                     files=upload(encode(page(["HI"]))))
        assert response.status_code == 422
        assert "pipeline=contours" in response.json()["error"]["message"]
        auto = await client.post("/v1/handwriting/recognize",
                                 files=upload(encode(script_page(["minimum"]))))
        assert auto.status_code == 200
        assert auto.json()["pipeline"] == "contours"


def test_stray_marks_are_not_read_as_lines() -> None:
    def reading(text: str, confidence: float) -> linereader.LineReading:
        chars = [linereader.LineChar(c, confidence, (0, 0, 1, 1), 0, []) for c in text]
        return linereader.LineReading(text, (0, 0, 1, 1), [], chars, confidence)

    assert linereader.plausible(reading("Hello there", 0.8))
    assert linereader.plausible(reading("of ocr", 0.45))     # long enough to keep when unsure
    assert not linereader.plausible(reading("o", 0.3))      # a speck read as a letter
    assert not linereader.plausible(reading("As", 0.5))     # short and unsure
    assert linereader.plausible(reading("OK", 0.9))         # short and sure
    assert not linereader.plausible(reading("texture", 0.2))
    assert not linereader.plausible(reading("", 0.0))


def test_auto_reads_a_contour_page_both_ways_and_keeps_the_sure_contour_lines(
        tmp_path: Path) -> None:
    """``auto`` reads every page with both pipelines and fuses them line by line: on block
    capitals the random line recognizer's lines score below the letter CNN's and give way."""
    from models.handwriting import predictor as hw

    root = tmp_path / "handwriting"
    with_random_crnn(root)
    model = hw.HandwritingPredictor.load(root)
    data = encode(page(["HELLO", "WORLD"]))
    contours, _ = model.recognize(data, pipeline="contours")
    assert contours.text == "HELLO\nWORLD"
    assert "read_lines" not in contours.timings_ms
    fused, _ = model.recognize(data, pipeline="auto")
    assert fused.text == "HELLO\nWORLD"
    assert [fused.line_pipeline(i) for i in range(len(fused.lines))] == ["contours"] * 2
    assert "read_lines" in fused.timings_ms  # the line recognizer did run
