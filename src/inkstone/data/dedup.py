"""Drop repeated paragraphs and chapters across the whole corpus.

Folders of web novels hold the same book twice (two encodings, two sites) and
sites inject the same lines everywhere. Paragraphs are compared on a key with
whitespace and punctuation removed and letters lower-cased, so copies that
differ only there count as near-duplicates. A chapter is dropped when its text
was seen before exactly, or when at least `near_threshold` of its paragraph
text (by characters) was already seen. Short paragraphs ("“是。”") repeat
legitimately and are never dropped on their own. Memory: one 64-bit hash per
distinct paragraph of `min_chars` or more (~60 bytes each in a Python set).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Optional

import numpy as np

# Left out of the comparison keys: whitespace (but not the newline that separates
# paragraphs) and punctuation, ASCII and CJK. Inclusive code point ranges.
NOISE_RANGES = ((0x09, 0x09), (0x20, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA0, 0xA0), (0xB7, 0xB7),
                (0x2010, 0x2027), (0x3000, 0x303F), (0xFF00, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40),
                (0xFF5B, 0xFF65))
_DROP = 0xFFFFFFFF  # marks a noise character in the key table


@cache
def _key_table() -> np.ndarray:
    """Code point -> its key code point (lower-cased) or _DROP. Lower-casing covers the
    Basic Multilingual Plane (where nearly all cased letters are); built once per process."""
    table = np.arange(0x110000, dtype=np.uint32)
    # All of the BMP lower-cased in one call. Only U+0130 (İ) lowers to two characters:
    # it is kept as it is, so the result stays one code point per code point.
    bmp = table[:0x10000].tobytes().decode("utf-32-le", "surrogatepass").replace("\u0130", "\0").lower()
    table[:0x10000] = np.frombuffer(bmp.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    table[0x130] = 0x130
    for first, last in NOISE_RANGES:
        table[first:last + 1] = _DROP
    return table


def paragraph_keys(text: str) -> list[str]:
    """The comparison key of each newline-separated paragraph of `text`.

    One table lookup per character in numpy: the same work as a regex substitution
    plus str.lower(), about four times faster on Chinese prose, where punctuation
    every few characters makes a substitution build tens of thousands of pieces.
    """
    # surrogatepass: a JSON record may hold a lone surrogate (\ud800); it is kept as it is.
    codes = _key_table()[np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)]
    return codes[codes != _DROP].tobytes().decode("utf-32-le", "surrogatepass").split("\n")


@dataclass
class DedupStats:
    paragraphs: int = 0  # paragraphs dropped as exact or near duplicates
    paragraph_chars: int = 0
    chapters_exact: int = 0  # chapters whose text was seen before, character for character
    chapters_near: int = 0  # chapters mostly made of paragraphs seen before (or equal but for spacing/punctuation)


class Deduper:
    def __init__(self, min_chars: int = 20, near_threshold: float = 0.8, min_chapter_chars: int = 200):
        self.min_chars, self.near_threshold, self.min_chapter_chars = min_chars, near_threshold, min_chapter_chars
        self.seen_paragraphs: set[int] = set()
        self.seen_chapters: set[int] = set()
        self.seen_chapter_keys: set[int] = set()
        self.stats = DedupStats()

    def filter(self, paragraphs: list[str]) -> Optional[list[str]]:
        """The chapter's paragraphs minus repeated ones, or None when the whole chapter repeats."""
        text = "\n".join(paragraphs)
        raw_hash = hash(text)
        if raw_hash in self.seen_chapters:
            self.stats.chapters_exact += 1
            return None
        keys = paragraph_keys(text)
        chapter_key = hash("\n".join(keys))
        if chapter_key in self.seen_chapter_keys:
            self.stats.chapters_near += 1
            return None
        self.seen_chapters.add(raw_hash)
        self.seen_chapter_keys.add(chapter_key)

        seen = self.seen_paragraphs
        hashes = [hash(k) if len(k) >= self.min_chars else None for k in keys]
        total = sum(len(k) for k, h in zip(keys, hashes) if h is not None)
        repeated = sum(len(k) for k, h in zip(keys, hashes) if h is not None and h in seen)
        if total >= self.min_chapter_chars and repeated >= self.near_threshold * total:
            self.stats.chapters_near += 1
            seen.update(h for h in hashes if h is not None)
            return None
        kept = []
        for para, h in zip(paragraphs, hashes):
            if h is not None:
                if h in seen:
                    self.stats.paragraphs += 1
                    self.stats.paragraph_chars += len(para)
                    continue
                seen.add(h)
            kept.append(para)
        return kept
