"""The prefetching worker that overlaps chunking with embedding during ingest."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from rag.indexing.pipeline import prefetch


def test_items_arrive_in_order_from_another_thread() -> None:
    producers: set[str] = set()

    def produce() -> Iterator[int]:
        for i in range(200):
            producers.add(threading.current_thread().name)
            yield i

    assert list(prefetch(produce(), depth=4)) == list(range(200))
    assert producers == {"ragbot-prefetch"}


def test_a_producer_error_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad document")

    got: list[int] = []
    with pytest.raises(ValueError, match="bad document"):
        for item in prefetch(produce(), depth=1):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_worker() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    items = prefetch(produce(), depth=2)
    assert next(items) == 0
    items.close()
    assert len(produced) <= 5  # the one taken, the queue's two, one blocked in put, no more
    assert not any(t.name == "ragbot-prefetch" and t.is_alive() for t in threading.enumerate())
