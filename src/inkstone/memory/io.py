"""Memory import and export as JSON: a list of {kind, title, text, chapter}."""
from __future__ import annotations

import json
from pathlib import Path

from .store import KINDS, MemoryError_, MemoryStore


def export_rows(store: MemoryStore, story: str) -> list[dict]:
    return [{"kind": e.kind, "title": e.title, "text": e.text, "chapter": e.chapter}
            for e in store.list(story=story, limit=1_000_000)]


def import_rows(store: MemoryStore, rows, story: str) -> tuple[int, list[str]]:
    """Import the good rows; report each bad one as a person counts (the first row is
    row 1) and by its JSON index. Returns (imported, errors)."""
    if not isinstance(rows, list):
        raise MemoryError_("memory import must be a JSON list of objects")
    good, errors = [], []
    for i, row in enumerate(rows):
        where = f"row {i + 1} (JSON index {i})"
        if not isinstance(row, dict):
            errors.append(f"{where}: not an object")
            continue
        kind = row.get("kind")
        if kind not in KINDS:
            errors.append(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
            continue
        clean = {"kind": kind, "text": str(row.get("text") or ""), "title": str(row.get("title") or ""),
                 "chapter": str(row.get("chapter") or "")}
        try:
            MemoryStore._check(kind, clean["text"])
        except MemoryError_ as exc:
            errors.append(f"{where}: {exc}")
            continue
        good.append(clean)
    # One embedding batch for all good rows: thousands of rows import in seconds.
    store.add_many(good, story=story)
    return len(good), errors


def read_json_file(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MemoryError_(f"{Path(path).name}: not a UTF-8 JSON file ({exc})") from exc
