"""Stop as a writer means it: end the generation, keep the text, say "stopped".

Cancelling a Gradio event (`cancels=[...]`) marks its outputs as failed: red
"Error" badges cover the text written so far. Instead, Stop raises a flag for
the browser session, the running handler sees it (streams poll it even before
their first token), ends the stream, which aborts the request in the engine,
and shows the text with a "stopped" status.
"""
from __future__ import annotations

import threading
from typing import Callable

import gradio as gr


class StopSignals:
    def __init__(self):
        self._raised: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _key(what: str, request: gr.Request) -> tuple[str, str]:
        return what, getattr(request, "session_hash", None) or "?"

    def start(self, what: str, request: gr.Request) -> Callable[[], bool]:
        """A new run of `what` in this session: clear an old flag, return the check."""
        key = self._key(what, request)
        with self._lock:
            self._raised.discard(key)
        return lambda: key in self._raised

    def raise_(self, what: str, request: gr.Request) -> None:
        with self._lock:
            self._raised.add(self._key(what, request))
