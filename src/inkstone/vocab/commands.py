"""The `vocab` and `vocab-data` subcommands' flags, kept beside the feature they drive."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import InferenceConfig, VocabConfig
from ..config_flags import add_section_flags
from .wordlists import LANGS


def add_vocab_commands(sub) -> None:
    vo = sub.add_parser("vocab", help="a short story that uses a learner's words, checked by an analyser")
    vo.add_argument("--lang", choices=LANGS, required=True)
    vo.add_argument("--level", help="JLPT N5-N1 (ja) or HSK 1-9 (zh) to draw the words from")
    vo.add_argument("--words", type=int, help="how many words to draw (default: 20 from a level, all of a file)")
    vo.add_argument("--words-file", type=Path, help="your list: .txt or .csv, one word a line "
                    "(optionally with reading and meaning)")
    vo.add_argument("--pick", help="these words of the list (comma separated) instead of a random draw")
    vo.add_argument("--theme", default="", help="theme or genre of the story")
    vo.add_argument("--length", type=int, help="length asked for: characters (ja, zh) or words (en)")
    vo.add_argument("--rounds", dest="vocab.max_rounds", type=int, default=None, metavar="N",
                    help="rounds at most: a draft, then revisions for the missed words [vocab.max_rounds]")
    add_section_flags(vo, "vocab", VocabConfig, ["target_coverage", "max_tokens"])
    add_section_flags(vo, "inference", InferenceConfig, ["temperature"])
    vo.add_argument("--seed", type=int, default=0, help="draws the words and seeds the sampling")
    vo.add_argument("--adapter", type=Path, help="adapter folder to write with (default: the base model)")
    vo.add_argument("--remote", action="store_true",
                    help="write with the OpenAI-compatible server of [remote] in the config (a stronger model)")
    vo.add_argument("--story", help="story whose history keeps the rounds (default: 'default')")
    vo.add_argument("--stories", type=int, default=1, help="write this many stories (a batch, resumable)")
    vo.add_argument("--best-of", type=int, default=1, help="batch: write n candidates a story, keep the best")
    vo.add_argument("--output", type=Path, required=True,
                    help="story.json (one story) or stories.jsonl (--stories > 1; rerun to resume)")

    vd = sub.add_parser("vocab-data", help="accepted vocabulary stories -> training rows (prompt/completion)")
    vd.add_argument("--input", type=Path, action="append", required=True, help="story .json or stories .jsonl")
    vd.add_argument("--output", type=Path, required=True, help=".jsonl of training rows")
    vd.add_argument("--min-coverage", type=float, default=1.0, help="accept stories that use this share of words")
    vd.add_argument("--with-words", action=argparse.BooleanOptionalAction, default=False,
                    help="keep each story's word report in its row")
