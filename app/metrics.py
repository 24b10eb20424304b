"""Prometheus metrics and JSON access logs.

Each app owns a :class:`Metrics` (its own ``CollectorRegistry``, so several apps in one
process do not clash), served as text at ``GET /metrics``. :class:`MetricsMiddleware`
times every HTTP request (streams included, until their last byte), counts it by route
*template* (``/v1/lm/generate``, never the raw path, so label values stay bounded) and
writes one JSON line per request to the ``modelzoo.access`` logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import fastapi.routing
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.registry import ModelSlot

access_log = logging.getLogger("modelzoo.access")

UNMATCHED = "<unmatched>"
# seconds; generation and streams can take tens of seconds
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's metrics, registered in a registry of their own.

    ``batch_size`` and ``queue_depth`` are filled by the dynamic batcher
    (:mod:`app.batching`) through :meth:`observe_batch` and :meth:`set_queue_depth`, in
    items (texts): a request with several texts counts once per text.
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "modelzoo_requests_total", "HTTP requests answered, by route template and status.",
            ["route", "method", "status"], registry=r)
        self.duration = Histogram(
            "modelzoo_request_duration_seconds",
            "Time from request to the last response byte, by route template.",
            ["route", "method"], buckets=DURATION_BUCKETS, registry=r)
        self.in_progress = Gauge(
            "modelzoo_requests_in_progress", "HTTP requests being answered now.",
            ["route"], registry=r)
        self.model_load_seconds = Gauge(
            "modelzoo_model_load_seconds", "Seconds the model took to load at startup.",
            ["task"], registry=r)
        self.model = Info(
            "modelzoo_model", "Each configured model: version, quantized, device, status.",
            ["task"], registry=r)
        self.batch_size = Histogram(
            "modelzoo_batch_size", "Items (texts) per batch run by the dynamic batcher.",
            ["task"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "modelzoo_queue_depth", "Items (texts) waiting in the dynamic batcher's queue.",
            ["task"], registry=r)

    def observe_model(self, slot: ModelSlot) -> None:
        """Record a model's state; the registry calls this on every status change."""
        p = slot.predictor
        card = p.card if p is not None else {}
        commit = str(card.get("git_commit") or "")[:7]
        version = str(card.get("version") or "-".join(filter(None, [card.get("name"), commit])))
        self.model.labels(task=slot.task).info({
            "version": version,
            "quantized": str(p.quantized).lower() if p is not None else "",
            "device": str(p.device) if p is not None else "",
            "status": slot.status,
        })
        if slot.load_seconds is not None:
            self.model_load_seconds.labels(task=slot.task).set(slot.load_seconds)

    def observe_batch(self, task: str, size: int) -> None:
        """Record one batch of ``size`` items run for ``task`` (for the batcher)."""
        self.batch_size.labels(task=task).observe(size)

    def set_queue_depth(self, task: str, depth: int) -> None:
        """Record how many items wait in ``task``'s queue (for the batcher)."""
        self.queue_depth.labels(task=task).set(depth)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics as bytes and their content type (OpenMetrics if ``accept`` asks)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr``, which servers and test runners swap."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_access_log() -> None:
    """Make ``modelzoo.access`` write bare JSON lines to stderr at INFO (unless a logging
    config already gave it handlers), and quiet uvicorn's own access log, which it replaces.
    """
    if not access_log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False
    access_log.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _routes(router: Router) -> Iterable[Any]:
    """The router's routes, with included routers flattened into their endpoints.

    FastAPI >= 0.137 keeps ``include_router`` routers nested (no ``.path``);
    ``iter_route_contexts`` yields one matchable context per endpoint, with its full path.
    """
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    return flatten(router.routes) if flatten is not None else router.routes


def route_template(router: Router, scope: Scope) -> str:
    """The path template of the route that will answer ``scope``, or ``<unmatched>``."""
    partial = None
    for route in _routes(router):
        match, _ = route.matches(scope)
        if match is Match.NONE:
            continue
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if match is Match.FULL:
            return str(path or UNMATCHED)
        if partial is None:  # the path matches, the method does not: 405
            partial = path
    return str(partial or UNMATCHED)


class MetricsMiddleware:
    """Request metrics and access logs (pure ASGI, so streamed bodies are timed to the end).

    Args:
        metrics: where to record.
        router: the app's router, to find the route template before the request runs.
        access_log: write one JSON line per request to the ``modelzoo.access`` logger.
        exclude: route templates not counted in the metrics (still logged).

    Place it inside ``RequestIdMiddleware`` so the logged id is the ``X-Request-ID`` sent.
    A request whose handler raises before answering counts as status 500.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, router: Router,
                 access_log: bool = True, exclude: tuple[str, ...] = ("/metrics",)) -> None:
        self.app, self.metrics, self.router = app, metrics, router
        self.log, self.exclude = access_log, exclude
        self._static: dict[tuple[str, str], str] = {}  # (method, path) -> its own template
        if access_log:
            configure_access_log()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, method = self.template(scope), scope["method"]
        counted = route not in self.exclude
        status, sent = 500, 0

        async def observing_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        if counted:
            self.metrics.in_progress.labels(route=route).inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, observing_send)
        finally:
            elapsed = time.perf_counter() - started
            if counted:
                self.metrics.in_progress.labels(route=route).dec()
                self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
                self.metrics.duration.labels(route=route, method=method).observe(elapsed)
            if self.log:
                self._log(scope, route, status, elapsed, sent)

    def template(self, scope: Scope) -> str:
        """:func:`route_template`, remembered for routes without path parameters (a
        route-table scan per request costs ~0.1 ms). Only paths that are their own template
        are kept, so unknown or parametrised paths cannot grow the table."""
        key = (scope["method"], scope.get("path", ""))
        route = self._static.get(key)
        if route is None:
            route = route_template(self.router, scope)
            if route == key[1]:
                self._static[key] = route
        return route

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float, sent: int) -> None:
        client = scope.get("client")
        line: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": (scope.get("state") or {}).get("request_id"),
            "method": scope["method"],
            "route": route,
            "path": scope.get("path", ""),
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "bytes_sent": sent,
        }
        access_log.info(json.dumps(line, ensure_ascii=False))
