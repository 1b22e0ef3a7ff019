"""The model card (README.md) of an export, from what the earlier stages wrote:
the base model and its license, the prepare report (data/prepared/report.json),
the training arguments (run.json) and losses (progress.jsonl), and the export's
own files and verification figures.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional

from ..checkpoints import checkpoint_step

_TRAIN_FIELDS = [  # run.json key -> label
    ("epochs", "epochs"), ("max_steps", "max steps"), ("lr", "learning rate"), ("batch_size", "batch size"),
    ("grad_accum", "gradient accumulation"), ("max_seq_length", "sequence length (packed)"),
    ("lora_r", "LoRA rank"), ("lora_alpha", "LoRA alpha"), ("lora_dropout", "LoRA dropout"),
    ("load_in_4bit", "4-bit nf4 base (QLoRA)"), ("warmup_ratio", "warmup"), ("seed", "seed"),
]
_KNOWN_LICENSES = {"gemma": "gemma"}  # model_type prefix -> license id, when the base folder does not say


def read_jsonl(path: Path) -> list[dict]:
    """JSON lines, skipping a torn last line (the run may still be writing)."""
    rows = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_json(path: Optional[Path]) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def base_license(base: Path) -> Optional[str]:
    """The base model's license: its README front matter, else known by model family."""
    readme = Path(base) / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
        if m:
            lic = re.search(r"^license:\s*['\"]?([^'\"\n]+)", m.group(1), re.M)
            if lic:
                return lic.group(1).strip()
    model_type = _read_json(Path(base) / "config.json").get("model_type", "")
    for prefix, lic in _KNOWN_LICENSES.items():
        if model_type.startswith(prefix):
            return lic
    return None


def training_summary(run_dir: Optional[Path], adapter: Path) -> dict:
    """Training arguments and the losses logged up to the exported adapter's step."""
    if run_dir is None:
        return {}
    args = _read_json(Path(run_dir) / "run.json")
    rows = read_jsonl(Path(run_dir) / "progress.jsonl")
    upto = checkpoint_step(adapter)  # a checkpoint: only what was logged up to its step
    logs = [r for r in rows if r.get("event") == "log" and (upto is None or (r.get("step") or 0) <= upto)]
    done = next((r for r in reversed(rows) if r.get("event") == "done"), None) if upto is None else None
    eval_loss, eval_step = None, None
    if done and done.get("eval_loss") is not None:
        eval_loss, eval_step = float(done["eval_loss"]), done.get("step")
    else:
        ev = next((r for r in reversed(logs) if r.get("eval_loss") is not None), None)
        if ev:
            eval_loss, eval_step = float(ev["eval_loss"]), ev.get("step")
    train = next((r for r in reversed(logs) if r.get("loss") is not None), None)
    return {
        "args": args,
        "step": upto if upto is not None else (done or {}).get("step") or (logs[-1].get("step") if logs else None),
        "finished": done is not None,
        "train_loss": float(train["loss"]) if train else None,
        "eval_loss": eval_loss,
        "eval_step": eval_step,
        "eval_ppl": math.exp(min(eval_loss, 50)) if eval_loss is not None else None,
    }


def find_prepare_report(run_args: dict, explicit: Optional[Path] = None) -> Optional[Path]:
    if explicit is not None:
        return Path(explicit) if Path(explicit).is_file() else None
    candidates = []
    data = run_args.get("data")
    if data:
        d = Path(data)
        candidates += [d.parent / "prepared" / "report.json", d / "prepared" / "report.json"]
    candidates.append(Path("data") / "prepared" / "report.json")
    return next((c for c in candidates if c.is_file()), None)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render(*, title: str, base_name: str, base_path: Path, adapter: Path, fmt: str, quant: Optional[str],
           files: dict[str, int], training: dict, prepare: dict, verification: dict,
           license_name: Optional[str], ollama: Optional[dict] = None, weights: Optional[dict] = None) -> str:
    """The model card: Hub front matter, then one section per stage that made the model."""
    lines = (_front_matter(base_name, fmt, license_name) + ["", f"# {title}", ""]
             + _summary(base_name, adapter, fmt, quant)
             + _base_section(base_name, base_path, license_name)
             + _data_section(prepare)
             + _training_section(training)
             + _export_section(files, verification, weights)
             + _use_section(fmt, files, ollama)
             + _license_section(base_name, license_name))
    return "\n".join(lines)


def _front_matter(base_name: str, fmt: str, license_name: Optional[str]) -> list[str]:
    tags = ["inkstone", "lora", "qlora", "fiction", "text-generation"] + (["gguf"] if fmt == "gguf" else [])
    # The Hub links base_model to a repo: write it only when the base is a Hub id, not a local folder name.
    hub_base = [f"base_model: {base_name}"] if re.match(r"^[\w.-]+/[\w.-]+$", base_name) else []
    return (["---"] + hub_base + [f"license: {license_name or 'other'}",
            f"library_name: {'gguf' if fmt == 'gguf' else 'transformers'}", "pipeline_tag: text-generation",
            "tags:"] + [f"- {t}" for t in tags] + ["---"])


