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


def _json_records(path, encoding, issues, on_bytes):
    """Records of a top-level JSON array, parsed one at a time so a big file is never held whole.

    After a syntax error the reader skips to the next `}, {` and goes on.
    """
    decoder = json.JSONDecoder()
    with open_text(path, encoding) as fh:
        raw = fh.buffer
        buf, pos, line, eof, seen = "", 0, 1, False, 0

        def more(n: int = READ_CHARS) -> bool:
            nonlocal buf, pos, eof, line, seen
            if eof:
                return False
            line += buf.count("\n", 0, pos)
            buf = buf[pos:]
            pos = 0
            chunk = fh.read(max(n, READ_CHARS))
            if on_bytes:
                tell = raw.tell()
                on_bytes(tell - seen)
                seen = tell
            if not chunk:
                eof = True
                return False
            buf += chunk
            return True

        def skip_ws():
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos].isspace():
                    pos += 1
                if pos < len(buf) or not more():
                    return

        def lineno() -> int:
            return line + buf.count("\n", 0, pos)

        skip_ws()
        if pos >= len(buf):
            return
        if buf[pos] != "[":
            # One object: a single record (read whole: it is one book anyway).
            while more():
                pass
            try:
                yield lineno(), json.loads(buf[pos:])
            except json.JSONDecodeError as exc:
                issues.add(line + exc.lineno - 1, f"not valid JSON ({exc.msg} at column {exc.colno})")
            except RecursionError:
                issues.add(lineno(), TOO_DEEP)
            return
        pos += 1
        while True:
            skip_ws()
            if pos >= len(buf):
                issues.add(lineno(), "JSON array is not closed with ]")
                return
            if buf[pos] == "]":
                return
            start_line = lineno()
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except (json.JSONDecodeError, RecursionError) as exc:
                too_deep = isinstance(exc, RecursionError)
                incomplete = not too_deep and (exc.msg.startswith("Unterminated string") or exc.pos >= len(buf) - 1)
                if incomplete and more(len(buf) - pos):  # grow geometrically: linear time for big records
                    continue
                where = pos if too_deep else exc.pos
                at = line + buf.count("\n", 0, where)
                m = _RESYNC.search(buf, where)
                while m is None and more():
                    m = _RESYNC.search(buf, pos)
                issues.add(at, f"{TOO_DEEP}; record skipped" if too_deep else f"not valid JSON ({exc.msg}); record skipped")
                if m is None:
                    return
                pos = m.end()
                continue
            pos = end
            yield start_line, obj
            skip_ws()
            if pos < len(buf) and buf[pos] == ",":
                pos += 1
            elif pos < len(buf) and buf[pos] != "]":
                at = lineno()
                m = _RESYNC.search(buf, pos)
                while m is None and more():
                    m = _RESYNC.search(buf, pos)
                issues.add(at, f"expected , or ] after a record, found {buf[pos]!r}" if pos < len(buf)
                           else "JSON array is not closed with ]")
                if m is None:
                    return
                pos = m.end()


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
