"""`start.py bench serve`: tokens/s and time to first token, raw engine vs the app.

One engine, in this process: the raw path calls vLLM's AsyncLLM directly on
the engine's loop; the app path goes through the running Gradio app with
gradio_client (HTTP, queue, streaming updates) from a child process, as
browsers would; the API path streams from the OpenAI-compatible routes of the
same app with an async client.
Both get the same prompt tokens and greedy sampling, so they do the same work.
A naive Hugging Face `generate` on the same model, one request at a time, is
the outside baseline. Results are ratios; nothing here asserts a timing.
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

STORY = "　　却说黛玉自那日弃舟登岸时，便有荣国府打发了轿子并拉行李的车辆久候了。"
INSTRUCTION = "续写下文"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(ttfts: list[float], tokens: int, wall: float) -> dict:
    return {
        "tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2) if wall else None,
        "ttft_ms_p50": round(statistics.median(ttfts) * 1000, 1) if ttfts else None,
        "ttft_ms_max": round(max(ttfts) * 1000, 1) if ttfts else None,
    }


def bench_raw(engine, prompt_ids: list[int], streams: int, max_tokens: int) -> dict:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, output_kind=RequestOutputKind.DELTA)

    async def one():
        t0, first, n = time.perf_counter(), None, 0
        async for out in engine.engine.generate({"prompt_token_ids": prompt_ids}, sp, uuid.uuid4().hex):
            if first is None:
                first = time.perf_counter() - t0
            n += len(out.outputs[0].token_ids)
        return first, n

    async def many():
        return await asyncio.gather(*(one() for _ in range(streams)))

    t0 = time.perf_counter()
    res = engine.call(many())
    wall = time.perf_counter() - t0
    return _summary([r[0] for r in res], sum(r[1] for r in res), wall)


def bench_app(url: str, streams: int, max_tokens: int) -> dict:
    """The app path, driven from a separate process as browsers would be: the clients'
    own work (one thread and event stream per job) then does not share the
    server's interpreter lock, only the CPU."""
    from .child import run_json

    return run_json("inkstone.bench.serve", url, streams, max_tokens, what="the app client process", timeout=1800)


def _app_clients(client, streams: int, max_tokens: int) -> dict:
    ttfts, tokens, errors = [], [], []
    lock = threading.Lock()

    def one():
        t0, first = time.perf_counter(), None
        try:
            job = client.submit(STORY, INSTRUCTION, 0.0, 1.0, -1, max_tokens, 1.0, -1, False, "(base model)",
                                "bench", "continue", "", api_name="/write")
            for out in job:
                if first is None and out[0]:
                    first = time.perf_counter() - t0
            status = job.outputs()[-1][1]
            n = int(re.search(r"· (\d+) tokens", status).group(1))
            with lock:
                ttfts.append(first if first is not None else time.perf_counter() - t0)
                tokens.append(n)
        except Exception as exc:  # recorded, not hidden
            with lock:
                errors.append(repr(exc))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out = _summary(ttfts, sum(tokens), wall)
    if errors:
        out["errors"] = errors[:5]
    return out


