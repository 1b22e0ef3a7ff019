"""An OpenAI-compatible server as the engine. The server here is the studio's own /v1
route, running the tiny model in the session's engine: the same weights on both sides,
so a greedy remote run must write exactly what the local engine writes."""
import pytest

from inkstone.engine.contract import EngineUnavailable, Finished, GenerationParams, Text
from inkstone.engine.openai_remote import OpenAIRemoteEngine
from inkstone.prompting import PromptRequest
from inkstone.writing.studio import Studio

pytestmark = pytest.mark.slow

GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=24, repetition_penalty=1.0, seed=3)


@pytest.fixture
def remote(app, rt, tiny_tokenizer):
    url = app[1] + "v1"
    return OpenAIRemoteEngine(url, rt.engine.model_name, tiny_tokenizer, max_model_len=1024).start()


def text_of(events) -> tuple[str, Finished]:
    events = list(events)
    return "".join(e.text for e in events if isinstance(e, Text)), events[-1]


def test_a_remote_run_writes_what_the_local_engine_writes(remote, rt):
    prepared = rt.studio.prepare(PromptRequest(story="remote", story_text="宝玉笑道：", instruction="写下去",
                                               use_memory=False, max_tokens=24))
    local, _ = text_of(rt.engine.stream(prepared.token_ids, GREEDY))
    far, fin = text_of(remote.stream(prepared.token_ids, GREEDY))
    assert far == local and fin.output_tokens == 24 and fin.finish_reason == "length" and fin.ttft_s is not None


def test_the_studio_writes_and_records_through_a_remote_engine(remote, rt, cfg):
    from inkstone.story.db import StudioDB

    studio = Studio(remote, rt.prompts, rt.adapters, StudioDB(cfg.memory.studio_db))
    seen = []
    for ev in studio.write(PromptRequest(story="remote", story_text="黛玉", instruction="", use_memory=False),
                           GREEDY, source="cli", should_stop=lambda: len(seen) >= 2):
        if isinstance(ev, Text):
            seen.append(ev.text)
    (entry,) = [e for e in studio.history.list(story="remote") if e.source == "cli"][:1]
    assert entry.output == "".join(seen) and entry.finish_reason == "stopped"  # Stop ends the request


def test_refusals_and_a_dead_server_are_clear(remote, tiny_tokenizer):
    too_long = GenerationParams(max_tokens=5000)
    with pytest.raises(ValueError, match="refused the request .*context length"):
        list(remote.stream(tiny_tokenizer("宝玉").input_ids, too_long))
    gone = OpenAIRemoteEngine("http://127.0.0.1:9/v1", "m", tiny_tokenizer, max_model_len=1024).start()
    with pytest.raises(EngineUnavailable, match="127.0.0.1:9/v1/completions did not answer"):
        list(gone.stream([1, 2, 3], GREEDY))
    with pytest.raises(ValueError, match="remote.url and remote.model"):
        OpenAIRemoteEngine("", "", tiny_tokenizer, max_model_len=1024)
