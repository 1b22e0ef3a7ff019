"""Tokens/s and time to first token through the OpenAI-compatible API.

Meant to sit beside `bench serve`'s raw-engine numbers (same prompt, greedy,
same max tokens) so the API's overhead reads as a ratio. The client is plain
httpx reading server-sent events, so the measurement is the server's cost,
not a heavy client's.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Optional


async def _one(client, url: str, body: dict, headers: dict) -> tuple[Optional[float], int]:
    t0, first, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", url, json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return first, tokens


def bench_api(base_url: str, model: str, prompt: str, streams: int, max_tokens: int,
              api_key: Optional[str] = None) -> dict:
    """`streams` concurrent streaming completions of `prompt`; base_url ends with /v1."""
    import httpx

    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0,
            "top_k": -1, "repetition_penalty": 1.0, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def many():
        limits = httpx.Limits(max_connections=streams + 4)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            return await asyncio.gather(*(_one(client, base_url.rstrip("/") + "/completions", body, headers)
                                          for _ in range(streams)))

    t0 = time.perf_counter()
    res = asyncio.run(many())
    wall = time.perf_counter() - t0
    ttfts = [r[0] for r in res if r[0] is not None]
    tokens = sum(r[1] for r in res)
    return {"tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2) if wall else None,
            "ttft_ms_p50": round(statistics.median(ttfts) * 1000, 1) if ttfts else None,
            "ttft_ms_max": round(max(ttfts) * 1000, 1) if ttfts else None}
