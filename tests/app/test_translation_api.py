"""POST /v1/translate on a tiny random Transformer written by the trainer's write_artifact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import running_app
from tests.models.translation.test_translation import write_tiny_artifact

pytestmark = pytest.mark.anyio

URL = "/v1/translate"


@pytest.fixture(scope="session")
def tiny_translation_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("translation_artifacts")
    write_tiny_artifact(root)
    return root


@pytest.fixture
async def tr_client(tiny_translation_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(artifacts_dir=tiny_translation_root, models="translation",
                        max_items_per_request=4, translation_max_chars=300)
    async with running_app(settings) as client:
        yield client


async def test_one_text_gets_one_translation(tr_client: httpx.AsyncClient) -> None:
    response = await tr_client.post(URL, json={"text": "Ein Mann fährt ein Fahrrad."})
    assert response.status_code == 200
    body = response.json()
    assert body["beam_size"] == 5
    (item,) = body["translations"]
    assert isinstance(item["text"], str) and item["text"]
    assert item["score"] < 0


async def test_a_batch_comes_back_in_order(tr_client: httpx.AsyncClient) -> None:
    texts = ["Ein Hund sieht einen Ball im Park.", "Ein Koch kauft einen Fisch.",
             "Eine Frau trägt einen Korb auf der Straße unter einer Brücke."]
    response = await tr_client.post(URL, json={"texts": texts, "beam_size": 3})
    assert response.status_code == 200
    batch = response.json()["translations"]
    one_by_one = []
    for t in texts:
        single = await tr_client.post(URL, json={"text": t, "beam_size": 3})
        assert single.status_code == 200
        one_by_one.append(single.json()["translations"][0])
    assert [b["text"] for b in batch] == [s["text"] for s in one_by_one]
    assert len({b["text"] for b in batch}) == 3  # different inputs, different outputs


async def test_greedy_and_options_are_accepted(tr_client: httpx.AsyncClient) -> None:
    body = {"text": "Ein Vogel hält einen Schlüssel.", "beam_size": 1, "max_length": 4,
            "length_penalty": 1.0}
    response = await tr_client.post(URL, json=body)
    assert response.status_code == 200
    assert response.json()["beam_size"] == 1


@pytest.mark.parametrize("text", ["Zwei 😀 Hunde 🐶!", "1234 5678 90", "!?!?...",
                                  "Donaudampfschifffahrtsgesellschaftskapitän" * 6,
                                  "A man is riding a bike."])
async def test_unusual_text_still_translates(tr_client: httpx.AsyncClient, text: str) -> None:
    response = await tr_client.post(URL, json={"text": text, "beam_size": 2})
    assert response.status_code == 200
    assert isinstance(response.json()["translations"][0]["text"], str)


@pytest.mark.parametrize("body, fragment", [
    ({"text": ""}, "empty"),
    ({"text": "  \t "}, "empty"),
    ({"texts": ["Ein Hund.", " "]}, "texts[1] is empty"),
    ({"texts": []}, "texts"),
    ({"text": "Ein Hund.", "texts": ["Ein Hund."]}, "exactly one of"),
    ({}, "exactly one of"),
    ({"text": "Ein Hund.", "beam_size": 0}, "beam_size"),
    ({"text": "Ein Hund.", "beam_size": 11}, "beam_size"),
    ({"text": "Ein Hund.", "max_length": 0}, "max_length"),
    ({"text": "Ein Hund.", "length_penalty": -1}, "length_penalty"),
])
async def test_bad_requests_return_422(tr_client: httpx.AsyncClient, body: dict[str, object],
                                       fragment: str) -> None:
    response = await tr_client.post(URL, json=body)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


async def test_too_many_texts_names_the_setting(tr_client: httpx.AsyncClient) -> None:
    response = await tr_client.post(URL, json={"texts": ["Ein Hund."] * 5})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "MODELZOO_MAX_ITEMS_PER_REQUEST" in message and "4" in message


async def test_too_long_text_names_the_setting(tr_client: httpx.AsyncClient) -> None:
    response = await tr_client.post(URL, json={"texts": ["Ein Hund.", "x" * 301]})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "MODELZOO_TRANSLATION_MAX_CHARS" in message and "300" in message
    at_limit = await tr_client.post(URL, json={"text": "x" * 300, "beam_size": 1})
    assert at_limit.status_code == 200


async def test_non_json_body_is_415(tr_client: httpx.AsyncClient) -> None:
    response = await tr_client.post(URL, content=b"text=Ein Hund",
                                    headers={"content-type": "text/plain"})
    assert response.status_code == 415


async def test_translation_is_listed_in_the_openapi_schema(tr_client: httpx.AsyncClient) -> None:
    schema = (await tr_client.get("/openapi.json")).json()
    post = schema["paths"][URL]["post"]
    assert "422" in post["responses"]
    assert schema["components"]["schemas"]["TranslateRequest"]["examples"]
