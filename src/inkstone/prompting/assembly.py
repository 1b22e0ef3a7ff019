"""Fitting a writing prompt into the context.

Order in the prompt: style instruction, retrieved memories, chapter summaries,
the story so far, the instruction. When the whole does not fit into
`max_model_len - max_tokens`, cuts go in a fixed priority: first the oldest
part of the story so far, then the least relevant memories and the oldest
summaries; the style and the instruction are never cut (if they alone do not
fit, that is an error).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..engine.contract import PromptTooLong
from ..memory.store import MemoryEntry
from ..prompt_format import encode, memory_line, render, summary_line
from .request import UsedMemory, UsedSummary

# Characters one token can span, at most, in any vocabulary we serve (bounds the story text tokenized).
MAX_CHARS_PER_TOKEN = 32


def line_cost(tokenizer, line: str) -> int:
    """Tokens one line of a memory or summary block costs (the newline included)."""
    return len(tokenizer(line + "\n", add_special_tokens=False).input_ids)


def entry_line(m: MemoryEntry) -> str:
    return memory_line(m.kind, m.as_prompt_line())


def pick_memories(tokenizer, memories: Sequence[MemoryEntry], room: int) -> list[UsedMemory]:
    """Most relevant first, skipping any that would pass `room` tokens."""
    kept, used = [], 0
    for m in memories:
        cost = line_cost(tokenizer, entry_line(m))
        if used + cost <= room:
            kept.append(UsedMemory(m, cost))
            used += cost
    return kept


def pick_summaries(tokenizer, summaries: Sequence[str], room: int) -> list[UsedSummary]:
    """The most recent chapters' summaries that fit into `room`, oldest first."""
    kept: list[UsedSummary] = []
    used = 0
    for text in reversed(list(summaries)):
        cost = line_cost(tokenizer, summary_line(text))
        if used + cost > room:
            break
        kept.insert(0, UsedSummary(text, cost))
        used += cost
    return kept


@dataclass
class Fitted:
    text: str
    ids: list[int]
    memories: list[UsedMemory]
    summaries: list[UsedSummary]
    story_chars_dropped: int


def fit_writing(tokenizer, *, fmt: str, system: str, instruction: str, story: str,
                memories: Sequence[MemoryEntry], summaries: Sequence[str], max_model_len: int, max_tokens: int,
                memory_token_budget: int) -> Fitted:
    budget = max_model_len - max_tokens
    if budget <= 0:
        raise PromptTooLong(f"max tokens ({max_tokens}) must be smaller than the model's context ({max_model_len})")

    def build(mems: list[UsedMemory], sums: list[UsedSummary], story_text: str) -> tuple[str, list[int]]:
        text = render(tokenizer, fmt, system, [entry_line(m.entry) for m in mems], story_text, instruction,
                      [s.text for s in sums])
        return text, encode(tokenizer, text, fmt)

    _, fixed = build([], [], "")
    if len(fixed) > budget:
        raise PromptTooLong(
            f"the instruction is {len(fixed)} tokens but only {budget} fit "
            f"(context {max_model_len} - max tokens {max_tokens}); shorten it or lower max tokens")
    free = budget - len(fixed)
    kept = pick_memories(tokenizer, memories, min(memory_token_budget, free))
    mem_tokens = sum(m.tokens for m in kept)
    # Summaries share a budget twice the memories' own, with the memories.
    sums = pick_summaries(tokenizer, summaries, min(memory_token_budget * 2, free) - mem_tokens)

    room = budget - len(build(kept, sums, "")[1])
    tail, dropped = story_tail(tokenizer, story, room)
    text, ids = build(kept, sums, tail)
    while len(ids) > budget and (kept or sums):  # rare: the seam margin was not enough
        (sums if sums else kept).pop(0 if sums else -1)
        text, ids = build(kept, sums, tail)
    if len(ids) > budget:
        raise PromptTooLong(f"prompt is {len(ids)} tokens, more than the {budget} that fit")
    return Fitted(text, ids, kept, sums, dropped)


def story_tail(tokenizer, story: str, room: int) -> tuple[str, int]:
    """The end of the story that fits into `room` tokens, cut on a line when one is near;
    and how many characters were cut from its start."""
    full_chars = len(story)
    room = max(room, 0)
    # A multi-megabyte story is never tokenized whole: no token spans more than a few dozen
    # characters, so the last room * MAX_CHARS_PER_TOKEN characters hold every token that can fit.
    if len(story) > room * MAX_CHARS_PER_TOKEN:
        story = story[-room * MAX_CHARS_PER_TOKEN:]
    ids = tokenizer(story, add_special_tokens=False).input_ids if story else []
    keep = max(room - 8, 0)  # margin: tokens can merge differently at the seam
    if len(ids) <= keep:
        return story, full_chars - len(story)
    tail = tokenizer.decode(ids[len(ids) - keep:]) if keep else ""
    nl = tail.find("\n")
    if 0 <= nl < len(tail) // 4:
        tail = tail[nl + 1:]
    return tail, full_chars - len(tail)
