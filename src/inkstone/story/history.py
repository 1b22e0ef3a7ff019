"""Every generation, kept with what produced it: prompt, memories used, model,
adapter, sampling parameters and seed, timestamps and the output. Re-running an
entry with its seed reproduces it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from .db import StudioDB


@dataclass
class HistoryEntry:
    story: str
    mode: str
    instruction: str
    story_text: str
    prompt: str
    model: str
    adapter: Optional[str]
    params: dict
    output: str
    memory_ids: list[str] = field(default_factory=list)
    finish_reason: Optional[str] = None
    output_tokens: int = 0
    started: float = 0.0
    finished: float = 0.0
    source: str = "write"  # where it was asked for: write | compare | batch | api | cli
    memories: list[dict] = field(default_factory=list)  # the memories used: id, kind, title, tokens
    id: Optional[int] = None


class History:
    def __init__(self, db: StudioDB):
        self.db = db

    def add(self, e: HistoryEntry) -> int:
        row = asdict(e)
        row.pop("id")
        row["params"] = json.dumps(row["params"], ensure_ascii=False)
        row["memory_ids"] = json.dumps(row["memory_ids"])
        row["memories"] = json.dumps(row["memories"], ensure_ascii=False)
        cols = ", ".join(row)
        with self.db.connect() as con:
            cur = con.execute(f"INSERT INTO history ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
            return int(cur.lastrowid)

    def get(self, entry_id: int) -> Optional[HistoryEntry]:
        with self.db.connect() as con:
            row = con.execute("SELECT * FROM history WHERE id = ?", (int(entry_id),)).fetchone()
        return _entry(row) if row else None

    def list(self, story: Optional[str] = None, query: str = "", limit: int = 200) -> list[HistoryEntry]:
        sql, args = "SELECT * FROM history WHERE 1=1", []
        if story:
            sql += " AND story = ?"
            args.append(story)
        if query.strip():
            sql += " AND (output LIKE ? OR instruction LIKE ? OR prompt LIKE ?)"
            args += [f"%{query.strip()}%"] * 3
        sql += " ORDER BY started DESC LIMIT ?"
        args.append(int(limit))
        with self.db.connect() as con:
            return [_entry(r) for r in con.execute(sql, args).fetchall()]

    def measured_speed(self, limit: int = 20) -> Optional[float]:
        """Tokens per second of the recent runs as a writer waits for them (first token
        included), the median of the last `limit` that wrote something; None before any."""
        with self.db.connect() as con:
            rows = con.execute("SELECT output_tokens, finished - started AS s FROM history "
                               "WHERE output_tokens >= 16 AND finished > started ORDER BY id DESC LIMIT ?",
                               (int(limit),)).fetchall()
        rates = sorted(r["output_tokens"] / r["s"] for r in rows)
        return rates[len(rates) // 2] if rates else None

    def delete(self, entry_id: int) -> bool:
        with self.db.connect() as con:
            return con.execute("DELETE FROM history WHERE id = ?", (int(entry_id),)).rowcount > 0

    def delete_story(self, story: str) -> int:
        with self.db.connect() as con:
            return con.execute("DELETE FROM history WHERE story = ?", (story,)).rowcount


def _entry(row) -> HistoryEntry:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["memory_ids"] = json.loads(d["memory_ids"])
    d["memories"] = json.loads(d.get("memories") or "[]")
    return HistoryEntry(**d)
