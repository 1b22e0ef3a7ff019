"""Split a stream of lines into chapters on their headings.

Headings: 第X章/回/节/卷/集/部/篇/话 with Chinese or Arabic numerals, `Chapter N`,
序章/楔子/尾声/番外..., and numbered headings ("12. 标题", "十二、标题") when their
numbers run in sequence (so a numbered list inside the prose is not a heading);
each may follow Markdown's `#` marks.
A heading is a short line that does not end like a sentence. A book without
headings is one chapter; a chapter longer than `max_chars` is cut (on a line)
into sections that carry its title but do not repeat it in the text, so a
heading-less 500 MB file never has to sit in memory at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

CN_DIGITS = "零〇一二三四五六七八九壹贰叁肆伍陆柒捌玖两貳參陸"
CN_UNITS = "十百千万拾佰仟萬"
NUM = rf"(?:[\d０-９]+|[{CN_DIGITS}{CN_UNITS}]+)"
SEP = r"[\s:：、.．·—\-_|]*"
MAX_HEADING_CHARS = 50

_NUMBERED_CHAPTER = re.compile(rf"第\s*{NUM}\s*[章回节節卷集部篇话話幕](?!合)(?:{SEP}(?P<name>.*))?", re.IGNORECASE)
_ENGLISH = re.compile(r"(?:chapter|chap\.)\s*(?:\d+|[ivxlcdm]+|one|two|three|four|five|six|seven|eight|nine|ten"
                      r"|eleven|twelve|[a-z]+-?[a-z]*teen|[a-z]+ty(?:-[a-z]+)?)\b.*", re.IGNORECASE)
_SPECIAL = re.compile(r"(?:序章|序言|序幕|楔子|引子|引言|前言|尾声|尾聲|后记|後記|终章|終章|番外)"
                      r"(?:[\s:：、·—\-]+.*|[\d一二三四五六七八九十]*)|序")
_LIST = re.compile(rf"(?P<n>\d{{1,4}}|[{CN_DIGITS}{CN_UNITS}]{{1,6}})(?:[.．、]\s*(?P<name>\S.*)|\s*)", re.IGNORECASE)
_SENTENCE_END = tuple("。！？!?；;，,…~～")


@dataclass
class RawChapter:
    book: str
    title: str
    lines: list[str] = field(default_factory=list)
    section: int = 0  # > 0: a continuation of an over-long chapter (its title is not repeated)
    meta: dict = field(default_factory=dict)

    @property
    def chars(self) -> int:
        return sum(len(x) for x in self.lines)


def cn_to_int(s: str) -> Optional[int]:
    """'十二' -> 12, '一百零五' -> 105, '12' -> 12; None when it is not a number."""
    s = s.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    if s.isdigit():
        return int(s)
    digits = {c: i for i, c in enumerate("零一二三四五六七八九")}
    digits.update({"〇": 0, "两": 2, "壹": 1, "贰": 2, "貳": 2, "叁": 3, "參": 3, "肆": 4, "伍": 5, "陆": 6,
                   "陸": 6, "柒": 7, "捌": 8, "玖": 9})
    units = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000, "万": 10000, "萬": 10000}
    total, section, number = 0, 0, 0
    for c in s:
        if c in digits:
            number = digits[c]
        elif c in units:
            unit = units[c]
            if unit == 10000:
                total += (section + number) * unit
                section = 0
            else:
                section += (number or 1) * unit
            number = 0
        else:
            return None
    return total + section + number


class HeadingMatcher:
    """Decides, line by line, whether a stripped line is a chapter heading."""

    def __init__(self) -> None:
        self.last_list_number: Optional[int] = None

    def __call__(self, line: str) -> bool:
        if not line or len(line) > MAX_HEADING_CHARS or line.endswith(_SENTENCE_END):
            return False
        first = line[0]
        if first == "第":
            m = _NUMBERED_CHAPTER.match(line)
            return bool(m) and len(m.group("name") or "") <= 40
        if first in "Cc":
            return bool(_ENGLISH.fullmatch(line))
        if first in "序楔引前尾后後终終番":
            return bool(_SPECIAL.fullmatch(line))
        if first.isdigit() or first in CN_DIGITS or first in CN_UNITS:
            m = _LIST.fullmatch(line)
            if not m:
                return False
            n = cn_to_int(m.group("n"))
            expected = 1 if self.last_list_number is None else self.last_list_number + 1
            if n is None or n != expected:
                return False
            self.last_list_number = n
            return True
        return False


def split_chapters(lines: Iterable[str], book: str, *, first_title: Optional[str] = None,
                   max_chars: int = 1_000_000, meta: Optional[dict] = None) -> Iterator[RawChapter]:
    """Yield the chapters of one book from its lines (raw, unstripped).

    Lines before the first heading form a chapter titled `first_title` (or the
    book's name); a heading with no text before the next heading (a volume
    heading, say) is merged into the next chapter's title.
    """
    meta = meta or {}
    is_heading = HeadingMatcher()
    current = RawChapter(book, first_title or book, meta=meta)
    pending_title = False  # current's title came from a heading and no text followed yet
    size = 0
    for line in lines:
        stripped = line.strip(" \t\u3000\xa0\ufeff\u200b")
        if stripped.startswith("#"):  # a Markdown heading ("## 第一章 ..."), as in .md files
            stripped = stripped.lstrip("#").strip() or stripped
        if stripped and len(stripped) <= MAX_HEADING_CHARS and is_heading(stripped):
            title = " ".join(stripped.split())
            if pending_title:
                current.title = f"{current.title} {title}"
                continue
            if any(x.strip() for x in current.lines):
                yield current
            current, size, pending_title = RawChapter(book, title, meta=meta), 0, True
            continue
        if stripped:
            pending_title = False
        current.lines.append(line)
        size += len(line)
        if size >= max_chars:
            yield current
            current = RawChapter(book, current.title, section=current.section + 1, meta=meta)
            size = 0
    if any(x.strip() for x in current.lines):
        yield current
