"""The word2vec endpoints on the committed artifact, through the full ASGI app."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio


def _assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message and "Traceback" not in message
    return message


async def test_neighbors_are_sorted_by_cosine_and_honour_k(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": "chip", "k": 7})
    assert response.status_code == 200
    body = response.json()
    cosines = [n["cosine"] for n in body["neighbors"]]
    assert body["word"] == "chip" and len(cosines) == 7
    assert cosines == sorted(cosines, reverse=True)
    assert all(-1.0 <= c <= 1.0 for c in cosines)
    assert "chip" not in [n["word"] for n in body["neighbors"]]


async def test_chip_neighbors_are_about_computing(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": "chip", "k": 5})
    assert response.status_code == 200
    words = {n["word"] for n in response.json()["neighbors"]}
    computing = {"intel", "microprocessor", "microprocessors", "chips", "semiconductor",
                 "computer", "computers", "memory", "processor", "bugs", "workstations",
                 "desktop", "hardware", "software", "ibm", "micro", "mips", "transistors",
                 "compatible", "sun", "pc", "machines", "disk", "drives", "macintosh"}
    assert len(words & computing) >= 3, words


async def test_uppercase_query_is_matched_case_insensitively(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": "  Chip ", "k": 3})
    assert response.status_code == 200
    assert response.json()["word"] == "chip"


async def test_unknown_word_returns_404_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": "xyzzyq", "k": 3})
    message = _assert_error(response, 404, "not_found")
    assert "xyzzyq" in message and "Penn Treebank" in message and "<unk>" in message
    assert response.json()["error"]["details"] == {"unknown": ["xyzzyq"]}


@pytest.mark.parametrize("k", [0, -3, 1001, "ten"])
async def test_bad_k_returns_422(client: httpx.AsyncClient, k: object) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": "chip", "k": k})
    message = _assert_error(response, 422, "validation_error")
    assert "k" in message


@pytest.mark.parametrize("word", ["", "   ", "two words"])
async def test_blank_or_multiword_returns_422(client: httpx.AsyncClient, word: str) -> None:
    response = await client.post("/v1/word2vec/neighbors", json={"word": word})
    message = _assert_error(response, 422, "validation_error")
    assert "word" in message


async def test_batch_neighbors_reports_unknown_words_per_item(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors/batch",
                                 json={"words": ["chip", "xyzzyq", "japan"], "k": 4})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["word"] for r in results] == ["chip", "xyzzyq", "japan"]
    assert results[1]["neighbors"] is None and "xyzzyq" in results[1]["error"]
    assert len(results[0]["neighbors"]) == len(results[2]["neighbors"]) == 4
    single = await client.post("/v1/word2vec/neighbors", json={"word": "japan", "k": 4})
    assert single.json()["neighbors"] == results[2]["neighbors"]


async def test_too_many_items_returns_422_naming_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors/batch",
                                 json={"words": ["chip"] * 257, "k": 1})
    message = _assert_error(response, 422, "invalid_input")
    assert "256" in message


async def test_similarity_reports_unknown_pairs_without_failing(
    client: httpx.AsyncClient,
) -> None:
    pairs = [["chip", "intel"], ["chip", "xyzzyq"], ["intel", "chip"]]
    response = await client.post("/v1/word2vec/similarity", json={"pairs": pairs})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["cosine"] == pytest.approx(results[2]["cosine"])
    assert results[1]["cosine"] is None and results[1]["unknown"] == ["xyzzyq"]
    assert results[0]["unknown"] == []


async def test_similarity_rejects_a_pair_of_three(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/similarity", json={"pairs": [["a", "b", "c"]]})
    _assert_error(response, 422, "validation_error")


async def test_analogy_excludes_inputs(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/analogy",
                                 json={"a": "king", "b": "man", "c": "woman", "k": 5})
    assert response.status_code == 200
    words = [a["word"] for a in response.json()["answers"]]
    assert len(words) == 5 and not {"king", "man", "woman"} & set(words)


async def test_analogy_with_unknown_word_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/analogy",
                                 json={"a": "king", "b": "qqqq", "c": "woman"})
    message = _assert_error(response, 404, "not_found")
    assert "qqqq" in message


async def test_non_json_body_returns_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", content="word=chip",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    message = _assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in message


async def test_malformed_json_returns_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", content=b'{"word": "chip"',
                                 headers={"content-type": "application/json"})
    _assert_error(response, 422, "validation_error")


async def test_oversized_body_returns_413(client: httpx.AsyncClient) -> None:
    big = {"pairs": [["chip", "intel"]] * 80_000}
    response = await client.post("/v1/word2vec/similarity", json=big)
    message = _assert_error(response, 413, "payload_too_large")
    assert "1000000" in message


async def test_bad_requests_do_not_disturb_later_ones(client: httpx.AsyncClient) -> None:
    before = await client.post("/v1/word2vec/neighbors", json={"word": "stock", "k": 5})
    for bad in ({"word": ""}, {"word": "xyzzyq"}, {"k": 3}, {"word": "stock", "k": 0}):
        assert (await client.post("/v1/word2vec/neighbors", json=bad)).status_code in (404, 422)
    after = await client.post("/v1/word2vec/neighbors", json={"word": "stock", "k": 5})
    assert after.json() == before.json()


async def test_streamed_oversized_body_returns_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"pairs": ['
        for _ in range(60_000):
            yield b'["chip", "intel"],'
        yield b'["chip", "intel"]]}'

    response = await client.post("/v1/word2vec/similarity", content=chunks(),
                                 headers={"content-type": "application/json"})
    _assert_error(response, 413, "payload_too_large")
