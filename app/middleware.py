"""ASGI middleware: request body size limit (413), request ids, concurrency cap (503)."""

from __future__ import annotations

import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response


class BodySizeLimitMiddleware:
    """Answer 413 (in the API's error shape) when a body exceeds ``max_bytes``, or the limit
    of the longest matching prefix in ``overrides`` (e.g. larger image uploads).

    A declared ``Content-Length`` over the limit is refused before the body is read; a
    streamed body is counted as it arrives and the read fails with an ``HTTPException``
    that the app's handler turns into the same JSON error.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 overrides: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.overrides = sorted((overrides or {}).items(), key=lambda kv: -len(kv[0]))

    def limit(self, path: str) -> int:
        """The byte limit for a request path."""
        return next((n for prefix, n in self.overrides if path.startswith(prefix)), self.max_bytes)

    @staticmethod
    def message(limit: int) -> str:
        return f"request body is larger than the limit of {limit} bytes; send less"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(413, "payload_too_large", self.message(limit))
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, self.message(limit))
            return message

        await self.app(scope, counting_receive, send)



class RequestIdMiddleware:
    """Give every response an ``X-Request-ID`` (the client's, if it sent one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        request_id = incoming[:128] if incoming else uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class ConcurrencyLimitMiddleware:
    """Answer 503 at once (``Retry-After: 1``, the API's error shape) when ``limit`` requests
    under ``prefix`` are already in flight: no queue builds up behind a busy model.

    A slot is held for the whole ASGI call and freed in ``finally``: when the response is
    sent, when the handler raises, and when the call is cancelled. A client that
    disconnects frees it as soon as the server stops working on its request (uvicorn lets
    a running handler finish; its CPU is busy until then). One counter per app instance:
    the event loop is single-threaded and nothing awaits between check and increment.
    """

    def __init__(self, app: ASGIApp, limit: int, prefix: str = "/v1/") -> None:
        self.app, self.limit, self.prefix = app, limit, prefix
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = error_response(
                503, "overloaded",
                f"the server is busy ({self.limit} requests in flight, "
                "MODELZOO_MAX_CONCURRENT_REQUESTS); retry in a second",
                headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
