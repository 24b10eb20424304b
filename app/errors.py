"""One JSON error shape for every 4xx/5xx: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.batching import (
    BatchingError,
    ClientDisconnectedError,
    DeadlineExceededError,
    QueueFullError,
)
from models.common.errors import PredictorError, UnknownItemError

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    499: "client_closed_request", 500: "internal_error", 503: "unavailable", 504: "timeout",
}

# predictor error codes that are not plain "invalid input" (422)
_PREDICTOR_STATUS = {"image_too_large": 413}


class ErrorDetail(BaseModel):
    """The body of an error."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorDetail


class APIError(Exception):
    """An error with an HTTP status, raised by routes and middleware."""

    def __init__(
        self,
        status_code: int,
        message: str,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code or _CODES.get(status_code, "error")
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status_code: int, code: str, message: str, details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the JSON error response."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        details.append({"loc": loc, "msg": e.get("msg", ""), "type": e.get("type", "")})
    parts = [f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details[:5]]
    for i, e in enumerate(errors[:5]):
        if e.get("type") == "json_invalid":  # loc is ("body", character offset)
            reason = (e.get("ctx") or {}).get("error") or "JSON decode error"
            parts[i] = (f"the body is not valid JSON ({reason} at character "
                        f"{details[i]['loc'][-1]}); send a JSON object")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more, details


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so every error, expected or not, uses :class:`ErrorResponse`."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(PredictorError)
    async def _predictor_error(_: Request, exc: PredictorError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownItemError) else _PREDICTOR_STATUS.get(exc.code, 422)
        return error_response(status, exc.code, exc.message, exc.details)

    @app.exception_handler(BatchingError)
    async def _batching_error(_: Request, exc: BatchingError) -> JSONResponse:
        if isinstance(exc, ClientDisconnectedError):  # nobody reads it; logged and counted
            return error_response(499, "client_closed_request", str(exc))
        if isinstance(exc, DeadlineExceededError):
            return error_response(504, "timeout", str(exc),
                                  {"timeout_s": exc.timeout_s, "task": exc.name})
        retry_after = exc.retry_after_s if isinstance(exc, QueueFullError) else 5
        return error_response(503, "overloaded", str(exc),
                              headers={"Retry-After": str(retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(list(exc.errors()))
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # answered by Starlette's outermost middleware, outside RequestIdMiddleware: the id
        # it put in the scope goes on the response here, so the client can quote it
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error on %s %s (request id %s)", request.method,
                      request.url.path, request_id)
        return error_response(500, "internal_error", "internal server error; see the server log",
                              headers={"X-Request-ID": request_id} if request_id else None)


def error_doc(description: str, code: str, message: str,
              details: Any = None) -> dict[str, Any]:
    """One entry of a route's ``responses=``: the error shape, when it happens, an example."""
    example = {"error": {"code": code, "message": message, "details": details}}
    return {"model": ErrorResponse, "description": description,
            "content": {"application/json": {"example": example}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_doc("The body cannot be parsed (not UTF-8, or malformed multipart).",
                   "bad_request", "There was an error parsing the body"),
    422: error_doc("Invalid input; the message says what to fix.", "validation_error",
                   "invalid request: body.k: Input should be greater than or equal to 1",
                   [{"loc": ["body", "k"], "msg": "Input should be greater than or equal to 1",
                     "type": "greater_than_equal"}]),
    413: error_doc("Request body too large.", "payload_too_large",
                   "request body is larger than the limit of 1000000 bytes; send less"),
    415: error_doc("Body is not application/json.", "unsupported_media_type",
                   "send the body as JSON with 'Content-Type: application/json' (got "
                   "'application/x-www-form-urlencoded')"),
    503: error_doc("The model is not loaded (yet).", "unavailable",
                   "model 'lm' is not configured: add it to MODELZOO_MODELS (now 'word2vec')"),
}

# routes served through the dynamic batcher (app.batching)
BATCHED_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    503: error_doc("The model is not loaded (yet), or its batch queue is full "
                   "(MODELZOO_BATCH_QUEUE_SIZE); see Retry-After.", "overloaded",
                   "the translation queue is full (256 of 256 items waiting, this request "
                   "adds 1; MODELZOO_BATCH_QUEUE_SIZE); retry in 1 s"),
    504: error_doc("Not answered within MODELZOO_REQUEST_TIMEOUT_S.", "timeout",
                   "the translation request was not answered within 30 s "
                   "(MODELZOO_REQUEST_TIMEOUT_S); the server is busy, retry later",
                   {"timeout_s": 30.0, "task": "translation"}),
}
