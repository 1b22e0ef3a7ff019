"""Captions from a saved model through transformers: the reference the engine's
captions are compared with, and a way to check a trained model without starting
the engine. Greedy decoding over the same describe prompt the engine gets."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def greedy_captions(model_dir: Path, images: Sequence, *, max_new_tokens: int = 24,
                    prompt_format: str = "auto") -> list[str]:
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from .examples import caption_prompt

    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    tok = processor.tokenizer
    prompt = caption_prompt(tok, Path(model_dir).name, model.config.image_token_index,
                            model.config.image_seq_length, prompt_format)
    out = []
    with torch.inference_mode():
        for image in images:
            pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
            ids = torch.tensor([prompt.ids])
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                                 max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
            out.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    return out
