"""Dynamic batching: concurrent requests for one model share one forward pass.

A :class:`Batcher` owns a bounded queue of *items* (one text to translate or score) and a
worker task. The worker takes up to ``max_batch_size`` items of one *key* (requests whose
parameters differ, e.g. ``beam_size``, never share a batch) and runs the synchronous batch
function on a single-thread executor of its own (one batch per model at a time; the event
loop never runs inference). Results are routed back to each request in its order.

When to run a batch that is not full:

- the worker is idle (nothing was waiting when its last batch ended): at once, so a lone
  request waits for nothing (NVIDIA Triton's dynamic batcher without a queue delay);
- the worker is under load (items queued while its last batch ran, or that batch served
  more than one request): it waits up to
  ``max_wait_ms`` *after that batch ended* for the batch to fill. The clients answered by the
  batch that just ended send their next requests within milliseconds; without this wait a
  closed loop of N clients splits into two cohorts that alternate in half-size batches.

A request's items stay together and in order in the queue; one with more than
``max_batch_size`` items is split over consecutive batches, and its call returns when all of
them are done. Behaviour at the edges:

- queue full (``max_queue`` items would be exceeded): :class:`QueueFullError` at once (503);
- not answered within ``timeout_s`` of the call: :class:`DeadlineExceededError` (504), and
  its items that have not started are dropped;
- the awaiting task is cancelled (client gone): its items that have not started are dropped;
- the batch function raises: each request of that batch is retried alone, so only the
  requests that fail on their own get the error.

Usage::

    batcher = Batcher(fn, name="translation", max_batch_size=32, max_wait_ms=5)
    batcher.start()                      # in the app lifespan (or lazily on first submit)
    results = await batcher.submit(items, key=(beam_size, max_length))
    await batcher.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatchingError(Exception):
    """Base of the batcher's own errors (the service maps them to 503/504)."""


class QueueFullError(BatchingError):
    """The queue cannot take the request's items now; retry after ``retry_after_s``."""

    def __init__(self, name: str, queued: int, wanted: int, max_queue: int,
                 retry_after_s: int = 1) -> None:
        self.name, self.retry_after_s = name, retry_after_s
        super().__init__(f"the {name} queue is full ({queued} of {max_queue} items waiting, "
                         f"this request adds {wanted}; MODELZOO_BATCH_QUEUE_SIZE); retry in "
                         f"{retry_after_s} s")


class DeadlineExceededError(BatchingError):
    """The request was not answered within ``timeout_s``."""

    def __init__(self, name: str, timeout_s: float) -> None:
        self.name, self.timeout_s = name, timeout_s
        super().__init__(f"the {name} request was not answered within {timeout_s:g} s "
                         "(MODELZOO_REQUEST_TIMEOUT_S); the server is busy, retry later")


class BatcherStoppedError(BatchingError):
    """The batcher was stopped (server shutdown) before the request was answered."""


class ClientDisconnectedError(BatchingError):
    """The client went away before its answer was ready; the work was cancelled."""


class BatchObserver(Protocol):
    """What the batcher reports to (``app.metrics.Metrics`` has these methods)."""

    def observe_batch(self, task: str, size: int) -> None: ...

    def set_queue_depth(self, task: str, depth: int) -> None: ...


@dataclass(eq=False)
class _Request(Generic[T, R]):
    """One ``submit`` call: its items, where their results go, and how many are left."""

    items: list[T]
    key: Hashable
    enqueued_at: float
    future: asyncio.Future[list[R]]
    results: list[Any] = field(default_factory=list)
    pending: int = 0  # items not yet answered

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.pending = len(self.items)


@dataclass(eq=False)
class _Entry(Generic[T, R]):
    """One queued item: its request and its position in that request."""

    request: _Request[T, R]
    index: int


