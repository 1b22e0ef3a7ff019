"""Many vocabulary stories from one word list: resumable, best of n by coverage.

Story i draws its words with seed + i; its n candidates are written at once
(the engine batches them) with their own sampling seeds, and the one with the
highest coverage is kept. Each finished story is appended to the output JSONL
as it finishes, keyed by its index and a hash of what made it, so a rerun
writes only the stories still missing; a changed setting redoes a story.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..engine.contract import GenerationParams
from ..config import VocabConfig
from .loop import StudioLike, run_to_end, write_vocab_story
from .wordlists import VocabError, WordList, draw


@dataclass
class VocabBatchReport:
    output: Path
    total: int
    written: int = 0
    skipped: int = 0  # done by an earlier run
    coverages: list[float] = field(default_factory=list)  # of the kept stories, this run

    def summary(self) -> str:
        mean = sum(self.coverages) / len(self.coverages) if self.coverages else 0.0
        return (f"{self.output}: {self.written} stories written, {self.skipped} already done "
                f"(mean coverage this run {mean:.2f})")


def _key(words: WordList, theme: str, length: Optional[int], seed: int, best_of: int, settings: VocabConfig) -> str:
    parts = [words.lang, [w.word for w in words.words], theme, length, seed, best_of, settings.model_dump()]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _done(path: Path) -> dict[int, str]:
    """index → key of the stories already written. A last line cut short by a crash is dropped."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    out = {}
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        try:
            rec = json.loads(line)
            out[int(rec["index"])] = str(rec["key"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VocabError(f"{path}, line {n}: not a vocabulary story record ({exc}); "
                             "move the file away to start over") from exc
    return out


def run_vocab_batch(studio: StudioLike, words: WordList, output: Path, *, stories: int, n_words: Optional[int],
                    seed: int = 0, best_of: int = 1, theme: str = "", length: Optional[int] = None,
                    settings: Optional[VocabConfig] = None, params: Optional[GenerationParams] = None,
                    adapter: Optional[str] = None, story: Optional[str] = None, progress=None) -> VocabBatchReport:
    if stories < 1 or best_of < 1:
        raise VocabError("stories and best of must be at least 1")
    settings = settings or VocabConfig()
    params = params or GenerationParams()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = _done(output)
    report = VocabBatchReport(output, stories)
    with open(output, "a", encoding="utf-8") as out, \
            concurrent.futures.ThreadPoolExecutor(max_workers=best_of, thread_name_prefix="vocab") as pool:
        for i in range(stories):
            chosen = draw(words, n_words, seed + i)
            key = _key(chosen, theme, length, seed + i, best_of, settings)
            if done.get(i) == key:
                report.skipped += 1
                continue
            runs = [pool.submit(run_to_end, write_vocab_story(
                studio, chosen, theme=theme, length=length, settings=settings, adapter=adapter, story=story,
                params=dataclasses.replace(params, seed=(seed + i) * best_of * 100 + j * 100)))
                for j in range(best_of)]
            candidates = [r.result() for r in runs]
            best = max(candidates, key=lambda c: c.coverage)  # the first of equals: the lowest seed
            rec = {"index": i, "key": key, **best.as_json(), "candidates": [round(c.coverage, 4) for c in candidates]}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            out.flush()  # a finished story survives a crash of the rest
            report.written += 1
            report.coverages.append(best.coverage)
            if progress is not None:
                progress(i, best)
    return report
