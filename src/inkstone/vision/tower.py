"""A vision tower from a local Hugging Face folder: CLIP or SigLIP.

A folder may hold a whole CLIP/SigLIP model (text and vision, as published) or
the vision half alone (`CLIPVisionModel`, `SiglipVisionModel`); either way only
the vision config and weights are used. Its image processor is the PIL one:
the torchvision-backed processors are not installed on the CPU build.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# model_type in config.json -> (the vision config's model_type, its vision model class, the PIL image processor)
TOWER_KINDS = {
    "clip": ("clip_vision_model", "CLIPVisionModel", "CLIPImageProcessorPil"),
    "clip_vision_model": ("clip_vision_model", "CLIPVisionModel", "CLIPImageProcessorPil"),
    "siglip": ("siglip_vision_model", "SiglipVisionModel", "SiglipImageProcessorPil"),
    "siglip_vision_model": ("siglip_vision_model", "SiglipVisionModel", "SiglipImageProcessorPil"),
}


class TowerError(ValueError):
    """A tower folder that cannot be used; the message names the folder and what is wrong."""


@dataclass
class Tower:
    path: Path
    kind: str  # clip_vision_model | siglip_vision_model
    config: object  # CLIPVisionConfig | SiglipVisionConfig
    image_processor: object

    def load_model(self, dtype=None):
        import transformers

        cls = getattr(transformers, TOWER_KINDS[self.kind][1])
        return cls.from_pretrained(self.path, config=self.config, dtype=dtype)


def read_tower(path) -> Tower:
    """The tower at `path`: its vision config and PIL image processor (weights load later)."""
    import transformers

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise TowerError(f"{path}: no config.json; give a local CLIP or SigLIP model folder")
    try:
        model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type", "")
    except json.JSONDecodeError as exc:
        raise TowerError(f"{cfg_file}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if model_type not in TOWER_KINDS:
        raise TowerError(f"{cfg_file}: model_type {model_type!r} is not a vision tower this studio reads "
                         f"(CLIP or SigLIP: {', '.join(sorted(TOWER_KINDS))})")
    kind, _, processor_name = TOWER_KINDS[model_type]
    config_cls = transformers.CONFIG_MAPPING[kind]
    config = config_cls.from_pretrained(path)  # takes vision_config out of a whole CLIP/SigLIP config
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise TowerError(f"{path}: no weights (*.safetensors or *.bin)")
    processor_cls = getattr(transformers, processor_name)
    if (path / "preprocessor_config.json").is_file():
        image_processor = processor_cls.from_pretrained(path)
    else:  # the tower's own size, the family's normalisation
        size = config.image_size
        image_processor = processor_cls(size={"height": size, "width": size}, crop_size={"height": size, "width": size}) \
            if kind.startswith("siglip") else processor_cls(size={"shortest_edge": size},
                                                             crop_size={"height": size, "width": size})
    return Tower(path=path, kind=kind, config=config, image_processor=image_processor)
