"""An episode's subtitles as timed cues: SRT, WebVTT or ASS, in any encoding the
project reads, with every bad cue reported by its line and skipped.

pysubs2 parses the cues but reports no line numbers, and a timing line it cannot
read becomes text of the cue before it. So the file is cut into cue blocks here
(a timing line and the lines after it; an ASS `Dialogue:` line), each block is
parsed by pysubs2 on its own, and its line number is the line it starts on.
Times stay integer milliseconds throughout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pysubs2
from pysubs2.formats.subrip import SubripFormat
from pysubs2.formats.webvtt import WebVTTFormat

from ..data.encoding import UndecodableError, detect, validate

FORMATS = {".srt": "srt", ".vtt": "vtt", ".ass": "ass", ".ssa": "ssa"}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
# A line meant as a timing line, well formed or not ("00:00:05,000 -> 00:00:06" too).
_TIMING_LIKE = re.compile(r"^\s*\d[\d:.,]*\s*-{1,3}>|-->")


class SubtitleError(ValueError):
    """A subtitle file that cannot be used at all; the message names the file."""


@dataclass(frozen=True)
class Cue:
    id: int  # 1-based, in time order: the number the model sees
    start: int  # ms
    end: int  # ms
    text: str  # the cue's text as written (its lines joined by "\n")
    line: int  # the line of the file the cue starts on

    @property
    def duration(self) -> int:
        return self.end - self.start


@dataclass
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Subtitles:
    path: Path
    encoding: str
    format: str
    cues: list[Cue]
    problems: list[Problem] = field(default_factory=list)  # cues skipped, and notes such as overlaps

    @property
    def duration(self) -> int:
        """From the first cue's start to the last cue's end, ms."""
        return max(c.end for c in self.cues) - min(c.start for c in self.cues) if self.cues else 0

    @property
    def end(self) -> int:
        return max((c.end for c in self.cues), default=0)

    def by_id(self) -> dict[int, Cue]:
        return {c.id: c for c in self.cues}


def read_text(path: Path) -> tuple[str, str]:
    """The file's text and encoding, by the project's detection (BOM, UTF-8/16, GBK, windows-1252...)."""
    try:
        found = detect(path)
        enc = found.encoding
        if found.method == "detector" and enc in _WINDOWS_SINGLE_BYTE and _decodes(path, "cp1252"):
            # On a short file the detector cannot tell cp1250/1252/1257 apart (same score);
            # Western-language subtitles are windows-1252 far more often.
            enc = "cp1252"
        validate(path, enc)
    except UndecodableError as exc:
        raise SubtitleError(str(exc)) from exc
    except OSError as exc:
        raise SubtitleError(f"{path}: cannot read ({exc.strerror})") from exc
    text = Path(path).read_bytes().decode(enc)
    return text.lstrip("\ufeff"), enc


_WINDOWS_SINGLE_BYTE = {"cp1250", "cp1252", "cp1254", "cp1257", "cp1258"}


def _decodes(path: Path, encoding: str) -> bool:
    try:
        Path(path).read_bytes().decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def load(path: Path, sort: bool = True) -> Subtitles:
    """Parse a subtitle file; raises SubtitleError when it has no valid cue. `sort=False` keeps the
    file's order (a cut's subtitles, whose order is the playing order)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SubtitleError(f"{path}: not a subtitle file (.srt, .vtt, .ass or .ssa)")
    text, enc = read_text(path)
    subs = parse_text(text, fmt, path, sort)
    subs.encoding = enc
    return subs


def parse_text(text: str, fmt: str, path: Path = Path("<text>"), sort: bool = True) -> Subtitles:
    lines = text.splitlines()  # CRLF, CR and LF alike
    problems: list[Problem] = []
    raw = _ass_cues(lines, problems) if fmt in ("ass", "ssa") else _timed_cues(lines, fmt, problems)
    kept = []
    for line, start, end, body in raw:
        if not body.strip():
            problems.append(Problem(line, "cue has no text; skipped"))
        elif end < start:
            problems.append(Problem(line, f"cue ends before it starts ({_ts(start)} --> {_ts(end)}); skipped"))
        elif end == start:
            problems.append(Problem(line, f"cue has zero length ({_ts(start)}); skipped"))
        else:
            kept.append((start, end, line, body.strip()))
    if sort:  # time order: ids follow what is seen, not the order the file lists cues in
        kept.sort()
    cues = [Cue(i, s, e, t, ln) for i, (s, e, ln, t) in enumerate(kept, 1)]
    for a, b in zip(cues, cues[1:]) if sort else ():
        if b.start < a.end:
            problems.append(Problem(b.line, f"cue {b.id} overlaps cue {a.id} by {a.end - b.start} ms; both kept"))
    if not cues:
        detail = f" ({problems[0]})" if problems else ""
        raise SubtitleError(f"{path}: no valid subtitle cue{detail}")
    return Subtitles(path, "utf-8", fmt, cues, problems)


