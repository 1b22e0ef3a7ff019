"""The memory store behind one worker thread.

ChromaDB and the embedder are not for an event loop (embedding a query takes
milliseconds of CPU) nor for many threads at once, so every use of the store
goes through this one thread: `call` from a thread, `acall` from an event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable, Optional

from .store import MemoryEntry, MemoryStore


class MemoryAccess:
    def __init__(self, store: MemoryStore):
        self.store = store
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")

    def run(self, fn: Callable[[MemoryStore], Any]):
        """fn(store) on the store's thread, waited for from this thread."""
        return self._worker.submit(fn, self.store).result()

    def call(self, method: str, *args, **kwargs):
        """A MemoryStore method on the store's thread."""
        return self.run(lambda store: getattr(store, method)(*args, **kwargs))

    async def acall(self, method: str, *args, **kwargs):
        """A MemoryStore method on the store's thread, awaited on the caller's loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, lambda: getattr(self.store, method)(*args, **kwargs))

    def relevant(self, query: str, *, story: Optional[str], limit: int) -> list[MemoryEntry]:
        """The memories a generation is reminded of: the best of each kind, most relevant first."""
        if limit <= 0 or not query.strip():
            return []
        hits = self.call("search_each_kind", query, k_per_kind=max(1, limit // 4), story=story)
        return [h.entry for h in hits[:limit]]

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self.store.close()
