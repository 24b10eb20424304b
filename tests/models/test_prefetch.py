"""The background-thread prefetcher keeps order and surfaces errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.common.prefetch import prefetch


def test_prefetch_yields_every_item_in_order() -> None:
    assert list(prefetch(iter(range(1000)), size=4)) == list(range(1000))


def test_prefetch_reraises_the_producers_error() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("bad batch")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="bad batch"):
        next(it)


def test_abandoning_the_iterator_stops_the_producer() -> None:
    produced: list[int] = []

    def counting() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    it = prefetch(counting(), size=2)
    assert next(it) == 0
    it.close()
    assert len(produced) < 100
