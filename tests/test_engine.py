"""The engine bridge on vLLM's CPU build with a tiny real model."""
import threading

import pytest

from conftest import wait_until
from inkstone.inference.engine import AdapterError, Finished, GenerationParams, Prepared, Text
from inkstone.inference.prompts import PromptTooLong

pytestmark = pytest.mark.slow
# min_tokens: the text is as long whatever a random tiny model would rather do (end at once, say).
GREEDY = GenerationParams(temperature=0.0, max_tokens=24, min_tokens=24, repetition_penalty=1.0)


def test_stream_yields_prepared_text_finished(bridge):
    events = list(bridge.stream("写下去", "宝玉笑道：", GREEDY, use_memory=False))
    assert isinstance(events[0], Prepared) and events[0].prompt_tokens > 0
    assert isinstance(events[-1], Finished) and events[-1].output_tokens == 24
    assert events[-1].finish_reason == "length"
    assert "".join(e.text for e in events if isinstance(e, Text))


def test_updates_are_coalesced_not_per_token(bridge):
    params = GenerationParams(temperature=0.0, max_tokens=200, repetition_penalty=1.0)
    per_token = [e for e in bridge.stream(raw_prompt="宝玉", params=params, coalesce=False) if isinstance(e, Text)]
    coalesced = [e for e in bridge.stream(raw_prompt="宝玉", params=params) if isinstance(e, Text)]
    assert "".join(e.text for e in per_token) == "".join(e.text for e in coalesced)
    assert len(coalesced) < len(per_token)


def test_update_interval_widens_with_the_number_of_open_streams(bridge):
    from inkstone.inference.engine import STREAMS_PER_INTERVAL

    base = bridge.settings.stream_interval_ms / 1000.0
    params = GenerationParams(temperature=0.0, max_tokens=400, repetition_penalty=1.0)
    streams = [bridge.stream(raw_prompt="宝玉", params=params) for _ in range(2 * STREAMS_PER_INTERVAL)]
    try:
        for s in streams:
            next(s)  # each stream is open once it has started
        assert bridge.stream_interval() == pytest.approx(2 * base)
    finally:
        for s in streams:
            s.close()  # closing aborts inside the engine
    assert bridge.stream_interval() == pytest.approx(base)


def test_seed_makes_sampling_reproducible(bridge):
    p = GenerationParams(temperature=1.0, max_tokens=16, seed=7)
    assert bridge.generate(raw_prompt="黛玉", params=p) == bridge.generate(raw_prompt="黛玉", params=p)


def test_a_seeded_prompt_longer_than_a_step_budget_leaves_the_engine_alive(bridge, corpus):
    """vLLM rewinds a seeded request's generator after a partial prefill, which CPU
    generators cannot do: the engine core used to die on such a prompt."""
    ids = bridge.tokenizer(corpus.read_text(encoding="utf-8")[:3000]).input_ids[:900]
    assert len(ids) == 900 and bridge.settings.max_num_batched_tokens < 900  # the configured budget is smaller
    long_prompt = bridge.tokenizer.decode(ids)
    p = GenerationParams(temperature=1.0, max_tokens=8, seed=11)
    first = list(bridge.stream(raw_prompt=long_prompt, params=p))
    assert isinstance(first[-1], Finished) and first[-1].output_tokens == 8
    again = "".join(e.text for e in bridge.stream(raw_prompt=long_prompt, params=p) if isinstance(e, Text))
    assert again == "".join(e.text for e in first if isinstance(e, Text))  # the seed still holds
    assert bridge.generate(raw_prompt="宝玉", params=GREEDY)  # and the engine serves the next request


def test_lora_adapter_changes_output_without_restart(bridge, tiny_lora):
    base = bridge.generate(raw_prompt="宝玉笑道", params=GREEDY)
    name = bridge.register_adapter(tiny_lora)
    tuned = bridge.generate(raw_prompt="宝玉笑道", params=GREEDY, adapter=name)
    assert tuned != base
    assert bridge.generate(raw_prompt="宝玉笑道", params=GREEDY) == base  # base still served as before


def test_adapters_load_only_from_the_adapter_folders_and_outside_looks_like_missing(bridge, tmp_path, tiny_lora):
    import shutil

    outside = tmp_path / "real-adapter"
    shutil.copytree(tiny_lora, outside)
    answers = []
    for path in (outside, tmp_path / "missing", "../../etc", "no-such-adapter"):
        with pytest.raises(AdapterError) as err:
            bridge.register_adapter(path)
        answers.append(str(err.value).replace(repr(str(path)), "PATH"))
    assert len(set(answers)) == 1 and "adapter folders" in answers[0]  # one message, whatever exists
    assert bridge.register_adapter(outside, trusted=True)  # a path the owner gave on the command line
    with pytest.raises(AdapterError, match="not found"):
        bridge.register_adapter(tmp_path / "missing", trusted=True)
    assert bridge.register_adapter(tiny_lora.name) == bridge.register_adapter(tiny_lora)  # by name, in the folders


def test_too_long_prompt_is_refused_and_engine_keeps_serving(bridge):
    with pytest.raises(PromptTooLong):
        bridge.generate(raw_prompt="字" * 5000, params=GREEDY)
    with pytest.raises(PromptTooLong):
        bridge.generate("字" * 5000, params=GREEDY, use_memory=False)
    assert bridge.generate(raw_prompt="宝玉", params=GREEDY)


def test_closing_the_stream_aborts_the_request_in_the_engine(bridge):
    long = GenerationParams(temperature=0.0, max_tokens=900, repetition_penalty=1.0)
    stream = bridge.stream(raw_prompt="宝玉", params=long)
    for ev in stream:
        if isinstance(ev, Text):
            break
    assert bridge.engine.get_num_unfinished_requests() == 1
    stream.close()
    wait_until(lambda: bridge.engine.get_num_unfinished_requests() == 0, timeout=10)


def test_concurrent_callers_are_served_together(bridge):
    results = {}

    def worker(i):
        results[i] = bridge.generate(raw_prompt=f"第{i}回", params=GREEDY)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 8 and all(results.values())


def test_memories_are_retrieved_into_the_prompt(bridge):
    bridge.memory_call("add", "character", "林黛玉体弱多病，常年服药。", title="林黛玉", story="engine-test")
    first = next(iter(bridge.stream("写林黛玉吃药", "", GREEDY, story="engine-test")))
    assert isinstance(first, Prepared)
    assert "林黛玉体弱多病" in first.prompt and first.memories[0].title == "林黛玉"
    off = next(iter(bridge.stream("写林黛玉吃药", "", GREEDY, story="engine-test", use_memory=False)))
    assert "林黛玉体弱多病" not in off.prompt


def test_the_bf16_engine_path_serves_too(tiny_model, cfg):
    """The session engine runs float32; bf16 (native on AVX512-BF16 CPUs, emulated
    elsewhere, which `auto` avoids there) starts and writes as well."""
    from inkstone.hardware import cpu_has_fast_bf16
    from inkstone.inference.engine import EngineBridge, EngineSettings, engine_dtype

    assert engine_dtype("auto", gpu=False) == ("auto" if cpu_has_fast_bf16() else "float32")
    settings = EngineSettings.from_config(cfg, tiny_model, "tiny")
    settings.dtype, settings.cpu_kv_cache_gib = "bfloat16", 0.05
    with EngineBridge(settings) as b:
        events = list(b.stream(raw_prompt="宝玉", params=GenerationParams(max_tokens=6, min_tokens=6, seed=1),
                               use_memory=False))
        assert isinstance(events[-1], Finished) and events[-1].output_tokens == 6
        assert b.health()["state"] == "ready"
