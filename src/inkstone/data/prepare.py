"""Novel text files -> chapter-aware, token-sized training chunks with a validation split.

Reads .txt files (UTF-8 with or without BOM, else GB18030; an undecodable file
is reported with its byte offset and skipped, never decoded lossily), splits
them into chapters on their headings, cuts each chapter into chunks of about
`chunk_size` tokens on paragraph boundaries, and assigns whole chapters to
train or validation so no validation text leaks into training. Outputs are
written to temporary files and renamed, so a failed run leaves nothing half-done.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

SAMPLE_TEXT = Path(__file__).with_name("sample_hongloumeng_01-05.txt")
CN_NUM = "零〇一二三四五六七八九十百千万两"
CHAPTER_RE = re.compile(
    rf"^\s*(第[{CN_NUM}\d]+[回章节卷][^\n]{{0,40}}|Chapter\s+\d+[^\n]{{0,60}})\s*$", re.MULTILINE | re.IGNORECASE
)


class PrepareError(ValueError):
    pass


@dataclass
class Chapter:
    book: str
    title: str
    text: str


@dataclass
class Report:
    files: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    books: int = 0
    chapters: int = 0
    train_chunks: int = 0
    val_chunks: int = 0
    train_tokens: int = 0
    val_tokens: int = 0


def decode(path: Path) -> tuple[str, str]:
    """Return (text, encoding). Raise PrepareError naming the byte offset when nothing fits."""
    raw = path.read_bytes()
    if not raw.strip():
        raise PrepareError(f"{path}: empty file")
    if b"\x00" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PrepareError(f"{path}: looks like a binary file, not text")
    candidates = [("utf-8-sig", raw.startswith(b"\xef\xbb\xbf")), ("utf-16", raw.startswith((b"\xff\xfe", b"\xfe\xff"))),
                  ("utf-8", True), ("gb18030", True)]
    first_error: Optional[UnicodeDecodeError] = None
    for enc, applies in candidates:
        if not applies:
            continue
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    where = first_error.start if first_error else 0
    raise PrepareError(f"{path}: not UTF-8 or GB18030 text (undecodable bytes at byte offset {where})")


def split_chapters(text: str, book: str) -> list[Chapter]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    heads = list(CHAPTER_RE.finditer(text))
    if not heads:
        return [Chapter(book, book, text.strip())] if text.strip() else []
    chapters = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end():end].strip()
        if body:
            chapters.append(Chapter(book, m.group(1).strip(), body))
    return chapters


def clean_paragraphs(text: str) -> list[str]:
    # Full-width indents and stray spaces vary between sources: normalise to none.
    paras = [re.sub(r"^[\s\u3000]+|[\s\u3000]+$", "", p) for p in text.split("\n")]
    return [p for p in paras if p]


def chunk_chapter(ch: Chapter, tokenizer, chunk_size: int) -> list[dict]:
    """Greedy paragraph packing; the chapter title heads its first chunk."""
    chunks, current, size = [], [ch.title], len(tokenizer(ch.title, add_special_tokens=False).input_ids)
    for para in clean_paragraphs(ch.text):
        n = len(tokenizer(para, add_special_tokens=False).input_ids)
        if size + n > chunk_size and len(current) > 1:
            chunks.append(current)
            current, size = [], 0
        current.append(para)
        size += n
    if current and (len(current) > 1 or not chunks):
        chunks.append(current)
    out = []
    for i, paras in enumerate(chunks):
        text = "\n".join(paras)
        out.append({"text": text, "book": ch.book, "chapter": ch.title, "part": i,
                    "tokens": len(tokenizer(text, add_special_tokens=False).input_ids)})
    return out


def iter_inputs(inputs: Iterable[Path]) -> list[Path]:
    files = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.txt") if f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise PrepareError(f"input not found: {p}")
    return files


def _atomic_write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare(inputs: list[Path], tokenizer, *, train_dir: Path, val_dir: Path, report_dir: Path,
            chunk_size: int = 2048, val_split: float = 0.1, seed: int = 42, progress=print) -> Report:
    report = Report()
    chapters: list[Chapter] = []
    for f in iter_inputs(inputs):
        try:
            text, enc = decode(f)
        except (PrepareError, OSError) as exc:
            report.skipped.append({"file": str(f), "reason": str(exc)})
            progress(f"[prepare] skipped {exc}")
            continue
        chs = split_chapters(text, f.stem)
        report.files.append({"file": str(f), "encoding": enc, "chapters": len(chs), "bytes": f.stat().st_size})
        progress(f"[prepare] {f.name}: {enc}, {len(chs)} chapters")
        chapters += chs
    if not chapters:
        raise PrepareError("no usable text found in the inputs" +
                           "".join(f"\n  {s['reason']}" for s in report.skipped))
    report.books = len({c.book for c in chapters})
    report.chapters = len(chapters)

    order = list(range(len(chapters)))
    random.Random(seed).shuffle(order)
    n_val = round(len(chapters) * val_split) if len(chapters) > 1 else 0
    if val_split > 0 and n_val == 0 and len(chapters) > 1:
        n_val = 1
    val_ids = set(order[:n_val])
    train_rows, val_rows = [], []
    for i, ch in enumerate(chapters):
        (val_rows if i in val_ids else train_rows).extend(chunk_chapter(ch, tokenizer, chunk_size))
    report.train_chunks, report.val_chunks = len(train_rows), len(val_rows)
    report.train_tokens = sum(r["tokens"] for r in train_rows)
    report.val_tokens = sum(r["tokens"] for r in val_rows)

    _atomic_write_jsonl(Path(train_dir) / "train.jsonl", train_rows)
    _atomic_write_jsonl(Path(val_dir) / "val.jsonl", val_rows)
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    (Path(report_dir) / "report.json").write_text(
        json.dumps(report.__dict__, ensure_ascii=False, indent=2), encoding="utf-8")
    return report
