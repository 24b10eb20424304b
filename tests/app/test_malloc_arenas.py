"""glibc malloc tuning: the arena cap applied at startup (app.main) and the mmap threshold
the word2vec trainer sets (models.common.malloc)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from app.main import limit_malloc_arenas
from models.common.malloc import keep_freed_memory

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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@glibc
def test_the_mmap_threshold_keeps_multi_megabyte_blocks_in_the_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = _MallInfo2
    assert keep_freed_memory() is True
    mapped = libc.mallinfo2().hblks  # blocks glibc serves with mmap
    block = libc.malloc(4 * 2**20)  # a 4 MiB tensor's worth: above glibc's default 128 KiB
    try:
        assert libc.mallinfo2().hblks == mapped
    finally:
        libc.free(block)


def test_explicit_malloc_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
