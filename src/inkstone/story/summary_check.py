"""Is a chapter summary worth putting into every later prompt?

A small or undertrained model sometimes answers the summary request with a
run of digits ("1000…0"), one character repeated, or nothing. Such a line
would then sit in every prompt of the story as "前情提要", so it is refused:
the writer is told and the chapter keeps its previous summary (or, with none,
its opening lines stand in).
"""
from __future__ import annotations

import unicodedata
from typing import Optional

MIN_WORDS_CHARS = 4  # letters or CJK characters a summary must have at least
MAX_CHARS = 600


def summary_problem(text: str) -> Optional[str]:
    """Why `text` is not a usable summary, or None when it is."""
    text = (text or "").strip()
    if not text:
        return "the summary is empty"
    if len(text) > MAX_CHARS:
        return f"the summary is {len(text)} characters long; keep it under {MAX_CHARS}"
    letters = [c for c in text if unicodedata.category(c).startswith("L")]
    if len(letters) < MIN_WORDS_CHARS:
        return f"the summary has almost no words ({text[:40]!r})"
    if len(letters) < len(text.replace(" ", "")) / 2:
        return f"the summary is mostly digits or symbols ({text[:40]!r})"
    longest_run = max(_runs(text))
    if len(text) >= 12 and longest_run > len(text) / 3:
        return f"the summary repeats one character ({text[:40]!r})"
    if len(text) >= 40 and len(set(text)) < len(text) / 8:
        return f"the summary repeats itself ({text[:40]!r}…)"
    return None


def _runs(text: str):
    run = 1
    for prev, cur in zip(text, text[1:]):
        run = run + 1 if cur == prev else 1
        yield run
    yield 1
