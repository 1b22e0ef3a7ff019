"""QLoRA fine-tuning as one plain function: the train section of the config plus what is this run's own.

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from ..checkpoints import ADAPTER_DIRNAME, is_complete_checkpoint, latest_checkpoint, replace_folder
from ..config import TrainConfig
from .progress import PROGRESS_FILE, ProgressLog, make_progress_callback


@dataclass
class TrainArgs:
    """One training run: the train settings plus what belongs to this run alone."""
    data: Path
    base_model: Path
    output_dir: Path  # this run's folder (train.output_dir holds all runs)
    train: TrainConfig = field(default_factory=TrainConfig)
    val_data: Optional[Path] = None
    load_in_4bit: bool = True
    resume: Optional[str] = None  # "latest" or a checkpoint folder

    def record(self) -> dict:
        """Flat, as run.json has always been (the model card reads it): the settings, then the run's own."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "train"}
        return {**self.train.model_dump(), **own}


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


def prepared_split(folder: Path) -> Optional[Path]:
    """`folder` when prepare wrote a split there (.jsonl files), else None."""
    return Path(folder) if any(Path(folder).glob("*.jsonl")) else None


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



# Cost of training one block, in evaluations of it (by checkpointing): the forward, and a backward
# that computes gradients of activations only (the base is frozen: no weight gradients but LoRA's
# small ones; attention's backward costs more than its forward); recomputing activations adds a
# forward. Measured on Gemma-3-270M, 4-bit, bf16 CPU: 2.2-2.5 and 2.7-3.1 at 512-2048 tokens.
FORWARDS_PER_TRAINING_BLOCK = {False: 2.5, True: 3.0}


def eval_sample(blocks: list[dict], *, total_steps: int, blocks_per_step: int, evaluations: int,
                share: float, cap: int, seed: int, checkpointing: bool) -> list[dict]:
    """A fixed, seeded sample of validation blocks, sized so that all evaluations
    together cost about `share` of the run (training and evaluation)."""
    import random

    if not blocks:
        return []
    training = FORWARDS_PER_TRAINING_BLOCK[checkpointing] * total_steps * blocks_per_step
    budget = share / (1 - share) * training / max(evaluations, 1)
    n = int(min(cap, len(blocks), max(budget, min(4, len(blocks)))))
    picked = sorted(random.Random(seed).sample(range(len(blocks)), n))
    return [blocks[i] for i in picked]


def needs_checkpointing(model_config, *, batch: int, seq: int, dtype_bytes: int) -> tuple[bool, dict]:
    """Recompute activations only when keeping them would crowd memory: a rough
    count of what each layer keeps for the backward pass (projections, MLP,
    attention scores) against 40% of the memory free now."""
    import psutil
    import torch

    c = model_config.get_text_config()
    layers, hidden = c.num_hidden_layers, c.hidden_size
    inter = getattr(c, "intermediate_size", 4 * hidden)
    heads = getattr(c, "num_attention_heads", 1)
    per_layer = batch * seq * (12 * hidden + 4 * inter + heads * seq) * dtype_bytes
    need = layers * per_layer
    free = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else psutil.virtual_memory().available
    return need > 0.4 * free, {"activation_estimate_mb": round(need / 2**20), "free_mb": round(free / 2**20)}


def save_adapter_atomically(model, tokenizer, out: Path) -> Path:
    """The adapter and tokenizer as `<out>/adapter`, swapped in whole (checkpoints.replace_folder)."""
    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return replace_folder(out / ADAPTER_DIRNAME, write)


def resume_point(resume_arg: Optional[str], out: Path, log: ProgressLog, *,
                 latest=latest_checkpoint, is_complete=is_complete_checkpoint) -> Optional[Path]:
    """The checkpoint `--resume` names ("latest": the newest complete one in `out`), or None.
    Vision runs pass their own finder and completeness rule (their checkpoints differ)."""
    if resume_arg == "latest":
        resume = latest(out)
        if resume is None:
            log.emit("note", message="no complete checkpoint to resume from; starting fresh")
        return resume
    if resume_arg:
        resume = Path(resume_arg)
        if not resume.is_dir():
            raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")
        if not is_complete(resume):
            raise FileNotFoundError(f"{resume} is not a complete checkpoint (its save was interrupted)")
        return resume
    return None


