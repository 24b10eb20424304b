"""Health, readiness, model cards, docs, error shape and settings."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.registry import PREDICTORS, ConfigurationError, ModelRegistry
from models.word2vec.predictor import Word2VecPredictor
from tests.conftest import ARTIFACTS, running_app


@pytest.mark.anyio
async def test_readyz_is_200_after_startup(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "models": {"word2vec": "ready"}}
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_models_lists_the_card_and_runtime_facts(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    (model,) = response.json()["models"]
    assert model["task"] == "word2vec" and model["status"] == "ready"
    assert model["device"] == "cpu" and model["quantized"] is False
    assert model["dtype"] == "float32"  # the float16 table is widened at load
    assert model["size_on_disk_bytes"] > 1_000_000
    card = model["card"]
    assert card["dataset"]["split"] == "train"
    assert card["metrics"]["wordsim353"]["spearman"] > 0.3
    assert card["params"]["served"] == card["vocab_size"] * 100
    assert card["training"]["wall_time_s"] > 0 and card["training"]["hardware"]


@pytest.mark.anyio
async def test_docs_and_openapi_have_examples(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await client.get("/openapi.json")).json()
    schema = spec["components"]["schemas"]["NeighborsRequest"]
    assert schema["examples"] == [{"word": "chip", "k": 10}]
    responses = spec["paths"]["/v1/word2vec/neighbors"]["post"]["responses"]
    assert {"200", "404", "422"} <= set(responses)


@pytest.mark.anyio
async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-request-id"]


@pytest.mark.anyio
async def test_malformed_json_says_where_and_what_to_send(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/word2vec/neighbors", content=b'{"word": chip}',
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == ("invalid request: the body is not valid JSON (Expecting value "
                                "at character 9); send a JSON object")


@pytest.mark.anyio
async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "abc123"})
    assert response.headers["x-request-id"] == "abc123"


@pytest.mark.anyio
async def test_readyz_is_503_naming_the_model_while_it_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    original = Word2VecPredictor.load.__func__  # type: ignore[attr-defined]

    def slow_load(cls: type, *args: object, **kwargs: object) -> Word2VecPredictor:
        release.wait(10)
        return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Word2VecPredictor, "load", classmethod(slow_load))
    settings = Settings(artifacts_dir=ARTIFACTS, models="word2vec")
    async with running_app(settings, ready=False) as client:
        loading = await client.get("/readyz")
        busy = await client.post("/v1/word2vec/neighbors", json={"word": "chip"})
        live = await client.get("/healthz")
        release.set()
    assert loading.status_code == 503
    assert "word2vec" in loading.json()["error"]["message"]
    assert busy.status_code == 503 and busy.headers["retry-after"]
    assert live.status_code == 200


@pytest.mark.anyio
async def test_a_broken_artifact_fails_readiness_not_the_process(tmp_path: Path) -> None:
    broken = tmp_path / "word2vec"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    async with running_app(Settings(artifacts_dir=tmp_path), ready=False) as client:
        for _ in range(100):
            response = await client.get("/readyz")
            if "failed" in response.text:
                break
        assert response.status_code == 503
        assert "failed" in response.json()["error"]["details"]["not_ready"]["word2vec"]
        assert (await client.get("/healthz")).status_code == 200


def test_unknown_task_in_settings_fails_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_MODELS", "word2vec,gpt5")
    with pytest.raises(ValidationError, match="unknown task"):
        Settings()


def test_bad_device_setting_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_requested_model_without_artifact_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="modelzoo train word2vec"):
        ModelRegistry(Settings(artifacts_dir=tmp_path, models="word2vec"))


def test_all_with_no_artifacts_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no model artifacts"):
        ModelRegistry(Settings(artifacts_dir=tmp_path))


def test_all_loads_only_tasks_with_artifacts(tmp_path: Path) -> None:
    shutil.copytree(ARTIFACTS / "word2vec", tmp_path / "word2vec")
    registry = ModelRegistry(Settings(artifacts_dir=tmp_path))
    assert list(registry.slots) == [t for t in PREDICTORS if (tmp_path / t).is_dir()]
    registry.load_all()
    assert registry.not_ready() == {}


def test_quantize_request_for_word2vec_serves_float_and_says_so(tmp_path: Path) -> None:
    registry = ModelRegistry(Settings(artifacts_dir=ARTIFACTS, models="word2vec",
                                      quantize="all"))
    registry.load_all()
    (info,) = registry.describe()
    assert info["status"] == "ready" and info["quantized"] is False
