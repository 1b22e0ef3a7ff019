"""Offline analysers that turn a text into tokens with their lemmas.

Japanese: Sudachi (sudachipy + sudachidict-core): each token's dictionary form
and normalised form, and the reading of its dictionary form. Chinese: jieba,
with every target word added to a private tokenizer's dictionary first, so a
target is cut out as one word. English: lemminflect's lemmas of each word.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

from .wordlists import LANGS


@dataclass(frozen=True)
class Token:
    surface: str
    start: int  # character offsets in the text
    end: int
    lemmas: frozenset[str]  # the forms it counts as (dictionary form, normalised form, the surface...)
    reading: str = ""  # katakana reading of the dictionary form (Japanese only)
    content: bool = True  # not punctuation, space, particle or auxiliary


def _is_punct_or_space(s: str) -> bool:
    return all(unicodedata.category(c)[0] in "PZSC" for c in s)


def to_katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text)


class Analyser:
    lang: str

    def tokens(self, text: str) -> list[Token]:
        raise NotImplementedError

    def units(self, form: str) -> list[Token]:
        """How the analyser cuts a target word on its own (one token: one unit)."""
        return self.tokens(form)


class JapaneseAnalyser(Analyser):
    lang = "ja"
    # Sudachi's first POS level for tokens that carry no content of their own.
    FUNCTION_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}

    def __init__(self):
        from sudachipy import SplitMode

        # Mode C: the longest units, so compounds such as 国際連合 stay whole.
        self._tokenizer = _sudachi_dictionary().tokenizer(mode=SplitMode.C)

    def tokens(self, text: str) -> list[Token]:
        out = []
        for m in self._tokenizer.tokenize(text):
            surface = m.surface()
            if not surface.strip():
                continue
            base = m.dictionary_form()
            reading = m.reading_form() if base == surface else m.dictionary_form_morpheme().reading_form()
            out.append(Token(surface, m.begin(), m.end(), frozenset({base, m.normalized_form()}),
                             to_katakana(reading), m.part_of_speech()[0] not in self.FUNCTION_POS))
        return out


@functools.lru_cache(maxsize=1)
def _sudachi_dictionary():
    from sudachipy import Dictionary

    return Dictionary(dict="core")  # the pinned sudachidict-core; never a download


class ChineseAnalyser(Analyser):
    lang = "zh"

    def __init__(self, targets: Iterable[str] = ()):
        import jieba

        jieba.setLogLevel(logging.WARNING)  # its "building prefix dict" notes on every start
        # A private tokenizer: the target words added here must not change how other lists are cut.
        self._tokenizer = jieba.Tokenizer()
        for word in targets:
            if word.strip() and not re.search(r"\s", word):
                self._tokenizer.add_word(word)

    def tokens(self, text: str) -> list[Token]:
        return [Token(w, a, b, frozenset({w}), content=not _is_punct_or_space(w))
                for w, a, b in self._tokenizer.tokenize(text) if w.strip()]


class EnglishAnalyser(Analyser):
    lang = "en"
    WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")

    def tokens(self, text: str) -> list[Token]:
        return [Token(m.group(), m.start(), m.end(), _english_lemmas(m.group().lower()))
                for m in self.WORD.finditer(text)]

    def units(self, form: str) -> list[Token]:
        # A listed word is its own lemma: "better" must not count as "good" does.
        return [dataclasses.replace(t, lemmas=frozenset({t.surface.lower()})) for t in self.tokens(form)]


@functools.lru_cache(maxsize=65536)
def _english_lemmas(word: str) -> frozenset[str]:
    from lemminflect import getAllLemmas

    return frozenset({word, *(lemma.lower() for lemmas in getAllLemmas(word).values() for lemma in lemmas)})


def analyser_for(lang: str, targets: Sequence[str] = ()) -> Analyser:
    """The analyser for `lang`; Chinese needs the target spellings up front (see ChineseAnalyser)."""
    if lang == "ja":
        return JapaneseAnalyser()
    if lang == "zh":
        return ChineseAnalyser(targets)
    if lang == "en":
        return EnglishAnalyser()
    raise ValueError(f"unknown language {lang!r}: use one of {', '.join(LANGS)}")
