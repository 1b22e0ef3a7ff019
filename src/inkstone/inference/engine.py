"""The engine bridge: the only module that imports vLLM.

One asyncio event loop, on its own thread, owns the vLLM `AsyncLLM` engine and
the memory store. Everything else (Gradio handlers, the CLI, benchmarks)
reaches them only through `asyncio.run_coroutine_threadsafe`. Generation
streams back as text deltas, coalesced to about `stream_interval_ms` so a
browser is not sent one update per token. Closing the consumer (a stopped
Gradio event, a closed tab) cancels the coroutine, and vLLM aborts the request.
The memory store runs on one worker thread of its own so embedding a query
never stalls the engine's loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Union

from ..hardware import cpu_has_fast_bf16, on_gpu
from ..memory.store import MemoryEntry, MemoryStore
from ..train.checkpoints import is_complete_checkpoint
from . import prompts

log = logging.getLogger(__name__)


class AdapterError(ValueError):
    """An adapter path that cannot be used; the message is for the user."""


class EngineUnavailable(RuntimeError):
    """The engine is (re)starting or could not be restarted; the message is for the user."""


@dataclass
class GenerationParams:
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 50
    max_tokens: int = 512
    repetition_penalty: float = 1.1
    seed: Optional[int] = None
    min_tokens: int = 0  # end-of-text and stop strings are ignored until this many tokens
    # When set, decoding is constrained to JSON matching this schema (vLLM structured outputs).
    json_schema: Optional[dict] = None

    @classmethod
    def from_config(cls, inf) -> "GenerationParams":
        return cls(inf.temperature, inf.top_p, inf.top_k, inf.max_tokens, inf.repetition_penalty, inf.seed)


# Events a stream yields, in order: one Prepared, Text chunks, one Finished.
@dataclass
class Prepared:
    prompt: str
    prompt_tokens: int
    memories: list[MemoryEntry] = field(default_factory=list)


@dataclass
class Text:
    text: str


@dataclass
class Finished:
    output_tokens: int
    finish_reason: Optional[str]
    ttft_s: Optional[float]
    elapsed_s: float


StreamEvent = Union[Prepared, Text, Finished]
_END = object()


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
    prompt_format: prompts.PromptFormat = "auto"
    system_prompt: str = ""
    memory_items: int = 8
    memory_token_budget: int = 1024

    @classmethod
    def from_config(cls, cfg, model_path: Path, model_name: str) -> "EngineSettings":
        return cls(
            model_path=Path(model_path), model_name=model_name, max_model_len=cfg.model.max_model_len,
            dtype=cfg.model.dtype, gpu_memory_utilization=cfg.model.gpu_memory_utilization,
            cpu_kv_cache_gib=cfg.model.cpu_kv_cache_gib, max_loras=cfg.model.max_loras,
            max_lora_rank=cfg.model.max_lora_rank, max_num_batched_tokens=cfg.model.max_num_batched_tokens,
            stream_interval_ms=cfg.inference.stream_interval_ms,
            system_prompt=cfg.inference.system_prompt, memory_items=cfg.memory.max_memory_items,
            memory_token_budget=cfg.memory.context_token_budget,
        )


def engine_dtype(requested: str, gpu: bool) -> str:
    """bf16 is emulated, and several times slower, on CPUs without AVX512-BF16/AMX:
    there `auto` means float32. Elsewhere `auto` keeps the checkpoint's own dtype."""
    if requested != "auto" or gpu:
        return requested
    return "auto" if cpu_has_fast_bf16() else "float32"


