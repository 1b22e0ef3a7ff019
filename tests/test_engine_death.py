"""A dead engine core is noticed, open requests end with a clear error, /v1 answers
503 while a new engine starts, and the next generation works: no restart by hand."""
import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from conftest import wait_until
from inkstone.engine.contract import EngineUnavailable, GenerationParams, Text

pytestmark = pytest.mark.slow


def engine_core_pids() -> list[int]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            title = " ".join(child.cmdline()) + " " + child.name()
        except psutil.Error:
            continue
        if "EngineCore" in title:
            found.append(child.pid)
    return found


def test_a_killed_engine_core_is_replaced_and_the_next_generation_works(app, rt):
    _, url = app
    (pid,) = engine_core_pids()
    params = GenerationParams(temperature=0.0, max_tokens=900, repetition_penalty=1.0)
    stream = rt.engine.stream(rt.prompts.tokenizer("宝玉").input_ids, params)
    seen, error = [], []

    def consume():
        try:
            for ev in stream:
                if isinstance(ev, Text):
                    seen.append(ev.text)
        except Exception as exc:  # what the writer sees
            error.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    wait_until(lambda: seen or error, timeout=60)
    assert seen, error
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert len(error) == 1 and isinstance(error[0], EngineUnavailable), error
    assert "restarting" in str(error[0])

    wait_until(lambda: rt.engine.state == "restarting", timeout=30)
    during = httpx.post(url + "v1/completions", json={"model": rt.engine.model_name, "prompt": "宝玉",
                                                      "max_tokens": 4}, timeout=30)
    assert during.status_code == 503 and "restarting" in during.json()["error"]["message"]
    assert during.headers.get("retry-after")
    assert httpx.get(url + "v1/health", timeout=30).status_code == 503

    wait_until(lambda: rt.engine.state == "ready", timeout=600, interval=0.5)
    text = rt.engine.generate_text(rt.prompts.tokenizer("宝玉").input_ids,
                                   GenerationParams(temperature=0.0, max_tokens=8))
    recovered_s = time.time() - killed_at
    assert text
    assert engine_core_pids() and engine_core_pids() != [pid]
    assert httpx.get(url + "v1/health", timeout=30).json()["restarts"][-1]["restart_s"] > 0
    print(f"\nkill -9 of the engine core to the next good generation: {recovered_s:.1f} s")
