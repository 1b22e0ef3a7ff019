"""The writing loop: prompt service → engine → history.

Every generation, whichever tab, command or route asks for it, goes through
`Studio.write` (from a thread) or `Studio.astream` (on an event loop): the
prompt service prepares the prompt, the engine streams the text, and the
history keeps the prompt, memories, model, adapter, sampling, seed and output,
also when the writer stops early or the engine fails. Stories and their
chapters (with the summaries later prompts use) live here too, and so does
automatic memory: extraction from an accepted chapter, proposals the writer
accepts or rejects.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Optional

from ..adapter_catalog import AdapterCatalog
from ..engine.contract import Accepted, Engine, Finished, GenerationParams, Text
from ..memory.access import MemoryAccess
from ..prompting import PreparedPrompt, PromptRequest, PromptService, get_mode, story_name
from ..prompting.modes.extract_memory import Proposal
from ..story.db import StudioDB
from ..story.history import History, HistoryEntry
from ..story.stories import Stories
from ..story.summary_check import summary_problem

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Run:
    """What one generation produced so far, for its history entry."""
    prepared: PreparedPrompt
    request: PromptRequest
    params: GenerationParams
    adapter: Optional[str]
    source: str
    started: float = dataclasses.field(default_factory=time.time)
    parts: list = dataclasses.field(default_factory=list)
    finished: Optional[Finished] = None
    failed: Optional[BaseException] = None

    def see(self, ev) -> None:
        if isinstance(ev, Text):
            self.parts.append(ev.text)
        elif isinstance(ev, Finished):
            self.finished = ev


@dataclasses.dataclass
class AcceptedChapter:
    chapter_id: int
    proposals: list[Proposal]
    summary: str  # as stored ('' when refused)
    summary_problem: Optional[str]  # why no summary was stored


class Studio:
    def __init__(self, engine: Optional[Engine], prompts: PromptService, adapters: AdapterCatalog, db: StudioDB,
                 memory: Optional[MemoryAccess] = None, extract_max_items: int = 6, extract_max_chars: int = 120):
        """`db` holds the stories whose chapter summaries `prompts` puts into prompts (see runtime)."""
        self.engine = engine
        self.prompts = prompts
        self.adapters = adapters
        self.memory = memory
        self.extract_defaults = {"max_items": extract_max_items, "max_chars": extract_max_chars}
        self.db_path = db.path
        self.history = History(db)
        self.stories = Stories(db)

    # ---- generation ---------------------------------------------------------------------
    def prepare(self, req: PromptRequest) -> PreparedPrompt:
        self.stories.ensure(story_name(req.story))
        return self.prompts.prepare(req)

    def write(self, req: PromptRequest, params: Optional[GenerationParams] = None, adapter: Optional[str] = None,
              *, source: str = "write", prepared: Optional[PreparedPrompt] = None,
              should_stop: Optional[Callable[[], bool]] = None) -> Iterator:
        """Stream one generation from any thread: the PreparedPrompt, Accepted, Text chunks,
        Finished. It is recorded in the history however it ends; when `should_stop()`
        turns true it ends early, as stopped, with the text so far."""
        prepared = prepared or self.prepare(req)
        run = _Run(prepared, req, self._params(params, prepared), adapter, source)
        yield prepared
        with self._recorded(run):
            for ev in self.engine.stream(prepared.token_ids, run.params, self.adapters.resolve(adapter),
                                         should_stop=should_stop, image=prepared.image):
                run.see(ev)
                yield ev

    async def astream(self, prepared: PreparedPrompt, req: PromptRequest, params: Optional[GenerationParams] = None,
                      adapter: Optional[str] = None, *, source: str) -> AsyncIterator:
        """The same on the caller's event loop, from an already prepared prompt (Compare and the
        API send one prompt to several models or samples): Accepted, Text deltas, Finished."""
        run = _Run(prepared, req, self._params(params, prepared), adapter, source)
        with self._recorded(run):
            async for ev in self.engine.astream(prepared.token_ids, run.params, self.adapters.resolve(adapter),
                                                image=prepared.image):
                run.see(ev)
                yield ev

    @contextlib.contextmanager
    def _recorded(self, run: _Run):
        """Record `run` in the history however the block ends: finished, stopped
        (the consumer closed the stream), or failed."""
        try:
            yield
        except BaseException as exc:
            run.failed = exc
            raise
        finally:
            self._record(run)

    @staticmethod
    def _params(params: Optional[GenerationParams], prepared: PreparedPrompt) -> GenerationParams:
        """A copy with the prepared max tokens, and a drawn seed when none is given, so that
        every history entry can be reproduced."""
        params = dataclasses.replace(params or GenerationParams(), max_tokens=prepared.max_tokens)
        if params.seed is None:
            params.seed = random.randrange(2**31)
        return params

    def _record(self, run: _Run) -> None:
        text = "".join(run.parts)
        fin, req, prepared = run.finished, run.request, run.prepared
        # Not finished: stopped by the writer, or ended by an error (the engine went down).
        reason = fin.finish_reason if fin else ("error" if run.failed and not _is_stop(run.failed) else "stopped")
        self._keep(HistoryEntry(
            story=prepared.story, mode=prepared.mode, instruction=_asked(req),
            story_text=req.story_text, prompt=prepared.text, model=self.engine.model_name, adapter=run.adapter,
            params=dataclasses.asdict(run.params), output=text, memory_ids=[m.entry.id for m in prepared.memories],
            finish_reason=reason,
            output_tokens=fin.output_tokens if fin else len(self.prompts.encode_output(text)),
            started=run.started, finished=time.time(), source=run.source,
            memories=[{"id": m.entry.id, "kind": m.entry.kind, "title": m.entry.title or m.entry.text[:24],
                       "tokens": m.tokens} for m in prepared.memories]))

    def _keep(self, entry: HistoryEntry) -> None:
        """Add to the history; if the database refuses (disk full, locked past the
        timeout), keep the entry as a JSON file beside it instead. A stream's end
        must never raise, and the generated text must never be lost."""
        try:
            self.history.add(entry)
        except Exception as exc:
            folder = Path(self.db_path).parent / "unsaved-history"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{random.randrange(10**6):06d}.json"
                path.write_text(json.dumps(dataclasses.asdict(entry), ensure_ascii=False, indent=1), encoding="utf-8")
                log.error("history not saved (%s); the generation is kept in %s", exc, path)
            except Exception:
                log.exception("history not saved (%s), nor its fallback file; the text was: %s", exc, entry.output)

    def rerun(self, history_id: int) -> str:
        """Generate again from an entry's exact prompt, model choice and parameters."""
        e = self.history.get(history_id)
        if e is None:
            raise ValueError(f"no history entry {history_id}")
        params = GenerationParams(**{k: tuple(v) if k == "stop" else v for k, v in e.params.items()})
        ids = self.prompts.encode_recorded(e.prompt, e.mode)
        return "".join(ev.text for ev in self.engine.stream(ids, params, self.adapters.resolve(e.adapter))
                       if isinstance(ev, Text))

    # ---- automatic memory -------------------------------------------------------
    def extract(self, passage: str, max_tokens: int = 1536, max_items: Optional[int] = None,
                max_chars: Optional[int] = None) -> tuple[str, list[Proposal]]:
        """Structured JSON from the model (schema-constrained, so it parses)."""
        mode = get_mode("extract")
        prepared = self.prompts.prepare(PromptRequest(mode="extract", passage=passage, use_memory=False,
                                                      max_tokens=max_tokens))
        schema = mode.json_schema(max_items or self.extract_defaults["max_items"],
                                  max_chars or self.extract_defaults["max_chars"])
        params = GenerationParams(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=prepared.max_tokens,
                                  repetition_penalty=1.0, json_schema=schema)
        text = "".join(ev.text for ev in self.engine.stream(prepared.token_ids, params) if isinstance(ev, Text))
        return mode.parse(text)

    def accept_chapter(self, story: str, title: str, text: str, **extract_kw) -> AcceptedChapter:
        """Keep a chapter in the story, then propose memories from it (nothing stored
        until the user accepts) and summarize it. A summary the model botches (empty,
        digits, one character repeated) is asked for once more on its own; if that fails
        too, none is stored and the writer is told why (the chapter's opening stands in)."""
        chapter = self.stories.add_chapter(story, title, text)
        summary, proposals = self.extract(text, **extract_kw)
        if summary_problem(summary):
            summary = self.summarize(text)
        problem = summary_problem(summary)
        if not problem:
            self.stories.set_summary(chapter.id, summary)
        return AcceptedChapter(chapter.id, proposals, "" if problem else summary, problem)

    def summarize(self, text: str, max_tokens: int = 160) -> str:
        """A proposed summary of a chapter's text (stored only through `stories.set_summary`)."""
        prepared = self.prompts.prepare(PromptRequest(mode="summarize", passage=text, use_memory=False,
                                                      max_tokens=max_tokens))
        params = GenerationParams(temperature=0.3, top_p=0.9, top_k=40, max_tokens=prepared.max_tokens,
                                  repetition_penalty=1.15, seed=0, stop=("\n\n",))
        out = "".join(ev.text for ev in self.engine.stream(prepared.token_ids, params) if isinstance(ev, Text))
        return out.strip()

    def apply_proposals(self, story: str, chapter_title: str, accepted: list[Proposal]) -> list[str]:
        return [self._memory().call("upsert_named", p.kind, p.title, p.text, story=story, chapter=chapter_title).id
                for p in accepted]

    def delete_story(self, story: str) -> dict:
        """Remove one story's memories, chapters and history; nothing else."""
        memories = self._memory().call("delete_story", story)
        history = self.history.delete_story(story)
        self.stories.delete(story)
        return {"memories": memories, "history": history}

    def _memory(self) -> MemoryAccess:
        if self.memory is None:
            raise RuntimeError("no memory store is open")
        return self.memory


def _asked(req: PromptRequest) -> str:
    """What the writer or client asked for, in a word: the instruction, the raw prompt, the last message."""
    users = [m["content"] for m in req.messages if m.get("role") == "user"]
    return req.instruction or req.text or (users[-1] if users else "")


def _is_stop(exc: BaseException) -> bool:
    """A generator closed by its consumer (the writer pressed Stop, a client hung up)."""
    return isinstance(exc, (GeneratorExit, asyncio.CancelledError))
