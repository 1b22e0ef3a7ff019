"""Open the running parts of the studio from a Config: base model, embedder,
memory store and engine bridge, with a note for every fallback taken."""
from __future__ import annotations

from .inference.engine import EngineBridge, EngineSettings
from .memory.embeddings import load_embedder
from .memory.store import MemoryStore
from .model_files import resolve_base_model
from .process_lock import Busy


def open_bridge(cfg, *, memory: bool = True, notes: list[str] | None = None,
                memory_required: bool = True) -> EngineBridge:
    """Start the engine bridge (blocks until the engine is ready). Fallback notes
    are appended to `notes` so the caller can show them to the user. When the
    memory store is held by another process (the web UI, say), `memory_required`
    decides: raise process_lock.Busy, or go on without memory and say so."""
    notes = notes if notes is not None else []
    model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
    if model.note:
        notes.append(model.note)

    def make_store() -> MemoryStore | None:
        embedder, note = load_embedder(cfg.memory.embedding_model, cfg.memory.offline_fallback)
        if note:
            notes.append(note)
        try:
            store = MemoryStore(cfg.memory.db_dir, embedder)
        except Busy as exc:
            if memory_required:
                raise
            notes.append(f"{exc}; generating without story memory")
            return None
        waiting = store.migration_note()  # counts the other embedder's entries: once
        if waiting:
            notes.append(waiting)
        return store

    settings = EngineSettings.from_config(cfg, model.path, model.name)
    bridge = EngineBridge(settings, memory_factory=make_store if memory else None,
                          adapter_dirs=(cfg.train.output_dir, cfg.model.models_dir, *cfg.model.adapter_dirs))
    return bridge.start()
