"""Instruction pairs made with the Write tab's own prompt template.

Each passage of a chapter becomes {"prompt", "completion"}: the prompt is
`prompt_format.render` with the preceding text of the chapter as the story
so far and an outline line as the instruction (the chapter title for its first
passage, "续写下文" after that); the completion is the passage. Training on
these teaches the model the exact prompt it will see when writing.

Rendering a chat template per pair is slow, so the template is rendered once
per shape with placeholders and filled in by string replacement, after
checking on the first real pair that this gives the very same text.
"""
from __future__ import annotations

from typing import Literal, Optional

DEFAULT_SYSTEM = "你是一位擅长长篇小说创作的作家。延续故事的文风与人物，写出连贯、生动的正文。"
CONTINUE = "续写下文"
_STORY, _INSTRUCTION = "\x00INKSTONE-STORY\x00", "\x00INKSTONE-INSTRUCTION\x00"


def resolve_prompt_format(tokenizer, prompt_format: str = "auto", model_name: str = "") -> Literal["chat", "plain"]:
    """"auto" decides exactly as the inference engine does (chat for instruct models with a chat
    template), so the pairs are rendered the way the Write tab will render its prompts."""
    if prompt_format not in ("auto", "chat", "plain"):
        raise ValueError(f"prompt_format must be auto, chat or plain, not {prompt_format!r}")
    from ..prompt_format import resolve_format

    return resolve_format(tokenizer, prompt_format, model_name or str(getattr(tokenizer, "name_or_path", "")))


class PromptMaker:
    def __init__(self, tokenizer, fmt: Literal["chat", "plain"], system: str = DEFAULT_SYSTEM):
        from ..prompt_format import render  # the template every generation is rendered with

        self.tokenizer, self.fmt, self.system, self._render = tokenizer, fmt, system, render
        self._shapes: dict[tuple[bool, bool], Optional[str]] = {}

    def _real(self, story: str, instruction: str) -> str:
        return self._render(self.tokenizer, self.fmt, self.system, [], story, instruction)

    def __call__(self, story: str, instruction: str) -> str:
        shape = (bool(story), bool(instruction))  # empty parts change the template's layout
        if shape not in self._shapes:
            self._shapes[shape] = self._template(shape, story, instruction)
        t = self._shapes[shape]
        return self._real(story, instruction) if t is None else self._fill(t, story, instruction)

    def _template(self, shape: tuple[bool, bool], story: str, instruction: str) -> Optional[str]:
        has_story, has_instruction = shape
        text = self._real(_STORY if has_story else "", _INSTRUCTION if has_instruction else "")
        if text.count(_STORY) != has_story or text.count(_INSTRUCTION) != has_instruction:
            return None
        if self._fill(text, story, instruction) != self._real(story, instruction):
            return None  # the template transforms its input (trims, escapes...): render every time
        return text

    @staticmethod
    def _fill(text: str, story: str, instruction: str) -> str:
        # Split on one placeholder first, so neither filler is ever searched for the other placeholder.
        return instruction.join(part.replace(_STORY, story) for part in text.split(_INSTRUCTION))


def story_tail(paragraphs: list[str], counts: list[int], end: int, max_tokens: int) -> str:
    """The last whole paragraphs before `end` that fit in `max_tokens` (or the tail of the last one)."""
    k, size = end, 0
    while k > 0 and size + counts[k - 1] + 1 <= max_tokens:
        size += counts[k - 1] + 1
        k -= 1
    if k == end and end > 0:
        last, n = paragraphs[end - 1], max(counts[end - 1], 1)
        keep = max(1, len(last) * max_tokens // n)
        return last[-keep:]
    return "\n".join(paragraphs[k:end])
