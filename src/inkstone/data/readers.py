"""Find input files and read each format into documents (a book's lines plus metadata).

Formats: plain text (.txt/.text/.md), subtitles (.srt/.vtt/.ass/.ssa, one
paragraph per cue: see subtitles.py), JSON arrays (.json, streamed record by
record), JSON lines (.jsonl/.ndjson), CSV/TSV and Excel workbooks (.xlsx/.xlsm,
every sheet, first non-empty row as header), with records holding
`content` (or `text`/`body`), `title`, `author`, `genre`, `tags`, and
optionally `book`. A record whose title looks like a chapter heading (or that
names its book) is a chapter of that book; otherwise it is a book of its own.
Problems inside a file (a broken JSON line, a record without text) are
recorded in `issues` with file:line (file:sheet!row in a workbook) and the
rest of the file is still read.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from .chapters import HeadingMatcher
from .encoding import LONE_SURROGATE, iter_lines, open_text
from .errors import PrepareError
from .subtitles import ass_lines, srt_lines

FORMATS = {".txt": "txt", ".text": "txt", ".md": "txt", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".csv": "csv", ".tsv": "tsv", ".xlsx": "xlsx", ".xlsm": "xlsx",
           ".srt": "srt", ".vtt": "srt", ".ass": "ass", ".ssa": "ass"}
RECORD_FORMATS = {"json", "jsonl", "csv", "tsv", "xlsx"}  # files of records with named fields
SUBTITLE_FORMATS = {"srt", "ass"}
# What to do with files that hold novels in a format not read here.
CONVERT_HINTS = {".xls": "a legacy Excel workbook: save it as .xlsx or .csv",
                 ".doc": "a Word document: save it as .txt", ".docx": "a Word document: save it as .txt",
                 ".epub": "an e-book: convert it to .txt", ".pdf": "a PDF: convert it to .txt"}
TEXT_FIELDS = ("content", "text", "body", "正文", "内容")
TITLE_FIELDS = ("title", "chapter", "chapter_title", "name", "标题")
BOOK_FIELDS = ("book", "book_title", "novel", "书名")
META_FIELDS = ("author", "genre", "tags")
READ_CHARS = 1 << 20
# A JSON line is parsed whole, so it is read whole up to this many characters (a whole
# book in one record is common); a longer one comes in pieces and is reported as broken.
JSONL_MAX_LINE = 64 << 20
MAX_LISTED = 100  # problems listed per file in the report; the rest are counted


@dataclass
class Document:
    book: str
    lines: Iterable[str]
    first_title: Optional[str] = None  # the chapter title when the record is one chapter
    meta: dict = field(default_factory=dict)


@dataclass
class FileIssues:
    """What went wrong inside one file that was otherwise read."""
    path: Path
    problems: list[dict] = field(default_factory=list)
    records: int = 0
    no_text: int = 0
    not_listed: int = 0  # problems beyond MAX_LISTED, only counted

    def add(self, line: Optional[int | str], reason: str) -> None:
        if len(self.problems) >= MAX_LISTED:
            self.not_listed += 1
            return
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append({"file": str(self.path), "line": line, "reason": f"{where}: {reason}"})


def discover(inputs: Iterable[Path]) -> tuple[list[tuple[Path, str]], list[dict]]:
    """Every readable file under the inputs (recursively), with its format; unsupported ones as skipped."""
    files, skipped = [], []
    for p in inputs:
        p = Path(p).expanduser()
        if p.is_dir():
            candidates = sorted(f for f in p.rglob("*") if f.is_file()
                                and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            candidates = [p]
        else:
            raise PrepareError(f"input not found: {p}")
        for f in candidates:
            fmt = FORMATS.get(f.suffix.lower())
            if fmt:
                files.append((f, fmt))
            elif f.suffix.lower() in CONVERT_HINTS:
                skipped.append({"file": str(f), "reason": CONVERT_HINTS[f.suffix.lower()]})
            else:
                skipped.append({"file": str(f), "reason": f"unsupported file type {f.suffix or '(no extension)'!r}; "
                                                          f"expected one of {', '.join(sorted(FORMATS))}"})
    return files, skipped


def read_documents(path: Path, fmt: str, encoding: str, issues: FileIssues, on_bytes=None) -> Iterator[Document]:
    if fmt == "txt":
        yield Document(book=path.stem, lines=iter_lines(path, encoding, on_bytes))
        return
    if fmt in SUBTITLE_FORMATS:
        cues = (srt_lines if fmt == "srt" else ass_lines)(iter_lines(path, encoding, on_bytes), issues)
        yield Document(book=path.stem, lines=cues)
        return
    headings = HeadingMatcher()
    if fmt == "jsonl":
        records = _jsonl_records(path, encoding, issues, on_bytes)
    elif fmt == "json":
        records = _json_records(path, encoding, issues, on_bytes)
    elif fmt == "xlsx":
        records = _xlsx_records(path, issues)
    else:
        records = _csv_records(path, encoding, issues, on_bytes, delimiter="\t" if fmt == "tsv" else ",")
    for line, rec in records:
        issues.records += 1
        doc = record_document(rec, path, line, issues, headings)
        if doc is not None:
            yield doc


def record_document(rec, path: Path, line: Optional[int], issues: FileIssues,
                    headings: HeadingMatcher) -> Optional[Document]:
    if not isinstance(rec, dict):
        issues.add(line, f"expected an object with a text field, got {type(rec).__name__}")
        return None
    content = next((rec[k] for k in TEXT_FIELDS if isinstance(rec.get(k), str)), None)
    if content is None:
        issues.no_text += 1
        issues.add(line, f"no text field (one of {', '.join(TEXT_FIELDS)})")
        return None
    if _has_lone_surrogate(rec):
        issues.add(line, "unpaired UTF-16 surrogate escape (such as \\ud800) replaced by U+FFFD")
        rec = _replace_lone_surrogates(rec)
        content = next(rec[k] for k in TEXT_FIELDS if isinstance(rec.get(k), str))
    title = next((str(rec[k]).strip() for k in TITLE_FIELDS if rec.get(k)), None)
    book = next((str(rec[k]).strip() for k in BOOK_FIELDS if rec.get(k)), None)
    meta = {k: _meta_value(k, rec[k]) for k in META_FIELDS if rec.get(k) not in (None, "", [])}
    if book:
        first_title = title
    elif title and headings(title[:50]):
        book, first_title = path.stem, title
    else:
        book, first_title = title or path.stem, None
    return Document(book=book, lines=content.splitlines(), first_title=first_title, meta=meta)


def _meta_value(key: str, value):
    """One type per field across all records (tags: a list of strings; the rest: a string),
    so the output loads with `datasets` as plain string columns."""
    if key == "tags":
        items = re.split(r"[,，;；|/\s]+", value) if isinstance(value, str) else value
        items = items if isinstance(items, list) else [items]
        return [t for t in (_meta_text(x).strip() for x in items) if t]
    if isinstance(value, list):
        return ", ".join(_meta_text(x) for x in value)
    return _meta_text(value)


def _meta_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(map(_has_lone_surrogate, value.values()))
    if isinstance(value, list):
        return any(map(_has_lone_surrogate, value))
    return False


def _replace_lone_surrogates(value):
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    return value


def _jsonl_records(path, encoding, issues, on_bytes):
    for lineno, line in enumerate(iter_lines(path, encoding, on_bytes, max_line=JSONL_MAX_LINE), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            issues.add(lineno, f"not valid JSON ({exc.msg} at column {exc.colno}); line skipped")
        except RecursionError:
            issues.add(lineno, f"{TOO_DEEP}; line skipped")


_RESYNC = re.compile(r"\}\s*,\s*(?=\{)")
TOO_DEEP = "JSON nested too deeply to read (thousands of levels: not a novel record)"


class _JsonText:
    """A JSON text read chunk by chunk: `buf[pos:]` is not parsed yet, and `line` is the
    line number of `buf[0]`. Parsed text is dropped as more is read, so memory stays
    at about one chunk (or one record, when a record is bigger)."""

    def __init__(self, fh, on_bytes):
        self.fh, self.on_bytes = fh, on_bytes
        self.buf, self.pos, self.line, self.eof, self.seen = "", 0, 1, False, 0

    def more(self, n: int = 0) -> bool:
        """Read one more chunk, of at least `n` characters; False at the end of the file."""
        if self.eof:
            return False
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:]
        self.pos = 0
        chunk = self.fh.read(max(n, READ_CHARS))
        if self.on_bytes:
            tell = self.fh.buffer.tell()
            self.on_bytes(tell - self.seen)
            self.seen = tell
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def skip_ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return

    def peek(self) -> Optional[str]:
        """The next unparsed character, None at the end."""
        return self.buf[self.pos] if self.pos < len(self.buf) else None

    def line_at(self, index: int) -> int:
        return self.line + self.buf.count("\n", 0, index)

    def lineno(self) -> int:
        return self.line_at(self.pos)

    def resync(self, start: int) -> bool:
        """Skip to the next record after a broken one (past the next `}, {`); False if none follows."""
        m = _RESYNC.search(self.buf, start)
        while m is None and self.more():
            m = _RESYNC.search(self.buf, self.pos)
        if m is None:
            return False
        self.pos = m.end()
        return True


def _json_records(path, encoding, issues, on_bytes):
    """Records of a top-level JSON array, parsed one at a time so a big file is never held whole.

    After a syntax error the reader skips to the next `}, {` and goes on.
    """
    with open_text(path, encoding) as fh:
        text = _JsonText(fh, on_bytes)
        text.skip_ws()
        first = text.peek()
        if first is None:
            return
        if first != "[":
            yield from _single_json_record(text, issues)
            return
        text.pos += 1
        yield from _json_array_records(text, issues)


def _single_json_record(text: _JsonText, issues):
    """A file holding one object: a single record (read whole: it is one book anyway)."""
    while text.more():
        pass
    try:
        yield text.lineno(), json.loads(text.buf[text.pos:])
    except json.JSONDecodeError as exc:
        issues.add(text.line + exc.lineno - 1, f"not valid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        issues.add(text.lineno(), TOO_DEEP)


def _json_array_records(text: _JsonText, issues):
    """The records of an array whose `[` was read, up to its `]`."""
    decoder = json.JSONDecoder()
    while True:
        text.skip_ws()
        if text.peek() is None:
            issues.add(text.lineno(), "JSON array is not closed with ]")
            return
        if text.peek() == "]":
            return
        start_line = text.lineno()
        try:
            obj, end = decoder.raw_decode(text.buf, text.pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            if _record_runs_on(exc, text) and text.more(len(text.buf) - text.pos):  # grow geometrically
                continue
            if not _skip_broken_record(text, exc, issues):
                return
            continue
        text.pos = end
        yield start_line, obj
        if not _skip_separator(text, issues):
            return


def _record_runs_on(exc: Exception, text: _JsonText) -> bool:
    """The record failed only because it goes on past what was read so far."""
    if isinstance(exc, RecursionError):
        return False
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text.buf) - 1


def _skip_broken_record(text: _JsonText, exc: Exception, issues) -> bool:
    """Report a record that does not parse and skip to the next; False if none follows."""
    too_deep = isinstance(exc, RecursionError)
    where = text.pos if too_deep else exc.pos
    at = text.line_at(where)
    found = text.resync(where)
    issues.add(at, f"{TOO_DEEP}; record skipped" if too_deep else f"not valid JSON ({exc.msg}); record skipped")
    return found


def _skip_separator(text: _JsonText, issues) -> bool:
    """Step over the `,` after a record. Anything else but `]` is reported and skipped
    up to the next record; False when none follows."""
    text.skip_ws()
    after = text.peek()
    if after == ",":
        text.pos += 1
    elif after is not None and after != "]":
        at = text.lineno()
        found = text.resync(text.pos)
        issues.add(at, f"expected , or ] after a record, found {after!r}")
        return found
    return True


def _csv_records(path, encoding, issues, on_bytes, delimiter=","):
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # a chapter in one cell is far over the default 128 KiB
    try:
        with open(path, "rb") as probe:
            size = probe.seek(0, 2)
        fh = open_text(path, encoding)
        fh.reconfigure(newline="")  # embedded newlines inside quoted cells stay in the cell
        with fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = None
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    issues.add(reader.line_num, f"not valid CSV ({exc}); row skipped")
                    continue
                if header is None:
                    header = [h.strip().lstrip("\ufeff").lower() for h in row]
                    if not any(h in TEXT_FIELDS for h in header):
                        issues.add(1, f"no text column (one of {', '.join(TEXT_FIELDS)}) in header {row}")
                        issues.no_text += 1
                        return
                    continue
                if not any(cell.strip() for cell in row):
                    continue
                yield reader.line_num, dict(zip(header, row))
        if on_bytes:
            on_bytes(size)
    finally:
        csv.field_size_limit(limit)


def _xlsx_records(path: Path, issues: FileIssues):
    """Rows of every sheet as records, keyed by the sheet's header row (openpyxl's read-only
    mode streams the rows; the text itself sits in the workbook's shared-strings table)."""
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (BadZipFile, KeyError, OSError, ValueError) as exc:  # what openpyxl raises for a broken workbook
        issues.add(None, f"not a readable Excel workbook ({type(exc).__name__}: {exc})")
        return
    try:
        for sheet in book.worksheets:
            header = None
            for row_number, row in enumerate(sheet.iter_rows(values_only=True), 1):
                cells = ["" if v is None else str(v) for v in row]
                if not any(c.strip() for c in cells):
                    continue
                where = f"{sheet.title}!{row_number}"
                if header is None:
                    header = [c.strip().lower() for c in cells]
                    if not any(h in TEXT_FIELDS for h in header):
                        issues.add(where, f"no text column (one of {', '.join(TEXT_FIELDS)}) in header {cells}")
                        issues.no_text += 1
                        break  # the next sheet may have one
                    continue
                yield where, {h: str(v) for h, v in zip(header, row) if h and v is not None}  # empty cell: no field
    finally:
        book.close()
