"""Ask the model for clips through the one generation path: the recut mode's prompt
from the prompt service, decoding constrained by its schema, the run recorded in the
history by the Studio. An answer that still fails the schema (cut off at max tokens)
is asked for once more, sampled, before it is reported."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..engine.contract import GenerationParams, Text
from ..prompting import PromptRequest, get_mode
from ..prompting.modes.recut import ClipChoice, RecutAnswerError, answer, numbered_lines, task_line
from .repair import RecutSettings
from .subtitles import Cue, view_text

ATTEMPTS = 2  # the first answer, and one retry


class SchemaFailure(ValueError):
    """The model's answer failed the clip schema on every attempt."""


@dataclass
class Selection:
    choices: list[ClipChoice]
    attempts: int
    outputs: list[str] = field(default_factory=list)  # every raw answer, for the record


def recut_request(cues: Sequence[Cue], lang: str, target: float, max_tokens: Optional[int] = None) -> PromptRequest:
    """The request the recut mode is asked with; training data is rendered from the same request."""
    return PromptRequest(mode="recut", story="recut", instruction=task_line(lang, target),
                         passage=numbered_lines([(c.id, view_text(c, lang)) for c in cues]),
                         use_memory=False, max_tokens=max_tokens)


def answer_budget(prompts, cues: Sequence[Cue], s: RecutSettings, max_caption: int) -> int:
    """Tokens for the longest answer the schema allows: max_clips clips of the widest ids and full captions."""
    widest = max(c.id for c in cues)
    worst = answer([ClipChoice(widest, widest, "字" * max_caption)] * s.max_clips)
    return len(prompts.encode_output(worst)) + 8


def choose_clips(studio, cues: Sequence[Cue], lang: str, s: RecutSettings, adapter=None, *,
                 max_caption: int = 24, seed: int = 0, max_tokens: Optional[int] = None) -> Selection:
    """`studio` is the writing loop's Studio (prepare + write); `adapter` an adapter name or None.
    `max_tokens` defaults to what the longest answer the schema allows takes."""
    mode = get_mode("recut")
    req = recut_request(cues, lang, s.target, max_tokens or answer_budget(studio.prompts, cues, s, max_caption))
    prepared = studio.prepare(req)  # PromptTooLong when the episode does not fit the context
    schema = mode.json_schema([c.id for c in cues], s.max_clips, max_caption)
    outputs, last_error = [], None
    for attempt in range(ATTEMPTS):
        # Greedy first; the retry samples, so it does not repeat the same answer.
        params = GenerationParams(temperature=0.0 if attempt == 0 else 0.7, top_p=1.0, top_k=-1,
                                  max_tokens=prepared.max_tokens, repetition_penalty=1.0, seed=seed + attempt,
                                  json_schema=schema)
        text = "".join(ev.text for ev in studio.write(req, params, adapter, source="recut", prepared=prepared)
                       if isinstance(ev, Text))
        outputs.append(text)
        try:
            return Selection(mode.parse(text, [c.id for c in cues]), attempt + 1, outputs)
        except RecutAnswerError as exc:
            last_error = exc
    raise SchemaFailure(f"the model's answer failed the clip schema {ATTEMPTS} times ({last_error})")