def _timed_cues(lines: list[str], fmt: str, problems: list[Problem]):
    """SRT and WebVTT: a block starts at each line holding "-->"; pysubs2 parses each block."""
    stamp = (WebVTTFormat if fmt == "vtt" else SubripFormat).TIMESTAMP
    starts = [i for i, ln in enumerate(lines) if _TIMING_LIKE.search(ln)]
    for k, i in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(lines)
        body = lines[i + 1:stop]
        if stop < len(lines):  # the next cue's index (SRT) or identifier (WebVTT) is not this cue's text
            body = _drop_next_identifier(body, fmt)
        if len(stamp.findall(lines[i])) != 2:
            problems.append(Problem(i + 1, f"timing line does not parse: {lines[i].strip()[:60]!r}; cue skipped"))
            continue
        block = "\n".join([lines[i], *body]) + "\n"
        events = pysubs2.SSAFile.from_string(block, format_=fmt).events
        if len(events) != 1:
            problems.append(Problem(i + 1, "cue does not parse; skipped"))
            continue
        ev = events[0]
        yield i + 1, ev.start, ev.end, _plain(ev)


def _drop_next_identifier(body: list[str], fmt: str) -> list[str]:
    """Lines after a cue's text that belong to the next cue: its number, or in WebVTT any
    identifier line right before the next timing line, after a blank line."""
    while body and not body[-1].strip():
        body = body[:-1]
    if body and (len(body) == 1 or not body[-2].strip()):
        last = body[-1].strip()
        if last.isdigit() or (fmt == "vtt" and len(body) > 1):
            return body[:-1]
    if fmt == "vtt":  # NOTE and STYLE blocks between cues
        for j, ln in enumerate(body):
            if j and not body[j - 1].strip() and ln.strip().startswith(("NOTE", "STYLE", "REGION")):
                return body[:j]
    return body


def _ass_cues(lines: list[str], problems: list[Problem]):
    """ASS/SSA: the header up to the [Events] Format line, then each Dialogue line parsed with it."""
    header: list[str] = []
    in_events = has_format = False
    for n, ln in enumerate(lines, 1):
        s = ln.strip()
        if s.startswith("[") and s.endswith("]"):
            in_events = s.lower() == "[events]"
        if in_events and s.startswith("Comment:"):
            continue  # an event not shown: no cue
        if not (in_events and s.startswith("Dialogue:")):
            header.append(ln)
            has_format = has_format or (in_events and s.startswith("Format:"))
            continue
        if not has_format:
            problems.append(Problem(n, "dialogue before the [Events] Format line; skipped"))
            continue
        try:
            events = pysubs2.SSAFile.from_string("\n".join([*header, s]) + "\n", format_="ass").events
        except (ValueError, TypeError) as exc:
            problems.append(Problem(n, f"dialogue line does not parse ({exc}); skipped"))
            continue
        if len(events) != 1:
            problems.append(Problem(n, "dialogue line does not parse; skipped"))
            continue
        yield n, events[0].start, events[0].end, _plain(events[0])


def _plain(ev: pysubs2.SSAEvent) -> str:
    """Text without styling tags, one line per subtitle line."""
    return "\n".join(" ".join(x.split()) for x in ev.plaintext.split("\n") if x.strip())


def _ts(ms: int) -> str:
    return SubripFormat.ms_to_timestamp(max(ms, 0))


# ---- language ------------------------------------------------------------------------------
def line_language(line: str) -> Optional[str]:
    """"zh" for a line with Chinese characters, "en" for one of Latin letters, None otherwise."""
    if _CJK.search(line):
        return "zh"
    if _LATIN.search(line):
        return "en"
    return None


def detect_language(cues: list[Cue]) -> str:
    """The language most cues have a line in; Chinese wins a tie (bilingual files are zh+en)."""
    zh = sum(1 for c in cues if any(line_language(x) == "zh" for x in c.text.split("\n")))
    en = sum(1 for c in cues if any(line_language(x) == "en" for x in c.text.split("\n")))
    return "zh" if zh >= en and zh else ("en" if en else "zh")


def view_text(cue: Cue, lang: str) -> str:
    """What the model reads of a cue: in a bilingual cue, the lines in `lang`."""
    lines = cue.text.split("\n")
    mine = [x for x in lines if line_language(x) == lang]
    return " ".join(mine or lines)
