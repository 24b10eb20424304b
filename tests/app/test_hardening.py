"""Deployment hardening: artifact integrity, API keys, CORS, concurrency cap, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.middleware import ConcurrencyLimitMiddleware
from app.security import is_protected, route_path
from models.common.manifest import MANIFEST, write_manifest
from models.word2vec.predictor import Word2VecPredictor
from tests.conftest import ARTIFACTS, running_app

NEIGHBORS = "/v1/word2vec/neighbors"
QUERY = {"word": "chip", "k": 3}


def copy_artifact(task: str, root: Path, manifest: bool = True) -> Path:
    """A copy of a committed artifact under ``root``, with a fresh manifest (or none)."""
    directory = root / task
    shutil.copytree(ARTIFACTS / task, directory)
    (directory / MANIFEST).unlink(missing_ok=True)
    if manifest:
        write_manifest(directory)
    return directory


async def wait_settled(client: httpx.AsyncClient) -> httpx.Response:
    """Poll /readyz until no model is pending or loading; return the last response."""
    for _ in range(1500):
        response = await client.get("/readyz")
        if response.status_code == 200 or not any(
            s.startswith(("pending", "loading"))
            for s in response.json()["error"]["details"]["not_ready"].values()
        ):
            return response
        await asyncio.sleep(0.02)
    raise AssertionError(f"models still loading: {response.text}")


# ---------------------------------------------------------------- artifact integrity


@pytest.mark.anyio
async def test_a_tampered_artifact_fails_readiness_and_the_other_model_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy_artifact("word2vec", tmp_path)
    weights = copy_artifact("handwriting", tmp_path) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight: still loadable, but not what was trained
    weights.write_bytes(bytes(data))
    settings = Settings(artifacts_dir=tmp_path, models="word2vec,handwriting")
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        async with running_app(settings, ready=False) as client:
            ready = await wait_settled(client)
            answer = await client.post(NEIGHBORS, json=QUERY)
            models = (await client.get("/v1/models")).json()["models"]
    assert ready.status_code == 503
    not_ready = ready.json()["error"]["details"]["not_ready"]
    assert list(not_ready) == ["handwriting"]
    assert not_ready["handwriting"].startswith("failed: the 'handwriting' artifact failed")
    assert "changed file model.safetensors" in not_ready["handwriting"]
    assert "handwriting" in ready.json()["error"]["message"]
    assert str(tmp_path) not in ready.text  # names the file, not the server's paths
    assert answer.status_code == 200 and len(answer.json()["neighbors"]) == 3
    assert {m["task"]: m["status"] for m in models} == {"word2vec": "ready",
                                                        "handwriting": "failed"}
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "model.safetensors" in record.getMessage() and record.exc_info is None
    assert "\n" not in record.getMessage()


@pytest.mark.anyio
async def test_an_extra_file_in_an_artifact_fails_it(tmp_path: Path) -> None:
    (copy_artifact("word2vec", tmp_path) / "evil.pt").write_bytes(b"\x80\x04pickle")
    async with running_app(Settings(artifacts_dir=tmp_path), ready=False) as client:
        ready = await wait_settled(client)
    assert ready.status_code == 503
    assert "unexpected file evil.pt" in ready.json()["error"]["details"]["not_ready"]["word2vec"]


@pytest.mark.anyio
async def test_a_folder_without_manifest_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy_artifact("word2vec", tmp_path, manifest=False)
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        async with running_app(Settings(artifacts_dir=tmp_path)) as client:
            answer = await client.post(NEIGHBORS, json=QUERY)
    assert answer.status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no manifest.json" in w and "modelzoo manifest word2vec" in w for w in warnings)


@pytest.mark.anyio
async def test_require_manifest_refuses_a_folder_without_one(tmp_path: Path) -> None:
    copy_artifact("word2vec", tmp_path, manifest=False)
    settings = Settings(artifacts_dir=tmp_path, require_manifest=True)
    async with running_app(settings, ready=False) as client:
        ready = await wait_settled(client)
        busy = await client.post(NEIGHBORS, json=QUERY)
        live = await client.get("/healthz")
    assert ready.status_code == 503
    reason = ready.json()["error"]["details"]["not_ready"]["word2vec"]
    assert "MODELZOO_REQUIRE_MANIFEST" in reason and "modelzoo manifest word2vec" in reason
    assert busy.status_code == 503 and live.status_code == 200


@pytest.mark.anyio
async def test_require_manifest_serves_a_verified_artifact(tmp_path: Path) -> None:
    copy_artifact("word2vec", tmp_path)
    async with running_app(Settings(artifacts_dir=tmp_path, require_manifest=True)) as client:
        assert (await client.post(NEIGHBORS, json=QUERY)).status_code == 200


def test_require_manifest_reads_its_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_REQUIRE_MANIFEST", "true")
    monkeypatch.setenv("MODELZOO_MAX_CONCURRENT_REQUESTS", "3")
    settings = Settings()
    assert settings.require_manifest is True and settings.max_concurrent_requests == 3


@pytest.mark.slow
def test_training_writes_a_manifest(tiny_lm_root: Path) -> None:
    from models.common.manifest import verify_manifest

    assert verify_manifest(tiny_lm_root / "lm") == 4


# ---------------------------------------------------------------- API keys


def keyed_settings(**extra: Any) -> Settings:
    return Settings(artifacts_dir=ARTIFACTS, models="word2vec",
                    api_keys="first-key-0123, second-key-4567", **extra)


@pytest.mark.anyio
async def test_api_key_on_refuses_requests_without_a_valid_key() -> None:
    async with running_app(keyed_settings()) as client:
        missing = await client.post(NEIGHBORS, json=QUERY)
        wrong = await client.post(NEIGHBORS, json=QUERY, headers={"X-API-Key": "guess"})
        prefix = await client.post(NEIGHBORS, json=QUERY,
                                   headers={"X-API-Key": "first-key-012"})
        unknown_route = await client.get("/v1/nothing-here")
        models = await client.get("/v1/models")
        root = await client.get("/nothing-here")  # deny by default: only open paths are open
    for response in (missing, wrong, prefix, unknown_route, models, root):
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and "X-API-Key" in error["message"]
        assert "WWW-Authenticate" in error["message"]
        assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        assert response.headers["x-request-id"]
    assert missing.json()["error"]["message"].startswith("missing API key")
    assert wrong.json()["error"]["message"].startswith("invalid API key")


@pytest.mark.anyio
async def test_api_key_on_accepts_each_configured_key() -> None:
    async with running_app(keyed_settings()) as client:
        for key in ("first-key-0123", "second-key-4567"):
            response = await client.post(NEIGHBORS, json=QUERY, headers={"X-API-Key": key})
            assert response.status_code == 200, response.text
            assert len(response.json()["neighbors"]) == 3


@pytest.mark.anyio
async def test_api_key_on_leaves_health_docs_and_metrics_open() -> None:
    async with running_app(keyed_settings()) as client:
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/metrics")).status_code != 401


def test_open_paths_are_matched_without_the_proxy_root_path() -> None:
    behind_proxy = {"path": "/api/healthz", "root_path": "/api"}
    assert not is_protected(route_path(behind_proxy))
    assert is_protected(route_path({"path": "/api/v1/models", "root_path": "/api"}))
    assert is_protected(route_path({"path": "/healthz/../v1/models", "root_path": ""}))


@pytest.mark.anyio
async def test_api_key_on_adds_the_scheme_to_openapi() -> None:
    async with running_app(keyed_settings()) as client:
        spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["APIKeyHeader"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                      "description": scheme["description"]}
    operation = spec["paths"][NEIGHBORS]["post"]
    assert operation["security"] == [{"APIKeyHeader": []}] and "401" in operation["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


@pytest.mark.anyio
async def test_api_key_off_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.post(NEIGHBORS, json=QUERY)).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in spec.get("components", {})


def test_api_keys_setting_that_names_no_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_API_KEYS", " , ")
    with pytest.raises(ValidationError, match="MODELZOO_API_KEYS names no key"):
        Settings()
    monkeypatch.setenv("MODELZOO_API_KEYS", "a-key, b-key ,a-key")
    settings = Settings()
    assert settings.api_key_list() == ["a-key", "b-key"]
    assert "a-key" not in repr(settings)


# ---------------------------------------------------------------- CORS

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-api-key"}


@pytest.mark.anyio
async def test_cors_preflight_is_answered_for_a_configured_origin() -> None:
    async with running_app(keyed_settings(cors_origins="https://app.example")) as client:
        preflight = await client.options(NEIGHBORS, headers=PREFLIGHT)
        refused = await client.options(NEIGHBORS,
                                       headers={**PREFLIGHT, "Origin": "https://evil.example"})
        simple = await client.post(NEIGHBORS, json=QUERY, headers={
            "Origin": "https://app.example", "X-API-Key": "first-key-0123"})
        unauthorized = await client.post(NEIGHBORS, json=QUERY,
                                         headers={"Origin": "https://app.example"})
    assert preflight.status_code == 200  # no key needed for the preflight
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "cors_rejected"
    assert "access-control-allow-origin" not in refused.headers
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    assert unauthorized.status_code == 401  # and the page can read why
    assert unauthorized.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.anyio
async def test_cors_star_allows_any_origin() -> None:
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec", cors_origins="*")
    async with running_app(settings) as client:
        preflight = await client.options(NEIGHBORS, headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


@pytest.mark.anyio
async def test_no_cors_headers_when_not_configured(client: httpx.AsyncClient) -> None:
    preflight = await client.options(NEIGHBORS, headers=PREFLIGHT)
    simple = await client.post(NEIGHBORS, json=QUERY, headers={"Origin": "https://app.example"})
    assert preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    assert simple.status_code == 200
    assert not any(h.startswith("access-control-") for h in simple.headers)


def test_a_malformed_cors_origin_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_CORS_ORIGINS", "app.example")
    with pytest.raises(ValidationError, match="scheme://host"):
        Settings()
    monkeypatch.setenv("MODELZOO_CORS_ORIGINS", "https://a.example/, http://localhost:3000")
    assert Settings().cors_origin_list() == ["https://a.example", "http://localhost:3000"]


# ---------------------------------------------------------------- concurrency cap


@pytest.mark.anyio
async def test_requests_over_the_concurrency_cap_get_503_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, release = threading.Event(), threading.Event()
    original = Word2VecPredictor.neighbors

    def slow_neighbors(self: Word2VecPredictor, *args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Word2VecPredictor, "neighbors", slow_neighbors)
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec", max_concurrent_requests=1)
    async with running_app(settings) as client:

        async def second() -> tuple[httpx.Response, httpx.Response]:
            assert await asyncio.to_thread(started.wait, 10), "the slow request never started"
            try:
                return (await client.post(NEIGHBORS, json=QUERY),
                        await client.get("/healthz"))
            finally:
                release.set()

        first, (refused, health) = await asyncio.gather(
            client.post(NEIGHBORS, json=QUERY), second())
        after = await client.post(NEIGHBORS, json=QUERY)
    assert first.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert "MODELZOO_MAX_CONCURRENT_REQUESTS" in refused.json()["error"]["message"]
    assert health.status_code == 200  # health is not capped
    assert after.status_code == 200


@pytest.mark.anyio
async def test_a_cancelled_request_frees_its_slot() -> None:
    entered = asyncio.Event()

    async def hang(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.sleep(3600)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    limiter = ConcurrencyLimitMiddleware(hang, limit=1)
    task = asyncio.create_task(limiter({"type": "http", "path": "/v1/x", "headers": []},
                                       receive, send))
    await entered.wait()
    assert limiter.in_flight == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert limiter.in_flight == 0


def test_max_concurrent_requests_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_MAX_CONCURRENT_REQUESTS", "0")
    with pytest.raises(ValidationError):
        Settings()


# ---------------------------------------------------------------- no leaks on 500


@pytest.mark.anyio
async def test_an_unexpected_error_answers_500_without_trace_or_paths(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(self: Word2VecPredictor, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("/secret/path/model.bin: tensor exploded")

    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec", max_concurrent_requests=1)
    async with running_app(settings) as client:
        monkeypatch.setattr(Word2VecPredictor, "neighbors", explode)
        with caplog.at_level(logging.ERROR):
            failed = await client.post(NEIGHBORS, json=QUERY)
        monkeypatch.undo()
        again = await client.post(NEIGHBORS, json=QUERY)  # the slot was released
        live = await client.get("/healthz")
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    assert set(failed.json()) == {"error"}
    error = failed.json()["error"]
    assert error["code"] == "internal_error" and set(error) == {"code", "message", "details"}
    for leak in ("Traceback", "/secret", "exploded", "RuntimeError", "File \""):
        assert leak not in failed.text
    assert any(r.exc_info and "exploded" in str(r.exc_info[1]) for r in caplog.records)
    assert again.status_code == 200 and live.status_code == 200
