"""Subtitle files (.srt, .vtt, .ass/.ssa) as dialogue text: one paragraph per cue.

Scripts of dramas and films are dialogue-heavy prose a writer may want in the
style mix. Timings, cue numbers, styling tags ({\\an8}, <i>) and ASS override
codes are dropped; line breaks inside a cue become spaces (a cue is one
utterance). A malformed cue (no timing line, a timing line that does not parse,
an ASS event with too few fields) is reported with its line number and skipped;
the rest of the file is read. `issues.records` counts the cues read.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

# 00:01:02,345 --> 00:01:04,000 (SRT) or 01:02.345 --> 01:04.000 (WebVTT, hours optional), then cue settings.
_TIME = r"(?:\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")
_TAG = re.compile(r"<[^<>\n]{0,80}>|\{[^{}\n]{0,200}\}")  # <i>, <font ...>, <c.yellow>, {\an8}, {\pos(...)}


def _cue_text(lines: list[str]) -> str:
    text = " ".join(_TAG.sub("", ln).replace("\\N", " ").replace("\\n", " ").replace("\\h", " ").strip()
                    for ln in lines)
    return " ".join(text.split())


def srt_lines(lines: Iterable[str], issues) -> Iterator[str]:
    """Cue texts of an SRT or WebVTT file; `issues.add(line, reason)` hears of malformed cues."""
    block: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            block.append((lineno, line.strip().lstrip("\ufeff")))
            continue
        if block:
            yield from _srt_block(block, issues)
            block = []
    if block:
        yield from _srt_block(block, issues)


def _srt_block(block: list[tuple[int, str]], issues) -> Iterator[str]:
    first = block[0][1]
    if first.startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):  # WebVTT header and non-cue blocks
        return
    # The timing line comes first or after a cue number (SRT) or identifier (WebVTT).
    timing = next((i for i, (_, text) in enumerate(block[:2]) if "-->" in text), None)
    if timing is None:
        at, text = block[1] if first.isdigit() and len(block) > 1 else block[0]
        issues.add(at, f"expected a subtitle timing line such as 00:00:01,000 --> 00:00:02,000, "
                       f"found {text[:60]!r}; cue skipped")
        return
    at, text = block[timing]
    if not _TIMING.match(text):
        issues.add(at, f"subtitle timing line does not parse: {text[:60]!r}; cue skipped")
        return
    cue = _cue_text([t for _, t in block[timing + 1:]])
    if cue:
        issues.records += 1
        yield cue


def ass_lines(lines: Iterable[str], issues) -> Iterator[str]:
    """Dialogue texts of an ASS/SSA file's [Events] section."""
    section, fields = "", None
    for lineno, line in enumerate(lines, 1):
        line = line.strip().lstrip("\ufeff")
        if line.startswith("[") and line.endswith("]"):
            section, fields = line.lower(), None
            continue
        if section != "[events]" or ":" not in line:
            continue
        kind, rest = line.split(":", 1)
        if kind == "Format":
            fields = [f.strip().lower() for f in rest.split(",")]
            continue
        if kind != "Dialogue":
            continue
        if not fields or "text" not in fields:
            issues.add(lineno, "ASS dialogue before a Format line naming its Text field; line skipped")
            continue
        parts = rest.split(",", len(fields) - 1)  # the text, last, may hold commas
        if len(parts) != len(fields):
            issues.add(lineno, f"ASS dialogue has {len(parts)} fields, its Format names {len(fields)}; line skipped")
            continue
        cue = _cue_text([parts[fields.index("text")]])
        if cue:
            issues.records += 1
            yield cue
