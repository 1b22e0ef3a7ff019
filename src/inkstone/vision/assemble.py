"""Join a vision tower and the base language model into one LLaVA-layout model.

The layout is the one `LlavaForConditionalGeneration` defines and vLLM loads:
`model.vision_tower` (CLIP or SigLIP), `model.multi_modal_projector` (two linear
layers with GELU between) and `model.language_model` + `lm_head`. The tokenizer
gains one `<image>` token; vLLM widens it to one position per image feature.
The folder it saves holds config, weights, tokenizer and a `LlavaProcessor`
whose image processor is the PIL one, so serving resizes and normalises
pictures exactly as training did.
"""
from __future__ import annotations

from pathlib import Path

from ..prompting.request import IMAGE_PLACEHOLDER
from .tower import read_tower

# CLIP puts a class token before its patches: LLaVA drops it ("default"); SigLIP has none ("full").
FEATURE_SELECT = {"clip_vision_model": "default", "siglip_vision_model": "full"}
EXTRA_TOKENS = {"clip_vision_model": 1, "siglip_vision_model": 0}


def image_feature_count(vision_config) -> int:
    """Positions one image takes in the language model: one per patch."""
    return (vision_config.image_size // vision_config.patch_size) ** 2


def feature_layer(vision_config) -> int:
    """LLaVA reads the second-to-last layer of a real tower; a one-layer tower has only its last."""
    return -2 if vision_config.num_hidden_layers > 1 else -1


def assemble(tower_dir, base_dir, dtype=None):
    """A new LLaVA model (projector freshly initialised) and its processor."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tower = read_tower(tower_dir)
    dtype = dtype or torch.float32
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if IMAGE_PLACEHOLDER not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER]},
                                     replace_extra_special_tokens=False)
    image_token = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    lm = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    if len(tokenizer) > lm.config.vocab_size:
        lm.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    config = LlavaConfig(
        vision_config=tower.config, text_config=lm.config, image_token_index=image_token,
        image_seq_length=image_feature_count(tower.config), projector_hidden_act="gelu",
        vision_feature_select_strategy=FEATURE_SELECT[tower.kind], vision_feature_layer=feature_layer(tower.config),
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    model = LlavaForConditionalGeneration(config).to(dtype)
    model.model.vision_tower.load_state_dict(tower.load_model(dtype=dtype).state_dict())
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.tie_weights()
    model.generation_config = lm.generation_config
    processor = LlavaProcessor(image_processor=tower.image_processor, tokenizer=tokenizer,
                               patch_size=tower.config.patch_size,
                               vision_feature_select_strategy=FEATURE_SELECT[tower.kind],
                               num_additional_image_tokens=EXTRA_TOKENS[tower.kind],
                               chat_template=getattr(tokenizer, "chat_template", None))
    return model, processor


def classic_state_dict(model) -> dict:
    """The weights under the names vLLM reads: transformers 5 keeps a CLIP tower's layers at
    `vision_tower.*`, vLLM's loader wants them at `vision_tower.vision_model.*`, the layout of
    every published LLaVA (transformers reads both). Tied output weights are left out."""
    tower = model.model.vision_tower
    nested = hasattr(tower, "vision_model")
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        if name.startswith("model.vision_tower.") and not nested:
            name = "model.vision_tower.vision_model." + name[len("model.vision_tower."):]
        out[name] = tensor.detach().contiguous()
    return out


def save_model(model, processor, out: Path) -> Path:
    """Weights, config, tokenizer and processor: a folder both transformers and the engine open."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # vLLM picks its model class by this
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_file(classic_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(out)
    return out
