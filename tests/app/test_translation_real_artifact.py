"""POST /v1/translate on the trained Multi30k artifact (skipped until artifacts/translation
exists: it is trained by ``modelzoo train translation``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import ARTIFACTS, running_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tr_client() -> AsyncIterator[httpx.AsyncClient]:
    if not (ARTIFACTS / "translation").is_dir():
        pytest.skip("artifacts/translation is not trained yet (modelzoo train translation)")
    async with running_app(Settings(artifacts_dir=ARTIFACTS, models="translation")) as client:
        yield client


async def test_a_man_rides_a_bike(tr_client: httpx.AsyncClient) -> None:
    response = await tr_client.post("/v1/translate", json={"text": "Ein Mann fährt Fahrrad."})
    assert response.status_code == 200
    text = response.json()["translations"][0]["text"].lower()
    assert "man" in text
    assert "bike" in text or "bicycle" in text


async def test_a_batch_keeps_its_order(tr_client: httpx.AsyncClient) -> None:
    texts = ["Zwei Hunde spielen im Schnee.", "Ein Mann fährt Fahrrad.",
             "Eine Frau liest ein Buch."]
    response = await tr_client.post("/v1/translate", json={"texts": texts})
    assert response.status_code == 200
    out = [t["text"] for t in response.json()["translations"]]
    one_by_one = []
    for text in texts:
        single = await tr_client.post("/v1/translate", json={"text": text})
        assert single.status_code == 200
        one_by_one.append(single.json()["translations"][0]["text"])
    assert out == one_by_one
    lowered = [t.lower() for t in out]
    assert "dog" in lowered[0]
    assert "bike" in lowered[1] or "bicycle" in lowered[1]
    assert "woman" in lowered[2]
