"""What one API request may ask for, checked before any work is done.

Bodies are read with a size cap (413), parsed JSON is checked for depth and
for unpaired UTF-16 surrogates (400: no tokenizer takes them, and they would
fail later as a 500), requests are checked against the prompt, sample and
stop-string limits (400), and generations running at once are counted per
client and in all (429 with Retry-After beyond). Limits come from the
config's `[limits]` section.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ..data.encoding import LONE_SURROGATE
from .errors import ApiError


async def read_json(request, *, max_bytes: int, max_depth: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"The request body is {int(declared)} bytes; at most {max_bytes} are accepted "
                            "(limits.max_body_bytes).", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"The request body is over {max_bytes} bytes (limits.max_body_bytes).",
                           code="body_too_large")
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(400, f"The request body is nested too deeply (at most {max_depth} levels).") from exc
    check_json(value, max_depth)
    return value


def check_json(value: Any, max_depth: int) -> None:
    """Depth and unpaired surrogates, walked without recursion; the error names the field."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ApiError(400, f"The request body is nested too deeply at '{path or '$'}' "
                                    f"(at most {max_depth} levels).", param=path or None)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, sub in pairs:
                if isinstance(key, str) and LONE_SURROGATE.search(key):
                    raise ApiError(400, f"A key under '{path or '$'}' holds an unpaired UTF-16 surrogate.")
                stack.append((sub, depth + 1, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, str) and LONE_SURROGATE.search(item):
            raise ApiError(400, f"Field '{path}' holds an unpaired UTF-16 surrogate escape (such as \\ud800), "
                                "which no tokenizer takes.", param=path or None)


def check_request(req, limits, *, prompts: int) -> None:
    """Prompt count, samples and stop strings within the configured limits."""
    if prompts > limits.max_prompts:
        raise ApiError(400, f"{prompts} prompts in one request; at most {limits.max_prompts} "
                            "(limits.max_prompts).", param="prompt")
    if req.n > limits.max_n:
        raise ApiError(400, f"n is {req.n}; at most {limits.max_n} (limits.max_n).", param="n")
    stops = req.stop_list()
    if len(stops) > limits.max_stop:
        raise ApiError(400, f"{len(stops)} stop strings; at most {limits.max_stop} (limits.max_stop).",
                       param="stop")
    long = next((s for s in stops if len(s) > limits.max_stop_chars), None)
    if long is not None:
        raise ApiError(400, f"a stop string of {len(long)} characters; at most {limits.max_stop_chars} "
                            "(limits.max_stop_chars).", param="stop")


class ConcurrencyGate:
    """Counts generations running at once, per client and in all."""

    def __init__(self, per_client: int, total: int):
        self.per_client, self.total = per_client, total
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._all = 0

    def acquire(self, client: str, count: int) -> None:
        with self._lock:
            mine = self._running.get(client, 0)
            if mine + count > self.per_client:
                raise ApiError(429, f"{mine} generations of yours are running and this request adds {count}; "
                                    f"at most {self.per_client} at once (limits.max_concurrent_per_client).",
                               type="rate_limit_error", code="too_many_concurrent", retry_after=1)
            if self._all + count > self.total:
                raise ApiError(429, f"the server is running {self._all} generations; at most {self.total} at "
                                    "once (limits.max_concurrent). Try again shortly.",
                               type="rate_limit_error", code="server_busy", retry_after=1)
            self._running[client] = mine + count
            self._all += count

    def release(self, client: str, count: int) -> None:
        with self._lock:
            left = self._running.get(client, 0) - count
            if left > 0:
                self._running[client] = left
            else:
                self._running.pop(client, None)
            self._all -= count

    @contextmanager
    def hold(self, client: str, count: int) -> Iterator[None]:
        self.acquire(client, count)
        try:
            yield
        finally:
            self.release(client, count)
