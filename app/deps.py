"""Dependencies injected into routes (``Annotated`` aliases, as in full-stack-fastapi-template).

Every dependency here is ``async def``: none of them blocks (attribute and dict lookups), and
FastAPI runs each plain ``def`` dependency in a worker thread, a thread hand-off per
dependency per request (measured: ~1 ms of a /v1/match call on two cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request

from app.batching import Batcher
from app.config import Settings
from app.errors import APIError
from app.metrics import Metrics
from app.registry import ModelNotReadyError, ModelRegistry
from models.common.predictor import Predictor
from models.handwriting.predictor import HandwritingPredictor
from models.lm.predictor import LMPredictor
from models.matching.predictor import MatchingPredictor
from models.translation.predictor import TranslationPredictor
from models.word2vec.predictor import Word2VecPredictor


async def get_registry(request: Request) -> ModelRegistry:
    """The registry built in the lifespan."""
    registry: ModelRegistry = request.app.state.registry
    return registry


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def require_json(request: Request) -> None:
    """Reject bodies that are not JSON with 415 (saying which content type to send)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(
            415,
            f"send the body as JSON with 'Content-Type: application/json' (got "
            f"{content_type or 'no content type'!r})",
        )


def get_batcher(request: Request, task: str, fn: Callable[[list[Any]], Sequence[Any]],
                max_batch_size: int, max_wait_ms: float) -> Batcher[Any, Any] | None:
    """The app's batcher for ``task`` (created and started on first use, with ``fn``), or
    ``None`` when batching is off (``MODELZOO_BATCHING=false``).

    The lifespan stops every batcher in ``app.state.batchers`` on shutdown.
    """
    settings: Settings = request.app.state.settings
    if not settings.batching:
        return None
    batchers: dict[str, Batcher[Any, Any]] = request.app.state.batchers
    batcher = batchers.get(task)
    if batcher is None:  # no await between the check and the insert: one per app
        batcher = batchers[task] = Batcher(
            fn, name=task, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
            max_queue=settings.batch_queue_size, timeout_s=settings.request_timeout_s,
            observer=request.app.state.metrics)
        batcher.start()
    return batcher


def _ready(registry: ModelRegistry, task: str) -> Predictor:
    try:
        return registry.get(task)
    except ModelNotReadyError as exc:
        raise APIError(503, str(exc), headers={"Retry-After": "5"}) from exc


async def get_word2vec(registry: RegistryDep) -> Word2VecPredictor:
    """The loaded word2vec predictor, or 503 while it is not ready."""
    predictor = _ready(registry, "word2vec")
    assert isinstance(predictor, Word2VecPredictor)
    return predictor


async def get_lm(registry: RegistryDep) -> LMPredictor:
    """The loaded language model, or 503 while it is not ready."""
    predictor = _ready(registry, "lm")
    assert isinstance(predictor, LMPredictor)
    return predictor


async def get_handwriting(registry: RegistryDep) -> HandwritingPredictor:
    """The loaded handwriting recognizer, or 503 while it is not ready."""
    predictor = _ready(registry, "handwriting")
    assert isinstance(predictor, HandwritingPredictor)
    return predictor


async def get_translation(registry: RegistryDep) -> TranslationPredictor:
    """The loaded translator, or 503 while it is not ready."""
    predictor = _ready(registry, "translation")
    assert isinstance(predictor, TranslationPredictor)
    return predictor


async def get_matching(registry: RegistryDep) -> MatchingPredictor:
    """The loaded text-pair matchers, or 503 while they are not ready."""
    predictor = _ready(registry, "matching")
    assert isinstance(predictor, MatchingPredictor)
    return predictor


Word2VecDep = Annotated[Word2VecPredictor, Depends(get_word2vec)]
LMDep = Annotated[LMPredictor, Depends(get_lm)]
HandwritingDep = Annotated[HandwritingPredictor, Depends(get_handwriting)]
TranslationDep = Annotated[TranslationPredictor, Depends(get_translation)]
MatchingDep = Annotated[MatchingPredictor, Depends(get_matching)]
