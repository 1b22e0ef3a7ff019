"""Training rows for the recut mode: for each aligned pair, the exact prompt the
prompt service builds for its episode, and the clip answer as the completion, in
the {"prompt", "completion"} rows the trainer reads. One folder per language
(`OUT/zh/train.jsonl`, `OUT/en/train.jsonl`): one adapter per language."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..prompting.modes.recut import answer
from .align import LOW_CONFIDENCE, Pair, align, read_pairs
from .repair import episode_duration, span
from .select import recut_request
from .subtitles import detect_language
from .timeline import write_atomic


@dataclass
class DataReport:
    rows: dict = field(default_factory=dict)  # language -> rows written
    pairs: list = field(default_factory=list)  # per pair: name, language, method, confidence, clips
    low_confidence: list = field(default_factory=list)

    def summary(self) -> str:
        made = ", ".join(f"{n} {lang}" for lang, n in sorted(self.rows.items())) or "none"
        low = "; ".join(f"{p['name']} ({p['confidence']:.2f})" for p in self.low_confidence)
        return f"{len(self.pairs)} pairs aligned; rows: {made}" + (f"; low confidence: {low}" if low else "")


def target_of(pair: Pair, clips) -> float:
    """The share of the episode a reference cut keeps, in steps of 5% (as a user would ask)."""
    by_id = {c.id: c for c in pair.original}
    kept = sum(span(by_id, c.first_id, c.last_id).duration for c in clips)
    return min(1.0, max(0.05, round(kept / episode_duration(pair.original) * 20) / 20))


def build_recut_data(pairs_dir: Path, out_dir: Path, prompts) -> DataReport:
    """`prompts` is a PromptService (no memory needed): it renders each row's prompt."""
    report = DataReport()
    rows = defaultdict(list)
    for pair in read_pairs(pairs_dir):
        al = align(pair)
        lang = detect_language(pair.original)
        info = {"name": pair.name, "source": pair.source, "language": lang, "method": al.method,
                "confidence": round(al.confidence, 3), "clips": [[c.first_id, c.last_id] for c in al.clips]}
        report.pairs.append(info)
        if al.confidence < LOW_CONFIDENCE:
            report.low_confidence.append(info)
            continue  # a doubtful alignment would teach the wrong cut
        if not al.clips:
            continue
        req = recut_request(pair.original, lang, target_of(pair, al.clips))
        rows[lang].append({"prompt": prompts.prepare(req).text, "completion": answer(al.clips),
                           "pair": pair.name, "confidence": info["confidence"]})
    out_dir = Path(out_dir)
    for lang, items in rows.items():
        write_atomic(out_dir / lang / "train.jsonl",
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
        report.rows[lang] = len(items)
    write_atomic(out_dir / "report.json", json.dumps(
        {"rows": report.rows, "pairs": report.pairs, "low_confidence": [p["name"] for p in report.low_confidence]},
        ensure_ascii=False, indent=1))
    return report
