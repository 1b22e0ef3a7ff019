"""The vocabulary story loop: plan → write → analyse → revise for the missing words.

Round 1 writes a draft from a plan (the words in groups, one group a
paragraph); each later round rewrites the best story so far, naming only the
words it still misses and asking to keep those it uses. The loop stops at the
coverage target, when a round gains nothing, or after the maximum number of
rounds. Every round goes through the Studio like any generation (so it is in
the history with its prompt, model, adapter and seed), and its coverage is
kept beside that history entry (see rounds.py). The loop yields the text as
it is written.
"""
from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol, Sequence

from ..config import VocabConfig
from ..engine.contract import Finished, GenerationParams, Text
from ..prompting import PromptRequest, story_name
from ..prompting.modes import vocab_revise, vocab_story
from .analysers import analyser_for
from .matching import Analysis, analyse
from .metrics import story_metrics
from .rounds import VocabRounds
from .wordlists import WordList

SOURCE = "vocab"  # the history entries' source
DEFAULT_LENGTH = {"ja": 400, "zh": 400, "en": 250}  # characters (ja, zh) or words (en)


class StudioLike(Protocol):
    """What the loop needs of the writing Studio: `write` (prompt → engine → history), the
    history, the studio database (for the rounds' coverage) and the engine's model name."""
    history: object
    db_path: object
    engine: object

    def write(self, req: PromptRequest, params=None, adapter=None, *, source: str, should_stop=None) -> Iterator:
        ...


@dataclass
class RoundStarted:
    number: int
    mode: str  # vocab_story | vocab_revise


@dataclass
class Round:
    number: int
    mode: str
    instruction: str
    text: str
    coverage: float
    used: list[str]
    missing: list[str]
    history_id: Optional[int] = None
    finish_reason: Optional[str] = None

    def as_json(self) -> dict:
        return {"round": self.number, "mode": self.mode, "coverage": round(self.coverage, 4), "used": self.used,
                "missing": self.missing, "text": self.text, "history_id": self.history_id}


@dataclass
class VocabStory:
    text: str
    analysis: Analysis
    metrics: dict
    words: WordList
    rounds: list[Round] = field(default_factory=list)
    stop_reason: str = ""  # target | no gain | max rounds | stopped
    run: str = ""
    seed: Optional[int] = None
    model: str = ""
    adapter: Optional[str] = None
    theme: str = ""
    length: Optional[int] = None  # asked for: characters (ja, zh) or words (en)
    brief: str = ""  # the first draft's instruction: what a one-round writer is trained on

    @property
    def coverage(self) -> float:
        return self.analysis.coverage

    def as_json(self) -> dict:
        return {"story": self.text, "coverage": round(self.coverage, 4),
                "words": [r.as_json() for r in self.analysis.results], "rounds": [r.as_json() for r in self.rounds],
                "metrics": self.metrics, "notes": self.analysis.notes() + list(self.words.warnings),
                "lang": self.words.lang, "list": self.words.source, "level": self.words.level, "theme": self.theme,
                "length": self.length, "brief": self.brief,
                "model": self.model, "adapter": self.adapter, "seed": self.seed, "stop_reason": self.stop_reason,
                "run": self.run}


def plan(words: Sequence[str], per_paragraph: int = 10) -> list[list[str]]:
    """The words in paragraph groups of about `per_paragraph` (at most two more), sizes within one of each other."""
    if not words:
        return []
    groups = max(1, math.ceil(len(words) / (per_paragraph + 2)))
    size, extra = divmod(len(words), groups)
    out, i = [], 0
    for g in range(groups):
        n = size + (1 if g < extra else 0)
        out.append(list(words[i:i + n]))
        i += n
    return out


