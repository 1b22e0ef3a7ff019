"""OpenAI-compatible HTTP API, served by the web UI's own process and engine.

`create_router(ctx, api_key)` returns a FastAPI router that the web UI mounts
beside Gradio: `GET /v1/models`, `POST /v1/completions`, `POST
/v1/chat/completions`, streaming as server-sent events (`data: {...}`, ending
with `data: [DONE]`). The base model and every adapter are model names. An
extra request field, `"inkstone": {"story": "name", "use_memory": true}`,
reminds the model of that story's memories (prepended to the prompt, or to
the last user message in chat), within the memory token budget.

Handlers run on Gradio's event loop; tokens come from `EngineBridge.astream`,
which hops them over from the engine's loop without holding a thread per
stream. A client that disconnects aborts its request inside the engine.

Limits (body size, prompts, n, stop strings, prompt tokens, generations at
once per client and in all) are checked before any work: see limits.py.

Keys: when an API key is configured, every route wants `Authorization: Bearer
KEY`. When the app is shared (`webui.share`) and no key is set, the router
makes up a random key for this run and logs it once: a public link never
serves the API unauthenticated. Sampling fields left out of a request take the
values of the `[inference]` config section; `max_tokens` left out means that
section's max_tokens, shortened to what fits into the context.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ..inference.engine import AdapterError, EngineUnavailable, Finished, GenerationParams, Text
from ..inference.prompts import PromptTooLong, memory_block
from ..memory.store import MemoryEntry
from .errors import ApiError
from .limits import ConcurrencyGate, check_request, read_json
from .schemas import ChatRequest, CompletionRequest, InkstoneOptions
from .streams import first_events, merge

log = logging.getLogger(__name__)


def _unavailable(exc: BaseException) -> ApiError:
    return ApiError(503, str(exc), type="server_error", code="engine_unavailable")


@dataclass
class PreparedPrompt:
    text: str
    ids: list[int]
    max_tokens: int
    memories: list[MemoryEntry] = field(default_factory=list)


def _dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _sse(obj: dict) -> str:
    return f"data: {_dumps(obj)}\n\n"


def _is_client_error(exc: BaseException) -> bool:
    # vLLM's own request validation errors, recognised without importing vLLM here
    return isinstance(exc, (PromptTooLong, AdapterError, ValueError)) or any(
        c.__name__ == "VLLMClientError" for c in type(exc).__mro__
    )


def create_router(ctx, api_key: Optional[str] = None, *, guarded: bool = False,
                  session_user: Optional[Callable[[Request], Optional[str]]] = None) -> APIRouter:
    """The /v1 routes over `ctx.bridge` (ctx: webui.app.AppContext). `guarded`: a request
    needs the key or, through `session_user`, the session of a logged-in browser
    (see webui/access.py); without it, only a configured key is asked for."""
    bridge = ctx.bridge
    inf = ctx.cfg.inference
    if not api_key and getattr(ctx.cfg.webui, "share", False):
        api_key = secrets.token_urlsafe(24)
        log.warning(
            "The app is shared and no API key is set (webui.api_key / INKSTONE_WEBUI__API_KEY): "
            "the OpenAI-compatible API at /v1 accepts only this key, made up for this run: %s", api_key,
        )
    expected = f"Bearer {api_key}".encode() if api_key else None
    router = APIRouter(prefix="/v1")
    limits = ctx.cfg.limits
    gate = ConcurrencyGate(limits.max_concurrent_per_client, limits.max_concurrent)

    # ---- helpers ------------------------------------------------------------------------
    def check_key(request: Request) -> None:
        if expected is None and not guarded:
            return  # loopback, no login, no key: as private as the machine
        given = request.headers.get("authorization", "")
        if expected is not None and given and secrets.compare_digest(given.encode(), expected):
            return
        if session_user is not None and session_user(request):
            return
        if not given:
            raise ApiError(401, "Missing API key: send the header 'Authorization: Bearer KEY', "
                                "or log in to the studio in this browser.", code="invalid_api_key")
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def check_engine() -> None:
        if bridge.state != "ready":
            raise _unavailable(EngineUnavailable(
                "the engine is restarting after a crash; try again in a minute" if bridge.state == "restarting"
                else f"the engine is not available ({bridge.state})"))

    def model_names() -> list[str]:
        return [bridge.settings.model_name] + sorted(bridge.available_adapters())

    def adapter_for(name: str) -> Optional[str]:
        if name == bridge.settings.model_name:
            return None
        if name in bridge.available_adapters():
            return name
        names = model_names()
        raise ApiError(404, f"The model `{name}` does not exist. Available models: {', '.join(names)}",
                       param="model", code="model_not_found", models=names)

    async def parse(request: Request, schema: type[BaseModel]):
        raw = await read_json(request, max_bytes=limits.max_body_bytes, max_depth=limits.max_json_depth)
        try:
            req = schema.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, f"Invalid field '{where}': {first['msg']}", param=where) from exc
        feature = req.unsupported()
        if feature:
            raise ApiError(400, f"'{feature}' is not supported by this server", param=feature)
        prompts = getattr(req, "prompt", None)
        check_request(req, limits, prompts=len(prompts) if isinstance(prompts, list) else 1)
        return req

    def client_of(request: Request) -> str:
        """Whom a request counts against: its key, else its address."""
        return request.headers.get("authorization") or (request.client.host if request.client else "?")

    def params_for(req, max_tokens: int, k: int) -> GenerationParams:
        seed = req.seed if req.seed is not None else inf.seed
        return GenerationParams(
            temperature=inf.temperature if req.temperature is None else req.temperature,
            top_p=inf.top_p if req.top_p is None else req.top_p,
            top_k=inf.top_k if req.top_k is None else req.top_k,
            repetition_penalty=inf.repetition_penalty if req.repetition_penalty is None else req.repetition_penalty,
            max_tokens=max_tokens, seed=None if seed is None else seed + k,  # n > 1: different samples
            min_tokens=min(req.min_tokens, max_tokens),
        )

    def fit(render: Callable[[list[MemoryEntry]], tuple[str, bool]], query: str,
            opts: Optional[InkstoneOptions], requested: Optional[int], what: str) -> PreparedPrompt:
        """Render and tokenize one prompt, check it against the context, add memories that fit.
        Runs on a worker thread (tokenizing and memory search are not for the event loop)."""
        tok = bridge.tokenizer
        limit = bridge.settings.max_model_len

        def encode(mems):
            text, templated = render(mems)
            # a chat template writes its own special tokens; plain text gets the tokenizer's (e.g. <bos>)
            return text, tok(text, add_special_tokens=not templated).input_ids

        text, ids = encode([])
        max_tokens = requested if requested is not None else min(inf.max_tokens, limit - len(ids))
        if max_tokens < 1 or len(ids) + max_tokens > limit:
            raise ApiError(
                400, f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(ids) + max(max_tokens, 1)} tokens ({len(ids)} in the {what}, {max(max_tokens, 1)} for the "
                f"completion). Please reduce the length of the {what} or max_tokens.",
                param="max_tokens" if requested is not None else what, code="context_length_exceeded",
            )
        kept: list[MemoryEntry] = []
        if opts is not None and opts.memory_on and query.strip():
            room = min(bridge.settings.memory_token_budget, limit - max_tokens - len(ids)) - 16  # header, seams
            used = 0
            for m in bridge.retrieve(query, opts.story) if bridge.memory is not None else []:
                cost = len(tok(f"- [{m.kind}] {m.as_prompt_line()}\n", add_special_tokens=False).input_ids)
                if used + cost <= room:
                    kept.append(m)
                    used += cost
            while kept:
                mem_text, mem_ids = encode(kept)
                if len(mem_ids) + max_tokens <= limit:
                    text, ids = mem_text, mem_ids
                    break
                kept.pop()
        return PreparedPrompt(text, ids, max_tokens, kept)

    def render_chat(messages: list[dict]) -> tuple[str, bool]:
        tok = bridge.tokenizer
        if getattr(tok, "chat_template", None):
            try:
                return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
            except Exception as exc:  # jinja's TemplateError: e.g. roles that must alternate
                raise ApiError(400, f"The model's chat template refused these messages: {exc}",
                               param="messages") from exc
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:", False

    def prepare_chat(req: ChatRequest) -> list[PreparedPrompt]:
        try:
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in req.messages]
        except ValueError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]

        def render(mems: list[MemoryEntry]) -> tuple[str, bool]:
            if not mems or not users:
                return render_chat(messages)
            i = users[-1]  # memories go in front of the latest request, as the Write tab does
            with_mem = [dict(m) for m in messages]
            with_mem[i]["content"] = memory_block(mems) + "\n\n" + with_mem[i]["content"]
            return render_chat(with_mem)

        query = messages[users[-1]]["content"][-1000:] if users else ""
        return [fit(render, query, req.inkstone, req.requested_max_tokens(), "messages")]

    def prepare_completion(req: CompletionRequest) -> list[PreparedPrompt]:
        out = []
        for prompt in req.prompts():
            def render(mems: list[MemoryEntry], prompt=prompt) -> tuple[str, bool]:
                return (memory_block(mems) + "\n\n" + prompt if mems else prompt), False

            out.append(fit(render, prompt[-1000:], req.inkstone, req.max_tokens, "prompt"))
        return out

    def memories_info(p: PreparedPrompt) -> list[dict]:
        return [{"id": m.id, "kind": m.kind, "title": m.title} for m in p.memories]

    async def answer(request: Request, req, chat: bool, prepared: Sequence[PreparedPrompt],
                     adapter: Optional[str]) -> Response:
        # one engine request per (prompt, sample); choice index = prompt * n + sample
        jobs = [p for p in prepared for _ in range(req.n)]
        too_long = next((p for p in prepared if limits.max_prompt_tokens and len(p.ids) > limits.max_prompt_tokens),
                        None)
        if too_long is not None:
            raise ApiError(400, f"the prompt is {len(too_long.ids)} tokens; at most {limits.max_prompt_tokens} "
                                "(limits.max_prompt_tokens).", param="prompt")
        client = client_of(request)
        gate.acquire(client, len(jobs))
        released = []

        def release() -> None:  # once, whichever way the request ends
            if not released:
                released.append(True)
                gate.release(client, len(jobs))

        try:
            response = await generate(request, req, chat, prepared, jobs, adapter, release)
        except BaseException:
            release()
            raise
        if not isinstance(response, StreamingResponse):
            release()
        return response

    async def generate(request: Request, req, chat: bool, prepared: Sequence[PreparedPrompt],
                       jobs: list[PreparedPrompt], adapter: Optional[str], release: Callable[[], None]) -> Response:
        """Runs the generations of one request. A stream calls `release` when it ends, not
        when its response starts."""
        streams = [
            bridge.astream(p.ids, params_for(req, p.max_tokens, k % req.n), adapter=adapter, stop=req.stop_list(),
                           presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                           prompt_text=p.text, memories=tuple(p.memories))
            for k, p in enumerate(jobs)
        ]
        try:
            await first_events(streams)  # refused requests answer 400 before any text is sent
        except Exception as exc:
            if isinstance(exc, EngineUnavailable):
                raise _unavailable(exc) from exc
            if _is_client_error(exc):
                raise ApiError(400, str(exc)) from exc
            raise
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
                "model": req.model}
        want_memory = req.inkstone is not None and req.inkstone.memory_on
        prompt_tokens = sum(len(p.ids) for p in prepared)

        def usage(fins: Sequence[Optional[Finished]]) -> dict:
            done = sum(f.output_tokens for f in fins if f is not None)
            return {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def chunk(i: int, text: Optional[str], reason: Optional[str] = None, first: bool = False) -> str:
                if chat:
                    delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
                    choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
                else:
                    choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": reason}
                body = {**head, "choices": [choice]}
                if first and want_memory:
                    body["inkstone"] = {"memories": memories_info(jobs[i])}
                return _sse(body)

            async def events():
                fins: list[Optional[Finished]] = [None] * len(streams)
                try:
                    if chat or want_memory:
                        for i in range(len(streams)):
                            yield chunk(i, None, first=True)
                    async for i, ev in merge(streams):
                        if isinstance(ev, Text):
                            yield chunk(i, ev.text)
                        elif isinstance(ev, Finished):
                            fins[i] = ev
                            yield chunk(i, None, ev.finish_reason or "stop")
                    if include_usage:
                        yield _sse({**head, "choices": [], "usage": usage(fins)})
                except asyncio.CancelledError:
                    log.info("client disconnected: %s aborted", rid)
                    raise
                except EngineUnavailable as exc:
                    yield _sse(_unavailable(exc).body())
                except Exception as exc:  # after the headers, errors travel in the stream
                    log.exception("stream failed")
                    yield _sse(ApiError(500, f"generation failed: {exc}", type="server_error").body())
                finally:
                    release()
                yield "data: [DONE]\n\n"

            # Starlette cancels `events` when the client disconnects; the cancellation reaches
            # astream, which aborts the request in the engine.
            return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release),
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        async def collect():
            texts: list[list[str]] = [[] for _ in streams]
            fins: list[Optional[Finished]] = [None] * len(streams)
            async for i, ev in merge(streams):
                if isinstance(ev, Text):
                    texts[i].append(ev.text)
                elif isinstance(ev, Finished):
                    fins[i] = ev
            return ["".join(t) for t in texts], fins

        work = asyncio.ensure_future(collect())
        gone = asyncio.ensure_future(_client_gone(request))
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the client hung up: stop generating for nobody
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            log.info("client disconnected: %s aborted", rid)
            return Response(status_code=499)
        gone.cancel()
        try:
            texts, fins = work.result()
        except EngineUnavailable as exc:
            raise _unavailable(exc) from exc
        except Exception as exc:
            log.exception("generation failed")
            raise ApiError(500, f"generation failed: {exc}", type="server_error") from exc
        choices = []
        for i, (text, fin) in enumerate(zip(texts, fins)):
            reason = (fin.finish_reason if fin else None) or "stop"
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                                "finish_reason": reason})
            else:
                choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": reason})
        body = {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": req.model, "choices": choices, "usage": usage(fins)}
        if want_memory:
            body["inkstone"] = {"memories": memories_info(prepared[0]) if len(prepared) == 1
                                else [memories_info(p) for p in prepared]}
        return JSONResponse(body)

    # ---- routes ---------------------------------------------------------------------------
    def model_card(name: str) -> dict:
        card = {"id": name, "object": "model", "created": int(bridge.started_at or time.time()),
                "owned_by": "inkstone", "max_model_len": bridge.settings.max_model_len}
        if name != bridge.settings.model_name:
            card["parent"] = bridge.settings.model_name
        return card

    @router.get("/models")
    async def list_models(request: Request):
        try:
            check_key(request)
            names = await run_in_threadpool(model_names)  # scans the adapter folders
            return {"object": "list", "data": [model_card(n) for n in names]}
        except ApiError as e:
            return e.response()

    @router.get("/models/{model:path}")
    async def get_model(model: str, request: Request):
        try:
            check_key(request)
            await run_in_threadpool(adapter_for, model)
            return model_card(model)
        except ApiError as e:
            return e.response()

    @router.get("/health")
    async def health(request: Request):
        """200 while the engine serves, 503 (with Retry-After) while it restarts."""
        try:
            check_key(request)
        except ApiError as e:
            return e.response()
        state = bridge.health()
        return JSONResponse(state, status_code=200 if state["state"] == "ready" else 503)

    @router.post("/completions")
    async def completions(request: Request):
        try:
            check_key(request)
            check_engine()
            req = await parse(request, CompletionRequest)
            adapter = await run_in_threadpool(adapter_for, req.model)
            prepared = await run_in_threadpool(prepare_completion, req)
            return await answer(request, req, False, prepared, adapter)
        except ApiError as e:
            return e.response()

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            check_key(request)
            check_engine()
            req = await parse(request, ChatRequest)
            adapter = await run_in_threadpool(adapter_for, req.model)
            prepared = await run_in_threadpool(prepare_chat, req)
            return await answer(request, req, True, prepared, adapter)
        except ApiError as e:
            return e.response()

    router.api_key_required = expected is not None or guarded  # for the app's status page and tests
    return router


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next
    ASGI message can only be the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
