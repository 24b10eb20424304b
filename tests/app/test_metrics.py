"""GET /metrics (Prometheus), request metrics by route template, and JSON access logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.config import Settings
from app.main import create_app
from app.metrics import Metrics, MetricsMiddleware, configure_access_log
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.anyio

NEIGHBORS = "/v1/word2vec/neighbors"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, or None."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def label_values(text: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if label in s.labels
    }


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, attached to ``modelzoo.access`` (which does not propagate to the root)."""
    configure_access_log()
    logger = logging.getLogger("modelzoo.access")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "modelzoo.access"]


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.post(NEIGHBORS, json={"word": "chip", "k": 3})
    unknown = await client.post(NEIGHBORS, json={"word": "xyzzyq", "k": 3})
    invalid = await client.post(NEIGHBORS, json={"word": "chip", "k": 0})
    assert (ok.status_code, unknown.status_code, invalid.status_code) == (200, 404, 422)

    text = await scrape(client)
    for status in ("200", "404", "422"):
        assert sample(text, "modelzoo_requests_total",
                      route=NEIGHBORS, method="POST", status=status) == 1.0, status
    assert sample(text, "modelzoo_request_duration_seconds_count",
                  route=NEIGHBORS, method="POST") == 3.0
    assert sample(text, "modelzoo_request_duration_seconds_sum",
                  route=NEIGHBORS, method="POST") > 0  # type: ignore[operator]
    assert sample(text, "modelzoo_requests_in_progress", route=NEIGHBORS) == 0.0
    # readiness polling by the fixture is counted too
    assert sample(text, "modelzoo_requests_total",
                  route="/readyz", method="GET", status="200") >= 1  # type: ignore[operator]


