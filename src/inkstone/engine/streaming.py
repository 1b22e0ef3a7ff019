"""Text updates paced for people: merge a stream's deltas into one update per interval."""
from __future__ import annotations

import queue
import time
from typing import Callable, Iterator, Optional

from .contract import Text

END = object()  # the last item a producer puts, after everything else (errors included)


# How often a waiting stream looks at its stop signal (before the first token, say).
STOP_POLL_S = 0.1


def coalesced(q: queue.SimpleQueue, interval_fn: Callable[[], float],
              should_stop: Optional[Callable[[], bool]] = None) -> Iterator:
    """Events from `q` until END, with Text events merged into one per `interval_fn()`
    seconds. The first chunk goes out at once (time to first token matters); later
    ones wait for the interval. An exception put on the queue is raised. When
    `should_stop()` turns true the stream ends quietly, after what it already holds."""
    pending: list[str] = []
    last_flush = float("-inf")
    while True:
        if should_stop is not None and should_stop():
            if pending:
                yield Text("".join(pending))
            return
        interval = interval_fn()
        wait = max(0.0, last_flush + interval - time.perf_counter()) if pending else None
        if should_stop is not None:
            wait = STOP_POLL_S if wait is None else min(wait, STOP_POLL_S)
        try:
            item = q.get_nowait() if wait == 0.0 else q.get(timeout=wait)
        except queue.Empty:
            item = None  # the interval is over: flush what we have
        if isinstance(item, Text):
            pending.append(item.text)
            if time.perf_counter() - last_flush < interval:
                continue
        if pending:
            yield Text("".join(pending))
            pending.clear()
            last_flush = time.perf_counter()
        if item is None or isinstance(item, Text):
            continue
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
