"""Story memory kept in a persistent ChromaDB collection.

Four kinds of entry (characters, plot events, world settings, key dialogue),
each tagged with its story. Vectors come from our own embedder, never from
Chroma's default embedding function (which would fetch a model from a hub).
Not thread-safe by design: the engine bridge calls it from one worker thread.
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .embeddings import Embedder

KINDS = ("character", "plot", "world", "dialogue")
KIND_LABELS = {
    "character": "人物 Character",
    "plot": "情节 Plot event",
    "world": "设定 World setting",
    "dialogue": "台词 Key dialogue",
}
DEFAULT_STORY = "default"


class MemoryError_(ValueError):
    """Bad memory input: the message is meant for the user."""


@dataclass
class MemoryEntry:
    id: str
    kind: str
    text: str
    title: str = ""
    story: str = DEFAULT_STORY
    chapter: str = ""
    created: float = 0.0
    updated: float = 0.0

    def as_prompt_line(self) -> str:
        head = f"{self.title}：" if self.title else ""
        return f"{head}{self.text}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchHit:
    entry: MemoryEntry
    score: float  # cosine similarity, 1 is identical


def _collection_name(embedder_name: str) -> str:
    # One collection per embedder: vectors of different models never mix.
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", embedder_name).strip("-_")[:40] or "default"
    return f"memories-{slug}"


class MemoryStore:
    def __init__(self, db_dir: Path, embedder: Embedder):
        import chromadb
        from chromadb.config import Settings

        self.db_dir = Path(db_dir)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self._client = chromadb.PersistentClient(
            path=str(self.db_dir), settings=Settings(anonymized_telemetry=False, allow_reset=False)
        )
        name = _collection_name(embedder.name)
        existing = {c.name for c in self._client.list_collections()}
        self._col = self._client.get_or_create_collection(
            name=name, embedding_function=None, metadata={"hnsw:space": "cosine", "embedder": embedder.name}
        )
        if name not in existing:
            self._migrate_from(existing - {name})

    def _migrate_from(self, others: set[str]) -> None:
        """Re-embed entries stored under another embedder, so switching models loses nothing."""
        for other in sorted(others):
            if not other.startswith("memories-"):
                continue
            old = self._client.get_collection(other, embedding_function=None)
            got = old.get(include=["documents", "metadatas"])
            if got["ids"]:
                self._col.upsert(
                    ids=got["ids"],
                    documents=got["documents"],
                    metadatas=got["metadatas"],
                    embeddings=self.embedder.embed(
                        [_vector_text(m.get("title", ""), d) for d, m in zip(got["documents"], got["metadatas"])]
                    ),
                )

    # ---- validation -------------------------------------------------------
    @staticmethod
    def _check(kind: str, text: str) -> tuple[str, str]:
        if kind not in KINDS:
            raise MemoryError_(f"unknown memory kind {kind!r}; choose one of {', '.join(KINDS)}")
        text = (text or "").strip()
        if not text:
            raise MemoryError_("memory text is empty: write what should be remembered")
        return kind, text

    # ---- CRUD ---------------------------------------------------------------
    def add(self, kind: str, text: str, title: str = "", story: str = DEFAULT_STORY, chapter: str = "") -> MemoryEntry:
        kind, text = self._check(kind, text)
        now = time.time()
        entry = MemoryEntry(
            id=uuid.uuid4().hex, kind=kind, text=text, title=(title or "").strip(),
            story=story or DEFAULT_STORY, chapter=chapter or "", created=now, updated=now,
        )
        self._write(entry)
        return entry

    def update(self, entry_id: str, *, kind: Optional[str] = None, text: Optional[str] = None,
               title: Optional[str] = None, chapter: Optional[str] = None) -> MemoryEntry:
        entry = self.get(entry_id)
        if entry is None:
            raise MemoryError_(f"no memory with id {entry_id!r}")
        entry.kind, entry.text = self._check(kind or entry.kind, entry.text if text is None else text)
        if title is not None:
            entry.title = title.strip()
        if chapter is not None:
            entry.chapter = chapter
        entry.updated = time.time()
        self._write(entry)
        return entry

    def upsert_named(self, kind: str, title: str, text: str, story: str = DEFAULT_STORY,
                     chapter: str = "") -> MemoryEntry:
        """Update the entry of this kind and title in the story (a character who
        changed), or add a new one."""
        kind, text = self._check(kind, text)
        title = (title or "").strip()
        if title:
            got = self._col.get(where={"$and": [{"kind": kind}, {"story": story}, {"title": title}]}, limit=1,
                                include=[])
            if got["ids"]:
                return self.update(got["ids"][0], text=text, chapter=chapter)
        return self.add(kind, text, title=title, story=story, chapter=chapter)

    def delete(self, entry_id: str) -> None:
        if self.get(entry_id) is None:
            raise MemoryError_(f"no memory with id {entry_id!r}")
        self._col.delete(ids=[entry_id])

    def get(self, entry_id: str) -> Optional[MemoryEntry]:
        got = self._col.get(ids=[entry_id], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        return _entry(got["ids"][0], got["documents"][0], got["metadatas"][0])

    def list(self, kind: Optional[str] = None, story: Optional[str] = None, limit: int = 1000) -> list[MemoryEntry]:
        got = self._col.get(where=_where(kind, story), limit=limit, include=["documents", "metadatas"])
        entries = [_entry(i, d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])]
        return sorted(entries, key=lambda e: (KINDS.index(e.kind), e.created))

    def count(self) -> int:
        return self._col.count()

    def search(self, query: str, k: int = 5, kind: Optional[str] = None,
               story: Optional[str] = None) -> list[SearchHit]:
        if not query.strip() or k <= 0 or self._col.count() == 0:
            return []
        vec = self.embedder.embed([query])
        got = self._col.query(
            query_embeddings=vec, n_results=k, where=_where(kind, story),
            include=["documents", "metadatas", "distances"],
        )
        return [
            SearchHit(_entry(i, d, m), 1.0 - float(dist))
            for i, d, m, dist in zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0])
        ]

    def search_each_kind(self, query: str, k_per_kind: int = 2, story: Optional[str] = None) -> list[SearchHit]:
        """The best matches of every kind (the query embedded once), best first overall,
        so a prompt hears about characters, events, world and dialogue alike."""
        if not query.strip() or k_per_kind <= 0 or self._col.count() == 0:
            return []
        vec = self.embedder.embed([query])
        hits: list[SearchHit] = []
        for kind in KINDS:
            got = self._col.query(query_embeddings=vec, n_results=k_per_kind, where=_where(kind, story),
                                  include=["documents", "metadatas", "distances"])
            hits += [SearchHit(_entry(i, d, m), 1.0 - float(dist)) for i, d, m, dist in
                     zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0])]
        return sorted(hits, key=lambda h: -h.score)

    def delete_story(self, story: str) -> int:
        """Remove every memory of one story; returns how many."""
        got = self._col.get(where={"story": story}, include=[])
        if got["ids"]:
            self._col.delete(ids=got["ids"])
        return len(got["ids"])

    def _write(self, entry: MemoryEntry) -> None:
        meta = {k: v for k, v in entry.to_dict().items() if k not in ("id", "text")}
        self._col.upsert(
            ids=[entry.id], documents=[entry.text], metadatas=[meta],
            embeddings=self.embedder.embed([_vector_text(entry.title, entry.text)]),
        )


def _vector_text(title: str, text: str) -> str:
    # Embed title and text together: a name is often what a query mentions.
    return f"{title} {text}".strip()


def _where(kind: Optional[str], story: Optional[str]) -> Optional[dict]:
    clauses = []
    if kind:
        clauses.append({"kind": kind})
    if story:
        clauses.append({"story": story})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _entry(entry_id: str, document: str, meta: dict) -> MemoryEntry:
    return MemoryEntry(
        id=entry_id, kind=meta.get("kind", "plot"), text=document, title=meta.get("title", ""),
        story=meta.get("story", DEFAULT_STORY), chapter=meta.get("chapter", ""),
        created=float(meta.get("created", 0.0)), updated=float(meta.get("updated", 0.0)),
    )
