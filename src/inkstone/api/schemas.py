"""Request bodies of the OpenAI-compatible API, validated with pydantic.

Fields the API does not implement are refused with a 400 naming the field
(rather than silently ignored) when a client asks for them in earnest; unknown
extra fields are ignored, as OpenAI-compatible servers usually do.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class InkstoneOptions(BaseModel):
    """The `inkstone` extra field: the story this request belongs to, and optionally a
    writing mode. With a mode (continue, rewrite, outline), a completion's prompt is
    the instruction and the prompt service builds the same prompt the Write tab
    would (story text, memories, chapter summaries)."""

    model_config = ConfigDict(extra="forbid")
    story: Optional[str] = None
    # Default: on when a story is named.
    use_memory: Optional[bool] = None
    mode: Optional[str] = None
    story_text: str = ""
    passage: str = ""

    @property
    def memory_on(self) -> bool:
        return self.use_memory if self.use_memory is not None else bool(self.story)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    # Omitted sampling fields take the values of the [inference] config section.
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=-1)
    repetition_penalty: Optional[float] = Field(None, gt=0.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: Optional[int] = None
    min_tokens: int = Field(0, ge=0)  # as vLLM's server: no end of text before this many tokens
    stop: Union[str, list[str], None] = None
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    inkstone: Optional[InkstoneOptions] = None

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)

    def unsupported(self) -> Optional[str]:
        """Name of a requested feature this server does not implement, if any."""
        return None


class CompletionRequest(_Common):
    prompt: Union[str, list[str]]
    echo: bool = False
    logprobs: Optional[int] = None
    best_of: Optional[int] = None
    suffix: Optional[str] = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def unsupported(self) -> Optional[str]:
        if self.logprobs:
            return "logprobs"
        if self.best_of not in (None, 1):
            return "best_of"
        if self.suffix:
            return "suffix"
        return None


class TextPart(BaseModel):
    """A part of a message's content: text, or an image as {"url": "data:image/...;base64,..."}."""
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Optional[str] = None
    image_url: Union[dict, str, None] = None

    def url(self) -> str:
        return (self.image_url.get("url") if isinstance(self.image_url, dict) else self.image_url) or ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        """The content as text; an image part stands as IMAGE_PLACEHOLDER where it was."""
        from ..prompting.request import IMAGE_PLACEHOLDER

        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        bad = [p.type for p in self.content if p.type not in ("text", "image_url")]
        if bad:
            raise ValueError(f"content part of type {bad[0]!r} is not supported (text and image_url only)")
        return "".join(IMAGE_PLACEHOLDER if p.type == "image_url" else (p.text or "") for p in self.content)

    def image_urls(self) -> list[str]:
        return [p.url() for p in self.content or () if not isinstance(self.content, str) and p.type == "image_url"]


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: Optional[bool] = None
    tools: Optional[list[Any]] = None
    response_format: Optional[dict] = None

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens

    def unsupported(self) -> Optional[str]:
        if self.logprobs:
            return "logprobs"
        if self.tools:
            return "tools"
        if self.response_format and self.response_format.get("type", "text") != "text":
            return "response_format"
        return None
