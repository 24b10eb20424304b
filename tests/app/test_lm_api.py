"""The LM endpoints, on a tiny model trained by the training module."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import running_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lm_client(tiny_lm_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(artifacts_dir=tiny_lm_root, models="lm", lm_max_tokens=50)
    async with running_app(settings) as client:
        yield client


async def test_generate_with_a_seed_is_repeatable(lm_client: httpx.AsyncClient) -> None:
    body = {"prompt": "the chip", "max_tokens": 10, "seed": 5, "num_samples": 2,
            "temperature": 0.9, "top_k": 5}
    first = await lm_client.post("/v1/lm/generate", json=body)
    second = await lm_client.post("/v1/lm/generate", json=body)
    assert first.status_code == 200
    assert first.json() == second.json()
    samples = first.json()["samples"]
    assert len(samples) == 2 and all(len(s["tokens"]) == 10 for s in samples)
    assert first.json()["seed"] == 5


async def test_eos_is_a_newline_unless_it_stops(lm_client: httpx.AsyncClient) -> None:
    body = {"max_tokens": 40, "seed": 1, "num_samples": 4}
    free = (await lm_client.post("/v1/lm/generate", json=body)).json()["samples"]
    for s in free:
        assert s["text"].count("\n") == s["tokens"].count("<eos>")
        assert "<eos>" not in s["text"]
    stopped = (await lm_client.post("/v1/lm/generate",
                                    json={**body, "stop_at_eos": True})).json()["samples"]
    assert all("<eos>" not in s["tokens"] for s in stopped)


async def test_unknown_prompt_words_are_listed(lm_client: httpx.AsyncClient) -> None:
    response = await lm_client.post("/v1/lm/generate",
                                    json={"prompt": "the qwerty chip", "max_tokens": 2})
    assert response.status_code == 200
    assert response.json()["unknown_words"] == ["qwerty"]


@pytest.mark.parametrize("body, fragment", [
    ({"temperature": 0}, "temperature"),
    ({"max_tokens": 51}, "MODELZOO_LM_MAX_TOKENS"),
    ({"num_samples": 9}, "MODELZOO_LM_MAX_SAMPLES"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": 0}, "top_k"),
])
async def test_bad_generate_requests_return_422(
    lm_client: httpx.AsyncClient, body: dict[str, object], fragment: str
) -> None:
    response = await lm_client.post("/v1/lm/generate", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


async def test_stream_sends_the_same_tokens_as_generate(lm_client: httpx.AsyncClient) -> None:
    body = {"prompt": "the", "max_tokens": 8, "seed": 9, "num_samples": 2}
    plain = (await lm_client.post("/v1/lm/generate", json=body)).json()
    response = await lm_client.post("/v1/lm/generate/stream", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    tokens: list[list[str]] = [[], []]
    for event in events[:-1]:
        data = json.loads(event.removeprefix("data: "))
        tokens[data["sample"]].append(data["token"])
    assert tokens == [s["tokens"] for s in plain["samples"]]
    assert events[-1].startswith("event: done")


async def test_score_returns_logprobs_and_perplexity(lm_client: httpx.AsyncClient) -> None:
    response = await lm_client.post("/v1/lm/score", json={"text": "the chip and the memory"})
    assert response.status_code == 200
    body = response.json()
    assert [t["token"] for t in body["tokens"]] == ["the", "chip", "and", "the", "memory",
                                                    "<eos>"]
    assert body["perplexity"] > 1
    empty = await lm_client.post("/v1/lm/score", json={"text": "   "})
    assert empty.status_code == 422
