#!/usr/bin/env python3
"""Inkstone's command line: prepare | train | webui | inference | batch | compare | export | doctor | bench | migrate-memory.

Builds the Config once from defaults, config file, environment and flags, then
calls one stage. Heavy modules (vLLM, torch, Gradio) are imported only inside
the chosen branch, so `doctor` and `--help` stay fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
from inkstone.offline import apply_offline_defaults  # noqa: E402  (light: no heavy imports)

# Never reach for a model hub at run time unless the user explicitly allows it.
apply_offline_defaults()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="start.py", description="Inkstone: write long fiction with your own model")
    p.add_argument("--config", type=Path, help="TOML config file (default: inkstone.toml if present)")
    p.add_argument("--model", help="base model: local folder or hub id (overrides model.base)")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prepare", help="novel files -> training chunks")
    pr.add_argument("--input", type=Path, action="append", help="file or folder (default: data/raw)")
    pr.add_argument("--sample", action="store_true", help="use the bundled sample (红楼梦 chapters 1-5)")
    pr.add_argument("--chunk-size", type=int)
    pr.add_argument("--val-split", type=float)

    tr = sub.add_parser("train", help="QLoRA fine-tuning (runs in this process; the UI starts it as a child)")
    tr.add_argument("--data", type=Path, help="train .jsonl file or folder (default: data/train)")
    tr.add_argument("--val-data", type=Path, help="validation .jsonl (default: data/val if present)")
    tr.add_argument("--epochs", type=float)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--grad-accum", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--lora-r", type=int)
    tr.add_argument("--lora-alpha", type=int)
    tr.add_argument("--max-seq-length", type=int)
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--save-steps", type=int)
    tr.add_argument("--run-name")
    tr.add_argument("--resume", nargs="?", const="latest", help="'latest' or a checkpoint folder")
    tr.add_argument("--4bit", dest="four_bit", action="store_true", default=None)
    tr.add_argument("--no-4bit", dest="four_bit", action="store_false")
    tr.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], help="auto: bf16 where native")
    tr.add_argument("--checkpointing", dest="checkpointing", action="store_true", default=None,
                    help="recompute activations (default: only when memory needs it)")
    tr.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    tr.add_argument("--stop-on-loss-rise", action="store_true", default=None,
                    help="stop (and save) when the loss guard fires, instead of only warning")

    wu = sub.add_parser("webui", help="serve the studio in the browser")
    wu.add_argument("--lora", type=Path, help="adapter folder to preselect in Write")
    wu.add_argument("--host")
    wu.add_argument("--port", type=int)
    wu.add_argument("--share", action="store_true", default=None, help="public link (needs a login)")

    inf = sub.add_parser("inference", help="generate from the terminal (prompt argument or stdin)")
    inf.add_argument("prompt", nargs="?", help="instruction; read from stdin when left out")
    inf.add_argument("--story-text", type=Path, help="file with the story so far")
    inf.add_argument("--lora", type=Path)
    inf.add_argument("--max-tokens", type=int)
    inf.add_argument("--temperature", type=float)
    inf.add_argument("--seed", type=int)
    inf.add_argument("--no-memory", action="store_true")
    inf.add_argument("--story", default="default", help="story project whose memories and chapters to use")
    inf.add_argument("--mode", choices=["continue", "rewrite", "outline"], default="continue")
    inf.add_argument("--passage", type=Path, help="rewrite mode: file with the passage to rewrite")
    inf.add_argument("--raw", action="store_true", help="send the prompt as is, without the writing template")

    ba = sub.add_parser("batch", help="generate for many prompts/outline lines at once (resumable)")
    ba.add_argument("--input", type=Path, required=True, help=".txt (one per line) or .jsonl ({\"prompt\": ...})")
    ba.add_argument("--output", type=Path, required=True, help=".jsonl, .txt or .md")
    ba.add_argument("--format", choices=["jsonl", "txt", "md"])
    ba.add_argument("--lora", type=Path)
    ba.add_argument("--story", help="story whose memories to use (with --memory)")
    ba.add_argument("--memory", action="store_true")
    ba.add_argument("--max-tokens", type=int)
    ba.add_argument("--temperature", type=float)
    ba.add_argument("--seed", type=int)

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

    be = sub.add_parser("bench", help="benchmarks writing JSON")
    be.add_argument("what", choices=["serve", "train", "quality", "memory", "prepare", "soak"])
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
    return p


def build(args):
    from config import build_config

    sections = {"model": {"base": args.model}}
    if args.command == "prepare":
        sections["data"] = {"chunk_size": args.chunk_size, "val_split": args.val_split}
    elif args.command == "train":
        sections["train"] = {
            "epochs": args.epochs, "batch_size": args.batch_size, "grad_accum": args.grad_accum, "lr": args.lr,
            "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "max_seq_length": args.max_seq_length,
            "max_steps": args.max_steps, "save_steps": args.save_steps, "dtype": args.dtype,
            "gradient_checkpointing": args.checkpointing, "stop_on_loss_rise": args.stop_on_loss_rise,
        }
        sections["model"]["load_in_4bit"] = args.four_bit
    elif args.command == "webui":
        sections["webui"] = {"host": args.host, "port": args.port, "share": args.share, "lora": args.lora}
    elif args.command in ("inference", "batch"):
        sections["inference"] = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed}
    return build_config(args.config, **sections)


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
