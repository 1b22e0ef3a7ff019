"""Training examples from pairs: the describe prompt, the picture, the caption.

The prompt is the one the prompt service builds for the "describe" mode, so a
trained model is asked at writing time exactly what it learned to answer. Its
single image token is widened to one position per image feature, as vLLM
widens it when serving; only the caption (and its end-of-text) is learned.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..prompting.request import PromptRequest
from ..prompting.service import PromptService, PromptSettings
from ..prompt_format import resolve_format
from .pairs import Pair

IGNORE = -100


@dataclass
class CaptionPrompt:
    """The describe prompt's ids with the image widened, made once for all examples."""
    ids: list[int]
    prompt_format: str


def caption_prompt(tokenizer, model_name: str, image_token: int, image_features: int,
                   prompt_format: str = "auto") -> CaptionPrompt:
    from PIL import Image

    fmt = resolve_format(tokenizer, prompt_format, model_name)
    service = PromptService(tokenizer, PromptSettings(model_name=model_name, max_model_len=1 << 20,
                                                      prompt_format=fmt, max_tokens=64))
    try:
        ids = service.prepare(PromptRequest(mode="describe", image=Image.new("RGB", (1, 1)),
                                            use_memory=False)).token_ids
    finally:
        service.close()
    at = ids.index(image_token)
    return CaptionPrompt(ids[:at] + [image_token] * image_features + ids[at + 1:], fmt)


class CaptionDataset:
    """Pairs as model inputs; pictures are opened when a batch needs them."""

    def __init__(self, pairs: list[Pair], prompt: CaptionPrompt, tokenizer, image_processor):
        self.pairs, self.prompt, self.tokenizer, self.image_processor = pairs, prompt, tokenizer, image_processor

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        pair = self.pairs[i]
        caption = self.tokenizer(pair.caption, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]
        pixels = self.image_processor(images=pair.load(), return_tensors="pt")["pixel_values"][0]
        return {"input_ids": self.prompt.ids + caption, "labels": [IGNORE] * len(self.prompt.ids) + caption,
                "pixel_values": pixels}


def collate(pad_id: int):
    """Pad a batch to its longest example (right side, masked)."""
    import torch

    def run(rows):
        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, mask = [], [], []
        for r in rows:
            short = width - len(r["input_ids"])
            ids.append(r["input_ids"] + [pad_id] * short)
            labels.append(r["labels"] + [IGNORE] * short)
            mask.append([1] * len(r["input_ids"]) + [0] * short)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask),
                "pixel_values": torch.stack([r["pixel_values"] for r in rows])}

    return run