def run_training(args: TrainArgs) -> Path:
    """Train, holding the run's lock throughout: a second start of the same run fails at once."""
    from .run_lock import RunLock

    with RunLock(args.output_dir):
        return _run_training(args)


@dataclass
class PackedData:
    """A run's training and validation text, packed into blocks."""
    train: list[dict]
    val: list[dict]


@dataclass
class TrainingBlocks:
    """The packed data of a run and the evaluation it plans."""
    train: list[dict]
    val: list[dict]  # the fixed sample evaluated each time
    val_available: int
    total_steps: int
    eval_on_start: bool


def _run_training(args: TrainArgs) -> Path:
    """The run's steps in order: data, model, record, trainer, loop, adapter."""
    import torch

    from ..hardware import cpu_has_fast_bf16, on_gpu
    from .allocator import keep_freed_memory
    from .fused_loss import supports_fused_loss
    from .model_setup import add_lora, load_base, load_tokenizer, training_dtype

    t = args.train
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = ProgressLog(out / PROGRESS_FILE)
    allocator_tuned = keep_freed_memory()
    dtype = training_dtype(t.dtype)
    tokenizer = load_tokenizer(args.base_model)
    packed = pack_run_data(args, tokenizer)  # bad data fails here, before the model loads

    model = load_base(args.base_model, dtype=dtype, load_in_4bit=args.load_in_4bit)
    checkpointing, memory_note = choose_checkpointing(model, t, dtype_bytes=torch.finfo(dtype).bits // 8)
    blocks = plan_evaluation(packed, args, checkpointing=checkpointing)
    model = add_lora(model, r=t.lora_r, alpha=t.lora_alpha, dropout=t.lora_dropout)
    fused = t.fused_loss and supports_fused_loss(model)
    write_run_record(out, args, {
        "dtype": str(dtype).replace("torch.", ""), "device": "cuda" if on_gpu() else "cpu",
        "cpu_fast_bf16": cpu_has_fast_bf16(), "gradient_checkpointing": checkpointing, "fused_loss": fused,
        "eval_blocks": len(blocks.val), "val_blocks_available": blocks.val_available,
        "total_steps": blocks.total_steps, "allocator_keeps_freed_memory": allocator_tuned, **memory_note,
    })

    stop_flag = stop_on_signals()
    progress = make_progress_callback(log, tokens_per_step=t.batch_size * t.grad_accum * t.max_seq_length,
                                      train_blocks=len(blocks.train), val_blocks=len(blocks.val), lr=t.lr,
                                      stop_on_loss_rise=t.stop_on_loss_rise, stop_flag=stop_flag)
    targs = training_arguments(t, out, blocks, bf16=dtype == torch.bfloat16, checkpointing=checkpointing)
    trainer = build_trainer(model, targs, blocks, progress=progress, fused=fused)
    fit(trainer, resume_point(args.resume, out, log), log, stop_flag)
    return finish_run(trainer, tokenizer, out, log, progress, blocks, stop_flag)


def pack_run_data(args: TrainArgs, tokenizer) -> PackedData:
    """Pack the training and validation text into blocks."""
    t = args.train
    train_blocks = pack(read_examples(args.data), tokenizer, t.max_seq_length)
    if not train_blocks:
        raise TrainingDataError(f"{args.data}: no tokens to train on")
    val_blocks = pack(read_examples(args.val_data), tokenizer, t.max_seq_length) if args.val_data else []
    return PackedData(train=train_blocks, val=val_blocks)


def plan_evaluation(packed: PackedData, args: TrainArgs, *, checkpointing: bool) -> TrainingBlocks:
    """The run's steps and its evaluations: the schedule evaluates every save_steps and at the last
    step (and first, when asked), each time on one sample sized to cost about eval_share of the run."""
    t = args.train
    total_steps = planned_steps(len(packed.train), t)
    eval_on_start = bool(packed.val) and t.eval_on_start and not args.resume
    evaluations = int(eval_on_start) + max(1, math.ceil(total_steps / t.save_steps))
    val_blocks = eval_sample(packed.val, total_steps=total_steps, blocks_per_step=t.batch_size * t.grad_accum,
                             evaluations=evaluations, share=t.eval_share, cap=t.max_eval_blocks, seed=t.seed,
                             checkpointing=checkpointing)
    return TrainingBlocks(train=packed.train, val=val_blocks, val_available=len(packed.val),
                          total_steps=total_steps, eval_on_start=eval_on_start and bool(val_blocks))


def planned_steps(train_blocks: int, t: TrainConfig) -> int:
    """Optimizer steps of the run: max_steps when set, else what the epochs come to."""
    if t.max_steps > 0:
        return t.max_steps
    return math.ceil(math.ceil(train_blocks / t.batch_size) / t.grad_accum * t.epochs)


def choose_checkpointing(model, t: TrainConfig, *, dtype_bytes: int) -> tuple[bool, dict]:
    """The setting when given, else what memory needs (see needs_checkpointing); and the memory estimate."""
    checkpointing, memory_note = needs_checkpointing(model.config, batch=t.batch_size, seq=t.max_seq_length,
                                                     dtype_bytes=dtype_bytes)
    if t.gradient_checkpointing is not None:
        checkpointing = t.gradient_checkpointing
    return checkpointing, memory_note


def write_run_record(out: Path, args: TrainArgs, resolved: dict) -> None:
    """run.json: the arguments, and what `auto` and memory resolved to on this machine."""
    (out / "run.json").write_text(json.dumps({**args.record(), "resolved": resolved}, default=str, indent=2),
                                  encoding="utf-8")


def stop_on_signals() -> dict:
    """SIGINT/SIGTERM set the returned flag; the progress callback then saves and stops the run."""
    stop_flag: dict = {"flag": False}

    def request_stop(signum, _frame):
        stop_flag["flag"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop_flag


def training_arguments(t: TrainConfig, out: Path, blocks: TrainingBlocks, *, bf16: bool, checkpointing: bool):
    from transformers import TrainingArguments

    from ..hardware import on_gpu

    gpu = on_gpu()
    evaluate = bool(blocks.val)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")  # TensorBoard logs beside progress.jsonl
    return TrainingArguments(
        output_dir=str(out), num_train_epochs=t.epochs, max_steps=t.max_steps,
        # Evaluating at the training batch fits wherever training does; a larger one is no faster on a CPU.
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, lr_scheduler_type="cosine",
        warmup_steps=t.warmup_ratio, logging_steps=1, save_steps=t.save_steps, save_total_limit=3,
        eval_strategy="steps" if evaluate else "no", eval_steps=t.save_steps if evaluate else None,
        eval_on_start=blocks.eval_on_start,
        seed=t.seed, data_seed=t.seed, report_to=["tensorboard"], bf16=bf16,
        gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        use_cpu=not gpu, dataloader_pin_memory=gpu, remove_unused_columns=False,
        logging_nan_inf_filter=False,  # a NaN step must show as NaN, not be logged as 0.0
    )


def build_trainer(model, targs, blocks: TrainingBlocks, *, progress, fused: bool):
    from transformers import default_data_collator

    from .trainer import InkstoneTrainer

    return InkstoneTrainer(model=model, args=targs, train_dataset=_Blocks(blocks.train),
                           eval_dataset=_Blocks(blocks.val) if blocks.val else None,
                           data_collator=default_data_collator, callbacks=[progress], fused=fused)


def fit(trainer, resume: Optional[Path], log: ProgressLog, stop_flag: dict) -> None:
    """Run the training loop; out of memory is logged with what to lower, a NaN loss raised."""
    import torch

    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.OutOfMemoryError as exc:
        log.emit("error", message=f"out of memory ({exc}); lower --batch-size or --max-seq-length")
        raise
    if stop_flag.get("nan_step") is not None:
        raise FloatingPointError(f"training stopped at step {stop_flag['nan_step']}: the loss became NaN/inf")


def finish_run(trainer, tokenizer, out: Path, log: ProgressLog, progress, blocks: TrainingBlocks,
               stop_flag: dict) -> Path:
    """Save the adapter and log `done` with the final evaluation loss."""
    final = save_adapter_atomically(trainer.model, tokenizer, out)
    step = trainer.state.global_step
    metrics = progress.evals.get(step) or (trainer.evaluate() if blocks.val else {})  # never twice for one step
    log.emit("done", adapter=str(final), stopped_early=stop_flag["flag"], eval_loss=metrics.get("eval_loss"),
             step=step, train_s=round(progress.train_s, 2), eval_s=round(progress.eval_s, 2))
    return final
