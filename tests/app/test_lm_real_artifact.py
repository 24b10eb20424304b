"""The LM endpoints on the committed PTB artifact (skipped until artifacts/lm exists)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import ARTIFACTS, running_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lm_client() -> AsyncIterator[httpx.AsyncClient]:
    if not (ARTIFACTS / "lm").is_dir():
        pytest.skip("artifacts/lm is not trained yet (modelzoo train lm)")
    async with running_app(Settings(artifacts_dir=ARTIFACTS, models="lm")) as client:
        yield client


async def test_real_sentence_scores_better_than_its_shuffle(
    lm_client: httpx.AsyncClient,
) -> None:
    sentence = "the company said it expects to report higher earnings for the third quarter"
    words = sentence.split()
    random.Random(0).shuffle(words)
    real = await lm_client.post("/v1/lm/score", json={"text": sentence})
    shuffled = await lm_client.post("/v1/lm/score", json={"text": " ".join(words)})
    assert real.status_code == shuffled.status_code == 200
    assert real.json()["perplexity"] < shuffled.json()["perplexity"] / 3


async def test_seeded_generation_is_repeatable(lm_client: httpx.AsyncClient) -> None:
    body = {"prompt": "the stock market", "max_tokens": 25, "seed": 11, "top_p": 0.9}
    first = await lm_client.post("/v1/lm/generate", json=body)
    second = await lm_client.post("/v1/lm/generate", json=body)
    assert first.status_code == 200 and first.json() == second.json()
