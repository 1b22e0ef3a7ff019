"""QLoRA fine-tuning as one plain function with typed arguments.

The base model is loaded 4-bit (bitsandbytes nf4; it runs on the CPU too) or in
full precision with --no-4bit; peft adds LoRA adapters to every linear layer;
transformers' Trainer runs the loop, checkpoints and resume. Training text is
packed into full `max_seq_length` blocks, so no step is spent on padding.
Progress goes to `<run>/progress.jsonl`, one JSON object a line, which the web
UI tails. Stopping (SIGINT/SIGTERM) saves a checkpoint and the adapter first.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .checkpoints import INCOMPLETE_MARKER, is_complete_checkpoint, latest_checkpoint

ADAPTER_DIRNAME = "adapter"
PROGRESS_FILE = "progress.jsonl"


@dataclass
class TrainArgs:
    data: Path
    base_model: Path
    output_dir: Path
    val_data: Optional[Path] = None
    epochs: float = 3
    batch_size: int = 2
    grad_accum: int = 8
    lr: float = 2e-4
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    max_seq_length: int = 2048
    max_steps: int = -1
    load_in_4bit: bool = True
    gradient_checkpointing: bool = True
    save_steps: int = 100
    warmup_ratio: float = 0.03
    seed: int = 42
    max_eval_blocks: int = 64
    eval_on_start: bool = True  # the base model's validation loss, for the curve to start from
    resume: Optional[str] = None  # "latest" or a checkpoint folder


class TrainingDataError(ValueError):
    pass


def _jsonl_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
        if files:
            return files
    raise TrainingDataError(f"no training data at {path}: run `python start.py prepare` first")


@dataclass
class Example:
    """A training example: plain text (all of it is learned) or a prompt/completion
    pair (only the completion is learned)."""
    text: str
    prompt: Optional[str] = None


def read_examples(path: Path) -> list[Example]:
    """Examples from JSON lines with `text`, or `prompt` + `completion`."""
    examples = []
    for file in _jsonl_files(path):
        with open(file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingDataError(f"{file}:{lineno}: not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise TrainingDataError(f"{file}:{lineno}: expected a JSON object")
                if isinstance(row.get("completion"), str):
                    examples.append(Example(text=row["completion"], prompt=str(row.get("prompt", ""))))
                elif isinstance(row.get("text"), str):
                    examples.append(Example(text=row["text"]))
                else:
                    raise TrainingDataError(f"{file}:{lineno}: no `text` (or `prompt`/`completion`) field")
    if not examples:
        raise TrainingDataError(f"{path} holds no training text")
    return examples


def read_texts(path: Path) -> list[str]:
    return [(e.prompt or "") + e.text for e in read_examples(path)]


IGNORE = -100  # label value the loss skips


def pack(examples: list[Example], tokenizer, block: int) -> list[dict]:
    """Concatenate tokenised examples (each ended by EOS) and cut into full blocks,
    so no step is spent on padding. Prompt tokens get IGNORE labels: the model
    learns to write the completion, not to repeat the context.

    Where the tokenizer starts every text with BOS (Gemma, Llama), every block
    starts with it too, as every prompt does at inference: a block cut from the
    middle of a chapter is then read the way the model will see a story's tail.
    Gemma in particular scores text without a leading BOS as near noise."""
    eos = tokenizer.eos_token_id
    bos = leading_bos(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        if ex.prompt is not None:
            p = tokenizer(ex.prompt, add_special_tokens=True).input_ids
            c = tokenizer(ex.text, add_special_tokens=False).input_ids
            ids += p + c
            labels += [IGNORE] * len(p) + c
        else:
            t = tokenizer(ex.text, add_special_tokens=True).input_ids
            ids += t
            labels += [IGNORE] + t[1:] if bos is not None and t[:1] == [bos] else t
        if eos is not None:
            ids.append(eos)
            labels.append(eos)
    blocks = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    a = 0
    while a < len(ids):
        prepend = bos is not None and ids[a] != bos and block > 1
        take = block - 1 if prepend else block
        chunk, lab = ids[a:a + take], labels[a:a + take]
        if prepend:
            chunk, lab = [bos] + chunk, [IGNORE] + lab
        first = a == 0
        a += take
        if all(x == IGNORE for x in lab):
            continue  # nothing to learn here, and its loss would be NaN
        mask = [1] * len(chunk)
        if len(chunk) < block and not first:
            # The tail: padded (and masked) rather than dropped, so no text is lost.
            short = block - len(chunk)
            chunk, lab, mask = chunk + [pad] * short, lab + [IGNORE] * short, mask + [0] * short
        blocks.append({"input_ids": chunk, "labels": lab, "attention_mask": mask})
    return blocks


def leading_bos(tokenizer) -> Optional[int]:
    """The BOS id this tokenizer puts before every text, or None (Qwen adds none)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    ids = tokenizer("a", add_special_tokens=True).input_ids
    return bos if ids[:1] == [bos] else None


class _Blocks:
    """A torch-style dataset of packed token blocks."""

    def __init__(self, blocks: list[dict]):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return self.blocks[i]


