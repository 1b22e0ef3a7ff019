"""Assemble the writing prompt within a token budget.

Order in the prompt: style instruction, retrieved memories, the story so far,
the user's instruction. When the whole does not fit into
`max_model_len - max_tokens`, cuts go in a fixed priority: first the oldest
part of the story so far, then the least relevant memories; the style and the
user's instruction are never cut (if they alone do not fit, that is an error).
Earlier chapters enter as short summaries ("前情提要"). The same template is used
by prepare's instruction pairs, so training and writing agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from ..memory.store import KIND_LABELS, MemoryEntry

PromptFormat = Literal["auto", "chat", "plain"]


class PromptTooLong(ValueError):
    """The parts that are never cut do not fit into the model's context."""


@dataclass
class AssembledPrompt:
    text: str
    token_ids: list[int]
    memories: list[MemoryEntry] = field(default_factory=list)
    story_chars_dropped: int = 0
    memories_dropped: int = 0
    summaries_used: int = 0


# Characters one token can span, at most, in any vocabulary we serve (bounds the story text tokenized).
MAX_CHARS_PER_TOKEN = 32

def memory_block(memories: Sequence[MemoryEntry]) -> str:
    if not memories:
        return ""
    lines = [f"- [{KIND_LABELS[m.kind].split()[0]}] {m.as_prompt_line()}" for m in memories]
    return "【故事记忆】\n" + "\n".join(lines)


def summary_block(summaries: Sequence[str]) -> str:
    if not summaries:
        return ""
    return "【前情提要】\n" + "\n".join(f"- {s}" for s in summaries)


def _user_content(memories: Sequence[MemoryEntry], story: str, instruction: str,
                  summaries: Sequence[str] = ()) -> str:
    parts = [memory_block(memories), summary_block(summaries)]
    if story:
        parts.append("【前文】\n" + story)
    if instruction:
        parts.append("【要求】\n" + instruction)
    return "\n\n".join(p for p in parts if p)


def render(tokenizer, fmt: PromptFormat, system: str, memories: Sequence[MemoryEntry],
           story: str, instruction: str, summaries: Sequence[str] = ()) -> str:
    if fmt == "chat":
        user = _user_content(memories, story, instruction, summaries)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Plain continuation for base models: context first, then the story itself,
    # so the text ends exactly where the model should go on writing.
    parts = [system, memory_block(memories), summary_block(summaries),
             f"【要求】\n{instruction}" if instruction else ""]
    head = "\n\n".join(p for p in parts if p)
    return f"{head}\n\n【正文】\n{story}" if head else story


def resolve_format(tokenizer, fmt: PromptFormat, model_name: str) -> Literal["chat", "plain"]:
    if fmt != "auto":
        return fmt
    name = model_name.lower()
    instruct = any(tag in name for tag in ("instruct", "chat", "-it"))
    return "chat" if instruct and getattr(tokenizer, "chat_template", None) else "plain"


def encode(tokenizer, text: str, fmt: str) -> list[int]:
    # A chat template already holds its special tokens; plain text gets the
    # tokenizer's own (e.g. Gemma's <bos>).
    return tokenizer(text, add_special_tokens=(fmt == "plain")).input_ids


