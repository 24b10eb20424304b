"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan loads models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from app.config import Settings
from app.errors import install_error_handlers
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import (
    BodySizeLimitMiddleware,
    ConcurrencyLimitMiddleware,
    RequestIdMiddleware,
)
from app.registry import ModelRegistry
from app.routes import demo, docs, handwriting, health, lm, matching, translation, word2vec
from app.security import install_security
from models.common.malloc import limit_malloc_arenas

log = logging.getLogger(__name__)

DESCRIPTION = """
Serving API for five classic deep-learning models trained offline by `modelzoo train`.

Every error has one shape: `{"error": {"code", "message", "details"}}`.
`/healthz` is liveness, `/readyz` readiness (503 until every configured model is loaded),
`/v1/models` lists the loaded models with their model cards.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the registry (fails fast on bad settings), then load models in a thread.

    The server answers ``/healthz`` at once and ``/readyz`` turns 200 when loading is done.
    """
    settings: Settings = app.state.settings
    if limit_malloc_arenas(settings.malloc_arena_max):
        log.info("malloc arenas capped at %d", settings.malloc_arena_max)
    if settings.torch_threads:  # None or 0: torch's default (one per physical core)
        torch.set_num_threads(settings.torch_threads)
    log.info("torch intra-op threads: %d", torch.get_num_threads())
    registry = ModelRegistry(settings, on_change=app.state.metrics.observe_model)
    app.state.registry = registry
    loading = asyncio.create_task(asyncio.to_thread(registry.load_all))
    app.state.loading = loading
    app.state.batchers = {}  # task -> Batcher, created on first use (app.deps.get_batcher)
    try:
        yield
    finally:
        for batcher in list(app.state.batchers.values()):
            await batcher.stop()
        app.state.batchers = {}
        if not loading.done():
            await asyncio.wait([loading], timeout=30)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Create the service.

    Args:
        settings: defaults to :class:`Settings` read from ``MODELZOO_*`` variables.

    Raises:
        pydantic.ValidationError: an environment variable has an invalid value.
    """
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = FastAPI(
        title="modelzoo",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by app.routes.docs with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()  # a registry per app: apps in one process do not clash
    app.state.batchers = {}
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes,
                       overrides={"/v1/handwriting/": settings.max_upload_bytes})
    # outer -> inner: CORS, API key, concurrency cap, size limit; a refused request
    # never takes a slot, and the preflight (no key) is answered by CORS
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_concurrent_requests)
    install_security(app, settings)
    # inside RequestIdMiddleware (its id is logged), outside the size limit (413s counted)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, router=app.router,
                       access_log=settings.access_log)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(word2vec.router)
    app.include_router(lm.router)
    app.include_router(handwriting.router)
    app.include_router(translation.router)
    app.include_router(matching.router)
    app.include_router(demo.router)
    app.include_router(docs.router)
    docs.keep_nulls_in_examples(app)
    return app
