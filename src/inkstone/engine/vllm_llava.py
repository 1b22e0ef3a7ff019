"""vLLM's LLaVA model on an install without torchvision.

vLLM's llava module imports its Pixtral sibling, which imports a transformers
image processor built on torchvision; the CPU install has none, so the import
fails and no LLaVA model (the layout train-vision writes) could be served. Of
that processor only one helper is used (`_num_image_tokens`), and transformers
ships the same helper in the PIL processor: importing this module points the
torchvision module's name at the PIL one and registers vLLM's own LLaVA class,
imported through here, for the architecture.

vLLM's engine core and worker are spawned processes that forget registrations
made in this one. The engine passes `keep_config` (below) as vLLM's
`hf_overrides`: it changes nothing, but it travels inside the pickled engine
config, so unpickling it in each process imports this module there first.
"""
from __future__ import annotations

import importlib.util
import sys

TORCHVISION_PROCESSOR = "transformers.models.pixtral.image_processing_pixtral"
PIL_PROCESSOR = "transformers.models.pixtral.image_processing_pil_pixtral"
ARCHITECTURE = "LlavaForConditionalGeneration"


def torchvision_missing() -> bool:
    return importlib.util.find_spec("torchvision") is None


def register() -> None:
    """Make vLLM's LLaVA importable and registered in this process (idempotent)."""
    if TORCHVISION_PROCESSOR not in sys.modules:
        sys.modules[TORCHVISION_PROCESSOR] = importlib.import_module(PIL_PROCESSOR)
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, f"{__name__}:{ARCHITECTURE}")


def keep_config(hf_config):
    """vLLM's hf_overrides hook, unchanged config: see the module's docstring."""
    return hf_config


if torchvision_missing():
    register()
    from vllm.model_executor.models.llava import LlavaForConditionalGeneration  # noqa: F401
