"""The vLLM engine on vLLM's CPU build with a tiny real model: token ids in, text out."""
import threading

import pytest

from conftest import wait_until
from inkstone.checkpoints import AdapterError
from inkstone.engine.contract import Accepted, Finished, GenerationParams, PromptTooLong, Text

pytestmark = pytest.mark.slow
# min_tokens: the text is as long whatever a random tiny model would rather do (end at once, say).
GREEDY = GenerationParams(temperature=0.0, max_tokens=24, min_tokens=24, repetition_penalty=1.0)


def ids(rt, text: str) -> list[int]:
    return rt.prompts.tokenizer(text).input_ids


def test_stream_yields_accepted_text_finished(rt):
    events = list(rt.engine.stream(ids(rt, "宝玉笑道："), GREEDY))
    assert isinstance(events[0], Accepted) and events[0].prompt_tokens == len(ids(rt, "宝玉笑道："))
    assert isinstance(events[-1], Finished) and events[-1].output_tokens == 24
    assert events[-1].finish_reason == "length"
    assert "".join(e.text for e in events if isinstance(e, Text))


def test_updates_are_coalesced_not_per_token(rt):
    params = GenerationParams(temperature=0.0, max_tokens=200, repetition_penalty=1.0)
    per_token = [e for e in rt.engine.stream(ids(rt, "宝玉"), params, coalesce=False) if isinstance(e, Text)]
    coalesced = [e for e in rt.engine.stream(ids(rt, "宝玉"), params) if isinstance(e, Text)]
    assert "".join(e.text for e in per_token) == "".join(e.text for e in coalesced)
    assert len(coalesced) < len(per_token)


def test_update_interval_widens_with_the_number_of_open_streams(rt):
    from inkstone.engine.vllm_engine import STREAMS_PER_INTERVAL

    engine = rt.engine
    base = engine.settings.stream_interval_ms / 1000.0
    params = GenerationParams(temperature=0.0, max_tokens=400, repetition_penalty=1.0)
    streams = [engine.stream(ids(rt, "宝玉"), params) for _ in range(2 * STREAMS_PER_INTERVAL)]
    try:
        for s in streams:
            next(s)  # each stream is open once it has started
        assert engine.stream_interval() == pytest.approx(2 * base)
    finally:
        for s in streams:
            s.close()  # closing aborts inside the engine
    assert engine.stream_interval() == pytest.approx(base)


def test_seed_makes_sampling_reproducible(rt):
    p = GenerationParams(temperature=1.0, max_tokens=16, seed=7)
    assert rt.engine.generate_text(ids(rt, "黛玉"), p) == rt.engine.generate_text(ids(rt, "黛玉"), p)


def test_a_seeded_prompt_longer_than_a_step_budget_leaves_the_engine_alive(rt, corpus):
    """vLLM rewinds a seeded request's generator after a partial prefill, which CPU
    generators cannot do: the engine core used to die on such a prompt."""
    engine = rt.engine
    long_ids = ids(rt, corpus.read_text(encoding="utf-8")[:3000])[:900]
    assert len(long_ids) == 900 and engine.settings.max_num_batched_tokens < 900  # the configured budget is smaller
    p = GenerationParams(temperature=1.0, max_tokens=8, seed=11)
    first = list(engine.stream(long_ids, p))
    assert isinstance(first[-1], Finished) and first[-1].output_tokens == 8
    again = engine.generate_text(long_ids, p)
    assert again == "".join(e.text for e in first if isinstance(e, Text))  # the seed still holds
    assert engine.generate_text(ids(rt, "宝玉"), GREEDY)  # and the engine serves the next request


def test_lora_adapter_changes_output_without_restart(rt, tiny_lora):
    base = rt.engine.generate_text(ids(rt, "宝玉笑道"), GREEDY)
    adapter = rt.adapters.resolve(rt.adapters.register(tiny_lora))
    tuned = rt.engine.generate_text(ids(rt, "宝玉笑道"), GREEDY, adapter)
    assert tuned != base
    assert rt.engine.generate_text(ids(rt, "宝玉笑道"), GREEDY) == base  # base still served as before


def test_adapters_load_only_from_the_adapter_folders_and_outside_looks_like_missing(rt, tmp_path, tiny_lora):
    import shutil

    catalog = rt.adapters
    outside = tmp_path / "real-adapter"
    shutil.copytree(tiny_lora, outside)
    answers = []
    for path in (outside, tmp_path / "missing", "../../etc", "no-such-adapter"):
        with pytest.raises(AdapterError) as err:
            catalog.register(path)
        answers.append(str(err.value).replace(repr(str(path)), "PATH"))
        with pytest.raises(AdapterError):
            catalog.resolve(str(path))  # a name from the UI or the API: the same rule
    assert len(set(answers)) == 1 and "adapter folders" in answers[0]  # one message, whatever exists
    assert catalog.register(outside, trusted=True)  # a path the owner gave on the command line
    with pytest.raises(AdapterError, match="not found"):
        catalog.register(tmp_path / "missing", trusted=True)
    assert catalog.register(tiny_lora.name) == catalog.register(tiny_lora)  # by name, in the folders


def test_too_long_prompt_is_refused_and_engine_keeps_serving(rt):
    with pytest.raises(PromptTooLong, match="at most"):
        rt.engine.generate_text(ids(rt, "字" * 5000), GREEDY)
    assert rt.engine.generate_text(ids(rt, "宝玉"), GREEDY)


def test_closing_the_stream_aborts_the_request_in_the_engine(rt):
    long = GenerationParams(temperature=0.0, max_tokens=900, repetition_penalty=1.0)
    stream = rt.engine.stream(ids(rt, "宝玉"), long)
    for ev in stream:
        if isinstance(ev, Text):
            break
    assert rt.engine.engine.get_num_unfinished_requests() == 1
    stream.close()
    wait_until(lambda: rt.engine.engine.get_num_unfinished_requests() == 0, timeout=10)


def test_concurrent_callers_are_served_together(rt):
    results = {}

    def worker(i):
        results[i] = rt.engine.generate_text(ids(rt, f"第{i}回"), GREEDY)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 8 and all(results.values())


def test_the_bf16_engine_path_serves_too(tiny_model, cfg, tiny_tokenizer):
    """The session engine runs float32; bf16 (native on AVX512-BF16 CPUs, emulated
    elsewhere, which `auto` avoids there) starts and writes as well."""
    from inkstone.hardware import cpu_has_fast_bf16
    from inkstone.engine.vllm_engine import EngineSettings, VllmEngine, engine_dtype

    assert engine_dtype("auto", gpu=False) == ("auto" if cpu_has_fast_bf16() else "float32")
    settings = EngineSettings.from_config(cfg, tiny_model, "tiny")
    settings.dtype, settings.cpu_kv_cache_gib = "bfloat16", 0.05
    with VllmEngine(settings) as engine:
        events = list(engine.stream(tiny_tokenizer("宝玉").input_ids, GenerationParams(max_tokens=6, min_tokens=6,
                                                                                        seed=1)))
        assert isinstance(events[-1], Finished) and events[-1].output_tokens == 6
        assert engine.health()["state"] == "ready"
