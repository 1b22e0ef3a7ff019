"""The writing loop around the engine: modes, story projects, automatic memory
and history with provenance. The Write tab, the CLI and the API call this; it
calls the engine bridge and never vLLM itself."""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path
from typing import Iterator, Optional

from ..inference.engine import EngineBridge, Finished, GenerationParams, Prepared, Text
from ..inference.prompts import encode, mode_instruction
from ..memory import extraction
from .db import StudioDB
from .history import History, HistoryEntry
from .stories import DEFAULT_STORY, Stories

log = logging.getLogger(__name__)


def encode_plain(bridge, text: str) -> list[int]:
    """Token ids of generated text as the model wrote it (no special tokens added)."""
    return bridge.tokenizer(text, add_special_tokens=False).input_ids if text else []

class Studio:
    def __init__(self, bridge: EngineBridge, db_path: Path, extract_max_items: int = 6,
                 extract_max_chars: int = 120):
        self.bridge = bridge
        self.extract_defaults = {"max_items": extract_max_items, "max_chars": extract_max_chars}
        self.db_path = Path(db_path)
        db = StudioDB(db_path)
        self.history = History(db)
        self.stories = Stories(db)

    def write(self, *, mode: str = "continue", story: str = DEFAULT_STORY, story_text: str = "",
              instruction: str = "", passage: str = "", params: Optional[GenerationParams] = None,
              adapter: Optional[str] = None, use_memory: bool = True) -> Iterator:
        """Stream a generation (Prepared, Text..., Finished) and record it in the history,
        also when the consumer stops early. A random seed is drawn and recorded when
        none is given, so every entry can be reproduced."""
        story = self.stories.ensure(story or DEFAULT_STORY)
        params = dataclasses.replace(params or GenerationParams())
        if params.seed is None:
            params.seed = random.randrange(2**31)
        full_instruction = mode_instruction(mode, instruction, passage)
        summaries = tuple(self.stories.summaries(story))
        started = time.time()
        prepared, out, finished, failed = None, [], None, None
        try:
            for ev in self.bridge.stream(full_instruction, story_text, params, adapter=adapter,
                                         use_memory=use_memory, story=story, summaries=summaries):
                if isinstance(ev, Prepared):
                    prepared = ev
                elif isinstance(ev, Text):
                    out.append(ev.text)
                elif isinstance(ev, Finished):
                    finished = ev
                yield ev
        except Exception as exc:
            failed = exc
            raise
        finally:
            if prepared is not None:
                text = "".join(out)
                self._record(HistoryEntry(
                    story=story, mode=mode, instruction=instruction, story_text=story_text,
                    prompt=prepared.prompt, model=self.bridge.settings.model_name, adapter=adapter,
                    params=dataclasses.asdict(params), output=text,
                    memory_ids=[m.id for m in prepared.memories],
                    # Not finished: stopped by the writer, or ended by an error (the engine went down).
                    finish_reason=finished.finish_reason if finished else ("error" if failed else "stopped"),
                    output_tokens=finished.output_tokens if finished else len(encode_plain(self.bridge, text)),
                    started=started, finished=time.time()))

    def _record(self, entry: HistoryEntry) -> None:
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
        params = GenerationParams(**e.params)
        return self.bridge.generate(raw_prompt=e.prompt, params=params, adapter=e.adapter)

    # ---- automatic memory -------------------------------------------------------
    def extract(self, passage: str, max_tokens: int = 1536, max_items: Optional[int] = None,
                max_chars: Optional[int] = None) -> tuple[str, list[extraction.Proposal]]:
        """Structured JSON from the model (schema-constrained, so it parses)."""
        if not (passage or "").strip():
            raise ValueError("nothing to extract from: the passage is empty")
        max_items = max_items or self.extract_defaults["max_items"]
        max_chars = max_chars or self.extract_defaults["max_chars"]
        prompt = extraction.extraction_prompt(self.bridge.tokenizer, self.bridge.prompt_format, passage)
        prompt_len = len(encode(self.bridge.tokenizer, prompt, self.bridge.prompt_format))
        room = self.bridge.settings.max_model_len - prompt_len
        if room < 64:
            raise ValueError(f"the passage is too long to extract from ({prompt_len} tokens); accept shorter chapters")
        max_tokens = min(max_tokens, room)
        params = GenerationParams(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=max_tokens,
                                  repetition_penalty=1.0, json_schema=extraction.schema(max_items, max_chars))
        return extraction.parse(self.bridge.generate(raw_prompt=prompt, params=params))

    def accept_chapter(self, story: str, title: str, text: str, **extract_kw) -> tuple[int, list[extraction.Proposal]]:
        """Keep a chapter in the story, then propose memories from it (nothing stored
        until the user accepts). Returns (chapter id, proposals)."""
        chapter = self.stories.add_chapter(story, title, text)
        summary, proposals = self.extract(text, **extract_kw)
        if summary:
            self.stories.set_summary(chapter.id, summary)
        return chapter.id, proposals

    def apply_proposals(self, story: str, chapter_title: str, accepted: list[extraction.Proposal]) -> list[str]:
        ids = []
        for p in accepted:
            entry = self.bridge.memory_call("upsert_named", p.kind, p.title, p.text, story=story, chapter=chapter_title)
            ids.append(entry.id)
        return ids

    def delete_story(self, story: str) -> dict:
        """Remove one story's memories, chapters and history; nothing else."""
        memories = self.bridge.memory_call("delete_story", story)
        history = self.history.delete_story(story)
        self.stories.delete(story)
        return {"memories": memories, "history": history}
