"""The vLLM engine, in this process: the only module that imports vLLM.

One asyncio event loop, on its own thread, owns vLLM's `AsyncLLM`. Callers
reach it from their own threads (`stream`, coalesced text for the web UI) or
their own event loops (`astream`, for the HTTP API, batch and Compare). Closing
the consumer cancels the coroutine, and vLLM aborts the request. A supervisor
replaces an engine core that died, so one crash does not fail every later
request. Adapters are loaded ahead of the requests that use them (`preload`),
and `adapter_ready` tells the UI whether a request would wait for a load.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence

from ..checkpoints import AdapterError
from ..hardware import cpu_has_fast_bf16, on_gpu
from .contract import (Accepted, Adapter, EngineUnavailable, Finished, GenerationParams, StreamEvent, Text,
                       check_fits)
from .streaming import END, coalesced

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 0.5

# Streams that share the base update interval; beyond this the interval grows with them.
STREAMS_PER_INTERVAL = 8


@dataclass
class EngineSettings:
    model_path: Path
    model_name: str
    max_model_len: int = 4096
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    cpu_kv_cache_gib: float = 2.0
    max_loras: int = 4
    max_lora_rank: int = 64
    max_num_batched_tokens: Optional[int] = None
    stream_interval_ms: int = 30

    @classmethod
    def from_config(cls, cfg, model_path: Path, model_name: str) -> "EngineSettings":
        m = cfg.model
        return cls(model_path=Path(model_path), model_name=model_name, max_model_len=m.max_model_len,
                   dtype=m.dtype, gpu_memory_utilization=m.gpu_memory_utilization,
                   cpu_kv_cache_gib=m.cpu_kv_cache_gib, max_loras=m.max_loras, max_lora_rank=m.max_lora_rank,
                   max_num_batched_tokens=m.max_num_batched_tokens,
                   stream_interval_ms=cfg.inference.stream_interval_ms)


def engine_dtype(requested: str, gpu: bool) -> str:
    """bf16 is emulated, and several times slower, on CPUs without AVX512-BF16/AMX:
    there `auto` means float32. Elsewhere `auto` keeps the checkpoint's own dtype."""
    if requested != "auto" or gpu:
        return requested
    return "auto" if cpu_has_fast_bf16() else "float32"


def cpu_scheduling(max_num_batched_tokens: Optional[int], max_model_len: int) -> dict:
    """Scheduler settings for the CPU engine: a prompt's prefill is never split.

    After a partial (chunked) prefill step, vLLM rewinds a seeded request's random
    generator with `Generator.set_offset`, which CPU generators do not have: the
    engine core dies (RuntimeError: CPU Generator does not use offset) and every
    later request fails. With chunked prefill off and a step budget of at least
    the context length, every prompt is computed in one step, so nothing is
    rewound. The price: a long prompt holds other streams for one step."""
    return {"enable_chunked_prefill": False,
            "max_num_batched_tokens": max(max_num_batched_tokens or 2048, max_model_len)}


