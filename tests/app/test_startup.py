"""Startup policy: device and dtype (CUDA availability patched), warm-up, torch threads.

The predictors here are fakes registered in ``PREDICTORS``; no real GPU is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from app.config import Settings
from app.registry import PREDICTORS, ConfigurationError, ModelRegistry
from tests.conftest import running_app

FAKE = f"{__name__}:FakePredictor"
LOADED: list[FakePredictor] = []


class FakePredictor:
    """Records how it was loaded and how often it was warmed up."""

    fail_warmup = False

    def __init__(self, task: str, device: torch.device, quantize: bool) -> None:
        self.task, self.device, self.quantized, self.card = task, device, quantize, {}
        self.model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        self.warmups = 0

    @classmethod
    def load(cls, artifact_dir: Path, device: torch.device, quantize: bool) -> FakePredictor:
        predictor = cls(artifact_dir.name, device, quantize)
        LOADED.append(predictor)
        return predictor

    def warmup(self) -> None:
        self.warmups += 1
        assert torch.is_inference_mode_enabled()
        if self.fail_warmup:
            raise RuntimeError("warm-up exploded")


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Artifacts folders for word2vec and lm, both served by :class:`FakePredictor`."""
    LOADED.clear()
    monkeypatch.setattr(FakePredictor, "fail_warmup", False)
    for task in ("word2vec", "lm"):
        (tmp_path / task).mkdir()
        monkeypatch.setitem(PREDICTORS, task, FAKE)
    return tmp_path


@pytest.fixture
def cuda_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _load(root: Path, **settings: Any) -> ModelRegistry:
    registry = ModelRegistry(Settings(artifacts_dir=root, models="word2vec,lm", **settings))
    registry.load_all()
    return registry


# ---------------------------------------------------------------- device and dtype


def test_cuda_setting_without_cuda_fails_at_startup_with_the_fix(
        fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigurationError, match="MODELZOO_DEVICE=auto or cpu"):
        ModelRegistry(Settings(artifacts_dir=fake_root, device="cuda"))
    assert LOADED == []


@pytest.mark.anyio
async def test_the_app_refuses_to_start_on_cuda_without_cuda(
        fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"torch\.cuda\.is_available"):
        async with running_app(Settings(artifacts_dir=fake_root, device="cuda")):
            pass


@pytest.mark.parametrize("setting", ["auto", "cuda"])
def test_with_cuda_models_load_on_cuda_in_float16(fake_root: Path, cuda_available: None,
                                                  setting: str) -> None:
    registry = _load(fake_root, device=setting)
    assert registry.not_ready() == {}
    for predictor in LOADED:
        assert predictor.device == torch.device("cuda")
        assert {p.dtype for p in predictor.model.parameters()} == {torch.float16}
        # float32 inputs are cast to the model's dtype
        assert predictor.model(torch.ones(1, 4)).dtype == torch.float16
    assert [m["dtype"] for m in registry.describe()] == ["float16", "float16"]


@pytest.mark.parametrize(("cuda_dtype", "expected"), [("bfloat16", torch.bfloat16),
                                                      ("float32", torch.float32)])
def test_cuda_dtype_setting_picks_the_dtype(fake_root: Path, cuda_available: None,
                                            cuda_dtype: str, expected: torch.dtype) -> None:
    _load(fake_root, cuda_dtype=cuda_dtype)
    for predictor in LOADED:
        assert {p.dtype for p in predictor.model.parameters()} == {expected}


def test_a_quantized_model_stays_on_cpu_in_float32_even_with_cuda(
        fake_root: Path, cuda_available: None) -> None:
    registry = _load(fake_root, device="cuda", quantize="lm")
    devices = {p.task: (p.device, p.quantized) for p in LOADED}
    assert devices == {"word2vec": (torch.device("cuda"), False),
                       "lm": (torch.device("cpu"), True)}
    lm = next(p for p in LOADED if p.task == "lm")
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}
    assert {m["task"]: m["dtype"] for m in registry.describe()} == {
        "word2vec": "float16", "lm": "float32"}


def test_without_cuda_auto_serves_float32_on_cpu(fake_root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _load(fake_root)
    for predictor in LOADED:
        assert predictor.device == torch.device("cpu")
        assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}


def test_a_bad_cuda_dtype_fails_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_CUDA_DTYPE", "float8")
    with pytest.raises(ValueError, match="bfloat16"):
        Settings()


# ---------------------------------------------------------------- warm-up


def test_warmup_runs_once_per_model_before_it_is_ready(fake_root: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.registry"):
        registry = _load(fake_root, warmup=True)
    assert sorted(p.task for p in LOADED) == ["lm", "word2vec"]
    assert [p.warmups for p in LOADED] == [1, 1]
    assert registry.not_ready() == {}
    assert all(m["warmup_seconds"] is not None for m in registry.describe())
    assert caplog.text.count("warmed up") == 2


def test_a_failed_warmup_leaves_the_model_ready_and_logs_a_warning(
        fake_root: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(FakePredictor, "fail_warmup", True)
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        registry = _load(fake_root, warmup=True)
    assert registry.not_ready() == {}
    assert registry.get("lm") is next(p for p in LOADED if p.task == "lm")
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and "warm-up" in r.getMessage()]
    assert [r.getMessage().split(";")[0] for r in warnings] == [
        "warm-up of word2vec failed", "warm-up of lm failed"]
    assert warnings[0].exc_info and "exploded" in str(warnings[0].exc_info[1])


def test_warmup_can_be_turned_off(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_WARMUP", "false")
    registry = ModelRegistry(Settings(artifacts_dir=fake_root))
    registry.load_all()
    assert [p.warmups for p in LOADED] == [0, 0]


@pytest.mark.anyio
async def test_the_app_warms_up_before_readyz_turns_200(fake_root: Path) -> None:
    async with running_app(Settings(artifacts_dir=fake_root, warmup=True)) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert [p.warmups for p in LOADED] == [1, 1]


# ---------------------------------------------------------------- torch threads


@pytest.mark.anyio
@pytest.mark.parametrize(("threads", "calls"), [(3, [3]), (0, []), (None, [])])
async def test_torch_threads_are_set_at_startup(fake_root: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                threads: int | None, calls: list[int]) -> None:
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    async with running_app(Settings(artifacts_dir=fake_root, torch_threads=threads)):
        pass
    assert seen == calls


def test_torch_threads_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELZOO_TORCH_THREADS", "2")
    assert Settings().torch_threads == 2
    monkeypatch.setenv("MODELZOO_TORCH_THREADS", "-1")
    with pytest.raises(ValueError):
        Settings()
