"""The OpenAI-compatible API, driven by the real `openai` client against the running app."""
import json
import logging
import threading

import httpx
import openai
import pytest

from conftest import free_port, wait_until
from inkstone.engine.contract import GenerationParams

pytestmark = pytest.mark.slow
# min_tokens (capped at max_tokens): as many tokens as asked, whatever a random tiny model would rather do.
GREEDY = dict(temperature=0.0, extra_body={"repetition_penalty": 1.0, "min_tokens": 10_000})


@pytest.fixture(scope="module")
def api(app):
    ctx, url = app
    return openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def base(rt):
    return rt.engine.model_name


@pytest.fixture(scope="module")
def lora_name(rt, tiny_lora):
    return rt.adapters.register(tiny_lora, name="api-lora")


def test_models_lists_base_and_adapters(api, base, lora_name):
    ids = [m.id for m in api.models.list().data]
    assert ids[0] == base and lora_name in ids
    assert api.models.retrieve(lora_name).id == lora_name


def test_completion_equals_the_raw_engine_and_counts_usage(api, base, rt):
    out = api.completions.create(model=base, prompt="宝玉笑道：", max_tokens=12, **GREEDY)
    raw = rt.engine.generate_text(rt.prompts.tokenizer("宝玉笑道：").input_ids,
                                  GenerationParams(temperature=0.0, max_tokens=12, min_tokens=12, repetition_penalty=1.0))
    assert out.choices[0].text == raw
    assert out.usage.prompt_tokens == len(rt.prompts.tokenizer("宝玉笑道：").input_ids)
    assert out.usage.completion_tokens == 12 and out.choices[0].finish_reason == "length"
    assert out.usage.total_tokens == out.usage.prompt_tokens + 12


