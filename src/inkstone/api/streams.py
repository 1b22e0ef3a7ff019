"""Run several engine streams at once on one event loop and interleave their events.

Used by the HTTP API (n > 1, a list of prompts) and the Compare tab. Each
stream is an async iterator from `EngineBridge.astream`; cancelling the merge
cancels every stream, which aborts its request inside the engine.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Sequence

_DONE = object()


async def first_events(streams: Sequence[AsyncIterator]) -> list[Any]:
    """Await the first event of every stream (the engine's `Prepared`, sent once a
    request is accepted). If any stream fails, close them all and raise its error,
    so the caller can answer with an error before it sends any text."""
    results = await asyncio.gather(*(s.__anext__() for s in streams), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await close_all(streams)
        raise failed[0]
    return results


async def close_all(streams: Sequence[AsyncIterator]) -> None:
    for s in streams:
        aclose = getattr(s, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except (RuntimeError, StopAsyncIteration):  # already running/finished: nothing to close
                pass


async def merge(streams: Sequence[AsyncIterator]) -> AsyncIterator[tuple[int, Any]]:
    """Yield (stream index, event) as events arrive from any stream. An error in
    one stream is raised here (after the others are cancelled)."""
    if len(streams) == 1:  # the common case: no extra hop
        async for ev in streams[0]:
            yield 0, ev
        return
    q: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, s: AsyncIterator) -> None:
        try:
            async for ev in s:
                q.put_nowait((i, ev))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            q.put_nowait((i, exc))
        finally:
            q.put_nowait((i, _DONE))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            i, ev = await q.get()
            if ev is _DONE:
                running -= 1
            elif isinstance(ev, BaseException):
                raise ev
            else:
                yield i, ev
    finally:
        for t in tasks:
            t.cancel()  # a stream still going is aborted in the engine
        await asyncio.gather(*tasks, return_exceptions=True)


def _next_unless_stopped(q, should_stop, poll_s: float = 0.1):
    """The next item of `q`, or None once `should_stop()` is true (checked while waiting)."""
    import queue

    while True:
        if should_stop is not None and should_stop():
            return None
        try:
            return q.get(timeout=poll_s if should_stop is not None else None)
        except queue.Empty:
            continue


def iterate_merged(make_streams, interval: float = 0.0, should_stop=None):
    """Run `merge(make_streams())` on a private event loop in a worker thread, for
    synchronous code such as a Gradio generator handler. Yields lists of
    (index, event): everything that arrived within `interval` seconds of the
    first one (0: one event per list). Errors from a stream are raised here.
    Closing the iterator, or `should_stop()` turning true, cancels every stream,
    so the engine aborts them."""
    import queue
    import threading

    q: queue.SimpleQueue = queue.SimpleQueue()
    state: dict = {}
    started = threading.Event()

    async def main():
        state["task"] = asyncio.current_task()
        state["loop"] = asyncio.get_running_loop()
        started.set()
        streams = make_streams()
        try:
            async for pair in merge(streams):
                q.put(pair)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            q.put(exc)
        finally:
            q.put(_DONE)

    def run():
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        finally:
            started.set()

    worker = threading.Thread(target=run, name="merged-streams", daemon=True)
    worker.start()
    started.wait()
    try:
        while True:
            first = _next_unless_stopped(q, should_stop)
            if first is None:
                return  # stopped: the finally below cancels every stream
            batch = [first]
            if interval:
                deadline = time.perf_counter() + interval
                while batch[-1] is not _DONE and not isinstance(batch[-1], BaseException):
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    try:
                        batch.append(q.get(timeout=left))
                    except queue.Empty:
                        break
            end = batch[-1] is _DONE or isinstance(batch[-1], BaseException)
            events = [b for b in batch if b is not _DONE and not isinstance(b, BaseException)]
            if events:
                yield events
            if isinstance(batch[-1], BaseException):
                raise batch[-1]
            if end:
                return
    finally:
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None and not task.done():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # loop already closed
                pass
        worker.join(timeout=10)
