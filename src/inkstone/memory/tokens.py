"""Words for the lexical (BM25) side of memory search, in Chinese, Japanese and English.

Chinese and Japanese are written without spaces, so a run of Han, kana or
Hangul characters becomes its overlapping character bigrams (the scheme of
Lucene's CJK analyzer): a name such as 贾雨村 yields 贾雨 and 雨村, which match
it however a dictionary would cut the sentence, and a rare name or place is
matched by its own rare bigrams. Each Han character is kept as a unigram too:
a paraphrase often keeps a word's key character but not the word (竹子 and
翠竹, 跳井 and 投井), and Chinese retrieval studies find unigrams plus bigrams
the most robust choice without a dictionary. Chinese stop words (bm25s's
list) are dropped, so question words (谁, 什么, 为什么) match nothing.
Latin words are lower-cased, English stop words dropped and the rest stemmed
(Snowball), so "visits" finds "visited".

A dictionary segmenter (jieba) was measured as well: it added no recall over
unigrams and bigrams and made indexing about twenty times slower.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Bump when the tokens change: stored indexes of an older version are rebuilt on open.
VERSION = "cjk-uni-bigram+snowball-1"

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA_HANGUL = "\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af"
_RUNS = re.compile(rf"[{_HAN}{_KANA_HANGUL}]+|[^\W_{_HAN}{_KANA_HANGUL}]+", re.UNICODE)
_CJK = re.compile(rf"[{_HAN}{_KANA_HANGUL}]")
_HAN_CHAR = re.compile(rf"[{_HAN}]")


@lru_cache(maxsize=1)
def _stop_words() -> tuple[frozenset, frozenset]:
    from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

    return frozenset(STOPWORDS_CHINESE), frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """The BM25 tokens of one text (repeats kept: they are term frequencies)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    cjk_stop, en_stop = _stop_words()
    out: list[str] = []
    latin: list[str] = []
    for run in _RUNS.findall(text):
        if _CJK.match(run):
            grams = _bigrams(run) + ([c for c in run if _HAN_CHAR.match(c)] if len(run) > 1 else [])
            out += [g for g in grams if g not in cjk_stop]
        elif run not in en_stop:
            latin.append(run)
    if latin:
        out += _stemmer().stemWords(latin)
    return out


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]
