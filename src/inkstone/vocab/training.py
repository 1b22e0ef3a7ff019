"""Accepted vocabulary stories → training rows for the existing trainer.

A row is {"prompt", "completion"}: the prompt is the exact first-round prompt
the prompt service builds for the story's words, theme and length (the
`vocab_story` mode), the completion the accepted story. Trained on these, a
small writer learns to use the words in one round. Input: story .json files
written by `start.py vocab`, or the .jsonl a batch of them writes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..prompting import PromptRequest
from ..prompting.modes import vocab_story
from .loop import DEFAULT_LENGTH, plan
from .wordlists import VocabError


@dataclass
class SftReport:
    rows: int = 0
    rejected: list[str] = field(default_factory=list)  # "file, line: why"


def read_stories(paths: Iterable[Path]) -> list[tuple[str, dict]]:
    """(where, story record) from .json (one story) and .jsonl (one a line) files."""
    out = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise VocabError(f"{path}: cannot read ({exc})") from exc
        lines = [(f"{path}, line {n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()] \
            if path.suffix.lower() == ".jsonl" else [(str(path), text)]
        for where, raw in lines:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise VocabError(f"{where}: not JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("story"), str) or not rec.get("words"):
                raise VocabError(f"{where}: not a vocabulary story (needs \"story\" and \"words\")")
            out.append((where, rec))
    return out


def sft_rows(stories: Sequence[tuple[str, dict]], prompts, *, min_coverage: float = 1.0,
             with_words: bool = False, words_per_paragraph: int = 10) -> tuple[list[dict], SftReport]:
    """Rows for the stories whose coverage reaches `min_coverage`. `prompts`: the PromptService
    of the model to be trained (its tokenizer and prompt format)."""
    report, rows = SftReport(), []
    for where, rec in stories:
        coverage = float(rec.get("coverage") or 0.0)
        if coverage < min_coverage:
            report.rejected.append(f"{where}: coverage {coverage:.2f} below {min_coverage:.2f}")
            continue
        lang = rec.get("lang") or "zh"
        words = [w["word"] for w in rec["words"]]
        brief = rec.get("brief") or vocab_story.brief(lang, plan(words, words_per_paragraph), rec.get("theme") or "",
                                                      int(rec.get("length") or DEFAULT_LENGTH[lang]))
        prepared = prompts.prepare(PromptRequest(mode="vocab_story", instruction=brief, use_memory=False))
        row = {"prompt": prepared.text, "completion": rec["story"].strip(), "source": "vocab", "lang": lang,
               "coverage": coverage}
        if with_words:
            row["words"] = rec["words"]
        rows.append(row)
    report.rows = len(rows)
    return rows, report


def write_rows(rows: Sequence[dict], output: Path) -> None:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(output)
