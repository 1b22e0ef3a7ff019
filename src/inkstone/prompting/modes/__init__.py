"""Modes: the ways of asking the model for text, one small module each.

A mode declares the request fields it reads, how they become the prompt
(its layout and instruction), whether story memory applies, and where it has
one, the JSON schema its output must follow and the parser for it. The Write
tab, `inference --mode`, batch and the API list modes from this registry; a
new kind of writing registers a module here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

from ..request import PromptRequest

# writing: the writing template (system, memories, summaries, story, instruction)
# task: the writing template's instruction alone (no system, memories or story)
# raw: the client's text as it is; chat: the client's messages under the chat template
Layout = Literal["writing", "task", "raw", "chat"]


@dataclass(frozen=True)
class Mode:
    name: str
    label: str  # how the UI names it
    inputs: tuple[str, ...]  # PromptRequest fields it reads
    layout: Layout
    instruction: Callable[[PromptRequest], str] = lambda req: req.instruction
    memory_query: Callable[[PromptRequest], str] = lambda req: ""
    summaries: bool = False  # earlier chapters' summaries go in
    for_writers: bool = True  # offered in Write, `inference --mode` and batch
    json_schema: Optional[Callable[..., dict]] = None
    parse: Optional[Callable[[str], Any]] = None


_MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    if mode.name in _MODES:
        raise ValueError(f"mode {mode.name!r} is registered twice")
    _MODES[mode.name] = mode
    return mode


def get_mode(name: str) -> Mode:
    try:
        return _MODES[name or "continue"]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; choose one of {', '.join(_MODES)}") from None


def list_modes(for_writers: Optional[bool] = None) -> list[Mode]:
    return [m for m in _MODES.values() if for_writers is None or m.for_writers == for_writers]


def writing_query(req: PromptRequest) -> str:
    """What memory is searched with for writing: the instruction and the latest story text."""
    return "\n".join(x for x in (req.instruction, req.story_text[-500:]) if x)


# Registration order is the order the UI lists them in.
from . import continue_writing, rewrite, outline, extract_memory, summarize_chapter, raw, chat, recut, vocab_story, vocab_revise, rerank_memory, describe_image, scene_from_image  # noqa: E402,F401,E501
