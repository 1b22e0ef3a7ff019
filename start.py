#!/usr/bin/env python3
"""Inkstone's command line: prepare | train | train-vision | webui | inference | batch | compare | export | doctor | bench | migrate-memory
| recut | recut-data | vocab | vocab-data.

Builds the Config once from defaults, config file, environment and flags, then
calls one stage. Heavy modules (vLLM, torch, Gradio) are imported only inside
the chosen branch, so `doctor` and `--help` stay fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inkstone.config import DataConfig, InferenceConfig, ModelConfig, TrainConfig, WebUIConfig, build_config
from inkstone.config_flags import add_section_flags, config_overrides
from inkstone.offline import apply_offline_defaults

# Never reach for a model hub at run time unless the user explicitly allows it.
apply_offline_defaults()

# The sampling settings that inference and batch take as flags; the others come from the config.
SAMPLING_FLAGS = ["max_tokens", "temperature", "seed"]


def writing_modes() -> list[str]:
    from inkstone.prompting import list_modes

    return [m.name for m in list_modes(for_writers=True)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="start.py", description="Inkstone: write long fiction with your own model")
    p.add_argument("--config", type=Path, help="TOML config file (default: inkstone.toml if present)")
    add_section_flags(p, "model", ModelConfig, ["base"])
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prepare", help="novel files -> training chunks")
    pr.add_argument("--input", type=Path, action="append", help="file or folder (default: data/raw)")
    pr.add_argument("--sample", action="store_true", help="use the bundled sample (红楼梦 chapters 1-5)")
    add_section_flags(pr, "data", DataConfig)

    tr = sub.add_parser("train", help="QLoRA fine-tuning (runs in this process; the UI starts it as a child)")
    tr.add_argument("--data", type=Path, help="train .jsonl file or folder (default: data/train)")
    tr.add_argument("--val-data", type=Path,
                    help="validation .jsonl (default: data/val if present and --data is left out)")
    tr.add_argument("--run-name")
    tr.add_argument("--resume", nargs="?", const="latest", help="'latest' or a checkpoint folder")
    add_section_flags(tr, "train", TrainConfig)
    add_section_flags(tr, "model", ModelConfig, ["load_in_4bit"])

    tv = sub.add_parser("train-vision", help="teach the writer to see: image-caption pairs -> a LLaVA model folder")
    tv.add_argument("--data", type=Path, required=True, help="images/ + captions.json, or a dataset saved with save_to_disk")
    tv.add_argument("--tower", type=Path, help="local CLIP or SigLIP folder (stage 1)")
    tv.add_argument("--from-model", type=Path, help="stage 2: the model folder of a stage-1 run (<run>/model)")
    tv.add_argument("--stage", type=int, choices=[1, 2], default=1,
                    help="1: projector only; 2: LoRA on the language model too (merged at the end)")
    tv.add_argument("--unfreeze-tower", action="store_true", help="stage 2: train the vision tower too")
    tv.add_argument("--epochs", type=float, default=3.0)
    tv.add_argument("--lr", type=float, default=1e-3)
    tv.add_argument("--batch-size", type=int, default=8)
    tv.add_argument("--save-steps", type=int, default=50, help="steps between checkpoints and evaluations")
    tv.add_argument("--max-steps", type=int, default=-1, help="> 0 overrides --epochs")
    tv.add_argument("--lora-r", type=int, default=16)
    tv.add_argument("--languages", default="zh,en", help="caption languages to keep (by script: zh, en)")
    tv.add_argument("--run-name")
    tv.add_argument("--resume", nargs="?", const="latest", help="'latest' or a checkpoint folder")
    add_section_flags(tv, "model", ModelConfig, ["base"])  # the language model stage 1 starts from

    wu = sub.add_parser("webui", help="serve the studio in the browser")
    add_section_flags(wu, "webui", WebUIConfig, ["lora", "host", "port", "share"])

    inf = sub.add_parser("inference", help="generate from the terminal (prompt argument or stdin)")
    inf.add_argument("prompt", nargs="?", help="instruction; read from stdin when left out")
    inf.add_argument("--story-text", type=Path, help="file with the story so far")
    inf.add_argument("--lora", type=Path)
    add_section_flags(inf, "inference", InferenceConfig, SAMPLING_FLAGS)
    inf.add_argument("--no-memory", action="store_true")
    inf.add_argument("--story", help="story whose memories, chapters and history to use (default: 'default')")
    inf.add_argument("--mode", choices=writing_modes(), default="continue", help="how to write (see prompting/modes)")
    inf.add_argument("--prompt-only", action="store_true",
                     help="print the prompt the model would be sent, without starting the engine")
    inf.add_argument("--passage", type=Path, help="rewrite mode: file with the passage to rewrite")
    inf.add_argument("--raw", action="store_true", help="send the prompt as is, without the writing template")

    ba = sub.add_parser("batch", help="generate for many prompts/outline lines at once (resumable)")
    ba.add_argument("--input", type=Path, required=True, help=".txt (one per line) or .jsonl ({\"prompt\": ...})")
    ba.add_argument("--output", type=Path, required=True, help=".jsonl, .txt or .md")
    ba.add_argument("--format", choices=["jsonl", "txt", "md"])
    ba.add_argument("--lora", type=Path)
    ba.add_argument("--story", help="story the items belong to: its memories and chapters (with --memory), its "
                    "history (default: 'default')")
    ba.add_argument("--memory", action="store_true")
    add_section_flags(ba, "inference", InferenceConfig, SAMPLING_FLAGS)

    ex = sub.add_parser("export", help="merge an adapter: Hugging Face folder or GGUF + Ollama Modelfile")
    ex.add_argument("--adapter", type=Path, required=True, help="adapter folder or training run folder")
    ex.add_argument("--format", choices=["hf", "gguf"], default="hf")
    ex.add_argument("--quant", choices=["q8_0", "q4_0", "f16"], default="q8_0")
    ex.add_argument("--out", type=Path, help="output folder (default: exports/<run>-<format>)")
    ex.add_argument("--base", help="base model folder or hub id (default: the configured base model)")
    ex.add_argument("--push-to-hub", metavar="REPO")
    ex.add_argument("--private", action="store_true")
    ex.add_argument("--overwrite", action="store_true")

    sub.add_parser("doctor", help="versions, device, memory, model paths, what is missing")

    cmp_ = sub.add_parser("compare", help="training runs and checkpoints side by side (loss, eval loss, perplexity)")
    cmp_.add_argument("--json", action="store_true")

    sub.add_parser("migrate-memory", help="re-embed memories made with another embedder for the configured one")

    from inkstone.vocab.commands import add_vocab_commands  # vocab, vocab-data

    add_vocab_commands(sub)

    rc = sub.add_parser("recut", help="subtitles of an episode -> a hook-first short cut (timeline.json + exports)")
    rc.add_argument("--input", type=Path, required=True,
                    help="the episode's subtitles (.srt, .vtt, .ass), or a folder of episodes (resumable)")
    rc.add_argument("--video", type=Path, help="the episode's video: the cut is rendered too")
    rc.add_argument("--lang", choices=["auto", "zh", "en"], default="auto")
    rc.add_argument("--target", type=float, default=0.25, help="share of the episode's running time to keep, (0, 1]")
    rc.add_argument("--adapter", type=Path, help="adapter to cut with (default: inference.recut_adapters[language])")
    rc.add_argument("--output", type=Path, required=True, help="folder for timeline.json and the exports")
    rd = sub.add_parser("recut-data", help="pairs of (original, viral) subtitles -> recut training rows")
    rd.add_argument("--pairs", type=Path, required=True, help="folder of NAME.json or NAME.original/.viral.srt")
    rd.add_argument("--output", type=Path, default=Path("data/recut"), help="writes LANG/train.jsonl, report.json")

    be = sub.add_parser("bench", help="benchmarks writing JSON")
    be.add_argument("what", choices=["serve", "train", "quality", "memory", "prepare", "soak", "recut", "vocab"])
    be.add_argument("--output", type=Path, help="JSON file (default: bench-results/<what>.json)")
    be.add_argument("--streams", default="1,8,32", help="serve: concurrency levels, comma separated; "
                    "soak: writers at once (default 32)")
    be.add_argument("--minutes", type=float, default=10.0, help="soak: how long the writers write")
    be.add_argument("--max-tokens", type=int, default=64, help="serve: new tokens per request")
    be.add_argument("--corpus", type=Path, help="train: text to train on (default: the sample corpus); "
                    "quality: the novel (default: data.sample_corpus)")
    be.add_argument("--steps", type=int, help="train: timed optimizer steps per side (12); quality: training steps (20)")
    be.add_argument("--seq", type=int, help="train, quality: max sequence length (512)")
    be.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                    help="train: compute dtype of every side (auto: bf16 where native)")
    be.add_argument("--4bit", dest="four_bit", action="store_true", default=False,
                    help="train: 4-bit base on every side (default: full precision, as the peer runs)")
    be.add_argument("--sides", default="naive,peer,ours", help="train: which sides to run")
    be.add_argument("--repeats", type=int, default=3, help="train: runs of each side, taking turns (median)")
    be.add_argument("--train-chapters", type=int, default=72,
                    help="quality: train on this many first chapters, evaluate on the rest")
    be.add_argument("--sizes", default="1000,10000,100000", help="memory: store sizes, comma separated")
    be.add_argument("--big-mb", type=int, default=200, help="prepare: size of the generated input for peak memory")
    be.add_argument("--pairs", type=Path, help="recut: folder of pairs (default: tests/data/recut)")
    return p


def build(args):
    return build_config(args.config, **config_overrides(args))


def _interrupt(signum, frame):
    # SIGTERM ends a command like Ctrl-C does, so engines and child processes are shut down.
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    args = _parser().parse_args(argv)
    try:
        cfg = build(args)
    except Exception as exc:  # pydantic's message names the bad field
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from inkstone import cli

    handler = getattr(cli, f"run_{args.command.replace('-', '_')}")
    try:
        return handler(cfg, args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except cli.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # required: vLLM starts its engine process with spawn
    sys.exit(main())
