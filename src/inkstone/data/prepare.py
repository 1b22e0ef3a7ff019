"""Novel files -> chapter-aware, token-sized training chunks with a validation split.

The `prepare` stage, streaming end to end: each file's encoding is detected
and checked, its books are read line by line (or record by record), split into
chapters, cleaned and de-duplicated; batches of chapters are token-counted on a
worker thread (the fast tokenizer's batch encoder releases the GIL) while the
next batch is read; chunks and instruction pairs go to anonymous spool files.
Only then are whole chapters (or books) drawn for validation and the spools
copied into train/val files, which are renamed into place together with
report.json. Memory stays at about one batch of text plus a hash per distinct
paragraph, whatever the size of the input.

Outputs: train_dir/train.jsonl and val_dir/val.jsonl ({"text", "book",
"chapter", "part", "tokens", "source", ...}), train_dir/instruct.jsonl and
val_dir/instruct.jsonl ({"prompt", "completion", ...}), report_dir/report.json.
"""
from __future__ import annotations

import json
import time
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from .chapters import RawChapter, split_chapters
from .chunking import Span, pack, paragraph_limit, span_tokens, split_long
from .cleaning import Cleaner
from .dedup import Deduper
from .encoding import SAMPLE_BYTES, Detection, UndecodableError, detect, validate
from .errors import PrepareError
from .instruct import CONTINUE, DEFAULT_SYSTEM, PromptMaker, resolve_prompt_format, story_tail
from .output import AtomicOutputs
from .readers import RECORD_FORMATS, SUBTITLE_FORMATS, FileIssues, discover, read_documents
from .report import Report
from .split import validation_units
from .tokens import TokenCounter

__all__ = ["SAMPLE_TEXT", "PrepareError", "Report", "prepare"]

SAMPLE_TEXT = Path(__file__).with_name("sample_hongloumeng_01-05.txt")
BATCH_CHARS = 400_000  # text per tokenizer call: big enough for its threads, small enough for memory
# Inputs from this size on load the fast token counter (about 2 s of counting with the
# tokenizers library on 2 cores, as long as loading fastokens for a 262k vocabulary).
FAST_COUNTER_MIN_BYTES = 16 * 10**6


try:  # orjson (a dependency of gradio and chromadb) writes JSON several times faster
    import orjson

    def _json_line(row: dict) -> bytes:
        try:
            return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # e.g. an integer beyond 64 bits in a record's metadata
            return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"
except ImportError:  # pragma: no cover
    def _json_line(row: dict) -> bytes:
        return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass
class Chapter:
    index: int
    book_index: int
    book: str
    title: str
    paragraphs: list[str]
    section: int
    meta: dict
    source: str


@dataclass
class _FileStats:
    books: set = field(default_factory=set)
    chapters: int = 0  # kept
    with_text: int = 0  # with any text after cleaning, duplicates included