def test_chat_streams_with_the_chat_template(api, app, base, rt):
    messages = [{"role": "system", "content": "你是作家。"}, {"role": "user", "content": "写黛玉进府"}]
    stream = api.chat.completions.create(model=base, messages=messages, max_tokens=16, stream=True,
                                         stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # streamed, not one piece
    templated = rt.prompts.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chunks[-1].usage.prompt_tokens == len(rt.prompts.tokenizer(templated, add_special_tokens=False).input_ids)
    assert chunks[-1].usage.completion_tokens == 16
    whole = api.chat.completions.create(model=base, messages=messages, max_tokens=16, **GREEDY)
    assert whole.choices[0].message.content == text and whole.usage.completion_tokens == 16

    # the wire format itself: SSE events, ending with [DONE]
    body = {"model": base, "messages": messages, "max_tokens": 4, "stream": True, "temperature": 0}
    with httpx.stream("POST", app[1] + "v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_adapter_is_a_model_name(api, base, lora_name):
    kw = dict(prompt="宝玉笑道", max_tokens=12, **GREEDY)
    tuned = api.completions.create(model=lora_name, **kw).choices[0].text
    assert tuned != api.completions.create(model=base, **kw).choices[0].text


def test_n_and_prompt_lists_give_indexed_choices(api, base):
    out = api.completions.create(model=base, prompt=["宝玉", "黛玉"], n=2, max_tokens=4, temperature=1.0, seed=3)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert out.usage.completion_tokens == 16


def test_stop_sequences_end_the_text(api, base):
    # Seeded sampling at temperature 1 writes text whatever the model's weights (greedy decoding of a
    # random tiny model may end at once), and the same seed writes it again up to the stop string.
    sampled = dict(temperature=1.0, top_p=1.0, seed=5, extra_body={"top_k": -1, "repetition_penalty": 1.0})
    full = api.completions.create(model=base, prompt="宝玉笑道", max_tokens=32, **sampled).choices[0].text
    assert len(full) >= 8, full
    stop = full[6:8]
    cut = api.completions.create(model=base, prompt="宝玉笑道", max_tokens=32, stop=[stop], **sampled).choices[0]
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"


def test_story_memory_through_the_extra_field(api, base, rt):
    entry = rt.memory.call("add", "character", "王熙凤，人称凤辣子，协理宁国府。", title="王熙凤", story="api-story")
    extra = {"inkstone": {"story": "api-story", "use_memory": True}, "repetition_penalty": 1.0}
    out = api.chat.completions.create(model=base, messages=[{"role": "user", "content": "写凤辣子协理宁国府"}],
                                      max_tokens=4, temperature=0.0, extra_body=extra)
    assert entry.id in [m["id"] for m in out.model_extra["inkstone"]["memories"]]
    plain = api.chat.completions.create(model=base, messages=[{"role": "user", "content": "写凤辣子协理宁国府"}],
                                        max_tokens=4, **GREEDY)
    assert out.usage.prompt_tokens > plain.usage.prompt_tokens


def test_unknown_model_is_404_listing_the_models(api, base):
    with pytest.raises(openai.NotFoundError) as err:
        api.completions.create(model="no-such-model", prompt="宝玉", max_tokens=4)
    assert err.value.body["models"][0] == base and "no-such-model" in err.value.message


def test_oversized_request_is_400_naming_the_limit(api, base):
    with pytest.raises(openai.BadRequestError, match="1024"):
        api.completions.create(model=base, prompt="宝玉", max_tokens=1024)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 1024"):
        api.chat.completions.create(model=base, messages=[{"role": "user", "content": "字" * 5000}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        api.completions.create(model=base, prompt="宝玉", temperature=5)
    assert api.completions.create(model=base, prompt="宝玉", max_tokens=2).choices[0].text is not None


def test_client_disconnect_aborts_the_request(api, base, rt, caplog):
    engine = rt.engine.engine
    stream = api.completions.create(model=base, prompt="宝玉", max_tokens=1000, stream=True, **GREEDY)
    next(iter(stream))
    assert engine.get_num_unfinished_requests() == 1
    stream.close()
    wait_until(lambda: engine.get_num_unfinished_requests() == 0, timeout=20)

    # a non-streaming request whose client gives up is aborted too (not left to finish)
    impatient = api.with_options(timeout=1.0)
    with caplog.at_level(logging.INFO, logger="inkstone.api.responses"):
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model=base, messages=[{"role": "user", "content": "宝玉"}],
                                              max_tokens=1000, n=4, **GREEDY)
        wait_until(lambda: any("client disconnected: chatcmpl-" in r.getMessage() for r in caplog.records))
        wait_until(lambda: engine.get_num_unfinished_requests() == 0, timeout=20)


# ---- keys: a router with a key, and one for a shared app without a key, on a small server ----
def _serve(fastapi_app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(fastapi_app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    return server, thread, f"http://127.0.0.1:{server.config.port}"


def test_api_key_is_required_when_configured_or_shared(app, base, caplog):
    from fastapi import FastAPI

    from inkstone.api.openai_compat import create_router
    from inkstone.webui.app import AppContext

    ctx = app[0]
    keyed = FastAPI()
    keyed.include_router(create_router(ctx, api_key="sesame"))
    shared_cfg = ctx.cfg.model_copy(update={"webui": ctx.cfg.webui.model_copy(update={"share": True})})
    with caplog.at_level(logging.WARNING, logger="inkstone.api.auth"):
        shared_router = create_router(AppContext(cfg=shared_cfg, rt=ctx.rt), api_key=None)
    made_up = [r.args[-1] for r in caplog.records if "made up for this run" in r.getMessage()]
    assert len(made_up) == 1 and len(made_up[0]) >= 24
    shared = FastAPI()
    shared.include_router(shared_router)
    root = FastAPI()
    root.mount("/keyed", keyed)
    root.mount("/shared", shared)
    server, thread, url = _serve(root)
    try:
        for prefix, key in (("/keyed", "sesame"), ("/shared", made_up[0])):
            assert httpx.get(f"{url}{prefix}/v1/models").status_code == 401
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key="wrong", max_retries=0).models.list()
            good = openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key=key, max_retries=0)
            assert good.models.list().data[0].id == base
        out = openai.OpenAI(base_url=f"{url}/keyed/v1", api_key="sesame", max_retries=0).completions.create(
            model=base, prompt="宝玉", max_tokens=3)
        assert out.usage.completion_tokens == 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---- limits: checked before any work, each with a clear 4xx ----
def test_bad_bodies_get_400_or_413_naming_the_problem(app, base):
    _, url = app
    post = lambda body, **kw: httpx.post(url + "v1/completions", content=body, timeout=30,  # noqa: E731
                                         headers={"Content-Type": "application/json"}, **kw)
    r = post(b'{"model": "x", "prompt": ')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = post(b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]
    r = post(json.dumps({"model": base, "prompt": "宝玉\ud800", "max_tokens": 2}).encode())
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt" and "surrogate" in r.text
    r = post(b'{"model": "' + b"x" * (5 << 20) + b'"}')
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]


@pytest.mark.parametrize("field, value, param", [
    ("prompt", ["宝玉"] * 17, "prompt"), ("n", 9, "n"), ("stop", ["。"] * 9, "stop"), ("stop", ["长" * 65], "stop"),
])
def test_requests_beyond_the_limits_are_refused_before_generating(app, base, field, value, param):
    _, url = app
    body = {"model": base, "prompt": "宝玉", "max_tokens": 2, field: value}
    r = httpx.post(url + "v1/completions", json=body, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == param and "limits." in r.text


def test_concurrent_generations_are_limited_per_client_and_in_all(app, base):
    from fastapi import FastAPI

    from inkstone.api.openai_compat import create_router
    from inkstone.webui.app import AppContext

    ctx = app[0]
    limits = ctx.cfg.limits.model_copy(update={"max_concurrent_per_client": 2, "max_concurrent": 3})
    small = FastAPI()
    small.include_router(create_router(AppContext(cfg=ctx.cfg.model_copy(update={"limits": limits}),
                                                  rt=ctx.rt, train_job=None)))
    server, thread, url = _serve(small)
    long = {"model": base, "prompt": "宝玉", "max_tokens": 900, "min_tokens": 900, "stream": True}

    def request(who: str) -> tuple[str, int, str]:
        r = httpx.post(f"{url}/v1/completions", json=long, headers={"Authorization": f"Bearer {who}"}, timeout=120)
        return who, r.status_code, r.text

    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:  # six at once, each generating for seconds
            answers = list(pool.map(request, ["a", "a", "a", "b", "b", "c"]))
        served = [who for who, status, _ in answers if status == 200]
        refused = [(who, text) for who, status, text in answers if status == 429]
        assert len(served) + len(refused) == 6 and refused
        assert len(served) <= 3 and all(served.count(w) <= 2 for w in "abc")
        assert all("limits.max_concurrent" in text for _, text in refused)
        assert all("[DONE]" in text for _, status, text in answers if status == 200)
        assert request("a")[1] == 200 and request("c")[1] == 200  # places are given back when streams end
    finally:
        server.should_exit = True
        thread.join(timeout=10)
