"""Find a text file's encoding without guessing wrong quietly, and read it as a stream.

Order: byte-order mark; known binary signatures, and NUL bytes (BOM-less
UTF-16 if that decodes to text, else binary); strict UTF-8; strict GB18030,
Big5 and UTF-16 (GB18030 and Big5 both decode most Chinese byte streams, so
the decoding whose characters look most like real text wins, and only above a
floor); then charset-normalizer with a chaos ceiling. The choice is made on a prefix sample and then checked
over the whole file by a strict streaming decode, so an undecodable byte is
reported with its exact offset. Nothing is ever decoded with errors="ignore".
"""
from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

SAMPLE_BYTES = 256 * 1024
BLOCK_BYTES = 4 * 1024 * 1024
# A strict decode must also look like text: this share of its characters must
# be ASCII, common CJK ideographs or CJK punctuation (mojibake scores far lower).
PLAUSIBLE_FLOOR = 0.8
# charset-normalizer's "chaos" (0..1) above which its guess is not trusted.
DETECTOR_MAX_CHAOS = 0.2

BOMS = [  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]
BINARY_MAGIC = [
    (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"GIF8", "GIF image"), (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive (also .docx/.epub)"), (b"\x1f\x8b", "gzip archive"), (b"7z\xbc\xaf", "7z archive"),
    (b"Rar!", "RAR archive"), (b"\x7fELF", "executable"), (b"SQLite format 3\x00", "SQLite database"),
    (b"\xd0\xcf\x11\xe0", "MS Office document"),
]

# JSON's \ud800 escapes decode to lone surrogates, which no tokenizer or UTF-8 writer takes.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class UndecodableError(ValueError):
    """A file that is not text in any encoding we accept; names the file and byte offset."""

    def __init__(self, path: Path, message: str, offset: Optional[int] = None, binary: bool = False):
        super().__init__(f"{path}: {message}")
        self.path, self.offset, self.binary = path, offset, binary


@dataclass(frozen=True)
class Detection:
    encoding: str  # a Python codec name
    method: str  # "bom", "strict", "utf-16 pattern", "detector", "empty"
    confidence: float  # 1.0 for a BOM or a clean strict decode; plausibility or 1 - chaos otherwise


@lru_cache(maxsize=1)
def _text_chars() -> frozenset:
    """Characters real text is made of: printable ASCII, Latin letters, CJK punctuation, and the
    GB2312 level-1 (3755 common simplified) and Big5 level-1 (5401 common traditional) ideographs."""
    chars = {chr(o) for o in range(0x21, 0x7F)} | {chr(o) for o in range(0xC0, 0x250)}
    chars |= {chr(o) for o in range(0x3000, 0x3040)} | {chr(o) for o in range(0xFF01, 0xFF5F)}
    chars |= {chr(o) for o in range(0x2010, 0x2028)}
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            try:
                chars.add(bytes((lead, trail)).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    for code in range(0xA440, 0xC67F):
        try:
            chars.add(code.to_bytes(2, "big").decode("big5"))
        except UnicodeDecodeError:
            pass
    return frozenset(chars)


def plausibility(text: str, limit: int = 30_000) -> float:
    """Share of non-space characters that real text is made of; mojibake scores low."""
    s = "".join(text[:limit].split())
    return sum(map(_text_chars().__contains__, s)) / len(s) if s else 1.0


def _strict(sample: bytes, encoding: str, complete: bool) -> Optional[str]:
    """Decode the sample strictly; a multi-byte character cut at the sample's end is not an error."""
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(sample, final=complete)
    except UnicodeDecodeError:
        return None


def detect(path: Path, sample: Optional[bytes] = None, size: Optional[int] = None) -> Detection:
    """Pick the encoding from a prefix sample. Raises UndecodableError for binary or unknown bytes."""
    path = Path(path)
    if sample is None:
        with open(path, "rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
    size = path.stat().st_size if size is None else size
    complete = len(sample) >= size
    if not sample:
        return Detection("utf-8", "empty", 1.0)
    for bom, enc in BOMS:
        if sample.startswith(bom):
            return Detection(enc, "bom", 1.0)
    for magic, kind in BINARY_MAGIC:
        if sample.startswith(magic):
            raise UndecodableError(path, f"binary file ({kind}), not text", offset=0, binary=True)
    if b"\x00" in sample:
        # BOM-less UTF-16: the NULs are the zero halves of ASCII (or of U+4E00 "一"...).
        for order in ("utf-16-le", "utf-16-be"):
            text = _strict(sample, order, complete)
            score = plausibility(text) if text is not None else 0.0
            if score >= PLAUSIBLE_FLOOR:
                return Detection(order, "utf-16 pattern", round(score, 3))
        where = sample.index(0)
        raise UndecodableError(path, f"binary file (NUL byte at byte offset {where}), not text",
                               offset=where, binary=True)
    if _strict(sample, "utf-8", complete) is not None:
        return Detection("utf-8", "strict", 1.0)
    damaged = _damaged_utf8(sample)
    if damaged is not None:
        raise UndecodableError(path, f"undecodable bytes at byte offset {damaged} (the text before it is "
                                     f"UTF-8; bytes {sample[damaged:damaged + 4].hex(' ')})", offset=damaged)
    # GB18030 and Big5 accept most of each other's byte pairs (and BOM-less UTF-16
    # accepts almost anything): decode strictly with each, the most text-like wins.
    scored = []
    for enc in ("gb18030", "big5", "cp950", "utf-16-le", "utf-16-be"):
        text = _strict(sample[:64 * 1024], enc, complete and len(sample) <= 64 * 1024)
        if text is not None:
            scored.append((plausibility(text), enc))
    if scored:
        score, enc = max(scored, key=lambda s: s[0])
        if score >= PLAUSIBLE_FLOOR:
            if complete or _strict(sample, enc, complete) is not None:
                return Detection(enc, "strict", round(score, 3))
    guess = _detector(sample)
    if guess is not None:
        return guess
    raise UndecodableError(path, _undecodable_message(sample, complete), offset=_first_bad_offset(sample))


def _detector(sample: bytes) -> Optional[Detection]:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: the strict candidates cover the common cases
        return None
    best = from_bytes(sample).best()
    if best is None or best.chaos > DETECTOR_MAX_CHAOS:
        return None
    enc = codecs.lookup(best.encoding).name
    if _strict(sample, enc, False) is None:
        return None
    return Detection(enc, "detector", round(1.0 - best.chaos, 3))


def _damaged_utf8(sample: bytes) -> Optional[int]:
    """The offset of a bad byte in what is otherwise clearly UTF-8 (many valid multi-byte characters
    before it, valid UTF-8 again after it); None when the sample is simply not UTF-8."""
    try:
        sample.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        start = exc.start
    before = sample[:start].decode("utf-8")
    if sum(1 for ch in before[-4000:] if ord(ch) > 0x7F) < 16:
        return None
    after = sample[start + 1:start + 4096]
    for skip in range(4):  # resynchronise on the next character boundary
        if _strict(after[skip:], "utf-8", False) is not None:
            return start
    return None


def _first_bad_offset(sample: bytes) -> int:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0


def _undecodable_message(sample: bytes, complete: bool) -> str:
    parts = []
    for enc in ("utf-8", "gb18030", "big5"):
        try:
            codecs.getincrementaldecoder(enc)("strict").decode(sample, final=complete)
        except UnicodeDecodeError as exc:
            parts.append(f"{enc} fails at byte offset {exc.start} (byte 0x{sample[exc.start]:02x})")
    return "undecodable bytes: not text in a known encoding (" + "; ".join(parts) + ")"


def validate(path: Path, encoding: str, on_bytes=None) -> None:
    """Strictly decode the whole file in blocks; raise UndecodableError at the first bad byte."""
    dec = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(BLOCK_BYTES)
            pending = len(dec.getstate()[0])
            try:
                dec.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                where = offset - pending + exc.start
                bad = exc.object[exc.start:exc.start + 4].hex(" ")
                raise UndecodableError(path, f"undecodable bytes at byte offset {where} "
                                             f"(as {encoding}: {exc.reason}; bytes {bad})", offset=where) from None
            if not block:
                return
            offset += len(block)
            if on_bytes:
                on_bytes(len(block))


def open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    """A strict, universal-newline text stream over the file (call validate() first for offsets)."""
    raw = open(path, "rb", buffering=BLOCK_BYTES)
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline=None)


def iter_lines(path: Path, encoding: str, on_bytes=None, max_line: int = 1 << 20,
               block_chars: int = 1 << 20) -> Iterator[str]:
    """Lines without their newline; `on_bytes(n)` hears about consumed bytes after each block.

    Text is decoded in blocks and split in C, not read line by line (several
    times faster on short novel lines). A line longer than `max_line`
    characters comes in pieces, so a file without newlines is still read in
    bounded memory.
    """
    block_chars = max(1, min(block_chars, max_line // 2))
    room = max_line - block_chars  # an unfinished line kept between blocks is at most this long
    with open_text(path, encoding) as fh:
        raw = fh.buffer
        seen = 0
        start: list[str] = []  # the unfinished line, in pieces: no copying per block while it grows
        start_len = 0
        while block := fh.read(block_chars):
            if "\n" in block:
                lines = block.split("\n")
                if start:
                    lines[0] = "".join(start) + lines[0]  # at most room + block_chars = max_line
                tail = lines.pop()
                yield from lines
                start, start_len = [tail], len(tail)
            else:
                start.append(block)
                start_len += len(block)
            if start_len > room:
                line = "".join(start)
                cut = len(line) - len(line) % room
                yield from (line[i:i + room] for i in range(0, cut, room))
                start, start_len = [line[cut:]], len(line) - cut
            if on_bytes:
                pos = raw.tell()
                on_bytes(pos - seen)
                seen = pos
        if start_len:
            yield "".join(start)
        if on_bytes:
            on_bytes(max(Path(path).stat().st_size - seen, 0))
