"""OpenAI-compatible HTTP API, served by the web UI's own process and engine.

`create_router(ctx, api_key)` returns a FastAPI router that the web UI mounts
beside Gradio: `GET /v1/models`, `GET /v1/modes`, `GET /v1/health`, `POST /v1/completions`,
`POST /v1/chat/completions`, streaming as server-sent events (`data: {...}`,
ending with `data: [DONE]`). The base model and every adapter are model names.

Prompts come from the prompt service like every other generation: a
completion's prompt is the "raw" mode, a chat's messages the "chat" mode, and
the extra field `"inkstone": {"story": "name", "use_memory": true, "mode":
"continue", "story_text": "..."}` names the story (memories, history) and, with
a writing mode, asks for exactly the prompt the Write tab would build. Every
generation is kept in that story's history.

Handlers run on Gradio's event loop; tokens come from the engine's async
stream, which hops them over from the engine's loop without holding a thread
per stream. A client that disconnects aborts its request inside the engine.
Limits (body size, prompts, n, stop strings, prompt tokens, generations at
once per client and in all) are checked before any work: see limits.py.
Sampling fields left out of a request take the values of the `[inference]`
config section; `max_tokens` left out means that section's max_tokens,
shortened to what fits into the context.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from ..checkpoints import AdapterError
from ..engine.contract import EngineUnavailable, GenerationParams, PromptTooLong
from ..prompting import PreparedPrompt, PromptRequest, get_mode, list_modes
from .auth import KeyCheck, client_of
from .errors import ApiError
from .limits import ConcurrencyGate, check_request, read_json
from .responses import Answer, json_response, stream_response, unavailable
from .schemas import ChatRequest, CompletionRequest
from .streams import first_events


def _is_client_error(exc: BaseException) -> bool:
    # vLLM's own request validation errors, recognised without importing vLLM here
    return isinstance(exc, (AdapterError, ValueError)) or any(
        c.__name__ == "VLLMClientError" for c in type(exc).__mro__)


class OpenAIServer:
    """The work behind the routes, over the app's Studio (ctx: webui.app.AppContext)."""

    def __init__(self, ctx, check_key: KeyCheck):
        self.studio, self.engine, self.adapters = ctx.studio, ctx.engine, ctx.adapters
        self.inf, self.limits = ctx.cfg.inference, ctx.cfg.limits
        self.check_key = check_key
        self.gate = ConcurrencyGate(self.limits.max_concurrent_per_client, self.limits.max_concurrent)

    # ---- models ---------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [self.engine.model_name] + self.adapters.names()

    def adapter_for(self, name: str) -> Optional[str]:
        if name == self.engine.model_name:
            return None
        if name in self.adapters.available():
            return name
        names = self.model_names()
        raise ApiError(404, f"The model `{name}` does not exist. Available models: {', '.join(names)}",
                       param="model", code="model_not_found", models=names)

    def model_card(self, name: str) -> dict:
        card = {"id": name, "object": "model", "created": int(self.engine.started_at or time.time()),
                "owned_by": "inkstone", "max_model_len": self.engine.max_model_len}
        if name != self.engine.model_name:
            card["parent"] = self.engine.model_name
        return card

    def check_engine(self) -> None:
        if self.engine.state != "ready":
            raise unavailable(EngineUnavailable(
                "the engine is restarting after a crash; try again in a minute" if self.engine.state == "restarting"
                else f"the engine is not available ({self.engine.state})"))

    # ---- requests -------------------------------------------------------------------------
    async def parse(self, request: Request, schema: type[BaseModel]):
        raw = await read_json(request, max_bytes=self.limits.max_body_bytes, max_depth=self.limits.max_json_depth)
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
        check_request(req, self.limits, prompts=len(prompts) if isinstance(prompts, list) else 1)
        return req

    def prompt_requests(self, req, chat: bool) -> list[PromptRequest]:
        """The prompt service's requests for an API request: one per prompt."""
        opts = req.inkstone
        common = dict(story=opts.story if opts else None, use_memory=bool(opts and opts.memory_on),
                      story_text=opts.story_text if opts else "", passage=opts.passage if opts else "")
        if chat:
            try:
                messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                            for m in req.messages]
            except ValueError as exc:
                raise ApiError(400, str(exc), param="messages") from exc
            return [PromptRequest(mode="chat", messages=messages, max_tokens=req.requested_max_tokens(),
                                  image=_chat_image(req), **common)]
        mode = opts.mode if opts and opts.mode else "raw"
        if mode != "raw" and not (_known(mode) and get_mode(mode).for_writers):
            raise ApiError(400, f"inkstone.mode {mode!r} is not a writing mode", param="inkstone.mode")
        # With a writing mode the prompt is the writer's instruction; else the text itself.
        key = "instruction" if mode != "raw" else "text"
        return [PromptRequest(mode=mode, max_tokens=req.max_tokens, **{key: p}, **common) for p in req.prompts()]

    def prepare(self, requests: Sequence[PromptRequest], what: str) -> list[PreparedPrompt]:
        """On a worker thread: tokenizing and memory search are not for the event loop."""
        try:
            return [self.studio.prepare(r) for r in requests]
        except PromptTooLong as exc:
            raise ApiError(400, str(exc), param=getattr(exc, "param", what), code="context_length_exceeded") from exc
        except ValueError as exc:
            raise ApiError(400, str(exc), param=what) from exc

    def params_for(self, req, max_tokens: int, k: int) -> GenerationParams:
        inf = self.inf
        seed = req.seed if req.seed is not None else inf.seed
        return GenerationParams(
            temperature=inf.temperature if req.temperature is None else req.temperature,
            top_p=inf.top_p if req.top_p is None else req.top_p,
            top_k=inf.top_k if req.top_k is None else req.top_k,
            repetition_penalty=inf.repetition_penalty if req.repetition_penalty is None else req.repetition_penalty,
            max_tokens=max_tokens, seed=None if seed is None else seed + k,  # n > 1: different samples
            min_tokens=min(req.min_tokens, max_tokens), stop=req.stop_list(),
            presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        )

    # ---- answering --------------------------------------------------------------------------
    async def complete(self, request: Request, chat: bool) -> Response:
        self.check_key(request)
        self.check_engine()
        req = await self.parse(request, ChatRequest if chat else CompletionRequest)
        adapter = await run_in_threadpool(self.adapter_for, req.model)
        requests = self.prompt_requests(req, chat)
        prepared = await run_in_threadpool(self.prepare, requests, "messages" if chat else "prompt")
        return await self.answer(request, req, chat, requests, prepared, adapter)

    async def answer(self, request: Request, req, chat: bool, requests: Sequence[PromptRequest],
                     prepared: Sequence[PreparedPrompt], adapter: Optional[str]) -> Response:
        # one engine request per (prompt, sample); choice index = prompt * n + sample
        limit = self.limits.max_prompt_tokens
        too_long = next((p for p in prepared if limit and len(p.token_ids) > limit), None)
        if too_long is not None:
            raise ApiError(400, f"the prompt is {len(too_long.token_ids)} tokens; at most {limit} "
                                "(limits.max_prompt_tokens).", param="prompt")
        pairs = [(r, p) for r, p in zip(requests, prepared) for _ in range(req.n)]
        client = client_of(request)
        self.gate.acquire(client, len(pairs))
        released: list[bool] = []

        def release() -> None:  # once, whichever way the request ends
            if not released:
                released.append(True)
                self.gate.release(client, len(pairs))

        try:
            response = await self._generate(request, req, chat, prepared, pairs, adapter, release)
        except BaseException:
            release()
            raise
        if not isinstance(response, StreamingResponse):
            release()
        return response

    async def _generate(self, request: Request, req, chat: bool, prepared: Sequence[PreparedPrompt], pairs,
                        adapter: Optional[str], release: Callable[[], None]) -> Response:
        """A stream calls `release` when it ends, not when its response starts."""
        streams = [self.studio.astream(p, r, self.params_for(req, p.max_tokens, k % req.n), adapter, source="api")
                   for k, (r, p) in enumerate(pairs)]
        try:
            await first_events(streams)  # refused requests answer 400 before any text is sent
        except Exception as exc:
            if isinstance(exc, EngineUnavailable):
                raise unavailable(exc) from exc
            if _is_client_error(exc):
                raise ApiError(400, str(exc)) from exc
            raise
        answer = Answer(chat=chat, model=req.model, prepared=prepared, jobs=[p for _, p in pairs], streams=streams,
                        want_memory=req.inkstone is not None and req.inkstone.memory_on,
                        echo=bool(getattr(req, "echo", False)))
        if req.stream:
            return stream_response(answer, bool(req.stream_options and req.stream_options.include_usage), release)
        return await json_response(request, answer)


