"""The coverage of each round of a vocabulary story, beside its history entry.

The history keeps every round's prompt, model, seed and text like any other
generation; this table adds what the analyser found in it, keyed by the
history entry, so History can show how each round did.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..story.db import StudioDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS vocab_rounds (
    history_id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    round INTEGER NOT NULL,
    lang TEXT NOT NULL,
    coverage REAL NOT NULL,
    used TEXT NOT NULL,
    missing TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS vocab_rounds_run ON vocab_rounds(run, round);
"""


class VocabRounds:
    def __init__(self, db_path: Path):
        self.db = StudioDB(db_path)
        with self.db.connect() as con:
            con.executescript(SCHEMA)

    def add(self, history_id: int, run: str, round_no: int, lang: str, coverage: float, used: list[str],
            missing: list[str]) -> None:
        with self.db.connect() as con:
            con.execute("INSERT OR REPLACE INTO vocab_rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (history_id, run, round_no, lang, coverage, json.dumps(used, ensure_ascii=False),
                         json.dumps(missing, ensure_ascii=False), time.time()))

    def of_entry(self, history_id: int) -> Optional[dict]:
        with self.db.connect() as con:
            row = con.execute("SELECT * FROM vocab_rounds WHERE history_id = ?", (int(history_id),)).fetchone()
        return _row(row) if row else None

    def of_run(self, run: str) -> list[dict]:
        with self.db.connect() as con:
            rows = con.execute("SELECT * FROM vocab_rounds WHERE run = ? ORDER BY round", (run,)).fetchall()
        return [_row(r) for r in rows]


def _row(row) -> dict:
    d = dict(row)
    d["used"], d["missing"] = json.loads(d["used"]), json.loads(d["missing"])
    return d
