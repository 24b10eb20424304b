"""Load and faults on a real server (uvicorn on 127.0.0.1): one model raises, one hangs, and
~90 concurrent requests still each get an answer, the healthy routes a 200.

The word2vec model is left healthy; the translation model raises mid-request (500 in the
error shape, no trace, no paths); the LM scorer hangs (504 after MODELZOO_REQUEST_TIMEOUT_S,
well before the model would answer). Bounded: one burst of requests, 20 s client timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from models.lm.predictor import LMPredictor
from models.translation.predictor import TranslationPredictor
from tests.app.loopback import serve_on_loopback
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.anyio

TIMEOUT_S = 2.0  # MODELZOO_REQUEST_TIMEOUT_S for the batched routes: room for the failing
# translation batch to be retried request by request on a loaded 2-core machine (at 0.5 s,
# 2 of its 20 requests once ran out of time on CI and answered 504 instead of 500)
HANG_S = 30.0  # the hung model answers after this, or when the test releases it
SECRET = "/srv/secret/weights/model.bin"

NEIGHBORS = ("POST", "/v1/word2vec/neighbors", {"word": "chip", "k": 3})
HEALTH = ("GET", "/healthz", None)
SCORE = ("POST", "/v1/lm/score", {"text": "the company said it expects higher earnings"})
TRANSLATE = ("POST", "/v1/translate", {"text": "Ein Mann fährt Fahrrad."})
BURST = [NEIGHBORS] * 30 + [HEALTH] * 20 + [SCORE] * 20 + [TRANSLATE] * 20
EXPECTED = {NEIGHBORS[1]: 200, HEALTH[1]: 200, SCORE[1]: 504, TRANSLATE[1]: 500}


async def send_burst(url: str) -> list[tuple[str, httpx.Response, float] | BaseException]:
    """Send every request of :data:`BURST` at once (one connection each); return each
    answer with its latency, or the exception that stood in for it."""

    async def one(client: httpx.AsyncClient, index: int, method: str, path: str,
                  body: Any) -> tuple[str, httpx.Response, float]:
        started = time.monotonic()
        response = await client.request(method, path, json=body,
                                        headers={"X-Request-ID": f"burst-{index}"})
        return path, response, time.monotonic() - started

    limits = httpx.Limits(max_connections=len(BURST), max_keepalive_connections=len(BURST))
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:
        return await asyncio.gather(*(one(client, i, *request) for i, request in
                                      enumerate(BURST)), return_exceptions=True)


async def test_a_failing_and_a_hung_model_answer_cleanly_while_the_others_serve(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec,lm,translation",
                        request_timeout_s=TIMEOUT_S, max_concurrent_requests=len(BURST),
                        access_log=False)
    app = create_app(settings)
    release = threading.Event()
    hung_calls = 0

    def explode(self: TranslationPredictor, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{SECRET}: CUDA error: device-side assert triggered")

    original_score_many = LMPredictor.score_many

    def hang(self: LMPredictor, texts: list[str]) -> Any:
        nonlocal hung_calls
        hung_calls += 1
        release.wait(HANG_S)
        return original_score_many(self, texts)

    monkeypatch.setattr(TranslationPredictor, "translate", explode)
    monkeypatch.setattr(LMPredictor, "score_many", hang)
    with serve_on_loopback(app) as server:
        await asyncio.to_thread(server.wait_ready)
        try:
            with caplog.at_level(logging.ERROR):
                results = await send_burst(server.url)
        finally:
            release.set()  # the hung batch returns; its requests were answered already
        # the service is still whole: the healthy model, health, and the LM once it recovers
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            after = [await client.request(m, p, json=b) for m, p, b in (NEIGHBORS, SCORE)]
            ready = await client.get("/readyz")

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} requests got no answer: {failures[:3]!r}"
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(answers) == len(BURST)  # none lost
    # each answer, errors included, carries its request's id (to find it in the server log)
    assert [r.headers.get("x-request-id") for _, r, _ in answers] == [
        f"burst-{i}" for i in range(len(BURST))]
    by_path: dict[str, list[tuple[httpx.Response, float]]] = defaultdict(list)
    for path, response, latency in answers:
        by_path[path].append((response, latency))
    statuses = {path: Counter(r.status_code for r, _ in got) for path, got in by_path.items()}
    assert statuses == {path: Counter({status: sum(1 for r in BURST if r[1] == path)})
                        for path, status in EXPECTED.items()}, statuses

    for response, _ in by_path[NEIGHBORS[1]]:
        assert len(response.json()["neighbors"]) == 3
    for response, latency in by_path[SCORE[1]]:  # the deadline answered, not the model
        error = response.json()["error"]
        assert error["code"] == "timeout" and error["details"]["timeout_s"] == TIMEOUT_S
        assert TIMEOUT_S * 0.9 <= latency < HANG_S / 2
    for response, _ in by_path[TRANSLATE[1]]:
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": {
            "code": "internal_error", "message": "internal server error; see the server log",
            "details": None}}
        for leak in ("Traceback", "/srv", "secret", "CUDA", "RuntimeError", 'File "'):
            assert leak not in response.text
    assert hung_calls >= 1
    logged = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert logged, "the translation error was not logged with its traceback"
    assert "request id burst-" in logged[0].getMessage()

    assert [r.status_code for r in after] == [200, 200]
    assert ready.status_code == 200
