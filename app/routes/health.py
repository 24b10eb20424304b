"""Liveness, readiness, the model list and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from app.deps import MetricsDep, RegistryDep
from app.errors import APIError, error_doc

router = APIRouter()


class Health(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"status": "ok"}]}}

    status: str


class Readiness(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"status": "ready", "models": {
        "word2vec": "ready", "lm": "ready", "handwriting": "ready", "translation": "ready",
        "matching": "ready"}}]}}

    status: str
    models: dict[str, str]


class ModelList(BaseModel):
    # one model, its card cut to a few fields (GET /v1/models gives the whole card)
    model_config = {"json_schema_extra": {"examples": [{"models": [{
        "task": "word2vec", "status": "ready", "device": "cpu", "quantized": False,
        "dtype": "float32", "size_on_disk_bytes": 4405479, "load_seconds": 0.036,
        "warmup_seconds": 0.002, "card": {
            "task": "word2vec", "name": "skipgram-ptb", "arch": "skipgram",
            "dataset": {"name": "Penn Treebank (Mikolov LM version)", "split": "train",
                        "file": "ptb.train.txt"},
            "metrics_command": "modelzoo evaluate word2vec",
            "params": {"trained": 1971600, "served": 985800}, "vocab_size": 9858,
            "git_commit": "5fd61207040f80fa18718b3f0e2ef8c9a6e042c5"}}]}]}}

    models: list[dict[str, Any]]


# lines of a real scrape (the full one also has HELP/TYPE lines and every route's histogram)
METRICS_EXAMPLE = """\
modelzoo_requests_total{method="POST",route="/v1/translate",status="200"} 2.0
modelzoo_request_duration_seconds_count{method="POST",route="/v1/word2vec/neighbors"} 5.0
modelzoo_model_load_seconds{task="translation"} 0.148
modelzoo_model_info{device="cpu",quantized="false",status="ready",task="translation",\
version="multi30k-de-en-transformer-142aec3"} 1.0
modelzoo_queue_depth{task="translation"} 0.0
"""


@router.get("/healthz", response_model=Health, summary="Liveness", tags=["health"],
            description="200 while the process is up, even while models are loading.")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Readiness, summary="Readiness", tags=["health"],
    description="200 when every configured model is loaded; else 503 naming the missing ones.",
    responses={503: error_doc("Some models are not loaded.", "unavailable",
                              "not ready: word2vec (loading)",
                              {"not_ready": {"word2vec": "loading"}})},
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
    responses={200: {"content": {"text/plain": {"example": METRICS_EXAMPLE}}}},
)
def metrics(request: Request, metrics: MetricsDep) -> Response:
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