def write_vocab_story(studio: StudioLike, words: WordList, *, theme: str = "", length: Optional[int] = None,
                      settings: Optional[VocabConfig] = None, params: Optional[GenerationParams] = None,
                      adapter: Optional[str] = None, story: Optional[str] = None, revise_from: Optional[str] = None,
                      should_stop: Optional[Callable[[], bool]] = None) -> Iterator:
    """Yield RoundStarted, Text chunks as they are written, each finished Round, and at the end
    the VocabStory. `revise_from`: start from this story (analysed, not written) and revise it."""
    settings = settings or VocabConfig()
    lang, targets = words.lang, [w.word for w in words.words]
    length = length or DEFAULT_LENGTH[lang]
    # About two tokens a character or word leaves room for the whole story; never more than configured.
    max_tokens = min(settings.max_tokens, max(64, 2 * length))
    params = dataclasses.replace(params or GenerationParams(), max_tokens=max_tokens)
    analyser = analyser_for(lang, [f for w in words.words for f in w.forms])
    rounds_db = VocabRounds(studio.db_path)
    run = uuid.uuid4().hex[:12]
    story = story_name(story)
    result = VocabStory("", analyse("", words.words, analyser), {}, words, run=run, seed=params.seed,
                        model=studio.engine.model_name, adapter=adapter, theme=theme, length=length)
    best: Optional[tuple[str, Analysis]] = None
    if revise_from is not None and revise_from.strip():
        best = (revise_from.strip(), analyse(revise_from.strip(), words.words, analyser))

    for number in range(1, settings.max_rounds + 1):
        if best is None:
            mode, brief = "vocab_story", vocab_story.brief(lang, plan(targets, settings.words_per_paragraph),
                                                           theme, length)
            result.brief = brief
            req = PromptRequest(mode=mode, story=story, instruction=brief, use_memory=False,
                                max_tokens=max_tokens)
        else:
            if not best[1].missing:
                result.stop_reason = "target"
                break
            mode, brief = "vocab_revise", vocab_revise.brief(lang, best[1].missing, best[1].used)
            req = PromptRequest(mode=mode, story=story, instruction=brief, passage=best[0], use_memory=False,
                                max_tokens=max_tokens)
        round_params = dataclasses.replace(params, seed=None if params.seed is None else params.seed + number - 1)
        yield RoundStarted(number, mode)
        parts, finish = [], None
        for ev in studio.write(req, round_params, adapter, source=SOURCE, should_stop=should_stop):
            if isinstance(ev, Text):
                parts.append(ev.text)
                yield ev
            elif isinstance(ev, Finished):
                finish = ev.finish_reason
        text = "".join(parts).strip()
        analysis = analyse(text, words.words, analyser)
        entry_id = _history_id(studio, story, mode, "".join(parts))
        done = Round(number, mode, brief, text, analysis.coverage, analysis.used, analysis.missing, entry_id,
                     finish or "stopped")
        if entry_id is not None:
            rounds_db.add(entry_id, run, number, lang, analysis.coverage, analysis.used, analysis.missing)
        result.rounds.append(done)
        yield done
        gained = best is None or analysis.coverage > best[1].coverage
        if gained:
            best = (text, analysis)
        if should_stop is not None and should_stop():
            result.stop_reason = "stopped"
            break
        if best[1].coverage >= settings.target_coverage:
            result.stop_reason = "target"
            break
        if not gained:
            result.stop_reason = "no gain"
            break
    else:
        result.stop_reason = "max rounds"

    if best is not None:
        result.text, result.analysis = best
    result.metrics = story_metrics(result.text, result.analysis, lang, words.level)
    yield result


def _history_id(studio: StudioLike, story: str, mode: str, output: str) -> Optional[int]:
    """The history entry the Studio just kept for this round (the latest of this story with this output)."""
    for e in studio.history.list(story=story, limit=20):
        if e.source == SOURCE and e.mode == mode and e.output == output:
            return e.id
    return None


def run_to_end(events: Iterator) -> VocabStory:
    """Consume the loop's events and return its VocabStory."""
    result = None
    for ev in events:
        result = ev
    if not isinstance(result, VocabStory):
        raise RuntimeError("the vocabulary loop ended without a story")
    return result
