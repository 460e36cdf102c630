"""Run the producing side of a loop in a worker thread, a bounded queue ahead of the consumer.

Ingest uses it to read, redact and chunk the next documents while the model embeds the
previous ones: the forward pass runs in torch with the GIL released, so the two overlap.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], *, depth: int) -> Iterator[T]:
    """Yield `items` in order, produced up to `depth` ahead by one worker thread.

    An exception in the producer is raised in the consumer at the same position. Closing
    the iterator early (break, an exception, garbage collection) stops the worker.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, which raises it
            put(_Raised(e))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="ragbot-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            value = slots.get()
            if value is _DONE:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
