"""What a vocabulary story is measured by: coverage, density, words above the level, length."""
from __future__ import annotations

from typing import Optional

from .matching import Analysis
from .wordlists import level_of_words, level_rank


def story_metrics(text: str, analysis: Analysis, lang: str, level: Optional[str] = None) -> dict:
    """coverage: used / targets. density: target hits per 100 content tokens (words without
    punctuation; in Japanese also without particles and auxiliaries). above_level: words of the
    story that the level lists place above the chosen level (JLPT, HSK only). length: characters
    (ja, zh) or words (en), and content tokens."""
    content = [t for t in analysis.tokens if t.content]
    hits = sum(r.hits for r in analysis.results)
    out = {
        "coverage": round(analysis.coverage, 4),
        "used": len(analysis.used),
        "targets": len(analysis.results),
        "density": round(100.0 * hits / len(content), 2) if content else 0.0,
        "length": len(content) if lang == "en" else sum(1 for c in text if not c.isspace()),
        "length_unit": "words" if lang == "en" else "characters",
        "content_tokens": len(content),
    }
    if level is not None and lang in ("ja", "zh"):
        out["above_level"] = words_above_level(analysis, lang, level)
    return out


def words_above_level(analysis: Analysis, lang: str, level: str) -> list[str]:
    """Distinct words of the story whose easiest listed level is harder than `level`."""
    ranks, limit = level_of_words(lang), level_rank(lang, level)
    targets = {r.word for r in analysis.results}
    found: dict[str, None] = {}
    for t in analysis.tokens:
        if not t.content:
            continue
        rank = min((ranks[lemma] for lemma in t.lemmas if lemma in ranks), default=None)
        if rank is not None and rank > limit:
            found.setdefault(min(lemma for lemma in t.lemmas if lemma in ranks))
    return [w for w in found if w not in targets]