def prepare(inputs: Sequence[Path], tokenizer, *, train_dir: Path, val_dir: Path, report_dir: Path,
            chunk_size: int = 2048, val_split: float = 0.1, seed: int = 42,
            progress: Optional[Callable[[str], None]] = print, overlap: int = 128,
            extra_boilerplate_patterns: Sequence[str] = (), split_by: str = "chapter",
            instructions: bool = True, prompt_format: str = "auto", model_name: str = "",
            system: str = DEFAULT_SYSTEM,
            instruct_context_tokens: Optional[int] = None, dedup_min_chars: int = 20,
            near_duplicate: float = 0.8, max_chapter_chars: int = 1_000_000,
            progress_bar: Optional[bool] = None, fast_counter: bool = True) -> Report:
    """Prepare training data from novel files or folders; see the module docstring.

    overlap: tokens of whole paragraphs repeated from one chunk to the next.
    extra_boilerplate_patterns: regular expressions cut from the text besides the built-in ones.
    split_by: "chapter" or "book" (falls back to chapters when there is only one book).
    instructions: also write instruct.jsonl pairs (prompt = the Write tab's template).
    prompt_format: "chat", "plain" or "auto": the inference engine's rule (chat for an instruct
        model, judged by `model_name` or the tokenizer's name, that has a chat template).
    system: the Write tab's system prompt (config inference.system_prompt).
    progress_bar: a tqdm bar over input bytes; None shows it only on a terminal.
    fast_counter: count tokens with fastokens where it matches the tokenizer (see tokens.py).
    """
    if chunk_size < 16:
        raise PrepareError(f"chunk_size must be at least 16 tokens, not {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise PrepareError(f"overlap must be between 0 and chunk_size - 1, not {overlap}")
    if not 0 <= val_split < 1:
        raise PrepareError(f"val_split must be in [0, 1), not {val_split}")
    if split_by not in ("chapter", "book"):
        raise PrepareError(f"split_by must be 'chapter' or 'book', not {split_by!r}")
    train_dir, val_dir, report_dir = Path(train_dir), Path(val_dir), Path(report_dir)
    if val_split > 0 and train_dir.resolve() == val_dir.resolve():
        raise PrepareError(f"train_dir and val_dir are both {train_dir}: the trainer reads every .jsonl in "
                           f"train_dir, so validation text would leak into training")
    try:
        cleaner = Cleaner(extra_boilerplate_patterns)
        fmt = resolve_prompt_format(tokenizer, prompt_format, model_name)
    except ValueError as exc:
        raise PrepareError(str(exc)) from None
    say = progress or (lambda _msg: None)
    targets = {"train": train_dir / "train.jsonl", "val": val_dir / "val.jsonl", "report": report_dir / "report.json"}
    if instructions:
        targets |= {"train_instruct": train_dir / "instruct.jsonl", "val_instruct": val_dir / "instruct.jsonl"}
    found, skipped = discover(inputs)
    # `--input data/` reaches prepare's own earlier outputs: read as input, validation
    # chunks would come back as training text.
    own = {p.resolve() for p in (*targets.values(), train_dir / "instruct.jsonl", val_dir / "instruct.jsonl")}
    files = []
    for path, kind in found:
        if path.resolve() in own:
            skipped.append({"file": str(path), "reason": "an output of an earlier prepare run, not read as input"})
        else:
            files.append((path, kind))
    # Loading fastokens takes seconds of CPU and ~400 MB for a big vocabulary: worth it
    # only for inputs that the tokenizers library would take longer than that to count.
    load_fast = sum(_size(p) for p, _ in files) >= FAST_COUNTER_MIN_BYTES

    t0 = time.perf_counter()
    with AtomicOutputs(targets) as out:
        if not instructions:  # an earlier run's pairs would otherwise still be trained on
            out.remove_on_commit(train_dir / "instruct.jsonl")
            out.remove_on_commit(val_dir / "instruct.jsonl")
        run = _Run(tokenizer, out, cleaner=cleaner, chunk_size=chunk_size, overlap=overlap,
                   instructions=instructions, prompt=PromptMaker(tokenizer, fmt, system) if instructions else None,
                   context_tokens=instruct_context_tokens or max(chunk_size // 4, 1),
                   deduper=Deduper(dedup_min_chars, near_duplicate), max_chapter_chars=max_chapter_chars,
                   say=say, fmt=fmt, fast_counter=fast_counter, load_fast=load_fast)
        try:
            run.report.skipped += skipped
            for s in skipped:
                say(f"[prepare] skipped {s['file']}: {s['reason']}")
            run.read_all(files, progress_bar)
            if run.n_chapters == 0:
                raise PrepareError("no usable text found in the inputs" +
                                   "".join(f"\n  {s['file']}: {s['reason']}" for s in run.report.skipped))
            run.split_and_write(val_split, seed, split_by, val_dir)
        finally:
            run.close()
        r = run.report
        r.chunk_size, r.overlap, r.val_split, r.seed = chunk_size, overlap, val_split, seed
        r.tokenizer = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        r.token_counter = run.counter.engine
        r.prompt_format = fmt if instructions else ""
        r.seconds = round(time.perf_counter() - t0, 3)
        r.mb_per_s = round(r.bytes_in / 1e6 / r.seconds, 2) if r.seconds else 0.0
        r.outputs = {k: str(v) for k, v in targets.items() if k in out.files and k != "report"}
        out.files["report"].write(json.dumps(r.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"))
        out.commit()
    return r


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Run:
    """State of one prepare run: reading, cleaning, counting, spooling, then the split."""

    def __init__(self, tokenizer, out: AtomicOutputs, *, cleaner: Cleaner, chunk_size: int, overlap: int,
                 instructions: bool, prompt: Optional[PromptMaker], context_tokens: int, deduper: Deduper,
                 max_chapter_chars: int, say, fmt: str, fast_counter: bool = True, load_fast: bool = True):
        self.out, self.cleaner, self.deduper, self.say = out, cleaner, deduper, say
        self.chunk_size, self.overlap, self.context_tokens = chunk_size, overlap, context_tokens
        self.instructions, self.prompt, self.fmt = instructions, prompt, fmt
        self.max_chapter_chars = max_chapter_chars
        self.report = Report()
        self.text_spool = out.spool("train")
        self.pair_spool = out.spool("train") if instructions else None
        # Per spooled row: its chapter, and (text rows) its tokens. Per chapter: its book.
        self.text_chapter, self.text_tokens = array("q"), array("q")
        self.pair_chapter = array("q")
        self.chapter_book = array("q")
        self.books: dict[tuple[str, str], int] = {}
        self.n_chapters = 0
        self.batch: list[Chapter] = []
        self.batch_chars = 0
        self.pending: Optional[tuple[list[Chapter], Future]] = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-tokens")
        # Last: close() gives back what it changes.
        self.counter = TokenCounter(tokenizer, use_fast=fast_counter, load_fast=load_fast)

    def close(self) -> None:
        self.counter.close()
        for spool in (self.text_spool, self.pair_spool):
            if spool is not None:
                spool.close()

    # -- reading ---------------------------------------------------------------------------
    def read_all(self, files: list[tuple[Path, str]], progress_bar: Optional[bool]) -> None:
        from tqdm import tqdm

        sizes = {path: _size(path) for path, _ in files}
        bar = tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="prepare",
                   disable=None if progress_bar is None else not progress_bar)
        say = self.say
        if not bar.disable and say is print:
            self.say = bar.write  # messages above the bar instead of through it
        try:
            for path, fmt in files:
                done = bar.n
                self.read_file(path, fmt, sizes[path], bar.update)
                bar.update(max(done + sizes[path] - bar.n, 0))  # skipped or short-read files still count
            self._flush()
            self._drain()
        finally:
            bar.close()
            self.say = say
            self.pool.shutdown(wait=True)

    def _skip(self, path: Path, reason: str, **extra) -> None:
        self.report.skipped.append({"file": str(path), "reason": reason, **extra})
        self.say(f"[prepare] skipped {path}: {reason}")

    def read_file(self, path: Path, fmt: str, size: int, on_bytes) -> None:
        if size == 0:
            return self._skip(path, "empty file")
        try:
            with open(path, "rb") as fh:
                sample = fh.read(SAMPLE_BYTES)
            if not sample.strip():
                return self._skip(path, "empty file (only whitespace)")
            if fmt == "xlsx":  # a ZIP of XML parts, read by openpyxl: no text encoding to detect
                if not sample.startswith(b"PK\x03\x04"):
                    return self._skip(path, "not an Excel workbook: an .xlsx file is a ZIP archive, this one is not")
                det = Detection("utf-8", "xlsx workbook", 1.0)
            else:
                det = detect(path, sample, size)
                if len(sample) < size:
                    validate(path, det.encoding)
        except UndecodableError as exc:
            reason = str(exc).split(": ", 1)[-1]
            return self._skip(path, reason, **({"byte_offset": exc.offset} if exc.offset is not None else {}))
        except OSError as exc:
            return self._skip(path, f"cannot read: {exc.strerror or exc}")

        issues, stats = FileIssues(path), _FileStats()
        try:
            for doc in read_documents(path, fmt, det.encoding, issues, on_bytes):
                for raw in split_chapters(doc.lines, doc.book, first_title=doc.first_title,
                                          max_chars=self.max_chapter_chars, meta=doc.meta):
                    self._add_chapter(raw, path, stats)
        except (OSError, UnicodeDecodeError) as exc:  # the file changed or vanished under us
            issues.add(None, f"read stopped early: {exc}")
        first_problem = f" ({issues.problems[0]['reason']})" if issues.problems else ""
        if fmt in RECORD_FORMATS and issues.records and issues.no_text == issues.records:
            return self._skip(path, "no text field in any record (expected content, text or body)")
        if fmt in RECORD_FORMATS and not issues.records and issues.no_text:
            return self._skip(path, "no text column (expected content, text or body)")
        if fmt in RECORD_FORMATS and not issues.records:
            return self._skip(path, "no records" + first_problem)
        if fmt in SUBTITLE_FORMATS and not issues.records:
            return self._skip(path, "no subtitle cues with text" + first_problem)
        if not stats.with_text:
            return self._skip(path, "empty file (no text left after cleaning: only whitespace or boilerplate)")
        self.report.errors += issues.problems
        if issues.not_listed:
            self.report.errors.append({"file": str(path), "line": None,
                                       "reason": f"{path}: {issues.not_listed} more problems not listed"})
        entry = {"file": str(path), "format": fmt, "encoding": det.encoding, "encoding_method": det.method,
                 "encoding_confidence": det.confidence, "bytes": size, "books": len(stats.books),
                 "chapters": stats.chapters}
        if fmt != "txt":
            entry["cues" if fmt in SUBTITLE_FORMATS else "records"] = issues.records
        if issues.problems:
            entry["problems"] = len(issues.problems) + issues.not_listed
        self.report.files.append(entry)
        self.report.bytes_in += size
        self.say(f"[prepare] {path.name}: {det.encoding} ({det.method}), {stats.chapters} chapters"
                 + (f", {entry['problems']} problems" if issues.problems else ""))

    def _add_chapter(self, raw: RawChapter, path: Path, stats: _FileStats) -> None:
        if raw.section:
            self.report.long_chapters_split += raw.section == 1
        paragraphs = self.cleaner.paragraphs(raw.lines)
        if not paragraphs:
            return
        stats.with_text += 1
        paragraphs = self.deduper.filter(paragraphs)
        if not paragraphs:
            return
        title = self.cleaner.line(raw.title) or raw.book
        key = (str(path), raw.book)
        if key not in self.books:
            self.books[key] = len(self.books)
        stats.books.add(key)
        stats.chapters += 1
        ch = Chapter(self.n_chapters, self.books[key], raw.book, title, paragraphs, raw.section, raw.meta, str(path))
        self.chapter_book.append(ch.book_index)
        self.n_chapters += 1
        self.batch.append(ch)
        self.batch_chars += sum(map(len, paragraphs))
        if self.batch_chars >= BATCH_CHARS:
            self._flush()

    # -- counting and chunking ---------------------------------------------------------------
    def _flush(self) -> None:
        """Hand the batch to the tokenizer thread; finish the previous batch meanwhile."""
        batch, self.batch, self.batch_chars = self.batch, [], 0
        future = None
        if batch:
            texts = []
            for ch in batch:
                if ch.section == 0:
                    texts.append(ch.title)
                texts += ch.paragraphs
            future = self.pool.submit(self.counter.count, texts)
        self._drain()
        if batch:
            self.pending = (batch, future)

    def _drain(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, None
            self._finish(*pending)

    def _finish(self, batch: list[Chapter], future: Future) -> None:
        counts = future.result()
        pos = 0
        try:
            for ch in batch:
                title_tokens = 0
                if ch.section == 0:
                    title_tokens = counts[pos]
                    pos += 1
                n = len(ch.paragraphs)
                self._emit(ch, title_tokens, counts[pos:pos + n])
                pos += n
        except OSError as exc:  # not a problem of the input file being read: stop the run
            raise PrepareError(f"could not write temporary data beside {self.out.targets['train']}: {exc}") from None

    def _emit(self, ch: Chapter, title_tokens: int, counts: list[int]) -> None:
        nl = self.counter.newline
        head = title_tokens + nl if ch.section == 0 else 0
        limit = paragraph_limit(self.chunk_size, head)
        paras, counts, n_split = split_long(ch.paragraphs, counts, limit, self.counter)
        self.report.long_paragraphs_split += n_split
        meta = ch.meta
        for part, span in enumerate(pack(counts, self.chunk_size, self.overlap, nl, head)):
            first = part == 0 and head
            text = "\n".join(paras[span.start:span.end])
            row = {"text": f"{ch.title}\n{text}" if first else text, "book": ch.book, "chapter": ch.title,
                   "part": part, "tokens": span_tokens(span, counts, nl, head if first else 0),
                   "source": ch.source, **meta}
            self.text_spool.write(_json_line(row))
            self.text_chapter.append(ch.index)
            self.text_tokens.append(row["tokens"])
            if not self.instructions:
                continue
            passage = "\n".join(paras[span.new:span.end])
            if part == 0:
                story, instruction = "", ch.title if ch.section == 0 else CONTINUE
            else:
                story, instruction = story_tail(paras, counts, span.new, self.context_tokens), CONTINUE
            pair = {"prompt": self.prompt(story, instruction),
                    # Plain prompts end inside the story: the passage starts a new paragraph.
                    "completion": ("\n" if story and self.fmt == "plain" else "") + passage,
                    "book": ch.book, "chapter": ch.title, "part": part,
                    "tokens": span_tokens(Span(span.new, span.new, span.end), counts, nl),
                    "source": ch.source, **meta}
            self.pair_spool.write(_json_line(pair))
            self.pair_chapter.append(ch.index)

    # -- split and write -------------------------------------------------------------------------
    def split_and_write(self, val_split: float, seed: int, split_by: str, val_dir: Path) -> None:
        r = self.report
        r.books, r.chapters = len(self.books), self.n_chapters
        if split_by == "book" and len(self.books) < 2:
            self.say("[prepare] only one book: splitting validation by chapters instead")
            split_by = "chapter"
        r.split_by = split_by
        n_units = len(self.books) if split_by == "book" else self.n_chapters
        val_units = validation_units(n_units, val_split, seed)
        is_val = bytearray(self.n_chapters)
        for i in range(self.n_chapters):
            unit = self.chapter_book[i] if split_by == "book" else i
            is_val[i] = unit in val_units
        r.val_chapters = sum(is_val)
        r.train_chapters = self.n_chapters - r.val_chapters

        try:
            counts = self._route(self.text_spool, self.text_chapter, is_val, "train", "val", self.text_tokens)
            (r.train_chunks, r.val_chunks), (r.train_tokens, r.val_tokens) = counts
            if self.instructions:
                (r.train_instruct, r.val_instruct), _ = self._route(self.pair_spool, self.pair_chapter, is_val,
                                                                    "train_instruct", "val_instruct", None)
        except OSError as exc:
            raise PrepareError(f"could not write the outputs: {exc}") from None
        d = self.deduper.stats
        r.duplicates = {"paragraphs_dropped": d.paragraphs, "paragraph_chars_dropped": d.paragraph_chars,
                        "chapters_exact": d.chapters_exact, "chapters_near": d.chapters_near}
        c = self.cleaner.stats
        r.boilerplate = {"lines_dropped": c.boilerplate_lines, "phrases_cut": c.boilerplate_cuts}
        if r.val_chunks == 0:  # no validation set: do not leave an older one for the trainer to find
            self.out.drop("val", val_dir / "val.jsonl")
            self.out.drop("val_instruct", val_dir / "instruct.jsonl")

    def _route(self, spool, chapters: array, is_val: bytearray, train: str, val: str,
               tokens: Optional[array]) -> tuple[tuple[int, int], tuple[int, int]]:
        spool.flush()
        spool.seek(0)
        dest = (self.out.files[train], self.out.files[val])
        rows, toks = [0, 0], [0, 0]
        for i, line in enumerate(spool):
            v = is_val[chapters[i]]
            dest[v].write(line)
            rows[v] += 1
            if tokens is not None:
                toks[v] += tokens[i]
        spool.close()
        return (rows[0], rows[1]), (toks[0], toks[1])