def _summary(base_name: str, adapter: Path, fmt: str, quant: Optional[str]) -> list[str]:
    what = f"a GGUF file ({quant.upper()})" if fmt == "gguf" else "a merged safetensors model"
    return [f"A LoRA fine-tune of **{base_name}** for writing long fiction, trained and exported with "
            f"Inkstone: the adapter `{Path(adapter).name}` merged into the full-precision base weights, "
            f"saved as {what}.", ""]


def _base_section(base_name: str, base_path: Path, license_name: Optional[str]) -> list[str]:
    lines = ["## Base model", "", f"- model: `{base_name}`"]
    if not Path(base_name).name == Path(base_path).name:
        lines.append(f"- weights from: `{Path(base_path).name}`")
    return lines + [f"- license: {license_name or 'not stated in the base model folder; check the base model terms'}",
                    ""]


def _data_section(prepare: dict) -> list[str]:
    """What the prepare report says about the training text."""
    lines = ["## Training data", ""]
    if not prepare:
        return lines + ["- no prepare report found (data/prepared/report.json)", ""]
    lines += [f"- books: {prepare.get('books', '?')}, chapters: {prepare.get('chapters', '?')}",
              f"- training chunks: {prepare.get('train_chunks', '?')} ({prepare.get('train_tokens', '?')} tokens)",
              f"- validation chunks: {prepare.get('val_chunks', '?')} ({prepare.get('val_tokens', '?')} tokens)"]
    files_in = prepare.get("files") or []
    for f in files_in[:10]:
        lines.append(f"- source: `{Path(str(f.get('file', '?'))).name}` ({f.get('encoding', '?')}, "
                     f"{f.get('chapters', '?')} chapters)")
    if len(files_in) > 10:
        lines.append(f"- ... and {len(files_in) - 10} more files")
    if prepare.get("skipped"):
        lines.append(f"- skipped files: {len(prepare['skipped'])}")
    return lines + [""]


def _training_section(training: dict) -> list[str]:
    """The run's arguments as a table, then how far it got and its losses."""
    lines = ["## Training", ""]
    args = training.get("args") or {}
    if args:
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| {label} | {_fmt(args[key])} |" for key, label in _TRAIN_FIELDS if key in args]
        lines.append("")
    if not training:
        return lines + ["- no training log found next to the adapter", ""]
    state = "finished" if training.get("finished") else "in progress or stopped (latest complete checkpoint)"
    lines.append(f"- steps trained: {training.get('step', '?')} ({state})")
    if training.get("train_loss") is not None:
        lines.append(f"- last training loss: {training['train_loss']:.4f}")
    if training.get("eval_loss") is not None:
        lines.append(f"- validation loss: {training['eval_loss']:.4f} (perplexity {training['eval_ppl']:.2f})"
                     + (f" at step {training['eval_step']}" if training.get("eval_step") is not None else ""))
    else:
        lines.append("- validation loss: not measured (no validation data in this run)")
    return lines + [""]


def _export_section(files: dict[str, int], verification: dict, weights: Optional[dict]) -> list[str]:
    """The exported files and how closely they match the adapter on its base."""
    lines = ["## Export", "", "| file | size |", "|---|---|"]
    lines += [f"| `{name}` | {_size(size)} |" for name, size in sorted(files.items())]
    lines.append("")
    if verification:
        lines += ["Checked against the adapter applied to the base model on fixed Chinese and English probes "
                  "(next-token logits at every position, greedy continuations):", "",
                  "| check | relative logit error | mean KL | top-1 agreement | greedy match |",
                  "|---|---|---|---|---|"]
        for label, v in verification.items():
            greedy = f"{v['greedy_match']:.3f}" if v.get("greedy_match") is not None else "-"
            lines.append(f"| {label} | {v['rel_rms_error']:.2e} | {v['kl_mean']:.2e} | "
                         f"{v['top1_agreement']:.3f} | {greedy} |")
        lines.append("")
    if weights:
        lines += [f"Reloaded, all {weights['tensors']} tensors equal the weights meant to be written "
                  f"(largest relative difference {weights['max_rel_weight_diff']:.1e}).", ""]
    return lines


def _use_section(fmt: str, files: dict[str, int], ollama: Optional[dict]) -> list[str]:
    lines = ["## Use", ""]
    if fmt == "gguf":
        gguf_file = next((n for n in files if n.endswith(".gguf")), "model.gguf")
        lines += ["```bash", f"ollama create {Path(gguf_file).stem.lower()} -f Modelfile",
                  f"llama-cli -m {gguf_file} -p \"...\"", "```"]
        if ollama and ollama.get("template") != "chat":
            lines.append("\nThe base model has no chat template: give it the story so far and it continues.")
    else:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  'tok = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
                  'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")', "```"]
    return lines


def _license_section(base_name: str, license_name: Optional[str]) -> list[str]:
    return ["", "## License", "",
            f"This model is a derivative of `{base_name}` and is subject to its license "
            f"({license_name or 'see the base model'}). The fine-tuning data's rights are the user's "
            "responsibility.", ""]
