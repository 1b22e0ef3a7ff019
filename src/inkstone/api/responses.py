"""OpenAI-shaped answers from engine streams: server-sent events or one JSON body."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Optional, Sequence

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from ..engine.contract import EngineUnavailable, Finished, Text
from ..prompting import PreparedPrompt
from .errors import ApiError
from .streams import merge

log = logging.getLogger(__name__)


def unavailable(exc: BaseException) -> ApiError:
    return ApiError(503, str(exc), type="server_error", code="engine_unavailable")


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


@dataclass
class Answer:
    """One request's generations: choice i comes from streams[i], made from jobs[i]."""
    chat: bool
    model: str
    prepared: Sequence[PreparedPrompt]  # one per prompt
    jobs: Sequence[PreparedPrompt]  # one per choice (prompt × n)
    streams: list[AsyncIterator]
    want_memory: bool
    echo: bool = False

    def __post_init__(self):
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self, fins: Sequence[Optional[Finished]]) -> dict:
        prompt_tokens = sum(len(p.token_ids) for p in self.prepared)
        done = sum(f.output_tokens for f in fins if f is not None)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}

    def memories(self, p: PreparedPrompt) -> list[dict]:
        return [{"id": m.entry.id, "kind": m.entry.kind, "title": m.entry.title, "tokens": m.tokens}
                for m in p.memories]

    def echoed(self, i: int) -> str:
        return self.jobs[i].text if self.echo else ""


def stream_response(a: Answer, include_usage: bool, release: Callable[[], None]) -> StreamingResponse:
    head = {"id": a.id, "object": "chat.completion.chunk" if a.chat else "text_completion", "created": a.created,
            "model": a.model}

    def chunk(i: int, text: Optional[str], reason: Optional[str] = None, first: bool = False) -> str:
        if a.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": i, "text": (a.echoed(i) if first else "") + (text or ""), "logprobs": None,
                      "finish_reason": reason}
        body = {**head, "choices": [choice]}
        if first and a.want_memory:
            body["inkstone"] = {"memories": a.memories(a.jobs[i])}
        return _sse(body)

    async def events():
        fins: list[Optional[Finished]] = [None] * len(a.streams)
        try:
            if a.chat or a.want_memory or a.echo:
                for i in range(len(a.streams)):
                    yield chunk(i, None, first=True)
            async for i, ev in merge(a.streams):
                if isinstance(ev, Text):
                    yield chunk(i, ev.text)
                elif isinstance(ev, Finished):
                    fins[i] = ev
                    yield chunk(i, None, ev.finish_reason or "stop")
            if include_usage:
                yield _sse({**head, "choices": [], "usage": a.usage(fins)})
        except asyncio.CancelledError:
            log.info("client disconnected: %s aborted", a.id)
            raise
        except EngineUnavailable as exc:
            yield _sse(unavailable(exc).body())
        except Exception as exc:  # after the headers, errors travel in the stream
            log.exception("stream failed")
            yield _sse(ApiError(500, f"generation failed: {exc}", type="server_error").body())
        finally:
            release()
        yield "data: [DONE]\n\n"

    # Starlette cancels `events` when the client disconnects; the cancellation reaches
    # the engine stream, which aborts the request.
    return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _collect(a: Answer) -> tuple[list[str], list[Optional[Finished]]]:
    texts: list[list[str]] = [[] for _ in a.streams]
    fins: list[Optional[Finished]] = [None] * len(a.streams)
    async for i, ev in merge(a.streams):
        if isinstance(ev, Text):
            texts[i].append(ev.text)
        elif isinstance(ev, Finished):
            fins[i] = ev
    return ["".join(t) for t in texts], fins


async def json_response(request: Request, a: Answer) -> Response:
    """The whole answer at once; a client that hangs up stops the generations."""
    work = asyncio.ensure_future(_collect(a))
    gone = asyncio.ensure_future(_client_gone(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():  # the client hung up: stop generating for nobody
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        log.info("client disconnected: %s aborted", a.id)
        return Response(status_code=499)
    gone.cancel()
    try:
        texts, fins = work.result()
    except EngineUnavailable as exc:
        raise unavailable(exc) from exc
    except Exception as exc:
        log.exception("generation failed")
        raise ApiError(500, f"generation failed: {exc}", type="server_error") from exc
    choices = []
    for i, (text, fin) in enumerate(zip(texts, fins)):
        reason = (fin.finish_reason if fin else None) or "stop"
        if a.chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                            "finish_reason": reason})
        else:
            choices.append({"index": i, "text": a.echoed(i) + text, "logprobs": None, "finish_reason": reason})
    body = {"id": a.id, "object": "chat.completion" if a.chat else "text_completion", "created": a.created,
            "model": a.model, "choices": choices, "usage": a.usage(fins)}
    if a.want_memory:
        body["inkstone"] = {"memories": a.memories(a.prepared[0]) if len(a.prepared) == 1
                            else [a.memories(p) for p in a.prepared]}
    return JSONResponse(body)


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next
    ASGI message can only be the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
