"""`start.py bench vocab`: coverage after one round vs after the loop, with the same seeds,
for Japanese (JLPT N5), Chinese (HSK 1) and English, on the offline model.

Each (language, seed) run draws its words with the seed and writes with it; its
first round is exactly what a one-round writer would have produced, so one run
gives both numbers. The runs go to the engine together and vLLM batches them.
"""
from __future__ import annotations

import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

from ..engine.contract import GenerationParams
from ..model_files import FALLBACK_DIRNAME, ensure_offline_gemma
from ..runtime import open_runtime
from ..vocab.loop import run_to_end, write_vocab_story
from ..vocab.wordlists import Word, WordList, choose_words, draw

# No built-in English levels: everyday words a beginner meets first.
ENGLISH_WORDS = ("morning", "breakfast", "train", "friend", "rain", "umbrella", "happy", "walk", "city", "coffee",
                 "book", "window", "quiet", "laugh", "bridge", "letter", "garden", "late", "cold", "answer")
LEVELS = {"ja": "N5", "zh": "1"}


def _words(lang: str, n: int, seed: int) -> WordList:
    if lang == "en":
        return draw(WordList([Word(w) for w in ENGLISH_WORDS], "everyday English", "en"), n, seed)
    return choose_words(lang, level=LEVELS[lang], n=n, seed=seed)


def run_vocab_bench(cfg, langs=("ja", "zh", "en"), seeds=(1, 2, 3), n_words: int = 12, rounds: int = 3,
                    max_tokens: int = 384) -> dict:
    model_dir = ensure_offline_gemma(cfg.model.models_dir)
    cfg = cfg.model_copy(deep=True)
    cfg.model.base, cfg.model.models_dir = FALLBACK_DIRNAME, model_dir.parent
    settings = cfg.vocab.model_copy(update={"max_rounds": rounds, "target_coverage": 1.0, "max_tokens": max_tokens})
    scratch = tempfile.TemporaryDirectory(prefix="inkstone-bench-vocab-")
    cfg.memory.studio_db = Path(scratch.name) / "studio.sqlite3"  # the bench's rounds stay out of the user's history
    rt = open_runtime(cfg, memory=False, memory_required=False)
    t0 = time.perf_counter()
    try:
        def one(lang: str, seed: int):
            params = GenerationParams.from_config(cfg.inference)
            params.seed = seed
            return lang, seed, run_to_end(write_vocab_story(rt.studio, _words(lang, n_words, seed), settings=settings,
                                                            params=params, story="bench-vocab"))

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(langs) * len(seeds)) as pool:
            done = list(pool.map(lambda a: one(*a), [(lang, seed) for lang in langs for seed in seeds]))
    finally:
        rt.stop()
        scratch.cleanup()
    per_lang: dict = {}
    for lang, seed, story in done:
        per_lang.setdefault(lang, []).append({
            "seed": seed, "words": [w.word for w in story.words.words],
            "one_round": round(story.rounds[0].coverage, 4), "loop": round(story.coverage, 4),
            "rounds": len(story.rounds), "stop_reason": story.stop_reason, "density": story.metrics["density"],
            "length": story.metrics["length"], "above_level": len(story.metrics.get("above_level", [])),
            "list_copies": len(story.analysis.echoes), "story": story.text[:300]})
    summary = {lang: {"one_round": round(statistics.mean(r["one_round"] for r in runs), 3),
                      "loop": round(statistics.mean(r["loop"] for r in runs), 3),
                      "mean_rounds": round(statistics.mean(r["rounds"] for r in runs), 2)}
               for lang, runs in per_lang.items()}
    return {"model": FALLBACK_DIRNAME, "seeds": list(seeds), "words_per_story": n_words, "max_rounds": rounds,
            "max_tokens_per_round": max_tokens, "temperature": cfg.inference.temperature,
            "elapsed_s": round(time.perf_counter() - t0, 1), "summary": summary, "runs": per_lang}