def _memory_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_training(args: TrainArgs) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress_path = out / PROGRESS_FILE
    (out / "run.json").write_text(json.dumps(asdict(args), default=str, indent=2), encoding="utf-8")

    def emit(event: str, **fields) -> None:
        fields = {"event": event, "time": time.time(), **fields}
        with open(progress_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(fields, ensure_ascii=False) + "\n")
            fh.flush()

    on_gpu = torch.cuda.is_available()
    compute_dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    train_blocks = pack(read_examples(args.data), tokenizer, args.max_seq_length)
    val_blocks = pack(read_examples(args.val_data), tokenizer, args.max_seq_length) if args.val_data else []
    val_blocks = val_blocks[: args.max_eval_blocks]  # bounded evaluation cost per checkpoint
    if not train_blocks:
        raise TrainingDataError(f"{args.data}: no tokens to train on")

    quant = None
    if args.load_in_4bit:
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(
        args.base_model, quantization_config=quant, dtype=compute_dtype,
        device_map={"": 0} if on_gpu else None,
    )
    if args.load_in_4bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=args.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    model = get_peft_model(model, LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM",
    ))
    tokens_per_step = args.batch_size * args.grad_accum * args.max_seq_length

    stop_requested = {"flag": False}

    def _request_stop(signum, _frame):
        stop_requested["flag"] = True

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)

    class Progress(TrainerCallback):
        def __init__(self):
            self.t0 = time.time()
            self.start_step = 0
            self.train_s = 0.0  # time in training steps only, evaluation excluded
            self.step_t = 0.0

        def on_train_begin(self, targs, state, control, **kw):
            self.t0, self.start_step = time.time(), state.global_step
            emit("start", max_steps=state.max_steps, step=state.global_step,
                 train_blocks=len(train_blocks), val_blocks=len(val_blocks))

        def on_log(self, targs, state, control, logs=None, **kw):
            logs = logs or {}
            elapsed = time.time() - self.t0
            done = max(state.global_step - self.start_step, 1)
            per_step = self.train_s / done
            eta = per_step * max(state.max_steps - state.global_step, 0)
            row = dict(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch,
                       elapsed_s=round(elapsed, 2), eta_s=round(eta, 1),
                       tokens_per_s=round(done * tokens_per_step / max(self.train_s, 1e-9), 1),
                       memory_mb=round(_memory_mb(), 1))
            for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                if key in logs:
                    row[key] = float(logs[key])
            if "eval_loss" in logs:
                row["eval_ppl"] = math.exp(min(float(logs["eval_loss"]), 50))
            loss = row.get("loss")
            if loss is not None and not math.isfinite(loss):
                emit("error", message=f"loss became {loss} at step {state.global_step}; "
                     "stopped, the last good checkpoint is kept. Lower the learning rate.")
                control.should_training_stop = True
                stop_requested["nan"] = True
                return
            if "loss" in row or "eval_loss" in row:
                emit("log", **row)

        def on_step_begin(self, targs, state, control, **kw):
            self.step_t = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            self.train_s += time.perf_counter() - self.step_t
            if stop_requested["flag"]:
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, targs, state, control, **kw):
            emit("checkpoint", step=state.global_step, path=str(out / f"checkpoint-{state.global_step}"))

    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")  # TensorBoard logs beside progress.jsonl
    targs = TrainingArguments(
        output_dir=str(out), num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio, logging_steps=1, save_steps=args.save_steps, save_total_limit=3,
        eval_strategy="steps" if val_blocks else "no", eval_steps=args.save_steps if val_blocks else None,
        eval_on_start=bool(val_blocks) and args.eval_on_start and not args.resume,
        seed=args.seed, data_seed=args.seed, report_to=["tensorboard"], bf16=compute_dtype == torch.bfloat16,
        gradient_checkpointing=args.gradient_checkpointing and not args.load_in_4bit,
        gradient_checkpointing_kwargs={"use_reentrant": False}, use_cpu=not on_gpu,
        dataloader_pin_memory=on_gpu, remove_unused_columns=False,
    )
    class AtomicCheckpointTrainer(Trainer):
        """Marks a checkpoint incomplete until every file of it is written, so a
        crash mid-save never leaves a folder that resume or the UI would pick up."""

        def _save_checkpoint(self, model, trial):
            folder = out / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / INCOMPLETE_MARKER).touch()
            super()._save_checkpoint(model, trial)
            (folder / INCOMPLETE_MARKER).unlink(missing_ok=True)

    trainer = AtomicCheckpointTrainer(
        model=model, args=targs, train_dataset=_Blocks(train_blocks),
        eval_dataset=_Blocks(val_blocks) if val_blocks else None,
        data_collator=default_data_collator, callbacks=[Progress()],
    )
    resume = None
    if args.resume == "latest":
        resume = latest_checkpoint(out)
        if resume is None:
            emit("note", message="no complete checkpoint to resume from; starting fresh")
    elif args.resume:
        resume = Path(args.resume)
        if not resume.is_dir():
            raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")
        if not is_complete_checkpoint(resume):
            raise FileNotFoundError(f"{resume} is not a complete checkpoint (its save was interrupted)")
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.OutOfMemoryError as exc:
        emit("error", message=f"out of memory ({exc}); lower --batch-size or --max-seq-length")
        raise
    if stop_requested.get("nan"):
        raise FloatingPointError("training stopped: the loss became NaN/inf")

    # Atomic adapter save: written to a temporary folder, then renamed.
    final = out / ADAPTER_DIRNAME
    tmp = out / f".{ADAPTER_DIRNAME}-partial"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if final.exists():
        import shutil

        shutil.rmtree(final)
    os.replace(tmp, final)
    metrics = trainer.evaluate() if val_blocks else {}
    emit("done", adapter=str(final), stopped_early=stop_requested["flag"],
         eval_loss=metrics.get("eval_loss"), step=trainer.state.global_step)
    return final
