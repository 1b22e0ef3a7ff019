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

Nor is it redone on every open: each base is saved beside the SQLite file
(`<file>.bm25/<part>/`, bm25s's own format, memory-mapped when loaded) with
the write generation it was built at. Every row carries the generation of its
last write, so on open the rows written since, and the base's entries deleted
since, are found from ids and generations alone, and the saved base serves at
once with its delta.

Consistency with Chroma: the store marks a part dirty (committed) before it
writes Chroma, and the part's new rows and the mark's removal are committed
together after. A crash between the two leaves the mark, and opening the store
rebuilds that part from Chroma; so does a part whose row count differs from its
collection's, or an index made by another tokenizer version.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..checkpoints import replace_folder
from .tokens import VERSION, tokenize

log = logging.getLogger(__name__)

Part = tuple[str, str]  # (story, kind)

_FORMAT = f"docs-3/{VERSION}"  # this file's layout and the tokens' version
_K1, _B = 1.5, 0.75  # bm25s's defaults (Lucene's BM25)
_REBUILD_SHARE = 8  # rebuild a part once its changes exceed 1/8 of its base
_REBUILD_MIN = 64  # ... or this many, for small parts


class LexicalIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._saved_dir = self.path.with_name(self.path.name + ".bm25")  # saved bases, one folder a part
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            # Only derived data lives here: a damaged file is set aside and rebuilt from Chroma.
            self._db.close()
            aside = self.path.with_name(self.path.name + ".damaged")
            log.warning("the lexical memory index %s is unreadable (%s); moved to %s and rebuilt from the store",
                        self.path, exc, aside.name)
            self.path.replace(aside)
            shutil.rmtree(self._saved_dir, ignore_errors=True)
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
            shutil.rmtree(self._saved_dir, ignore_errors=True)
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS docs (story TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                                             tokens TEXT NOT NULL, document TEXT NOT NULL, metadata TEXT NOT NULL,
                                             gen INTEGER NOT NULL, PRIMARY KEY (story, kind, id));
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
        gen = self._next_generation()
        self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(*part, i, " ".join(t), doc, json.dumps(meta, ensure_ascii=False), gen)
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
        shutil.rmtree(self._part_dir(part), ignore_errors=True)

    def _next_generation(self) -> int:
        """A new write generation, committed with the rows that carry it."""
        gen = self._generation() + 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('gen', ?)", (str(gen),))
        return gen

    def _generation(self) -> int:
        got = self._db.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()
        return int(got[0]) if got else 0

    def _part_dir(self, part: Part) -> Path:
        return self._saved_dir / hashlib.sha1("\x00".join(part).encode()).hexdigest()[:20]

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
        if loaded is None:
            loaded = self._parts[part] = self._load_saved(part) or self._build(part)
        if loaded.worn():
            loaded = self._parts[part] = self._build(part)
        return loaded.search(query_tokens, n)

    def _build(self, part: Part) -> "_LoadedPart":
        """A new base from the part's rows, saved for the next open."""
        gen = self._generation()
        rows = self._db.execute("SELECT id, tokens FROM docs WHERE story = ? AND kind = ?", part).fetchall()
        loaded = _LoadedPart([i for i, _ in rows], [t.split() for _, t in rows], gen)
        try:
            replace_folder(self._part_dir(part), loaded.save)
        except OSError as exc:  # a full or read-only disk: search goes on, the next open rebuilds
            log.warning("could not save the word index of %s/%s: %s", *part, exc)
        return loaded

    def _load_saved(self, part: Part) -> Optional["_LoadedPart"]:
        """The saved base with what changed since it was built, or None (none saved,
        another format, unreadable: then it is rebuilt)."""
        folder = self._part_dir(part)
        if not (folder / _STAMP).is_file():
            return None
        try:
            loaded = _LoadedPart.load(folder)
        except Exception as exc:  # a damaged save is only a cache of the rows
            log.warning("the saved word index of %s/%s is unreadable (%s); rebuilding it", *part, exc)
            return None
        now = dict(self._db.execute("SELECT id, gen FROM docs WHERE story = ? AND kind = ?", part).fetchall())
        for entry_id in loaded.ids:
            if entry_id not in now:
                loaded.remove(entry_id)
        newer = [i for i, g in now.items() if g > loaded.built_gen]
        for start in range(0, len(newer), 500):
            ids = newer[start:start + 500]
            got = self._db.execute(f"SELECT id, tokens FROM docs WHERE story = ? AND kind = ? AND id IN "
                                   f"({','.join('?' * len(ids))})", (*part, *ids))
            for entry_id, toks in got:
                loaded.put(entry_id, toks.split())
        return loaded

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


_STAMP = "stamp.json"  # written last: a folder without it is not a whole save


class _LoadedPart:
    """One part's BM25 matrix (base), the base rows masked out, and the delta.
    `built_gen`: the write generation its rows were read at."""

    def __init__(self, ids: list[str], tokens: Optional[list[list[str]]], built_gen: int,
                 avg_len: Optional[float] = None, bm25=None):
        self.ids = ids
        self.pos = {i: n for n, i in enumerate(ids)}
        self.mask = np.ones(len(ids), dtype=np.float32)
        self.masked = 0
        self.delta: dict[str, list[str]] = {}
        self.n_docs = len(ids)
        self.built_gen = built_gen
        self.bm25 = bm25
        if tokens is not None:
            import bm25s

            self.avg_len = (sum(map(len, tokens)) / len(tokens)) if tokens else 1.0
            if any(tokens):
                self.bm25 = bm25s.BM25(k1=_K1, b=_B)
                self.bm25.index(tokens, show_progress=False)
        else:
            self.avg_len = avg_len or 1.0

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        if self.bm25 is not None:
            self.bm25.save(folder / "bm25", show_progress=False)
        (folder / "ids.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
        (folder / _STAMP).write_text(json.dumps({"format": _FORMAT, "built_gen": self.built_gen,
                                                 "avg_len": self.avg_len, "bm25": self.bm25 is not None}))

    @classmethod
    def load(cls, folder: Path) -> "_LoadedPart":
        import bm25s

        stamp = json.loads((folder / _STAMP).read_text())
        if stamp.get("format") != _FORMAT:
            raise ValueError(f"made by format {stamp.get('format')!r}")
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        bm25 = bm25s.BM25.load(folder / "bm25", mmap=True, show_progress=False) if stamp["bm25"] else None
        return cls(ids, None, int(stamp["built_gen"]), float(stamp["avg_len"]), bm25)

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
