"""`start.py bench train`: Inkstone's QLoRA vs a naive transformers + peft loop.

Same model, same texts (the corpus's paragraphs, as prepared data looks: many
short, some long), same LoRA and 4-bit settings. The naive loop pads every
sample to the maximum length and trains on one sample batch after another;
Inkstone packs the text into full blocks. Each side runs in its own
subprocess so its peak RSS is its own. Throughput counts real (non-padding)
tokens per second of training steps; model loading is left out of both.
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


def naive(model_path: Path, corpus: Path, steps: int, batch: int, seq: int, lora_r: int, four_bit: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(model_path)
    tok.pad_token = tok.pad_token or tok.eos_token
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=torch.float32) if four_bit else None
    model = AutoModelForCausalLM.from_pretrained(model_path, quantization_config=quant, dtype=torch.float32)
    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    texts = _texts(corpus, (steps + 1) * batch)
    model.train()
    useful, t_train = 0, 0.0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        enc = tok(texts[step * batch:(step + 1) * batch], padding="max_length", truncation=True,
                  max_length=seq, return_tensors="pt")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        t0 = time.perf_counter()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step:
            t_train += time.perf_counter() - t0
            useful += int(enc.attention_mask.sum())
    return {"tokens_per_s": round(useful / t_train, 2), "useful_tokens": useful, "train_s": round(t_train, 2),
            "padding_share": round(1 - useful / (steps * batch * seq), 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def ours(model_path: Path, corpus: Path, steps: int, batch: int, seq: int, lora_r: int, four_bit: bool) -> dict:
    from ..train.qlora import TrainArgs, run_training

    texts = _texts(corpus, 20 * (steps + 1) * batch)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        out = Path(tmp) / "run"
        run_training(TrainArgs(data=data, base_model=model_path, output_dir=out, max_steps=steps + 1,
                               batch_size=batch, grad_accum=1, max_seq_length=seq, lora_r=lora_r,
                               lora_alpha=2 * lora_r, load_in_4bit=four_bit, save_steps=10**6, warmup_ratio=0.0))
        logs = [json.loads(ln) for ln in (out / "progress.jsonl").read_text(encoding="utf-8").splitlines()]
    last = [r for r in logs if r.get("event") == "log" and "loss" in r][-1]
    return {"tokens_per_s": last["tokens_per_s"], "steps": last["step"], "padding_share": 0.0,
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def run_train_bench(model_path: Path, corpus: Path, steps: int = 6, batch: int = 2, seq: int = 256,
                    lora_r: int = 8, four_bit: bool = True) -> dict:
    results = {}
    for mode in ("naive", "ours"):
        results[mode] = run_json("inkstone.bench.train", mode, model_path, corpus, steps, batch, seq, lora_r,
                                 int(four_bit), what=f"bench train ({mode})")
    return {
        "model": str(model_path), "steps": steps, "batch_size": batch, "max_seq_length": seq, "lora_r": lora_r,
        "four_bit": four_bit, "naive": results["naive"], "inkstone": results["ours"],
        "tokens_per_s_ratio": round(results["ours"]["tokens_per_s"] / results["naive"]["tokens_per_s"], 3),
        "peak_rss_ratio": round(results["ours"]["peak_rss_mb"] / results["naive"]["peak_rss_mb"], 3),
    }


if __name__ == "__main__":
    mode, model_path, corpus, steps, batch, seq, r, four = sys.argv[1:9]
    fn = naive if mode == "naive" else ours
    res = fn(Path(model_path), Path(corpus), int(steps), int(batch), int(seq), int(r), bool(int(four)))
    print(json.dumps(res))
