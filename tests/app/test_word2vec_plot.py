"""POST /v1/word2vec/plot and the `model` field, through the full ASGI app on the committed
artifact (skip-gram served by default, CBOW in artifacts/word2vec/cbow)."""

from __future__ import annotations

import struct

import httpx
import pytest

from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.anyio

COUNTRIES = ["japan", "germany", "france", "britain", "canada", "italy"]
MONTHS = ["january", "february", "march", "april", "june", "july"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_plot_returns_a_png_of_the_documented_size(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/plot", json={"words": COUNTRIES + MONTHS})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert _png_size(response.content) == (1000, 750)
    assert response.headers["x-unknown-words"] == ""
    assert response.headers["x-plotted-words"].split(",") == COUNTRIES + MONTHS


async def test_plot_lists_unknown_words_in_a_header(client: httpx.AsyncClient) -> None:
    words = ["Japan", "xyzzyq", "germany", "foo,bar", "japan"]
    response = await client.post("/v1/word2vec/plot", json={"words": words})
    assert response.status_code == 200, response.text
    assert response.headers["x-unknown-words"] == "xyzzyq,foo%2Cbar"
    assert response.headers["x-plotted-words"] == "japan,germany"  # repeats drawn once


async def test_plot_is_repeatable(client: httpx.AsyncClient) -> None:
    body = {"words": COUNTRIES, "method": "pca"}
    first = await client.post("/v1/word2vec/plot", json=body)
    second = await client.post("/v1/word2vec/plot", json=body)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


async def test_tsne_plot_returns_a_png(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/plot",
                                 json={"words": COUNTRIES + MONTHS, "method": "tsne"})
    assert response.status_code == 200, response.text
    assert _png_size(response.content) == (1000, 750)


@pytest.mark.parametrize("words", [["japan", "xyzzyq", "qqqzz"], ["japan", "JAPAN"]])
async def test_fewer_than_two_known_words_returns_422(client: httpx.AsyncClient,
                                                      words: list[str]) -> None:
    response = await client.post("/v1/word2vec/plot", json={"words": words})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "at least 2" in error["message"]


@pytest.mark.parametrize("body", [
    {"words": ["japan"]},
    {"words": [f"w{i}" for i in range(101)]},
    {"words": ["japan", "germany"], "method": "umap"},
    {"words": ["japan", "two words"]},
])
async def test_bad_plot_requests_return_422(client: httpx.AsyncClient, body: dict) -> None:
    response = await client.post("/v1/word2vec/plot", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_plot_needs_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/plot", content=b"words=japan",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


async def test_unknown_model_returns_404_listing_the_served_ones(
        client: httpx.AsyncClient) -> None:
    for path, body in [("/v1/word2vec/neighbors", {"word": "chip", "model": "glove"}),
                       ("/v1/word2vec/plot", {"words": COUNTRIES, "model": "glove"}),
                       ("/v1/word2vec/similarity", {"pairs": [["a", "b"]], "model": "glove"})]:
        response = await client.post(path, json=body)
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "not_found" and "skipgram" in error["message"]


@pytest.mark.skipif(not (ARTIFACTS / "word2vec" / "cbow").is_dir(),
                    reason="artifacts/word2vec/cbow not trained")
async def test_model_field_picks_cbow(client: httpx.AsyncClient) -> None:
    default = await client.post("/v1/word2vec/neighbors", json={"word": "chip", "k": 5})
    skipgram = await client.post("/v1/word2vec/neighbors",
                                 json={"word": "chip", "k": 5, "model": "skipgram"})
    cbow = await client.post("/v1/word2vec/neighbors",
                             json={"word": "chip", "k": 5, "model": "cbow"})
    assert default.status_code == skipgram.status_code == cbow.status_code == 200
    assert default.json() == skipgram.json() and cbow.json() != skipgram.json()
    plot = await client.post("/v1/word2vec/plot", json={"words": COUNTRIES, "model": "cbow"})
    assert plot.status_code == 200 and plot.content[:8] == PNG_SIGNATURE
