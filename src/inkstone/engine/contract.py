"""What an engine is to the rest of Inkstone.

An engine takes prompt token ids, sampling settings and optionally a LoRA
adapter, and streams text back. It knows nothing of stories, memories or
templates: the prompt service builds the ids. `VllmEngine` runs vLLM in this
process; a remote engine would implement the same methods over HTTP.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Protocol, Sequence, Union


class EngineUnavailable(RuntimeError):
    """The engine is (re)starting or could not be restarted; the message is for the user."""


class PromptTooLong(ValueError):
    """The prompt and the tokens asked for do not fit into the model's context."""


@dataclass
class GenerationParams:
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 50
    max_tokens: int = 512
    repetition_penalty: float = 1.1
    seed: Optional[int] = None
    min_tokens: int = 0  # end-of-text and stop strings are ignored until this many tokens
    # When set, decoding is constrained to JSON matching this schema (structured outputs).
    json_schema: Optional[dict] = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @classmethod
    def from_config(cls, inf) -> "GenerationParams":
        return cls(inf.temperature, inf.top_p, inf.top_k, inf.max_tokens, inf.repetition_penalty, inf.seed)


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to serve: its name as users see it and its folder (already checked)."""
    name: str
    path: Path


# Events a stream yields, in order: one Accepted, Text chunks, one Finished.
@dataclass
class Accepted:
    """The engine took the request (length, adapter and sampling checked); no text yet."""
    prompt_tokens: int


@dataclass
class Text:
    text: str


@dataclass
class Finished:
    output_tokens: int
    finish_reason: Optional[str]
    ttft_s: Optional[float]
    elapsed_s: float


StreamEvent = Union[Accepted, Text, Finished]


def check_fits(prompt_tokens: int, max_tokens: int, max_model_len: int) -> None:
    """The one length rule: prompt plus the tokens asked for must fit into the context."""
    limit = max_model_len - max_tokens
    if prompt_tokens > limit:
        raise PromptTooLong(f"prompt is {prompt_tokens} tokens; at most {max(limit, 0)} fit "
                            f"(context {max_model_len} - max tokens {max_tokens})")


class Engine(Protocol):
    model_name: str
    max_model_len: int
    state: str  # starting | ready | restarting | failed | stopped
    started_at: Optional[float]

    def start(self) -> "Engine": ...

    def stop(self) -> None: ...

    def health(self) -> dict: ...

    def preload(self, adapter: Optional[Adapter]) -> Future:
        """Start loading an adapter so its first request need not wait; returns at once, from any thread."""

    def adapter_ready(self, adapter: Optional[Adapter]) -> bool:
        """Whether a request with this adapter starts without loading it (for a "loading adapter" note)."""

    def astream(self, prompt_ids: Sequence[int], params: GenerationParams,
                adapter: Optional[Adapter] = None, *, image: Any = None) -> AsyncIterator[StreamEvent]:
        """Generate on the caller's event loop; closing the iterator aborts the request.
        `image` (a PIL image, as PreparedPrompt.image holds it) goes with a prompt whose ids
        hold one image token; only a vision model's engine accepts it."""

    def stream(self, prompt_ids: Sequence[int], params: GenerationParams, adapter: Optional[Adapter] = None,
               *, coalesce: bool = True, should_stop: Optional[Callable[[], bool]] = None,
               image: Any = None) -> Iterator[StreamEvent]:
        """Generate from any thread; closing the iterator, or should_stop() turning true,
        aborts the request. `image`: as for astream."""
