"""Prompt assembly within the token budget, with the tiny model's real tokenizer."""
import pytest

from inkstone.inference.prompts import PromptTooLong, assemble
from inkstone.memory.store import MemoryEntry


def mem(i, text):
    return MemoryEntry(id=str(i), kind="character", text=text, title=f"人物{i}")


def test_everything_fits(tiny_tokenizer):
    p = assemble(tiny_tokenizer, fmt="plain", system="写小说。", instruction="写下一段", story="宝玉笑道：",
                 memories=[mem(1, "林黛玉")], max_model_len=512, max_tokens=64, memory_token_budget=100)
    assert "林黛玉" in p.text and p.text.endswith("宝玉笑道：")
    assert len(p.token_ids) <= 512 - 64 and p.story_chars_dropped == 0


def test_old_story_is_cut_first_and_the_tail_kept(tiny_tokenizer, corpus):
    story = corpus.read_text(encoding="utf-8")[:20000]
    p = assemble(tiny_tokenizer, fmt="plain", system="写小说。", instruction="继续", story=story,
                 memories=[mem(1, "林黛玉")], max_model_len=512, max_tokens=128, memory_token_budget=100)
    assert len(p.token_ids) <= 512 - 128
    assert p.story_chars_dropped > 0
    assert story[-30:] in p.text  # the latest text survives
    assert p.memories  # memories kept within their own budget


def test_memories_over_budget_are_dropped_least_relevant_first(tiny_tokenizer):
    memories = [mem(i, "很长的设定描述" * 5) for i in range(10)]
    p = assemble(tiny_tokenizer, fmt="chat", system="s", instruction="继续", story="",
                 memories=memories, max_model_len=1024, max_tokens=64, memory_token_budget=150)
    assert 0 < len(p.memories) < 10
    assert [m.id for m in p.memories] == [str(i) for i in range(len(p.memories))]
    assert p.memories_dropped == 10 - len(p.memories)


def test_instruction_alone_too_long_is_an_error(tiny_tokenizer):
    with pytest.raises(PromptTooLong, match="shorten"):
        assemble(tiny_tokenizer, fmt="plain", system="", instruction="字" * 3000, max_model_len=256,
                 max_tokens=32, memory_token_budget=0)
    with pytest.raises(PromptTooLong, match="max tokens"):
        assemble(tiny_tokenizer, fmt="plain", system="", instruction="x", max_model_len=256, max_tokens=256,
                 memory_token_budget=0)