def check_adapter_dir(path: Union[str, Path], max_lora_rank: int) -> Path:
    """The adapter folder, resolved; AdapterError says what is wrong with it."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise AdapterError(f"adapter folder not found: {path}")
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.is_file():
        raise AdapterError(f"{path} is not a LoRA adapter folder (no adapter_config.json)")
    try:
        rank = int(json.loads(cfg_file.read_text(encoding="utf-8")).get("r", 0))
    except (ValueError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{cfg_file}: unreadable adapter config ({exc})") from exc
    if rank > max_lora_rank:
        raise AdapterError(
            f"adapter {path} has rank {rank}, above the engine's max_lora_rank {max_lora_rank}; "
            f"raise model.max_lora_rank"
        )
    return folder


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


SUPERVISE_INTERVAL_S = 0.5

# Streams that share the base update interval; beyond this the interval grows with them.
STREAMS_PER_INTERVAL = 8


class EngineBridge:
    def __init__(self, settings: EngineSettings, memory_factory: Optional[Callable[[], MemoryStore]] = None,
                 adapter_dirs: tuple[Path, ...] = ()):
        self.settings = settings
        self._memory_factory = memory_factory
        self.adapter_dirs = tuple(Path(d) for d in adapter_dirs)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.engine = None
        self.memory: Optional[MemoryStore] = None
        self.tokenizer = None
        self.prompt_format: str = "plain"
        self._thread: Optional[threading.Thread] = None
        self._memory_exec = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")
        self._prompt_exec = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="prompt")
        self._adapters: dict[str, tuple[int, Path]] = {}  # name -> (lora id, folder)
        self._lora_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._active_streams = 0
        self.started_at: Optional[float] = None
        self.state = "starting"  # starting | ready | restarting | failed | stopped
        self.restarts: list[dict] = []
        self._supervisor: Optional[asyncio.Task] = None

    # ---- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 900) -> "EngineBridge":
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
            self.loop.run_until_complete(self._open())
        except BaseException as exc:  # report to start(), then leave
            ready.set_exception(exc)
            self.loop.close()
            return
        ready.set_result(True)
        self.loop.run_forever()
        self.loop.close()

    async def _open(self) -> None:
        from transformers import AutoTokenizer

        s = self.settings
        self.tokenizer = AutoTokenizer.from_pretrained(s.model_path)
        self.prompt_format = prompts.resolve_format(self.tokenizer, s.prompt_format, s.model_name)
        if self._memory_factory is not None:
            self.memory = await self.loop.run_in_executor(self._memory_exec, self._memory_factory)
        self.engine = self._build_engine()
        self.state = "ready"
        self._supervisor = self.loop.create_task(self._supervise())

    def _build_engine(self):
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        s = self.settings
        kwargs: dict[str, Any] = dict(
            model=str(s.model_path), tokenizer=str(s.model_path), max_model_len=s.max_model_len,
            dtype=engine_dtype(s.dtype, on_gpu()), enable_lora=True, max_loras=s.max_loras, max_lora_rank=s.max_lora_rank,
            disable_log_stats=True, enable_log_requests=False,
            # No free whitespace in constrained JSON: a weak model could pad it until max tokens.
            structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
        )
        if on_gpu():
            kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
            if s.max_num_batched_tokens:
                kwargs["max_num_batched_tokens"] = s.max_num_batched_tokens
        else:
            kwargs["kv_cache_memory_bytes"] = int(s.cpu_kv_cache_gib * (1 << 30))
            kwargs.update(cpu_scheduling(s.max_num_batched_tokens, s.max_model_len))
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
        self.state = "ready"
        self.restarts.append({"died_at": died, "ready_at": time.time(), "restart_s": round(time.time() - died, 2)})
        log.warning("engine restarted in %.1f s", time.time() - died)

    def health(self) -> dict:
        """Engine state for the UI and /health: ready | restarting | failed, and the restarts so far."""
        return {"state": self.state, "restarts": list(self.restarts)}

    def _check_ready(self) -> None:
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
        self._memory_exec.shutdown(wait=True)
        self._prompt_exec.shutdown(wait=False)
        if self.memory is not None:
            self.memory.close()
        self._thread = None

    def __enter__(self) -> "EngineBridge":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- calling into the loop ------------------------------------------------
    def call(self, coro, timeout: Optional[float] = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def memory_call(self, method: str, *args, **kwargs):
        """Run a MemoryStore method on the store's own thread, via the loop."""
        return self.memory_run(lambda store: getattr(store, method)(*args, **kwargs))

    def memory_run(self, fn: Callable[[MemoryStore], Any]):
        """Run fn(store) on the store's own thread, via the loop."""
        if self.memory is None:
            raise RuntimeError("no memory store is open")

        async def run():
            return await self.loop.run_in_executor(self._memory_exec, lambda: fn(self.memory))

        return self.call(run())

    # ---- adapters ---------------------------------------------------------------
    def available_adapters(self) -> dict[str, Path]:
        """Registered adapters plus every finished adapter found under the adapter folders."""
        found: dict[str, Path] = {name: path for name, (_, path) in self._adapters.items()}
        for root in self.adapter_dirs:
            if not root.is_dir():
                continue
            for cfg in sorted(root.glob("**/adapter_config.json")):
                folder = cfg.parent
                if any(part.startswith(".") for part in folder.relative_to(root).parts):
                    continue  # an adapter being written (temporary folder)
                if folder.name.startswith("checkpoint-") and not is_complete_checkpoint(folder):
                    continue  # a checkpoint whose save has not finished
                name = str(folder.relative_to(root))
                found.setdefault(name, folder)
        return found

    def register_adapter(self, path: Union[str, Path], name: Optional[str] = None, *, trusted: bool = False) -> str:
        """Make an adapter folder servable under `name`. Unless `trusted` (a path the
        machine's owner gave on the command line or in the config), it must lie in
        one of the adapter folders; a path outside them gets the same answer as a
        missing one, so the web UI cannot be used to probe the disk."""
        if not trusted:
            path = self._inside_adapter_dirs(path)
        folder = check_adapter_dir(path, self.settings.max_lora_rank)
        with self._lock:
            for existing, (_, p) in self._adapters.items():
                if p == folder:
                    return existing
            name = name or folder.name
            if name in self._adapters:
                name = f"{name}-{len(self._adapters) + 1}"
            self._adapters[name] = (next(self._lora_ids), folder)
        return name

    def _inside_adapter_dirs(self, path: Union[str, Path]) -> Path:
        roots = [Path(d).resolve() for d in self.adapter_dirs]
        given = Path(path).expanduser()
        for folder in ([given] if given.is_absolute() else [r / given for r in roots]):
            folder = folder.resolve()
            if any(folder.is_relative_to(r) for r in roots) and (folder / "adapter_config.json").is_file():
                return folder
        raise AdapterError(f"no adapter named {str(path)!r} in the adapter folders "
                           f"({', '.join(str(r) for r in roots) or 'none configured'})")

    def _lora_request(self, adapter: Optional[str]):
        if not adapter:
            return None
        from vllm.lora.request import LoRARequest

        if adapter not in self._adapters:
            known = self.available_adapters()
            self.register_adapter(known[adapter] if adapter in known else adapter, name=adapter)
        lora_id, folder = self._adapters[adapter]
        return LoRARequest(adapter, lora_id, str(folder))

    # ---- generation -------------------------------------------------------------
    def assemble(self, instruction: str, story: str = "", *, max_tokens: int,
                 memories: tuple[MemoryEntry, ...] = (), summaries: tuple[str, ...] = ()) -> prompts.AssembledPrompt:
        s = self.settings
        return prompts.assemble(
            self.tokenizer, fmt=self.prompt_format, system=s.system_prompt, instruction=instruction,
            story=story, memories=memories, summaries=summaries, max_model_len=s.max_model_len,
            max_tokens=max_tokens, memory_token_budget=s.memory_token_budget,
        )

    def _sampling(self, p: GenerationParams):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = StructuredOutputsParams(json=p.json_schema) if p.json_schema else None
        return SamplingParams(
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, max_tokens=p.max_tokens,
            repetition_penalty=p.repetition_penalty, seed=p.seed, min_tokens=p.min_tokens,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=structured,
        )

    async def _retrieve(self, query: str, story: Optional[str]) -> list[MemoryEntry]:
        if self.memory is None or self.settings.memory_items <= 0 or not query.strip():
            return []
        per_kind = max(1, self.settings.memory_items // 4)
        hits = await self.loop.run_in_executor(
            self._memory_exec, lambda: self.memory.search_each_kind(query, k_per_kind=per_kind, story=story)
        )
        return [h.entry for h in hits[: self.settings.memory_items]]

    async def _produce(self, put: Callable[[Any], None], instruction: str, story_text: str,
                       params: GenerationParams, adapter: Optional[str], use_memory: bool,
                       story: Optional[str], raw_prompt: Optional[str], summaries: tuple[str, ...] = ()) -> None:
        """Runs on the engine loop: retrieve, assemble, generate; pushes events to `put`."""
        t0 = time.perf_counter()
        if raw_prompt is not None:
            # Tokenizing happens off the loop: a long text would stall every other stream.
            ids = await self.loop.run_in_executor(
                self._prompt_exec, lambda: prompts.encode(self.tokenizer, raw_prompt, self.prompt_format))
            limit = self.settings.max_model_len - params.max_tokens
            if len(ids) > limit:
                raise prompts.PromptTooLong(
                    f"prompt is {len(ids)} tokens; at most {limit} fit "
                    f"(context {self.settings.max_model_len} - max tokens {params.max_tokens})"
                )
            assembled = prompts.AssembledPrompt(text=raw_prompt, token_ids=ids)
        else:
            query = "\n".join(x for x in (instruction, story_text[-500:]) if x)
            memories = await self._retrieve(query, story) if use_memory else []
            assembled = await self.loop.run_in_executor(self._prompt_exec, lambda: self.assemble(
                instruction, story_text, max_tokens=params.max_tokens, memories=memories, summaries=tuple(summaries)))
        lora = self._lora_request(adapter)
        put(Prepared(assembled.text, len(assembled.token_ids), assembled.memories))
        await self._generate_into(put, assembled.token_ids, self._sampling(params), lora, t0)

    async def _generate_into(self, put: Callable[[Any], None], prompt_ids, sampling, lora, t0: float) -> None:
        """Run one request in the engine, pushing Text deltas and then Finished to `put`."""
        from vllm.v1.engine.exceptions import EngineDeadError

        self._check_ready()
        n_out, ttft, reason = 0, None, None
        try:
            async for out in self.engine.generate(
                {"prompt_token_ids": list(prompt_ids)}, sampling, uuid.uuid4().hex, lora_request=lora
            ):
                completion = out.outputs[0]
                if ttft is None:
                    ttft = time.perf_counter() - t0
                n_out += len(completion.token_ids)
                if completion.text:
                    put(Text(completion.text))
                if out.finished:
                    reason = completion.finish_reason
        except EngineDeadError as exc:
            raise EngineUnavailable("the engine stopped unexpectedly and is restarting; the text so far is kept, "
                                    "try again in a minute") from exc
        put(Finished(n_out, reason, ttft, time.perf_counter() - t0))

    def stream(self, instruction: str = "", story_text: str = "", params: Optional[GenerationParams] = None, *,
               adapter: Optional[str] = None, use_memory: bool = True, story: Optional[str] = None,
               raw_prompt: Optional[str] = None, coalesce: bool = True,
               summaries: tuple[str, ...] = ()) -> Iterator[StreamEvent]:
        """Generate from any thread. Yields Prepared, then Text chunks, then Finished.
        Closing the iterator early aborts the request inside the engine."""
        params = params or GenerationParams()
        q: queue.SimpleQueue = queue.SimpleQueue()

        async def run():
            try:
                await self._produce(q.put, instruction, story_text, params, adapter, use_memory, story, raw_prompt,
                                    summaries)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                q.put(exc)
            finally:
                q.put(_END)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        with self._lock:
            self._active_streams += 1
        try:
            yield from _coalesced(q, self.stream_interval if coalesce else (lambda: 0.0))
        finally:
            with self._lock:
                self._active_streams -= 1
            if not future.done():
                future.cancel()  # cancels the task on the loop; vLLM aborts the request

    def stream_interval(self) -> float:
        """Seconds between text updates of one stream. It widens with the number of
        streams open, so the web server sends about the same number of updates per
        second however many people write at once: each update costs the server
        (diffing, JSON, the event stream) about a millisecond of CPU, which at 32
        streams and 30 ms would eat a core that the engine needs."""
        base = self.settings.stream_interval_ms / 1000.0
        return base * max(1.0, self._active_streams / STREAMS_PER_INTERVAL)

    def generate(self, *args, **kwargs) -> str:
        return "".join(e.text for e in self.stream(*args, **kwargs) if isinstance(e, Text))

    # ---- async streaming for callers on their own event loop (HTTP API, batch, compare) ----
    async def astream(self, prompt_ids: list[int], params: Optional[GenerationParams] = None, *,
                      adapter: Optional[str] = None, stop: tuple[str, ...] = (), presence_penalty: float = 0.0,
                      frequency_penalty: float = 0.0, prompt_text: str = "",
                      memories: tuple[MemoryEntry, ...] = ()) -> AsyncIterator[StreamEvent]:
        """Generate from token ids, awaited on the caller's event loop (not the engine's):
        tokens hop loops with `call_soon_threadsafe`, so no thread waits per stream.
        Yields Prepared once the request is accepted (length, adapter and sampling
        checked: errors raise here, before any text), then Text deltas (those
        already waiting when the consumer asks are merged), then Finished.
        Cancelling the consumer, or closing the iterator, aborts the request
        inside the engine."""
        params = params or GenerationParams()
        caller = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            try:
                caller.call_soon_threadsafe(q.put_nowait, item)
            except RuntimeError:  # the caller's loop is gone; the task is being cancelled anyway
                pass

        async def run():
            try:
                t0 = time.perf_counter()
                limit = self.settings.max_model_len - params.max_tokens
                if len(prompt_ids) > limit:
                    raise prompts.PromptTooLong(
                        f"prompt is {len(prompt_ids)} tokens; at most {max(limit, 0)} fit "
                        f"(context {self.settings.max_model_len} - max tokens {params.max_tokens})"
                    )
                import msgspec

                # replace() re-runs SamplingParams' own checks (and its stop-string hold-back)
                sampling = msgspec.structs.replace(
                    self._sampling(params), stop=list(stop), presence_penalty=presence_penalty,
                    frequency_penalty=frequency_penalty,
                )
                lora = self._lora_request(adapter)
                put(Prepared(prompt_text, len(prompt_ids), list(memories)))
                await self._generate_into(put, prompt_ids, sampling, lora, t0)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                put(exc)
            finally:
                put(_END)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        held = None
        try:
            while True:
                if held is not None:
                    item, held = held, None
                else:
                    item = await q.get()
                if isinstance(item, Text):
                    # A consumer that fell behind gets the deltas waiting for it as one: fewer,
                    # larger chunks under load, and no added delay when it keeps up.
                    parts = [item.text]
                    while not q.empty():
                        nxt = q.get_nowait()
                        if not isinstance(nxt, Text):
                            held = nxt
                            break
                        parts.append(nxt.text)
                    if len(parts) > 1:
                        item = Text("".join(parts))
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not future.done():
                future.cancel()  # cancels the task on the engine loop; vLLM aborts the request

    def retrieve(self, query: str, story: Optional[str] = None) -> list[MemoryEntry]:
        """The memories a generation would be reminded of for `query` (from any thread)."""
        return self.call(self._retrieve(query, story))


def _coalesced(q: queue.SimpleQueue, interval_fn: Callable[[], float]) -> Iterator[StreamEvent]:
    """Merge Text events into one per `interval_fn()` seconds. The first chunk goes
    out at once (time to first token matters); later ones wait for the interval."""
    pending: list[str] = []
    last_flush = float("-inf")
    while True:
        interval = interval_fn()
        wait = max(0.0, last_flush + interval - time.perf_counter()) if pending else None
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
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
