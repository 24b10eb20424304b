"""MODELZOO_QUANTIZE: the 'auto' default quantizes INT8_BY_DEFAULT tasks on CPU only."""

from __future__ import annotations

import pytest

from app.config import INT8_BY_DEFAULT, Settings


def test_auto_is_the_default_and_quantizes_only_listed_tasks_on_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELZOO_QUANTIZE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    settings = Settings(device="auto")
    assert settings.quantize == "auto"
    assert settings.quantize_task("handwriting") and "handwriting" in INT8_BY_DEFAULT
    assert not settings.quantize_task("lm") and not settings.quantize_task("translation")


def test_auto_quantizes_nothing_when_cuda_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert not Settings(device="auto", quantize="auto").quantize_task("handwriting")
    assert not Settings(device="cuda", quantize="auto").quantize_task("handwriting")
    assert Settings(device="cpu", quantize="auto").quantize_task("handwriting")


def test_explicit_lists_all_and_none_override_auto() -> None:
    assert Settings(quantize="lm,matching").quantize_task("matching")
    assert not Settings(quantize="lm,matching").quantize_task("handwriting")
    assert Settings(quantize="all").quantize_task("translation")
    assert not Settings(quantize="none").quantize_task("handwriting")
    with pytest.raises(ValueError, match="'auto' / 'all' / 'none'"):
        Settings(quantize="fastest")
