"""Open the running parts of the studio from a Config, each once: the engine,
the memory store (behind its thread), the prompt service, the adapter catalog
and the Studio that ties them together; with a note for every fallback taken.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from .adapter_catalog import AdapterCatalog
from .engine.openai_remote import OpenAIRemoteEngine
from .engine.vllm_engine import EngineSettings, VllmEngine
from .memory.access import MemoryAccess
from .memory.embeddings import FALLBACK_NAME, OLDER_FALLBACKS, load_embedder
from .memory.store import MemoryStore
from .model_files import resolve_base_model
from .process_lock import Busy
from .prompt_format import resolve_format
from .prompting.service import PromptService, PromptSettings
from .story.db import StudioDB
from .story.stories import Stories
from .writing.studio import Studio

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    cfg: object
    engine: Optional[VllmEngine]  # None: prompts only (e.g. `inference --prompt-only`)
    memory: Optional[MemoryAccess]
    prompts: PromptService
    adapters: AdapterCatalog
    studio: Studio
    notes: list[str] = field(default_factory=list)  # fallbacks taken, for the user

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        self.prompts.close()
        if self.memory is not None:
            self.memory.close()


def adapter_catalog(cfg) -> AdapterCatalog:
    return AdapterCatalog((cfg.train.output_dir, cfg.model.models_dir, *cfg.model.adapter_dirs),
                          cfg.model.max_lora_rank)


def open_memory(cfg, notes: list[str], required: bool = True) -> Optional[MemoryAccess]:
    """The memory store behind its thread. When another process holds it (the web UI,
    say), `required` decides: raise process_lock.Busy, or go on without memory."""
    embedder, note = load_embedder(cfg.memory.embedding_model, cfg.memory.offline_fallback)
    if note:
        notes.append(note)
    try:
        store = MemoryStore(cfg.memory.db_dir, embedder, search_mode=cfg.memory.search)
    except Busy as exc:
        if required:
            raise
        notes.append(f"{exc}; generating without story memory")
        return None
    if embedder.name == FALLBACK_NAME and store.pending_embedders() & set(OLDER_FALLBACKS):
        # Entries of the bundled encoder an earlier version fell back to: the same
        # choice (no model configured or none available), so they follow it at once.
        # Entries of a configured model wait for `migrate-memory`: a model missing
        # for a day must not re-embed its store.
        log.warning("re-embedding the memories made with %s for %s (about 10 ms an entry)",
                    ", ".join(OLDER_FALLBACKS), embedder.name)
        moved = store.migrate(only_from=OLDER_FALLBACKS)
        notes.append(f"{moved} memories re-embedded with {embedder.name}, the bundled encoder now")
    waiting = store.migration_note()  # counts the other embedder's entries: once
    if waiting:
        notes.append(waiting)
    return MemoryAccess(store)


def open_runtime(cfg, *, memory: bool = True, memory_required: bool = True, engine: bool = True,
                 remote: bool = False, notes: Optional[list[str]] = None) -> Runtime:
    """Open everything (blocks until the engine is ready). Fallback notes are appended
    to `notes` so the caller can show them. `remote`: generate on the OpenAI-compatible
    server of `cfg.remote` instead of starting vLLM here."""
    from transformers import AutoTokenizer

    notes = notes if notes is not None else []
    model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
    if model.note:
        notes.append(model.note)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    mem = open_memory(cfg, notes, memory_required) if memory else None
    runner = None
    try:
        if engine and remote:
            r = cfg.remote
            runner = OpenAIRemoteEngine(r.url, r.model, tokenizer, max_model_len=cfg.model.max_model_len,
                                        api_key=r.api_key.get_secret_value() if r.api_key else None,
                                        extra_sampling=r.extra_sampling, timeout_s=r.timeout_s).start()
        elif engine:
            runner = VllmEngine(EngineSettings.from_config(cfg, model.path, model.name)).start()
        db = StudioDB(cfg.memory.studio_db)  # one file: the stories whose summaries go into prompts, and history
        fmt = resolve_format(tokenizer, "auto", model.name)
        stories = Stories(db)
        prompts = PromptService(tokenizer, PromptSettings.from_config(cfg, model.name, fmt), memory=mem,
                                summaries=stories.summaries, chapter_ending=stories.chapter_ending)
        if runner is not None:
            prompts.use_engine(runner)  # memory.rerank
        adapters = adapter_catalog(cfg)
        studio = Studio(runner, prompts, adapters, db, memory=mem,
                        extract_max_items=cfg.memory.extract_max_items, extract_max_chars=cfg.memory.extract_max_chars)
    except BaseException:
        if runner is not None:
            runner.stop()
        if mem is not None:
            mem.close()
        raise
    return Runtime(cfg, runner, mem, prompts, adapters, studio, notes)
