"""Pack a chapter's paragraphs into chunks of at most `chunk_size` tokens.

Chunks are cut on paragraph boundaries and overlap by up to `overlap` tokens of
whole paragraphs, so a reader of one chunk has the end of the previous one.
The chapter title heads the first chunk together with at least its first
paragraph: a title is never separated from its text. A paragraph too long for
any chunk is first cut into sentences, and a sentence too long into token
windows. Counting is done once per paragraph; a chunk's size is the sum of its
paragraphs plus one newline each (BPE rarely merges across a newline).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .tokens import TokenCounter

_SENTENCE = re.compile(r"[^。！？!?…\n]*(?:[。！？!?…]+[”’」』\"')）]*|$)")


@dataclass(frozen=True)
class Span:
    start: int  # first paragraph (the overlap with the previous chunk begins here)
    new: int  # first paragraph not in the previous chunk
    end: int  # one past the last paragraph


def paragraph_limit(chunk_size: int, head: int) -> int:
    """The largest paragraph that still fits beside the title line (`head` tokens), but never
    below half a chunk: a huge title may push its first chunk over, it is never cut off."""
    return max(chunk_size - head, chunk_size // 2, 1)


def split_long(paragraphs: list[str], counts: list[int], limit: int, counter: TokenCounter) -> tuple[list[str], list[int], int]:
    """Replace paragraphs over `limit` tokens by sentence groups (or token windows) under it."""
    if all(c <= limit for c in counts):
        return paragraphs, counts, 0
    out_p, out_c, n_split = [], [], 0
    for para, n in zip(paragraphs, counts):
        if n <= limit:
            out_p.append(para)
            out_c.append(n)
            continue
        n_split += 1
        sentences = [s for s in _SENTENCE.findall(para) if s]
        pieces, piece_counts = [], []
        for s, k in zip(sentences, counter.count_here(sentences)):
            if k <= limit:
                pieces.append(s)
                piece_counts.append(k)
            else:
                windows = counter.cut(s, limit)
                pieces += windows
                piece_counts += counter.count_here(windows)
        # Greedy regrouping of the sentences (joined without a separator: they were one paragraph).
        group, size = "", 0
        for s, k in zip(pieces, piece_counts):
            if group and size + k > limit:
                out_p.append(group)
                out_c.append(size)
                group, size = "", 0
            group += s
            size += k
        if group:
            out_p.append(group)
            out_c.append(size)
    return out_p, out_c, n_split


def pack(counts: list[int], chunk_size: int, overlap: int, newline: int, head: int = 0) -> list[Span]:
    """Paragraph spans of each chunk. `head` is the title's tokens (plus its newline) in the first chunk."""
    spans: list[Span] = []
    n = len(counts)
    start = new = j = 0
    size = head
    while j < n:
        add = counts[j] + (newline if j > start or head else 0)
        if size + add <= chunk_size or j == new:  # a chunk always takes at least one new paragraph
            size += add
            j += 1
            continue
        spans.append(Span(start, new, j))
        # Overlap: trailing whole paragraphs of this chunk, leaving room for the next paragraph.
        k, osize = j, 0
        while k - 1 > start:
            extra = counts[k - 1] + newline
            if osize + extra > overlap or osize + extra + counts[j] + newline > chunk_size:
                break
            osize += extra
            k -= 1
        start, new, head = k, j, 0
        size = osize - newline if osize else 0
    if j > new or not spans and n:
        spans.append(Span(start, new, n))
    return spans


def span_tokens(span: Span, counts: list[int], newline: int, head: int = 0) -> int:
    body = counts[span.start:span.end]
    return head + sum(body) + newline * max(len(body) - 1, 0)
