"""Load a base model for LoRA training: dtype, 4-bit, frozen base, adapters.

Two things here are easy to get wrong and silently ruin a run:

- dtype. bf16 is used where the machine computes it natively (see
  inkstone.hardware); elsewhere float32. peft's `prepare_model_for_kbit_training`
  is not used because it casts every non-4-bit weight, embeddings and output
  layer included, to float32: on a 262k-vocabulary model that output layer is
  most of the work, and float32 there doubles its cost. Only the LoRA weights
  train, and peft keeps those in float32 (`autocast_adapter_dtype`).
- bitsandbytes' CPU inference packing. On CPUs with AVX512-BF16, a 4-bit layer
  evaluated without gradients repacks its weights into a layout that only a
  forward kernel (`gemv_4bit`) understands. Training after an evaluation then
  backpropagates through that kernel, which has no backward: gradients are
  wrong (or, where linear layers have biases, the step crashes). The packing is
  switched off for the training model, so evaluation and training share one
  layout on every CPU. bitsandbytes' own inverse (`_convert_weight_packed_for_cpu_inverse`)
  re-quantizes double-quantized scales, so undoing it would not be exact.
"""
from __future__ import annotations

from pathlib import Path

from ..hardware import on_gpu, resolve_dtype


def training_dtype(requested: str = "auto"):
    """The torch dtype to train in: bf16 where it is native here, else float32."""
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[resolve_dtype(requested)]


def keep_training_layout(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference. Returns
    how many layers were told."""
    n = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_tokenizer(base_model: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base_model: Path, *, dtype, load_in_4bit: bool):
    """The frozen base model, 4-bit nf4 (double quantized) or in `dtype`."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = None
    if load_in_4bit:
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base_model, quantization_config=quant, dtype=dtype,
                                                 device_map={"": 0} if on_gpu() else None)
    if load_in_4bit:
        keep_training_layout(model)
    for param in model.parameters():
        param.requires_grad = False
    return model


def add_lora(model, *, r: int, alpha: int, dropout: float):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))
