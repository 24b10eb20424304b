"""The glibc malloc arena cap applied at startup (app.main.limit_malloc_arenas)."""

from __future__ import annotations

import platform

import pytest

from app.main import limit_malloc_arenas

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")


@glibc
def test_the_cap_is_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True


def test_zero_leaves_glibc_alone() -> None:
    assert limit_malloc_arenas(0) is False


def test_an_explicit_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False