async def test_routes_are_templates_and_unknown_paths_one_label(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/v1/no/such/thing")).status_code == 404
    assert (await client.get("/v1/another-missing-path")).status_code == 404
    assert (await client.get(NEIGHBORS)).status_code == 405
    too_large = await client.post(NEIGHBORS, content=b"{}",
                                  headers={"content-type": "application/json",
                                           "content-length": "2000000"})
    assert too_large.status_code == 413

    text = await scrape(client)
    assert sample(text, "modelzoo_requests_total",
                  route="<unmatched>", method="GET", status="404") == 2.0
    assert sample(text, "modelzoo_requests_total",
                  route=NEIGHBORS, method="GET", status="405") == 1.0
    assert sample(text, "modelzoo_requests_total",
                  route=NEIGHBORS, method="POST", status="413") == 1.0
    routes = label_values(text, "route")
    assert not any("missing" in r or "no/such" in r for r in routes), routes


async def test_metrics_endpoint_is_not_counted(client: httpx.AsyncClient) -> None:
    await scrape(client)
    text = await scrape(client)
    assert "/metrics" not in label_values(text, "route")


async def test_metrics_endpoint_needs_no_json_and_speaks_openmetrics(
    client: httpx.AsyncClient,
) -> None:
    plain = await client.get("/metrics", headers={"content-type": "text/plain"})
    assert plain.status_code == 200
    assert "# TYPE modelzoo_requests_total counter" in plain.text
    om = await client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert om.status_code == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


async def test_model_info_and_load_time_exist_for_word2vec(client: httpx.AsyncClient) -> None:
    card = json.loads((ARTIFACTS / "word2vec" / "card.json").read_text())
    version = f"{card['name']}-{card['git_commit'][:7]}"  # e.g. skipgram-ptb-289700b
    text = await scrape(client)
    assert sample(text, "modelzoo_model_info", task="word2vec", status="ready",
                  device="cpu", quantized="false", version=version) == 1.0
    load_seconds = sample(text, "modelzoo_model_load_seconds", task="word2vec")
    assert load_seconds is not None and load_seconds > 0


async def test_batcher_metrics_are_exported_and_fillable(client: httpx.AsyncClient) -> None:
    text = await scrape(client)
    assert "# TYPE modelzoo_batch_size histogram" in text
    assert "# TYPE modelzoo_queue_depth gauge" in text
    metrics = Metrics()
    metrics.observe_batch("lm", 5)
    metrics.set_queue_depth("lm", 3)
    text = metrics.exposition()[0].decode()
    assert sample(text, "modelzoo_batch_size_count", task="lm") == 1.0
    assert sample(text, "modelzoo_batch_size_bucket", task="lm", le="4.0") == 0.0
    assert sample(text, "modelzoo_batch_size_bucket", task="lm", le="8.0") == 1.0
    assert sample(text, "modelzoo_queue_depth", task="lm") == 3.0


async def test_access_log_is_json_with_the_response_request_id(
    client: httpx.AsyncClient, access_log: pytest.LogCaptureFixture,
) -> None:
    access_log.clear()
    ok = await client.post(NEIGHBORS, json={"word": "chip", "k": 3})
    missing = await client.post(NEIGHBORS, json={"word": "xyzzyq", "k": 3},
                                headers={"x-request-id": "client-id-42"})
    assert ok.status_code == 200 and missing.status_code == 404

    lines = access_lines(access_log)
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == ok.headers["x-request-id"] and first["request_id"]
    assert second["request_id"] == "client-id-42" == missing.headers["x-request-id"]
    assert first["method"] == "POST" and first["route"] == NEIGHBORS
    assert first["path"] == NEIGHBORS
    assert (first["status"], second["status"]) == (200, 404)
    assert first["bytes_sent"] == len(ok.content) and second["bytes_sent"] == len(missing.content)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert isinstance(first["client"], str) and first["client"]
    assert all(isinstance(r.getMessage(), str) and "\n" not in r.getMessage()
               for r in access_log.records)


async def test_access_log_can_be_switched_off(access_log: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(artifacts_dir=ARTIFACTS, models="word2vec", access_log=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://modelzoo") as c:
        access_log.clear()
        assert (await c.get("/healthz")).status_code == 200
        assert access_lines(access_log) == []
        text = await scrape(c)
    assert sample(text, "modelzoo_requests_total",
                  route="/healthz", method="GET", status="200") == 1.0


async def test_two_apps_have_independent_registries() -> None:
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec")
    first, second = create_app(settings), create_app(settings)
    assert first.state.metrics.registry is not second.state.metrics.registry

    async def client(app: Starlette) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")

    async with await client(first) as a, await client(second) as b:
        for _ in range(3):
            assert (await a.get("/healthz")).status_code == 200
        assert (await b.get("/healthz")).status_code == 200
        text_a, text_b = await scrape(a), await scrape(b)
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert sample(text_a, "modelzoo_requests_total", **labels) == 3.0
    assert sample(text_b, "modelzoo_requests_total", **labels) == 1.0


# The middleware alone, on a tiny app: streamed bodies and handler errors.

async def _stream(_: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"data: a\n\n", b"data: bb\n\n", b"data: ccc\n\n"):
            await asyncio.sleep(0.05)
            yield chunk

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def _boom(_: Request) -> Response:
    raise RuntimeError("boom")


@pytest.fixture
def tiny_app() -> tuple[Starlette, Metrics]:
    app = Starlette(routes=[Route("/stream/{name}", _stream), Route("/boom", _boom)])
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics, router=app.router)
    return app, metrics


async def test_streamed_response_is_timed_to_its_last_byte(
    tiny_app: tuple[Starlette, Metrics], access_log: pytest.LogCaptureFixture,
) -> None:
    app, metrics = tiny_app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as c:
        access_log.clear()
        response = await c.get("/stream/x")
    assert response.status_code == 200 and response.content.count(b"data:") == 3
    text = metrics.exposition()[0].decode()
    assert sample(text, "modelzoo_requests_total",
                  route="/stream/{name}", method="GET", status="200") == 1.0
    took = sample(text, "modelzoo_request_duration_seconds_sum", route="/stream/{name}")
    assert took is not None and took >= 0.14
    (line,) = access_lines(access_log)
    assert line["bytes_sent"] == len(response.content) and line["route"] == "/stream/{name}"
    assert line["duration_ms"] >= 140  # type: ignore[operator]


async def test_handler_error_counts_as_500(tiny_app: tuple[Starlette, Metrics]) -> None:
    app, metrics = tiny_app
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as c:
        assert (await c.get("/boom")).status_code == 500
    text = metrics.exposition()[0].decode()
    assert sample(text, "modelzoo_requests_total",
                  route="/boom", method="GET", status="500") == 1.0
    assert sample(text, "modelzoo_requests_in_progress", route="/boom") == 0.0
