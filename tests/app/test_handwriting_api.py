"""The handwriting endpoint via httpx, on the committed artifact."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from tests.app.test_metrics import sample
from tests.conftest import ARTIFACTS, running_app

pytestmark = pytest.mark.anyio


def page(lines: list[str], ink: int = 20, paper: int = 235, scale: float = 3.0) -> np.ndarray:
    """Block capitals drawn with a thick pen (Hershey simplex), dark ink on light paper,
    spaced as people write: a gap of ~1/4 letter height between letters, ~1 height between
    words."""
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 9
    (_, cap), _ = cv2.getTextSize("H", font, scale, thickness)
    width = max(sum(cv2.getTextSize(c, font, scale, thickness)[0][0] + cap // 4 + cap * (c == " ")
                    for c in line) for line in lines) + 2 * cap
    image = np.full((2 * cap * len(lines) + cap, width, 3), paper, np.uint8)
    for i, line in enumerate(lines):
        x, baseline = cap, 2 * cap * (i + 1)
        for ch in line:
            if ch == " ":
                x += cap
                continue
            cv2.putText(image, ch, (x, baseline), font, scale, (ink, ink, ink), thickness,
                        cv2.LINE_AA)
            x += cv2.getTextSize(ch, font, scale, thickness)[0][0] + cap // 4
    return image


def encode(image: np.ndarray, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def upload(data: bytes, name: str = "page.png", content_type: str = "image/png") -> dict:
    return {"file": (name, data, content_type)}


@pytest.fixture
async def hw_client() -> AsyncIterator[httpx.AsyncClient]:
    if not (ARTIFACTS / "handwriting").is_dir():
        pytest.fail("artifacts/handwriting is missing: it is committed with the repository")
    settings = Settings(artifacts_dir=ARTIFACTS, models="handwriting", max_upload_bytes=200_000,
                        handwriting_max_pixels=3_000_000)
    async with running_app(settings) as client:
        yield client


async def test_block_capitals_png_reads_as_text(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(encode(page(["HELLO", "WORLD"]))))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "HELLO\nWORLD"
    assert body["lines"] == ["HELLO", "WORLD"]
    assert len(body["characters"]) == 10
    first = body["characters"][0]
    assert first["line"] == 0 and first["word"] == 0
    assert len(first["alternatives"]) == 3 and first["alternatives"][0]["char"] == first["char"]
    xs = [c["box"][0] for c in body["characters"][:5]]
    assert xs == sorted(xs)


async def test_words_are_separated_by_one_space(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(encode(page(["NO WAY"]))))
    assert response.status_code == 200
    assert response.json()["text"] == "NO WAY"
    assert [c["word"] for c in response.json()["characters"]] == [0, 0, 1, 1, 1]


async def test_jpeg_with_light_ink_on_dark_paper_reads_the_same(
    hw_client: httpx.AsyncClient,
) -> None:
    data = encode(page(["TAX"], ink=230, paper=25), "JPEG", quality=85)
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(data, "page.jpg", "image/jpeg"))
    assert response.status_code == 200
    assert response.json()["text"] == "TAX"


async def test_annotate_returns_a_png_of_the_same_size(hw_client: httpx.AsyncClient) -> None:
    image = page(["OK"])
    response = await hw_client.post("/v1/handwriting/recognize?annotate=true",
                                    files=upload(encode(image)))
    assert response.status_code == 200
    annotated = Image.open(io.BytesIO(base64.b64decode(response.json()["annotated_png"])))
    assert annotated.format == "PNG" and annotated.size == (image.shape[1], image.shape[0])
    assert not np.array_equal(np.asarray(annotated.convert("RGB")), image)  # boxes drawn
    raw = await hw_client.post("/v1/handwriting/annotate", files=upload(encode(image)))
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert raw.headers["x-text"] == response.json()["text"]


async def test_blank_page_gives_empty_text(hw_client: httpx.AsyncClient) -> None:
    blank = np.full((300, 400, 3), 240, np.uint8)
    response = await hw_client.post("/v1/handwriting/recognize", files=upload(encode(blank)))
    assert response.status_code == 200
    assert response.json()["text"] == "" and response.json()["characters"] == []


async def test_non_image_part_is_415(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(b"hello", "notes.txt", "text/plain"))
    assert response.status_code == 415
    assert "PNG" in response.json()["error"]["message"]


async def test_json_body_instead_of_upload_is_a_clear_error(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize", json={"file": "x"})
    assert response.status_code in (415, 422)
    assert "file" in response.json()["error"]["message"]


async def test_corrupt_image_is_422(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(b"\x89PNG\r\n\x1a\n garbage"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


async def test_truncated_png_is_422(hw_client: httpx.AsyncClient) -> None:
    data = encode(page(["A"]))
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(data[: len(data) // 2]))
    assert response.status_code == 422


async def test_empty_file_is_422(hw_client: httpx.AsyncClient) -> None:
    response = await hw_client.post("/v1/handwriting/recognize", files=upload(b""))
    assert response.status_code == 422


async def test_upload_over_the_size_limit_is_413(hw_client: httpx.AsyncClient) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    data = encode(noise)
    assert len(data) > 200_000
    response = await hw_client.post("/v1/handwriting/recognize", files=upload(data))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_decompression_bomb_is_413(hw_client: httpx.AsyncClient) -> None:
    big = np.zeros((2000, 2000), np.uint8)  # 4 MP > the 3 MP limit, compresses to a few KB
    response = await hw_client.post("/v1/handwriting/recognize", files=upload(encode(big)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"


async def test_service_still_answers_after_bad_uploads(hw_client: httpx.AsyncClient) -> None:
    for data in (b"", b"junk", b"\x89PNG\r\n\x1a\n"):
        await hw_client.post("/v1/handwriting/recognize", files=upload(data))
    response = await hw_client.post("/v1/handwriting/recognize",
                                    files=upload(encode(page(["HI"]))))
    assert response.status_code == 200 and response.json()["text"] == "HI"


async def test_concurrent_images_share_a_classifier_batch_and_read_the_same() -> None:
    """The letters of concurrent uploads are classified in one pass, with the same answers
    (letters, confidences, boxes) as each upload alone."""
    texts = [["HELLO"], ["AB CD"], ["WORLD", "OK"], ["XYZ"], [" "], ["MANY WORDS"]]
    images = [encode(page(t)) for t in texts]
    base = {"artifacts_dir": ARTIFACTS, "models": "handwriting", "access_log": False}
    async with running_app(Settings(**base, batching=False)) as client:
        alone = [await client.post("/v1/handwriting/recognize", files=upload(d)) for d in images]
    settings = Settings(**base, handwriting_max_wait_ms=300)
    async with running_app(settings) as client:
        together = await asyncio.gather(*(client.post("/v1/handwriting/recognize",
                                                      files=upload(d)) for d in images))
        metrics = (await client.get("/metrics")).text
    for one, many in zip(alone, together, strict=True):
        assert one.status_code == 200 and many.status_code == 200, many.text
        a, b = one.json(), many.json()
        assert a["text"] == b["text"]
        assert [c["box"] for c in a["characters"]] == [c["box"] for c in b["characters"]]
        assert [c["confidence"] for c in a["characters"]] == pytest.approx(
            [c["confidence"] for c in b["characters"]], abs=1e-4)
    assert together[0].json()["text"] == "HELLO"
    calls = sample(metrics, "modelzoo_batch_size_count", task="handwriting")
    images_classified = sample(metrics, "modelzoo_batch_size_sum", task="handwriting")
    assert images_classified == 5  # the blank page has no letter to classify
    assert calls is not None and calls < 5
