"""The studio's SQLite file: one connection per call, so any thread may use it.

Write-ahead logging lets readers (History, the API) go on while a generation
is recorded, and the busy timeout makes a writer wait its turn instead of failing."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS stories (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chapters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    story TEXT NOT NULL REFERENCES stories(name),
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS chapters_story ON chapters(story, position);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    story TEXT NOT NULL,
    mode TEXT NOT NULL,
    instruction TEXT NOT NULL,
    story_text TEXT NOT NULL,
    prompt TEXT NOT NULL,
    memory_ids TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT,
    params TEXT NOT NULL,
    output TEXT NOT NULL,
    finish_reason TEXT,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    finished REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_story ON history(story, started);
CREATE TABLE IF NOT EXISTS drafts (
    story TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated REAL NOT NULL
);
"""

# Columns added after the first release: (table, column, declaration). Older files get them on open.
ADDED_COLUMNS = (
    ("history", "source", "TEXT NOT NULL DEFAULT 'write'"),  # write | compare | batch | api | cli
    ("history", "memories", "TEXT NOT NULL DEFAULT '[]'"),  # [{"id", "kind", "title", "tokens"}]
)


BUSY_TIMEOUT_S = 30


class StudioDB:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
            con.executescript(SCHEMA)
            for table, column, decl in ADDED_COLUMNS:
                have = {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    @contextmanager
    def connect(self):
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        con.row_factory = sqlite3.Row
        try:
            with con:  # commits, or rolls back on error: nothing half-written
                yield con
        finally:
            con.close()
