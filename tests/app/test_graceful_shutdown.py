"""Graceful shutdown on a real server (uvicorn on 127.0.0.1): requests in flight when the
shutdown begins are answered, new connections are refused, then the lifespan stops the
batchers.

The shutdown is triggered as SIGTERM triggers it in uvicorn (``server.should_exit = True``;
the signal handler does just that), so the test can run the server in a thread.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from models.translation.predictor import TranslationPredictor
from models.word2vec.predictor import Word2VecPredictor
from tests.app.loopback import serve_on_loopback
from tests.conftest import ARTIFACTS


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.01)


def test_in_flight_requests_finish_and_new_connections_are_refused_on_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings(artifacts_dir=ARTIFACTS, models="word2vec,translation",
                              access_log=False))
    release = threading.Event()
    entered: dict[str, threading.Event] = {"translate": threading.Event(),
                                           "neighbors": threading.Event()}
    translate, neighbors = TranslationPredictor.translate, Word2VecPredictor.neighbors

    def slow_translate(self: TranslationPredictor, *args: Any, **kwargs: Any) -> Any:
        entered["translate"].set()  # the batched path: the batcher's executor
        assert release.wait(20), "the test never released the model"
        return translate(self, *args, **kwargs)

    def slow_neighbors(self: Word2VecPredictor, *args: Any, **kwargs: Any) -> Any:
        entered["neighbors"].set()  # a plain sync route: the threadpool
        assert release.wait(20), "the test never released the model"
        return neighbors(self, *args, **kwargs)

    monkeypatch.setattr(TranslationPredictor, "translate", slow_translate)
    monkeypatch.setattr(Word2VecPredictor, "neighbors", slow_neighbors)
    with serve_on_loopback(app) as server, ThreadPoolExecutor(2) as pool:
        server.wait_ready()
        in_flight = [
            pool.submit(httpx.post, f"{server.url}/v1/translate",
                        json={"text": "Ein Mann fährt Fahrrad.", "beam_size": 1}, timeout=30),
            pool.submit(httpx.post, f"{server.url}/v1/word2vec/neighbors",
                        json={"word": "chip", "k": 3}, timeout=30),
        ]
        for name, event in entered.items():
            assert event.wait(10), f"the {name} request never reached its model"

        assert list(app.state.batchers) == ["translation"]
        server.server.should_exit = True  # what uvicorn's SIGTERM handler does
        wait_for(server.refuses_connections, 5, "refusing new connections")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)
        assert not any(f.done() for f in in_flight), "answered before the shutdown began"
        assert server.thread.is_alive()  # draining: waits for the requests in flight

        release.set()
        answers = [f.result(timeout=30) for f in in_flight]
        server.thread.join(30)
        assert not server.thread.is_alive(), "uvicorn did not exit after draining"

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["translations"][0]["text"]
    assert len(answers[1].json()["neighbors"]) == 3
    assert app.state.batchers == {}  # the lifespan stopped it, after the drain
