"""`start.py bench quality`: does fine-tuning learn the novel?

QLoRA on a book's first chapters (红楼梦 1-72 by default), then perplexity on
its last chapters (73-80), compared with the base model on the same tokens.
It runs Inkstone's own trainer; the base figure is the trainer's evaluation at
step 0, where the LoRA update is still zero, so both numbers come from the same
4-bit model, the same evaluation blocks and the same code.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from ..data.chapters import split_chapters
from ..data.encoding import detect, iter_lines


def split_book(corpus: Path, train_chapters: int) -> tuple[list, list]:
    """The book's chapters in order, cut after the first `train_chapters`."""
    chapters = list(split_chapters(iter_lines(corpus, detect(corpus).encoding), corpus.stem))
    if len(chapters) <= train_chapters:
        raise ValueError(f"{corpus}: {len(chapters)} chapters found, need more than {train_chapters} "
                         "to keep some for evaluation")
    return chapters[:train_chapters], chapters[train_chapters:]


def _chapter_text(chapter) -> str:
    body = "\n".join(line.strip() for line in chapter.lines if line.strip())
    return f"{chapter.title}\n{body}"


def _write_jsonl(path: Path, chapters) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        for c in chapters:
            fh.write(json.dumps({"text": _chapter_text(c)}, ensure_ascii=False) + "\n")
    return sum(c.chars for c in chapters)


def run_quality_check(model_path: Path, corpus: Path, *, train_chapters: int = 72, steps: int = 20,
                      seq: int = 512, batch_size: int = 1, grad_accum: int = 2, lr: float = 2e-4,
                      lora_r: int = 16, eval_blocks: int = 24, four_bit: bool = True) -> dict:
    from ..config import TrainConfig
    from ..train.qlora import TrainArgs, run_training

    train, held_out = split_book(corpus, train_chapters)
    with tempfile.TemporaryDirectory(prefix="inkstone-quality-") as tmp:
        tmp = Path(tmp)
        train_chars = _write_jsonl(tmp / "train.jsonl", train)
        eval_chars = _write_jsonl(tmp / "val.jsonl", held_out)
        run_training(TrainArgs(
            data=tmp / "train.jsonl", val_data=tmp / "val.jsonl", base_model=model_path, output_dir=tmp / "run",
            load_in_4bit=four_bit,
            train=TrainConfig(max_steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, lora_r=lora_r,
                              lora_alpha=2 * lora_r, max_seq_length=seq, save_steps=10**6,
                              max_eval_blocks=eval_blocks, warmup_ratio=0.05, eval_on_start=True),
        ))
        rows = [json.loads(x) for x in (tmp / "run" / "progress.jsonl").read_text(encoding="utf-8").splitlines()]
        resolved = json.loads((tmp / "run" / "run.json").read_text(encoding="utf-8"))["resolved"]
    evals = [r for r in rows if r.get("event") == "log" and "eval_loss" in r]
    done = next(r for r in rows if r.get("event") == "done")
    base_loss, tuned_loss = evals[0]["eval_loss"], done["eval_loss"]
    losses = [r["loss"] for r in rows if r.get("event") == "log" and "loss" in r]
    return {
        "model": str(model_path), "corpus": corpus.name,
        "train_chapters": f"{train[0].title} .. {train[-1].title} ({len(train)}, {train_chars} chars)",
        "eval_chapters": f"{held_out[0].title} .. {held_out[-1].title} ({len(held_out)}, {eval_chars} chars)",
        "steps": steps, "tokens_per_step": batch_size * grad_accum * seq, "eval_tokens": eval_blocks * seq,
        "lora_r": lora_r, "lr": lr, "four_bit": four_bit,
        "train_loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
        "base_eval_loss": round(base_loss, 4), "tuned_eval_loss": round(tuned_loss, 4),
        "base_perplexity": round(math.exp(base_loss), 3), "tuned_perplexity": round(math.exp(tuned_loss), 3),
        "perplexity_ratio": round(math.exp(tuned_loss - base_loss), 4),
        "train_s": done.get("train_s"), "eval_s": done.get("eval_s"),
        "eval_share": round(done["eval_s"] / (done["eval_s"] + done["train_s"]), 3) if done.get("train_s") else None,
        "eval_blocks": resolved["eval_blocks"], "dtype": resolved["dtype"],
        "gradient_checkpointing": resolved["gradient_checkpointing"],
    }