def assemble(tokenizer, *, fmt: Literal["chat", "plain"], system: str, instruction: str,
             story: str = "", memories: Sequence[MemoryEntry] = (), summaries: Sequence[str] = (),
             max_model_len: int, max_tokens: int, memory_token_budget: int) -> AssembledPrompt:
    budget = max_model_len - max_tokens
    if budget <= 0:
        raise PromptTooLong(
            f"max tokens ({max_tokens}) must be smaller than the model's context ({max_model_len})"
        )
    fixed = encode(tokenizer, render(tokenizer, fmt, system, [], "", instruction), fmt)
    if len(fixed) > budget:
        raise PromptTooLong(
            f"the instruction is {len(fixed)} tokens but only {budget} fit "
            f"(context {max_model_len} - max tokens {max_tokens}); shorten it or lower max tokens"
        )

    # Memories, most relevant first, while they stay within their own budget.
    kept: list[MemoryEntry] = []
    mem_tokens = 0
    for m in memories:
        cost = len(tokenizer(f"- {m.as_prompt_line()}\n", add_special_tokens=False).input_ids)
        if mem_tokens + cost > min(memory_token_budget, budget - len(fixed)):
            continue
        kept.append(m)
        mem_tokens += cost

    # Summaries of earlier chapters, most recent first, within the same budget as
    # memories; they are listed oldest first in the prompt.
    kept_summaries: list[str] = []
    sum_tokens = 0
    for text in reversed(list(summaries)):
        cost = len(tokenizer(f"- {text}\n", add_special_tokens=False).input_ids)
        if mem_tokens + sum_tokens + cost > min(memory_token_budget * 2, budget - len(fixed)):
            break
        kept_summaries.insert(0, text)
        sum_tokens += cost

    # The story so far: keep the tail that fits, cutting on a line when possible.
    room = budget - len(encode(tokenizer, render(tokenizer, fmt, system, kept, "", instruction, kept_summaries), fmt))
    full_chars = len(story)
    # A multi-megabyte story is never tokenized whole: no token spans more than a few dozen
    # characters, so the last room * MAX_CHARS_PER_TOKEN characters hold every token that can fit.
    if len(story) > max(room, 0) * MAX_CHARS_PER_TOKEN:
        story = story[-max(room, 0) * MAX_CHARS_PER_TOKEN:]
    story_ids = tokenizer(story, add_special_tokens=False).input_ids if story else []
    dropped_chars = full_chars - len(story)
    if len(story_ids) > max(room - 8, 0):
        keep = max(room - 8, 0)  # margin: tokens can merge differently at the seam
        tail = tokenizer.decode(story_ids[len(story_ids) - keep:]) if keep else ""
        nl = tail.find("\n")
        if 0 <= nl < len(tail) // 4:
            tail = tail[nl + 1:]
        dropped_chars = full_chars - len(tail)
        story = tail

    text = render(tokenizer, fmt, system, kept, story, instruction, kept_summaries)
    ids = encode(tokenizer, text, fmt)
    while len(ids) > budget and (kept or kept_summaries):  # rare: the seam margin was not enough
        (kept_summaries if kept_summaries else kept).pop(0 if kept_summaries else -1)
        text = render(tokenizer, fmt, system, kept, story, instruction, kept_summaries)
        ids = encode(tokenizer, text, fmt)
    if len(ids) > budget:
        raise PromptTooLong(f"prompt is {len(ids)} tokens, more than the {budget} that fit")
    return AssembledPrompt(text=text, token_ids=ids, memories=kept, story_chars_dropped=dropped_chars,
                           memories_dropped=len(memories) - len(kept), summaries_used=len(kept_summaries))


MODES = ("continue", "rewrite", "outline")


def mode_instruction(mode: str, instruction: str = "", passage: str = "") -> str:
    """The user's instruction for each way of writing, in the words the model sees."""
    instruction = (instruction or "").strip()
    if mode == "continue":
        return instruction or "接着前文继续写下去，保持人物和文风一致。"
    if mode == "rewrite":
        if not (passage or "").strip():
            raise ValueError("rewrite needs the passage to rewrite: select or paste it")
        how = instruction or "润色这段文字，保持情节不变。"
        return f"改写下面这段文字。{how}\n原文：\n{passage.strip()}"
    if mode == "outline":
        if not instruction:
            raise ValueError("outline mode needs an outline line to write the chapter from")
        return f"根据这条大纲写出完整的一章正文：{instruction}"
    raise ValueError(f"unknown writing mode {mode!r}; choose one of {', '.join(MODES)}")
