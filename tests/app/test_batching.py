"""Dynamic batching: the generic Batcher on fake batch functions, then the batched routes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app.batching import (
    Batcher,
    BatcherStoppedError,
    ClientDisconnectedError,
    DeadlineExceededError,
    QueueFullError,
    cancel_on_disconnect,
)
from app.config import Settings
from models.translation.predictor import TranslationPredictor
from tests.app.test_metrics import sample
from tests.conftest import running_app
from tests.models.translation.test_translation import write_tiny_artifact

pytestmark = pytest.mark.anyio


class Recorder:
    """A batch function that records every batch it is given: ``x -> x * 10``."""

    def __init__(self, delay_s: float = 0.01,
                 check: Callable[[list[Any]], None] | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.delay_s, self.check = delay_s, check
        self.started = threading.Event()  # set when the first batch starts
        self.gate = threading.Event()  # batches wait for it when ``hold`` is on
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.started.set()
        assert self.gate.wait(10), "the test never released the gate"
        time.sleep(self.delay_s)
        if self.check is not None:
            self.check(items)
        return [x * 10 for x in items]

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    def seen(self) -> list[Any]:
        return [x for b in self.batches for x in b]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def stopped() -> AsyncIterator[list[Batcher[Any, Any]]]:
    """Batchers appended here are stopped after the test."""
    batchers: list[Batcher[Any, Any]] = []
    yield batchers
    for b in batchers:
        await b.stop()


def make(stopped: list[Batcher[Any, Any]], fn: Recorder, **kwargs: Any) -> Batcher[Any, Any]:
    batcher: Batcher[Any, Any] = Batcher(fn, name="test", **kwargs)
    stopped.append(batcher)
    return batcher


# --- the Batcher --------------------------------------------------------------------------

async def test_concurrent_submits_share_calls_and_get_their_own_results(
        stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder()
    batcher = make(stopped, fn, max_batch_size=64, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit([i, 100 + i]) for i in range(20)))
    assert results == [[10 * i, 10 * (100 + i)] for i in range(20)]
    assert len(fn.batches) < 20
    assert sorted(fn.seen()) == sorted([*range(20), *range(100, 120)])
    for batch in fn.batches:  # a request's items stay together and in order
        for i in range(20):
            if i in batch:
                assert batch[batch.index(i) + 1] == 100 + i


async def test_max_batch_size_is_respected(stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder()
    batcher = make(stopped, fn, max_batch_size=4, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit([i, i, i]) for i in range(10)))
    assert results == [[10 * i] * 3 for i in range(10)]
    assert max(fn.sizes) <= 4 and sum(fn.sizes) == 30
    big = await batcher.submit(list(range(10)))  # larger than a batch: split, still in order
    assert big == [10 * i for i in range(10)]
    assert max(fn.sizes) <= 4


async def test_a_lone_request_at_an_idle_worker_runs_at_once(
        stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    batcher = make(stopped, fn, max_batch_size=8, max_wait_ms=10_000)
    for _ in range(3):  # one client, one request at a time: never under load
        start = time.monotonic()
        assert await batcher.submit([1]) == [10]
        assert time.monotonic() - start < 2.0
    assert fn.sizes == [1, 1, 1]


async def test_under_load_a_batch_waits_for_the_clients_just_answered(
        stopped: list[Batcher[Any, Any]]) -> None:
    """8 closed-loop clients, each back 2-16 ms after its answer (an HTTP round trip):
    every batch after the first waits for them, so all batches are full. Without that wait
    (a free worker runs whatever is queued) the first client back would run alone."""
    fn = Recorder(delay_s=0.02)
    batcher = make(stopped, fn, max_batch_size=8, max_wait_ms=500)

    async def client(c: int) -> list[int]:
        answers = []
        for r in range(5):
            answers += await batcher.submit([100 * c + r])
            await asyncio.sleep(0.002 * (1 + c))
        return answers

    results = await asyncio.gather(*(client(c) for c in range(8)))
    assert results == [[10 * (100 * c + r) for r in range(5)] for c in range(8)]
    assert fn.sizes == [8] * 5


async def test_a_full_batch_does_not_wait(stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    batcher = make(stopped, fn, max_batch_size=4, max_wait_ms=10_000)
    start = time.monotonic()
    assert await batcher.submit([1, 2, 3, 4]) == [10, 20, 30, 40]
    assert time.monotonic() - start < 2.0


async def test_full_queue_raises_queue_full(stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    fn.hold()
    batcher = make(stopped, fn, max_batch_size=2, max_wait_ms=0, max_queue=4)
    running = asyncio.create_task(batcher.submit([1]))
    await wait_until(fn.started.is_set)  # the first batch runs (blocked): queue empty
    queued = asyncio.create_task(batcher.submit([2, 3, 4]))
    await wait_until(lambda: batcher.queued == 3)
    with pytest.raises(QueueFullError, match="MODELZOO_BATCH_QUEUE_SIZE"):
        await batcher.submit([5, 6])
    assert batcher.queued == 3  # the refused request left nothing behind
    fits = asyncio.create_task(batcher.submit([7]))
    fn.gate.set()
    assert await asyncio.gather(running, queued, fits) == [[10], [20, 30, 40], [70]]
    assert 5 not in fn.seen() and 6 not in fn.seen()


async def test_slow_function_and_small_timeout_raise_deadline_exceeded(
        stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0.5)
    batcher = make(stopped, fn, max_batch_size=1, max_wait_ms=0, timeout_s=0.1)
    start = time.monotonic()
    slow = asyncio.create_task(batcher.submit([1]))
    await wait_until(fn.started.is_set)
    behind = asyncio.create_task(batcher.submit([2]))  # queued behind the slow batch
    for task in (slow, behind):
        with pytest.raises(DeadlineExceededError, match="MODELZOO_REQUEST_TIMEOUT_S"):
            await task
    assert time.monotonic() - start < 0.45  # not held until the slow batch ended
    await asyncio.sleep(0.6)
    assert fn.seen() == [1]  # the request that timed out in the queue never ran
    assert batcher.queued == 0


async def test_cancelled_submit_removes_its_items(stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    fn.hold()
    batcher = make(stopped, fn, max_batch_size=8, max_wait_ms=0)
    running = asyncio.create_task(batcher.submit([1]))
    await wait_until(fn.started.is_set)
    gone = asyncio.create_task(batcher.submit([2, 3]))
    stays = asyncio.create_task(batcher.submit([4]))
    await wait_until(lambda: batcher.queued == 3)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert batcher.queued == 1
    fn.gate.set()
    assert await running == [10] and await stays == [40]
    assert 2 not in fn.seen() and 3 not in fn.seen()


async def test_client_disconnect_cancels_the_queued_request(
        stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    fn.hold()
    batcher = make(stopped, fn, max_batch_size=8, max_wait_ms=0)
    running = asyncio.create_task(batcher.submit([1]))
    await wait_until(fn.started.is_set)
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    waiting = asyncio.create_task(cancel_on_disconnect(batcher.submit([2]), receive))
    await wait_until(lambda: batcher.queued == 1)
    disconnect.set()
    with pytest.raises(ClientDisconnectedError):
        await waiting
    assert batcher.queued == 0
    fn.gate.set()
    assert await running == [10]
    assert fn.seen() == [1]

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    assert await cancel_on_disconnect(batcher.submit([3]), never) == [30]


async def test_one_poisoned_request_fails_alone(stopped: list[Batcher[Any, Any]]) -> None:
    def check(items: list[Any]) -> None:
        if -1 in items:
            raise ValueError("poisoned item")

    fn = Recorder(check=check)
    batcher = make(stopped, fn, max_batch_size=64, max_wait_ms=50)
    requests = [[1, 2], [3], [-1, 4], [5], [6, 7]]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests),
                                   return_exceptions=True)
    assert fn.sizes[0] > 3, "the poisoned request shared its first batch with others"
    assert isinstance(results[2], ValueError)
    assert [r for i, r in enumerate(results) if i != 2] == [[10, 20], [30], [50], [60, 70]]


async def test_keys_are_never_mixed(stopped: list[Batcher[Any, Any]]) -> None:
    class Keyed(Recorder):
        def __call__(self, items: list[Any]) -> list[Any]:
            self.batches.append(list(items))
            time.sleep(0.005)
            return [f"{key}:{value}" for key, value in items]

    fn = Keyed()
    batcher = make(stopped, fn, max_batch_size=16, max_wait_ms=20)
    keys = ["a", "b", "c"]
    calls = [batcher.submit([(keys[i % 3], i), (keys[i % 3], -i)], key=keys[i % 3])
             for i in range(30)]
    results = await asyncio.gather(*calls)
    assert results == [[f"{keys[i % 3]}:{i}", f"{keys[i % 3]}:{-i}"] for i in range(30)]
    assert all(len({key for key, _ in batch}) == 1 for batch in fn.batches)
    assert len(fn.batches) < 30


async def test_metrics_see_batch_sizes_and_queue_depth(stopped: list[Batcher[Any, Any]]) -> None:
    class Observer:
        def __init__(self) -> None:
            self.batches: list[tuple[str, int]] = []
            self.depths: list[int] = []

        def observe_batch(self, task: str, size: int) -> None:
            self.batches.append((task, size))

        def set_queue_depth(self, task: str, depth: int) -> None:
            self.depths.append(depth)

    observer = Observer()
    fn = Recorder()
    batcher = make(stopped, fn, max_batch_size=8, max_wait_ms=20, observer=observer)
    await asyncio.gather(*(batcher.submit([i]) for i in range(10)))
    assert [size for _, size in observer.batches] == fn.sizes
    assert {task for task, _ in observer.batches} == {"test"}
    assert max(observer.depths) >= 2 and observer.depths[-1] == 0


async def test_stop_fails_waiting_requests(stopped: list[Batcher[Any, Any]]) -> None:
    fn = Recorder(delay_s=0)
    fn.hold()
    batcher = make(stopped, fn, max_batch_size=1, max_wait_ms=0)
    running = asyncio.create_task(batcher.submit([1]))
    await wait_until(fn.started.is_set)
    waiting = asyncio.create_task(batcher.submit([2]))
    await wait_until(lambda: batcher.queued == 1)
    await batcher.stop()
    fn.gate.set()
    for task in (running, waiting):  # the running batch's request and the queued one
        with pytest.raises(BatcherStoppedError):
            await task
    with pytest.raises(BatcherStoppedError):
        await batcher.submit([3])


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(Recorder(), name="x", max_batch_size=0)
    with pytest.raises(ValueError, match="timeout_s"):
        Batcher(Recorder(), name="x", timeout_s=0)


# --- the batched routes --------------------------------------------------------------------

URL = "/v1/translate"
SENTENCES = [
    "Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch.",
    "Ein Hund sieht einen Ball im Park.", "Ein Koch kauft einen Fisch.",
    "Eine Frau trägt einen Korb auf der Straße.", "Ein Kind klettert auf einen Baum.",
    "Ein Vogel hält einen Schlüssel.", "Drei Männer stehen vor einem Haus.",
    "Ein Mädchen spielt Gitarre.", "Ein alter Mann sitzt auf einer Bank.",
    "Zwei Kinder laufen am Strand.", "Ein Junge springt ins Wasser.",
    "Eine Gruppe von Menschen wartet auf den Bus.", "Ein Hund rennt über eine Wiese.",
    "Eine Frau schneidet Gemüse in der Küche.",
]


@pytest.fixture(scope="module")
def translation_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batching_translation")
    write_tiny_artifact(root)
    return root


def translation_settings(root: Path, **overrides: Any) -> Settings:
    return Settings(artifacts_dir=root, models="translation", access_log=False, **overrides)


def request_body(i: int) -> dict[str, Any]:
    """Different decoding parameters across requests: they must not share batches."""
    body: dict[str, Any] = {"beam_size": 1 + i % 3}
    if i % 4 == 0:
        body["texts"] = [SENTENCES[i], SENTENCES[(i + 5) % 16]]
    else:
        body["text"] = SENTENCES[i]
    if i % 5 == 0:
        body["max_length"] = 6
    return body


async def test_concurrent_translations_equal_unbatched_ones(translation_root: Path) -> None:
    async with running_app(translation_settings(translation_root, batching=False)) as client:
        sequential = [await client.post(URL, json=request_body(i)) for i in range(16)]
    assert all(r.status_code == 200 for r in sequential)

    settings = translation_settings(translation_root, translation_max_wait_ms=200)
    async with running_app(settings) as client:
        batched = await asyncio.gather(*(client.post(URL, json=request_body(i))
                                         for i in range(16)))
        metrics = (await client.get("/metrics")).text
    for one, many in zip(sequential, batched, strict=True):
        assert many.status_code == 200, many.text
        assert [t["text"] for t in many.json()["translations"]] == \
            [t["text"] for t in one.json()["translations"]]
        assert [t["score"] for t in many.json()["translations"]] == pytest.approx(
            [t["score"] for t in one.json()["translations"]], abs=2e-4)
    calls = sample(metrics, "modelzoo_batch_size_count", task="translation")
    items = sample(metrics, "modelzoo_batch_size_sum", task="translation")
    assert items == 20  # 16 requests, 4 of them with two texts
    assert calls is not None and calls < 16  # grouped, within each of the 6 decoding keys


async def test_slow_translation_times_out_with_504(
        translation_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TranslationPredictor.translate

    def slow(self: TranslationPredictor, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TranslationPredictor, "translate", slow)
    settings = translation_settings(translation_root, request_timeout_s=0.1)
    async with running_app(settings) as client:
        response = await client.post(URL, json={"text": SENTENCES[0]})
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "timeout" and "MODELZOO_REQUEST_TIMEOUT_S" in error["message"]
        await asyncio.sleep(0.5)  # the slow call ends before the app stops


async def test_full_queue_answers_503_with_retry_after(
        translation_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TranslationPredictor.translate
    started, gate = threading.Event(), threading.Event()

    def held(self: TranslationPredictor, *args: Any, **kwargs: Any) -> Any:
        started.set()
        assert gate.wait(10)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TranslationPredictor, "translate", held)
    settings = translation_settings(translation_root, batch_queue_size=2,
                                    translation_max_wait_ms=0)
    async with running_app(settings) as client:
        try:
            first = asyncio.create_task(client.post(URL, json={"text": SENTENCES[0]}))
            await wait_until(started.is_set)
            second = asyncio.create_task(client.post(URL, json={"texts": SENTENCES[1:3]}))

            async def depth() -> float | None:
                text = (await client.get("/metrics")).text
                return sample(text, "modelzoo_queue_depth", task="translation")

            deadline = time.monotonic() + 5
            while await depth() != 2:
                assert time.monotonic() < deadline, "the second request was never queued"
                await asyncio.sleep(0.01)
            refused = await client.post(URL, json={"text": SENTENCES[3]})
        finally:
            gate.set()
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert "MODELZOO_BATCH_QUEUE_SIZE" in refused.json()["error"]["message"]
        assert (await first).status_code == 200
        assert (await second).status_code == 200


async def test_concurrent_lm_scores_equal_unbatched_ones(tiny_lm_root: Path) -> None:
    texts = ["the chip", "a mother and the child of the family", "memory of the doctor",
             "the qwerty computer", "N N the school", "a baby", "intel and software",
             "the processor of a computer in the school"]
    base = {"artifacts_dir": tiny_lm_root, "models": "lm", "access_log": False}
    async with running_app(Settings(**base, batching=False)) as client:
        sequential = [await client.post("/v1/lm/score", json={"text": t}) for t in texts]
    async with running_app(Settings(**base, lm_score_max_wait_ms=200)) as client:
        batched = await asyncio.gather(*(client.post("/v1/lm/score", json={"text": t})
                                         for t in texts))
        metrics = (await client.get("/metrics")).text
    for one, many in zip(sequential, batched, strict=True):
        assert one.status_code == 200 and many.status_code == 200
        a, b = one.json(), many.json()
        assert [t["token"] for t in a["tokens"]] == [t["token"] for t in b["tokens"]]
        assert [t["logprob"] for t in a["tokens"]] == pytest.approx(
            [t["logprob"] for t in b["tokens"]], abs=1e-5)
        assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-4)
        assert a["unknown_words"] == b["unknown_words"]
    calls = sample(metrics, "modelzoo_batch_size_count", task="lm")
    assert calls is not None and calls < len(texts)