class VllmEngine:
    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.model_name = settings.model_name
        self.max_model_len = settings.max_model_len
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.engine = None  # vLLM's AsyncLLM
        self._thread: Optional[threading.Thread] = None
        self._lora_ids: dict[Path, int] = {}
        self._next_lora_id = itertools.count(1)
        # Adapter ids vLLM holds, least recently used first: its cache keeps `max_loras` and
        # drops the least recently used, and this mirrors it (cleared when the core restarts).
        self._held_loras: OrderedDict[int, None] = OrderedDict()
        self._loading: dict[int, asyncio.Future] = {}  # loads under way; touched on the engine loop only
        self._lock = threading.Lock()
        self._active_streams = 0
        self.started_at: Optional[float] = None
        self.state = "starting"  # starting | ready | restarting | failed | stopped
        self.restarts: list[dict] = []

    # ---- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 900) -> "VllmEngine":
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="engine-loop", daemon=True)
        self._thread.start()
        ready.result(timeout=timeout)  # re-raises a failed start here
        self.started_at = time.time()
        return self

    def _run_loop(self, ready: concurrent.futures.Future) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.engine = self._build_engine()
        except BaseException as exc:  # report to start(), then leave
            ready.set_exception(exc)
            self.loop.close()
            return
        self.state = "ready"
        self.loop.create_task(self._supervise())
        ready.set_result(True)
        self.loop.run_forever()
        self.loop.close()

    def _build_engine(self):
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        s = self.settings
        kwargs: dict[str, Any] = dict(
            model=str(s.model_path), tokenizer=str(s.model_path), max_model_len=s.max_model_len,
            dtype=engine_dtype(s.dtype, on_gpu()), enable_lora=True, max_loras=s.max_loras,
            max_lora_rank=s.max_lora_rank, disable_log_stats=True, enable_log_requests=False,
            # No free whitespace in constrained JSON: a weak model could pad it until max tokens.
            structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
        )
        if on_gpu():
            kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
            if s.max_num_batched_tokens:
                kwargs["max_num_batched_tokens"] = s.max_num_batched_tokens
        else:
            from .cpu_lora import WORKER_HOOK

            kwargs["kv_cache_memory_bytes"] = int(s.cpu_kv_cache_gib * (1 << 30))
            kwargs.update(cpu_scheduling(s.max_num_batched_tokens, s.max_model_len))
            kwargs["worker_extension_cls"] = WORKER_HOOK  # per-run LoRA products in the worker (cpu_lora.py)
        from . import vllm_llava

        if vllm_llava.torchvision_missing():  # LLaVA models (train-vision's) on the CPU install
            kwargs["hf_overrides"] = vllm_llava.keep_config
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

    # ---- supervision: a dead engine core is replaced, not left to fail every request ----
    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            if self.state == "ready" and self.engine is not None and self.engine.errored:
                await self._restart()

    async def _restart(self) -> None:
        """Shut the dead engine down and build a new one off the loop (streams of the
        old one have already ended with EngineUnavailable); adapters are loaded
        again on their next use."""
        died = time.time()
        self.state = "restarting"
        log.error("the engine core died; restarting it")
        old, self.engine = self.engine, None
        try:
            await self.loop.run_in_executor(None, old.shutdown)
        except Exception as exc:  # a dead engine may fail to shut down cleanly; it is gone either way
            log.warning("shutting down the dead engine: %s", exc)
        try:
            self.engine = await self.loop.run_in_executor(None, self._build_engine)
        except Exception as exc:
            self.state = "failed"
            self.restarts.append({"died_at": died, "error": str(exc)})
            log.exception("the engine could not be restarted")
            return
        with self._lock:
            self._held_loras.clear()  # the new core holds no adapters
        self.state = "ready"
        self.restarts.append({"died_at": died, "ready_at": time.time(), "restart_s": round(time.time() - died, 2)})
        log.warning("engine restarted in %.1f s", time.time() - died)

    def health(self) -> dict:
        """Engine state for the UI and /health: ready | restarting | failed, and the restarts so far."""
        return {"state": self.state, "restarts": list(self.restarts)}

    def check_ready(self) -> None:
        if self.state == "restarting":
            raise EngineUnavailable("the engine is restarting after a crash; try again in a minute")
        if self.state != "ready" or self.engine is None:
            raise EngineUnavailable(f"the engine is not available ({self.state}); see the server log")

    def stop(self) -> None:
        if self.loop is None or self._thread is None:
            return

        async def _close():
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            self.state = "stopped"
            if self.engine is not None:
                self.engine.shutdown()
                self.engine = None  # shut down once, here, not again at interpreter exit

        try:
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(timeout=60)
        except Exception as exc:
            log.warning("engine shutdown: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> "VllmEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, coro, timeout: Optional[float] = None):
        """Run a coroutine on the engine's loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    # ---- adapters: loaded before the requests that use them ------------------------
    def _lora_request(self, adapter: Optional[Adapter]):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        with self._lock:
            lora_id = self._lora_ids.setdefault(Path(adapter.path), next(self._next_lora_id))
        return LoRARequest(adapter.name, lora_id, str(adapter.path))

    def preload(self, adapter: Optional[Adapter]) -> concurrent.futures.Future:
        """Start loading `adapter` into the engine and return at once; callable from any
        thread. The future ends when it is loaded (AdapterError: vLLM refused it). Call it
        when a writer chooses an adapter or one is registered, so the first request with
        it does not wait for the load. Loading one already loaded, or None (the base
        model, as `AdapterCatalog.resolve` gives it), costs nothing."""
        if adapter is None:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(None)
            return done
        return asyncio.run_coroutine_threadsafe(self._load_adapter(self._lora_request(adapter)), self.loop)

    def adapter_ready(self, adapter: Optional[Adapter]) -> bool:
        """Whether a request with `adapter` starts without loading it first (the base model
        always does). Cheap and callable from any thread: the UI shows "loading adapter"
        while it is False."""
        if adapter is None:
            return True
        with self._lock:
            return self._lora_ids.get(Path(adapter.path)) in self._held_loras

    def _mark_held(self, lora_id: int) -> None:
        """vLLM holds `lora_id`, now the most recently used; beyond `max_loras` it drops the least recent."""
        with self._lock:
            self._held_loras[lora_id] = None
            self._held_loras.move_to_end(lora_id)
            while len(self._held_loras) > self.settings.max_loras:
                self._held_loras.popitem(last=False)

    async def _load_adapter(self, lora) -> None:
        """On the engine loop: load `lora` once, however many callers wait for it."""
        if lora.lora_int_id in self._held_loras:
            self._mark_held(lora.lora_int_id)
            return
        task = self._loading.get(lora.lora_int_id)
        if task is None:
            task = self._loading[lora.lora_int_id] = asyncio.ensure_future(self._add_lora(lora))
            task.add_done_callback(lambda _: self._loading.pop(lora.lora_int_id, None))
        await asyncio.shield(task)  # a caller that gives up does not cancel the load for the others

    async def _add_lora(self, lora) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        self.check_ready()
        engine, t0 = self.engine, time.perf_counter()
        try:
            await engine.add_lora(lora)
        except EngineDeadError as exc:
            raise EngineUnavailable("the engine stopped unexpectedly and is restarting; try again in a minute") from exc
        except Exception as exc:  # vLLM reports a refused adapter as a bare Exception with its reason
            raise AdapterError(f"the engine could not load adapter {lora.lora_name!r}: {exc}") from exc
        if engine is self.engine:  # not a core that died meanwhile
            self._mark_held(lora.lora_int_id)
        log.info("adapter %s loaded in %.2f s", lora.lora_name, time.perf_counter() - t0)

    # ---- one request --------------------------------------------------------------
    def _sampling(self, p: GenerationParams):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = StructuredOutputsParams(json=p.json_schema) if p.json_schema else None
        return SamplingParams(
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, max_tokens=p.max_tokens,
            repetition_penalty=p.repetition_penalty, seed=p.seed, min_tokens=p.min_tokens,
            stop=list(p.stop) or None, presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            output_kind=RequestOutputKind.DELTA, structured_outputs=structured,
        )

    async def _run(self, put: Callable[[Any], None], prompt_ids: Sequence[int], params: GenerationParams,
                   adapter: Optional[Adapter], image: Any = None) -> None:
        """On the engine loop: check, then generate, pushing Accepted, Text deltas and Finished to `put`."""
        from vllm.v1.engine.exceptions import EngineDeadError

        t0 = time.perf_counter()
        check_fits(len(prompt_ids), params.max_tokens, self.max_model_len)
        sampling, lora = self._sampling(params), self._lora_request(adapter)
        self.check_ready()
        prompt = self._prompt(prompt_ids, image)
        if lora is not None:
            # Loaded here, not inside the step: a refused adapter is an error for this
            # request, and adapter_ready() is false while the writer waits for it.
            await self._load_adapter(lora)
        put(Accepted(len(prompt_ids)))
        n_out, ttft, reason = 0, None, None
        try:
            async for out in self.engine.generate(prompt, sampling, uuid.uuid4().hex, lora_request=lora):
                completion = out.outputs[0]
                if ttft is None:
                    ttft = time.perf_counter() - t0
                    if lora is not None:
                        self._mark_held(lora.lora_int_id)  # used: the most recent in vLLM's cache too
                n_out += len(completion.token_ids)
                if completion.text:
                    put(Text(completion.text))
                if out.finished:
                    reason = completion.finish_reason
        except EngineDeadError as exc:
            raise EngineUnavailable("the engine stopped unexpectedly and is restarting; the text so far is kept, "
                                    "try again in a minute") from exc
        put(Finished(n_out, reason, ttft, time.perf_counter() - t0))

    def _prompt(self, prompt_ids: Sequence[int], image: Any) -> dict:
        """vLLM's prompt: the ids, and the picture for a model that reads one. The ids hold one
        image token where the picture goes; vLLM widens it to the image's features."""
        prompt: dict[str, Any] = {"prompt_token_ids": list(prompt_ids)}
        if image is not None:
            if not self.engine.model_config.is_multimodal_model:
                raise ValueError(f"{self.model_name} does not read images; serve a model trained with train-vision")
            prompt["multi_modal_data"] = {"image": image}
        return prompt

    def _submit(self, put: Callable[[Any], None], prompt_ids, params, adapter, image=None) -> concurrent.futures.Future:
        """Start one request on the engine loop; every outcome, errors included, ends with END."""
        async def run():
            try:
                await self._run(put, prompt_ids, params, adapter, image)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                put(exc)
            finally:
                put(END)

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    # ---- streaming to threads and to other event loops ------------------------------
    def stream(self, prompt_ids: Sequence[int], params: Optional[GenerationParams] = None,
               adapter: Optional[Adapter] = None, *, coalesce: bool = True,
               should_stop: Optional[Callable[[], bool]] = None, image: Any = None) -> Iterator[StreamEvent]:
        """Generate from any thread: Accepted, Text chunks (coalesced to the stream
        interval), Finished. Closing the iterator early, or `should_stop()` turning
        true (a writer's Stop), ends the stream and aborts the request."""
        q: queue.SimpleQueue = queue.SimpleQueue()
        future = self._submit(q.put, prompt_ids, params or GenerationParams(), adapter, image)
        with self._lock:
            self._active_streams += 1
        try:
            yield from coalesced(q, self.stream_interval if coalesce else (lambda: 0.0), should_stop)
        finally:
            with self._lock:
                self._active_streams -= 1
            if not future.done():
                future.cancel()  # cancels the task on the loop; vLLM aborts the request

    def generate_text(self, prompt_ids: Sequence[int], params: Optional[GenerationParams] = None,
                      adapter: Optional[Adapter] = None, image: Any = None) -> str:
        return "".join(e.text for e in self.stream(prompt_ids, params, adapter, image=image) if isinstance(e, Text))

    def stream_interval(self) -> float:
        """Seconds between text updates of one stream. It widens with the number of
        streams open, so the web server sends about the same number of updates per
        second however many people write at once: each update costs the server
        (diffing, JSON, the event stream) about a millisecond of CPU, which at 32
        streams and 30 ms would eat a core that the engine needs."""
        base = self.settings.stream_interval_ms / 1000.0
        return base * max(1.0, self._active_streams / STREAMS_PER_INTERVAL)

    async def astream(self, prompt_ids: Sequence[int], params: Optional[GenerationParams] = None,
                      adapter: Optional[Adapter] = None, *, image: Any = None) -> AsyncIterator[StreamEvent]:
        """Generate on the caller's event loop (not the engine's): tokens hop loops with
        `call_soon_threadsafe`, so no thread waits per stream. Accepted comes first
        (errors raise before any text), then Text deltas (those already waiting are
        merged), then Finished. Cancelling or closing the iterator aborts the request."""
        caller = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            try:
                caller.call_soon_threadsafe(q.put_nowait, item)
            except RuntimeError:  # the caller's loop is gone; the task is being cancelled anyway
                pass

        future = self._submit(put, prompt_ids, params or GenerationParams(), adapter, image)
        try:
            async for item in _merged_deltas(q):
                yield item
        finally:
            if not future.done():
                future.cancel()  # cancels the task on the engine loop; vLLM aborts the request


async def _merged_deltas(q: asyncio.Queue) -> AsyncIterator[StreamEvent]:
    """Events from `q` until END; a consumer that fell behind gets the Text deltas
    waiting for it as one: fewer, larger chunks under load, no delay when it keeps up."""
    held = None
    while True:
        item, held = (held, None) if held is not None else (await q.get(), None)
        if isinstance(item, Text):
            parts = [item.text]
            while not q.empty():
                nxt = q.get_nowait()
                if not isinstance(nxt, Text):
                    held = nxt
                    break
                parts.append(nxt.text)
            if len(parts) > 1:
                item = Text("".join(parts))
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