def bench_naive_hf(model_path: Path, prompt_ids: list[int], max_tokens: int, requests: int = 2) -> dict:
    """What a naive app does: transformers `generate`, one request at a time."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..engine.vllm_engine import engine_dtype

    # The same dtype rule as the engine: float32 where this CPU only emulates bf16.
    dtype = engine_dtype("auto", torch.cuda.is_available())
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32 if dtype == "float32" else "auto")
    model.eval()
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        t0, tokens = time.perf_counter(), 0
        for _ in range(requests):
            out = model.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
            tokens += out.shape[1] - ids.shape[1]
        wall = time.perf_counter() - t0
    return {"requests_one_at_a_time": requests, "tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 2)}


def run_serve_bench(cfg, levels: list[int], max_tokens: int = 64) -> dict:
    from ..prompting import PromptRequest
    from ..runtime import open_runtime
    from ..system_info import device_summary
    from ..webui.app import AppContext, launch

    notes: list[str] = []
    bench_cfg = cfg.model_copy(update={"webui": cfg.webui.model_copy(update={
        "host": "127.0.0.1", "port": _free_port(), "share": False})})
    rt = open_runtime(bench_cfg, notes=notes)
    engine = rt.engine
    demo = None
    try:
        demo = launch(AppContext(cfg=bench_cfg, rt=rt, notes=notes), block=False)
        app_url = f"http://127.0.0.1:{bench_cfg.webui.port}/"
        # The Write tab's prompt for the same request, memory off (as the app clients ask).
        prepared = rt.prompts.prepare(PromptRequest(story="bench", instruction=INSTRUCTION, story_text=STORY,
                                                    use_memory=False, max_tokens=max_tokens))
        prompt_ids = prepared.token_ids
        bench_raw(engine, prompt_ids, 1, 16)  # warm-up both paths
        bench_app(app_url, 1, 16)
        from ..api.bench import bench_api

        api_url = f"http://127.0.0.1:{bench_cfg.webui.port}/v1"
        prompt_text = prepared.text
        results = []
        for n in levels:
            raw = bench_raw(engine, prompt_ids, n, max_tokens)
            app = bench_app(app_url, n, max_tokens)
            api = bench_api(api_url, engine.model_name, prompt_text, n, max_tokens)
            ratio = app["tokens_per_s"] / raw["tokens_per_s"] if raw["tokens_per_s"] and app["tokens_per_s"] else None
            extra_ttft = (app["ttft_ms_p50"] - raw["ttft_ms_p50"]) if app["ttft_ms_p50"] and raw["ttft_ms_p50"] else None
            api_ratio = api["tokens_per_s"] / raw["tokens_per_s"] if raw["tokens_per_s"] and api["tokens_per_s"] else None
            results.append({"streams": n, "raw": raw, "app": app, "api": api,
                            "app_over_raw_tokens_per_s": round(ratio, 3) if ratio else None,
                            "api_over_raw_tokens_per_s": round(api_ratio, 3) if api_ratio else None,
                            "app_extra_ttft_ms_p50": round(extra_ttft, 1) if extra_ttft is not None else None})
        gradio_phases = _gradio_profile()
    finally:
        if demo is not None:
            demo.close()
        rt.stop()
    naive = bench_naive_hf(engine.settings.model_path, prompt_ids, max_tokens)
    one = next((r for r in results if r["streams"] == 1), None)
    summary = {
        "model": engine.model_name, "device": device_summary(), "prompt_tokens": len(prompt_ids),
        "max_tokens": max_tokens,
        "app_over_raw": {r["streams"]: r["app_over_raw_tokens_per_s"] for r in results},
        "api_over_raw": {r["streams"]: r["api_over_raw_tokens_per_s"] for r in results},
        "app_extra_ttft_ms_p50": {r["streams"]: r["app_extra_ttft_ms_p50"] for r in results},
        "app_tokens_per_s": {r["streams"]: r["app"]["tokens_per_s"] for r in results},
        "naive_hf_tokens_per_s": naive["tokens_per_s"],
    }
    if one:
        summary["app_aggregate_over_one_stream"] = {
            r["streams"]: round(r["app"]["tokens_per_s"] / one["app"]["tokens_per_s"], 2) for r in results}
        # What the engine itself gains from batching here: the ceiling for the app's figure.
        summary["raw_aggregate_over_one_stream"] = {
            r["streams"]: round(r["raw"]["tokens_per_s"] / one["raw"]["tokens_per_s"], 2) for r in results}
        summary["app_over_naive_hf"] = {
            r["streams"]: round(r["app"]["tokens_per_s"] / naive["tokens_per_s"], 2) for r in results}
    out = {"summary": summary, "levels": results, "naive_hf": naive, "notes": notes, "time": time.time()}
    if gradio_phases:
        out["gradio_phases"] = gradio_phases
    return out


def _gradio_profile() -> Optional[dict]:
    """Gradio's own per-phase timings of the app's jobs (queue wait, pre/postprocess, the
    handler, streaming diffs), when the run has GRADIO_PROFILING=1."""
    from gradio.profiling import PROFILING_ENABLED, collector

    return collector.get_summary() if PROFILING_ENABLED else None


if __name__ == "__main__":  # the app's clients, in their own process (see bench_app)
    from gradio_client import Client

    url, n_streams, n_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(_app_clients(Client(url, verbose=False), n_streams, n_tokens)))