class Batcher(Generic[T, R]):
    """Groups concurrent :meth:`submit` calls into calls of ``fn``.

    Args:
        fn: ``fn(items) -> results``, one result per item in order; synchronous, run on a
            dedicated single-thread executor. All items of one call share a key.
        name: the task name, for metrics, logs and error messages.
        max_batch_size: most items per call of ``fn``.
        max_wait_ms: under load, how long after the previous batch ended the worker waits
            for the batch to fill (an idle worker never waits).
        max_queue: most items waiting (not yet started); beyond it :class:`QueueFullError`.
        timeout_s: a ``submit`` not answered within this time raises
            :class:`DeadlineExceededError`.
        observer: gets ``observe_batch(name, items)`` per call of ``fn`` and
            ``set_queue_depth(name, items)`` whenever the queue changes.

    Raises:
        ValueError: a size or time that is not positive.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, name: str,
                 max_batch_size: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256,
                 timeout_s: float = 30.0, observer: BatchObserver | None = None) -> None:
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError(f"max_batch_size and max_queue must be >= 1 (got "
                             f"{max_batch_size}, {max_queue})")
        if max_wait_ms < 0 or timeout_s <= 0:
            raise ValueError(f"max_wait_ms must be >= 0 and timeout_s > 0 (got {max_wait_ms}, "
                             f"{timeout_s})")
        self.fn, self.name, self.observer = fn, name, observer
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.max_wait_s, self.timeout_s = max_wait_ms / 1000.0, timeout_s
        self._queues: dict[Hashable, deque[_Entry[T, R]]] = {}  # key -> FIFO of items
        self._queued = 0
        self._changed: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: list[_Entry[T, R]] = []  # the batch being run
        self._free_at = 0.0  # when the last batch ended (monotonic seconds)
        self._loaded = False  # items were waiting when it ended
        self._stopped = False

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker task on the running event loop (no-op when it runs)."""
        if self._worker is not None and not self._worker.done():
            return
        self._stopped = False
        self._changed = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"batch-{self.name}")
        self._worker = asyncio.get_running_loop().create_task(
            self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop the worker; waiting requests fail with :class:`BatcherStoppedError`.

        A batch already running in the executor finishes in its thread; its requests fail
        the same way and its results are dropped.
        """
        self._stopped = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        entries = [*self._running, *(e for queue in self._queues.values() for e in queue)]
        for entry in entries:
            if not entry.request.future.done():
                entry.request.future.set_exception(
                    BatcherStoppedError(f"the {self.name} batcher stopped"))
        self._running = []
        self._queues.clear()
        self._set_queued(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def queued(self) -> int:
        """Items waiting (not yet started)."""
        return self._queued

    # --- the caller's side ----------------------------------------------------------------

    async def submit(self, items: Sequence[T], key: Hashable = None) -> list[R]:
        """Queue ``items`` (all with ``key``) and wait for their results, in order.

        Raises:
            QueueFullError: the queue cannot take ``len(items)`` more items now.
            DeadlineExceededError: not answered within ``timeout_s``.
            BatcherStoppedError: the batcher stopped first.
            Exception: whatever ``fn`` raised for these items alone.
        """
        if not items:
            return []
        if self._stopped:
            raise BatcherStoppedError(f"the {self.name} batcher is stopped")
        self.start()
        if self._queued + len(items) > self.max_queue:
            raise QueueFullError(self.name, self._queued, len(items), self.max_queue)
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(list(items), key, time.monotonic(),
                                           loop.create_future())
        self._queues.setdefault(key, deque()).extend(
            _Entry(request, i) for i in range(len(items)))
        self._set_queued(self._queued + len(items))
        self._wake()
        try:
            done, _ = await asyncio.wait([request.future], timeout=self.timeout_s)
            if not done:
                raise DeadlineExceededError(self.name, self.timeout_s)
            return request.future.result()
        finally:  # timed out, cancelled (client gone) or failed: drop what has not started
            if not request.future.done():
                request.future.cancel()
            self._drop(request)

    # --- the worker's side ----------------------------------------------------------------

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _set_queued(self, n: int) -> None:
        self._queued = n
        if self.observer is not None:
            self.observer.set_queue_depth(self.name, n)

    def _drop(self, request: _Request[T, R]) -> None:
        """Remove ``request``'s items that are still queued."""
        queue = self._queues.get(request.key)
        if not queue:
            return
        kept = deque(e for e in queue if e.request is not request)
        removed = len(queue) - len(kept)
        if removed:
            if kept:
                self._queues[request.key] = kept
            else:
                del self._queues[request.key]
            self._set_queued(self._queued - removed)
            self._wake()

    def _oldest_key(self) -> Hashable:
        return min(self._queues, key=lambda k: self._queues[k][0].request.enqueued_at)

    async def _next_batch(self) -> list[_Entry[T, R]]:
        """Wait for items; under load, also for the oldest key's batch to fill or
        ``max_wait_ms`` after the previous batch ended to run out."""
        assert self._changed is not None
        while True:
            self._changed.clear()
            if self._queues:
                key = self._oldest_key()
                queue = self._queues[key]
                wait = self._free_at + self.max_wait_s - time.monotonic()
                if len(queue) >= self.max_batch_size or not self._loaded or wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):  # the wait ran out: take the batch
                    await asyncio.wait_for(self._changed.wait(), wait)
            else:
                await self._changed.wait()
        n = min(len(queue), self.max_batch_size)
        batch = [queue.popleft() for _ in range(n)]
        if not queue:
            del self._queues[key]
        self._set_queued(self._queued - n)
        return batch

    async def _run(self) -> None:
        while True:
            self._running = await self._next_batch()
            try:
                await self._run_batch(self._running)
            except Exception:  # the worker must outlive any batch
                log.exception("%s batcher: unexpected error", self.name)
            # under load (items queued while this batch ran, or it served several
            # requests, whose clients will be back): the next batch may wait to fill
            served = len({id(e.request) for e in self._running})
            self._free_at, self._loaded = time.monotonic(), self._queued > 0 or served > 1
            self._running = []

    async def _call(self, items: list[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        results = list(await loop.run_in_executor(self._executor, self.fn, items))
        if len(results) != len(items):
            raise RuntimeError(f"{self.name} batch function returned {len(results)} results "
                               f"for {len(items)} items")
        return results

    async def _run_batch(self, batch: list[_Entry[T, R]]) -> None:
        """Run ``fn`` on the batch's live items; on error, retry each request alone."""
        live = [e for e in batch if not e.request.future.done()]
        if not live:
            return
        if self.observer is not None:
            self.observer.observe_batch(self.name, len(live))
        try:
            results = await self._call([e.request.items[e.index] for e in live])
        except Exception as exc:
            requests = list(dict.fromkeys(e.request for e in live))
            if len(requests) == 1:
                self._fail(requests[0], exc)
                return
            log.warning("%s batch of %d requests failed (%s: %s); retrying each alone",
                        self.name, len(requests), type(exc).__name__, exc)
            for request in requests:
                own = [e for e in live if e.request is request]
                if request.future.done():
                    continue
                try:
                    own_results = await self._call([request.items[e.index] for e in own])
                except Exception as own_exc:
                    self._fail(request, own_exc)
                else:
                    self._deliver(own, own_results)
            return
        self._deliver(live, results)

    def _deliver(self, entries: list[_Entry[T, R]], results: list[R]) -> None:
        for entry, result in zip(entries, results, strict=True):
            request = entry.request
            if request.future.done():
                continue
            request.results[entry.index] = result
            request.pending -= 1
            if request.pending == 0:
                request.future.set_result(request.results)

    def _fail(self, request: _Request[T, R], exc: Exception) -> None:
        if not request.future.done():
            request.future.set_exception(exc)
        self._drop(request)  # the rest of a split request need not run


async def cancel_on_disconnect(work: Awaitable[R],
                               receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> R:
    """Await ``work`` unless the client disconnects first: then cancel it (a batcher drops
    the request's queued items) and raise :class:`ClientDisconnectedError`.

    ``receive`` is the request's ASGI ``receive``; once the body has been read, its next
    message is ``http.disconnect``, sent when the client goes (or the response is done).
    """
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait([task, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the caller itself is cancelled
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # let submit() clean up
    if task.cancelled():
        raise ClientDisconnectedError("the client disconnected before the answer was ready")
    return task.result()
