"""What goes into the prompt service and what comes out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..memory.store import MemoryEntry
from ..story.stories import DEFAULT_STORY


# Where a picture goes in a prompt: one token that a vision model's engine widens to the image's features.
IMAGE_PLACEHOLDER = "<image>"


def story_name(name: Optional[str]) -> str:
    """The one rule for a missing story name, everywhere (Write, Compare, batch, API, CLI):
    the request works in the story named "default", with its memories, chapters and history."""
    return (name or "").strip() or DEFAULT_STORY


@dataclass
class PromptRequest:
    mode: str = "continue"
    story: Optional[str] = None  # see story_name()
    instruction: str = ""
    story_text: str = ""  # the story so far
    passage: str = ""  # rewrite: the passage to rewrite; extract: the chapter to read
    text: str = ""  # raw: the prompt as the client wrote it
    messages: Sequence[dict] = ()  # chat: [{"role", "content"}]
    use_memory: bool = True
    # Tokens to generate; None: the configured default (raw and chat: shortened to what fits).
    max_tokens: Optional[int] = None
    image: Any = None  # describe, scene (and chat): an RGB PIL image for a vision model


@dataclass
class UsedMemory:
    entry: MemoryEntry
    tokens: int  # what its line costs in the prompt


@dataclass
class UsedSummary:
    text: str
    tokens: int


@dataclass
class PreparedPrompt:
    mode: str
    story: str
    text: str
    token_ids: list[int]
    max_tokens: int
    memories: list[UsedMemory] = field(default_factory=list)
    summaries: list[UsedSummary] = field(default_factory=list)
    story_chars_dropped: int = 0  # the oldest part of the story so far, cut to fit
    memories_dropped: int = 0  # retrieved but left out for want of room
    json_schema: Optional[dict] = None  # modes with an output schema constrain decoding with it
    image: Any = None  # the request's picture: callers hand it to the engine with token_ids

    @property
    def memory_entries(self) -> list[MemoryEntry]:
        return [m.entry for m in self.memories]
