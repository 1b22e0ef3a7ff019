"""Merge a LoRA adapter into its base model's full-precision weights.

Training ran on a 4-bit (nf4) copy of the base, but the adapter is a low-rank
delta for the original weights: merging into the 4-bit copy would bake nf4
rounding into every layer. So the base is loaded in full precision (fp32 when
it fits in memory, else its own bf16/fp16 dtype; peft computes the delta in
fp32 on the CPU either way), the adapter is applied (that model is the
reference the export is checked against), then merged in place.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ExportError

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_FP32_MEMORY_SHARE = 0.4  # load the base in fp32 only if that takes less than this share of available memory


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def adapter_base_name(adapter: Path) -> str | None:
    """The base model the adapter was trained on, as recorded in adapter_config.json."""
    return read_json(Path(adapter) / "adapter_config.json").get("base_model_name_or_path")


def base_dtype_name(base: Path) -> str:
    cfg = read_json(Path(base) / "config.json")
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def check_full_precision(base: Path) -> None:
    cfg = read_json(Path(base) / "config.json")
    q = cfg.get("quantization_config")
    if q:
        method = q.get("quant_method", "?") if isinstance(q, dict) else "?"
        raise ExportError(f"base model {base} is stored quantized ({method}); merging needs the full-precision "
                          "(bf16/fp16/fp32) base weights the adapter was trained against, not a quantized copy")


def work_dtype(base: Path):
    """fp32 when the base fits comfortably, else its own half-precision dtype."""
    import psutil
    import torch

    weights = sum(f.stat().st_size for f in Path(base).glob("*.safetensors")) or \
        sum(f.stat().st_size for f in Path(base).glob("*.bin"))
    scale = 2 if base_dtype_name(base) in ("bfloat16", "float16") else 1
    if weights * scale < _FP32_MEMORY_SHARE * psutil.virtual_memory().available:
        return torch.float32
    return getattr(torch, base_dtype_name(base))


def load_tokenizer(adapter: Path, base: Path):
    """The adapter's own tokenizer (what training saved) if it has one, else the base's."""
    from transformers import AutoTokenizer

    src = adapter if any((Path(adapter) / f).is_file() for f in _TOKENIZER_FILES) else base
    tok = AutoTokenizer.from_pretrained(src)
    if not getattr(tok, "chat_template", None) and src != base:
        base_tok = AutoTokenizer.from_pretrained(base)
        if getattr(base_tok, "chat_template", None):
            tok.chat_template = base_tok.chat_template
    return tok


def load_adapter_model(base: Path, adapter: Path, dtype):
    """The base in `dtype` with the adapter applied, unmerged, in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    check_full_precision(base)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    except Exception as exc:
        raise ExportError(f"cannot load the base model {base}: {exc}") from exc
    try:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except Exception as exc:  # size mismatch, missing target modules, unreadable weights
        raise ExportError(f"adapter {adapter} does not fit the base model {base}: {exc}") from exc
    return model.eval()


def merge(peft_model):
    """Fold the LoRA deltas into the base weights; returns the plain transformers model."""
    merged = peft_model.merge_and_unload(safe_merge=True)  # safe_merge: refuses NaN/inf results
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    return merged.eval()


def save_hf_folder(merged, tokenizer, out: Path, dtype_name: str) -> None:
    """safetensors weights in the base's dtype, config, generation config, tokenizer and chat template.

    Casts `merged` to that dtype in place (no second copy of the weights; tied
    weights stay tied and are saved once)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    merged.to(getattr(torch, dtype_name))
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not (out / "generation_config.json").is_file():
        from transformers import GenerationConfig

        GenerationConfig.from_model_config(merged.config).save_pretrained(out)
