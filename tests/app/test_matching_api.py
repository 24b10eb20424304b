"""POST /v1/match, POST /v1/match/rank and GET /v1/match/models on tiny untrained DSSMs
(and an ensemble of two of them)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from app.config import Settings
from models.common.artifacts import save_artifact, write_json
from models.matching.ensemble import write_ensemble
from models.matching.features import SPECIALS
from models.matching.model import build_model
from tests.conftest import running_app

pytestmark = pytest.mark.anyio

MATCH, RANK, MODELS = "/v1/match", "/v1/match/rank", "/v1/match/models"
WORDS = ["how", "do", "i", "learn", "to", "play", "the", "guitar", "what", "is", "fastest",
         "way", "capital", "of", "australia", "?"]
QUESTION = "How can I learn to play the guitar quickly?"
PAIRS = [(QUESTION, "What is the fastest way to learn guitar?"),
         (QUESTION, "What is the capital of Australia?"),
         ("Why is the sky blue?", "What makes the sky look blue during the day?")]


def write_tiny_matcher(root: Path, name: str, dataset: str, metrics: dict[str, float],
                       seed: int) -> Path:
    """``root/matching/<name>/``: an untrained DSSM saved as the trainer does (float16
    weights, ``config.json``, ``card.json``, ``vocab.json``)."""
    torch.manual_seed(seed)
    vocab = [*SPECIALS, *WORDS]
    model_config = {"vocab_size": len(vocab), "n_buckets": 1024, "hidden": 16, "out_dim": 8}
    model = build_model("dssm", **model_config)
    directory = root / "matching" / name
    config = {"arch": "dssm", "model": model_config,
              "featurizer": {"n_buckets": 1024, "max_len": 64}, "dataset": dataset,
              "threshold": 0.5}
    params = sum(p.numel() for p in model.parameters())
    save_artifact(directory, {k: v.half() for k, v in model.state_dict().items()}, config,
                  {"metrics": metrics, "params": params})
    write_json(directory / "vocab.json", vocab)
    return directory


@pytest.fixture(scope="session")
def tiny_matching_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matching_artifacts")
    write_tiny_matcher(root, "dssm-quora", "quora", {"accuracy": 0.5}, seed=0)
    write_tiny_matcher(root, "dssm-wikiqa", "wikiqa", {"map": 0.5}, seed=1)
    return root


def _settings(root: Path, **overrides: Any) -> Settings:
    return Settings(artifacts_dir=root, models="matching", max_items_per_request=4,
                    matching_max_chars=200, matching_max_candidates=5, **overrides)


@pytest.fixture
async def m_client(tiny_matching_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(_settings(tiny_matching_root)) as client:
        yield client


async def _score(client: httpx.AsyncClient, a: str, b: str, model: str | None = None) -> float:
    body: dict[str, Any] = {"text_a": a, "text_b": b}
    if model is not None:
        body["model"] = model
    response = await client.post(MATCH, json=body)
    assert response.status_code == 200, response.text
    score: float = response.json()["score"]
    return score


async def test_one_pair_gets_a_probability_and_label(m_client: httpx.AsyncClient) -> None:
    a, b = PAIRS[0]
    response = await m_client.post(MATCH, json={"text_a": a, "text_b": b})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "dssm-quora"  # the default for matching: a Quora model
    assert body["threshold"] == 0.5
    assert 0.0 <= body["score"] <= 1.0
    assert body["label"] == (body["score"] >= body["threshold"])
    assert body["results"] == [{"score": body["score"], "label": body["label"]}]


async def test_pairs_come_back_in_request_order(m_client: httpx.AsyncClient) -> None:
    pairs = [{"text_a": a, "text_b": b} for a, b in PAIRS]
    response = await m_client.post(MATCH, json={"pairs": pairs})
    assert response.status_code == 200
    body = response.json()
    assert "score" not in body and "label" not in body  # only the one-pair form has them
    results = body["results"]
    assert len(results) == len(PAIRS)
    singles = [await _score(m_client, a, b) for a, b in PAIRS]
    for result, single in zip(results, singles, strict=True):
        assert result["score"] == pytest.approx(single, abs=1e-5)
        assert result["label"] == (result["score"] >= body["threshold"])
    assert len({round(s, 4) for s in singles}) > 1  # the order test is not vacuous


async def test_concurrent_requests_get_their_own_scores(m_client: httpx.AsyncClient) -> None:
    singles = [await _score(m_client, a, b) for a, b in PAIRS]
    responses = await asyncio.gather(*[
        m_client.post(MATCH, json={"text_a": a, "text_b": b}) for a, b in PAIRS * 3])
    assert all(r.status_code == 200 for r in responses)
    got = [r.json()["score"] for r in responses]
    assert got == pytest.approx(singles * 3, abs=1e-5)


async def test_batching_off_gives_the_same_scores(tiny_matching_root: Path,
                                                  m_client: httpx.AsyncClient) -> None:
    pairs = [{"text_a": a, "text_b": b} for a, b in PAIRS]
    batched = await m_client.post(MATCH, json={"pairs": pairs})
    assert batched.status_code == 200
    async with running_app(_settings(tiny_matching_root, batching=False)) as client:
        alone = await client.post(MATCH, json={"pairs": pairs})
    assert alone.status_code == 200
    assert [r["score"] for r in alone.json()["results"]] == pytest.approx(
        [r["score"] for r in batched.json()["results"]], abs=1e-5)


async def test_unknown_words_still_get_a_score(m_client: httpx.AsyncClient) -> None:
    response = await m_client.post(MATCH, json={"text_a": "zzqx vvbnm", "text_b": "qwrtp"})
    assert response.status_code == 200
    assert math.isfinite(response.json()["score"])
    assert 0.0 <= response.json()["score"] <= 1.0


@pytest.mark.parametrize("body, fragment", [
    ({"text_a": "a question?", "text_b": "another?", "pairs": [
        {"text_a": "x", "text_b": "y"}]}, "not both"),
    ({}, "send 'text_a' and 'text_b'"),
    ({"model": "dssm-quora"}, "send 'text_a' and 'text_b'"),
    ({"text_a": "only one side?"}, "'text_b' is missing"),
    ({"text_a": "", "text_b": "fine"}, "text_a is empty"),
    ({"text_a": "fine", "text_b": " \t\n"}, "text_b is empty"),
    ({"pairs": [{"text_a": "x", "text_b": "y"}, {"text_a": "x", "text_b": "  "}]},
     "pairs[1].text_b is empty"),
    ({"pairs": []}, "pairs"),
    ({"pairs": [{"text_a": "x"}]}, "text_b"),
])
async def test_bad_match_requests_return_422(m_client: httpx.AsyncClient,
                                             body: dict[str, Any], fragment: str) -> None:
    response = await m_client.post(MATCH, json=body)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


async def test_too_many_pairs_names_the_setting(m_client: httpx.AsyncClient) -> None:
    pairs = [{"text_a": "how?", "text_b": "why?"}] * 5
    response = await m_client.post(MATCH, json={"pairs": pairs})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "MODELZOO_MAX_ITEMS_PER_REQUEST" in message and "4" in message
    at_limit = await m_client.post(MATCH, json={"pairs": pairs[:4]})
    assert at_limit.status_code == 200


async def test_too_long_text_names_the_field_and_setting(m_client: httpx.AsyncClient) -> None:
    pairs = [{"text_a": "how?", "text_b": "why?"}, {"text_a": "how?", "text_b": "x" * 201}]
    response = await m_client.post(MATCH, json={"pairs": pairs})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "pairs[1].text_b" in message
    assert "MODELZOO_MATCHING_MAX_CHARS" in message and "200" in message
    single = await m_client.post(MATCH, json={"text_a": "y" * 201, "text_b": "why?"})
    assert single.status_code == 422
    assert single.json()["error"]["message"].startswith("text_a has 201 characters")
    at_limit = await m_client.post(MATCH, json={"text_a": "y" * 200, "text_b": "why?"})
    assert at_limit.status_code == 200


async def test_unknown_model_is_404_listing_the_served_ones(m_client: httpx.AsyncClient) -> None:
    for url, body in [(MATCH, {"text_a": "a?", "text_b": "b?", "model": "bert-quora"}),
                      (RANK, {"query": "a?", "candidates": ["b"], "model": "bert-quora"})]:
        response = await m_client.post(url, json=body)
        assert response.status_code == 404
        error = response.json()["error"]
        assert "bert-quora" in error["message"]
        assert "dssm-quora" in error["message"] and "dssm-wikiqa" in error["message"]
        assert error["details"]["models"] == ["dssm-quora", "dssm-wikiqa"]


async def test_rank_sorts_by_the_match_score(m_client: httpx.AsyncClient) -> None:
    query = "How can I learn to play the guitar quickly?"
    candidates = ["What is the fastest way to learn guitar?", "What is the capital of Australia?",
                  "Why is the sky blue?", "guitar lessons for beginners"]
    response = await m_client.post(RANK, json={"query": query, "candidates": candidates,
                                               "model": "dssm-wikiqa"})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "dssm-wikiqa"
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(candidates)))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert r["text"] == candidates[r["index"]]
        expected = await _score(m_client, query, candidates[r["index"]], model="dssm-wikiqa")
        assert r["score"] == pytest.approx(expected, abs=1e-5)


async def test_rank_defaults_to_the_wikiqa_model_and_cuts_to_top_k(
        m_client: httpx.AsyncClient) -> None:
    body = {"query": "what is the capital of australia?",
            "candidates": ["Canberra is the capital.", "Guitars have six strings.",
                           "Sydney is the largest city.", "The sky is blue."]}
    full = await m_client.post(RANK, json=body)
    assert full.status_code == 200
    assert full.json()["model"] == "dssm-wikiqa"
    cut = await m_client.post(RANK, json={**body, "top_k": 2})
    assert cut.status_code == 200
    assert cut.json()["results"] == full.json()["results"][:2]
    more = await m_client.post(RANK, json={**body, "top_k": 10})
    assert more.status_code == 200
    assert more.json()["results"] == full.json()["results"]


@pytest.mark.parametrize("body, fragment", [
    ({"query": " ", "candidates": ["x"]}, "query is empty"),
    ({"query": "why?", "candidates": ["x", ""]}, "candidates[1] is empty"),
    ({"query": "why?", "candidates": []}, "candidates"),
    ({"query": "why?", "candidates": ["x"], "top_k": 0}, "top_k"),
    ({"candidates": ["x"]}, "query"),
])
async def test_bad_rank_requests_return_422(m_client: httpx.AsyncClient,
                                            body: dict[str, Any], fragment: str) -> None:
    response = await m_client.post(RANK, json=body)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


async def test_rank_limits_name_the_settings(m_client: httpx.AsyncClient) -> None:
    many = await m_client.post(RANK, json={"query": "why?", "candidates": ["x"] * 6})
    assert many.status_code == 422
    message = many.json()["error"]["message"]
    assert "MODELZOO_MATCHING_MAX_CANDIDATES" in message and "5" in message
    long = await m_client.post(RANK, json={"query": "why?", "candidates": ["x", "y", "z" * 201]})
    assert long.status_code == 422
    message = long.json()["error"]["message"]
    assert "candidates[2]" in message and "MODELZOO_MATCHING_MAX_CHARS" in message
    long_query = await m_client.post(RANK, json={"query": "q" * 201, "candidates": ["x"]})
    assert long_query.status_code == 422
    assert long_query.json()["error"]["message"].startswith("query has 201 characters")
    at_limit = await m_client.post(RANK, json={"query": "why?", "candidates": ["x"] * 5})
    assert at_limit.status_code == 200


async def test_models_lists_both_with_their_defaults(m_client: httpx.AsyncClient) -> None:
    response = await m_client.get(MODELS)
    assert response.status_code == 200
    body = response.json()
    assert body["default_match"] == "dssm-quora"
    assert body["default_rank"] == "dssm-wikiqa"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"dssm-quora", "dssm-wikiqa"}
    assert by_name["dssm-quora"]["default_for"] == ["match"]
    assert by_name["dssm-wikiqa"]["default_for"] == ["rank"]
    assert by_name["dssm-quora"]["arch"] == "dssm"
    assert by_name["dssm-quora"]["dataset"] == "quora"
    assert by_name["dssm-quora"]["metrics"] == {"accuracy": 0.5}
    assert by_name["dssm-wikiqa"]["metrics"] == {"map": 0.5}
    assert by_name["dssm-quora"]["threshold"] == 0.5
    assert isinstance(by_name["dssm-quora"]["params"], int) and by_name["dssm-quora"]["params"]


@pytest.mark.parametrize("url", [MATCH, RANK])
async def test_non_json_body_is_415(m_client: httpx.AsyncClient, url: str) -> None:
    response = await m_client.post(url, content=b"text_a=a&text_b=b",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


async def test_matching_is_listed_in_the_openapi_schema(m_client: httpx.AsyncClient) -> None:
    response = await m_client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    for path, method in [(MATCH, "post"), (RANK, "post"), (MODELS, "get")]:
        operation = schema["paths"][path][method]
        assert operation["summary"] and operation["description"]
    assert "404" in schema["paths"][MATCH]["post"]["responses"]
    components = schema["components"]["schemas"]
    assert components["MatchRequest"]["examples"]
    assert components["RankRequest"]["examples"]



@pytest.fixture(scope="session")
def tiny_ensemble_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny Quora DSSMs, one WikiQA DSSM and ``ensemble-quora`` over the Quora pair,
    whose card states the best Quora accuracy (no index card: the predictor picks)."""
    root = tmp_path_factory.mktemp("matching_ensemble")
    write_tiny_matcher(root, "dssm-quora", "quora", {"accuracy": 0.5}, seed=0)
    write_tiny_matcher(root, "other-quora", "quora", {"accuracy": 0.6}, seed=2)
    write_tiny_matcher(root, "dssm-wikiqa", "wikiqa", {"map": 0.5}, seed=1)
    write_ensemble(root / "matching" / "ensemble-quora",
                   {"arch": "ensemble", "members": ["dssm-quora", "other-quora"],
                    "dataset": "quora", "threshold": 0.45},
                   {"arch": "ensemble", "metrics": {"accuracy": 0.7}, "params": 2,
                    "members": ["dssm-quora", "other-quora"]})
    return root


async def test_an_ensemble_is_listed_with_its_members_and_is_the_default(
        tiny_ensemble_root: Path) -> None:
    async with running_app(_settings(tiny_ensemble_root)) as client:
        listing = await client.get(MODELS)
        a, b = PAIRS[0]
        default = await client.post(MATCH, json={"text_a": a, "text_b": b})
        members = [await _score(client, a, b, model=m) for m in ("dssm-quora", "other-quora")]
    assert listing.status_code == 200
    body = listing.json()
    assert body["default_match"] == "ensemble-quora" and body["default_rank"] == "dssm-wikiqa"
    by_name = {m["name"]: m for m in body["models"]}
    ensemble = by_name["ensemble-quora"]
    assert ensemble["arch"] == "ensemble" and ensemble["dataset"] == "quora"
    assert ensemble["members"] == ["dssm-quora", "other-quora"]
    assert ensemble["default_for"] == ["match"] and ensemble["threshold"] == 0.45
    assert by_name["dssm-quora"]["members"] is None
    assert default.status_code == 200
    assert default.json()["model"] == "ensemble-quora"
    assert default.json()["threshold"] == 0.45
    assert default.json()["score"] == pytest.approx(sum(members) / 2, abs=1e-5)
