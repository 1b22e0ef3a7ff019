"""Named story projects and their accepted chapters (with short summaries that
later prompts use as "前情提要")."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Optional

from .db import StudioDB
from .summary_check import summary_problem

DEFAULT_STORY = "default"


@dataclass
class Chapter:
    id: int
    story: str
    position: int
    title: str
    text: str
    summary: str


def check_story_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("story name is empty")
    if len(name) > 80 or re.search(r"[\\/\x00-\x1f]", name):
        raise ValueError(f"story name {name!r} is not allowed: at most 80 characters, no slashes")
    return name


class Stories:
    def __init__(self, db: StudioDB):
        self.db = db
        self.ensure(DEFAULT_STORY)

    def ensure(self, name: str) -> str:
        name = check_story_name(name)
        with self.db.connect() as con:  # a read first: writing only for a new story keeps writers rare
            if con.execute("SELECT 1 FROM stories WHERE name = ?", (name,)).fetchone() is None:
                con.execute("INSERT OR IGNORE INTO stories (name, created) VALUES (?, ?)", (name, time.time()))
        return name

    def names(self) -> list[str]:
        with self.db.connect() as con:
            return [r["name"] for r in con.execute("SELECT name FROM stories ORDER BY created")]

    def add_chapter(self, story: str, title: str, text: str, summary: str = "") -> Chapter:
        story = self.ensure(story)
        if not (text or "").strip():
            raise ValueError("the chapter text is empty")
        with self.db.connect() as con:
            pos = con.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM chapters WHERE story = ?",
                              (story,)).fetchone()[0]
            title = (title or "").strip() or f"第{pos}章"
            cur = con.execute(
                "INSERT INTO chapters (story, position, title, text, summary, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (story, pos, title, text, summary, time.time()))
            return Chapter(int(cur.lastrowid), story, pos, title, text, summary)

    def set_summary(self, chapter_id: int, summary: str) -> str:
        """Store a chapter's summary; an empty or degenerate one is refused (ValueError)
        and the stored one stays. Returns the summary as stored."""
        summary = (summary or "").strip()
        problem = summary_problem(summary)
        if problem:
            raise ValueError(f"summary not saved: {problem}")
        with self.db.connect() as con:
            cur = con.execute("UPDATE chapters SET summary = ?, updated = ? WHERE id = ?",
                              (summary, time.time(), chapter_id))
        if cur.rowcount == 0:
            raise ValueError(f"no chapter {chapter_id}")
        return summary

    def chapter(self, chapter_id: int) -> Optional[Chapter]:
        with self.db.connect() as con:
            r = con.execute("SELECT * FROM chapters WHERE id = ?", (int(chapter_id),)).fetchone()
        return Chapter(r["id"], r["story"], r["position"], r["title"], r["text"], r["summary"]) if r else None

    def overview(self) -> list[dict]:
        """Every story with its chapter count, length and last change, most recently changed first."""
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT s.name, COUNT(c.id) AS chapters, COALESCE(SUM(LENGTH(c.text)), 0) AS chars, "
                "MAX(COALESCE(MAX(c.updated), 0), COALESCE(d.updated, 0), s.created) AS updated "
                "FROM stories s LEFT JOIN chapters c ON c.story = s.name LEFT JOIN drafts d ON d.story = s.name "
                "GROUP BY s.name ORDER BY updated DESC").fetchall()
        return [dict(r) for r in rows]

    # ---- the draft: the text after the last accepted chapter, kept between visits ----
    def draft(self, story: str) -> str:
        with self.db.connect() as con:
            row = con.execute("SELECT text FROM drafts WHERE story = ?", (story,)).fetchone()
        return row["text"] if row else ""

    def save_draft(self, story: str, text: str) -> None:
        story = self.ensure(story)
        with self.db.connect() as con:
            con.execute("INSERT INTO drafts (story, text, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT(story) DO UPDATE SET text = excluded.text, updated = excluded.updated",
                        (story, text or "", time.time()))

    def full_text(self, story: str) -> list[tuple[str, str]]:
        """(title, text) of every accepted chapter in order, then the draft when there is one."""
        parts = [(ch.title, ch.text) for ch in self.chapters(story)]
        draft = self.draft(story)
        if draft.strip():
            parts.append(("", draft))
        return parts

    def chapters(self, story: str) -> list[Chapter]:
        with self.db.connect() as con:
            rows = con.execute("SELECT * FROM chapters WHERE story = ? ORDER BY position", (story,)).fetchall()
        return [Chapter(r["id"], r["story"], r["position"], r["title"], r["text"], r["summary"]) for r in rows]

    def summaries(self, story: str) -> list[str]:
        """One line per accepted chapter, oldest first (its summary, else its opening)."""
        out = []
        for ch in self.chapters(story):
            out.append(f"{ch.title}：{ch.summary or ch.text[:80]}")
        return out

    def chapter_ending(self, story: str, chars: int = 1500) -> str:
        """The last `chars` characters of the story's latest chapter ('' without chapters)."""
        with self.db.connect() as con:
            row = con.execute("SELECT text FROM chapters WHERE story = ? ORDER BY position DESC LIMIT 1",
                              (story,)).fetchone()
        return row["text"][-chars:] if row else ""

    def delete(self, story: str) -> None:
        with self.db.connect() as con:
            con.execute("DELETE FROM chapters WHERE story = ?", (story,))
            con.execute("DELETE FROM drafts WHERE story = ?", (story,))
            con.execute("DELETE FROM stories WHERE name = ?", (story,))
        if story == DEFAULT_STORY:
            self.ensure(DEFAULT_STORY)
