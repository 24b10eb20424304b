"""Optional API-key authentication and CORS, both off unless configured.

* ``MODELZOO_API_KEYS`` (comma list): every request (all of ``/v1/...``) must carry one of
  the keys in the ``X-API-Key`` header, else 401 in the API's error shape. Only
  :data:`OPEN_PATHS` stay open (health, readiness, docs, the OpenAPI spec, ``/metrics``):
  probes and scrapers carry no secrets, and none of them runs a model. Deny by default, so
  a route added later is protected until it is listed here. Keys are compared with
  ``hmac.compare_digest``.
* ``MODELZOO_CORS_ORIGINS`` (comma list or ``*``): Starlette's ``CORSMiddleware``, placed
  outside the key check so a browser's preflight (which never carries the key) is answered
  and a 401 is readable by the page. No cookies are used, so credentials stay disallowed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import error_response

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
SCHEME_NAME = "APIKeyHeader"
CHALLENGE = f'ApiKey header="{API_KEY_HEADER}"'
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json", "/metrics", "/"})
# the demo page's assets (``GET /`` is the page; its /v1 calls carry the key)
OPEN_PREFIXES = ("/static/", "/docs-assets/")


def is_protected(path: str) -> bool:
    """Whether ``path`` (as routed, without the root path) needs a key."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


def route_path(scope: Scope) -> str:
    """The path the router matches: ``scope["path"]`` without a proxy's ``root_path``."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path


class APIKeyMiddleware:
    """401 for a request outside :data:`OPEN_PATHS` whose ``X-API-Key`` is not one of ``keys``."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("APIKeyMiddleware needs at least one key")
        self.app = app
        self._keys = [k.encode("utf-8") for k in keys]
        self._header = API_KEY_HEADER.lower().encode("latin-1")

    def accepts(self, supplied: bytes) -> bool:
        """Constant-time check against every key (no early exit on a match)."""
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, supplied)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(route_path(scope)):
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope.get("headers") or [] if k == self._header), None)
        if supplied is not None and self.accepts(supplied):
            await self.app(scope, receive, send)
            return
        problem = "missing API key" if supplied is None else "invalid API key"
        response = error_response(
            401, "unauthorized",
            f"{problem}: send one of the service's keys in the {API_KEY_HEADER} header "
            f"(WWW-Authenticate: {CHALLENGE})",
            details={"header": API_KEY_HEADER},
            headers={"WWW-Authenticate": CHALLENGE})
        await response(scope, receive, send)


class JSONErrorCORSMiddleware(CORSMiddleware):
    """Starlette's ``CORSMiddleware``; a refused preflight answers in the API's error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {k: v for k, v in response.headers.items()
                   if k not in ("content-length", "content-type")}
        return error_response(400, "cors_rejected", bytes(response.body).decode(),
                              headers=headers)


def add_api_key_to_openapi(app: FastAPI) -> None:
    """Declare the ``X-API-Key`` scheme on every ``/v1`` operation (an Authorize button in
    ``/docs``) and document its 401."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
            "type": "apiKey", "in": "header", "name": API_KEY_HEADER,
            "description": "One of the keys in MODELZOO_API_KEYS.",
        }
        example = {"error": {
            "code": "unauthorized", "details": {"header": API_KEY_HEADER},
            "message": f"missing API key: send one of the service's keys in the "
            f"{API_KEY_HEADER} header (WWW-Authenticate: {CHALLENGE})"}}
        error = ({"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorResponse"}, "example": example}}}
            if "ErrorResponse" in components.get("schemas", {}) else {})
        for path, operations in schema.get("paths", {}).items():
            if not is_protected(path):
                continue
            for method, operation in operations.items():
                if method in _HTTP_METHODS:
                    operation["security"] = [{SCHEME_NAME: []}]
                    operation.setdefault("responses", {}).setdefault(
                        "401", {"description": "Missing or invalid API key.", **error})
        info = schema.setdefault("info", {})
        info["description"] = (info.get("description") or "") + (
            f"\n**Authentication**: send `{API_KEY_HEADER}: <key>` with every `/v1/...` call.\n")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the API-key check and CORS as configured (each is off when its setting is empty).

    CORS is added after the key check, so it wraps it (Starlette: last added is outermost).
    """
    keys = settings.api_key_list()
    if keys:
        app.add_middleware(APIKeyMiddleware, keys=keys)
        add_api_key_to_openapi(app)
        log.info("API-key authentication is on for /v1/... (%d key(s))", len(keys))
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            JSONErrorCORSMiddleware, allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", API_KEY_HEADER, "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"], max_age=600,
        )
        log.info("CORS is on for %s", ", ".join(origins))
