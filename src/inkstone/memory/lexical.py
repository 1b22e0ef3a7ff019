"""The lexical side of memory search: BM25 (the `bm25s` library) kept beside Chroma.

Partitioned like the Chroma collections, one part per (story, kind), so a
search touches only the entries it may return. Each entry's tokens
(memory/tokens.py) are stored in a SQLite file next to the Chroma files, with
its text and metadata, so an entry found by BM25 alone is read from here
(microseconds) rather than from Chroma (milliseconds a collection); the BM25
matrices are built in memory from the tokens when a part is first searched.

Building a BM25 matrix takes about a second per 25k entries, too slow to redo
on every write. So a part keeps the matrix it was built with (its base), masks
the base rows of entries since changed or deleted, and scores the few entries
written since (its delta) with the base's statistics; it is rebuilt once the
delta outgrows an eighth of the base.

Consistency with Chroma: the store marks a part dirty (committed) before it
writes Chroma, and the part's new rows and the mark's removal are committed
together after. A crash between the two leaves the mark, and opening the store
rebuilds that part from Chroma; so does a part whose row count differs from its
collection's, or an index made by another tokenizer version.
"""
from __future__ import annotations

import json
import logging
import math
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .tokens import VERSION, tokenize

log = logging.getLogger(__name__)

Part = tuple[str, str]  # (story, kind)

_FORMAT = f"docs-2/{VERSION}"  # this file's layout and the tokens' version
_K1, _B = 1.5, 0.75  # bm25s's defaults (Lucene's BM25)
_REBUILD_SHARE = 8  # rebuild a part once its changes exceed 1/8 of its base
_REBUILD_MIN = 64  # ... or this many, for small parts


class LexicalIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            # Only derived data lives here: a damaged file is set aside and rebuilt from Chroma.
            self._db.close()
            aside = self.path.with_name(self.path.name + ".damaged")
            log.warning("the lexical memory index %s is unreadable (%s); moved to %s and rebuilt from the store",
                        self.path, exc, aside.name)
            self.path.replace(aside)
            for extra in ("-wal", "-shm"):
                self.path.with_name(self.path.name + extra).unlink(missing_ok=True)
            self._open()
        self._parts: dict[Part, _LoadedPart] = {}

    def _open(self) -> None:
        # Opened on one thread, used from the store's worker thread: one at a time.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.executescript("""
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        got = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if got is None or got[0] != _FORMAT:  # another tokenizer or layout made these rows: start over
            self._db.executescript("DROP TABLE IF EXISTS docs; DROP TABLE IF EXISTS dirty;")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (_FORMAT,))
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS docs (story TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                                             tokens TEXT NOT NULL, document TEXT NOT NULL, metadata TEXT NOT NULL,
                                             PRIMARY KEY (story, kind, id));
            CREATE TABLE IF NOT EXISTS dirty (story TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (story, kind));
        """)
        self._db.commit()

    # ---- consistency ----------------------------------------------------------------
    def stale_parts(self, chroma_counts: dict[Part, int]) -> tuple[list[Part], list[Part]]:
        """(parts to rebuild from Chroma, parts with no collection any more) for the
        collections' entry counts given."""
        mine = {(s, k): n for s, k, n in self._db.execute("SELECT story, kind, COUNT(*) FROM docs GROUP BY story, kind")}
        dirty = {(s, k) for s, k in self._db.execute("SELECT story, kind FROM dirty")}
        rebuild = [p for p, n in sorted(chroma_counts.items()) if p in dirty or mine.get(p, 0) != n]
        gone = sorted((set(mine) | dirty) - set(chroma_counts))
        return rebuild, gone

    @contextmanager
    def writing(self, part: Part):
        """Around a Chroma write to `part`: the part stays marked dirty unless the body
        (the Chroma write, then `put`/`remove` here) completes."""
        self._db.execute("INSERT OR IGNORE INTO dirty VALUES (?, ?)", part)
        self._db.commit()
        try:
            yield
        except BaseException:
            self._db.rollback()
            self._parts.pop(part, None)  # reloaded from the rows as committed
            raise
        self._db.execute("DELETE FROM dirty WHERE story = ? AND kind = ?", part)
        self._db.commit()

    # ---- writes (inside `writing`) ----------------------------------------------------
    def put(self, part: Part, rows: Iterable[tuple[str, str, str, dict]]) -> None:
        """Add or replace entries of one part: (id, text to index, document, metadata)."""
        toks = [(i, tokenize(text), doc, meta) for i, text, doc, meta in rows]
        self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?)",
                             [(*part, i, " ".join(t), doc, json.dumps(meta, ensure_ascii=False))
                              for i, t, doc, meta in toks])
        loaded = self._parts.get(part)
        if loaded is not None:
            for i, t, _, _ in toks:
                loaded.put(i, t)

    def remove(self, part: Part, ids: list[str]) -> None:
        self._db.executemany("DELETE FROM docs WHERE story = ? AND kind = ? AND id = ?", [(*part, i) for i in ids])
        loaded = self._parts.get(part)
        if loaded is not None:
            for i in ids:
                loaded.remove(i)

    def clear(self, part: Part) -> None:
        self._db.execute("DELETE FROM docs WHERE story = ? AND kind = ?", part)
        self._parts.pop(part, None)

    def drop(self, parts: Iterable[Part]) -> None:
        """Forget parts whose collections are gone (outside `writing`)."""
        for part in parts:
            self.clear(part)
            self._db.execute("DELETE FROM dirty WHERE story = ? AND kind = ?", part)
        self._db.commit()

    # ---- search -----------------------------------------------------------------------
    def search(self, part: Part, query_tokens: list[str], n: int) -> list[tuple[str, float]]:
        """The best `n` entries of a part as (id, BM25 score), best first; only entries
        sharing a token with the query."""
        if not query_tokens or n <= 0:
            return []
        loaded = self._parts.get(part)
        if loaded is None or loaded.worn():
            rows = self._db.execute("SELECT id, tokens FROM docs WHERE story = ? AND kind = ?", part).fetchall()
            loaded = self._parts[part] = _LoadedPart([i for i, _ in rows], [t.split() for _, t in rows])
        return loaded.search(query_tokens, n)

    def documents(self, part: Part, ids: list[str]) -> dict[str, tuple[str, dict]]:
        """{id: (document, metadata)} of entries of one part, as Chroma holds them."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        got = self._db.execute(f"SELECT id, document, metadata FROM docs WHERE story = ? AND kind = ? AND id IN ({marks})",
                               (*part, *ids))
        return {i: (doc, json.loads(meta)) for i, doc, meta in got}

    def close(self) -> None:
        self._db.close()


class _LoadedPart:
    """One part's BM25 matrix (base), the base rows masked out, and the delta."""

    def __init__(self, ids: list[str], tokens: list[list[str]]):
        import bm25s

        self.ids = ids
        self.pos = {i: n for n, i in enumerate(ids)}
        self.mask = np.ones(len(ids), dtype=np.float32)
        self.masked = 0
        self.delta: dict[str, list[str]] = {}
        self.n_docs = len(ids)
        self.avg_len = (sum(map(len, tokens)) / len(tokens)) if tokens else 1.0
        self.bm25: Optional[object] = None
        if any(tokens):
            self.bm25 = bm25s.BM25(k1=_K1, b=_B)
            self.bm25.index(tokens, show_progress=False)

    def worn(self) -> bool:
        return len(self.delta) + self.masked > max(_REBUILD_MIN, self.n_docs // _REBUILD_SHARE)

    def put(self, entry_id: str, tokens: list[str]) -> None:
        self._mask(entry_id)
        self.delta[entry_id] = tokens

    def remove(self, entry_id: str) -> None:
        self._mask(entry_id)
        self.delta.pop(entry_id, None)

    def _mask(self, entry_id: str) -> None:
        at = self.pos.get(entry_id)
        if at is not None and self.mask[at]:
            self.mask[at] = 0.0
            self.masked += 1

    def search(self, query_tokens: list[str], n: int) -> list[tuple[str, float]]:
        scored: list[tuple[str, float]] = []
        if self.bm25 is not None:
            qids = self.bm25.get_tokens_ids(query_tokens)
            if qids:
                scores = self.bm25.get_scores_from_ids(qids, weight_mask=self.mask if self.masked else None)
                top = np.argpartition(-scores, min(n, len(scores) - 1))[:n] if len(scores) > n else np.arange(len(scores))
                scored = [(self.ids[j], float(scores[j])) for j in top if scores[j] > 0]
        scored += [(i, s) for i, s in ((i, self._delta_score(query_tokens, t)) for i, t in self.delta.items()) if s > 0]
        scored.sort(key=lambda x: -x[1])
        return scored[:n]

    def _delta_score(self, query_tokens: list[str], doc: list[str]) -> float:
        """BM25 of an entry written since the base was built, with the base's document
        frequencies and length, so it ranks among the base's entries fairly."""
        if not doc:
            return 0.0
        score = 0.0
        norm = _K1 * ((1 - _B) + _B * len(doc) / self.avg_len)
        for tok in query_tokens:
            tf = doc.count(tok)
            if tf:
                score += self._idf(tok) * tf / (norm + tf)
        return score

    def _idf(self, tok: str) -> float:
        df = 0
        if self.bm25 is not None and tok in self.bm25.vocab_dict:
            t = self.bm25.vocab_dict[tok]
            indptr = self.bm25.scores["indptr"]
            df = int(indptr[t + 1] - indptr[t])
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))  # Lucene's idf, as bm25s computes it
