"""Which language a caption is in, by the scripts of its letters.

Captions here are Chinese or English; a caption in another script (Japanese
kana, Korean, Cyrillic, Arabic...) is reported, not learned. Latin letters
count as English: telling English from French needs a language model, and a
few captions in another Latin-script language do little harm.
"""
from __future__ import annotations

import unicodedata

KNOWN = ("zh", "en")


def _script(ch: str) -> str:
    o = ord(ch)
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF:
        return "zh"
    if ch.isascii() or "LATIN" in unicodedata.name(ch, ""):
        return "en"
    return "other"


def caption_language(text: str) -> str:
    """zh, en or other: the script most of the caption's letters are written in ("" without letters)."""
    counts = {"zh": 0, "en": 0, "other": 0}
    for ch in text:
        if ch.isalpha():
            counts[_script(ch)] += 1
    if not any(counts.values()):
        return ""
    return max(counts, key=counts.get)