def _chat_image(req) -> Optional[object]:
    """The picture of a chat request (one at most), from a data URL: remote URLs are refused, never fetched."""
    from ..vision.images import ImageError, image_from_url

    urls = [u for m in req.messages for u in m.image_urls()]
    if not urls:
        return None
    if len(urls) > 1:
        raise ApiError(400, f"one image per request is supported, not {len(urls)}", param="messages")
    try:
        return image_from_url(urls[0])
    except ImageError as exc:
        raise ApiError(400, str(exc), param="messages") from exc


def _known(mode: str) -> bool:
    try:
        get_mode(mode)
        return True
    except ValueError:
        return False


def create_router(ctx, api_key: Optional[str] = None, *, guarded: bool = False,
                  session_user: Optional[Callable[[Request], Optional[str]]] = None) -> APIRouter:
    """The /v1 routes over `ctx` (webui.app.AppContext); see KeyCheck for `guarded`."""
    check_key = KeyCheck(api_key, shared=bool(getattr(ctx.cfg.webui, "share", False)), guarded=guarded,
                         session_user=session_user)
    server = OpenAIServer(ctx, check_key)
    router = APIRouter(prefix="/v1")

    async def answered(work) -> Response:
        try:
            return await work()
        except ApiError as e:
            return e.response()

    @router.get("/models")
    async def list_models(request: Request):
        async def work():
            check_key(request)
            names = await run_in_threadpool(server.model_names)  # scans the adapter folders
            return JSONResponse({"object": "list", "data": [server.model_card(n) for n in names]})
        return await answered(work)

    @router.get("/models/{model:path}")
    async def get_model(model: str, request: Request):
        async def work():
            check_key(request)
            await run_in_threadpool(server.adapter_for, model)
            return JSONResponse(server.model_card(model))
        return await answered(work)

    @router.get("/health")
    async def health(request: Request):
        """200 while the engine serves, 503 while it restarts."""
        async def work():
            check_key(request)
            state = server.engine.health()
            return JSONResponse(state, status_code=200 if state["state"] == "ready" else 503)
        return await answered(work)

    @router.get("/modes")
    async def modes(request: Request):
        """The modes of the prompt service: `inkstone.mode` takes the writing ones."""
        async def work():
            check_key(request)
            return JSONResponse({"object": "list", "data": [
                {"id": m.name, "label": m.label, "inputs": list(m.inputs), "writing": m.for_writers,
                 "output_schema": m.json_schema is not None} for m in list_modes()]})
        return await answered(work)

    @router.post("/completions")
    async def completions(request: Request):
        return await answered(lambda: server.complete(request, chat=False))

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        return await answered(lambda: server.complete(request, chat=True))

    router.api_key_required = check_key.required  # for the app's status page and tests
    return router
