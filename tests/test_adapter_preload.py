"""Adapters loaded ahead of their first request (VllmEngine.preload, adapter_ready), and
LoRA in vLLM's CPU worker computed per run of tokens (engine/cpu_lora.py); tiny model."""
import shutil
import threading

import pytest

from conftest import wait_until
from inkstone.checkpoints import AdapterError
from inkstone.engine.contract import Adapter, GenerationParams, Text

pytestmark = pytest.mark.slow
GREEDY = GenerationParams(temperature=0.0, max_tokens=24, min_tokens=24, repetition_penalty=1.0)
PROMPT = "宝玉笑道："


def ids(rt, text: str) -> list[int]:
    return rt.prompts.tokenizer(text).input_ids


@pytest.fixture
def copy_adapter(tiny_lora, tmp_path):
    """A new adapter to the engine (its own folder, so its own id) with tiny_lora's weights.
    Outside the adapter folders: the engine takes any checked Adapter; only the catalog limits them."""
    def make(name: str) -> Adapter:
        folder = tmp_path / name
        shutil.copytree(tiny_lora, folder)
        return Adapter(name, folder)

    return make


def test_the_engine_worker_computes_lora_per_run_of_tokens(rt):
    engine = rt.engine
    assert engine.call(engine.engine.collective_rpc("inkstone_lora_runs_installed"), timeout=60) == [True]


def test_preload_makes_the_adapter_ready_and_writes_what_a_first_use_writes(rt, copy_adapter):
    engine = rt.engine
    first_use, preloaded = copy_adapter("first-use"), copy_adapter("preloaded")
    assert engine.adapter_ready(None) and engine.preload(None).result() is None  # the base model never waits
    assert not engine.adapter_ready(preloaded)
    engine.preload(preloaded).result(timeout=120)
    assert engine.adapter_ready(preloaded)
    assert not engine.adapter_ready(first_use)

    base = engine.generate_text(ids(rt, PROMPT), GREEDY)
    loaded_by_the_request = engine.generate_text(ids(rt, PROMPT), GREEDY, first_use)
    assert engine.adapter_ready(first_use)
    assert engine.generate_text(ids(rt, PROMPT), GREEDY, preloaded) == loaded_by_the_request != base


def test_preloads_from_many_threads_at_once_all_end_ready(rt, copy_adapter):
    adapter = copy_adapter("many-callers")
    futures = []
    threads = [threading.Thread(target=lambda: futures.append(rt.engine.preload(adapter))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [f.result(timeout=120) for f in futures] == [None] * 4
    assert rt.engine.adapter_ready(adapter)


def test_a_broken_adapter_is_refused_and_the_engine_keeps_serving(rt, copy_adapter):
    engine = rt.engine
    broken = copy_adapter("broken")
    (broken.path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    restarts = len(engine.health()["restarts"])
    with pytest.raises(AdapterError, match="broken"):
        engine.preload(broken).result(timeout=120)
    with pytest.raises(AdapterError):
        engine.generate_text(ids(rt, PROMPT), GREEDY, broken)  # refused before any text
    assert not engine.adapter_ready(broken)
    assert engine.health()["state"] == "ready" and len(engine.health()["restarts"]) == restarts
    assert engine.generate_text(ids(rt, PROMPT), GREEDY)


def test_the_least_recently_used_adapter_is_no_longer_ready_beyond_max_loras(rt, copy_adapter):
    engine = rt.engine
    adapters = [copy_adapter(f"lru-{i}") for i in range(engine.settings.max_loras + 1)]
    for a in adapters:
        engine.preload(a).result(timeout=120)
    assert [engine.adapter_ready(a) for a in adapters] == [False] + [True] * engine.settings.max_loras
    assert engine.generate_text(ids(rt, PROMPT), GREEDY, adapters[0])  # loaded again on use
    assert engine.adapter_ready(adapters[0]) and not engine.adapter_ready(adapters[1])


def test_base_model_text_is_unchanged_beside_adapter_requests_with_every_slot_taken(rt, copy_adapter):
    """vLLM's CPU ops applied the last slot's adapter to base-model tokens batched beside
    adapter tokens; with every slot holding an adapter, the base model's text changed."""
    engine = rt.engine
    adapters = [copy_adapter(f"slot-{i}") for i in range(engine.settings.max_loras)]
    for a in adapters:
        engine.generate_text(ids(rt, PROMPT), GREEDY, a)  # each takes a slot
    alone = engine.generate_text(ids(rt, "黛玉"), GREEDY)
    long = GenerationParams(temperature=0.0, max_tokens=400, min_tokens=400, repetition_penalty=1.0)
    beside = engine.stream(ids(rt, PROMPT), long, adapters[-1])
    try:
        next(e for e in beside if isinstance(e, Text))  # the adapter request is decoding
        assert engine.generate_text(ids(rt, "黛玉"), GREEDY) == alone
    finally:
        beside.close()
    wait_until(lambda: engine.engine.get_num_unfinished_requests() == 0, timeout=10)
