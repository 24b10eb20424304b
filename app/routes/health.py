"""Liveness, readiness, the model list and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from app.deps import MetricsDep, RegistryDep
from app.errors import APIError, ErrorResponse

router = APIRouter()


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    models: dict[str, str]


class ModelList(BaseModel):
    models: list[dict[str, Any]]


@router.get("/healthz", response_model=Health, summary="Liveness", tags=["health"],
            description="200 while the process is up, even while models are loading.")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Readiness, summary="Readiness", tags=["health"],
    description="200 when every configured model is loaded; else 503 naming the missing ones.",
    responses={503: {"model": ErrorResponse, "description": "Some models are not loaded."}},
)
def readyz(registry: RegistryDep) -> Readiness:
    missing = registry.not_ready()
    if missing:
        names = ", ".join(f"{t} ({s})" for t, s in missing.items())
        raise APIError(503, f"not ready: {names}", details={"not_ready": missing},
                       headers={"Retry-After": "5"})
    return Readiness(status="ready", models={t: "ready" for t in registry.slots})


@router.get(
    "/v1/models", response_model=ModelList, summary="Loaded models and their cards",
    tags=["models"],
    description="Each configured model: status, device, whether int8-quantized, size on "
    "disk, and its model card (dataset and split, metrics and the command behind them, "
    "parameters, training time and hardware).",
)
def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=registry.describe())


@router.get(
    "/metrics", response_class=PlainTextResponse, summary="Prometheus metrics", tags=["health"],
    description="Request counts, latencies and in-flight requests by route template, model "
    "load times and info, in the Prometheus text format (OpenMetrics when the `Accept` "
    "header asks for it). Requests to /metrics are not counted.",
)
def metrics(request: Request, metrics: MetricsDep) -> Response:
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
