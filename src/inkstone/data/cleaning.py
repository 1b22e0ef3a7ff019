"""Turn a chapter's raw lines into clean paragraphs.

Whitespace is normalised the same way for every source: zero-width characters
go, full-width and ASCII indents go, paragraphs glued onto one line by runs of
indent spaces are split apart, runs of inner spaces become one space.
Site boilerplate (URLs, "本章完", "求月票", reading-site ads...) is cut by
regular expressions; the user adds their own with `extra_patterns`. Each
pattern's matches are cut out of a line; a line that loses more letters and
ideographs than it keeps is dropped whole (an ad line's remnant such as
"请大家收藏：" goes with it), so a pattern can target a phrase or a line.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

# Each rule: (expression whose matches are cut, a cheap test that must pass on the
# chapter, and then on a line, before the expression is searched there). Kept as
# separate expressions: one alternation of them all defeats the regex engine's
# literal-prefix scan and runs ~20x slower on Chinese text. The tests matter most
# for expressions that start with an optional part (no literal prefix to scan for).
_ENDINGS = "本章完|本章结束|本章結束|全文完|未完待续|未完待續"
_ENDING_STEMS = ("本章", "全文完", "未完待")  # every ending starts with one: three scans, not six
_ASKED_FOR = "(?:月票|推荐票|推薦票|收藏|订阅|訂閱|打赏|打賞|票票|评论|评价)"
BOILERPLATE_RULES: list[tuple[str, object]] = [
    (r"(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.)[A-Za-z0-9_./?=&%#:~+-]+",
     lambda t: "://" in t or "www." in t or "WWW." in t),
    (r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|cc|cn|me|la|info|tw|xyz|io|vip|top|co|COM|NET|CC)\b"
     r"(?:/[A-Za-z0-9_./?=&%#-]*)?", re.compile(r"\.[A-Za-z]").search),
    (rf"[(（\[【]?\s*(?:{_ENDINGS})\s*[)）\]】]?", lambda t: any(w in t for w in _ENDING_STEMS)),
    # "求" alone is common in prose; the test, with its literal prefix, is scanned for fast.
    (rf"(?:求|跪求|拜求){_ASKED_FOR}[！!~～。，,、\s]*", re.compile(f"求{_ASKED_FOR}").search),
    (r"(?:天才一秒记住|一秒记住|请记住本书首发|本书首发|首发域名|最新章节|最快更新|更新最快|无弹窗|無彈窗|手机阅读|"
     r"手机用户请|笔趣阁|筆趣閣|顶点小说|頂點小說|txt下载|TXT下载|全文阅读|免费阅读|百度搜索|章节错误|点此举报|"
     r"加入书签|投推荐票|请收藏本站|本站地址|小说网|小說網)[^\n。！？!?]{0,40}[。！？!?]*", None),
    (r"(?:上一章|下一章|返回目录|目录|加入书架)(?:\s*[|｜/]\s*(?:上一章|下一章|返回目录|目录|加入书架))+",
     lambda t: "|" in t or "｜" in t or "/" in t),
]
BOILERPLATE_PATTERNS: list[str] = [p for p, _ in BOILERPLATE_RULES]
_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_ZERO_WIDTH = re.compile(f"[{_ZERO_WIDTH_CHARS}]")
_STRIP = " \t\xa0\u3000\u2002\u2003\u2009\u202f\u205f"
# Runs of indent-like spaces inside a line mark glued paragraphs: two full-width or four ASCII.
_GLUED = re.compile(r"\u3000[\u3000 \t\xa0]*\u3000|[ \t\xa0]{4,}")
# Spaces that the per-line pass must look at (a double ASCII space counts too).
_ODD_SPACE_CHARS = "\u3000\t\xa0" + "".join(map(chr, range(0x2002, 0x200B))) + "\u202f\u205f"
_SPACES = re.compile(r"[ \t\xa0\u3000\u2002-\u200a\u202f\u205f]+")
_WORD = re.compile(r"[^\W_]")


@dataclass
class CleanStats:
    boilerplate_lines: int = 0  # lines dropped whole
    boilerplate_cuts: int = 0  # matches cut out of lines that kept some text


def _has_odd_space(text: str) -> bool:
    # One substring scan per character: several times faster than a character-class search.
    return "  " in text or any(c in text for c in _ODD_SPACE_CHARS)


class Cleaner:
    def __init__(self, extra_patterns: Sequence[str] = ()):
        self.rules: list[tuple[re.Pattern, object]] = [(re.compile(p), t) for p, t in BOILERPLATE_RULES]
        for p in extra_patterns:
            try:
                self.rules.append((re.compile(p), None))
            except re.error as exc:
                raise ValueError(f"boilerplate pattern {p!r} is not a valid regular expression: {exc}") from None
        self.stats = CleanStats()

    def line(self, text: str) -> str:
        """Clean one short line (a title): same rules, no paragraph splitting."""
        return " ".join(self.paragraphs([text]))

    def paragraphs(self, lines: Iterable[str]) -> list[str]:
        # Whole-chapter scans run in C; the per-line loop only does cheap checks.
        text = "\n".join(lines)
        if any(c in text for c in _ZERO_WIDTH_CHARS):  # six substring scans beat one class search
            text = _ZERO_WIDTH.sub("", text)
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        hits = [(rx, test) for rx, test in self.rules if (test is None or test(text)) and rx.search(text)]
        if hits:
            text = self._cut_boilerplate(text, hits)
        lines = [ln for ln in (x.strip(_STRIP) for x in text.split("\n")) if ln]
        if not _has_odd_space("\n".join(lines)):
            return lines
        out = []
        for ln in lines:
            if _has_odd_space(ln):
                for piece in _GLUED.split(ln):
                    piece = _SPACES.sub(" ", piece).strip()
                    if piece:
                        out.append(piece)
            else:
                out.append(ln)
        return out

    def _cut_boilerplate(self, text: str, rules: list[tuple[re.Pattern, object]]) -> str:
        out = []
        for ln in text.split("\n"):
            cut, n = ln, 0
            for p, test in rules:
                if test is None or test(cut):
                    cut, k = p.subn("", cut)
                    n += k
            if n:
                # An ad line leaves a remnant ("请大家收藏："); prose with an inline URL keeps most of itself.
                kept = len(_WORD.findall(cut))
                if kept and kept >= len(_WORD.findall(ln)) - kept:
                    self.stats.boilerplate_cuts += n
                else:
                    self.stats.boilerplate_lines += 1
                    cut = ""
            out.append(cut)
        return "\n".join(out)
