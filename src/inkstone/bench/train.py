"""`start.py bench train`: Inkstone's trainer against two baselines, same model, same text.

- naive: a plain transformers + peft loop that pads every paragraph to the
  maximum length, one batch after another (what a first script does);
- peer: what LLaMA-Factory runs for `stage: pt`: transformers' Trainer + peft,
  bf16 where the machine has it, gradient checkpointing, packed blocks, the
  loss over full logits;
- inkstone: `start.py train`'s own code path with its defaults.

Peer and Inkstone train on the same packed blocks with the same LoRA (all
linear layers) and dtype. Each side runs in its own subprocess so its peak RSS
is its own, and the sides take turns, several times: the host's speed drifts
by a third between minutes, so one run of each says little. Throughput counts
real (non-padding) tokens per second of training steps; loading and the first
(warm-up) step are left out.
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from .child import run_json


def _texts(corpus: Path, limit: int) -> list[str]:
    lines = [ln.strip() for ln in corpus.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if len(ln) >= 10][:limit]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_jsonl(texts: list[str], path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def naive(model_path: Path, corpus: Path, steps: int, batch: int, seq: int, lora_r: int, four_bit: bool,
          dtype: str) -> dict:
    import torch

    from ..train.model_setup import add_lora, load_base, load_tokenizer, training_dtype

    tok = load_tokenizer(model_path)
    dt = training_dtype(dtype)
    model = add_lora(load_base(model_path, dtype=dt, load_in_4bit=four_bit), r=lora_r, alpha=2 * lora_r, dropout=0.0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    texts = _texts(corpus, (steps + 1) * batch)
    model.train()
    useful, t_train = 0, 0.0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        enc = tok(texts[step * batch:(step + 1) * batch], padding="max_length", truncation=True,
                  max_length=seq, return_tensors="pt")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dt, enabled=dt != torch.float32):
            loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step:
            t_train += time.perf_counter() - t0
            useful += int(enc.attention_mask.sum())
    return {"tokens_per_s": round(useful / t_train, 2), "useful_tokens": useful, "train_s": round(t_train, 2),
            "padding_share": round(1 - useful / (steps * batch * seq), 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def peer(model_path: Path, corpus: Path, steps: int, batch: int, seq: int, lora_r: int, four_bit: bool,
         dtype: str) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    from ..hardware import on_gpu
    from ..train.model_setup import add_lora, load_base, load_tokenizer, training_dtype
    from ..train.qlora import Example, pack

    tok = load_tokenizer(model_path)
    dt = training_dtype(dtype)
    blocks = pack([Example(t) for t in _texts(corpus, 40 * (steps + 1) * batch)], tok, seq)[: (steps + 1) * batch]
    model = add_lora(load_base(model_path, dtype=dt, load_in_4bit=four_bit), r=lora_r, alpha=2 * lora_r, dropout=0.0)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            times.append(-time.perf_counter())

        def on_step_end(self, *a, **k):
            times[-1] += time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps + 1, per_device_train_batch_size=batch, learning_rate=2e-4,
            logging_steps=1, save_strategy="no", report_to=[], bf16=dt == torch.bfloat16,
            gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
            use_cpu=not on_gpu(), remove_unused_columns=False, disable_tqdm=True,
        )
        Trainer(model=model, args=args, train_dataset=blocks, data_collator=default_data_collator,
                callbacks=[Clock()]).train()
    timed = sum(times[1:])
    return {"tokens_per_s": round(steps * batch * seq / timed, 2), "train_s": round(timed, 2), "steps": steps,
            "padding_share": 0.0, "gradient_checkpointing": True, "peak_rss_mb": round(_peak_rss_mb(), 1)}


def ours(model_path: Path, corpus: Path, steps: int, batch: int, seq: int, lora_r: int, four_bit: bool,
         dtype: str) -> dict:
    from ..config import TrainConfig
    from ..train.qlora import TrainArgs, run_training

    with tempfile.TemporaryDirectory() as tmp:
        data = _write_jsonl(_texts(corpus, 40 * (steps + 1) * batch), Path(tmp) / "train.jsonl")
        out = Path(tmp) / "run"
        settings = TrainConfig(max_steps=steps + 1, batch_size=batch, grad_accum=1, max_seq_length=seq,
                               lora_r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, save_steps=10**6,
                               warmup_ratio=0.0, dtype=dtype)
        run_training(TrainArgs(data=data, base_model=model_path, output_dir=out, load_in_4bit=four_bit,
                               train=settings))
        logs = [json.loads(ln) for ln in (out / "progress.jsonl").read_text(encoding="utf-8").splitlines()]
        resolved = json.loads((out / "run.json").read_text(encoding="utf-8"))["resolved"]
    done = next(r for r in logs if r.get("event") == "done")
    first = next(r for r in logs if r.get("event") == "log" and r.get("step") == 1 and "tokens_per_s" in r)
    # Step 1 warms up: the rate over steps 2..N from the trainer's own step clock.
    timed = done["train_s"] - batch * seq / first["tokens_per_s"]
    return {"tokens_per_s": round(steps * batch * seq / timed, 2), "train_s": round(timed, 2), "steps": steps,
            "padding_share": 0.0, "resolved": resolved, "peak_rss_mb": round(_peak_rss_mb(), 1)}


SIDES = {"naive": naive, "peer": peer, "ours": ours}


def run_train_bench(model_path: Path, corpus: Path, steps: int = 12, batch: int = 1, seq: int = 512,
                    lora_r: int = 8, four_bit: bool = False, dtype: str = "auto",
                    sides: tuple[str, ...] = ("naive", "peer", "ours"), repeats: int = 3) -> dict:
    """Each side `repeats` times, the sides taking turns (so a slow spell of the host hits
    all of them); each side's figure is the median of its runs, all runs are kept."""
    import statistics

    from ..train.model_setup import training_dtype

    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(repeats):
        for side in sides:
            runs[side].append(run_json("inkstone.bench.train", side, model_path, corpus, steps, batch, seq, lora_r,
                                       int(four_bit), dtype, what=f"bench train ({side})"))
    results = {}
    for side, rs in runs.items():
        med = statistics.median(r["tokens_per_s"] for r in rs)
        results[side] = {**min(rs, key=lambda r: abs(r["tokens_per_s"] - med)), "tokens_per_s": med,
                         "tokens_per_s_runs": [r["tokens_per_s"] for r in rs],
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    out = {
        "model": str(model_path), "steps": steps, "batch_size": batch, "max_seq_length": seq, "lora_r": lora_r,
        "four_bit": four_bit, "dtype": str(training_dtype(dtype)).replace("torch.", ""), "repeats": repeats,
        **results,
    }
    for base in ("naive", "peer"):
        if base in results and "ours" in results:
            out[f"tokens_per_s_vs_{base}"] = round(results["ours"]["tokens_per_s"] / results[base]["tokens_per_s"], 3)
            out[f"peak_rss_vs_{base}"] = round(results["ours"]["peak_rss_mb"] / results[base]["peak_rss_mb"], 3)
    return out


if __name__ == "__main__":
    side, model_path, corpus, steps, batch, seq, r, four, dtype = sys.argv[1:10]
    res = SIDES[side](Path(model_path), Path(corpus), int(steps), int(batch), int(seq), int(r), bool(int(four)), dtype)
    print(json.dumps(res))
