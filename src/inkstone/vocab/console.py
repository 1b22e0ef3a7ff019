"""The vocabulary loop on a terminal: the text as it streams, each round's coverage, the JSON file."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator, TextIO

from ..engine.contract import Text
from .loop import Round, RoundStarted, VocabStory


def print_events(events: Iterator, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> VocabStory:
    """Stream the story to `out` and the rounds' progress to `err`; return the VocabStory."""
    result = None
    for ev in events:
        if isinstance(ev, RoundStarted):
            print(f"[round {ev.number}: {ev.mode}]", file=err)
        elif isinstance(ev, Text):
            out.write(ev.text)
            out.flush()
        elif isinstance(ev, Round):
            out.write("\n")
            print(f"[round {ev.number}: coverage {ev.coverage:.2f}; missing: {', '.join(ev.missing) or '-'}]",
                  file=err)
        elif isinstance(ev, VocabStory):
            result = ev
    if result is None:
        raise RuntimeError("the vocabulary loop ended without a story")
    m = result.metrics
    print(f"[kept: coverage {m['coverage']:.2f} ({m['used']}/{m['targets']}), density {m['density']}, "
          f"length {m['length']} {m['length_unit']}; stopped: {result.stop_reason}]", file=err)
    for note in result.analysis.notes():
        print(f"note: {note}", file=err)
    return result


def write_story_json(story: VocabStory, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(story.as_json(), ensure_ascii=False, indent=1), encoding="utf-8")
