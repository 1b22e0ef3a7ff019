"""An OpenAI-compatible server as the engine: another machine's vLLM, or a hosted model.

It implements the same contract as VllmEngine, so the Studio, the modes and the
History work unchanged. The prompt service still assembles the prompt with the
local tokenizer (for its token budget); the text of those token ids is sent to
`/completions`, and the server streams the continuation back as server-sent
events. Closing the stream (Stop, a client hanging up) closes the connection,
which a vLLM server takes as an abort.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence

import httpx

from .contract import Accepted, Adapter, EngineUnavailable, Finished, GenerationParams, StreamEvent, Text


class OpenAIRemoteEngine:
    def __init__(self, url: str, model: str, tokenizer, *, max_model_len: int, api_key: Optional[str] = None,
                 extra_sampling: bool = True, timeout_s: float = 600.0):
        if not url or not model:
            raise ValueError("the remote engine needs remote.url and remote.model in the config")
        self.url = url.rstrip("/") + "/completions"
        self.model = model
        self.model_name = f"{model} @ {url}"
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.extra_sampling = extra_sampling
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=10.0)
        self.state = "stopped"
        self.started_at: Optional[float] = None

    # ---- lifecycle: nothing runs here; "ready" once the server answered ----------------
    def start(self) -> "OpenAIRemoteEngine":
        self.state, self.started_at = "ready", time.time()
        return self

    def stop(self) -> None:
        self.state = "stopped"

    def health(self) -> dict:
        return {"state": self.state, "restarts": []}

    def preload(self, adapter: Optional[Adapter]) -> Future:
        done: Future = Future()
        done.set_result(None)  # the server loads its adapters itself
        return done

    def adapter_ready(self, adapter: Optional[Adapter]) -> bool:
        return True

    # ---- generation ------------------------------------------------------------------
    def request_body(self, prompt_ids: Sequence[int], params: GenerationParams,
                     adapter: Optional[Adapter]) -> dict:
        """The JSON of one streamed completion; an adapter is a model name on the server."""
        body: dict[str, Any] = {
            "model": adapter.name if adapter else self.model, "prompt": self.prompt_text(prompt_ids),
            "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "stream": True, "stream_options": {"include_usage": True},
        }
        optional = {"seed": params.seed, "stop": list(params.stop) or None,
                    "presence_penalty": params.presence_penalty or None,
                    "frequency_penalty": params.frequency_penalty or None}
        if params.json_schema:
            optional["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": params.json_schema}}
        if self.extra_sampling:
            optional.update(top_k=params.top_k, repetition_penalty=params.repetition_penalty,
                            min_tokens=params.min_tokens or None)
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def prompt_text(self, prompt_ids: Sequence[int]) -> str:
        """The prompt as text, without the local tokenizer's begin-of-text (the server adds its own)."""
        ids = list(prompt_ids)
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if ids and bos is not None and ids[0] == bos:
            ids = ids[1:]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def stream(self, prompt_ids: Sequence[int], params: GenerationParams, adapter: Optional[Adapter] = None,
               *, coalesce: bool = True, should_stop: Optional[Callable[[], bool]] = None,
               image: Any = None) -> Iterator[StreamEvent]:
        if image is not None:
            raise ValueError("the remote engine takes text prompts only")
        events = _Events()
        yield Accepted(prompt_tokens=len(prompt_ids))
        try:
            with httpx.Client(timeout=self.timeout) as client, client.stream(
                    "POST", self.url, json=self.request_body(prompt_ids, params, adapter),
                    headers=self.headers) as response:
                self._check(response, response.read() if response.status_code >= 400 else b"")
                for line in response.iter_lines():
                    yield from events.feed(line)
                    if should_stop is not None and should_stop():
                        return  # leaving the block closes the connection: the server aborts
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the remote engine at {self.url} did not answer: {exc}") from exc
        yield events.finished()

    async def astream(self, prompt_ids: Sequence[int], params: GenerationParams,
                      adapter: Optional[Adapter] = None, *, image: Any = None) -> AsyncIterator[StreamEvent]:
        if image is not None:
            raise ValueError("the remote engine takes text prompts only")
        events = _Events()
        yield Accepted(prompt_tokens=len(prompt_ids))
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client, client.stream(
                    "POST", self.url, json=self.request_body(prompt_ids, params, adapter),
                    headers=self.headers) as response:
                self._check(response, await response.aread() if response.status_code >= 400 else b"")
                async for line in response.aiter_lines():
                    for ev in events.feed(line):
                        yield ev
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the remote engine at {self.url} did not answer: {exc}") from exc
        yield events.finished()

    def _check(self, response: httpx.Response, body: bytes) -> None:
        if response.status_code < 400:
            return
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body[:300].decode("utf-8", "replace")
        if response.status_code in (400, 404, 413, 422):  # the request's fault: say so, like a local refusal
            raise ValueError(f"the remote engine refused the request ({response.status_code}): {message}")
        raise EngineUnavailable(f"the remote engine at {self.url} failed ({response.status_code}): {message}")


class _Events:
    """Server-sent event lines of a streamed completion -> Text events, then one Finished."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first: Optional[float] = None
        self.reason: Optional[str] = None
        self.output_tokens: Optional[int] = None
        self.pieces = 0

    def feed(self, line: str) -> list[StreamEvent]:
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            return []
        chunk = json.loads(line[5:])
        if chunk.get("usage"):
            self.output_tokens = chunk["usage"].get("completion_tokens")
        out: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            self.reason = choice.get("finish_reason") or self.reason
            if choice.get("text"):
                self.first = self.first or time.perf_counter() - self.started
                self.pieces += 1
                out.append(Text(choice["text"]))
        return out

    def finished(self) -> Finished:
        # Without usage in the stream, each streamed piece stands for one token (vLLM sends one each).
        tokens = self.output_tokens if self.output_tokens is not None else self.pieces
        return Finished(output_tokens=tokens, finish_reason=self.reason, ttft_s=self.first,
                        elapsed_s=time.perf_counter() - self.started)
