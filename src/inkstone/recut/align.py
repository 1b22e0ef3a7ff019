"""Training pairs (an original episode's subtitles, its viral cut's subtitles) aligned
into the clip answers the recut mode asks for.

When the viral cut's times lie in the original timeline (its cues sit on original
cues of the same text), each viral cue takes the original cues it overlaps in
time. Otherwise (a re-timed cut) each viral cue is matched by text: rapidfuzz
scores, in an alignment that keeps the original order except for one hook block
at the start. Each pair gets a confidence: the mean match score of its viral cues.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pysubs2.formats.subrip import SubripFormat
from rapidfuzz import fuzz, process

from ..prompting.modes.recut import ClipChoice
from .subtitles import Cue, Subtitles, SubtitleError, load, parse_text

MATCH_FLOOR = 0.5  # a text score below this is no match
LOW_CONFIDENCE = 0.6
MAX_HOOK_CUES = 8  # the longest hook block looked for


class PairError(ValueError):
    """A pair that cannot be read; the message names the file."""


@dataclass
class Pair:
    name: str
    original: list[Cue]
    viral: list[Cue]
    source: str  # the file(s) it came from


@dataclass
class Alignment:
    clips: list[ClipChoice]
    method: str  # "time" or "text"
    confidence: float
    matched: list[Optional[int]] = field(default_factory=list)  # original cue id per viral cue


def _cues(rows, where: str, viral: bool = False) -> list[Cue]:
    """Cues from JSON rows {start, end, text}; times in seconds (float) or ms (int) or "HH:MM:SS,mmm"."""
    lines = []
    for n, r in enumerate(rows):
        try:
            start, end, text = _ms(r["start"]), _ms(r["end"]), str(r["text"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PairError(f"{where}[{n}]: needs start, end and text ({exc})") from None
        lines.append(f"{SubripFormat.ms_to_timestamp(start)} --> {SubripFormat.ms_to_timestamp(end)}\n{text}\n")
    # Through the same parser as files: the same checks, ids and language handling.
    return parse_text("\n".join(lines), "srt", Path(where), sort=not viral).cues


def _ms(v) -> int:
    if isinstance(v, str):
        from pysubs2.time import TIMESTAMP, timestamp_to_ms

        m = TIMESTAMP.search(v)
        if not m:
            raise ValueError(f"time {v!r} does not parse")
        return timestamp_to_ms(m.groups())
    if isinstance(v, float):
        return round(v * 1000)
    return int(v)


def read_pairs(folder: Path) -> list[Pair]:
    """Pairs in a folder: NAME.json ({"original_subtitles": [...], "viral_subtitles": [...]}), or two
    subtitle files NAME.original.srt and NAME.viral.srt (.vtt and .ass too)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairError(f"{folder}: no such folder of pairs")
    pairs = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            orig, viral = data["original_subtitles"], data["viral_subtitles"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise PairError(f"{path}: not a pair (original_subtitles and viral_subtitles): {exc}") from None
        try:
            pairs.append(Pair(path.stem, _cues(orig, f"{path}: original_subtitles"),
                              _cues(viral, f"{path}: viral_subtitles", viral=True), str(path)))
        except SubtitleError as exc:
            raise PairError(str(exc)) from None
    for path in sorted(folder.rglob("*.original.*")):
        name = path.name[: -len(".original" + path.suffix)]
        viral = next((p for p in path.parent.glob(f"{name}.viral.*")), None)
        if viral is None:
            raise PairError(f"{path}: no {name}.viral{path.suffix} beside it")
        try:
            pairs.append(Pair(name, load(path).cues, load(viral, sort=False).cues, f"{path} + {viral.name}"))
        except SubtitleError as exc:
            raise PairError(str(exc)) from None
    return pairs


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _scores(viral: Sequence[Cue], original: Sequence[Cue]) -> np.ndarray:
    """Text similarity of every viral cue to every original cue, 0..1."""
    return process.cdist([_norm(c.text) for c in viral], [_norm(c.text) for c in original],
                         scorer=fuzz.ratio, dtype=np.float32) / 100.0


def align(pair: Pair) -> Alignment:
    scores = _scores(pair.viral, pair.original)
    by_time = _by_time(pair, scores)
    if by_time is not None:
        return by_time
    return _by_text(pair, scores)


def _by_time(pair: Pair, scores: np.ndarray) -> Optional[Alignment]:
    """Viral cues on the original timeline: each takes the original cue it overlaps most. Used when
    most viral cues overlap an original cue of matching text."""
    matched, conf = [], []
    for i, v in enumerate(pair.viral):
        overlaps = [(min(v.end, o.end) - max(v.start, o.start), j) for j, o in enumerate(pair.original)]
        best, j = max(overlaps)
        if best <= 0:
            matched.append(None)
            conf.append(0.0)
            continue
        matched.append(pair.original[j].id)
        conf.append(float(scores[i, j]))
    if sum(c >= MATCH_FLOOR for c in conf) < 0.8 * len(conf):
        return None
    return Alignment(_clips(matched), "time", float(np.mean(conf)), matched)


def _monotonic(scores: np.ndarray) -> tuple[float, list[Optional[int]]]:
    """Best order-keeping match of rows (viral cues) to columns (original cues): columns never go
    back (two rows may share one, a cue split in two), a row below the floor stays unmatched.
    Returns (total score, column per row)."""
    n, m = scores.shape
    cols: list[Optional[int]] = [None] * n
    if n == 0 or m == 0:
        return 0.0, cols
    best_upto = [0.0] * m  # best total of rows so far whose last match is at a column <= j
    cell_upto: list[Optional[tuple[int, int]]] = [None] * m  # that match (row, column)
    back: dict[tuple[int, int], Optional[tuple[int, int]]] = {}
    total: dict[tuple[int, int], float] = {}
    for i in range(n):
        row = {}
        for j in range(m):
            if scores[i, j] >= MATCH_FLOOR:
                row[j] = float(scores[i, j]) + best_upto[j]
                back[(i, j)] = cell_upto[j]
                total[(i, j)] = row[j]
        run, run_cell = 0.0, None
        for j in range(m):  # fold this row in: prefix maxima over columns
            if j in row and row[j] > run:
                run, run_cell = row[j], (i, j)
            if run > best_upto[j]:
                best_upto[j], cell_upto[j] = run, run_cell
    if not total:
        return 0.0, cols
    cell: Optional[tuple[int, int]] = max(total, key=total.get)
    score = total[cell]
    while cell is not None:
        cols[cell[0]] = cell[1]
        cell = back[cell]
    return score, cols


def _by_text(pair: Pair, scores: np.ndarray) -> Alignment:
    """Text alignment allowing one hook: the first h viral cues aligned on their own (anywhere),
    the rest in order; h = 0 unless a hook scores better."""
    best = None
    for h in range(0, min(MAX_HOOK_CUES, len(pair.viral) - 1) + 1):
        head_total, head = _monotonic(scores[:h]) if h else (0.0, [])
        tail_total, tail = _monotonic(scores[h:])
        total = head_total + tail_total - (0.05 if h else 0.0)  # a hook must earn its place
        if best is None or total > best[0]:
            best = (total, head + tail)
    cols = best[1]
    matched = [pair.original[j].id if j is not None else None for j in cols]
    conf = [float(scores[i, j]) if j is not None else 0.0 for i, j in enumerate(cols)]
    return Alignment(_clips(matched), "text", float(np.mean(conf)) if conf else 0.0, matched)


def _clips(matched: Sequence[Optional[int]]) -> list[ClipChoice]:
    """Runs of viral cues on consecutive (or the same) original cues become one clip each."""
    clips: list[list[int]] = []
    for oid in matched:
        if oid is None:
            continue
        if clips and clips[-1][1] <= oid <= clips[-1][1] + 1 and oid >= clips[-1][0]:
            clips[-1][1] = oid
        else:
            clips.append([oid, oid])
    return [ClipChoice(a, b) for a, b in clips]
