"""Which target words a story uses, and how each was found.

A word is used when its lemma is among the story's lemmas (食べた counts for
食べる, "ran" for "run"). A word written in kana alone also counts when the
story writes it in kanji with the same reading (あいかわらず → 相変わらず).
A word the analyser cuts into several units is looked for by its surface in
the text, then as the same run of lemmas (勉強する in 勉強した); the report
says it was split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .analysers import Analyser, Token, to_katakana
from .wordlists import Word

_KANJI = re.compile(r"[\u3400-\u9fff]")


@dataclass
class WordResult:
    word: str
    used: bool
    match: Optional[str]  # lemma | reading | surface | None (missing)
    split: bool = False  # the analyser cuts the word into several units
    units: list[str] = field(default_factory=list)  # those units, when split
    spans: list[tuple[int, int]] = field(default_factory=list)  # where the story uses it

    @property
    def hits(self) -> int:
        return len(self.spans)

    def as_json(self) -> dict:
        out = {"word": self.word, "used": self.used, "match": self.match}
        if self.split:
            out["split"] = self.units
        return out


@dataclass
class Analysis:
    tokens: list[Token]  # those outside copies of the word list
    results: list[WordResult]
    echoes: list[tuple[int, int]] = field(default_factory=list)  # copies of the word list in the text

    @property
    def used(self) -> list[str]:
        return [r.word for r in self.results if r.used]

    @property
    def missing(self) -> list[str]:
        return [r.word for r in self.results if not r.used]

    @property
    def coverage(self) -> float:
        return len(self.used) / len(self.results) if self.results else 0.0

    def notes(self) -> list[str]:
        out = [f"the text copies the word list {len(self.echoes)} time(s); the words there do not count"] \
            if self.echoes else []
        return out + [f"{r.word}: the analyser splits it into {' | '.join(r.units)}, so it is matched by its "
                      "surface (or by those units' lemmas in a row)" for r in self.results if r.split]


Spans = list[tuple[int, int]]  # character offsets of each use in the text


def _single(form: str, unit: Token, tokens: Sequence[Token]) -> tuple[Optional[str], Spans]:
    spans = [(t.start, t.end) for t in tokens if unit.lemmas & t.lemmas]
    if spans:
        return "lemma", spans
    # A kana spelling may be written in kanji in the story; a kanji spelling names its own word.
    if unit.reading and not _KANJI.search(form):
        reading = to_katakana(form)
        spans = [(t.start, t.end) for t in tokens if t.content and t.reading == reading]
        if spans:
            return "reading", spans
    return None, []


def _split(form: str, units: Sequence[Token], text: str, tokens: Sequence[Token], lang: str) \
        -> tuple[Optional[str], Spans]:
    pattern = re.compile(r"\b" + r"\s+".join(map(re.escape, form.split())) + r"\b", re.I) if lang == "en" \
        else re.compile(re.escape(form))
    spans = [m.span() for m in pattern.finditer(text)]
    if spans:
        return "surface", spans
    n = len(units)
    spans = [(tokens[i].start, tokens[i + n - 1].end) for i in range(len(tokens) - n + 1)
             if all(units[j].lemmas & tokens[i + j].lemmas for j in range(n))]
    return ("lemma", spans) if spans else (None, [])


def analyse(text: str, words: Sequence[Word], analyser: Analyser) -> Analysis:
    """Each target word of `words`, used (and how) or missing, in `text`. Uses inside a copy of
    the word list (four or more target words in a row, separated only by list marks, as the
    prompt wrote them) do not count: a list is not a story."""
    echoes = list_echoes(text, [f for w in words for f in w.forms])
    tokens = [t for t in analyser.tokens(text) if not _inside(t.start, t.end, echoes)]
    results = []
    for word in words:
        best = WordResult(word.word, False, None)
        for form in word.forms:
            units = analyser.units(form)
            if not units:
                continue
            split = len(units) > 1
            match, spans = _split(form, units, text, tokens, analyser.lang) if split \
                else _single(form, units[0], tokens)
            if split and not best.used:
                best.split, best.units = True, [u.surface for u in units]
            spans = [sp for sp in spans if not _inside(*sp, echoes)]
            if match and spans:
                best = WordResult(word.word, True, match, split, [u.surface for u in units] if split else [], spans)
                break
        results.append(best)
    return Analysis(tokens, results, echoes)


# Marks that separate the words of a list: 、 , ， ・ / and spaces around them.
_LIST_SEPARATOR = r"\s*[、,，・/／;；]\s*"


def list_echoes(text: str, forms: Sequence[str]) -> Spans:
    """Where the text copies a run of four or more target words separated only by list marks
    (prose lists three things now and then; the prompt lists eight to twelve)."""
    forms = sorted({f for f in forms if f.strip()}, key=len, reverse=True)
    if len(forms) < 4:
        return []
    word = "(?:" + "|".join(map(re.escape, forms)) + ")"
    return [m.span() for m in re.finditer(f"{word}(?:{_LIST_SEPARATOR}{word}){{3,}}", text, re.I)]


def _inside(start: int, end: int, spans: Spans) -> bool:
    return any(a <= start and end <= b for a, b in spans)
