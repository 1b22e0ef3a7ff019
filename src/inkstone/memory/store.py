"""Story memory kept in persistent ChromaDB collections.

Four kinds of entry (characters, plot events, world settings, key dialogue),
each belonging to one story. Layout: one collection per (embedder, story, kind).
The story and kind are chosen by picking collections, never by a `where`
filter, because Chroma's filtered query is slow: at 100k entries a query
filtered on kind took 169 ms against 4 ms unfiltered on a collection per kind.
The per-kind queries of one search run concurrently on a small thread pool
(Chroma's native code releases the GIL): 9 ms instead of 15 ms for four kinds.

Search is hybrid by default: the dense ranking (cosine similarity of the
query's vector) and a lexical one (BM25 over CJK characters and bigrams and
stemmed English words, memory/lexical.py, kept beside Chroma and partitioned the
same way) are fused by reciprocal rank (the sum of 1 / (60 + rank), as a share of
its best, 2 / 61, so 1 means first on both sides), so an
entry naming the query's rare names and places rises even where the vectors
miss it, and a paraphrase sharing no words is still found by its vector.

Vectors come from our own embedder, never from Chroma's default embedding
function (which would fetch a model from a hub). Writes are not thread-safe by
design: MemoryAccess (memory/access.py) calls the store from one worker thread.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .embeddings import Embedder
from .lexical import LexicalIndex
from .tokens import tokenize

KINDS = ("character", "plot", "world", "dialogue")
KIND_LABELS = {
    "character": "人物 Character",
    "plot": "情节 Plot event",
    "world": "设定 World setting",
    "dialogue": "台词 Key dialogue",
}
DEFAULT_STORY = "default"
LAYOUT = "story-kind-v2"  # collection metadata marking this layout
_LEGACY_PREFIX = "memories-"  # v1: one collection per embedder, story/kind as metadata
_PAGE = 5000  # rows per read/write while migrating or adding in bulk
SEARCH_MODES = ("hybrid", "dense", "lexical")
_RRF_K = 60  # reciprocal rank fusion's constant, as proposed by Cormack et al. (2009), not tuned here
_DEPTH = 30  # candidates each side gives the fusion (a common depth; not tuned here)


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
    # Higher is better: cosine similarity (dense search), BM25 (lexical) or the
    # fused reciprocal-rank score (hybrid, 0 to 1); compare scores of one search only.
    score: float


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", name).strip("-_")[:40] or "default"


def collection_name(embedder_name: str, story: str, kind: str) -> str:
    # Story names are free text (Chinese, spaces); Chroma names are not, hence the hash.
    story_key = hashlib.sha1(story.encode("utf-8")).hexdigest()[:12]
    return f"mem-{_slug(embedder_name)}-{story_key}-{kind}"


WRITER_LOCK = ".writer.lock"


class MemoryStore:
    """One writer per folder: the store holds `<db_dir>/.writer.lock` while open, and a
    second process is refused with who holds it (see process_lock.py). Entries made
    with another embedder (or an older layout) are left as they are on open and
    named in `pending_migration`; `migrate()` moves them, on request only.
    `search_mode` is one of SEARCH_MODES (the config's memory.search)."""

    def __init__(self, db_dir: Path, embedder: Embedder, search_mode: str = "hybrid"):
        import chromadb
        from chromadb.config import Settings

        from ..process_lock import ProcessLock

        self.db_dir = Path(db_dir)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        if search_mode not in SEARCH_MODES:
            raise MemoryError_(f"unknown memory search {search_mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        self.search_mode = search_mode
        self._lock = ProcessLock(self.db_dir / WRITER_LOCK, (
            f"the memory store at {self.db_dir} is open in another Inkstone process (pid {{pid}}); "
            "stop that process, or give this one its own memory.db_dir")).acquire()
        self._client = chromadb.PersistentClient(
            path=str(self.db_dir), settings=Settings(anonymized_telemetry=False, allow_reset=False)
        )
        # One worker a kind, and one for the query embedding.
        self._pool = ThreadPoolExecutor(max_workers=len(KINDS) + 1, thread_name_prefix="memory-query")
        self._cols: dict[tuple[str, str], object] = {}  # (story, kind) -> collection of this embedder
        self.pending_migration: list[str] = []  # collections of another embedder or an older layout
        for col in self._client.list_collections():
            meta = col.metadata or {}
            if meta.get("layout") == LAYOUT and meta.get("embedder") == embedder.name:
                self._cols[(meta["story"], meta["kind"])] = self._client.get_collection(
                    col.name, embedding_function=None)
            elif meta.get("layout") == LAYOUT or col.name.startswith(_LEGACY_PREFIX):
                self.pending_migration.append(col.name)
        self._lex = LexicalIndex(self.db_dir / f"lexical-{_slug(embedder.name)}.sqlite3")
        self.rebuilt_parts = self._sync_lexical()  # (story, kind) parts rebuilt from Chroma on this open

    def migration_note(self) -> str:
        """What opening found but did not touch, and the command that moves it; '' if nothing."""
        if not self.pending_migration:
            return ""
        n = sum(self._client.get_collection(c, embedding_function=None).count() for c in self.pending_migration)
        return (f"{n} memories in {self.db_dir} were made with another embedder or an older layout and are not "
                f"searched with {self.embedder.name}; run `python start.py migrate-memory` to re-embed them")

    def pending_embedders(self) -> set[str]:
        """The embedders whose collections wait for `migrate` ('' for the oldest layout)."""
        return {self._embedder_of(c) for c in self.pending_migration}

    def _embedder_of(self, collection: str) -> str:
        return (self._client.get_collection(collection, embedding_function=None).metadata or {}).get("embedder", "")

    def migrate(self, progress=None, only_from: Optional[Sequence[str]] = None) -> int:
        """Move the pending collections (those of the embedders in `only_from`, if
        given) into this embedder's layout; returns entries moved."""
        moved = 0
        for name in list(self.pending_migration):
            if only_from is not None and self._embedder_of(name) not in only_from:
                continue
            moved += self._migrate_from(name)
            self.pending_migration.remove(name)
            if progress:
                progress(name, moved)
        return moved

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._lex.close()
        self._lock.release()

    def _sync_lexical(self) -> list[tuple[str, str]]:
        """Rebuild the lexical parts that are missing, stale or left dirty by a crash,
        from what Chroma holds; forget those whose collection is gone."""
        rebuild, gone = self._lex.stale_parts({part: col.count() for part, col in self._cols.items()})
        self._lex.drop(gone)
        for part in rebuild:
            col = self._cols[part]
            with self._lex.writing(part):
                self._lex.clear(part)
                offset = 0
                while True:
                    got = col.get(limit=_PAGE, offset=offset, include=["documents", "metadatas"])
                    if not got["ids"]:
                        break
                    self._lex.put(part, [(i, _vector_text((m or {}).get("title", ""), d), d, m or {})
                                         for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])])
                    offset += len(got["ids"])
        return rebuild

    # ---- layout -------------------------------------------------------------
    def _collection(self, story: str, kind: str):
        """The collection of one story and kind, created on first write."""
        col = self._cols.get((story, kind))
        if col is None:
            col = self._client.get_or_create_collection(
                name=collection_name(self.embedder.name, story, kind), embedding_function=None,
                metadata={"hnsw:space": "cosine", "layout": LAYOUT, "embedder": self.embedder.name,
                          "story": story, "kind": kind},
            )
            self._cols[(story, kind)] = col
        return col

    def _existing(self, story: Optional[str] = None, kind: Optional[str] = None) -> list[tuple[str, str, object]]:
        return [(s, k, c) for (s, k), c in sorted(self._cols.items())
                if (story is None or s == story) and (kind is None or k == kind)]

    def _migrate_from(self, name: str) -> int:
        """Move entries of an older layout or another embedder into this one, then drop
        the source: vectors are copied when the embedder is the same, re-embedded
        otherwise, so switching models or upgrading loses nothing."""
        old = self._client.get_collection(name, embedding_function=None)
        same_embedder = (old.metadata or {}).get("embedder") == self.embedder.name
        include = ["documents", "metadatas"] + (["embeddings"] if same_embedder else [])
        offset = 0
        while True:
            got = old.get(limit=_PAGE, offset=offset, include=include)
            if not got["ids"]:
                break
            entries = [_entry(i, d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])]
            vecs = np.asarray(got["embeddings"], dtype=np.float32) if same_embedder else None
            self._write_many(entries, vecs)
            offset += len(got["ids"])
        self._client.delete_collection(name)
        return offset

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
        return self.add_many([{"kind": kind, "text": text, "title": title, "chapter": chapter}], story=story)[0]

    def add_many(self, rows: Sequence[dict], story: str = DEFAULT_STORY,
                 embeddings: Optional[np.ndarray] = None) -> list[MemoryEntry]:
        """Add rows {kind, text, title?, chapter?} in one embedding batch. Every row is
        checked before anything is written. `embeddings` (one unit vector per row)
        skips the embedder: used to load large synthetic stores for benchmarks."""
        now = time.time()
        entries = []
        for row in rows:
            kind, text = self._check(row.get("kind"), row.get("text"))
            entries.append(MemoryEntry(
                id=uuid.uuid4().hex, kind=kind, text=text, title=(row.get("title") or "").strip(),
                story=story or DEFAULT_STORY, chapter=row.get("chapter") or "", created=now, updated=now,
            ))
        self._write_many(entries, embeddings)
        return entries

    def update(self, entry_id: str, *, kind: Optional[str] = None, text: Optional[str] = None,
               title: Optional[str] = None, chapter: Optional[str] = None) -> MemoryEntry:
        entry = self.get(entry_id)
        if entry is None:
            raise MemoryError_(f"no memory with id {entry_id!r}")
        old_kind = entry.kind
        entry.kind, entry.text = self._check(kind or entry.kind, entry.text if text is None else text)
        if title is not None:
            entry.title = title.strip()
        if chapter is not None:
            entry.chapter = chapter
        entry.updated = time.time()
        self._write_many([entry])
        if entry.kind != old_kind:  # written to its new kind first, so a crash here duplicates, never loses
            self._delete_ids(entry.story, old_kind, [entry.id])
        return entry

    def upsert_named(self, kind: str, title: str, text: str, story: str = DEFAULT_STORY,
                     chapter: str = "") -> MemoryEntry:
        """Update the entry of this kind and title in the story (a character who
        changed), or add a new one."""
        kind, text = self._check(kind, text)
        title = (title or "").strip()
        if title and (story, kind) in self._cols:
            got = self._cols[(story, kind)].get(where={"title": title}, limit=1, include=[])
            if got["ids"]:
                return self.update(got["ids"][0], text=text, chapter=chapter)
        return self.add(kind, text, title=title, story=story, chapter=chapter)

    def delete(self, entry_id: str) -> None:
        entry = self.get(entry_id)
        if entry is None:
            raise MemoryError_(f"no memory with id {entry_id!r}")
        self._delete_ids(entry.story, entry.kind, [entry_id])

    def _delete_ids(self, story: str, kind: str, ids: list[str]) -> None:
        with self._lex.writing((story, kind)):
            self._collection(story, kind).delete(ids=ids)
            self._lex.remove((story, kind), ids)

    def get(self, entry_id: str) -> Optional[MemoryEntry]:
        # Ids carry no story, so look in each collection: about 1 ms apiece.
        for _, _, col in self._existing():
            got = col.get(ids=[entry_id], include=["documents", "metadatas"])
            if got["ids"]:
                return _entry(got["ids"][0], got["documents"][0], got["metadatas"][0])
        return None

    def list(self, kind: Optional[str] = None, story: Optional[str] = None, limit: int = 1000) -> list[MemoryEntry]:
        entries = []
        for _, _, col in self._existing(story, kind):
            got = col.get(limit=limit, include=["documents", "metadatas"])
            entries += [_entry(i, d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])]
        return sorted(entries, key=lambda e: (KINDS.index(e.kind), e.created))[:limit]

    def count(self, story: Optional[str] = None) -> int:
        return sum(col.count() for _, _, col in self._existing(story))

    def stories(self) -> list[str]:
        return sorted({s for s, _ in self._cols})

    # ---- search -------------------------------------------------------------
    def search(self, query: str, k: int = 5, kind: Optional[str] = None,
               story: Optional[str] = None) -> list[SearchHit]:
        if not query.strip() or k <= 0:
            return []
        cols = self._existing(story, kind)
        if not cols:
            return []
        dense, lexical = self._rankings(query, cols, k)
        return self._hits(self._fuse([x for found in dense for x in found], [x for found in lexical for x in found], k))

    def search_each_kind(self, query: str, k_per_kind: int = 2, story: Optional[str] = None) -> list[SearchHit]:
        """The best matches of every kind (the query embedded once), best first overall,
        so a prompt hears about characters, events, world and dialogue alike."""
        if not query.strip() or k_per_kind <= 0:
            return []
        cols = self._existing(story)
        if not cols:
            return []
        dense, lexical = self._rankings(query, cols, k_per_kind)
        by_kind: dict[str, tuple[list, list]] = {}
        for (_, kind, _), d, x in zip(cols, dense, lexical):
            both = by_kind.setdefault(kind, ([], []))
            both[0].extend(d)
            both[1].extend(x)
        best = [found for d, x in by_kind.values() for found in self._fuse(d, x, k_per_kind)]
        return self._hits(sorted(best, key=lambda x: -x[2]))

    def _rankings(self, query: str, cols: list, n: int) -> tuple[list[list[tuple]], list[list[tuple]]]:
        """Per collection, its best by vector (cosine) and its best by BM25, each found
        as ((story, kind), id, score); an empty list for the side the search mode
        leaves out. `n` of each, or _DEPTH for a fusion to choose from. The vector
        queries run on the pool while this thread scores BM25."""
        use_dense, use_lexical = self.search_mode != "lexical", self.search_mode != "dense"
        if use_dense and use_lexical:
            n = max(n, _DEPTH)
        dense_jobs = None
        if use_dense:
            # The query is embedded on the pool (the encoders release the GIL) while
            # this thread scores BM25; the vector queries then start from there.
            vec = self._pool.submit(self.embedder.embed_query, [query])
            dense_jobs = [self._pool.submit(_dense_query, col, vec, n) for _, _, col in cols]
        lexical: list[list[tuple]] = [[] for _ in cols]
        if use_lexical:
            tokens = tokenize(query)
            lexical = [[((s, kind), i, score) for i, score in self._lex.search((s, kind), tokens, n)]
                       for s, kind, _ in cols]
        dense = [[((s, kind), i, score) for i, score in job.result()] for (s, kind, _), job in zip(cols, dense_jobs)
                 ] if dense_jobs else [[] for _ in cols]
        return dense, lexical

    def _fuse(self, dense: list[tuple], lexical: list[tuple], k: int) -> list[tuple]:
        """The best `k` ((story, kind), id, score), best first: by the one side's own
        score, or in hybrid mode by reciprocal rank fusion (also when one side found
        nothing, so that scores of different kinds stay comparable)."""
        if self.search_mode != "hybrid":
            return sorted(dense or lexical, key=lambda x: -x[2])[:k]
        fused: dict[str, list] = {}
        best = 2.0 / (_RRF_K + 1)  # first on both sides: scores read as a share of that, 0 to 1
        for ranking in (dense, lexical):
            for rank, (part, i, _) in enumerate(sorted(ranking, key=lambda x: -x[2])):
                fused.setdefault(i, [part, i, 0.0])[2] += 1.0 / (_RRF_K + rank + 1) / best
        return sorted(map(tuple, fused.values()), key=lambda x: -x[2])[:k]

    def _hits(self, found: list[tuple]) -> list[SearchHit]:
        """The entries of the ids found, in order. Read from the lexical index's copy
        (microseconds), and from Chroma for any it lacks (a part left dirty)."""
        by_part: dict[tuple[str, str], list[str]] = {}
        for part, i, _ in found:
            by_part.setdefault(part, []).append(i)
        known: dict[str, MemoryEntry] = {}
        for part, ids in by_part.items():
            known.update({i: _entry(i, doc, meta) for i, (doc, meta) in self._lex.documents(part, ids).items()})
            lacking = [i for i in ids if i not in known]
            if lacking and part in self._cols:
                got = self._cols[part].get(ids=lacking, include=["documents", "metadatas"])
                known.update({i: _entry(i, d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])})
        return [SearchHit(known[i], score) for _, i, score in found if i in known]

    # ---- stories --------------------------------------------------------------
    def delete_story(self, story: str) -> int:
        """Remove every memory of one story; returns how many."""
        removed = 0
        for s, kind, col in self._existing(story):
            removed += col.count()
            with self._lex.writing((s, kind)):
                self._client.delete_collection(col.name)
                del self._cols[(s, kind)]
                self._lex.clear((s, kind))
        return removed

    def _write_many(self, entries: list[MemoryEntry], embeddings: Optional[np.ndarray] = None) -> None:
        if not entries:
            return
        if embeddings is None:
            embeddings = self.embedder.embed([_vector_text(e.title, e.text) for e in entries])
        embeddings = np.asarray(embeddings, dtype=np.float32)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, e in enumerate(entries):
            groups.setdefault((e.story, e.kind), []).append(i)
        for (story, kind), idx in groups.items():
            col = self._collection(story, kind)
            for start in range(0, len(idx), _PAGE):
                part = idx[start:start + _PAGE]
                with self._lex.writing((story, kind)):
                    col.upsert(
                        ids=[entries[i].id for i in part], documents=[entries[i].text for i in part],
                        metadatas=[_metadata(entries[i]) for i in part], embeddings=embeddings[part],
                    )
                    self._lex.put((story, kind), [(entries[i].id, _vector_text(entries[i].title, entries[i].text),
                                                   entries[i].text, _metadata(entries[i])) for i in part])


def _dense_query(col, vec: Future, n: int) -> list[tuple[str, float]]:
    # Ids and distances only: the few entries a search returns are read afterwards.
    got = col.query(query_embeddings=vec.result(), n_results=n, include=["distances"])
    return [(i, 1.0 - float(dist)) for i, dist in zip(got["ids"][0], got["distances"][0])]


def _metadata(entry: MemoryEntry) -> dict:
    # Story and kind stay in the metadata too, so a collection's rows are self-describing.
    return {k: v for k, v in entry.to_dict().items() if k not in ("id", "text")}


def _vector_text(title: str, text: str) -> str:
    # Embed title and text together: a name is often what a query mentions.
    return f"{title} {text}".strip()


def _entry(entry_id: str, document: str, meta: dict) -> MemoryEntry:
    return MemoryEntry(
        id=entry_id, kind=meta.get("kind", "plot"), text=document, title=meta.get("title", ""),
        story=meta.get("story", DEFAULT_STORY), chapter=meta.get("chapter", ""),
        created=float(meta.get("created", 0.0)), updated=float(meta.get("updated", 0.0)),
    )
