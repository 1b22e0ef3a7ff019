"""`start.py bench soak`: many writers for many minutes, through the web app and the API at once.

The server (engine + Gradio app + /v1) runs in this process. The clients run in
a child process, so their work does not share the server's interpreter lock:
half the streams write through the app with gradio_client, as browsers do, the
other half stream from /v1/chat/completions. Each stream sends one request
after another until the time is up. Reported: requests done and failed (with
the first errors), time to first token p50/p99 per path, and the resident
memory of the server and its engine processes at the start and the end.
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time

STORY = "　　却说黛玉自那日弃舟登岸时，便有荣国府打发了轿子并拉行李的车辆久候了。"


def _pct(values: list[float], q: float):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def _rss_mb() -> float:
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


def clients(url: str, model: str, streams: int, seconds: float, max_tokens: int) -> dict:
    """Runs in the child process: `streams` loops, half app, half API."""
    import httpx
    from gradio_client import Client

    app = Client(url, verbose=False)
    lock = threading.Lock()
    stats = {"app": {"done": 0, "failed": 0, "ttft": []}, "api": {"done": 0, "failed": 0, "ttft": []}}
    errors: list[str] = []
    deadline = time.time() + seconds

    def record(path: str, ttft, error=None):
        with lock:
            if error is None:
                stats[path]["done"] += 1
                stats[path]["ttft"].append(ttft)
            else:
                stats[path]["failed"] += 1
                if len(errors) < 10:
                    errors.append(f"{path}: {error}")

    def app_loop(i: int):
        rng = random.Random(i)
        while time.time() < deadline:
            t0, first = time.perf_counter(), None
            try:
                tokens = max(16, rng.randint(max_tokens // 2, max_tokens))  # the UI's slider starts at 16
                job = app.submit(STORY, "续写下文", 0.8, 0.95, 50, tokens, 1.1, -1, False, "(base model)",
                                 f"soak-{i % 4}", "continue", "", api_name="/write")
                for out in job:
                    if first is None and out[0]:
                        first = time.perf_counter() - t0
                job.result()
                record("app", first if first is not None else time.perf_counter() - t0)
            except Exception as exc:
                record("app", None, repr(exc)[:300])

    def api_loop(i: int):
        rng = random.Random(1000 + i)
        with httpx.Client(timeout=300) as http:
            while time.time() < deadline:
                body = {"model": model, "messages": [{"role": "user", "content": STORY}], "stream": True,
                        "max_tokens": rng.randint(max_tokens // 2, max_tokens), "temperature": 0.8}
                t0, first = time.perf_counter(), None
                try:
                    with http.stream("POST", f"{url}v1/chat/completions", json=body) as r:
                        if r.status_code != 200:
                            raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:200]!r}")
                        for line in r.iter_lines():
                            if first is None and '"content":"' in line and '"content":""' not in line:
                                first = time.perf_counter() - t0
                            if '"error"' in line:
                                raise RuntimeError(line[:300])
                    record("api", first if first is not None else time.perf_counter() - t0)
                except Exception as exc:
                    record("api", None, repr(exc)[:300])

    threads = [threading.Thread(target=app_loop if i % 2 == 0 else api_loop, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {}
    for path, s in stats.items():
        out[path] = {"done": s["done"], "failed": s["failed"], "ttft_ms_p50": _pct(s["ttft"], 0.5),
                     "ttft_ms_p99": _pct(s["ttft"], 0.99)}
    out["errors"] = errors
    return out


def run_soak(cfg, streams: int = 32, minutes: float = 10.0, max_tokens: int = 64) -> dict:
    from ..runtime import open_runtime
    from ..system_info import device_summary
    from ..webui.app import AppContext, launch
    from .child import run_json
    from .serve import _free_port

    notes: list[str] = []
    scratch = tempfile.TemporaryDirectory(prefix="inkstone-soak-")  # the writer's own stories stay untouched
    soak_cfg = cfg.model_copy(update={
        "webui": cfg.webui.model_copy(update={"host": "127.0.0.1", "port": _free_port(), "share": False,
                                              "username": None, "password": None, "api_key": None}),
        "memory": cfg.memory.model_copy(update={"db_dir": f"{scratch.name}/chroma",
                                                "studio_db": f"{scratch.name}/studio.sqlite3"})})
    rt = open_runtime(soak_cfg, notes=notes)
    demo = None
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_memory():
        while not stop.wait(5.0):
            samples.append((time.time(), _rss_mb()))

    try:
        demo = launch(AppContext(cfg=soak_cfg, rt=rt, notes=notes), block=False)
        url = f"http://127.0.0.1:{soak_cfg.webui.port}/"
        run_json("inkstone.bench.soak", url, rt.engine.model_name, 2, 5, 32, what="soak warm-up", timeout=600)
        start_rss = _rss_mb()
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        t0 = time.time()
        result = run_json("inkstone.bench.soak", url, rt.engine.model_name, streams, minutes * 60, max_tokens,
                          what="soak clients", timeout=minutes * 60 + 900)
        wall = time.time() - t0
        stop.set()
        end_rss = _rss_mb()
        health = rt.engine.health()
    finally:
        stop.set()
        if demo is not None:
            demo.close()
        rt.stop()
        scratch.cleanup()
    done = result["app"]["done"] + result["api"]["done"]
    failed = result["app"]["failed"] + result["api"]["failed"]
    return {
        "summary": {"streams": streams, "minutes": minutes, "requests_done": done, "requests_failed": failed,
                    "requests_per_min": round(done / (wall / 60), 1),
                    "ttft_ms_p50": {"app": result["app"]["ttft_ms_p50"], "api": result["api"]["ttft_ms_p50"]},
                    "ttft_ms_p99": {"app": result["app"]["ttft_ms_p99"], "api": result["api"]["ttft_ms_p99"]},
                    "rss_mb_start": start_rss, "rss_mb_end": end_rss,
                    "rss_growth_mb": round(end_rss - start_rss, 1), "engine_restarts": len(health["restarts"])},
        "paths": {k: result[k] for k in ("app", "api")}, "errors": result["errors"],
        "rss_samples_mb": [m for _, m in samples], "model": rt.engine.model_name, "device": device_summary(),
        "notes": notes, "time": time.time(),
    }


if __name__ == "__main__":  # the clients, in their own process
    url, model, n, seconds, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    res = clients(url, model, n, seconds, tokens)
    print(json.dumps(res))
